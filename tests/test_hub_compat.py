"""scripts/check_hub_compat.py: every README route of a staged Hub folder, in a fresh process, against the source
model's scores. The whole release matrix runs in CI (.ci/run) and by hand (`--all`); here, the running environment."""

import copy
import math
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import check_hub_compat  # noqa: E402

from lite_rerank.publishing import route_problems  # noqa: E402


@pytest.mark.slow
def test_every_route_reproduces_the_source_model_in_this_environment(tmp_path, capsys):
    assert check_hub_compat.main(["--current-env", "--work-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    # the small staged models, then each shipped student's committed folder
    assert table.count("| ok |") == len(check_hub_compat.MODELS) + len(check_hub_compat.shipped_models()) > 3
    for folder in check_hub_compat.shipped_models().values():
        assert f"| {folder.name} (models/) | ok |" in table


def good_report(expected):
    sigmoid = [1 / (1 + math.exp(-x)) for x in expected]
    order = sorted(range(3), key=lambda i: -expected[i])  # the first three PAIRS share their query
    return {
        "versions": {"transformers": "4.57.6"},
        "AutoConfig": {"model_type": "lite_reranker", "scorer": "lite", "module": "transformers_modules.x"},
        "AutoTokenizer": {"ids": [101, 102], "prompted": False},
        "AutoTokenizer (trust_remote_code=False)": {"ids": [101, 102]},
        "AutoModel": {
            "module": "transformers_modules.x",
            "compute_score": expected,
            "rerank": [[i, expected[i]] for i in order],
        },
        "AutoModelForSequenceClassification": {"logits": expected},
        "CrossEncoder": {"predict_default": sigmoid, "rank": [[i, sigmoid[i]] for i in order]},
        "pipeline": {"default": sigmoid, "raw": expected},
        "handler": {"pairs": expected, "ranked": [[i, expected[i], True] for i in order]},
    }


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda r: r["pipeline"].update(default=r["pipeline"]["raw"]), "pipeline (sigmoid)"),
        (
            lambda r: r["AutoModelForSequenceClassification"].update(logits=[0.0] * 4),
            "AutoModelForSequenceClassification",
        ),
        (lambda r: r.update(CrossEncoder={"error": "ImportError: x"}), "CrossEncoder: ImportError"),
        (lambda r: r["AutoTokenizer"].update(prompted=True), "asked to run custom code"),
        (lambda r: r["handler"]["ranked"].reverse(), "handler ranking"),
    ],
)
def test_the_check_reports_a_route_that_is_off(break_it, message):
    expected = [0.3, -0.1, 0.2, 0.05]
    pairs, tolerance = check_hub_compat.PAIRS, check_hub_compat.TOLERANCE
    assert route_problems(good_report(expected), pairs, expected, "lite", tolerance) == []
    report = copy.deepcopy(good_report(expected))
    break_it(report)
    assert any(message in problem for problem in route_problems(report, pairs, expected, "lite", tolerance))


def test_a_residual_models_crossencoder_and_pipeline_must_return_raw_scores():
    """A residual config asks both for raw scores (a sigmoid saturates on its scale): sigmoids there are an error."""
    expected = [30.0, 18.5, 25.0, 2.0]
    pairs, tolerance = check_hub_compat.PAIRS, check_hub_compat.TOLERANCE
    report = good_report(expected)
    report["AutoConfig"]["scorer"] = "residual"
    found = route_problems(report, pairs, expected, "residual", tolerance)
    assert any("CrossEncoder.predict" in p for p in found) and any("pipeline (sigmoid)" in p for p in found)
    report["CrossEncoder"]["predict_default"] = expected
    report["pipeline"]["default"] = expected
    assert route_problems(report, pairs, expected, "residual", tolerance) == []
