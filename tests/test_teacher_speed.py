"""benchmarks/teacher_speed.py runs end to end on a tiny cross-encoder (this checks the script, not speed)."""

import sys

import pytest
from conftest import ROOT, write_beir_fixture, write_jsonl

sys.path.insert(0, str(ROOT / "benchmarks"))
import teacher_speed  # noqa: E402


@pytest.mark.slow
def test_every_form_is_timed_and_compared_with_the_reference(tmp_path, tiny_cross_encoder_dir):
    rows = [{"query": f"query {i}", "positive": f"passage {i}", "negatives": ["other", "more"]} for i in range(10)]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    beir = write_beir_fixture(tmp_path / "selection")
    (beir / "qrels" / "dev.tsv").rename(beir / "qrels" / "selection.tsv")
    (beir / "run.trec").rename(beir / "bm25.selection.trec")
    report = teacher_speed.main(
        [
            "--teacher",
            str(tiny_cross_encoder_dir),
            "--pairs-from",
            str(data),
            "--pairs",
            "25",
            "--selection",
            str(beir),
            "--forms",
            "float32",
            "int8",
            "--output",
            str(tmp_path / "speed.json"),
        ]
    )
    assert report["pairs"] == 25 and set(report["forms"]) == {"float32", "int8"}
    reference = report["forms"]["float32"]
    assert reference["spearman_vs_reference"] == 1.0 and reference["max_abs_difference"] == 0.0
    assert all(row["pairs_per_s"] > 0 and 0 <= row["selection_mrr@10"] <= 1 for row in report["forms"].values())
    assert (tmp_path / "speed.json").is_file() and report["hardware"]["threads"] >= 1
