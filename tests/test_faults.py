"""Fault and bad-input cases a user hits (issue 13): each ends in a clear error naming the file, flag or field, or in
the right result; nothing is deleted that the command did not create. Labels (D = data lost, S = silently wrong)
follow the issue. Training and staging cases live with their tools (test_train_accelerate.py, test_push_to_hub.py)."""

import json
import shutil

import pytest
import torch
from conftest import DOCUMENTS, QUERIES, tiny_model
from safetensors.torch import load_file, save_file

import eval_rerank
from handler import MAX_BATCH_SIZE, MAX_TEXTS, EndpointHandler
from lite_rerank.doc_cache import CacheError, DocumentCache, build_document_cache, rerank_with_cache
from lite_rerank.evaluation import load_metrics
from modeling_lite import LiteModel

CORPUS = {f"d{i}": f"{doc} {i}" for i, doc in enumerate(DOCUMENTS * 3)}


def eval_args(model_dir, beir_fixture, *extra):
    return [
        "--model",
        f"m={model_dir}",
        "--data",
        str(beir_fixture),
        "--run",
        str(beir_fixture / "run.trec"),
        "--no-progress",
        *extra,
    ]


# ---------------------------------------------------------------- S1: non-finite scores


def test_s1_a_model_with_nan_scores_gets_an_error_not_the_first_stage_metrics(tmp_path, tokenizer, beir_fixture):
    model = tiny_model(tokenizer=tokenizer)
    with torch.no_grad():
        model.lite_scorer.out.bias.fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan")
    with pytest.raises(SystemExit, match="m: scores that are not finite"):
        eval_rerank.main(eval_args(tmp_path / "nan", beir_fixture, "--output", str(tmp_path / "out.json")))
    assert not (tmp_path / "out.json").exists()


def test_s1_the_metric_module_refuses_non_finite_scores():
    with pytest.raises(ValueError, match="query 1: scores that are not finite"):
        load_metrics().compute(
            predictions=[[1.0, 0.0], [float("nan"), 0.5]], references=[[1, 0], [0, 1]], judged_relevances=[[1], [1]]
        )


# ---------------------------------------------------------------- S3: duplicate candidates


def test_s3_a_run_listing_a_document_twice_is_refused_with_its_line(tmp_path, saved_tiny_model, beir_fixture):
    run = beir_fixture / "run.trec"
    run.write_text(run.read_text() + "q0 Q0 d0 5 1.0 bm25\n")
    with pytest.raises(SystemExit, match=r"run.trec:10: document d0 is listed twice for query q0 \(first at line 2\)"):
        eval_rerank.main(eval_args(saved_tiny_model, beir_fixture))


# ---------------------------------------------------------------- S4, S5: the document cache


def test_s4_a_changed_passage_is_not_scored_from_its_stale_vectors(tmp_path, saved_tiny_model, beir_fixture):
    args = eval_args(saved_tiny_model, beir_fixture, "--doc-cache", str(tmp_path / "caches"))
    eval_rerank.main(args)
    corpus = beir_fixture / "corpus.jsonl"
    corpus.write_text(
        corpus.read_text().replace(
            '"_id": "d3", "title": "", "text": "', '"_id": "d3", "title": "", "text": "edited: '
        )
    )
    with pytest.raises(SystemExit, match=r"1 passage\(s\) changed since they were cached \(e.g. 'd3'\)"):
        eval_rerank.main(args)


@pytest.fixture
def cache(tmp_path, tokenizer):
    model = tiny_model(tokenizer=tokenizer)
    return model, build_document_cache(model, CORPUS, tmp_path / "cache", "float32", chunk_docs=5, progress=False)


def test_s5_another_models_cache_is_refused_on_the_read_path(cache, tokenizer):
    model, built = cache
    other = tiny_model(seed=3, tokenizer=tokenizer)
    assert rerank_with_cache(model, QUERIES[0], ["d0", "d1"], built)  # the builder reads it
    with pytest.raises(CacheError, match="built by another model"):
        rerank_with_cache(other, QUERIES[0], ["d0", "d1"], built)
    with torch.no_grad():  # the same model object, changed in place: checked again
        model.lite_scorer.out.bias.add_(1.0)
    with pytest.raises(CacheError, match="built by another model"):
        rerank_with_cache(model, QUERIES[0], ["d0", "d1"], built)


@pytest.mark.parametrize("damage", ["flipped byte", "edited lengths", "cut short"])
def test_s5_a_damaged_chunk_is_refused_by_name_and_a_rebuild_repairs_it(tmp_path, cache, damage):
    model, _ = cache
    chunk = tmp_path / "cache" / "chunk-00001.safetensors"
    expected = rerank_with_cache(model, QUERIES[0], ["d5", "d6", "d0"], DocumentCache(tmp_path / "cache"))
    if damage == "flipped byte":
        data = bytearray(chunk.read_bytes())
        data[-7] ^= 0xFF
        chunk.write_bytes(bytes(data))
    elif damage == "edited lengths":
        from safetensors import safe_open

        with safe_open(str(chunk), framework="pt") as handle:
            metadata = handle.metadata()
        tensors = load_file(chunk)
        tensors["lengths"][0] -= 1
        save_file(tensors, str(chunk), metadata=metadata)
    else:
        chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(CacheError, match="chunk-00001.safetensors"):
        rerank_with_cache(model, QUERIES[0], ["d5", "d6", "d0"], DocumentCache(tmp_path / "cache"))
    repaired = build_document_cache(model, CORPUS, tmp_path / "cache", "float32", chunk_docs=5, progress=False)
    assert len(repaired) == len(CORPUS)
    again = rerank_with_cache(model, QUERIES[0], ["d5", "d6", "d0"], repaired)
    assert [r["id"] for r in again] == [r["id"] for r in expected]
    assert [r["score"] for r in again] == pytest.approx([r["score"] for r in expected], abs=1e-6)


# ---------------------------------------------------------------- S7: a config that no longer fits its weights


def test_s7_a_config_switched_from_maxsim_to_lite_is_refused(tmp_path, tokenizer):
    tiny_model(tokenizer=tokenizer, scorer="maxsim").save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "scorer": "lite"}))
    with pytest.raises(ValueError, match=r"lacks \d+ weight\(s\) this config needs.*scorer='lite'"):
        LiteModel.from_pretrained(tmp_path / "m")


# ---------------------------------------------------------------- S8: the model API and the handler


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.rerank("q", DOCUMENTS, top_n=-1), "top_n must be a positive integer"),
        (lambda m: m.rerank("q", DOCUMENTS, top_n=0), "top_n must be a positive integer"),
        (lambda m: m.compute_score("ab"), r"takes \[query, document\]"),
        (lambda m: m.rerank("q", None), "documents must be a list of strings, got NoneType"),
        (lambda m: m.rerank("q", DOCUMENTS, batch_size=0), "batch_size must be a positive integer"),
    ],
)
def test_s8_bad_api_arguments_are_refused(tokenizer, call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_model(tokenizer=tokenizer))


def test_s8_rerank_takes_any_iterable_of_documents(tokenizer):
    model = tiny_model(tokenizer=tokenizer)
    assert model.rerank("q", (doc for doc in DOCUMENTS)) == model.rerank("q", list(DOCUMENTS))


@pytest.fixture(scope="module")
def handler(saved_tiny_model):
    return EndpointHandler(str(saved_tiny_model))


def test_s8_handler_reads_return_documents_as_a_boolean(handler):
    texts = DOCUMENTS[:2]
    for value, with_text in ((False, False), ("false", False), ("False", False), (True, True), ("true", True)):
        out = handler({"inputs": {"query": "q", "texts": texts, "return_documents": value}})
        assert all(("text" in r) == with_text for r in out), value


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"inputs": {"query": "q", "texts": ["t"] * (MAX_TEXTS + 1)}}, f"at most {MAX_TEXTS}"),
        ({"inputs": [["q", "d"]] * (MAX_TEXTS + 1)}, f"at most {MAX_TEXTS}"),
        ({"inputs": [["q", "d"]], "parameters": {"batch_size": 1e9}}, f"integer from 1 to {MAX_BATCH_SIZE}"),
        ({"inputs": [["q", "d"]], "parameters": {"batch_size": "abc"}}, "parameters.batch_size"),
        ({"inputs": [["q", "d"]], "parameters": {"batch_size": 0}}, "parameters.batch_size"),
        ({"inputs": [["q", "d"]], "parameters": {"batch_size": -1}}, "parameters.batch_size"),
        ({"inputs": [["q", "d"]], "parameters": [1, 2]}, '"parameters" must be a JSON object'),
        ({"inputs": {"query": "q", "texts": ["t"], "return_documents": "maybe"}}, '"return_documents"'),
    ],
)
def test_s8_handler_caps_and_checks_requests(handler, payload, message):
    with pytest.raises(ValueError, match=message):
        handler(payload)


# ---------------------------------------------------------------- unclear errors: eval_rerank's inputs


def test_a_missing_model_folder_is_named(tmp_path, beir_fixture):
    with pytest.raises(SystemExit, match=r"--model m=.*nowhere: no model folder there"):
        eval_rerank.main(eval_args(tmp_path / "nowhere", beir_fixture))


def test_every_model_is_checked_before_any_is_scored(tmp_path, saved_tiny_model, beir_fixture, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(saved_tiny_model, bad)
    (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:64])  # cut short
    args = [
        "--model",
        f"good={saved_tiny_model}",
        "--model",
        f"bad={bad}",
        "--data",
        str(beir_fixture),
        "--run",
        str(beir_fixture / "run.trec"),
        "--output",
        str(tmp_path / "out.json"),
        "--no-progress",
    ]
    with pytest.raises(SystemExit, match=r"--model bad=.*model.safetensors does not read"):
        eval_rerank.main(args)
    assert "scoring with" not in capsys.readouterr().err and not (tmp_path / "out.json").exists()


def test_a_model_folder_without_a_tokenizer_is_named(tmp_path, beir_fixture):
    tiny_model().save_pretrained(tmp_path / "bare")
    with pytest.raises(SystemExit, match=r"bare.*tokenizer"):
        eval_rerank.main(eval_args(tmp_path / "bare", beir_fixture))
