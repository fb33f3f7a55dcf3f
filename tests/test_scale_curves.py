"""benchmarks/scale.py runs end to end on tiny sizes (this checks the script and its plot, not speed)."""

import json
import sys

import pytest
from conftest import ROOT, needs_shared_data

sys.path.insert(0, str(ROOT / "benchmarks"))
import scale  # noqa: E402


@pytest.mark.slow
@needs_shared_data
def test_scale_smoke_run_writes_curves_and_a_plot(tmp_path):
    points = scale.main(
        [
            "--smoke",
            "--output",
            str(tmp_path / "scale.json"),
            "--plot",
            str(tmp_path / "scale.png"),
            "--work-dir",
            str(tmp_path / "work"),
            "--dtype",
            "float32",
        ]
    )
    build = points["cache_build"]
    assert [p["passages"] for p in build] == [20, 50] and all(p["documents"] == p["passages"] for p in build)
    assert build[1]["bytes"] > build[0]["bytes"] > 0
    systems = {p["system"] for p in points["rerank_latency"]}
    assert systems == set(scale.VARIANTS) and len(points["rerank_latency"]) == 3 * 2
    estimate = points["msmarco_estimate"]
    assert estimate["cache_bytes_384d_fp16"] == pytest.approx(
        build[-1]["vector_bytes_per_document"] * scale.MSMARCO_PASSAGES
    )
    assert json.loads((tmp_path / "scale.json").read_text())["dtype"] == "float32"
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
