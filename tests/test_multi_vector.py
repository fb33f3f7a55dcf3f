"""LITE on multi-vector models (issue 37): a sentence-transformers MultiVectorEncoder (and a PyLate v3 folder, which it
reads) becomes a LITE model that encodes exactly as the encoder does; a LITE model's encoder side exports as a
MultiVectorEncoder that encodes exactly as LITE does. The reference is sentence-transformers itself."""

import json
import os
import shutil
import string
import subprocess
import sys

import pytest
import torch
from conftest import DOCUMENTS, QUERIES, ROOT, save_multi_vector, tiny_model
from sentence_transformers import MultiVectorEncoder
from sentence_transformers.base.modules import Dense, Transformer
from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

from lite_rerank.multi_vector import (
    CARRIED_FIELDS,
    MultiVectorError,
    cached_documents,
    export_multi_vector_encoder,
    from_encoder,
    lite_from_multi_vector,
    score_multi_vector_embeddings,
)
from modeling_lite import LiteModel, is_multi_vector_model

# punctuation inside the texts, so that the skiplist has tokens to drop; one query longer than the expansion length
TEXTS_Q = [*QUERIES, "grep, find: which one searches (recursively) faster? " * 2]
TEXTS_D = [*DOCUMENTS, "x", "tools: grep, sed & awk (text processing)."]
SCORER = dict(scorer="residual", row_hidden_size=48, col_hidden_size=16)


def maxsim_matrix(encoder, queries, documents):
    return encoder.similarity(encoder.encode_query(queries), encoder.encode_document(documents))


def lite_matrix(model, queries, documents):
    pairs = [[query, doc] for query in queries for doc in documents]
    return torch.tensor(model.compute_score(pairs, batch_size=5)).view(len(queries), len(documents))


CASES = {
    "colbert: [Q]/[D] prompts, fixed expansion unattended, projection, skiplist": dict(
        expansion={"strategy": "fixed", "attend": False, "length": 16}, prompts={"query": "[Q] ", "document": "[D] "}
    ),
    "min expansion attended, projection with bias": dict(
        expansion={"strategy": "min", "attend": True, "length": 10}, bias=True, prompts={"query": "query: "}
    ),
    "no projection, no normalisation, no expansion": dict(dense=False, normalize=False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_fresh_residual_lite_scores_exactly_as_the_multi_vector_model(case, tmp_path, tiny_encoder_dir):
    folder = save_multi_vector(tmp_path / "mve", tiny_encoder_dir, **CASES[case])
    encoder = MultiVectorEncoder(str(folder), device="cpu")
    assert is_multi_vector_model(folder) and not is_multi_vector_model(tiny_encoder_dir)
    model = from_encoder(str(folder), **SCORER).eval()  # the folder, as a user gives it
    expected = maxsim_matrix(encoder, TEXTS_Q, TEXTS_D)
    scored = lite_matrix(model, TEXTS_Q, TEXTS_D)  # the pair route: texts split and encoded by the model
    # float32 sums in another order on another CPU (AVX2 against AVX-512): a tolerance that scales with the scores,
    # which reach ≈ 200 without normalisation
    torch.testing.assert_close(scored, expected, atol=1e-5 * max(1.0, float(expected.abs().max())), rtol=0)
    for row, query in enumerate(TEXTS_Q):  # and so the same ranking (ties by index)
        order = sorted(range(len(TEXTS_D)), key=lambda i: (-float(expected[row, i]), i))
        assert [r["index"] for r in model.rerank(query, TEXTS_D, return_documents=False)] == order
    # each token vector, too: LITE's vectors in order are the encoder's, per text
    vectors, mask = model.encode_documents(TEXTS_D)
    for index, reference in enumerate(encoder.encode_document(TEXTS_D)):
        torch.testing.assert_close(vectors[index][mask[index]], reference, atol=1e-6, rtol=0)
    vectors, mask = model.encode_queries(TEXTS_Q)
    for index, reference in enumerate(encoder.encode_query(TEXTS_Q)):
        torch.testing.assert_close(vectors[index][mask[index]], reference, atol=1e-6, rtol=0)


def test_the_carried_fields_are_what_the_encoder_holds(tmp_path, tiny_encoder_dir, tokenizer):
    folder = save_multi_vector(tmp_path / "mve", tiny_encoder_dir, **CASES[sorted(CASES)[0]])
    config = lite_from_multi_vector(str(folder), **SCORER).config
    assert (config.query_max_length, config.doc_max_length, config.projection_dim) == (16, 24, 12)
    assert config.query_prefix_ids == tokenizer("[Q] ", add_special_tokens=False)["input_ids"]
    assert config.query_expansion == {
        "strategy": "fixed",
        "length": 16,
        "token_id": tokenizer.mask_token_id,
        "attend": False,
    }
    punctuation = sorted({tokenizer.convert_tokens_to_ids(c) for c in string.punctuation} - {tokenizer.unk_token_id})
    assert config.doc_skiplist_ids == punctuation and config.query_skiplist_ids is None


def test_a_pylate_v3_folder_starts_at_its_own_maxsim(tmp_path, tiny_encoder_dir):
    """PyLate ≤ 3 saved [Transformer, Dense] with its knobs at the top of config_sentence_transformers.json and
    `[unused0]` / `[unused1]` markers; MultiVectorEncoder reads it (expansion, punctuation skiplist, normalisation)."""
    folder = tmp_path / "pylate"
    MultiVectorEncoder(
        modules=[
            Transformer(str(tiny_encoder_dir)),
            Dense(32, 12, bias=False, activation_function=None, module_input_name="token_embeddings"),
        ]
    ).save(str(folder))
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "pylate.models.Dense.Dense"
    (folder / "modules.json").write_text(json.dumps(modules))
    settings = json.loads((folder / "config_sentence_transformers.json").read_text())
    settings.pop("prompts", None)
    settings.update(
        model_type="ColBERT",
        query_prefix="[unused0]",
        document_prefix="[unused1]",
        query_length=12,
        document_length=24,
        attend_to_expansion_tokens=False,
    )
    (folder / "config_sentence_transformers.json").write_text(json.dumps(settings))
    encoder = MultiVectorEncoder(str(folder), device="cpu")
    model = from_encoder(str(folder), **SCORER)
    assert model.config.query_prefix_ids == [1] and model.config.doc_prefix_ids == [2]  # [unused0], [unused1]
    assert model.config.query_expansion["length"] == 12 and model.config.doc_skiplist_ids
    torch.testing.assert_close(
        lite_matrix(model, TEXTS_Q, TEXTS_D), maxsim_matrix(encoder, TEXTS_Q, TEXTS_D), atol=1e-5, rtol=0
    )


def test_the_model_saves_and_loads_with_its_multi_vector_fields(tmp_path, tiny_encoder_dir):
    folder = save_multi_vector(tmp_path / "mve", tiny_encoder_dir, **CASES[sorted(CASES)[0]])
    model = lite_from_multi_vector(str(folder), **SCORER)
    with torch.no_grad():  # what training leaves: a LITE term that is not zero
        model.lite_scorer.out.weight.normal_(0.0, 0.05)
    model.save_pretrained(tmp_path / "lite")
    expected = lite_matrix(model, TEXTS_Q, TEXTS_D)
    code = (
        "import sys, json, torch; from transformers import AutoModel; "
        f"m = AutoModel.from_pretrained({str(tmp_path / 'lite')!r}, trust_remote_code=True); "
        f"q, d = {TEXTS_Q!r}, {TEXTS_D!r}; "
        "print(json.dumps(m.compute_score([[a, b] for a in q for b in d])))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    scores = torch.tensor(json.loads(loaded.stdout.strip().splitlines()[-1])).view(expected.shape)
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)


def test_a_query_scores_alike_alone_and_in_any_batch(tmp_path, tiny_encoder_dir):
    folder = save_multi_vector(tmp_path / "mve", tiny_encoder_dir, **CASES[sorted(CASES)[0]])
    model = lite_from_multi_vector(str(folder), **SCORER)
    together = lite_matrix(model, TEXTS_Q, TEXTS_D)
    for row, query in enumerate(TEXTS_Q):
        torch.testing.assert_close(lite_matrix(model, [query], TEXTS_D)[0], together[row], atol=1e-5, rtol=0)


def test_export_encodes_exactly_as_lite(tmp_path, tokenizer):
    """A LITE model with every multi-vector field (trained weights: seeded, not fresh) exported, loaded by
    sentence-transformers from the folder, encodes as encode_queries / encode_documents; its MaxSim is LITE's."""
    model = tiny_model(
        tokenizer=tokenizer,
        projection_dim=12,
        query_max_length=12,
        query_prefix_ids=tokenizer("[Q] ", add_special_tokens=False)["input_ids"],
        doc_prefix_ids=tokenizer("[D] ", add_special_tokens=False)["input_ids"],
        query_expansion={"strategy": "fixed", "length": 12, "token_id": tokenizer.mask_token_id, "attend": False},
        doc_skiplist_ids=tokenizer.convert_tokens_to_ids([",", ".", "(", ")"]),
    )
    with torch.no_grad():
        model.projection.bias.normal_(0.0, 0.1)
    encoder = export_multi_vector_encoder(model, tmp_path / "first-stage")
    assert isinstance(MultiVectorEncoder(str(tmp_path / "first-stage"), device="cpu"), MultiVectorEncoder)
    for encode, lite_encode, texts in (
        (encoder.encode_query, model.encode_queries, TEXTS_Q),
        (encoder.encode_document, model.encode_documents, TEXTS_D),
    ):
        vectors, mask = lite_encode(texts)
        for index, reference in enumerate(encode(texts)):
            torch.testing.assert_close(reference, vectors[index][mask[index]], atol=1e-6, rtol=0)
    maxsim = LiteModel(model.config.__class__(**{**model.config.to_dict(), "scorer": "maxsim"}))
    maxsim.load_state_dict(model.state_dict(), strict=False)
    maxsim.tokenizer = tokenizer
    torch.testing.assert_close(
        lite_matrix(maxsim.eval(), TEXTS_Q, TEXTS_D), maxsim_matrix(encoder, TEXTS_Q, TEXTS_D), atol=1e-5, rtol=0
    )


def test_what_lite_cannot_reproduce_is_refused_by_name(tmp_path, tiny_encoder_dir, tokenizer):
    torch.manual_seed(0)
    tanh = MultiVectorEncoder(
        modules=[Transformer(str(tiny_encoder_dir)), Dense(32, 12, module_input_name="token_embeddings")]
    )
    with pytest.raises(MultiVectorError, match="a Dense with an activation or a residual \\(Tanh\\)"):
        lite_from_multi_vector(tanh)
    plain = MultiVectorEncoder(modules=[Transformer(str(tiny_encoder_dir)), MultiVectorMask()])
    plain.similarity_fn_name = "meanmaxsim"
    with pytest.raises(MultiVectorError, match="similarity 'meanmaxsim'"):
        lite_from_multi_vector(plain)
    folder = save_multi_vector(tmp_path / "mve", tiny_encoder_dir)
    with pytest.raises(MultiVectorError, match=r"\['doc_max_length', 'projection_dim'\] come from the multi-vector"):
        lite_from_multi_vector(str(folder), doc_max_length=200, projection_dim=8)
    assert set(CARRIED_FIELDS) >= {"query_expansion", "doc_skiplist_ids", "query_prefix_ids"}
    small = tiny_model(tokenizer=tokenizer, doc_stored_tokens=8)
    with pytest.raises(MultiVectorError, match="Small-LITE's document compressor"):
        export_multi_vector_encoder(small, tmp_path / "small")
    assert not (tmp_path / "small").exists()


def test_a_missing_extra_is_named(tmp_path, tiny_encoder_dir):
    folder = save_multi_vector(tmp_path / "mve", tiny_encoder_dir)
    code = (
        "import sys; sys.modules['sentence_transformers'] = None; "
        f"sys.path.insert(0, {str(ROOT)!r}); from lite_rerank.multi_vector import from_encoder; "
        f"from_encoder({str(folder)!r})"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert 'pip install "lite-reranker[multi-vector]"' in result.stderr


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "query_expansion",
            {"strategy": "fixed", "length": 9, "token_id": 103, "attend": False},
            "equal to query_max",
        ),
        ("query_expansion", {"strategy": "all", "length": 8, "token_id": 103, "attend": False}, "'fixed' or 'min'"),
        ("query_expansion", {"length": 8}, "needs exactly the keys"),
        ("query_expansion", {"strategy": "min", "length": 8, "token_id": 10**6, "attend": False}, "token_id"),
        ("doc_skiplist_ids", [], "non-empty list of token ids"),
        ("doc_skiplist_ids", [10**6], "beyond the encoder's vocabulary"),
        ("query_prefix_ids", [1] * 7, "leaves no room for text"),
    ],
)
def test_bad_multi_vector_fields_are_named(field, value, message):
    with pytest.raises(ValueError, match=f"LiteConfig.{field}.*{message}"):
        tiny_model(**{field: value})


def test_lite_scores_the_first_stage_vectors_without_encoding_again(tmp_path, tiny_encoder_dir):
    """Vectors a MultiVectorEncoder stored (a first-stage index) are re-ranked by the LITE model built from it, with
    the scores it gives the texts; vectors of another width or scale are refused."""
    folder = save_multi_vector(tmp_path / "mve", tiny_encoder_dir, **CASES[sorted(CASES)[0]])
    encoder = MultiVectorEncoder(str(folder), device="cpu")
    model = lite_from_multi_vector(str(folder), **SCORER)
    with torch.no_grad():
        model.lite_scorer.out.weight.normal_(0.0, 0.05)  # a LITE term that is not zero
    queries, docs = encoder.encode_query(TEXTS_Q), encoder.encode_document(TEXTS_D)
    torch.testing.assert_close(
        score_multi_vector_embeddings(model, queries, docs), lite_matrix(model, TEXTS_Q, TEXTS_D), atol=1e-5, rtol=0
    )
    with pytest.raises(MultiVectorError, match=r"document embeddings\[0\] has shape \(\d+, 6\)"):
        score_multi_vector_embeddings(model, queries, [d[:, :6] for d in docs])
    with pytest.raises(MultiVectorError, match="query embeddings\\[0\\] are not unit vectors"):
        score_multi_vector_embeddings(model, [q * 2 for q in queries], docs)


def test_the_export_command_writes_a_checked_first_stage_encoder(tmp_path, tiny_encoder_dir):
    sys.path.insert(0, str(ROOT / "scripts"))
    from export_multi_vector import main

    folder = save_multi_vector(tmp_path / "mve", tiny_encoder_dir, **CASES[sorted(CASES)[0]])
    lite_from_multi_vector(str(folder), **SCORER).save_pretrained(tmp_path / "lite")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="exists and is not an empty folder"):
        main([str(tmp_path / "lite"), "--output-dir", str(tmp_path / "taken")])
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(SystemExit, match="input"):
        main([str(tmp_path / "lite"), "--output-dir", str(tmp_path / "lite")])
    output = main([str(tmp_path / "lite"), "--output-dir", str(tmp_path / "first-stage")])
    exported, original = MultiVectorEncoder(str(output), device="cpu"), MultiVectorEncoder(str(folder), device="cpu")
    torch.testing.assert_close(  # the round trip: the multi-vector model in, the same multi-vector model out
        maxsim_matrix(exported, TEXTS_Q, TEXTS_D), maxsim_matrix(original, TEXTS_Q, TEXTS_D), atol=1e-5, rtol=0
    )


def test_a_lite_document_cache_serves_the_exported_encoder_and_no_other(tmp_path, tiny_encoder_dir, tokenizer):
    """Either side's stored documents serve the other: a LITE cache gives the encoder exported from the same model
    its vectors (fp16-rounded), and is refused for an encoder exported from another model or not exported at all."""
    from lite_rerank.doc_cache import build_document_cache

    folder = save_multi_vector(tmp_path / "mve", tiny_encoder_dir, **CASES[sorted(CASES)[0]])
    model = lite_from_multi_vector(str(folder), **SCORER)
    documents = {f"d{i}": text for i, text in enumerate(TEXTS_D)}
    cache = build_document_cache(model, documents, tmp_path / "cache", dtype="float16", progress=False)
    encoder = export_multi_vector_encoder(model, tmp_path / "first-stage")
    stored = cached_documents(cache, list(documents), tmp_path / "first-stage")
    for vectors, reference in zip(stored, encoder.encode_document(TEXTS_D)):
        torch.testing.assert_close(vectors, reference, atol=2e-3, rtol=0)
    queries = encoder.encode_query(TEXTS_Q)
    torch.testing.assert_close(
        encoder.similarity(queries, stored), maxsim_matrix(encoder, TEXTS_Q, TEXTS_D), atol=2e-2, rtol=0
    )
    other = tiny_model(tokenizer=tokenizer, projection_dim=12)
    export_multi_vector_encoder(other, tmp_path / "other")
    with pytest.raises(MultiVectorError, match="was built by another LITE model than the one .*other was exported"):
        cached_documents(cache, ["d0"], tmp_path / "other")
    with pytest.raises(MultiVectorError, match="has no lite_export.json"):
        cached_documents(cache, ["d0"], folder)


def test_a_hub_id_of_a_multi_vector_model_is_read_as_one(tmp_path, tiny_encoder_dir):
    """A Hub id (here from an offline Hub cache) of a MultiVectorEncoder becomes the same LITE model as its folder;
    a plain encoder's Hub id stays a plain encoder. Read as a plain encoder, the multi-vector repo would silently
    lose its projection and prompts."""
    folder = save_multi_vector(tmp_path / "mve", tiny_encoder_dir, **CASES[sorted(CASES)[0]])
    hub = tmp_path / "hf" / "hub"
    for repo, source in (("me--colbert-tiny", folder), ("me--bert-tiny", tiny_encoder_dir)):
        snapshot = hub / f"models--{repo}" / "snapshots" / ("0" * 40)
        shutil.copytree(source, snapshot)
        (hub / f"models--{repo}" / "refs").mkdir()
        (hub / f"models--{repo}" / "refs" / "main").write_text("0" * 40)
    code = (
        f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); from modeling_lite import is_multi_vector_model as mv; "
        "from lite_rerank.multi_vector import from_encoder; "
        "m = from_encoder('me/colbert-tiny', scorer='residual', row_hidden_size=48, col_hidden_size=16); "
        f"print(json.dumps([mv('me/colbert-tiny'), mv('me/bert-tiny'), mv('no such/repo id!'), "
        f"m.config.projection_dim, m.compute_score({[[q, d] for q in TEXTS_Q for d in TEXTS_D]!r})]))"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    colbert, bert, invalid, projection_dim, scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert (colbert, bert, invalid, projection_dim) == (True, False, False, 12)
    expected = lite_matrix(lite_from_multi_vector(str(folder), **SCORER), TEXTS_Q, TEXTS_D)
    torch.testing.assert_close(torch.tensor(scores).view(expected.shape), expected, atol=1e-5, rtol=0)
