"""LITE: Learnable Late InTEraction re-ranker (Ji et al. 2024, arXiv:2406.17968).

A shared BERT-like encoder turns a query and a document into token embeddings Q (L1 × d) and D (L2 × d); their
similarity matrix S = Q·Dᵀ (L1 × L2) is scored either by the separable LITE scorer (a row MLP over the document
axis, a column MLP over the query axis, a linear map of the flattened matrix to one score) or by ColBERT's MaxSim
(Σ_i max_j S_ij).

Self-contained Hub code: imports only torch, transformers and `.configuration_lite`.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils.logging import tqdm

try:
    from .configuration_lite import LiteConfig
except ImportError:  # imported as a top-level module (a local checkout) rather than as Hub remote code
    from configuration_lite import LiteConfig

# Keyword arguments that tokenizers, pipelines and sentence-transformers pass along and that LITE can ignore:
# the pair convention rebuilds the segments itself, and the encoder's internals are not exposed.
_IGNORED_FORWARD_KWARGS = {"token_type_ids", "output_attentions", "output_hidden_states"}


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

    def __init__(self, config: LiteConfig):
        super().__init__()
        query_len, doc_len = config.query_max_length, config.doc_scored_tokens
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


class LiteModel(PreTrainedModel):
    """LITE re-ranker. `logits` (batch, 1) are raw relevance scores; higher means more relevant.

    Calling conventions (same scores):
      - dual: `forward(query_input_ids, query_attention_mask, doc_input_ids, doc_attention_mask)`; with
        `doc_input_ids` of shape (batch, n, seq) each query is encoded once and scored against its n documents,
        giving `logits` (batch, n) (training on positives and negatives); `in_batch_negatives=N` also scores each
        query against N documents of the other queries in the batch (-1: all), giving `logits` (batch, n + N);
      - pair (cross-encoder): `forward(input_ids, attention_mask)` on `[CLS] query [SEP] doc [SEP]`.
    Late-interaction API: `encode_queries`, `encode_documents`, `score_embeddings`.
    Text API: `compute_score(pairs)`, `rerank(query, documents)`.
    """

    config_class = LiteConfig
    base_model_prefix = "lite"
    main_input_name = "input_ids"
    _supports_sdpa = True
    # Length grouping inside a batch (speed only): a new group starts once a sequence is shorter than
    # length_group_ratio × the group's longest and the group holds length_group_min_rows sequences.
    length_group_min_rows = 8
    length_group_ratio = 0.75
    # Candidates scored per block at inference (speed only).
    inference_block = 64

    def __init__(self, config: LiteConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder_config)
        if getattr(self.encoder, "pooler", None) is not None:
            # Never used; left in, DDP would fail on parameters that get no gradient.
            self.encoder.pooler = None
        self.projection = (
            nn.Linear(config.hidden_size, config.projection_dim) if config.projection_dim is not None else None
        )
        self.doc_compressor = (
            nn.Linear(config.doc_max_length, config.doc_stored_tokens, bias=False)
            if config.doc_stored_tokens is not None
            else None
        )
        self.lite_scorer = LiteSeparableScorer(config) if config.scorer == "lite" else None
        self._tokenizer = None
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        if module is self.doc_compressor:
            # Start as block averaging: stored vector k is the mean of the k-th contiguous run of token positions.
            stored, positions = module.weight.shape
            block = torch.arange(positions) * stored // positions
            averaging = F.one_hot(block, stored).T.float()
            init.copy_(module.weight, averaging / averaging.sum(dim=1, keepdim=True))
        else:
            super()._init_weights(module)

    # ------------------------------------------------------------------ tokens → scorer inputs

    def _check_token_batch(self, input_ids, attention_mask, name: str):
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
            empty = torch.nonzero(attention_mask[:, 0] == 0)[0].item()
            raise ValueError(f"{name}: row {empty} has no tokens.")
        return input_ids, attention_mask

    def _fit_to_length(self, input_ids, attention_mask, max_length: int, name: str):
        """Drop all-padding columns and truncate to `max_length` like a tokenizer: first max_length-1 tokens + [SEP]."""
        input_ids, attention_mask = self._check_token_batch(input_ids, attention_mask, name)
        lengths = attention_mask.sum(dim=1)
        longest = int(lengths.max())
        if longest > max_length:
            input_ids = input_ids[:, :max_length].clone()
            overlong = lengths > max_length
            input_ids[overlong, max_length - 1] = self.config.sep_token_id
            return input_ids, attention_mask[:, :max_length]
        return input_ids[:, :longest], attention_mask[:, :longest]

    def _run_encoder(self, input_ids, attention_mask):
        """Encoder hidden states (batch, seq, hidden); a batch of mixed lengths is encoded in groups of similar length,
        each padded only to its own longest sequence (results are the same, the padding compute is not)."""
        lengths = attention_mask.sum(dim=1)
        groups = _length_groups(lengths.tolist(), self.length_group_min_rows, self.length_group_ratio)
        if len(groups) == 1:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        outputs = []
        for rows in groups:
            rows = torch.tensor(rows, device=input_ids.device)
            longest = int(lengths[rows].max())
            hidden = self.encoder(input_ids=input_ids[rows, :longest], attention_mask=attention_mask[rows, :longest])
            outputs.append(F.pad(hidden.last_hidden_state, (0, 0, 0, input_ids.shape[1] - longest)))
        order = torch.tensor([row for rows in groups for row in rows], device=input_ids.device)
        return torch.cat(outputs)[torch.argsort(order)]  # back to the batch's order

    def _encode_tokens(self, input_ids, attention_mask, max_length: int, name: str):
        input_ids, attention_mask = self._fit_to_length(input_ids, attention_mask, max_length, name)
        hidden = self._run_encoder(input_ids, attention_mask)  # (batch, seq, hidden)
        if self.projection is not None:
            hidden = self.projection(hidden)  # (batch, seq, proj_dim)
        hidden = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)  # padded positions add nothing to S
        # Fixed length after encoding: a sequence's vectors never depend on the batch's padding.
        pad = max_length - hidden.shape[1]
        hidden = F.pad(hidden, (0, 0, 0, pad))  # (batch, max_length, dim)
        mask = F.pad(attention_mask, (0, pad)).bool()  # (batch, max_length)
        return hidden, mask

    def _normalize(self, vectors, mask):
        if not self.config.normalize_embeddings:
            return vectors
        # float32: fp16 cannot hold normalize's epsilon, and all-zero padded vectors must stay zero, not NaN.
        normalized = F.normalize(vectors.float(), dim=-1) * mask.unsqueeze(-1)
        return normalized.to(vectors.dtype)

    def encode_queries(self, input_ids, attention_mask=None):
        """Token ids → (query vectors (batch, L1, dim), mask (batch, L1)), exactly what the scorer consumes.

        `input_ids` may also be a string or a list of strings (tokenised with the model's tokenizer).
        """
        if _is_text(input_ids):
            input_ids, attention_mask = self._tokenize(input_ids, self.config.query_max_length)
        vectors, mask = self._encode_tokens(input_ids, attention_mask, self.config.query_max_length, "query")
        return self._normalize(vectors, mask), mask

    def encode_documents(self, input_ids, attention_mask=None):
        """Token ids → (document vectors (batch, K, dim), mask (batch, K)); K = doc_stored_tokens or L2.

        This is what a document-embedding cache stores. `input_ids` may also be a string or a list of strings.
        """
        if _is_text(input_ids):
            input_ids, attention_mask = self._tokenize(input_ids, self.config.doc_max_length)
        vectors, mask = self._encode_tokens(input_ids, attention_mask, self.config.doc_max_length, "document")
        if self.doc_compressor is not None:
            vectors = self.doc_compressor(vectors.transpose(1, 2)).transpose(1, 2)  # (batch, K, dim)
            mask = torch.ones(vectors.shape[:2], dtype=torch.bool, device=vectors.device)
        return self._normalize(vectors, mask), mask

    def score_embeddings(self, query_embeddings, query_mask, doc_embeddings, doc_mask):
        """Scores (batch,) from `encode_queries` / `encode_documents` outputs.

        A batch of 1 on either side broadcasts: one query against many cached documents costs one matmul.
        `query_mask` is accepted for symmetry: padded query vectors are zero and add nothing to S.
        `doc_mask` may be None when every document position is real.
        """
        for name, tensor in (("query_embeddings", query_embeddings), ("doc_embeddings", doc_embeddings)):
            if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3:
                raise ValueError(f"{name} must be a 3-D tensor (batch, tokens, dim); see encode_queries/encode_documents.")
        expected = {
            "query_embeddings": (query_embeddings, self.config.query_max_length),
            "doc_embeddings": (doc_embeddings, self.config.doc_scored_tokens),
        }
        for name, (tensor, tokens) in expected.items():
            if tensor.shape[1] != tokens or tensor.shape[2] != self.config.embedding_dim:
                raise ValueError(
                    f"{name} has shape {tuple(tensor.shape)}; this model expects (batch, {tokens}, "
                    f"{self.config.embedding_dim})."
                )
        q_batch, d_batch = query_embeddings.shape[0], doc_embeddings.shape[0]
        if q_batch != d_batch and 1 not in (q_batch, d_batch):
            raise ValueError(f"{q_batch} queries cannot be scored against {d_batch} documents (equal sizes, or one of them 1).")
        doc_embeddings = doc_embeddings.to(query_embeddings.dtype)
        similarity = self.similarity(query_embeddings, doc_embeddings)
        if doc_mask is None:
            doc_mask = torch.ones(doc_embeddings.shape[:2], dtype=torch.bool, device=similarity.device)
        return self.score_similarity(similarity, doc_mask.to(similarity.device))

    @staticmethod
    def similarity(query_embeddings, doc_embeddings):
        """S = Q·Dᵀ, (batch, L1, K). One query against many documents is a single (n·K × dim) @ (dim × L1) GEMM."""
        if query_embeddings.shape[0] == 1 and doc_embeddings.shape[0] > 1:
            docs, tokens, dim = doc_embeddings.shape
            flat = doc_embeddings.reshape(docs * tokens, dim) @ query_embeddings[0].T  # (n·K, L1)
            return flat.view(docs, tokens, -1).transpose(1, 2).contiguous()
        return torch.matmul(query_embeddings, doc_embeddings.transpose(1, 2))

    def score_similarity(self, similarity, doc_mask):
        """The scorer on S (batch, L1, K), zeros at padded positions; `doc_mask` (batch or 1, K) matters to MaxSim.

        At inference, candidates go through the scorer in blocks that keep its (block·L1 × hidden) activations
        cache-sized; training scores the whole batch at once.
        """
        if torch.is_grad_enabled() or similarity.shape[0] <= self.inference_block:
            return self._scorer(similarity, doc_mask)
        blocks = []
        for start in range(0, similarity.shape[0], self.inference_block):
            part = slice(start, start + self.inference_block)
            blocks.append(self._scorer(similarity[part], doc_mask if doc_mask.shape[0] == 1 else doc_mask[part]))
        return torch.cat(blocks)

    def _scorer(self, similarity, doc_mask):
        return maxsim(similarity, doc_mask) if self.lite_scorer is None else self.lite_scorer(similarity)

    def split_pairs(self, input_ids, attention_mask=None):
        """`[CLS] query [SEP] doc [SEP]` → query ids `[CLS] query [SEP]` and document ids `[CLS] doc [SEP]` (+ masks)."""
        input_ids, attention_mask = self._check_token_batch(input_ids, attention_mask, "input_ids")
        sep, cls, pad = self.config.sep_token_id, self.config.cls_token_id, self.config.pad_token_id
        is_sep = (input_ids == sep) & attention_mask.bool()
        if not is_sep.any(dim=1).all():
            row = torch.nonzero(~is_sep.any(dim=1))[0].item()
            raise ValueError(f"input_ids row {row} has no [SEP] (id {sep}); pair mode expects `[CLS] query [SEP] doc [SEP]`.")
        first_sep = is_sep.int().argmax(dim=1)  # (batch,)
        lengths = attention_mask.sum(dim=1)
        doc_lengths = lengths - first_sep  # [CLS] + everything after the first [SEP]
        if (doc_lengths < 2).any():
            row = torch.nonzero(doc_lengths < 2)[0].item()
            raise ValueError(f"input_ids row {row} has no document after its first [SEP].")
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        query_mask = positions < (first_sep + 1).unsqueeze(1)
        doc_mask = positions < doc_lengths.unsqueeze(1)
        gather_at = (first_sep.unsqueeze(1) + positions).clamp(max=input_ids.shape[1] - 1)
        doc_ids = input_ids.gather(1, gather_at)
        doc_ids[:, 0] = cls
        query_ids = input_ids.masked_fill(~query_mask, pad)
        doc_ids = doc_ids.masked_fill(~doc_mask, pad)
        return query_ids, query_mask.long(), doc_ids, doc_mask.long()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        query_input_ids: torch.Tensor | None = None,
        query_attention_mask: torch.Tensor | None = None,
        doc_input_ids: torch.Tensor | None = None,
        doc_attention_mask: torch.Tensor | None = None,
        in_batch_negatives: int | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        unexpected = set(kwargs) - _IGNORED_FORWARD_KWARGS
        if unexpected:
            raise TypeError(f"LiteModel.forward got unexpected arguments {sorted(unexpected)}.")
        dual = query_input_ids is not None or doc_input_ids is not None
        if input_ids is not None and dual:
            raise ValueError("Pass either input_ids (pair mode) or query_input_ids + doc_input_ids (dual mode), not both.")
        if input_ids is not None:
            query_input_ids, query_attention_mask, doc_input_ids, doc_attention_mask = self.split_pairs(
                input_ids, attention_mask
            )
        elif query_input_ids is None or doc_input_ids is None:
            raise ValueError("Dual mode needs both query_input_ids and doc_input_ids.")
        queries, query_mask = self.encode_queries(query_input_ids, query_attention_mask)
        docs_per_query = 1
        if doc_input_ids.dim() == 3:  # (batch, docs_per_query, seq): several documents per query, e.g. pos + neg
            docs_per_query = doc_input_ids.shape[1]
            doc_input_ids = doc_input_ids.flatten(0, 1)
            doc_attention_mask = None if doc_attention_mask is None else doc_attention_mask.flatten(0, 1)
        if doc_input_ids.shape[0] != queries.shape[0] * docs_per_query:
            raise ValueError(
                f"Dual mode scores query i with document i: got {queries.shape[0]} queries and "
                f"{doc_input_ids.shape[0]} documents."
            )
        docs, doc_mask = self.encode_documents(doc_input_ids, doc_attention_mask)
        batch = queries.shape[0]
        if in_batch_negatives:  # each document is encoded once and scored by its own query and by others
            own = torch.arange(batch * docs_per_query, device=docs.device).view(batch, docs_per_query)
            others = _in_batch_candidates(batch, docs_per_query, in_batch_negatives, docs.device)
            candidates = torch.cat([own, others], dim=1).flatten()
            docs, doc_mask = docs[candidates], doc_mask[candidates]
        per_query = docs.shape[0] // batch
        if per_query > 1:
            queries = queries.repeat_interleave(per_query, dim=0)
            query_mask = query_mask.repeat_interleave(per_query, dim=0)
        scores = self.score_embeddings(queries, query_mask, docs, doc_mask)
        logits = scores.view(batch, -1)  # (batch, 1), or (batch, docs_per_query [+ in-batch negatives])
        output = SequenceClassifierOutput(logits=logits)
        return output if return_dict is not False else output.to_tuple()

    # ------------------------------------------------------------------ text API

    @property
    def tokenizer(self):
        """The tokenizer saved next to the weights, loaded on first use; assign one to override."""
        if self._tokenizer is None:
            if not self.name_or_path:
                raise ValueError(
                    "This LiteModel has no tokenizer: set `model.tokenizer = AutoTokenizer.from_pretrained(...)` or "
                    "load the model from a folder or Hub repo that holds tokenizer files."
                )
            # Passing the config spares AutoTokenizer a second, remote-code-guarded read of config.json.
            self._tokenizer = AutoTokenizer.from_pretrained(self.name_or_path, config=self.config)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer):
        self._tokenizer = tokenizer

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus the attached tokenizer so the folder is usable on raw text."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self._tokenizer is not None and kwargs.get("is_main_process", True):
            self._tokenizer.save_pretrained(save_directory)

    def _tokenize(self, texts, max_length: int):
        texts = [texts] if isinstance(texts, str) else list(texts)
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
            return_token_type_ids=False,
        )  # fmt: skip
        return tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)

    @torch.inference_mode()
    def compute_score(self, pairs, batch_size: int = 32, show_progress_bar: bool = False):
        """Scores for `[[query, document], ...]` (a list of floats), or for one `[query, document]` (a float)."""
        single = len(pairs) == 2 and all(isinstance(text, str) for text in pairs)
        pairs = [pairs] if single else [tuple(pair) for pair in pairs]
        if not pairs:
            raise ValueError("compute_score needs at least one (query, document) pair.")
        for index, pair in enumerate(pairs):
            if len(pair) != 2 or not all(isinstance(text, str) for text in pair):
                raise ValueError(f"compute_score: pair {index} is not a (query: str, document: str) pair: {pair!r}.")
        scores = []
        with _eval_mode(self):
            for start in tqdm(range(0, len(pairs), batch_size), disable=not show_progress_bar, desc="Scoring"):
                queries, docs = zip(*pairs[start : start + batch_size])
                scores.append(self.score_embeddings(*self.encode_queries(queries), *self.encode_documents(docs)))
        scores = torch.cat(scores).float().tolist()
        return scores[0] if single else scores

    @torch.inference_mode()
    def rerank(self, query: str, documents, top_n: int | None = None, batch_size: int = 32,
               return_documents: bool = True, show_progress_bar: bool = False):  # fmt: skip
        """Sort `documents` by relevance to `query`: `[{"index", "score", "document"}, ...]`, best first.

        The query is encoded once; ties keep the input order.
        """
        if not isinstance(query, str):
            raise ValueError(f"rerank: query must be a string, got {type(query).__name__}.")
        if isinstance(documents, str) or not all(isinstance(doc, str) for doc in documents):
            raise ValueError("rerank: documents must be a list of strings.")
        documents = list(documents)
        if not documents:
            raise ValueError("rerank: the document list is empty.")
        scores = []
        with _eval_mode(self):
            query_vectors, query_mask = self.encode_queries([query])
            for start in tqdm(range(0, len(documents), batch_size), disable=not show_progress_bar, desc="Reranking"):
                docs, doc_mask = self.encode_documents(documents[start : start + batch_size])
                scores.append(self.score_embeddings(query_vectors, query_mask, docs, doc_mask))
        scores = torch.cat(scores).float().tolist()
        order = sorted(range(len(documents)), key=lambda index: -scores[index])
        results = [{"index": index, "score": scores[index]} for index in order[:top_n]]
        if return_documents:
            for result in results:
                result["document"] = documents[result["index"]]
        return results

    @classmethod
    def from_encoder(cls, encoder_name_or_path: str, **config_overrides) -> "LiteModel":
        """A new LITE model whose encoder starts from a pretrained checkpoint (Hub id or local folder).

        The scorer (and any Small-LITE layer) is freshly initialised; `config_overrides` set LiteConfig fields.
        The checkpoint's tokenizer, when it has one, is attached and saved with the model.
        """
        encoder = AutoModel.from_pretrained(encoder_name_or_path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(encoder_name_or_path)
        except (OSError, ValueError):
            tokenizer = None
        if tokenizer is not None:
            for field in ("pad_token_id", "cls_token_id", "sep_token_id"):
                if getattr(tokenizer, field, None) is not None:
                    config_overrides.setdefault(field, getattr(tokenizer, field))
        model = cls(LiteConfig(encoder_config=encoder.config, **config_overrides))
        weights = {key: value for key, value in encoder.state_dict().items() if not key.startswith("pooler.")}
        result = model.encoder.load_state_dict(weights, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"Encoder weights of {encoder_name_or_path} do not fit: missing {result.missing_keys}, "
                f"unexpected {result.unexpected_keys}."
            )
        model.tokenizer = tokenizer
        return model


def _length_groups(lengths: list[int], min_rows: int, ratio: float) -> list[list[int]]:
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


def _in_batch_candidates(batch: int, docs_per_query: int, count: int, device) -> torch.Tensor:
    """(batch, count) indices into the batch's documents (query-major, `docs_per_query` each): for query i, the
    documents of queries i+1, i+2, … (cyclically), never its own; count -1 takes all of them."""
    available = (batch - 1) * docs_per_query
    if count == -1 or count > available:
        if count != -1:
            raise ValueError(f"in_batch_negatives={count}, but a batch of {batch} queries holds only {available} "
                             "documents of other queries.")
        count = available
    j = torch.arange(count, device=device)
    queries = torch.arange(batch, device=device).unsqueeze(1)
    return ((queries + 1 + j // docs_per_query) % batch) * docs_per_query + j % docs_per_query


def _is_text(value) -> bool:
    return isinstance(value, str) or (isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], str))


class _eval_mode:
    """Scores must not depend on dropout: switch to eval for the block, then restore the previous mode."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


LiteModel.register_for_auto_class("AutoModel")

__all__ = ["LiteModel"]
