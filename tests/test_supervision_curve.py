"""research/supervision_curve.py --keep-points: a series measured over several sessions grows, never mixes scorers."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "research"))
import supervision_curve  # noqa: E402

VARIANT = "kl from the teacher, 29 hard negatives"


def stored_series(scorer=None):
    series = {"variant": VARIANT, "points": [{"training_rows": n, "difference": 0.0} for n in (5000, 41329)]}
    if scorer:
        series["scorer"] = scorer
    return series


def args_for(*extra):
    base = ["--label", "real", "--sizes", "5000", "13000", "--negatives", "n", "--work-dir", "w", "--results", "r"]
    return supervision_curve.parse_args([*base, "--variant", VARIANT, *extra])


def test_kept_points_are_the_stored_sizes_not_measured_again():
    kept = supervision_curve.kept_points(args_for("--keep-points"), stored_series())
    assert [p["training_rows"] for p in kept] == [41329]


def test_without_keep_points_the_series_is_replaced():
    assert supervision_curve.kept_points(args_for(), stored_series()) == []


def test_a_series_of_another_scorer_is_refused_by_name():
    with pytest.raises(SystemExit, match="'residual' scorer; this run is .* with 'lite'"):
        supervision_curve.kept_points(args_for("--keep-points"), stored_series("residual"))
    with pytest.raises(SystemExit, match="with 'residual'"):
        supervision_curve.kept_points(args_for("--keep-points", "--scorer", "residual"), stored_series())
