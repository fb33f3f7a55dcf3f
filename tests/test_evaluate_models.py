"""scripts/evaluate_models.py (issue 56): any model, or two, on any BEIR folder and split, with BM25 made on the fly
when no run is given, the table and the paired tests — checked against eval_rerank.py's runs and the paired test
computed from them independently."""

import json
import shutil
import sys

import pytest
from conftest import ROOT, tiny_model
from test_mine_bm25_negatives import beir  # noqa: F401 (fixture)

from lite_rerank.data import read_qrels, read_trec_run
from lite_rerank.significance import compare, reciprocal_ranks

sys.path.insert(0, str(ROOT / "scripts"))
import evaluate_models  # noqa: E402


@pytest.fixture
def two_models(tmp_path, tokenizer):
    tiny_model(tokenizer=tokenizer, scorer="residual").save_pretrained(tmp_path / "residual")
    tiny_model(seed=3, tokenizer=tokenizer, scorer="maxsim").save_pretrained(tmp_path / "maxsim")
    return tmp_path / "residual", tmp_path / "maxsim"


def test_two_models_on_a_split_without_a_run_get_bm25_and_the_paired_tests(tmp_path, beir, two_models):  # noqa: F811
    data = beir[0]
    shutil.copy(data / "qrels" / "train.tsv", data / "qrels" / "test.tsv")  # a split with no shipped run
    model, baseline = two_models
    out = tmp_path / "eval"
    result = evaluate_models.main(
        [str(model), "--baseline", str(baseline), "--data", str(data), "--split", "test", "--output-dir", str(out)]
        + ["--dtype", "float32", "--no-progress"]
    )
    assert (out / "bm25.test.trec").is_file()  # made here: the folder ships none for this split
    assert set(result["results"]) == {"first-stage", "residual", "maxsim"}
    qrels = read_qrels(data / "qrels" / "test.tsv")
    rr = {name: reciprocal_ranks(read_trec_run(out / f"results.{name}.trec"), qrels) for name in result["results"]}
    expected = compare(rr["maxsim"], rr["residual"])
    assert result["paired_tests"]["residual vs maxsim"] == expected
    assert result["paired_tests"]["maxsim vs first-stage"] == compare(rr["first-stage"], rr["maxsim"])
    assert json.loads((out / "paired-tests.json").read_text()) == json.loads(json.dumps(result["paired_tests"]))
    assert result["results"]["residual"]["num_queries"] == len(qrels)


def test_the_output_may_not_hold_a_model(tmp_path, beir, two_models):  # noqa: F811
    model, _ = two_models
    with pytest.raises(SystemExit, match="which is an input of this run"):
        evaluate_models.main([str(model), "--data", str(beir[0]), "--output-dir", str(tmp_path)])
