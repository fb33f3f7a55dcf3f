"""Fault cases, second round (issue 24): names that collide, folders two processes touch, ids that repeat, inputs
decoded without naming their file. Each case is driven as a user drives it and ends in the right answer or a clear
error naming the file, line, flag or field; nothing is written over an input. Labels follow the issue (L = data lost,
S = silently wrong, U = unclear error). Training, staging and teacher-scoring cases live with their tools
(test_train_accelerate.py, test_push_to_hub.py, test_teacher_scores.py)."""

import errno
import gzip
import json
import math
import os
import shutil
import sys

import pytest
import torch
from conftest import DOCUMENTS, QUERIES, ROOT, tiny_model, write_jsonl

import eval_rerank
from handler import MAX_CHARS, EndpointHandler
from lite_rerank import data as data_module
from lite_rerank.data import DataError, load_rerank_set, read_trec_run
from lite_rerank.doc_cache import CacheError, DocumentCache, build_document_cache, rerank_with_cache
from lite_rerank.locking import FolderLock
from modeling_lite import LiteModel

sys.path.insert(0, str(ROOT / "scripts"))
import build_doc_cache  # noqa: E402


def evaluate(beir_fixture, *extra, models=None, tmp_output=None):
    models = models if models is not None else []
    args = [*models, "--data", str(beir_fixture), "--run", str(beir_fixture / "run.trec"), "--no-progress", *extra]
    if tmp_output is not None:
        args += ["--output", str(tmp_output)]
    return eval_rerank.main(args)


# ---------------------------------------------------------------- L4: outputs never replace inputs


def test_l4_output_equal_to_the_run_is_refused_before_any_work(beir_fixture, saved_tiny_model):
    run = beir_fixture / "run.trec"
    before = run.read_bytes()
    with pytest.raises(SystemExit, match=r"would write .*run.trec, which is an input of this run"):
        evaluate(beir_fixture, models=["--model", f"m={saved_tiny_model}"], tmp_output=run)
    assert run.read_bytes() == before


def test_l4_a_models_trec_file_may_not_be_the_input_run(tmp_path, beir_fixture, saved_tiny_model):
    runs = tmp_path / "runs"
    runs.mkdir()
    run = runs / "bm25.dev.trec"
    shutil.copy(beir_fixture / "run.trec", run)
    before = run.read_bytes()
    args = ["--model", f"dev={saved_tiny_model}", "--data", str(beir_fixture), "--run", str(run)]
    with pytest.raises(SystemExit, match=r"bm25.dev.trec, which is an input of this run"):
        eval_rerank.main([*args, "--output", str(runs / "bm25.json"), "--no-progress"])
    assert run.read_bytes() == before and not (runs / "bm25.json").exists()


# ---------------------------------------------------------------- S2-S4, S15, S18: row names


@pytest.mark.parametrize(
    "names, message",
    [
        (["first-stage"], "'first-stage' names the first stage's own row"),
        (["First-Stage"], "names the first stage's own row"),
        (["lite", "lite"], "row name 'lite' is given twice"),
        (["a b", "a_b"], r"'a_b' is given and 'a b' \(one file name, 'a_b'\)"),
        (["LITE", "lite"], "one file name"),
        ([".."], "a row name is letters"),
        (["../up"], "a row name is letters"),
        (["x/y"], "a row name is letters"),
    ],
)
def test_s2_s4_s15_reserved_repeated_colliding_and_path_like_names_are_refused(
    tmp_path, beir_fixture, saved_tiny_model, names, message
):
    models = [arg for name in names for arg in ("--model", f"{name}={saved_tiny_model}")]
    with pytest.raises(SystemExit, match=message):
        evaluate(beir_fixture, "--doc-cache", str(tmp_path / "caches"), models=models, tmp_output=tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists() and not tmp_path.joinpath("caches").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "beir") == []


def test_s18_default_names_from_paths_that_collide_are_refused_with_the_fix(tmp_path, beir_fixture, saved_tiny_model):
    for experiment in ("exp1", "exp2"):
        shutil.copytree(saved_tiny_model, tmp_path / experiment / "lite" / "best")
    models = ["--model", str(tmp_path / "exp1" / "lite" / "best"), "--model", str(tmp_path / "exp2" / "lite" / "best")]
    with pytest.raises(SystemExit, match=r"'lite' is given twice; name each model with NAME=PATH"):
        evaluate(beir_fixture, models=models)


# ---------------------------------------------------------------- S5-S7, S10, S16: ids and judgments


def rewrite(path, transform):
    path.write_text(transform(path.read_text()))


@pytest.mark.parametrize(
    "file, duplicate, message",
    [
        (
            "corpus.jsonl",
            '{"_id": "d2", "title": "", "text": "another d2"}',
            r"corpus.jsonl:9: id 'd2' is given twice \(first at line 3\)",
        ),
        (
            "corpus.jsonl",
            '{"_id": 2, "text": "x"}\n{"_id": "2", "text": "y"}',
            r"corpus.jsonl:10: id '2' is given twice \(first at line 9\)",
        ),
        (
            "queries.jsonl",
            '{"_id": "q1", "text": "the same id"}',
            r"queries.jsonl:5: id 'q1' is given twice \(first at line 2\)",
        ),
        ("qrels/dev.tsv", "q0\td0\t0", r"dev.tsv:8: query q0 judges document d0 twice \(first at line 2\)"),
    ],
)
def test_s5_s6_s7_a_repeated_id_is_refused_with_both_lines(beir_fixture, file, duplicate, message):
    rewrite(beir_fixture / file, lambda text: text + duplicate + "\n")
    with pytest.raises(DataError, match=message):
        load_rerank_set(str(beir_fixture), "dev", str(beir_fixture / "run.trec"))


def test_s10_qrels_whose_documents_are_all_missing_from_the_corpus_are_refused(beir_fixture):
    rewrite(beir_fixture / "qrels" / "dev.tsv", lambda text: text.replace("\td", "\tdoc-"))
    with pytest.raises(DataError, match=r"dev.tsv: none of the \d+ judged documents is in .*corpus.jsonl"):
        load_rerank_set(str(beir_fixture), "dev", str(beir_fixture / "run.trec"))


def test_s10_s16_missing_judged_documents_and_empty_queries_are_said_loudly(beir_fixture, capsys):
    rewrite(beir_fixture / "qrels" / "dev.tsv", lambda text: text.replace("q1\td7", "q1\td70"))
    rewrite(beir_fixture / "queries.jsonl", lambda text: text.replace('"python web framework"', '"  "'))
    evaluate(beir_fixture)
    err = capsys.readouterr().err
    assert "WARNING: 1 judged documents missing from corpus" in err
    assert "WARNING: 1 queries with empty text" in err


# ---------------------------------------------------------------- S8, S9, U1-U4: decoding and numbers


def first_stage_mrr(beir_fixture) -> float:
    return evaluate(beir_fixture)["first-stage"]["mrr@10"]


@pytest.mark.parametrize("file", ["run.trec", "qrels/dev.tsv", "corpus.jsonl", "queries.jsonl"])
def test_s8_u3_a_byte_order_mark_is_read_as_standard_readers_read_it(beir_fixture, file):
    expected = first_stage_mrr(beir_fixture)
    path = beir_fixture / file
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert first_stage_mrr(beir_fixture) == expected


def test_s9_fractional_grades_are_refused_not_truncated(beir_fixture):
    rewrite(beir_fixture / "qrels" / "dev.tsv", lambda text: text.replace("q0\td0\t2", "q0\td0\t0.6"))
    with pytest.raises(DataError, match=r"dev.tsv:2: relevance '0.6' is not an integer"):
        load_rerank_set(str(beir_fixture), "dev", str(beir_fixture / "run.trec"))


def test_u1_a_truncated_gz_is_named(tmp_path, beir_fixture):
    corpus = beir_fixture / "corpus.jsonl"
    packed = gzip.compress(corpus.read_bytes() * 20)
    corpus.unlink()
    (beir_fixture / "corpus.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=r"corpus.jsonl.gz:\d+: the compressed file is damaged or cut short"):
        load_rerank_set(str(beir_fixture), "dev", str(beir_fixture / "run.trec"))


def test_u2_bytes_that_are_not_utf8_are_named_with_their_line(beir_fixture):
    path = beir_fixture / "queries.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"image", b"im\xe9ge")
    path.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match=r"queries.jsonl:3: not UTF-8 text \(byte b'\\xe9' at column \d+\)"):
        load_rerank_set(str(beir_fixture), "dev", str(beir_fixture / "run.trec"))


@pytest.mark.parametrize("score", ["nan", "inf", "-Infinity"])
def test_u4_a_non_finite_score_in_a_run_names_the_run_not_the_model(beir_fixture, score):
    rewrite(beir_fixture / "run.trec", lambda text: text.replace("q1 Q0 d6 4 3.0", f"q1 Q0 d6 4 {score}"))
    with pytest.raises(DataError, match=rf"run.trec:8: score '{score}' is not a finite number"):
        read_trec_run(beir_fixture / "run.trec")


def test_u12_a_lone_surrogate_in_a_text_is_named(beir_fixture):
    rewrite(beir_fixture / "queries.jsonl", lambda text: text.replace("image editor", "image \\ud800editor"))
    with pytest.raises(DataError, match=r"queries.jsonl:3: field 'text' holds an unpaired surrogate"):
        load_rerank_set(str(beir_fixture), "dev", str(beir_fixture / "run.trec"))


def test_s18_a_passage_with_no_text_is_refused_not_scored_as_none(beir_fixture):
    rewrite(
        beir_fixture / "corpus.jsonl",
        lambda text: text.replace('"title": "Title", "text": "grep', '"title": "Title", "text": null, "x": "grep'),
    )
    with pytest.raises(DataError, match=r"corpus.jsonl:5: field 'text' must be a string, got None"):
        load_rerank_set(str(beir_fixture), "dev", str(beir_fixture / "run.trec"))


def test_s18_an_arrow_corpus_passage_with_no_text_is_refused(tmp_path):
    import datasets

    rows = datasets.Dataset.from_list(
        [{"_id": "a", "title": "T", "text": "fine"}, {"_id": "b", "title": "T", "text": None}]
    )
    texts = data_module.ArrowTexts(rows, source="corpus.parquet")
    assert texts["a"] == "T fine"
    with pytest.raises(DataError, match=r"corpus.parquet:2: passage 'b' has no text"):
        texts["b"]


# ---------------------------------------------------------------- U15: a full disk while writing results


def test_u15_a_full_disk_keeps_the_previous_results_and_leaves_no_new_json(tmp_path, beir_fixture, monkeypatch):
    output = tmp_path / "r.json"
    evaluate(beir_fixture, "--max-queries", "2", tmp_output=output)  # earlier results, of other queries
    previous = output.read_bytes()
    written = []

    def full_disk(path, rankings, tag):
        written.append(path)
        path.write_text("half a ")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(eval_rerank, "write_trec_run", full_disk)
    with pytest.raises(OSError, match="No space left"):
        evaluate(beir_fixture, tmp_output=output)
    assert output.read_bytes() == previous  # the earlier results, intact
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("r.", ".partial"))) == [
        "r.first-stage.trec",
        "r.json",
    ]


# ---------------------------------------------------------------- S12: results know which weights they measured


def test_s12_results_record_each_models_path_and_weights(tmp_path, beir_fixture, saved_tiny_model):
    evaluate(beir_fixture, models=["--model", f"m={saved_tiny_model}"], tmp_output=tmp_path / "r.json")
    files = json.loads((tmp_path / "r.json").read_text())["model_files"]
    from lite_rerank.utils import file_sha256

    assert files == {
        "m": {"path": str(saved_tiny_model), "weights_sha256": file_sha256(saved_tiny_model / "model.safetensors")}
    }


# ---------------------------------------------------------------- S0: a tokenizer that does not fit


def test_s0_a_model_folder_whose_tokenizer_lost_its_vocabulary_is_refused(tmp_path, beir_fixture, saved_tiny_model):
    broken = tmp_path / "broken"
    shutil.copytree(saved_tiny_model, broken)
    (broken / "tokenizer.json").unlink()  # tokenizer_config.json stays: transformers 5 builds a 5-token vocabulary
    with pytest.raises(SystemExit, match=r"broken: its tokenizer has \d+ tokens, the encoder's vocabulary 30522"):
        evaluate(beir_fixture, models=["--model", f"m={broken}"])
    with pytest.raises(ValueError, match="its tokenizer has"):
        LiteModel.from_pretrained(broken).rerank("q", ["d"])


# ---------------------------------------------------------------- S11, S18, U12, U17, U18: the Python API


def test_s11_rerank_takes_a_dict_of_id_to_text_and_returns_the_ids(tokenizer):
    model = tiny_model(tokenizer=tokenizer)
    documents = {f"doc-{i}": text for i, text in enumerate(DOCUMENTS)}
    as_dict = model.rerank(QUERIES[0], documents)
    as_list = model.rerank(QUERIES[0], list(DOCUMENTS))
    assert [r["id"] for r in as_dict] == [f"doc-{r['index']}" for r in as_list]
    assert [r["score"] for r in as_dict] == [r["score"] for r in as_list]
    assert [r["document"] for r in as_dict] == [r["document"] for r in as_list]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.compute_score([{"query": "q", "document": "d"}]), r"pair 0 is not a .* \(a dict"),
        (lambda m: m.rerank("q", DOCUMENTS, return_documents="no"), "return_documents must be True or False"),
        (lambda m: m.rerank("q\ud800", DOCUMENTS), r"queries\[0\] holds an unpaired surrogate"),
        (lambda m: m.compute_score([["q", "d\udc00"]]), r"documents\[0\] holds an unpaired surrogate"),
        (lambda m: m.encode_documents([]), "encode_documents: the list of texts is empty"),
        (lambda m: m.encode_queries([]), "encode_queries: the list of texts is empty"),
    ],
)
def test_s11_s18_u12_u18_bad_api_arguments_get_clear_errors(tokenizer, call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_model(tokenizer=tokenizer))


CORPUS = {f"d{i}": f"{doc} {i}" for i, doc in enumerate(DOCUMENTS * 2)}


@pytest.fixture
def cache(tmp_path, tokenizer):
    model = tiny_model(tokenizer=tokenizer)
    return model, build_document_cache(model, CORPUS, tmp_path / "cache", "float32", chunk_docs=3, progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"top_n": -1}, "top_n must be a positive integer or None, got -1"),
        ({"top_n": 0}, "top_n must be a positive integer or None, got 0"),
        ({"top_n": 1.5}, "top_n must be a positive integer or None, got 1.5"),
        ({"query": None}, "query must be a string, got NoneType"),
        ({"doc_ids": "d0 d1"}, "doc_ids must be a list of document ids"),
    ],
)
def test_s18_u17_rerank_with_cache_checks_its_arguments_like_rerank(cache, kwargs, message):
    model, built = cache
    call = {"query": QUERIES[0], "doc_ids": ["d0", "d1", "d2"], **kwargs}
    with pytest.raises(ValueError, match=message):
        rerank_with_cache(model, call.pop("query"), call.pop("doc_ids"), built, **call)
    assert len(rerank_with_cache(model, QUERIES[0], ["d0", "d1", "d2"], built, top_n=2)) == 2


# ---------------------------------------------------------------- the document cache: U14, S14, U9, S19, U10, U16


def test_u14_a_damaged_chunk_header_is_named_not_reported_as_missing_documents(tmp_path, cache):
    model, _ = cache
    chunk = tmp_path / "cache" / "chunk-00001.safetensors"
    data = chunk.read_bytes()
    chunk.write_bytes(data.replace(b'\\"d3\\"', b'\\"d9\\"', 1))  # an id in the header, changed in place
    with pytest.raises(CacheError, match=r"\['chunk-00001.safetensors'\] damaged"):
        rerank_with_cache(model, QUERIES[0], ["d3", "d0"], DocumentCache(tmp_path / "cache"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--chunk-docs", "-1"], "--chunk-docs must be at least 1, got -1"),
        (["--chunk-docs", "0"], "--chunk-docs must be at least 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--max-docs", "-5"], "--max-docs must be at least 1, got -5"),
        (["--max-docs", "0"], "--max-docs must be at least 1, got 0"),
    ],
)
def test_s14_u9_cache_build_flags_are_checked(tmp_path, saved_tiny_model, capsys, flags, message):
    with pytest.raises(SystemExit):
        build_doc_cache.main(
            ["--model", str(saved_tiny_model), "--corpus", "c.jsonl", "--output", str(tmp_path / "c"), *flags]
        )
    assert message in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_s19_u10_a_second_build_on_a_folder_being_built_stops_naming_the_first(tmp_path, tokenizer):
    model = tiny_model(tokenizer=tokenizer)
    with FolderLock(tmp_path / "cache", "document-cache build"):  # the first build, still running
        with pytest.raises(
            CacheError, match=rf"cache is in use by another document-cache build \(process {os.getpid()}"
        ):
            build_document_cache(model, CORPUS, tmp_path / "cache", "float32", progress=False)
        assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".lock"]
    built = build_document_cache(model, CORPUS, tmp_path / "cache", "float32", progress=False)  # once it is done
    assert len(built) == len(CORPUS)


def test_u16_damaged_weights_given_to_the_cache_build_are_named(tmp_path, saved_tiny_model):
    broken = tmp_path / "broken"
    shutil.copytree(saved_tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"")
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "t"}])
    with pytest.raises(SystemExit, match=r"broken: model.safetensors does not read \(.*header too small"):
        build_doc_cache.main(["--model", str(broken), "--corpus", str(corpus), "--output", str(tmp_path / "c")])


# ---------------------------------------------------------------- the handler: U8, U11, S18, request size


def test_u8_a_zero_byte_weights_file_is_named_by_the_handler(tmp_path, saved_tiny_model):
    broken = tmp_path / "broken"
    shutil.copytree(saved_tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"broken: model.safetensors does not read \(.*header too small"):
        EndpointHandler(str(broken))


@pytest.fixture(scope="module")
def handler(saved_tiny_model):
    return EndpointHandler(str(saved_tiny_model))


@pytest.mark.parametrize(
    "payload, message",
    [
        (
            {"inputs": [["q", "d"]], "parameters": {"batch_size": math.nan}},
            r'"parameters.batch_size" must be an integer',
        ),
        (
            {"inputs": [["q", "d"]], "parameters": {"batch_size": math.inf}},
            r'"parameters.batch_size" must be an integer',
        ),
        (
            {"inputs": {"query": "q", "texts": ["a"]}, "parameters": {"top_k": 0}},
            r'"parameters.top_k" must be an integer',
        ),
        ({"inputs": {"query": "q", "texts": ["a"]}, "parameters": {"topk": 2}}, r"\"parameters\" holds \['topk'\]"),
        ({"inputs": {"query": "q", "texts": ["x" * (MAX_CHARS + 1)]}}, r"at most 2,000,000 per request"),
    ],
)
def test_u11_s18_handler_parameters_and_request_size_are_checked(handler, payload, message):
    with pytest.raises(ValueError, match=message):
        handler(payload)


def test_s18_the_handler_honours_top_k(handler):
    texts = list(DOCUMENTS)
    everything = handler({"inputs": {"query": QUERIES[0], "texts": texts}})
    best_two = handler({"inputs": {"query": QUERIES[0], "texts": texts}, "parameters": {"top_k": 2}})
    assert best_two == everything[:2]


def test_an_explicit_bf16_model_scores_on_a_cpu_without_it(tokenizer, cpu_kind):
    """The main job's evaluation used to run a bf16 model through oneDNN's fused op, which fails on AVX2-only CPUs."""
    model = tiny_model(tokenizer=tokenizer).to(torch.bfloat16)
    ranked = model.rerank(QUERIES[0], list(DOCUMENTS))
    assert sorted(r["index"] for r in ranked) == list(range(len(DOCUMENTS)))
