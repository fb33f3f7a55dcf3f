import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import DOCUMENTS, QUERIES, ROOT, TINY_DISTILBERT, tiny_model
from safetensors.torch import load_file

from modeling_lite import LiteMLP, LiteModel, ResidualLiteScorer


def tokens(tokenizer, texts, max_length, extra_padding=0):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    pad = (0, extra_padding)
    return F.pad(batch["input_ids"], pad, value=tokenizer.pad_token_id), F.pad(batch["attention_mask"], pad)


def dual_scores(model, tokenizer, queries, docs, **kwargs):
    q_ids, q_mask = tokens(tokenizer, queries, model.config.query_max_length, **kwargs)
    d_ids, d_mask = tokens(tokenizer, docs, model.config.doc_max_length, **kwargs)
    with torch.no_grad():
        out = model(query_input_ids=q_ids, query_attention_mask=q_mask, doc_input_ids=d_ids, doc_attention_mask=d_mask)
    assert out.logits.shape == (len(queries), 1)
    return out.logits.squeeze(-1)


# ---------------------------------------------------------------- scorers against naive loops


def naive_layer_norm(values, norm):
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return [
        (v - mean) / (var + norm.eps) ** 0.5 * w + b
        for v, w, b in zip(values, norm.weight.tolist(), norm.bias.tolist())
    ]


def naive_linear(values, linear):
    return [
        sum(w * v for w, v in zip(row, values)) + b for row, b in zip(linear.weight.tolist(), linear.bias.tolist())
    ]


def naive_mlp(values, mlp):
    hidden = naive_layer_norm([max(h, 0.0) for h in naive_linear(values, mlp.dense_in)], mlp.norm_in)
    return naive_layer_norm([max(h, 0.0) for h in naive_linear(hidden, mlp.dense_out)], mlp.norm_out)


def test_separable_scorer_equals_naive_row_then_column_loops():
    model = tiny_model(query_max_length=4, doc_max_length=6, row_hidden_size=5, col_hidden_size=3)
    scorer = model.lite_scorer
    sim = torch.randn(2, 4, 6, dtype=torch.float64)
    scorer.double()
    fast = scorer(sim)
    for b in range(2):
        rows = [naive_mlp(sim[b, i].tolist(), scorer.row_mlp) for i in range(4)]  # each row: over the doc axis
        cols = [naive_mlp([rows[i][j] for i in range(4)], scorer.col_mlp) for j in range(6)]  # over the query axis
        flat = [cols[j][i] for j in range(6) for i in range(4)]  # (d_len, q_len) flattened, as in the model
        expected = naive_linear(flat, scorer.out)[0]
        assert fast[b].item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_residual_scorer_equals_maxsim_plus_the_naive_lite_loops():
    model = tiny_model(query_max_length=4, doc_max_length=6, row_hidden_size=5, col_hidden_size=3, scorer="residual")
    scorer = model.lite_scorer.double()
    sim = torch.randn(2, 4, 6, dtype=torch.float64)
    sim[:, 3, :] = 0  # a padded query row
    doc_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    sim[1, :, 4:] = 0  # the second document's padded columns
    fast = scorer(sim, doc_mask)
    for b in range(2):
        real = int(doc_mask[b].sum())
        maxsim = sum(max(sim[b, i, j].item() for j in range(real)) for i in range(4))
        rows = [naive_mlp(sim[b, i].tolist(), scorer.row_mlp) for i in range(4)]
        cols = [naive_mlp([rows[i][j] for i in range(4)], scorer.col_mlp) for j in range(6)]
        lite = naive_linear([cols[j][i] for j in range(6) for i in range(4)], scorer.out)[0]
        assert fast[b].item() == pytest.approx(scorer.maxsim_scale.item() * maxsim + lite, rel=1e-9, abs=1e-9)
        assert abs(lite) > 1e-3  # the LITE term is there to be checked


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted query tokens"])
def test_a_zero_lite_term_is_skipped_and_scores_exactly_as_the_naive_loop(tokenizer, monkeypatch, weighted):
    """Issue 57: a residual whose output map is exactly zero scores scale · MaxSim + bias without running the MLPs —
    exact against the naive loop and against the full path, alike alone and in any batch, padded or not; once the
    map is not zero (an optimizer step), the MLPs run again."""
    model = tiny_model(tokenizer=tokenizer, scorer="residual", fresh_residual=True, query_token_weights=weighted)
    scorer = model.lite_scorer
    with torch.no_grad():
        scorer.maxsim_scale.fill_(2.5)
        scorer.out.bias.fill_(-0.75)
        if weighted:
            model.query_token_weights.log_weights.normal_(0, 0.5)
    docs, doc_mask = model.encode_documents(DOCUMENTS)
    query, query_mask = model.encode_queries([QUERIES[1]])
    calls, infer = [], LiteMLP.infer
    monkeypatch.setattr(LiteMLP, "infer", lambda *a, **k: calls.append(1) or infer(*a, **k))
    with torch.no_grad():
        skipped = model.score_embeddings(query, query_mask, docs, doc_mask)
        alone = torch.cat([model.score_embeddings(query, query_mask, docs[i : i + 1], doc_mask[i : i + 1])
                           for i in range(len(DOCUMENTS))])  # fmt: skip
        assert not calls  # no MLP ran
        with monkeypatch.context() as patch:
            patch.setattr(ResidualLiteScorer, "_lite_term_is_zero", lambda self: False)
            full = model.score_embeddings(query, query_mask, docs, doc_mask)
        assert calls  # the full path runs them
    q = query[0, : int(query_mask.sum())].double()
    for index in range(len(DOCUMENTS)):
        d = docs[index, : int(doc_mask[index].sum())].double()
        maxsim = sum(max(float(q[i] @ d[j]) for j in range(len(d))) for i in range(len(q)))
        assert skipped[index].item() == pytest.approx(2.5 * maxsim - 0.75, rel=1e-6, abs=1e-6)
    scale = max(1.0, float(full.abs().max()))  # float32 sums in another order alone and in a batch (AVX2): scaled
    assert (skipped - alone).abs().max() <= 1e-6 * scale and (skipped - full).abs().max() <= 1e-5 * scale
    with torch.no_grad():
        scorer.out.weight[0, 0] = 1.0  # an optimizer step away from zero: the LITE term runs again
        calls.clear()
        model.score_embeddings(query, query_mask, docs, doc_mask)
    assert calls


@pytest.mark.parametrize("overrides", [{}, {"projection_dim": 16, "doc_stored_tokens": 6}], ids=["full", "small"])
def test_a_fresh_residual_model_scores_exactly_as_maxsim_on_the_same_encoder(tokenizer, overrides):
    residual = tiny_model(tokenizer=tokenizer, scorer="residual", fresh_residual=True, **overrides)
    maxsim = tiny_model(seed=1, tokenizer=tokenizer, scorer="maxsim", **overrides)
    shared = {k: v for k, v in residual.state_dict().items() if not k.startswith("lite_scorer.")}
    maxsim.load_state_dict(shared)  # every weight but the scorer's: the same encoder (and Small-LITE layers)
    pairs = [[query, doc] for query in QUERIES for doc in DOCUMENTS]
    expected = torch.tensor(maxsim.compute_score(pairs))
    assert (torch.tensor(residual.compute_score(pairs)) - expected).abs().max() <= 1e-6  # text route
    pair_tokens = tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = residual(**pair_tokens).logits.squeeze(-1)  # pair (cross-encoder) route
        docs, doc_mask = residual.encode_documents(DOCUMENTS)  # cached-embedding route
        query, query_mask = residual.encode_queries([QUERIES[0]])
        cached = residual.score_embeddings(query, query_mask, docs, doc_mask)
    assert (logits - expected).abs().max() <= 1e-6
    assert (cached - expected[: len(DOCUMENTS)]).abs().max() <= 1e-6
    assert [r["index"] for r in residual.rerank(QUERIES[0], DOCUMENTS)] == [
        r["index"] for r in maxsim.rerank(QUERIES[0], DOCUMENTS)
    ]
    assert torch.allclose(
        torch.tensor([r["score"] for r in residual.rerank(QUERIES[0], DOCUMENTS)]),
        torch.tensor([r["score"] for r in maxsim.rerank(QUERIES[0], DOCUMENTS)]),
        atol=1e-6,
    )


def test_maxsim_equals_naive_loop_over_real_tokens(tokenizer):
    model = tiny_model(scorer="maxsim")
    assert model.lite_scorer is None and sum(p.numel() for n, p in model.named_parameters() if "encoder" not in n) == 0
    q_ids, q_mask = tokens(tokenizer, QUERIES[:2], 8)
    d_ids, d_mask = tokens(tokenizer, DOCUMENTS[:2], 24)
    with torch.no_grad():
        q, qm = model.encode_queries(q_ids, q_mask)
        d, dm = model.encode_documents(d_ids, d_mask)
        fast = model.score_embeddings(q, qm, d, dm)
        hidden_q = model.encoder(input_ids=q_ids, attention_mask=q_mask).last_hidden_state
        hidden_d = model.encoder(input_ids=d_ids, attention_mask=d_mask).last_hidden_state
    for b in range(2):
        qv = [F.normalize(hidden_q[b, i], dim=0) for i in range(int(q_mask[b].sum()))]
        dv = [F.normalize(hidden_d[b, j], dim=0) for j in range(int(d_mask[b].sum()))]
        expected = sum(max(float(x @ y) for y in dv) for x in qv)
        assert fast[b].item() == pytest.approx(expected, abs=1e-4)


# ---------------------------------------------------------------- invariance and calling conventions


@pytest.mark.parametrize("scorer", ["lite", "maxsim", "residual"])
def test_score_does_not_depend_on_batch_or_padding(tokenizer, scorer):
    model = tiny_model(scorer=scorer)
    alone = dual_scores(model, tokenizer, QUERIES[:1], DOCUMENTS[:1])
    in_batch = dual_scores(model, tokenizer, QUERIES[:1] * 3, [DOCUMENTS[0], DOCUMENTS[1], DOCUMENTS[3]])
    padded = dual_scores(model, tokenizer, QUERIES[:1], DOCUMENTS[:1], extra_padding=40)
    torch.testing.assert_close(in_batch[:1], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(in_batch[0], in_batch[1])  # documents do differ


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(scorer="maxsim"),
        dict(projection_dim=16, doc_stored_tokens=6),
        dict(scorer="residual", projection_dim=16, doc_stored_tokens=6),
    ],
)
def test_pair_mode_equals_dual_mode(tokenizer, overrides):
    model = tiny_model(**overrides)
    queries = QUERIES + ["a very long query " * 10]  # longer than L1: both modes truncate alike
    docs = DOCUMENTS[:3] + [DOCUMENTS[3]]
    dual = dual_scores(model, tokenizer, queries, docs)
    pair = tokenizer(queries, docs, padding=True, truncation=True, return_tensors="pt")  # with token_type_ids
    with torch.no_grad():
        logits = model(**pair).logits
    torch.testing.assert_close(logits.squeeze(-1), dual, rtol=1e-5, atol=1e-5)


def test_documents_per_query_give_the_same_scores_as_pairs(tokenizer):
    model = tiny_model()
    q_ids, q_mask = tokens(tokenizer, QUERIES[:2], 8)
    d_ids, d_mask = tokens(tokenizer, DOCUMENTS[:4], 24)
    with torch.no_grad():
        listwise = model(
            query_input_ids=q_ids,
            query_attention_mask=q_mask,
            doc_input_ids=d_ids.view(2, 2, -1),
            doc_attention_mask=d_mask.view(2, 2, -1),
        ).logits
    expected = dual_scores(model, tokenizer, [QUERIES[0]] * 2 + [QUERIES[1]] * 2, DOCUMENTS[:4])
    torch.testing.assert_close(listwise, expected.view(2, 2), rtol=1e-5, atol=1e-5)


def test_small_lite_embeddings_have_the_stored_shape(tokenizer):
    model = tiny_model(projection_dim=16, doc_stored_tokens=6, tokenizer=tokenizer)
    docs, mask = model.encode_documents(DOCUMENTS)
    queries, q_mask = model.encode_queries(QUERIES)
    assert docs.shape == (4, 6, 16) and mask.shape == (4, 6) and bool(mask.all())
    assert queries.shape == (3, 8, 16)
    norms = docs.norm(dim=-1)  # unit vectors, or zero where a block covered only padding
    assert bool(((norms - 1).abs() < 1e-5).logical_or(norms == 0).all())
    torch.testing.assert_close(norms[3], torch.ones(6))  # DOCUMENTS[3] fills all 24 positions
    # The compressor starts as block averaging over token positions.
    weight = model.doc_compressor.weight
    torch.testing.assert_close(weight.sum(dim=1), torch.ones(6))
    assert weight[0, :4].eq(0.25).all() and weight[0, 4:].eq(0).all()


def test_cached_embeddings_score_like_forward(tokenizer):
    model = tiny_model(tokenizer=tokenizer)
    with torch.no_grad():
        q, qm = model.encode_queries([QUERIES[0]])
        d, dm = model.encode_documents(DOCUMENTS)
        broadcast = model.score_embeddings(q, qm, d, dm)  # one query against all documents
    expected = dual_scores(model, tokenizer, [QUERIES[0]] * 4, DOCUMENTS)
    torch.testing.assert_close(broadcast, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- text API


def test_rerank_and_compute_score_agree(tokenizer):
    model = tiny_model(tokenizer=tokenizer)
    ranked = model.rerank(QUERIES[0], DOCUMENTS, batch_size=2)
    scores = model.compute_score([[QUERIES[0], doc] for doc in DOCUMENTS], batch_size=3)
    assert [r["index"] for r in ranked] == sorted(range(4), key=lambda i: -scores[i])
    assert [r["score"] for r in ranked] == pytest.approx(sorted(scores, reverse=True), abs=1e-5)
    assert all(r["document"] == DOCUMENTS[r["index"]] for r in ranked)
    assert model.compute_score([QUERIES[0], DOCUMENTS[1]]) == pytest.approx(scores[1], abs=1e-5)
    assert len(model.rerank(QUERIES[0], DOCUMENTS, top_n=2)) == 2
    assert "document" not in model.rerank(QUERIES[0], DOCUMENTS, return_documents=False)[0]
    assert model.training is False


def test_text_api_switches_dropout_off_and_restores_training_mode(tokenizer):
    model = tiny_model(tokenizer=tokenizer).train()
    first = model.compute_score([[QUERIES[0], DOCUMENTS[0]]] * 2)
    assert first[0] == pytest.approx(first[1], abs=1e-6) and model.training


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.rerank("query", []), "empty"),
        (lambda m: m.rerank("query", "not a list"), "list of strings"),
        (lambda m: m.compute_score([]), "at least one"),
        (lambda m: m.compute_score([["q", "d", "extra"]]), "pair 0"),
        (lambda m: m(query_input_ids=torch.tensor([101, 102]), doc_input_ids=torch.tensor([[101, 102]])), "2-D"),
        (lambda m: m(query_input_ids=torch.ones(2, 3).long(), doc_input_ids=torch.ones(3, 3).long()), "2 queries"),
        (lambda m: m(query_input_ids=torch.ones(1, 3).long()), "both"),
        (lambda m: m(input_ids=torch.tensor([[101, 2000, 2001]])), "no \\[SEP\\]"),
        (
            lambda m: m(
                input_ids=torch.tensor([[0, 101, 102, 7, 102]]), attention_mask=torch.tensor([[0, 1, 1, 1, 1]])
            ),
            "right-padded",
        ),
        (lambda m: m(input_ids=torch.tensor([[101, 102, 7, 102]]), labels=torch.tensor([1.0])), "labels"),
        (lambda m: m.score_embeddings(torch.zeros(1, 8, 32), None, torch.zeros(1, 5, 32), None), "expects"),
    ],
)
def test_bad_input_gets_a_clear_error(tokenizer, call, message):
    model = tiny_model(tokenizer=tokenizer)
    with pytest.raises((ValueError, TypeError), match=message):
        call(model)


def test_query_longer_than_l1_is_truncated_like_the_tokenizer(tokenizer):
    model = tiny_model()
    long_query = "find the package that converts images between many formats quickly"
    full_ids, full_mask = tokens(tokenizer, [long_query], 512)
    assert full_ids.shape[1] > model.config.query_max_length
    d_ids, d_mask = tokens(tokenizer, DOCUMENTS[:1], 24)
    with torch.no_grad():
        untruncated = model(query_input_ids=full_ids, query_attention_mask=full_mask, doc_input_ids=d_ids).logits
    truncated = dual_scores(model, tokenizer, [long_query], DOCUMENTS[:1])
    torch.testing.assert_close(untruncated.squeeze(-1), truncated)


def test_missing_tokenizer_error_names_the_fix():
    model = tiny_model()
    with pytest.raises(ValueError, match="tokenizer"):
        model.rerank("q", ["d"])


# ---------------------------------------------------------------- real weights


def test_from_encoder_loads_all_minilm_weights_and_trains_end_to_end(minilm_path):
    model = LiteModel.from_encoder(str(minilm_path), query_max_length=16, doc_max_length=32)
    checkpoint = load_file(minilm_path / "model.safetensors")
    encoder_state = model.encoder.state_dict()
    expected = {k: v for k, v in checkpoint.items() if not k.startswith("pooler.") and "position_ids" not in k}
    assert set(expected) <= set(encoder_state) and len(expected) > 50
    for key, value in expected.items():
        torch.testing.assert_close(encoder_state[key], value, msg=key)
    assert model.config.hidden_size == 384 and model.tokenizer is not None
    model.train()
    batch = model.tokenizer([QUERIES[0]], [DOCUMENTS[0]], return_tensors="pt")
    model(**batch).logits.sum().backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert model.encoder.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert model.lite_scorer.row_mlp.dense_in.weight.grad.abs().sum() > 0
    assert model.lite_scorer.out.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters()), "every parameter must get a gradient (DDP)"


def test_distilbert_encoder_and_attn_implementation(tmp_path, tokenizer):
    model = tiny_model(encoder=TINY_DISTILBERT, tokenizer=tokenizer)
    model.save_pretrained(tmp_path)
    sdpa = LiteModel.from_pretrained(tmp_path)
    eager = LiteModel.from_pretrained(tmp_path, attn_implementation="eager")
    assert eager.encoder.config._attn_implementation == "eager"
    pairs = [[QUERIES[0], doc] for doc in DOCUMENTS]
    assert eager.compute_score(pairs) == pytest.approx(sdpa.compute_score(pairs), abs=1e-5)
    assert sdpa.compute_score(pairs) == pytest.approx(model.compute_score(pairs), abs=1e-6)


# ---------------------------------------------------------------- Hub remote code, in a fresh process

REMOTE_LOAD = r"""
import json, sys, torch
from transformers import AutoModel, AutoModelForSequenceClassification, pipeline
from sentence_transformers import CrossEncoder
path, query, docs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
auto = AutoModel.from_pretrained(path, trust_remote_code=True)
seq = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)
cross = CrossEncoder(path, trust_remote_code=True, activation_fn=torch.nn.Identity())
pipe = pipeline("text-classification", model=path, trust_remote_code=True, function_to_apply="none")
print(json.dumps({
    "module": type(auto).__module__,
    "auto": auto.compute_score([[query, d] for d in docs]),
    "seq": seq.rerank(query, docs),
    "cross_predict": cross.predict([[query, d] for d in docs]).tolist(),
    "cross_rank": [r["corpus_id"] for r in cross.rank(query, docs)],
    "pipeline": [r["score"] for r in pipe([{"text": query, "text_pair": d} for d in docs])],
}))
"""


def run_fresh(code, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


@pytest.mark.slow
def test_remote_code_round_trip_in_a_fresh_process(saved_tiny_model, tmp_path, tokenizer):
    files = {p.name for p in saved_tiny_model.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_lite.py", "configuration_lite.py", "tokenizer.json"} <= files
    local = LiteModel.from_pretrained(saved_tiny_model)
    expected = local.compute_score([[QUERIES[0], d] for d in DOCUMENTS])
    result = run_fresh(REMOTE_LOAD, str(saved_tiny_model), QUERIES[0], json.dumps(DOCUMENTS), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["module"].startswith("transformers_modules."), "must run the saved code, not this checkout"
    assert got["auto"] == pytest.approx(expected, abs=1e-5)
    assert got["cross_predict"] == pytest.approx(expected, abs=1e-5)
    assert got["pipeline"] == pytest.approx(expected, abs=1e-5)
    order = sorted(range(len(DOCUMENTS)), key=lambda i: -expected[i])
    assert [r["index"] for r in got["seq"]] == order
    assert got["cross_rank"] == order


@pytest.mark.slow
def test_loading_without_trust_remote_code_fails_clearly(saved_tiny_model, tmp_path):
    code = "import sys; from transformers import AutoModel; AutoModel.from_pretrained(sys.argv[1])"
    result = run_fresh(code, str(saved_tiny_model), cwd=tmp_path)
    assert result.returncode != 0
    assert "trust_remote_code=True" in result.stderr


@pytest.mark.parametrize("scorer", ["lite", "maxsim", "residual"])
def test_inference_path_in_blocks_equals_the_training_path(tokenizer, scorer, cpu_kind):
    model = tiny_model(scorer=scorer, tokenizer=tokenizer)
    with torch.no_grad():
        queries, query_mask = model.encode_queries([QUERIES[0]])
        docs, doc_mask = model.encode_documents(DOCUMENTS * 5)
    with torch.enable_grad():  # the autograd path: one block, out-of-place activations
        reference = model.score_embeddings(queries, query_mask, docs, doc_mask)
    model.inference_block = 3
    with torch.no_grad():
        blocked = model.score_embeddings(queries, query_mask, docs, doc_mask)
        pairwise = model.score_embeddings(queries.expand(20, -1, -1), query_mask.expand(20, -1), docs, doc_mask)
    torch.testing.assert_close(blocked, reference.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pairwise, reference.detach(), rtol=1e-5, atol=1e-5)
    model.to(torch.bfloat16)
    with torch.no_grad():
        low = model.score_embeddings(queries.bfloat16(), query_mask, docs.bfloat16(), doc_mask)
    assert low.dtype == torch.float32  # summed in float32: no ties manufactured by bf16 rounding
    torch.testing.assert_close(low, reference.detach(), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("scorer", ["lite", "maxsim"])
@pytest.mark.parametrize("count", [3, -1])
def test_in_batch_negatives_score_each_query_against_other_queries_documents(tokenizer, scorer, count):
    model = tiny_model(tokenizer=tokenizer, scorer=scorer).eval()
    docs = [DOCUMENTS[:2], DOCUMENTS[2:], DOCUMENTS[1:3]]  # 3 queries × 2 documents, query-major
    q_ids, q_mask = tokens(tokenizer, QUERIES, 8)
    d_ids, d_mask = tokens(tokenizer, [d for pair in docs for d in pair], 24)
    with torch.no_grad():
        logits = model(
            query_input_ids=q_ids,
            query_attention_mask=q_mask,
            doc_input_ids=d_ids.view(3, 2, -1),
            doc_attention_mask=d_mask.view(3, 2, -1),
            in_batch_negatives=count,
        ).logits
    flat_docs = [d for pair in docs for d in pair]
    extra = 4 if count == -1 else count
    assert logits.shape == (3, 2 + extra)
    for i, query in enumerate(QUERIES):
        others = [flat_docs[((i + 1 + j // 2) % 3) * 2 + j % 2] for j in range(extra)]  # queries i+1, i+2, cyclic
        expected = model.compute_score([[query, doc] for doc in docs[i] + others])
        assert logits[i].tolist() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="holds only 4 documents of other queries"):
        model(
            query_input_ids=q_ids,
            query_attention_mask=q_mask,
            doc_input_ids=d_ids.view(3, 2, -1),
            doc_attention_mask=d_mask.view(3, 2, -1),
            in_batch_negatives=5,
        )


# ---------------------------------------------------------------- saved formats and exact sparsity

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lite-v0.1", "small-lite-v0.1"])
def test_models_saved_by_earlier_code_load_and_score_the_same(tmp_path, tokenizer, name):
    import shutil

    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    tokenizer.save_pretrained(folder)
    expected = json.loads((folder / "expected_scores.json").read_text())
    model = LiteModel.from_pretrained(folder)
    assert model.compute_score(expected["pairs"]) == pytest.approx(expected["scores"], abs=1e-5)
    for code in ("modeling_lite.py", "configuration_lite.py"):
        shutil.copy(ROOT / code, folder / code)
    fresh = run_fresh(
        "import json, sys; from transformers import AutoModel\n"
        "m = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "print(json.dumps(m.compute_score(json.loads(sys.argv[2]))))",
        str(folder),
        json.dumps(expected["pairs"]),
        cwd=tmp_path,
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert json.loads(fresh.stdout.strip().splitlines()[-1]) == pytest.approx(expected["scores"], abs=1e-5)


def full_matrix_scores(model, queries, query_mask, docs, doc_mask):
    """The scorer on the whole padded L1 × K matrix, one candidate at a time (nothing left out, no blocks)."""
    scores = []
    for i in range(docs.shape[0]):
        q = queries[min(i, queries.shape[0] - 1)]
        similarity = (q @ docs[i].T).unsqueeze(0)  # (1, L1, K), zero rows and columns at padding
        scores.append(model.scorer(similarity, doc_mask[i : i + 1]))
    return torch.cat(scores)


RAGGED_QUERIES = [
    "a",
    "search files",
    QUERIES[0],
    "find the package that converts images between many formats quickly and well",
]
RAGGED_DOCS = ["a", "an image editor", DOCUMENTS[0], DOCUMENTS[2], DOCUMENTS[3], "web " * 7, DOCUMENTS[1] + " python"]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"projection_dim": 16},
        {"doc_stored_tokens": 6},
        {"projection_dim": 16, "doc_stored_tokens": 6},
        {"scorer": "maxsim"},
        {"scorer": "residual"},
        {"scorer": "residual", "projection_dim": 16, "doc_stored_tokens": 6},
    ],
    ids=["lite", "small-d", "small-k", "small-both", "maxsim", "residual", "residual-small"],
)
def test_padding_free_scorer_equals_the_full_matrix_in_scores_and_gradients(tokenizer, overrides):
    model = tiny_model(tokenizer=tokenizer, **overrides).double()
    model.inference_block = 2  # several blocks of different document lengths
    with torch.no_grad():
        docs, doc_mask = model.encode_documents(RAGGED_DOCS)
    lengths = doc_mask.sum(dim=1).tolist()
    assert len(set(lengths)) > 2 or "doc_stored_tokens" in overrides
    query_lengths = []
    for query in RAGGED_QUERIES:
        with torch.no_grad():
            q, q_mask = model.encode_queries([query])
            fast = model.score_embeddings(q, q_mask, docs, doc_mask)
            reference = full_matrix_scores(model, q, q_mask, docs, doc_mask)
        query_lengths.append(int(q_mask.sum()))
        torch.testing.assert_close(fast, reference, rtol=1e-9, atol=1e-9)
    assert query_lengths[0] < query_lengths[1] < model.config.query_max_length == query_lengths[-1]
    if model.lite_scorer is None:
        return
    # With gradients (training): the same scores and the same parameter gradients.
    q, q_mask = model.encode_queries(RAGGED_QUERIES[:2] * 4)
    q, q_mask = q.detach()[:7], q_mask[:7]
    grads = []
    for path in ("padding-free", "full"):
        model.zero_grad()
        if path == "full":
            scores = full_matrix_scores(model, q, q_mask, docs.detach(), doc_mask)
        else:
            scores = model.score_embeddings(q, q_mask, docs.detach(), doc_mask)
        (scores * torch.arange(1, 8, dtype=scores.dtype)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.lite_scorer.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 0.05)])
def test_padding_free_scorer_matches_naive_loops_in_lower_precision(tokenizer, dtype, tolerance, cpu_kind):
    model = tiny_model(tokenizer=tokenizer).eval()
    with torch.no_grad():
        docs, doc_mask = model.encode_documents(RAGGED_DOCS)
        q, q_mask = model.encode_queries([RAGGED_QUERIES[1]])
    similarity = (q[0] @ docs.transpose(1, 2)).double()  # (n, L1, K) in float64
    scorer = model.lite_scorer
    expected = []
    for s in similarity:
        rows = [naive_mlp(s[i].tolist(), scorer.row_mlp) for i in range(s.shape[0])]
        cols = [naive_mlp([rows[i][j] for i in range(s.shape[0])], scorer.col_mlp) for j in range(s.shape[1])]
        expected.append(
            naive_linear([cols[j][i] for j in range(s.shape[1]) for i in range(s.shape[0])], scorer.out)[0]
        )
    model.to(dtype)
    with torch.no_grad():
        fast = model.score_embeddings(q.to(dtype), q_mask, docs.to(dtype), doc_mask)
    assert fast.dtype == torch.float32
    assert fast.tolist() == pytest.approx(expected, abs=tolerance, rel=tolerance)


def test_scoring_under_bf16_autocast_matches_a_bf16_model(tokenizer, cpu_kind):
    """Training evaluates dev under Accelerate's autocast: float32 weights, bfloat16 activations."""
    model = tiny_model(tokenizer=tokenizer)
    pairs = [[QUERIES[i % 3], doc] for i, doc in enumerate(DOCUMENTS)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = model.compute_score(pairs)
    reference = model.compute_score(pairs)
    assert autocast == pytest.approx(reference, abs=0.05)
