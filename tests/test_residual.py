"""The residual scorer's start: the MaxSim scale fitted to the training loss (lite_rerank/residual.py)."""

import pytest
import torch

from lite_rerank.losses import LOSSES
from lite_rerank.residual import fit_maxsim_scale


def test_the_fitted_scale_is_margin_mse_least_squares_and_a_minimum_of_kl():
    torch.manual_seed(0)
    maxsim = torch.rand(64, 8) * 10
    teacher = 2.7 * maxsim + torch.randn(64, 8)
    scale = fit_maxsim_scale(maxsim, teacher, LOSSES["margin_mse"]())
    student_margins = (maxsim[:, :1] - maxsim[:, 1:]).double()
    teacher_margins = (teacher[:, :1] - teacher[:, 1:]).double()
    assert scale == pytest.approx(float((student_margins * teacher_margins).sum() / (student_margins**2).sum()), 1e-4)
    kl = LOSSES["kl"]()
    best = fit_maxsim_scale(maxsim, teacher, kl)
    loss = [kl(s * maxsim, teacher).item() for s in (best * 0.95, best, best * 1.05)]
    assert loss[1] < loss[0] and loss[1] < loss[2]  # a minimum along the scale


def test_a_label_loss_is_not_fitted_and_a_teacher_against_maxsim_is_refused():
    """A label loss's best scale is unbounded where MaxSim ranks the rows right (issue 58, B13): not fitted."""
    maxsim = torch.tensor([[3.0, 1.0, 0.5], [2.0, 0.5, 1.0]])
    with pytest.raises(ValueError, match="a label loss has no MaxSim scale to fit"):
        fit_maxsim_scale(maxsim, None, LOSSES["ce"]())
    with pytest.raises(ValueError, match="rank the candidates against MaxSim"):
        fit_maxsim_scale(maxsim, -maxsim, LOSSES["margin_mse"]())


@pytest.mark.parametrize("loss", ["kl", "margin_mse"])
def test_teacher_scores_that_rank_nothing_are_named_even_through_rounding(loss):
    """All-equal teacher scores (B7, B9): float rounding must not let them through as a tiny positive scale."""
    maxsim = torch.tensor([[3.0, 1.0, 0.5], [2.0, 0.5, 1.0]])
    equal = torch.full((2, 3), 7.1) + torch.tensor([0.0, 1e-12, -1e-12])  # alike but for rounding
    with pytest.raises(ValueError, match="its scores rank nothing: .* every candidate has the same score"):
        fit_maxsim_scale(maxsim, equal, LOSSES[loss]())
    with pytest.raises(ValueError, match=r"\(1 candidate\(s\) a row\)"):
        fit_maxsim_scale(maxsim[:, :1], maxsim[:, :1], LOSSES[loss]())


@pytest.mark.parametrize("value", [float("nan"), float("-inf"), float("inf")])
def test_teacher_scores_that_are_not_finite_are_named(value):
    """B14: NaN gave a NaN scale; −inf with KL an IndexError."""
    maxsim = torch.tensor([[3.0, 1.0, 0.5], [2.0, 0.5, 1.0]])
    teacher = 2 * maxsim
    teacher[1, 2] = value
    with pytest.raises(ValueError, match=r"its scores are not all finite \(1 of 2 rows"):
        fit_maxsim_scale(maxsim, teacher, LOSSES["kl"]())
