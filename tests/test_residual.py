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


def test_a_label_loss_fits_without_a_teacher_and_a_teacher_against_maxsim_is_refused():
    maxsim = torch.tensor([[3.0, 1.0, 0.5], [2.0, 0.5, 1.0]])
    assert fit_maxsim_scale(maxsim, None, LOSSES["ce"]()) > 1  # the positive already ranks first: sharpen it
    with pytest.raises(ValueError, match="rank against MaxSim"):
        fit_maxsim_scale(maxsim, -maxsim, LOSSES["margin_mse"]())
