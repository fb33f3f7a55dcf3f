import json

import pytest
import torch
from conftest import DOCUMENTS, QUERIES, tiny_model

import eval_rerank
from lite_rerank.doc_cache import DocumentCache, build_document_cache, rerank_with_cache
from lite_rerank.embeddings import TokenEmbeddingStore

CORPUS = {f"d{i}": f"{doc} {i}" for i, doc in enumerate(DOCUMENTS * 5)}


@pytest.fixture
def model(tokenizer):
    return tiny_model(tokenizer=tokenizer, projection_dim=16)


def direct(model, ids):
    with torch.no_grad():
        return model.encode_documents([CORPUS[i] for i in ids])


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-6), ("float16", 2e-3), ("int8", 2e-2)])
def test_cache_returns_what_encode_documents_returns(tmp_path, model, dtype, tolerance):
    cache = build_document_cache(model, CORPUS, tmp_path / "cache", dtype=dtype, chunk_docs=7, progress=False)
    assert len(cache) == 20 and len(cache.manifest["chunks"]) == 3
    ids = ["d19", "d0", "d8", "d3"]  # spread over three chunks, in any order
    vectors, mask = cache.get(ids)
    expected, expected_mask = direct(model, ids)
    assert torch.equal(mask, expected_mask)
    torch.testing.assert_close(vectors, expected, atol=tolerance, rtol=0)
    per_vector = {"float32": 16 * 4, "float16": 16 * 2, "int8": 16 + 2}[dtype]
    mean_tokens = direct(model, list(CORPUS))[1].sum().item() / len(CORPUS)  # only real tokens are stored
    assert cache.bytes_per_document == pytest.approx(mean_tokens * per_vector)


def test_reading_a_cache_holds_a_bounded_number_of_chunks(tmp_path, model):
    build_document_cache(model, CORPUS, tmp_path / "cache", chunk_docs=4, progress=False)
    cache = DocumentCache(tmp_path / "cache", max_chunks_in_memory=1)
    vectors, _ = cache.get(["d0", "d19", "d5"])
    assert len(cache._loaded) == 1 and vectors.shape == (3, 24, 16)
    with pytest.raises(KeyError, match="not in the cache"):
        cache.get(["d0", "nope"])


def test_interrupted_build_resumes_and_a_foreign_model_is_refused(tmp_path, model, tokenizer):
    first_half = dict(list(CORPUS.items())[:10])
    build_document_cache(model, first_half, tmp_path / "cache", chunk_docs=8, progress=False)
    (tmp_path / "cache" / ".partial-chunk-00002.safetensors").write_bytes(b"cut short")
    cache = build_document_cache(model, CORPUS, tmp_path / "cache", chunk_docs=8, progress=False)
    assert [c["num_docs"] for c in cache.manifest["chunks"]] == [8, 2, 8, 2]  # only the 10 new documents encoded
    torch.testing.assert_close(cache.get(["d15"])[0], direct(model, ["d15"])[0], atol=2e-3, rtol=0)
    other = tiny_model(seed=1, tokenizer=tokenizer, projection_dim=16)
    with pytest.raises(ValueError, match="another model"):
        build_document_cache(other, CORPUS, tmp_path / "cache", progress=False)
    with pytest.raises(ValueError, match="another model"):
        cache.check_model(other)
    assert json.loads((tmp_path / "cache" / "cache.json").read_text())["format"] == "lite-doc-cache/3"


def test_rerank_with_cache_equals_rerank(tmp_path, model):
    cache = build_document_cache(model, CORPUS, tmp_path / "cache", dtype="float32", progress=False)
    ids = ["d0", "d1", "d2", "d3"]
    cached = rerank_with_cache(model, QUERIES[1], ids, cache)
    direct_ranking = model.rerank(QUERIES[1], [CORPUS[i] for i in ids])
    assert [r["id"] for r in cached] == [ids[r["index"]] for r in direct_ranking]
    assert [r["score"] for r in cached] == pytest.approx([r["score"] for r in direct_ranking], abs=1e-5)


def test_store_files_hold_no_pickle(tmp_path):
    store = TokenEmbeddingStore(4, 3, torch.int8)
    store.add(["a", "b"], torch.randn(2, 4, 3), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).bool())
    store.save(tmp_path / "s.safetensors")
    loaded = TokenEmbeddingStore.load(tmp_path / "s.safetensors")
    assert loaded.quantized and list(loaded.row_of) == ["a", "b"]
    torch.testing.assert_close(loaded.get(["b", "a"])[0], store.get(["b", "a"])[0])
    assert b"pickle" not in (tmp_path / "s.safetensors").read_bytes()[:200]


def test_eval_rerank_scores_from_the_cache_like_without(tmp_path, beir_fixture, tokenizer):
    tiny_model(tokenizer=tokenizer).save_pretrained(tmp_path / "model")
    base = [
        "--model",
        f"m={tmp_path / 'model'}",
        "--data",
        str(beir_fixture),
        "--run",
        str(beir_fixture / "run.trec"),
        "--no-progress",
    ]
    plain = eval_rerank.main(base)
    cached = eval_rerank.main(base + ["--doc-cache", str(tmp_path / "caches"), "--cache-dtype", "float32"])
    again = eval_rerank.main(base + ["--doc-cache", str(tmp_path / "caches"), "--cache-dtype", "float32"])
    assert cached["m"] == plain["m"] == again["m"]
    assert (tmp_path / "caches" / "m" / "cache.json").exists()


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_similarity_from_stored_tokens_equals_padding_then_matmul(tmp_path, model, dtype):
    cache = build_document_cache(model, CORPUS, tmp_path / "cache", dtype=dtype, chunk_docs=6, progress=False)
    with torch.no_grad():
        query, _ = model.encode_queries([QUERIES[2]])
    ids = ["d17", "d2", "d9", "d0", "d13"]  # several chunks
    similarity, mask = cache.similarity(query, ids)
    vectors, expected_mask = cache.get(ids)
    torch.testing.assert_close(similarity, model.similarity(query, vectors), atol=1e-6, rtol=1e-5)
    assert torch.equal(mask, expected_mask) and similarity.shape == (5, 8, 24)
    store = cache._chunk(0)
    one = store.similarity(query, ["d3", "d1"])[0]
    torch.testing.assert_close(one, model.similarity(query, store.get(["d3", "d1"])[0]), atol=1e-6, rtol=1e-5)


def test_similarity_under_bf16_autocast_matches_float32(tmp_path, model):
    """Dev selection during bf16 training scores under autocast, where the block GEMM returns bf16: S stays in the
    query's dtype and equal to the float32 result to bf16 precision (it used to stop with an index_copy_ error)."""
    cache = build_document_cache(model, CORPUS, tmp_path / "cache", dtype="float32", chunk_docs=6, progress=False)
    with torch.no_grad():
        query, _ = model.encode_queries([QUERIES[2]])
    ids = ["d17", "d2", "d9"]
    expected, _ = cache.similarity(query, ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        similarity, _ = cache.similarity(query, ids)
    assert similarity.dtype == query.dtype
    torch.testing.assert_close(similarity, expected, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int8])
@pytest.mark.parametrize("room", [7, 5, 0], ids=["room for all", "room for some", "no room"])
def test_a_reserved_store_holds_its_vectors_once_and_equals_an_unreserved_one(dtype, room):
    """Issue 57: vectors written in place into reserved room (no concatenation copy); more than was reserved is
    appended as before. Either way the store returns what an unreserved one does."""
    batches = [(["a", "b"], torch.randn(2, 4, 3), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).bool()),
               (["c"], torch.randn(1, 4, 3), torch.tensor([[1, 0, 0, 0]]).bool())]  # fmt: skip
    plain, reserved = TokenEmbeddingStore(4, 3, dtype), TokenEmbeddingStore(4, 3, dtype)
    reserved.reserve(room)
    for ids, vectors, mask in batches:
        plain.add(ids, vectors, mask)
        reserved.add(ids, vectors, mask)
    for order in (["a", "b", "c"], ["c", "a"]):
        assert torch.equal(reserved.get(order)[0], plain.get(order)[0])
        query = torch.randn(1, 2, 3)
        assert torch.equal(reserved.similarity(query, order)[0], plain.similarity(query, order)[0])
    assert reserved.nbytes == plain.nbytes  # the store's own bytes: the 7 real vectors
    if room >= 7:
        assert reserved.vectors.untyped_storage().nbytes() == room * 3 * reserved.vectors.element_size()  # a view
