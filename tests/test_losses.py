import math

import pytest
import torch

from lite_rerank.losses import LOSSES, ContrastiveCrossEntropyLoss, KLDistillationLoss, MarginMSELoss


def test_margin_mse_by_hand():
    scores = torch.tensor([[3.0, 1.0], [0.0, 2.0]])
    teacher = torch.tensor([[5.0, 4.0], [1.0, 0.0]])
    # student margins (2, -2), teacher margins (1, 1): ((2-1)² + (-2-1)²) / 2 = 5
    assert MarginMSELoss()(scores, teacher).item() == pytest.approx(5.0)
    # a precomputed margin m as teacher scores [m, 0]
    assert MarginMSELoss()(scores, torch.tensor([[2.0, 0.0], [-2.0, 0.0]])).item() == pytest.approx(0.0)


def test_kl_by_hand():
    scores = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.0]])
    s = [math.e / (math.e + 1), 1 / (math.e + 1)]
    expected = sum(0.5 * math.log(0.5 / p) for p in s)
    assert KLDistillationLoss()(scores, teacher).item() == pytest.approx(expected, rel=1e-6)
    assert KLDistillationLoss()(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_contrastive_ce_by_hand_and_without_teacher():
    scores = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(2)) / 2
    assert ContrastiveCrossEntropyLoss()(scores, None).item() == pytest.approx(expected, rel=1e-6)
    assert not ContrastiveCrossEntropyLoss.needs_teacher and MarginMSELoss.needs_teacher
    assert set(LOSSES) == {"margin_mse", "kl", "ce"}


def test_losses_give_gradients_towards_the_teacher():
    scores = torch.tensor([[0.0, 1.0]], requires_grad=True)
    MarginMSELoss()(scores, torch.tensor([[3.0, 0.0]])).backward()
    assert scores.grad[0, 0] < 0 < scores.grad[0, 1]  # raise the positive, lower the negative


def test_margin_mse_with_several_negatives_by_hand():
    scores = torch.tensor([[3.0, 1.0, 0.0]])
    teacher = torch.tensor([[2.0, 1.0, -2.0]])
    # student margins (2, 3), teacher margins (1, 4): ((2-1)² + (3-4)²) / 2 = 1
    assert MarginMSELoss()(scores, teacher).item() == pytest.approx(1.0)
    # with one negative the same as the pairwise form
    assert MarginMSELoss()(scores[:, :2], teacher[:, :2]).item() == pytest.approx(1.0)
