"""LITE: Learnable Late InTEraction re-ranker (Ji et al. 2024, arXiv:2406.17968).

A shared BERT-like encoder turns a query and a document into token embeddings Q (L1 × d) and D (L2 × d); their
similarity matrix S = Q·Dᵀ (L1 × L2) is scored either by the separable LITE scorer (a row MLP over the document
axis, a column MLP over the query axis, a linear map of the flattened matrix to one score), by ColBERT's MaxSim
(Σ_i max_j S_ij), or by the residual LITE (MaxSim plus a LITE term that starts at zero).

Self-contained Hub code: imports only torch, transformers and `.configuration_lite`, and runs on transformers 4.46
to 5.x (features are detected, not assumed).

Layout: the scorers (one call signature, `(similarity, doc_mask) → scores`), token-batch helpers, the text API
(a mixin: tokenizer, `compute_score`, `rerank`, `from_encoder`), the `LitePreTrainedModel` base, and `LiteModel`.
"""

import contextlib
import functools
import importlib
import json
import os
import re

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils.hub import cached_file
from transformers.utils.logging import tqdm

try:  # transformers 5: initialisers that leave weights loaded from a checkpoint alone
    from transformers import initialization as init
except ImportError:  # transformers 4: `_init_weights` only ever sees modules whose weights were not loaded
    init = nn.init

try:
    from .configuration_lite import LiteConfig
except ImportError:  # a top-level module (a local checkout) rather than Hub remote code; not an `import` statement,
    # which transformers 4.x would list as a package the remote code needs
    LiteConfig = importlib.import_module("configuration_lite").LiteConfig

# Keyword arguments that pipelines and sentence-transformers pass along and that LITE can ignore: the encoder's
# internals are not exposed. (token_type_ids are read: they say where a pair's query ends.)
_IGNORED_FORWARD_KWARGS = {"output_attentions", "output_hidden_states"}

# ---------------------------------------------------------------------------------------------- scorers
# Both scorers take `similarity` (batch, q, w): the first q ≤ L1 query rows and the first w ≤ K document columns of
# the L1 × K matrix S, whose remaining rows and columns are zero padding (padded token vectors are zero), and
# `doc_mask` (batch or 1, ≥ w), True at real document positions. They return scores (batch,), summed at least in
# float32 (bf16 rounding would otherwise create ties).


def weights_version(*tensors) -> tuple:
    """Changes whenever one of `tensors` does: a value computed from weights is recomputed only then. `_version`
    counts in-place updates (an optimizer step); tensors made in inference mode have none (they are not updated)."""
    return tuple((None if t.is_inference() else t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)


class LiteMLP(nn.Module):
    """Two layers, each Linear → activation → LayerNorm, along the last axis: size → hidden_size → size.

    The input may hold only its first `width` ≤ size positions, the rest being zeros: the first layer then reads only
    those columns of its weight (the same result, less work). The output always has `size` positions.
    """

    def __init__(self, size: int, hidden_size: int, activation: str):
        super().__init__()
        self.dense_in = nn.Linear(size, hidden_size)
        self.norm_in = nn.LayerNorm(hidden_size)
        self.dense_out = nn.Linear(hidden_size, size)
        self.norm_out = nn.LayerNorm(size)
        self.act = ACT2FN[activation]
        self.relu = activation == "relu"

    def first_layer(self, x: torch.Tensor, activate: bool = False, weight: torch.Tensor | None = None) -> torch.Tensor:
        """dense_in on x's positions (its first columns, or `weight` in place of dense_in's weight), then the
        activation when `activate`."""
        weight = self.dense_in.weight if weight is None else weight
        weight = weight if x.shape[-1] == weight.shape[1] else weight[:, : x.shape[-1]]
        if activate and self.relu:
            return _linear_relu(x, weight, self.dense_in.bias)
        hidden = F.linear(x, weight, self.dense_in.bias)
        return self.act(hidden) if activate else hidden

    def _folded(self):
        """dense_out with norm_in folded in: (W·γ, Σ_h W·γ, W·β + b); computed once per weight version."""
        key = weights_version(self.dense_out.weight, self.dense_out.bias, self.norm_in.weight, self.norm_in.bias)
        if getattr(self, "_folded_key", None) != key:
            weight = self.dense_out.weight * self.norm_in.weight  # (size, hidden)
            shift = self.dense_out.weight @ self.norm_in.bias + self.dense_out.bias  # (size,)
            self._folded_cache = (weight, weight.sum(dim=1), shift)
            self._folded_key = key
        return self._folded_cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            x = self.norm_in(self.act(self.first_layer(x)))
            return self.norm_out(self.act(self.dense_out(x)))
        return self.infer(x)

    def infer(
        self, x: torch.Tensor, transposed_output: bool = False, first_weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Inference: forward's maths in fewer passes over the large hidden activation. It is rectified in place and
        norm_in is folded into dense_out, (h @ (W·γ)ᵀ − μ·Σ(W·γ)) / σ + (W·β + b), so LayerNorm's centring and
        scaling touch only the output (hidden_size / size times smaller). With `transposed_output`, x is 2-D
        (rows, width) and the result is (size, rows): for a small `size`, that layout keeps the elementwise work on
        long contiguous rows. `first_weight` replaces dense_in's weight (see `LiteSeparableScorer.forward`)."""
        hidden = self.first_layer(x, activate=True, weight=first_weight)
        mean, rstd = _mean_rstd(hidden, -1, self.norm_in.eps)  # (..., 1), float32
        weight, weight_sums, shift = self._folded()
        weight_sums = weight_sums.to(mean.dtype)
        if transposed_output:
            out = weight @ hidden.T  # (size, rows)
            mean, rstd, weight_sums, shift = mean.T, rstd.T, weight_sums.unsqueeze(1), shift.unsqueeze(1)
        else:
            out = _linear(hidden, weight)  # (..., size)
        out = out.sub_((weight_sums * mean).to(out.dtype)).mul_(rstd.to(out.dtype)).add_(shift)
        out = out.relu_() if self.relu else self.act(out)
        if not transposed_output:
            return self.norm_out(out)
        mean, rstd = _mean_rstd(out, 0, self.norm_out.eps)  # (1, rows)
        out = out.sub_(mean.to(out.dtype)).mul_(rstd.to(out.dtype))
        return out.mul_(self.norm_out.weight.unsqueeze(1)).add_(self.norm_out.bias.unsqueeze(1))


# oneDNN's fused linear (+ ReLU) on CPU: about twice as fast as addmm then relu_ for the scorer's skinny shapes.
# A private torch op: used only where this build has it, for float32 (and bfloat16 where oneDNN runs it) on CPU; the
# plain ops elsewhere.
_ONEDNN_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _autocast_on_cpu() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch before 2.4
        return torch.is_autocast_cpu_enabled()


_ENV_TRUE, _ENV_FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def native_bf16_override() -> bool | None:
    """LITE_NATIVE_BF16: True / False when set (1, true, yes, on / 0, false, no, off, any case), None when unset; any
    other value is refused by name rather than ignored (lite_rerank.hardware reads it through here)."""
    value = os.environ.get("LITE_NATIVE_BF16")
    if value is None:
        return None
    if value.strip().lower() in _ENV_TRUE + _ENV_FALSE:
        return value.strip().lower() in _ENV_TRUE
    raise ValueError(
        f"LITE_NATIVE_BF16={value!r} is not understood: set it to 1 (this CPU runs bf16 natively) or 0 (it does "
        "not; also true/false, yes/no, on/off), or unset it to let the CPU be detected"
    )


@functools.cache
def _onednn_has_bf16() -> bool:
    """oneDNN has bf16 primitives on this CPU (AVX512 and newer). On an AVX2-only CPU the fused op fails for bf16
    ("could not create a primitive descriptor"); LITE_NATIVE_BF16=0 simulates such a CPU (lite_rerank.hardware)."""
    if native_bf16_override() is False:
        return False
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    return bool(check is not None and torch.backends.mkldnn.is_available() and check())


def _onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """The fused op takes its inputs as they are: same dtype for input and weights, no autocast to cast them; bf16
    only where oneDNN runs bf16 on this CPU."""
    return (
        _ONEDNN_LINEAR is not None
        and x.device.type == "cpu"
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _onednn_has_bf16()))
        and weight.dtype == x.dtype
        and torch.backends.mkldnn.is_available()
        and not torch.is_grad_enabled()
        and not _autocast_on_cpu()
    )


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, post: str = "none"):
    """F.linear(x, weight, bias), then ReLU when post == "relu" (inference, 2-D or more)."""
    if _onednn_applies(x, weight):
        flat = x.reshape(-1, x.shape[-1])
        out = _ONEDNN_LINEAR(flat, weight.contiguous(), bias, post, [], "")
        return out.view(*x.shape[:-1], weight.shape[0])
    out = F.linear(x, weight, bias)
    return out.relu_() if post == "relu" else out


def _linear_relu(x, weight, bias):
    return _linear(x, weight, bias, "relu") if not torch.is_grad_enabled() else F.relu(F.linear(x, weight, bias))


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half precision (statistics and sums that must not round), the dtype itself otherwise."""
    return torch.promote_types(dtype, torch.float32)


def _mean_rstd(x: torch.Tensor, axis: int, eps: float):
    """Mean and 1/std of x along `axis` (kept as a size-1 axis), at least in float32. Sums and norms along the last
    axis, and ones-vector products along the first: on CPU both are far faster than torch.var_mean in bf16."""
    width, dtype = x.shape[axis], _accumulation_dtype(x.dtype)
    if axis == 0:
        ones = x.new_ones(1, width)
        total, total_square = ones @ x, ones @ (x * x)
    else:
        total = x.sum(dim=axis, keepdim=True)
        total_square = torch.linalg.vector_norm(x, dim=axis, keepdim=True).to(dtype).square()
    mean = total.to(dtype) / width
    variance = (total_square.to(dtype) / width - mean.square()).clamp_min(0)
    return mean, torch.rsqrt(variance + eps)


class LiteSeparableScorer(nn.Module):
    """Separable LITE: the row MLP on every row of S (over the document axis), the column MLP on every column (over
    the query axis), then Linear(L1·K → 1).

    Padding costs nothing and changes nothing: a padded query row of S is all zeros, so the row MLP maps it to one
    constant row, computed once per call and broadcast; padded document columns are zeros the row MLP's first layer
    skips. Only the column MLP and the output map see the full L1 × K.
    """

    def __init__(self, config: LiteConfig):
        super().__init__()
        self.query_length, self.doc_length = config.query_max_length, config.doc_vectors
        self.row_mlp = LiteMLP(self.doc_length, config.row_hidden_size, config.activation)
        self.col_mlp = LiteMLP(self.query_length, config.col_hidden_size, config.activation)
        self.out = nn.Linear(self.query_length * self.doc_length, 1)

    def forward(self, similarity: torch.Tensor, doc_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, real_rows, width = similarity.shape
        rows = self.row_mlp(similarity)  # (batch, real_rows, K)
        padded = self.query_length - real_rows
        if padded:
            padding_row = self.row_mlp(similarity.new_zeros(1, 1, width))  # (1, 1, K): what every zero row becomes
        if torch.is_grad_enabled():
            if padded:
                rows = torch.cat([rows, padding_row.expand(batch, padded, -1)], dim=1)
            cols = self.col_mlp(rows.transpose(1, 2))  # (batch, K, L1)
            return self.out(cols.flatten(1)).squeeze(-1)  # `out` reads the (K, L1) flattening
        # Inference. The padded rows are one constant row, so the column MLP's first layer needs it once: its input
        # is the real rows plus that row, (batch · K, real_rows + 1), against dense_in's real columns plus the sum of
        # its padded ones; a short query pays for its own rows only. The column MLP writes its output query-major,
        # (L1, batch · K), where the elementwise work runs on long rows; the final sum is in float32 so that bf16/fp16
        # scorers do not create ties.
        q_len, d_len = self.query_length, self.doc_length
        first_weight = self._col_weight_with_padding_summed(real_rows) if padded > 1 else None
        if padded:
            rows = torch.cat([rows, padding_row.expand(batch, 1, -1)], dim=1)  # (batch, real_rows + 1, K)
        inputs = rows.transpose(1, 2).reshape(batch * d_len, rows.shape[1])
        cols = self.col_mlp.infer(inputs, transposed_output=True, first_weight=first_weight)
        dtype = _accumulation_dtype(cols.dtype)
        weight = self.out.weight.view(d_len, q_len).T.to(dtype)
        scores = (cols.view(q_len, batch, d_len).to(dtype) * weight.unsqueeze(1)).sum(dim=(0, 2))
        return scores + self.out.bias.to(dtype)

    def _col_weight_with_padding_summed(self, real_rows: int) -> torch.Tensor:
        """The column MLP's first weight for `real_rows` real query rows and one padding row that stands for all the
        padded ones: (hidden, real_rows + 1), the padded columns summed in float32; cached per weight version."""
        weight = self.col_mlp.dense_in.weight
        key = weights_version(weight)
        if getattr(self, "_col_weights_key", None) != key:
            self._col_weights, self._col_weights_key = {}, key
        if real_rows not in self._col_weights:
            summed = weight[:, real_rows:].to(_accumulation_dtype(weight.dtype)).sum(dim=1, keepdim=True)
            self._col_weights[real_rows] = torch.cat([weight[:, :real_rows], summed.to(weight.dtype)], dim=1)
        return self._col_weights[real_rows]


class ResidualLiteScorer(LiteSeparableScorer):
    """MaxSim plus a LITE term: maxsim_scale · Σ_i max_j S_ij + LITE(S).

    LITE's output map starts at zero and maxsim_scale at 1, so a fresh model scores exactly as MaxSim on the same
    encoder; training learns a correction to a strong zero-shot rule instead of a ranking from nothing. The scale
    does not change the ranking; training sets it to the teacher's scale before the first step (see
    `lite_rerank.residual.fit_maxsim_scale`), so that the LITE term need not absorb it.
    """

    def __init__(self, config: LiteConfig):
        super().__init__(config)
        self.maxsim_scale = nn.Parameter(torch.ones(()))

    def forward(self, similarity: torch.Tensor, doc_mask: torch.Tensor | None = None) -> torch.Tensor:
        maxsim = _MAXSIM(similarity, doc_mask)  # (batch,), at least float32
        if not torch.is_grad_enabled() and self._lite_term_is_zero():
            # out's weight is exactly zero (a fresh residual, or one whose selection kept the start): the LITE term
            # is its bias for every candidate, exactly, and the MLPs need not run
            return self.maxsim_scale.to(maxsim.dtype) * maxsim + self.out.bias.to(maxsim.dtype)
        return self.maxsim_scale.to(maxsim.dtype) * maxsim + super().forward(similarity, doc_mask)

    def _lite_term_is_zero(self) -> bool:
        """Whether out's weight is all zeros; checked once per weight version (an optimizer step changes it)."""
        key = weights_version(self.out.weight)
        if getattr(self, "_zero_key", None) != key:
            self._zero_term, self._zero_key = not bool(self.out.weight.any()), key
        return self._zero_term


class MaxSimScorer(nn.Module):
    """ColBERT's MaxSim, Σ_i max_j S_ij over the real document tokens; no parameters. Padded query rows are all zero
    and add nothing."""

    def __init__(self, config: LiteConfig | None = None):
        super().__init__()

    def forward(self, similarity: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
        masked = similarity.masked_fill(~doc_mask[:, : similarity.shape[-1]].unsqueeze(1), float("-inf"))
        best = masked.max(dim=-1).values
        return best.to(_accumulation_dtype(best.dtype)).sum(dim=-1)  # half precision is summed in float32


_MAXSIM = MaxSimScorer()


class QueryTokenWeights(nn.Module):
    """A learned positive weight w = exp(δ) per vocabulary token on the query's normalised vectors (δ = 0: weight 1).
    Scaling a query token's vector scales its row of S, so MaxSim becomes the weighted Chamfer sum
    Σ_i w(q_i) max_j S_ij: learned term weights over fixed multi-vector embeddings (Archish S. et al., 2025)."""

    def __init__(self, config: LiteConfig):
        super().__init__()
        self.log_weights = nn.Parameter(torch.zeros(config.encoder_config.vocab_size))

    def forward(self, vectors: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        weights = self.log_weights[input_ids].float().exp().to(vectors.dtype)  # (batch, seq)
        return vectors * weights.unsqueeze(-1)


# ---------------------------------------------------------------------------------------------- token batches


def check_token_batch(input_ids, attention_mask, name: str):
    """Validated (ids, mask): 2-D integer ids, a right-padded mask of the same shape, at least one token per row."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"{name} must be a 2-D integer tensor (batch, seq_len) of token ids, got {shape}.")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(input_ids.shape)}).")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"{name}: attention mask shape {tuple(attention_mask.shape)} differs from ids shape "
            f"{tuple(input_ids.shape)}."
        )
    attention_mask = attention_mask.to(torch.long)
    if (attention_mask[:, 1:] > attention_mask[:, :-1]).any():
        raise ValueError(f"{name}: LITE expects right-padded sequences (attention mask 1…1 0…0).")
    if (attention_mask[:, 0] == 0).any():
        raise ValueError(f"{name}: row {torch.nonzero(attention_mask[:, 0] == 0)[0].item()} has no tokens.")
    return input_ids, attention_mask


def fit_to_length(input_ids, attention_mask, max_length: int, sep_token_id: int):
    """Drop all-padding columns and truncate to `max_length` like a tokenizer: first max_length-1 tokens + [SEP]."""
    lengths = attention_mask.sum(dim=1)
    longest = int(lengths.max())
    if longest > max_length:
        input_ids = input_ids[:, :max_length].clone()
        input_ids[lengths > max_length, max_length - 1] = sep_token_id
        return input_ids, attention_mask[:, :max_length]
    return input_ids[:, :longest], attention_mask[:, :longest]


def insert_prefix(input_ids, attention_mask, prefix_ids: list[int]):
    """`[CLS] text [SEP]` → `[CLS] prefix text [SEP]`: ColBERT's [Q] / [D] markers, inserted as a prompt would be."""
    prefix = torch.tensor(prefix_ids, dtype=input_ids.dtype, device=input_ids.device).expand(input_ids.shape[0], -1)
    input_ids = torch.cat([input_ids[:, :1], prefix, input_ids[:, 1:]], dim=1)
    attention_mask = torch.cat([attention_mask[:, :1], torch.ones_like(prefix), attention_mask[:, 1:]], dim=1)
    return input_ids, attention_mask


def expand_queries(input_ids, attention_mask, expansion: dict):
    """ColBERT's query expansion: padding positions below `length` become `token_id` (usually [MASK]) and are scored;
    the encoder attends to them only when `attend`. Returns (ids, attention mask, scoring mask)."""
    length = expansion["length"]
    if input_ids.shape[1] < length:
        input_ids = F.pad(input_ids, (0, length - input_ids.shape[1]))
        attention_mask = F.pad(attention_mask, (0, length - attention_mask.shape[1]))
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    expanded = (attention_mask == 0) & (positions < length)  # (batch, seq)
    input_ids = input_ids.masked_fill(expanded, expansion["token_id"])
    scoring_mask = attention_mask.bool() | expanded
    if expansion["attend"]:
        attention_mask = scoring_mask.long()
    return input_ids, attention_mask, scoring_mask


def compact(vectors, scoring_mask):
    """Each row's scored vectors moved to the front, in order (a skiplist leaves holes); the mask a prefix again."""
    order = torch.sort((~scoring_mask).to(torch.uint8), dim=1, stable=True).indices  # scored positions first
    vectors = vectors.gather(1, order.unsqueeze(-1).expand_as(vectors))
    positions = torch.arange(scoring_mask.shape[1], device=scoring_mask.device)
    return vectors, positions < scoring_mask.sum(dim=1, keepdim=True)


def split_pairs(
    input_ids, attention_mask, cls_token_id: int, sep_token_id: int, pad_token_id: int, token_type_ids=None
):
    """`[CLS] query [SEP] doc [SEP]` → query ids `[CLS] query [SEP]` and document ids `[CLS] doc [SEP]` (+ masks).

    The query ends at the separator the tokenizer inserted: the last token of segment 0 when `token_type_ids` mark
    a second segment (BERT tokenizers do), so a query holding the literal text "[SEP]" (which tokenises to the
    separator) is read whole, as `compute_score` reads it; else at the first [SEP] (a tokenizer without segment ids,
    e.g. DistilBERT's: there, such a query is cut at its own "[SEP]").
    """
    input_ids, attention_mask = check_token_batch(input_ids, attention_mask, "input_ids")
    is_sep = (input_ids == sep_token_id) & attention_mask.bool()
    if not is_sep.any(dim=1).all():
        row = torch.nonzero(~is_sep.any(dim=1))[0].item()
        raise ValueError(
            f"input_ids row {row} has no [SEP] (id {sep_token_id}); pair mode expects `[CLS] query [SEP] doc [SEP]`."
        )
    segments = None if token_type_ids is None else token_type_ids.to(input_ids.device) * attention_mask
    if segments is not None and segments.shape == input_ids.shape and (segments > 0).any():
        query_sep = ((segments == 0) & attention_mask.bool()).sum(dim=1) - 1  # the last token of segment 0
        bad = torch.nonzero(input_ids.gather(1, query_sep.unsqueeze(1)).squeeze(1) != sep_token_id)
        if len(bad):
            raise ValueError(
                f"input_ids row {bad[0].item()}: its first segment (token_type_ids 0) does not end with [SEP] (id "
                f"{sep_token_id}); pair mode expects `[CLS] query [SEP] doc [SEP]` with the tokenizer's segment ids."
            )
    else:
        query_sep = is_sep.int().argmax(dim=1)  # (batch,)
    # [CLS] + everything after the query's [SEP]; a row that ends there (an empty passage: the pipeline drops an
    # empty text_pair) is the empty document [CLS] [SEP], as every other route encodes ""
    doc_lengths = attention_mask.sum(dim=1) - query_sep
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    query_mask = positions < (query_sep + 1).unsqueeze(1)
    doc_mask = positions < doc_lengths.clamp(min=2).unsqueeze(1)
    doc_ids = input_ids.gather(1, (query_sep.unsqueeze(1) + positions).clamp(max=input_ids.shape[1] - 1))
    doc_ids[:, 0] = cls_token_id
    doc_ids[doc_lengths == 1, 1] = sep_token_id  # not the padding a longer row in the batch left after the query
    query_ids = input_ids.masked_fill(~query_mask, pad_token_id)
    return query_ids, query_mask.long(), doc_ids.masked_fill(~doc_mask, pad_token_id), doc_mask.long()


def length_groups(lengths: list[int], min_rows: int, ratio: float) -> list[list[int]]:
    """Row indices, longest first, cut into groups whose sequences are at least `ratio` × the group's longest."""
    order = sorted(range(len(lengths)), key=lambda row: -lengths[row])
    groups = [[order[0]]]
    for row in order[1:]:
        group = groups[-1]
        if len(group) >= min_rows and lengths[row] < ratio * lengths[group[0]]:
            groups.append([row])
        else:
            group.append(row)
    return groups


def encode_in_length_groups(encoder, input_ids, attention_mask, min_rows: int, ratio: float, lengths=None):
    """Encoder hidden states (batch, seq, hidden); a batch of mixed lengths is encoded in groups of similar length,
    each padded only to its own longest sequence (results are the same, the padding compute is not). `lengths`:
    the positions each row needs outputs for, when more than it attends to (unattended query expansion)."""
    lengths = attention_mask.sum(dim=1) if lengths is None else lengths
    groups = length_groups(lengths.tolist(), min_rows, ratio)
    if len(groups) == 1:
        return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    outputs = []
    for rows in groups:
        rows = torch.tensor(rows, device=input_ids.device)
        longest = int(lengths[rows].max())
        hidden = encoder(input_ids=input_ids[rows, :longest], attention_mask=attention_mask[rows, :longest])
        outputs.append(F.pad(hidden.last_hidden_state, (0, 0, 0, input_ids.shape[1] - longest)))
    order = torch.tensor([row for rows in groups for row in rows], device=input_ids.device)
    return torch.cat(outputs)[torch.argsort(order)]  # back to the batch's order


def score_in_blocks(scorer, similarity_of, doc_mask, count: int, block: int):
    """Scores of `count` candidates in blocks of `block` of similar document length; each block's S, from
    `similarity_of(rows, width)`, is cut to its longest document, so padded columns cost nothing."""
    if doc_mask.shape[0] == 1 and count > 1:
        doc_mask = doc_mask.expand(count, -1)
    lengths = doc_mask.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    blocks = []
    for start in range(0, count, block):
        # index_select: on CPU several times faster than advanced indexing for these gathers
        rows = order[start : start + block]
        width = int(lengths[rows[0]])
        blocks.append(scorer(similarity_of(rows, width), doc_mask.index_select(0, rows)[:, :width]))
    return torch.cat(blocks)[torch.argsort(order)]  # back to the candidates' order


def check_embeddings(config, query_embeddings, doc_embeddings):
    """Embeddings of the shapes this model's `encode_queries` / `encode_documents` give, and batch sizes that pair."""
    for name, tensor, tokens in (
        ("query_embeddings", query_embeddings, config.query_max_length),
        ("doc_embeddings", doc_embeddings, config.doc_vectors),
    ):
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3:
            raise ValueError(f"{name} must be a 3-D tensor (batch, tokens, dim); see encode_queries/encode_documents.")
        if tensor.shape[1:] != (tokens, config.embedding_dim):
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}; this model expects (batch, {tokens}, {config.embedding_dim})."
            )
    q_batch, d_batch = query_embeddings.shape[0], doc_embeddings.shape[0]
    if q_batch != d_batch and 1 not in (q_batch, d_batch):
        raise ValueError(
            f"{q_batch} queries cannot be scored against {d_batch} documents (equal sizes, or one of them 1)."
        )
    return q_batch, d_batch


def in_batch_candidates(batch: int, docs_per_query: int, count: int, device) -> torch.Tensor:
    """(batch, count) indices into the batch's documents (query-major, `docs_per_query` each): for query i, the
    documents of queries i+1, i+2, … (cyclically), never its own; count -1 takes all of them.

    >>> in_batch_candidates(3, 2, -1, "cpu").tolist()  # 3 queries, documents [0, 1], [2, 3], [4, 5]
    [[2, 3, 4, 5], [4, 5, 0, 1], [0, 1, 2, 3]]
    """
    available = (batch - 1) * docs_per_query
    if count > available:
        raise ValueError(
            f"in_batch_negatives={count}, but a batch of {batch} queries holds only {available} "
            "documents of other queries."
        )
    count = available if count == -1 else count
    j = torch.arange(count, device=device)
    queries = torch.arange(batch, device=device).unsqueeze(1)
    return ((queries + 1 + j // docs_per_query) % batch) * docs_per_query + j % docs_per_query


def pair_with_candidates(queries, query_mask, docs, doc_mask, docs_per_query: int, in_batch_negatives: int | None):
    """Rows of (query, document) pairs: each query with its own `docs_per_query` documents (query-major), and with
    `in_batch_negatives` documents of the other queries (encoded once, scored by several queries)."""
    batch = queries.shape[0]
    if in_batch_negatives:
        own = torch.arange(batch * docs_per_query, device=docs.device).view(batch, docs_per_query)
        others = in_batch_candidates(batch, docs_per_query, in_batch_negatives, docs.device)
        candidates = torch.cat([own, others], dim=1).flatten()
        docs, doc_mask = docs[candidates], doc_mask[candidates]
    per_query = docs.shape[0] // batch
    if per_query > 1:
        queries, query_mask = (
            queries.repeat_interleave(per_query, dim=0),
            query_mask.repeat_interleave(per_query, dim=0),
        )
    return queries, query_mask, docs, doc_mask


def _is_text(value) -> bool:
    return isinstance(value, str) or (
        isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], str)
    )


def accepts_text(kind: str):
    """Lets an `(input_ids, attention_mask)` method also take a string or a list of strings, tokenised with the
    model's tokenizer to the query (`kind="query"`) or document length."""

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, input_ids, attention_mask=None):
            if isinstance(input_ids, (list, tuple)) and not input_ids:
                raise ValueError(f"{method.__name__}: the list of texts is empty; pass at least one text.")
            if _is_text(input_ids):
                input_ids, attention_mask = self._tokenize(input_ids, kind)
            return method(self, input_ids, attention_mask)

        return wrapper

    return decorate


# ---------------------------------------------------------------------------------------------- text API

_KNOWN_SENTENCE = "the quick brown fox jumps over the lazy dog"


def check_tokenizer(tokenizer, vocab_size: int, source) -> None:
    """Refuse a tokenizer that does not fit the encoder: a vocabulary of another size (tokenizer.json missing next to
    tokenizer_config.json gives transformers 5 a 5-token vocabulary) or one that turns plain English into [UNK]."""
    size = len(tokenizer)
    if not vocab_size // 2 <= size <= vocab_size:
        raise ValueError(
            f"{source}: its tokenizer has {size} tokens, the encoder's vocabulary {vocab_size}; the tokenizer files "
            "are missing or from another model (tokenizer.json / vocab.txt): save the encoder's tokenizer there"
        )
    ids = tokenizer(_KNOWN_SENTENCE, add_special_tokens=False)["input_ids"]
    unknown = tokenizer.unk_token_id
    if not ids or (unknown is not None and ids.count(unknown) * 2 > len(ids)):
        raise ValueError(
            f"{source}: its tokenizer turns {_KNOWN_SENTENCE!r} into {tokenizer.convert_ids_to_tokens(ids)}; the "
            "tokenizer files are damaged or from another model"
        )


def check_texts(texts, name: str) -> None:
    """Strings a tokenizer can take: str, writable as UTF-8 (a lone surrogate is not)."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{index}] must be a string, got {type(text).__name__}.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"{name}[{index}] holds an unpaired surrogate {text[error.start]!r} at character {error.start}; "
                "it is not text a tokenizer can read."
            ) from None


class LiteTextMixin:
    """Text in, scores out: the tokenizer saved next to the weights, `compute_score`, `rerank`, `from_encoder`."""

    _tokenizer = None

    @property
    def tokenizer(self):
        """The tokenizer saved next to the weights, loaded on first use; assign one to override."""
        if self._tokenizer is None:
            if not self.name_or_path:
                raise ValueError(
                    "This LiteModel has no tokenizer: set `model.tokenizer = AutoTokenizer.from_pretrained"
                    "(...)` or load the model from a folder or Hub repo that holds tokenizer files."
                )
            try:
                # Passing the config spares AutoTokenizer a second, remote-code-guarded read of config.json.
                tokenizer = AutoTokenizer.from_pretrained(self.name_or_path, config=self.config)
            except (OSError, ValueError, TypeError) as error:
                raise ValueError(
                    f"{self.name_or_path} holds no usable tokenizer ({type(error).__name__}: "
                    f"{str(error)[:200]}); save one next to the weights or set `model.tokenizer`."
                ) from None
            check_tokenizer(tokenizer, self.config.encoder_config.vocab_size, self.name_or_path)
            self._tokenizer = tokenizer
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer):
        self._tokenizer = tokenizer

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus the attached tokenizer so the folder is usable on raw text."""
        if self._tokenizer is not None and getattr(self.config, "tokenizer_class", None) is None:
            # transformers 4.x pipelines load a tokenizer for a custom config only when config.json names its class;
            # "BertTokenizer" resolves to the fast tokenizer on every release (4.x adds "Fast" itself).
            self.config.tokenizer_class = type(self._tokenizer).__name__.removesuffix("Fast")
        super().save_pretrained(save_directory, *args, **kwargs)
        if self._tokenizer is not None and kwargs.get("is_main_process", True):
            self._tokenizer.save_pretrained(save_directory)

    def _tokenize(self, texts, kind: str):
        max_length = self.config.query_max_length if kind == "query" else self.config.doc_max_length
        texts = [texts] if isinstance(texts, str) else list(texts)
        check_texts(texts, "queries" if kind == "query" else "documents")
        tokens = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        return tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)

    @torch.inference_mode()
    def compute_score(self, pairs, batch_size: int = 32, show_progress_bar: bool = False):
        """Raw scores for `[[query, document], ...]` (a list of floats), or for one `[query, document]` (a float)."""
        if isinstance(pairs, str) or not isinstance(pairs, (list, tuple)):
            raise ValueError(
                f"compute_score takes [query, document] or a list of such pairs, got {type(pairs).__name__}."
            )
        single = len(pairs) == 2 and all(isinstance(text, str) for text in pairs)
        pairs = [pairs] if single else list(pairs)
        if not pairs:
            raise ValueError("compute_score needs at least one (query, document) pair.")
        for index, pair in enumerate(pairs):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(t, str) for t in pair):
                hint = " (a dict: pass [query, document] lists)" if isinstance(pair, dict) else ""
                raise ValueError(
                    f"compute_score: pair {index} is not a (query: str, document: str) pair{hint}: {pair!r:.100}."
                )
        _check_batch_size(batch_size)
        scores = []
        with _eval_mode(self):
            for start in tqdm(range(0, len(pairs), batch_size), disable=not show_progress_bar, desc="Scoring"):
                queries, docs = zip(*pairs[start : start + batch_size])
                scores.append(self.score_embeddings(*self.encode_queries(queries), *self.encode_documents(docs)))
        scores = torch.cat(scores).float().tolist()
        return scores[0] if single else scores

    @torch.inference_mode()
    def rerank(
        self,
        query: str,
        documents,
        top_n: int | None = None,
        batch_size: int = 32,
        return_documents: bool = True,
        show_progress_bar: bool = False,
    ):
        """Sort `documents` by relevance to `query`: `[{"index", "score", "document"}, ...]`, best first, raw scores.
        `documents` may also be a dict {id: text}: each result then carries its "id" too.

        The query is encoded once; ties keep the input order.
        """
        if not isinstance(query, str):
            raise ValueError(f"rerank: query must be a string, got {type(query).__name__}.")
        if documents is None or isinstance(documents, (str, bytes)) or not hasattr(documents, "__iter__"):
            raise ValueError(f"rerank: documents must be a list of strings, got {type(documents).__name__}.")
        ids = list(documents) if isinstance(documents, dict) else None
        documents = list(documents.values()) if isinstance(documents, dict) else list(documents)
        if not documents:
            raise ValueError("rerank: the document list is empty.")
        if not all(isinstance(doc, str) for doc in documents):
            raise ValueError("rerank: documents must be a list of strings (or a dict of id: text).")
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
            raise ValueError(f"rerank: top_n must be a positive integer or None, got {top_n!r}.")
        if not isinstance(return_documents, bool):
            raise ValueError(f"rerank: return_documents must be True or False, got {return_documents!r}.")
        _check_batch_size(batch_size)
        scores = []
        with _eval_mode(self):
            query_vectors, query_mask = self.encode_queries([query])
            for start in tqdm(range(0, len(documents), batch_size), disable=not show_progress_bar, desc="Reranking"):
                docs, doc_mask = self.encode_documents(documents[start : start + batch_size])
                scores.append(self.score_embeddings(query_vectors, query_mask, docs, doc_mask))
        scores = torch.cat(scores).float().tolist()
        order = sorted(range(len(documents)), key=lambda index: -scores[index])
        results = [{"index": index, "score": scores[index]} for index in order[:top_n]]
        if ids is not None:
            for result in results:
                result["id"] = ids[result["index"]]
        if return_documents:
            for result in results:
                result["document"] = documents[result["index"]]
        return results

    @classmethod
    def from_encoder(cls, encoder_name_or_path: str, **config_overrides) -> "LiteModel":
        """A new LITE model whose encoder starts from a pretrained checkpoint (Hub id or local folder).

        The scorer (and any Small-LITE layer) is freshly initialised; `config_overrides` set LiteConfig fields.
        The checkpoint's tokenizer, when it has one, is attached and saved with the model.

        A multi-vector model's folder (sentence-transformers `MultiVectorEncoder`, PyLate, Stanford ColBERT) carries
        a projection, prompts, expansion and a skiplist a plain encoder does not: it is refused here, by name, and
        read by the lite-reranker package's `lite_rerank.multi_vector.from_encoder`, which takes either kind (this
        file, the Hub code, needs torch, transformers and configuration_lite only).
        """
        if is_multi_vector_model(encoder_name_or_path):
            raise ValueError(
                f"{encoder_name_or_path} is a multi-vector model (MultiVectorEncoder, PyLate or ColBERT): its "
                "projection, prompts and skiplist would be lost on a plain encoder; build LITE from it with the "
                "lite-reranker package: `from lite_rerank.multi_vector import from_encoder; from_encoder(path, ...)` "
                '(pip install "lite-reranker[multi-vector]")'
            )
        encoder = AutoModel.from_pretrained(encoder_name_or_path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(encoder_name_or_path)
        except (OSError, ValueError):
            tokenizer = None
        return cls.from_loaded_encoder(encoder, tokenizer, encoder_name_or_path, **config_overrides)

    @classmethod
    def from_loaded_encoder(cls, encoder, tokenizer, source, **config_overrides) -> "LiteModel":
        """`from_encoder` for an encoder (a transformers model) and its tokenizer (or None) already loaded; `source`
        names them in errors. The tokenizer's special token ids fill the config fields not given."""
        if tokenizer is not None:
            check_tokenizer(tokenizer, encoder.config.vocab_size, source)
            for field in ("pad_token_id", "cls_token_id", "sep_token_id"):
                if getattr(tokenizer, field, None) is not None:
                    config_overrides.setdefault(field, getattr(tokenizer, field))
        model = cls(LiteConfig(encoder_config=encoder.config.to_dict(), **config_overrides))
        weights = {key: value for key, value in encoder.state_dict().items() if not key.startswith("pooler.")}
        result = model.encoder.load_state_dict(weights, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"Encoder weights of {source} do not fit: missing {result.missing_keys}, "
                f"unexpected {result.unexpected_keys}."
            )
        model.tokenizer = tokenizer
        return model


def is_multi_vector_model(name_or_path) -> bool:
    """A folder or Hub repo saved by sentence-transformers' `MultiVectorEncoder`, PyLate (its
    config_sentence_transformers.json model_type "ColBERT") or Stanford ColBERT (artifact.metadata)."""

    def find(filename):
        if os.path.isdir(str(name_or_path)):
            path = os.path.join(str(name_or_path), filename)
            return path if os.path.isfile(path) else None
        try:  # a Hub id: only these small files are fetched (or found in the cache offline)
            return cached_file(
                str(name_or_path),
                filename,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except (OSError, ValueError):  # not a repo id, or no such repo: read as a plain encoder, which names it
            return None

    if find("artifact.metadata"):
        return True
    path = find("config_sentence_transformers.json")
    try:
        with open(path, encoding="utf-8") as file:
            model_type = json.load(file).get("model_type")
    except (TypeError, OSError, ValueError, AttributeError):
        return False
    return model_type in ("MultiVectorEncoder", "ColBERT")


def _check_batch_size(batch_size):
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")


class _eval_mode:
    """Scores must not depend on dropout: eval for the block, then the previous mode (also after an exception)."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


# ---------------------------------------------------------------------------------------------- model


@contextlib.contextmanager
def weights_named(source):
    """Loading weights from `source`: safetensors' bare errors ("header too small") re-raised naming the folder."""
    try:
        yield
    except Exception as error:
        if type(error).__name__ != "SafetensorError":  # safetensors' own error class (a Rust extension)
            raise
        raise damaged_weights(source, error) from None


def damaged_weights(source, why) -> ValueError:
    return ValueError(
        f"{source}: model.safetensors does not read ({why}); the file is damaged or incomplete: copy or download it "
        "again"
    )


def safetensors_shapes(path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} from a safetensors file's header alone (8-byte length, then JSON): nothing is loaded."""
    with open(path, "rb") as file:
        start = file.read(8)
        length = int.from_bytes(start, "little")
        if len(start) < 8 or not 2 <= length <= 100_000_000:
            too = "small" if len(start) < 8 or length < 2 else "large"
            raise damaged_weights(os.path.dirname(path), f"header too {too}")
        try:
            header = json.loads(file.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise damaged_weights(os.path.dirname(path), f"header does not read: {error}") from None
    return {name: tuple(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}


_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


def check_checkpoint_fits(cls, config, weights_path):
    """The weights a config needs, by name and shape, are exactly the checkpoint's (position ids aside): checked from
    the safetensors header, before the model is built, so an edited config.json (another scorer, 20,000 encoder
    layers) fails at once, by name, instead of after minutes of building or with weights silently dropped."""
    stored = {name: shape for name, shape in safetensors_shapes(weights_path).items() if "position_ids" not in name}
    layers = {int(match.group(1)) for name in stored for match in [_LAYER_INDEX.search(name)] if match}
    wanted_layers = getattr(config.encoder_config, "num_hidden_layers", None)
    if layers and isinstance(wanted_layers, int) and wanted_layers != max(layers) + 1:
        raise ValueError(
            f"{os.path.dirname(weights_path)}: config.json asks for an encoder of {wanted_layers} layers, the weights "
            f"hold {max(layers) + 1}; config.json was changed or belongs to another model"
        )
    with torch.device("meta"):  # names and shapes only: no memory, no initialisation
        skeleton = cls(config)
    needed = {name: tuple(t.shape) for name, t in skeleton.state_dict().items() if "position_ids" not in name}
    if needed != stored:
        missing = sorted(set(needed) - set(stored))
        extra = sorted(set(stored) - set(needed))
        shapes = sorted(n for n in set(needed) & set(stored) if needed[n] != stored[n])
        problems = [
            f"lacks {len(missing)} weight(s) this config needs (e.g. {missing[:3]})" if missing else "",
            f"holds {len(extra)} weight(s) this config has no place for (e.g. {extra[:3]})" if extra else "",
            f"has other shapes for {[(n, stored[n], needed[n]) for n in shapes[:3]]}" if shapes else "",
        ]
        raise ValueError(
            f"{os.path.dirname(weights_path)}: the checkpoint {'; '.join(p for p in problems if p)}; was config.json "
            f"changed (scorer={config.scorer!r}, projection_dim, doc_stored_tokens, the encoder's sizes)?"
        )


class LitePreTrainedModel(PreTrainedModel):
    """Config class, weight initialisation and loading checks shared by LITE models."""

    config_class = LiteConfig
    # The encoder is the base model (`model.base_model`). transformers 4.x tests checkpoint keys against this prefix
    # with a bare `startswith`: no other weight name may start with it (the former "lite" matched lite_scorer.*).
    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if module is getattr(self, "doc_compressor", None):
            # Start as block averaging: stored vector k is the mean of the k-th contiguous run of token positions.
            stored, positions = module.weight.shape
            averaging = F.one_hot(torch.arange(positions) * stored // positions, stored).T.float()
            averaging = (averaging / averaging.sum(dim=1, keepdim=True)).to(module.weight.dtype)
            init.copy_(module.weight, averaging) if hasattr(init, "copy_") else module.weight.copy_(averaging)
        elif isinstance(module, ResidualLiteScorer):
            init.ones_(module.maxsim_scale)
        elif isinstance(module, QueryTokenWeights):
            init.zeros_(module.log_weights)  # every weight 1: a fresh model scores as without them
        elif (
            isinstance(module, nn.Linear)
            and isinstance(self.lite_scorer, ResidualLiteScorer)
            and (module is self.lite_scorer.out)
        ):
            init.zeros_(module.weight)  # the LITE term starts at zero: a fresh residual model is MaxSim
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, refusing a checkpoint that lacks weights this config needs (a config
        switched from maxsim to lite, say) instead of filling them in at random."""
        wants_info = kwargs.pop("output_loading_info", False)
        source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        weights = os.path.join(str(source), "model.safetensors")
        if os.path.isfile(weights):  # a local folder: its config checked against the weights before anything is built
            config = kwargs.get("config")
            if not isinstance(config, LiteConfig):
                config = LiteConfig.from_pretrained(source)
            check_checkpoint_fits(cls, config, weights)
        with weights_named(source):
            model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        for kind, verb in (("missing_keys", "lacks"), ("unexpected_keys", "holds")):
            keys = sorted(key for key in info.get(kind, ()) if "position_ids" not in key)
            if keys:
                raise ValueError(
                    f"{source}: the checkpoint {verb} {len(keys)} weight(s) "
                    f"{'this config needs' if verb == 'lacks' else 'this config has no place for'} (e.g. {keys[:3]}); "
                    f"was config.json changed (scorer={model.config.scorer!r}, projection_dim, doc_stored_tokens, the "
                    "encoder's layers)?"
                )
        return (model, info) if wants_info else model


class LiteModel(LiteTextMixin, LitePreTrainedModel):
    """LITE re-ranker. `logits` (batch, 1) are raw relevance scores; higher means more relevant.

    Calling conventions (same scores):
      - dual: `forward(query_input_ids, query_attention_mask, doc_input_ids, doc_attention_mask)`; with
        `doc_input_ids` of shape (batch, n, seq) each query is encoded once and scored against its n documents,
        giving `logits` (batch, n) (training on positives and negatives); `in_batch_negatives=N` also scores each
        query against N documents of the other queries in the batch (-1: all), giving `logits` (batch, n + N);
      - pair (cross-encoder): `forward(input_ids, attention_mask[, token_type_ids])` on `[CLS] query [SEP] doc [SEP]`
        (the query ends where the segment ids say, else at the first [SEP]: `split_pairs`).
    Late-interaction API: `encode_queries`, `encode_documents` (ids, or texts), `score_embeddings`.
    Text API: `compute_score(pairs)`, `rerank(query, documents)`.
    """

    # Speed only: a batch of mixed lengths is encoded in groups (a new group starts once a sequence is shorter than
    # length_group_ratio × the group's longest and the group holds length_group_min_rows sequences), and at inference
    # candidates go through the scorer in blocks of inference_block, grouped by document length.
    length_group_min_rows = 8
    length_group_ratio = 0.75
    inference_block = 32

    def __init__(self, config: LiteConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder_config)
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # never used; left in, DDP would fail on parameters that get no gradient
        self.projection = nn.Linear(config.hidden_size, config.projection_dim) if config.projection_dim else None
        self.doc_compressor = (
            nn.Linear(config.doc_max_length, config.doc_stored_tokens, bias=False)
            if config.doc_stored_tokens
            else None
        )
        # The LITE scorer's weights are saved as lite_scorer.* (the residual's too, plus lite_scorer.maxsim_scale);
        # MaxSim has none (lite_scorer is None).
        scorer_class = {"lite": LiteSeparableScorer, "residual": ResidualLiteScorer}.get(config.scorer)
        self.lite_scorer = scorer_class(config) if scorer_class is not None else None
        self.query_token_weights = QueryTokenWeights(config) if config.query_token_weights else None
        self.post_init()

    @property
    def scorer(self) -> nn.Module:
        """The scorer on S: `LiteSeparableScorer`, `ResidualLiteScorer`, or the parameter-free `MaxSimScorer`."""
        return self.lite_scorer if self.lite_scorer is not None else _MAXSIM

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        query_input_ids=None,
        query_attention_mask=None,
        doc_input_ids=None,
        doc_attention_mask=None,
        token_type_ids=None,
        in_batch_negatives: int | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        unexpected = set(kwargs) - _IGNORED_FORWARD_KWARGS
        if unexpected:
            raise TypeError(f"LiteModel.forward got unexpected arguments {sorted(unexpected)}.")
        if input_ids is not None and (query_input_ids is not None or doc_input_ids is not None):
            raise ValueError(
                "Pass either input_ids (pair mode) or query_input_ids + doc_input_ids (dual mode), not both."
            )
        if input_ids is not None:
            config = self.config
            query_input_ids, query_attention_mask, doc_input_ids, doc_attention_mask = split_pairs(
                input_ids,
                attention_mask,
                config.cls_token_id,
                config.sep_token_id,
                config.pad_token_id,
                token_type_ids,
            )
        elif query_input_ids is None or doc_input_ids is None:
            raise ValueError("Dual mode needs both query_input_ids and doc_input_ids.")
        queries, query_mask = self.encode_queries(query_input_ids, query_attention_mask)  # (batch, L1, d')
        batch = queries.shape[0]
        docs_per_query = doc_input_ids.shape[1] if doc_input_ids.dim() == 3 else 1
        if doc_input_ids.dim() == 3:  # (batch, docs_per_query, seq): several documents per query, e.g. pos + neg
            doc_input_ids = doc_input_ids.flatten(0, 1)
            doc_attention_mask = None if doc_attention_mask is None else doc_attention_mask.flatten(0, 1)
        if doc_input_ids.shape[0] != batch * docs_per_query:
            raise ValueError(
                f"Dual mode scores query i with document i: got {batch} queries and "
                f"{doc_input_ids.shape[0]} documents."
            )
        docs, doc_mask = self.encode_documents(doc_input_ids, doc_attention_mask)  # (batch · n, K, d')
        queries, query_mask, docs, doc_mask = pair_with_candidates(
            queries, query_mask, docs, doc_mask, docs_per_query, in_batch_negatives
        )
        per_query = docs.shape[0] // batch
        logits = self.score_embeddings(queries, query_mask, docs, doc_mask).view(batch, per_query)
        output = SequenceClassifierOutput(logits=logits)
        return output if return_dict is not False else output.to_tuple()

    @accepts_text("query")
    def encode_queries(self, input_ids, attention_mask=None):
        """Token ids (or texts) → (query vectors (batch, L1, d'), mask (batch, L1)), exactly what the scorer reads."""
        return self._encode(input_ids, attention_mask, self.config.query_max_length, "query")  # normalised there

    @accepts_text("document")
    def encode_documents(self, input_ids, attention_mask=None):
        """Token ids (or texts) → (document vectors (batch, K, d'), mask (batch, K)); K = doc_stored_tokens or L2.

        This is what a document-embedding cache stores.
        """
        vectors, mask = self._encode(input_ids, attention_mask, self.config.doc_max_length, "document")
        if self.doc_compressor is not None:
            vectors = self.doc_compressor(vectors.transpose(1, 2)).transpose(1, 2)  # (batch, K, d')
            mask = torch.ones(vectors.shape[:2], dtype=torch.bool, device=vectors.device)
        return self._normalize(vectors), mask

    def _encode(self, input_ids, attention_mask, max_length: int, name: str):
        """Token vectors padded to `max_length` after encoding (a sequence's vectors never depend on the batch's
        padding), zero at padded positions (they add nothing to S). A multi-vector model's prefix, query expansion
        and skiplist apply here, so every route (texts, ids, pairs) encodes alike. Queries come back normalised (and
        weighted, with query_token_weights); documents are normalised by encode_documents, after any compressor."""
        config = self.config
        is_query = name == "query"
        input_ids, attention_mask = check_token_batch(input_ids, attention_mask, name)
        prefix = config.query_prefix_ids if is_query else config.doc_prefix_ids
        if prefix:
            input_ids, attention_mask = insert_prefix(input_ids, attention_mask, prefix)
        input_ids, attention_mask = fit_to_length(input_ids, attention_mask, max_length, config.sep_token_id)
        scoring_mask = attention_mask.bool()
        if is_query and config.query_expansion:
            input_ids, attention_mask, scoring_mask = expand_queries(input_ids, attention_mask, config.query_expansion)
        hidden = encode_in_length_groups(
            self.encoder,
            input_ids,
            attention_mask,
            self.length_group_min_rows,
            self.length_group_ratio,
            lengths=scoring_mask.sum(dim=1),
        )  # (batch, seq, hidden)
        if self.projection is not None:
            hidden = self.projection(hidden)  # (batch, seq, d')
        skiplist = config.query_skiplist_ids if is_query else config.doc_skiplist_ids
        if skiplist:
            scoring_mask = scoring_mask & ~torch.isin(input_ids, torch.tensor(skiplist, device=input_ids.device))
        hidden = hidden * scoring_mask.unsqueeze(-1).to(hidden.dtype)
        if is_query:  # normalised here, before the token weights (normalising would undo them)
            hidden = self._normalize(hidden)
            if self.query_token_weights is not None:
                hidden = self.query_token_weights(hidden, input_ids)
        if skiplist:
            hidden, scoring_mask = compact(hidden, scoring_mask)
        pad = max_length - hidden.shape[1]
        return F.pad(hidden, (0, 0, 0, pad)), F.pad(scoring_mask, (0, pad))

    def _normalize(self, vectors):
        if not self.config.normalize_embeddings:
            return vectors
        # float32: fp16 cannot hold normalize's epsilon; all-zero padded vectors stay zero.
        return F.normalize(vectors.float(), dim=-1).to(vectors.dtype)

    def score_embeddings(self, query_embeddings, query_mask, doc_embeddings, doc_mask):
        """Scores (batch,) from `encode_queries` / `encode_documents` outputs.

        A batch of 1 on either side broadcasts: one query against many cached documents costs one matmul. Only the
        query's real tokens enter S (`query_mask`; None: all L1 positions). `doc_mask` may be None when every
        document position is real.
        """
        q_batch, d_batch = check_embeddings(self.config, query_embeddings, doc_embeddings)
        if query_mask is not None:  # padded query rows of S are zero: leave them out (the scorer accounts for them)
            query_embeddings = query_embeddings[:, : int(query_mask.sum(dim=1).max())]
        doc_embeddings = doc_embeddings.to(query_embeddings.dtype)
        if doc_mask is None:
            doc_mask = torch.ones(doc_embeddings.shape[:2], dtype=torch.bool, device=doc_embeddings.device)

        doc_mask = doc_mask.to(doc_embeddings.device)
        lengths = doc_mask.sum(dim=1)
        if lengths.float().mean() >= 0.75 * lengths.max():  # little padding: one large GEMM beats many small ones
            similarity = self.similarity(query_embeddings, doc_embeddings[:, : int(lengths.max())])
            return self.score_similarity(similarity, doc_mask)

        def block_similarity(rows, width):  # S of these candidates over their real width only
            queries = query_embeddings if q_batch == 1 else query_embeddings.index_select(0, rows)
            return self.similarity(queries, doc_embeddings[:, :width].index_select(0, rows))

        return self._score_blocks(block_similarity, doc_mask, max(q_batch, d_batch))

    @staticmethod
    def similarity(query_embeddings, doc_embeddings):
        """S = Q·Dᵀ, (batch, q, K). One query against many documents is a single (n·K × dim) @ (dim × q) GEMM."""
        if query_embeddings.shape[0] == 1 and doc_embeddings.shape[0] > 1:
            docs, tokens, dim = doc_embeddings.shape
            flat = doc_embeddings.reshape(docs * tokens, dim) @ query_embeddings[0].T  # (n·K, q)
            return flat.view(docs, tokens, -1).transpose(1, 2).contiguous()
        return torch.matmul(query_embeddings, doc_embeddings.transpose(1, 2))

    def score_similarity(self, similarity, doc_mask):
        """The scorer on S (batch, q ≤ L1, K), zeros at padded positions; `doc_mask` (batch or 1, K)."""
        return self._score_blocks(
            lambda rows, width: similarity.index_select(0, rows)[:, :, :width], doc_mask, similarity.shape[0]
        )

    def _score_blocks(self, similarity_of, doc_mask, count: int):
        # At inference, blocks of `inference_block` keep the scorer's activations cache-sized; training scores the
        # batch as one block.
        block = count if torch.is_grad_enabled() else self.inference_block
        return score_in_blocks(self.scorer, similarity_of, doc_mask, count, block)


LiteModel.register_for_auto_class("AutoModel")

__all__ = ["LiteModel", "LitePreTrainedModel", "LiteSeparableScorer", "MaxSimScorer", "ResidualLiteScorer"]
