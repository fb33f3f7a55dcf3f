"""research/plots.py draws both pictures from small inputs."""

import json
import sys

import pytest
from product_fixtures import ROOT

pytestmark = pytest.mark.research

sys.path.insert(0, str(ROOT / "research"))
import plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def test_learning_curve_and_quality_cost(tmp_path):
    records = [{"step": 10, "loss": 1.0}, {"step": 20, "dev_mrr@10": 0.5}, {"step": 40, "dev_mrr@10": 0.6}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    points = plots.main(
        ["curve", str(tmp_path / "metrics.jsonl"), str(tmp_path / "c.png"), "--baseline", "BM25", "0.4"]
    )
    assert points == {tmp_path.name: [(20, 0.5), (40, 0.6)]} and (tmp_path / "c.png").read_bytes()[:8] == PNG
    # several runs on one picture, each named; a resumed run's repeated step keeps its later record
    (tmp_path / "other.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records + [records[1] | {"dev_mrr@10": 0.55}])
    )
    series = plots.main(
        ["curve", f"LITE={tmp_path / 'metrics.jsonl'}", f"MaxSim={tmp_path / 'other.jsonl'}", str(tmp_path / "s.png")]
    )
    assert series == {"LITE": [(20, 0.5), (40, 0.6)], "MaxSim": [(20, 0.55), (40, 0.6)]}
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG
    # two bare paths in folders of one name would draw one line under that name: refused
    for folder in ("a", "b"):
        (tmp_path / folder / "lite").mkdir(parents=True)
        (tmp_path / folder / "lite" / "metrics.jsonl").write_text((tmp_path / "metrics.jsonl").read_text())
    with pytest.raises(SystemExit):
        plots.main(
            ["curve", str(tmp_path / "a" / "lite" / "metrics.jsonl"), str(tmp_path / "b" / "lite" / "metrics.jsonl")]
            + [str(tmp_path / "t.png")]
        )
    assert not (tmp_path / "t.png").exists()
    systems = {
        "systems": [
            {"name": "LITE", "mrr@10": 0.7, "ms_30": 5.0, "ms_1000": 100.0},
            {"name": "cross-encoder", "mrr@10": 0.8, "ms_30": 500.0, "ms_1000": 17000.0},
        ]
    }
    (tmp_path / "q.json").write_text(json.dumps(systems))
    plots.main(["quality-cost", str(tmp_path / "q.json"), str(tmp_path / "q.png")])
    assert (tmp_path / "q.png").read_bytes()[:8] == PNG
