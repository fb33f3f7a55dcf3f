"""scripts/supervision_workflow.py end to end on a generated BEIR folder with a tiny encoder: candidates → the packed
supervision → three students → dev once and paired tests; a rerun skips what is done."""

import gzip
import json
import sys

import pytest
from conftest import ROOT
from test_mine_bm25_negatives import DEPTH, beir  # noqa: F401 (fixture)

sys.path.insert(0, str(ROOT / "scripts"))
import mine_bm25_negatives  # noqa: E402
import pack_supervision  # noqa: E402
import supervision_workflow  # noqa: E402

from lite_rerank.data import read_qrels, read_trec_run  # noqa: E402
from lite_rerank.significance import compare, reciprocal_ranks  # noqa: E402
from lite_rerank.utils import file_sha256  # noqa: E402


def packed_supervision(data, tmp_path):
    """Listwise rows of the training queries outside a 4-query selection split, with made-up teacher scores, packed
    as data/debian-supervision is."""
    mined = tmp_path / "mined"
    mine_bm25_negatives.main(
        ["--data", str(data), "--depth", str(DEPTH), "--output-dir", str(mined)]
        + ["--selection-queries", "4", "--negatives-per-query", "3"]
    )
    scored = tmp_path / "scored.train.jsonl.gz"
    with gzip.open(mined / "listwise.train.jsonl.gz", "rt") as rows, gzip.open(scored, "wt") as out:
        for line in rows:
            row = json.loads(line)
            row |= {"teacher_positive": 4.0, "teacher_negatives": [1.0, -1.0, -2.5]}
            out.write(json.dumps(row) + "\n")
    (tmp_path / "scored.train.provenance.json").write_text(json.dumps({"output_sha256": file_sha256(scored)}))
    prefix = tmp_path / "supervision" / "real.top8"
    pack_supervision.main(
        ["pack", "--scored", str(scored), "--corpus", str(data / "corpus.jsonl.gz")] + ["--output", str(prefix)]
    )
    return prefix.parent


@pytest.mark.slow
def test_the_workflow_runs_end_to_end_and_a_rerun_skips_what_is_done(beir, tmp_path, tiny_encoder_dir, capfd):  # noqa: F811
    data = beir[0]
    dev = [f"q{i}" for i in range(16, 24)]
    (data / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\td{q[1:]}\t1\n" for q in dev)
    )
    supervision = packed_supervision(data, tmp_path)
    out = tmp_path / "workflow"
    argv = ["--output-dir", str(out), "--data", str(data), "--supervision", str(supervision)]
    argv += ["--selection-queries", "4", "--depth", str(DEPTH), "--max-steps", "2", "--encoder", str(tiny_encoder_dir)]
    argv += ["--threads", "1", "--batch-size", "4", "--projection-dim", "16"]  # the tiny encoder is 32 wide
    tests = supervision_workflow.main(argv)
    results = json.loads((out / "students-dev.json").read_text())
    assert set(results["models"]) == {"first-stage", "LITE", "MaxSim", "Small-LITE"}
    for name in ("LITE", "MaxSim", "Small-LITE"):
        summary = json.loads((out / name.lower() / "best" / "training_summary.json").read_text())
        assert summary["step"] == 2 and summary["args"]["train_data"] == str(out / "supervision.train.jsonl.gz")
    assert json.loads((out / "small-lite" / "best" / "config.json").read_text())["projection_dim"] == 16
    # the paired tests, recomputed from the TREC runs read back
    qrels = read_qrels(data / "qrels" / "dev.tsv")
    rr = {
        n: reciprocal_ranks(read_trec_run(out / f"students-dev.{n}.trec"), qrels)
        for n in ("LITE", "MaxSim", "Small-LITE")
    }
    assert tests == {n: compare(rr["MaxSim"], rr[n]) for n in ("LITE", "Small-LITE")}
    assert json.loads((out / "paired-tests.json").read_text()) == tests
    capfd.readouterr()
    again = supervision_workflow.main(argv)
    printed = capfd.readouterr().out
    for stage in ("candidates", "supervision", "evaluation"):
        assert f"=== {stage}: skipped" in printed, printed
    assert again == tests
