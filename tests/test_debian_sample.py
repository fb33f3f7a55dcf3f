"""The embedded demo sample's teacher-scored training file: the same triplets as the label file, one finite teacher
logit per passage, and the hashes its provenance note records."""

import json
import math

import pytest
import yaml
from conftest import ROOT

from lite_rerank.data import read_jsonl
from lite_rerank.utils import file_sha256

SAMPLE = ROOT / "data" / "debian-sample"


def test_teacher_file_is_the_label_file_plus_teacher_scores():
    labels = [row for _, row in read_jsonl(SAMPLE / "triplets.train.jsonl.gz")]
    scored = [row for _, row in read_jsonl(SAMPLE / "triplets.teacher.train.jsonl.gz")]
    assert len(scored) == len(labels) == 3000
    for label_row, row in zip(labels, scored):
        assert {k: row[k] for k in ("query", "positive", "negative")} == label_row
        assert all(math.isfinite(row[k]) for k in ("teacher_positive", "teacher_negative"))
    # a useful teacher prefers the labelled positive on most rows
    assert sum(row["teacher_positive"] > row["teacher_negative"] for row in scored) > 0.8 * len(scored)


def test_provenance_matches_the_files():
    provenance = json.loads((SAMPLE / "triplets.teacher.train.provenance.json").read_text())
    assert provenance["sha256"] == file_sha256(SAMPLE / "triplets.train.jsonl.gz")
    assert provenance["output_sha256"] == file_sha256(SAMPLE / "triplets.teacher.train.jsonl.gz")
    assert provenance["rows"] == 3000


@pytest.mark.parametrize("name, loss", [("demo.yaml", "kl"), ("demo_fine_tune.yaml", "margin_mse")])
def test_demo_configs_train_on_the_teacher_scores(name, loss):
    config = yaml.safe_load((ROOT / "configs" / name).read_text())
    assert config["train-data"] == "data/debian-sample/triplets.teacher.train.jsonl.gz"
    assert config["loss"] == loss
