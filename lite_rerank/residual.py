"""The residual LITE scorer's start (`LiteConfig(scorer="residual")`: maxsim_scale · MaxSim + LITE, the LITE term
initialised to zero).

A fresh residual model ranks exactly as MaxSim, but its scores are on MaxSim's scale, not the teacher's: the
teacher's logits on the Debian set spread about 2.7× as wide. Left to training, the LITE term absorbs the difference
and breaks the ranking it starts from (issue 34). So before the first step the scale alone is fitted, to the very
loss training will minimise, on a sample of training rows: from then on the LITE term only has to learn what MaxSim
gets wrong.
"""

import torch

FIT_ROWS = 256  # training rows the scale is fitted on: one scalar, a few hundred queries fix it well


def fit_maxsim_scale(maxsim_scores: torch.Tensor, teacher_scores: torch.Tensor, loss_fn) -> float:
    """The scale s > 0 minimising `loss_fn(s · maxsim_scores, teacher_scores)`.

    `maxsim_scores` (rows, candidates): MaxSim's scores of each row's positive then its negatives; `teacher_scores`
    the same shape. Every distillation loss here (Margin-MSE, KL) is convex in s, so L-BFGS on log s (which keeps s
    positive: a negative scale would reverse MaxSim's ranking) finds the minimum. A label loss has no teacher scale
    to fit (its best scale is unbounded wherever MaxSim already ranks the rows right): the caller keeps s = 1.
    A ValueError says what is wrong with teacher scores that cannot set a scale: not finite, ranking nothing (each
    row's candidates scored alike, or one candidate a row), or ranking against MaxSim.

    >>> from lite_rerank.losses import LOSSES
    >>> maxsim = torch.tensor([[3.0, 1.0, 0.0], [2.0, 2.5, 1.0]])
    >>> round(fit_maxsim_scale(maxsim, 2.5 * maxsim, LOSSES["margin_mse"]()), 4)  # the teacher is MaxSim, scaled
    2.5
    """
    if teacher_scores is None:
        raise ValueError(
            "a label loss has no MaxSim scale to fit (its best scale is unbounded wherever MaxSim already ranks the "
            "rows right): keep the scale at 1"
        )
    teacher = teacher_scores.detach().double()
    broken = ~torch.isfinite(teacher).all(dim=1)
    if broken.any():
        row = int(broken.nonzero()[0])
        raise ValueError(
            f"its scores are not all finite ({int(broken.sum())} of {len(teacher)} rows; e.g. {teacher[row].tolist()}): "
            "the teacher is broken, or the training file's teacher scores are damaged"
        )
    spread = teacher.max(dim=1).values - teacher.min(dim=1).values if teacher.shape[1] > 1 else teacher[:, 0] * 0
    if not (spread > 1e-6 * teacher.abs().max().clamp_min(1)).any():
        raise ValueError(
            f"its scores rank nothing: in each of the {len(teacher)} rows sampled, every candidate has the same score "
            f"({teacher.shape[1]} candidate(s) a row); distillation learns nothing from them: check the teacher and "
            "the training data (a teacher that outputs a constant, scores written for one candidate only)"
        )
    with torch.enable_grad():  # callers score under no_grad / inference mode
        return _fit(maxsim_scores.detach().double(), teacher, loss_fn)


def _fit(maxsim, teacher, loss_fn) -> float:
    at_zero = torch.zeros((), dtype=torch.float64, requires_grad=True)
    loss_fn(at_zero * maxsim, teacher).backward()
    if at_zero.grad.item() >= 0:  # convex in s: the loss does not fall for any s > 0
        raise ValueError(
            "its scores rank the candidates against MaxSim on this encoder (the best MaxSim scale is not positive): a "
            "residual scorer would start from a ranking the loss rejects; train --scorer lite instead"
        )
    log_scale = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_scale], lr=1, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(log_scale.exp() * maxsim, teacher)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_scale.detach().exp())


def residual_scorer(model):
    """The model's `ResidualLiteScorer`, or None when its scorer is another (unwrapped from DDP as needed)."""
    scorer = getattr(getattr(model, "module", model), "lite_scorer", None)
    return scorer if scorer is not None and hasattr(scorer, "maxsim_scale") else None


@torch.no_grad()
def set_maxsim_scale(model, scale: float):
    residual_scorer(model).maxsim_scale.fill_(scale)
