"""research/investigate_scorer.py on the embedded Debian sample with a tiny model (a smoke run of every probe)."""

import sys

import pytest
from product_fixtures import ROOT, minilm_path, saved_tiny_model, tokenizer  # noqa: F401 (fixtures)

pytestmark = pytest.mark.research

sys.path.insert(0, str(ROOT / "research"))
import investigate_scorer  # noqa: E402

import eval_rerank  # noqa: E402

SAMPLE = ROOT / "data" / "debian-sample"


def test_probes_run_and_the_unchanged_scorer_matches_eval_rerank(tmp_path, saved_tiny_model):  # noqa: F811
    report = investigate_scorer.main(
        [
            "--model",
            str(saved_tiny_model),
            "--data",
            str(SAMPLE),
            "--max-queries",
            "12",
            "--max-triplets",
            "160",
            "--heldout",
            "32",
            "--epochs",
            "1",
            "--dtype",
            "float32",
            "--variants",
            *investigate_scorer.VARIANTS,
            "--output",
            str(tmp_path / "report.json"),
        ]
    )
    # The scorer as trained, on the script's cached similarities, equals eval_rerank on the same queries.
    reference = eval_rerank.main(
        [
            "--model",
            f"m={saved_tiny_model}",
            "--data",
            str(SAMPLE),
            "--split",
            "dev",
            "--run",
            str(SAMPLE / "runs" / "bm25.dev.trec"),
            "--max-queries",
            "12",
            "--no-progress",
        ]
    )
    assert report["dev: LITE scorer"] == pytest.approx(reference["m"]["mrr@10"], abs=1e-6)
    assert {"dev: MaxSim on the LITE-trained encoder", "dev: LITE on the first 96 passage tokens"} <= report.keys()
    trained = [key for key in report if "on the frozen encoder" in key]
    assert len(trained) == len(investigate_scorer.VARIANTS)  # one epoch each
    for key in trained:
        assert 0.0 <= report[key]["heldout"]["accuracy"] <= 1.0 and 0.0 <= report[key]["dev mrr@10"] <= 1.0
    for key in ("heldout: LITE scorer", "heldout: MaxSim on the LITE-trained encoder"):
        assert 0.0 <= report[key]["accuracy"] <= 1.0 and report[key]["ce"] > 0
    assert (tmp_path / "report.json").exists()
