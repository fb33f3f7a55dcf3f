"""benchmarks/gpu_check.py (issue 57) in its CPU quick mode: every step of the GPU check runs — the paper recipe's
launch with a checkpoint and an exact resume, the evaluation, the benchmark — and its JSON says what it measured."""

import json
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


@pytest.mark.slow
def test_the_gpu_check_runs_its_steps_in_quick_mode(tmp_path):
    record = gpu_check.main(["run", "--quick", "--output", str(tmp_path / "check.json"), "--work-dir", str(tmp_path)])
    assert record["ok"], record.get("error")
    assert json.loads((tmp_path / "check.json").read_text()) == json.loads(json.dumps(record))
    record = json.loads((tmp_path / "check.json").read_text())  # as it is read back: JSON keys
    assert set(record["steps"]) == {
        "train: straight",
        "train: first half",
        "train: resumed",
        "evaluate",
        "bench_rerank",
    }
    assert record["resume"] == {"bitwise_equal": True, "max_abs_difference": 0.0}  # a stop and a resume change nothing
    assert record["training"]["steps"] == 6 and set(record["training"]["selection_mrr@10"]) == {"3", "6"}
    assert record["evaluation"]["models"]["LITE"]["num_queries"] == 20
    assert {target["what"] for target in record["bench"]["targets"]} >= {"zero-term residual / MaxSim"}
    assert not any(tmp_path.glob("lite-gpu-check-*"))  # its work folder is removed


def test_without_a_gpu_the_full_check_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(SystemExit, match="no GPU here"):
        gpu_check.main(["run", "--output", str(tmp_path / "check.json")])
