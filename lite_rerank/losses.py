"""Training losses. Each takes the student's scores of shape (batch, n_docs), the positive document in column 0 and
negatives after it, and (for distillation) the teacher's scores of the same shape."""

import torch
import torch.nn.functional as F
from torch import nn


class MarginMSELoss(nn.Module):
    """Margin-MSE distillation (Hofstätter et al. 2020, arXiv:2010.02666), the LITE paper's training loss.

    Inputs: student scores (batch, n_docs) as [s_pos, s_neg_1, ...]; teacher scores (batch, n_docs) alike (a
    precomputed margin works as [margin, 0]). Loss: the mean over queries and negatives j of
    ((s_pos − s_neg_j) − (t_pos − t_neg_j))²; with one negative, mean(((s_pos − s_neg) − (t_pos − t_neg))²).
    """

    needs_teacher = True

    def forward(self, scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
        student_margins = scores[:, :1] - scores[:, 1:]
        teacher_margins = teacher_scores[:, :1] - teacher_scores[:, 1:]
        return F.mse_loss(student_margins.float(), teacher_margins.float())


class KLDistillationLoss(nn.Module):
    """KL divergence from the teacher's softmax over each query's documents to the student's (Hinton et al. 2015).

    Inputs: student scores (batch, n_docs); teacher scores (batch, n_docs). Loss: mean over queries of
    KL(softmax(teacher) ‖ softmax(student)).
    """

    needs_teacher = True

    def forward(self, scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
        log_student = F.log_softmax(scores.float(), dim=-1)
        log_teacher = F.log_softmax(teacher_scores.float(), dim=-1)
        return F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")


class ContrastiveCrossEntropyLoss(nn.Module):
    """Labels only, no teacher: cross-entropy of the softmax over each query's documents with the positive (column 0)
    as the target (the localized contrastive loss of Gao et al. 2021, arXiv:2101.08751).

    Inputs: student scores (batch, n_docs); teacher scores are ignored.
    """

    needs_teacher = False

    def forward(self, scores: torch.Tensor, teacher_scores: torch.Tensor | None = None) -> torch.Tensor:
        target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        return F.cross_entropy(scores.float(), target)


LOSSES = {"margin_mse": MarginMSELoss, "kl": KLDistillationLoss, "ce": ContrastiveCrossEntropyLoss}
