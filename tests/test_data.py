import gzip

import pytest
import torch
from conftest import tiny_model, write_jsonl

from lite_rerank.data import (
    DataError,
    load_rerank_set,
    msmarco_own_pool_set,
    read_beir_texts,
    read_jsonl,
    read_qrels,
    read_trec_run,
)
from lite_rerank.evaluation import score_rerank_set


def test_beir_rerank_set_reports_id_mismatches(beir_fixture):
    data = load_rerank_set(str(beir_fixture), "dev", str(beir_fixture / "run.trec"))
    assert list(data.queries) == ["q0", "q1", "q2"]
    assert data.candidates["q0"] == ["d3", "d0", "d4", "d1"]  # rank order
    assert data.candidates["q1"] == ["d5", "d1", "d6"]  # sorted by rank column, d99 dropped
    assert data.first_stage_scores["q1"] == [6.0, 5.0, 3.0]
    assert data.candidates["q2"] == []
    assert data.documents["d4"].startswith("Title ")
    assert data.counts == {
        "queries_without_candidates": 1,
        "run_queries_without_judgments": 1,
        "queries_without_text": 1,
        "candidates_missing_from_corpus": 1,
        "judged_documents_missing_from_corpus": 0,
        "queries_with_empty_text": 0,
    }
    assert data.depth == 4
    assert len(load_rerank_set(str(beir_fixture), "dev", str(beir_fixture / "run.trec"), max_queries=2).queries) == 2


def test_msmarco_v21_rows_give_own_pools():
    rows = [
        {"query_id": 7, "query": "q7", "passages": {"is_selected": [0, 1, 0], "passage_text": ["a", "b", "c"]}},
        {"query_id": 8, "query": "q8", "passages": {"is_selected": [0, 0], "passage_text": ["d", "e"]}},
        {"query_id": 9, "query": "q9", "passages": {"is_selected": [1], "passage_text": ["f"]}},
    ]
    data = msmarco_own_pool_set(rows)
    assert list(data.queries) == ["7", "9"] and data.counts == {"queries_without_selected_passage": 1}
    assert data.candidates["7"] == ["7-0", "7-1", "7-2"] and data.qrels["7"] == {"7-0": 0, "7-1": 1, "7-2": 0}
    assert data.documents["7-1"] == "b" and "own pool" in data.protocol
    assert list(msmarco_own_pool_set(rows, max_queries=1).queries) == ["7"]


@pytest.mark.parametrize(
    "content, reader, message",
    [
        ("q1 Q0 d1 1 0.5\n", read_trec_run, r"run.txt:1: expected 6 columns"),
        ("q1 Q0 d1 1 0.5 x\nq1 Q0 d2 two 0.4 x\n", read_trec_run, r"run.txt:2: rank 'two'"),
        ("", read_trec_run, r"run.txt: no candidates"),
        ("query-id\tcorpus-id\tscore\nq1\td1\n", read_qrels, r"run.txt:2: expected 3 \(BEIR\) or 4"),
        ("q1 0 d1 yes\n", read_qrels, r"run.txt:1: relevance 'yes'"),
    ],
)
def test_malformed_lines_fail_with_file_and_line(tmp_path, content, reader, message):
    path = tmp_path / "run.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        reader(path)


def test_jsonl_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.write('{"_id": "d1", "text": "ok"}\n\n{"_id": "d2"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl.gz:3: missing field\(s\) \['text'\]"):
        read_beir_texts(path, with_title=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{not json}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        list(read_jsonl(bad))
    with pytest.raises(DataError, match="file not found"):
        list(read_jsonl(tmp_path / "absent.jsonl"))


def test_bad_specs_are_explained(tmp_path, beir_fixture):
    with pytest.raises(DataError, match="needs --run"):
        load_rerank_set(str(beir_fixture))
    with pytest.raises(DataError, match="not a BEIR folder"):
        load_rerank_set(str(tmp_path / "nothing-here"))
    rows = write_jsonl(tmp_path / "msmarco.jsonl", [{"query": "q", "passages": {}}])
    with pytest.raises(DataError, match=r"msmarco.jsonl:1: missing field\(s\) \['query_id'\]"):
        load_rerank_set(str(rows))


def test_dev_scoring_under_bf16_autocast_matches_float32(beir_fixture, tokenizer):
    """Dev selection in a bf16 run scores inside accelerator.autocast(): the whole scoring path must run there and give
    the float32 scores to bf16 precision (a dtype clash there once stopped training at the first evaluation)."""
    model = tiny_model(tokenizer=tokenizer)
    data = load_rerank_set(str(beir_fixture), "dev", str(beir_fixture / "run.trec"))
    expected = score_rerank_set(model, data, progress=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = score_rerank_set(model, data, progress=False)
    assert scores.keys() == expected.keys() and any(expected.values())
    for qid, values in expected.items():
        torch.testing.assert_close(torch.tensor(scores[qid]), torch.tensor(values), atol=5e-2, rtol=5e-2)
