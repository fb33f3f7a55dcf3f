"""The LITE scorer's inference code as it stood before padding was skipped (commit da85ae0 of modeling_lite.py,
verbatim apart from this docstring and the loader at the end), frozen here so that benchmarks/bench_rerank.py can
time "today's path" side by side with the current one on the same weights and inputs. Not used anywhere else."""

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN


class LiteMLP(nn.Module):
    """Two layers, each Linear → activation → LayerNorm, along the last axis: size → hidden_size → size."""

    def __init__(self, size: int, hidden_size: int, activation: str):
        super().__init__()
        self.dense_in = nn.Linear(size, hidden_size)
        self.norm_in = nn.LayerNorm(hidden_size)
        self.dense_out = nn.Linear(hidden_size, size)
        self.norm_out = nn.LayerNorm(size)
        self.act = ACT2FN[activation]
        self.relu = activation == "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            x = self.norm_in(self.act(self.dense_in(x)))
            return self.norm_out(self.act(self.dense_out(x)))
        return self.infer(x)

    def infer(self, x: torch.Tensor, transposed_output: bool = False) -> torch.Tensor:
        """Inference: forward's maths in fewer passes over the large hidden activation. It is rectified in place and
        norm_in is folded into dense_out, (h @ (W·γ)ᵀ − μ·Σ(W·γ)) / σ + (W·β + b), so LayerNorm's centring and
        scaling touch only the output (hidden_size / size times smaller). With `transposed_output`, x is 2-D
        (rows, size) and the result is (size, rows): for a small `size`, that layout keeps the elementwise work on
        long contiguous rows."""
        hidden = self.dense_in(x)
        hidden = hidden.relu_() if self.relu else self.act(hidden)
        mean, rstd = _mean_rstd(hidden, -1, self.norm_in.eps)  # (..., 1), float32
        weight = self.dense_out.weight * self.norm_in.weight  # (size, hidden)
        shift = self.dense_out.weight @ self.norm_in.bias + self.dense_out.bias  # (size,)
        weight_sums = weight.sum(dim=1).float()
        if transposed_output:
            out = weight @ hidden.T  # (size, rows)
            mean, rstd, weight_sums, shift = mean.T, rstd.T, weight_sums.unsqueeze(1), shift.unsqueeze(1)
        else:
            out = F.linear(hidden, weight)  # (..., size)
        out = out.sub_((weight_sums * mean).to(out.dtype)).mul_(rstd.to(out.dtype)).add_(shift)
        out = out.relu_() if self.relu else self.act(out)
        if not transposed_output:
            return self.norm_out(out)
        mean, rstd = _mean_rstd(out, 0, self.norm_out.eps)  # (1, rows)
        out = out.sub_(mean.to(out.dtype)).mul_(rstd.to(out.dtype))
        return out.mul_(self.norm_out.weight.unsqueeze(1)).add_(self.norm_out.bias.unsqueeze(1))


def _mean_rstd(x: torch.Tensor, axis: int, eps: float):
    """float32 mean and 1/std of x along `axis` (kept as a size-1 axis). Sums and norms along the last axis, and
    ones-vector products along the first: on CPU both are far faster than torch.var_mean in bf16."""
    width = x.shape[axis]
    if axis == 0:
        ones = x.new_ones(1, width)
        total, total_square = ones @ x, ones @ (x * x)
    else:
        total = x.sum(dim=axis, keepdim=True)
        total_square = torch.linalg.vector_norm(x, dim=axis, keepdim=True).float().square()
    mean = total.float() / width
    variance = (total_square.float() / width - mean.square()).clamp_min(0)
    return mean, torch.rsqrt(variance + eps)


class LiteSeparableScorer(nn.Module):
    """Separable LITE: row MLP on every row of S, then column MLP on every column, then Linear(L1·L2 → 1)."""

    def __init__(self, config):
        super().__init__()
        query_len, doc_len = config.query_max_length, config.doc_vectors
        self.row_mlp = LiteMLP(doc_len, config.row_hidden_size, config.activation)
        self.col_mlp = LiteMLP(query_len, config.col_hidden_size, config.activation)
        self.out = nn.Linear(query_len * doc_len, 1)

    def forward(self, similarity: torch.Tensor) -> torch.Tensor:
        # similarity: (batch, q_len, d_len)
        rows = self.row_mlp(similarity)  # (batch, q_len, d_len)
        if torch.is_grad_enabled():
            cols = self.col_mlp(rows.transpose(1, 2))  # (batch, d_len, q_len)
            return self.out(cols.flatten(1)).squeeze(-1)  # (batch,)
        # Inference: the column MLP writes its output query-major, (q_len, batch · d_len), where the elementwise work
        # runs on long rows; the final sum is in float32 so that bf16/fp16 scorers do not create ties.
        batch, q_len, d_len = rows.shape
        cols = self.col_mlp.infer(rows.transpose(1, 2).reshape(batch * d_len, q_len), transposed_output=True)
        weight = self.out.weight.view(d_len, q_len).T.float()  # `out` reads the (d_len, q_len) flattening
        return (cols.view(q_len, batch, d_len).float() * weight.unsqueeze(1)).sum(dim=(0, 2)) + self.out.bias.float()


def maxsim(similarity: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
    """ColBERT's Σ_i max_j S_ij over real document tokens; padded query rows are all-zero and add nothing."""
    # similarity: (batch, q_len, d_len); doc_mask: (batch or 1, d_len)
    masked = similarity.masked_fill(~doc_mask.unsqueeze(1), float("-inf"))
    return masked.max(dim=-1).values.float().sum(dim=-1)  # (batch,), summed in float32


class PreviousScorer:
    """score(similarity (n, L1, K), doc_mask) with the previous code: the whole matrix, in blocks of 64."""

    def __init__(self, model):
        config, self.block = model.config, 64
        self.lite = None
        if model.lite_scorer is not None:
            self.lite = LiteSeparableScorer(config).to(device=model.device, dtype=model.dtype).eval()
            self.lite.load_state_dict(model.lite_scorer.state_dict())

    def __call__(self, similarity, doc_mask):
        blocks = []
        for start in range(0, similarity.shape[0], self.block):
            part = slice(start, start + self.block)
            mask = doc_mask if doc_mask.shape[0] == 1 else doc_mask[part]
            blocks.append(maxsim(similarity[part], mask) if self.lite is None else self.lite(similarity[part]))
        return torch.cat(blocks)
