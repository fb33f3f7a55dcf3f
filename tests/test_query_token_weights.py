"""LiteConfig.query_token_weights (issue 34, item 1's option): a learned weight per vocabulary token on the query's
normalised vectors, so MaxSim becomes Σ_i w(q_i) max_j S_ij. A fresh model scores as without; trained weights match
a naive loop on every route; the weights are saved, reloaded, trained and refused where they cannot go."""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import DOCUMENTS, QUERIES, tiny_model, tiny_triplets, write_jsonl
from test_train_accelerate import launch, tiny_run

from configuration_lite import LiteConfig
from lite_rerank.utils import VECTOR_FIELDS, weights_fingerprint
from modeling_lite import LiteModel


def weighted(model, seed: int = 3):
    """Random log-weights (what training leaves), drawn for every vocabulary id."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.query_token_weights.log_weights.copy_(
            torch.randn(model.config.encoder_config.vocab_size, generator=generator)
        )
    return model


@pytest.mark.parametrize("scorer", ["maxsim", "residual", "lite"])
def test_a_fresh_model_with_token_weights_scores_exactly_as_without(tokenizer, scorer):
    plain = tiny_model(tokenizer=tokenizer, scorer=scorer)
    with_weights = tiny_model(tokenizer=tokenizer, scorer=scorer, query_token_weights=True)
    assert with_weights.query_token_weights.log_weights.abs().max() == 0 and plain.query_token_weights is None
    state = with_weights.state_dict()
    state.update(plain.state_dict())  # the same encoder and scorer; the weights stay at their start
    with_weights.load_state_dict(state)
    pairs = [[query, doc] for query in QUERIES for doc in DOCUMENTS]
    expected = torch.tensor(plain.compute_score(pairs))
    assert (torch.tensor(with_weights.compute_score(pairs)) - expected).abs().max() <= 1e-6


def test_trained_weights_equal_the_naive_weighted_chamfer_sum_on_every_route(tokenizer):
    model = weighted(tiny_model(tokenizer=tokenizer, scorer="maxsim", query_token_weights=True)).double()
    log_weights = model.query_token_weights.log_weights
    pairs = [[query, doc] for query in QUERIES for doc in DOCUMENTS]
    expected = []
    with torch.no_grad():
        for query, doc in pairs:
            q = tokenizer(query, truncation=True, max_length=model.config.query_max_length, return_tensors="pt")
            d = tokenizer(doc, truncation=True, max_length=model.config.doc_max_length, return_tensors="pt")
            hq = model.encoder(**q).last_hidden_state[0]
            hd = model.encoder(**d).last_hidden_state[0]
            total = 0.0
            for i, token in enumerate(q["input_ids"][0].tolist()):
                best = max(float(F.normalize(hq[i], dim=0) @ F.normalize(hd[j], dim=0)) for j in range(len(hd)))
                total += float(log_weights[token].exp()) * best
            expected.append(total)
        expected = torch.tensor(expected, dtype=torch.float64)
        text = torch.tensor(model.compute_score(pairs), dtype=torch.float64)
        pair_tokens = tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, return_tensors="pt")
        pair_route = model(**pair_tokens).logits.squeeze(-1)
        docs, doc_mask = model.encode_documents(DOCUMENTS)
        query, query_mask = model.encode_queries([QUERIES[0]])
        cached = model.score_embeddings(query, query_mask, docs, doc_mask)
    torch.testing.assert_close(text, expected, rtol=1e-6, atol=1e-6)  # _normalize computes in float32
    torch.testing.assert_close(pair_route, expected, rtol=1e-6, atol=1e-6)  # _normalize computes in float32
    torch.testing.assert_close(
        cached, expected[: len(DOCUMENTS)], rtol=1e-6, atol=1e-6
    )  # _normalize computes in float32
    unweighted = tiny_model(tokenizer=tokenizer, scorer="maxsim").double()
    assert (torch.tensor(unweighted.compute_score(pairs), dtype=torch.float64) - expected).abs().max() > 1e-3


def test_documents_are_not_weighted_and_a_query_score_does_not_depend_on_its_batch(tokenizer):
    model = weighted(tiny_model(tokenizer=tokenizer, scorer="residual", query_token_weights=True))
    plain = tiny_model(tokenizer=tokenizer, scorer="residual")
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("query_token_weights.")})
    with torch.no_grad():
        torch.testing.assert_close(model.encode_documents(DOCUMENTS)[0], plain.encode_documents(DOCUMENTS)[0])
        queries = ["a", QUERIES[0], QUERIES[1] + " with more words to make it the longest"]
        together, mask = model.encode_queries(queries)
        for index, query in enumerate(queries):
            alone, alone_mask = model.encode_queries([query])
            torch.testing.assert_close(together[index : index + 1], alone, rtol=0, atol=1e-6)
        assert not torch.allclose(together, plain.encode_queries(queries)[0], atol=1e-3)


def test_the_weights_are_saved_and_reloaded_through_automodel_in_a_fresh_process(tmp_path, tokenizer):
    model = weighted(tiny_model(tokenizer=tokenizer, scorer="residual", query_token_weights=True))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    pairs = [[QUERIES[0], doc] for doc in DOCUMENTS]
    script = (
        "import json, sys; from transformers import AutoModel; "
        f"m = AutoModel.from_pretrained({str(tmp_path / 'model')!r}, trust_remote_code=True); "
        f"print(json.dumps(m.compute_score({pairs!r})))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert reloaded == pytest.approx(model.compute_score(pairs), abs=1e-5)
    assert json.loads((tmp_path / "model" / "config.json").read_text())["query_token_weights"] is True


def test_config_refuses_a_non_boolean_and_old_fingerprints_stay_valid():
    with pytest.raises(ValueError, match="query_token_weights must be true or false"):
        LiteConfig(query_token_weights="yes")
    model = tiny_model(scorer="maxsim")
    before = weights_fingerprint(model, VECTOR_FIELDS)
    del model.config.query_token_weights  # a config saved before the field existed
    assert weights_fingerprint(model, VECTOR_FIELDS) == before
    assert weights_fingerprint(tiny_model(scorer="maxsim", query_token_weights=True), VECTOR_FIELDS) != before


def test_the_multi_vector_routes_refuse_weighted_queries(tmp_path, tokenizer):
    pytest.importorskip("sentence_transformers", minversion="6.3", reason="the multi-vector extra")
    from lite_rerank.multi_vector import (
        MultiVectorError,
        export_multi_vector_encoder,
        score_multi_vector_embeddings,
    )

    model = tiny_model(tokenizer=tokenizer, scorer="residual", query_token_weights=True)
    with pytest.raises(MultiVectorError, match="query_token_weights"):
        export_multi_vector_encoder(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(MultiVectorError, match="query_token_weights"):
        score_multi_vector_embeddings(model, [torch.randn(3, 32)], [torch.randn(5, 32)])


@pytest.mark.slow
def test_training_moves_the_weights_of_the_query_tokens_it_sees_at_their_own_rate(tmp_path, tiny_encoder_dir):
    rows = tiny_triplets(16)
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    output = tmp_path / "run"
    flags = ["--scorer", "maxsim", "--loss", "ce", "--batch-size", "8", "--max-steps", "2", "--query-token-weights"]
    launch(tiny_run(tiny_encoder_dir, data, output, *flags, "--token-weights-lr", "0.05"))
    best = LiteModel.from_pretrained(output / "best")
    log_weights = best.query_token_weights.log_weights.detach()
    seen = {token for row in rows for token in best.tokenizer(row["query"])["input_ids"]}
    moved = set(torch.nonzero(log_weights).flatten().tolist())
    assert moved and moved <= seen  # AdamW's decay leaves an untouched zero at zero
    rates = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("token_weights_lr", 0) > 0 for r in rates)
    assert json.loads((output / "run_config.json").read_text())["query_token_weights"] is True


def test_a_run_started_before_a_flag_existed_resumes_at_its_default(tmp_path):
    import train_accelerate

    stored = {"lr": 2.8e-05, "scorer": "residual"}  # no query_token_weights / token_weights_lr: an older run
    settings = stored | {"query_token_weights": False, "token_weights_lr": 1e-2}
    assert train_accelerate.describe_changes(stored, settings) == ""
    changed = train_accelerate.describe_changes(stored, settings | {"query_token_weights": True})
    assert changed == "--query-token-weights False → True"


def test_the_flag_is_refused_with_a_cross_encoder(tmp_path, tiny_encoder_dir):
    data = write_jsonl(tmp_path / "rows.jsonl", [{"query": "q", "positive": "p", "negative": "n"}])
    result = launch(
        tiny_run(tiny_encoder_dir, data, tmp_path / "run", "--scorer", "cross-encoder", "--query-token-weights"),
        check=False,
    )
    assert result.returncode != 0 and "--query-token-weights" in result.stderr
    assert not (tmp_path / "run").exists()
