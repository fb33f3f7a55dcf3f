"""Document token embeddings kept once per document and gathered back into scorer-ready padded batches."""

import json

import torch
from safetensors.torch import load_file, save_file
from transformers.utils.logging import tqdm


class TokenEmbeddingStore:
    """Token vectors of documents (or queries) without their padding: one flat (tokens, dim) tensor plus each item's
    length, for items of at most `max_tokens` positions (K for documents, L1 for queries).

    `get(ids)` rebuilds the padded (n, K, dim) batch and mask that `LiteModel.score_embeddings` takes, with one
    vectorised gather (no Python loop over documents). `dtype=torch.int8` stores each vector quantised with its own
    scale (max |x| / 127, kept in float16): dim + 2 bytes per vector instead of 2·dim in float16.
    """

    def __init__(self, max_tokens: int, dim: int, dtype=torch.float16, device="cpu"):
        self.max_tokens, self.dim, self.dtype, self.device = max_tokens, dim, dtype, torch.device(device)
        self.row_of: dict[str, int] = {}
        self._pending = []
        self._reserved = None  # (vectors, scales) written in place up to self._used, when `reserve` was called
        self._used = 0
        self.vectors = torch.empty(0, dim, dtype=dtype, device=self.device)
        self.scales = torch.empty(0, dtype=torch.float16, device=self.device) if self.quantized else None
        self.lengths = torch.empty(0, dtype=torch.long, device=self.device)
        self.offsets = torch.zeros(1, dtype=torch.long, device=self.device)

    @property
    def quantized(self) -> bool:
        return self.dtype == torch.int8

    def __len__(self):
        return len(self.row_of)

    def __contains__(self, doc_id):
        return doc_id in self.row_of

    @property
    def nbytes(self) -> int:
        """Bytes of vector data (and scales); lengths and ids are bookkeeping."""
        self._flush()
        scales = self.scales.numel() * 2 if self.quantized else 0
        return self.vectors.numel() * self.vectors.element_size() + scales

    def reserve(self, vectors: int):
        """Room for `vectors` more token vectors (an upper bound), written in place as items are added: the store
        then holds its vectors once, never also as the chunks a concatenation would copy them from. Pages past what
        is written are never touched, so an upper bound costs no memory."""
        self._flush()
        scales = torch.empty(vectors, dtype=torch.float16, device=self.device) if self.quantized else None
        self._reserved, self._used = (torch.empty(vectors, self.dim, dtype=self.dtype, device=self.device), scales), 0

    def add(self, ids, vectors: torch.Tensor, mask: torch.Tensor):
        """Store `vectors` (n, K, dim) with `mask` (n, K); only the masked-in (real) token vectors are kept."""
        if vectors.shape[1:] != (self.max_tokens, self.dim):
            raise ValueError(
                f"expected vectors of shape (n, {self.max_tokens}, {self.dim}), got {tuple(vectors.shape)}"
            )
        if not bool((mask[:, 1:] <= mask[:, :-1]).all()):
            raise ValueError("document masks must be contiguous from the first position")
        for doc_id in ids:
            if doc_id in self.row_of:
                raise ValueError(f"document {doc_id!r} is already stored")
            self.row_of[doc_id] = len(self.row_of)
        real = vectors[mask].float()  # (tokens, dim)
        scales = None
        if self.quantized:
            scales = real.abs().amax(dim=-1).clamp_min(1e-8) / 127
            real = (real / scales.unsqueeze(-1)).round().clamp(-127, 127)
            scales = scales.to(self.device, torch.float16)
        lengths = mask.sum(dim=1).to(self.device)
        if self._reserved is not None and self._used + len(real) <= len(self._reserved[0]):
            rows = slice(self._used, self._used + len(real))
            self._reserved[0][rows] = real.to(self.device, self.dtype)
            if self.quantized:
                self._reserved[1][rows] = scales
            self._used += len(real)
            self._pending.append((None, None, lengths))  # the vectors are in place already
            return
        self._flush()  # (more than was reserved: what is in place is kept, the rest appended as before)
        self._pending.append((real.to(self.device, self.dtype), scales, lengths))

    def _flush(self):
        if self._reserved is not None:  # the vectors written in place become the store's (a view: no copy)
            vectors, scales = (part[: self._used] if part is not None else None for part in self._reserved)
            self._reserved = None
            first = len(self.vectors) == 0
            self.vectors = vectors if first else torch.cat([self.vectors, vectors])
            if self.quantized:
                self.scales = scales if first else torch.cat([self.scales, scales])
        if not self._pending:
            return
        vectors, scales, lengths = zip(*self._pending)
        vectors = [part for part in vectors if part is not None]
        if vectors:
            self.vectors = torch.cat([self.vectors, *vectors])
            if self.quantized:
                self.scales = torch.cat([self.scales, *[part for part in scales if part is not None]])
        self.lengths = torch.cat([self.lengths, *lengths])
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=self.device), self.lengths.cumsum(0)])
        self._pending = []

    def _locate(self, ids):
        """For `ids`: lengths (n,), and for every stored token its document, its position and its storage row."""
        self._flush()
        try:
            rows = torch.tensor([self.row_of[doc_id] for doc_id in ids], dtype=torch.long, device=self.device)
        except KeyError as error:
            raise KeyError(f"document {error.args[0]!r} is not in the embedding store") from None
        lengths = self.lengths[rows]
        doc_of_token = torch.repeat_interleave(torch.arange(len(rows), device=self.device), lengths)
        first_token = torch.cumsum(lengths, 0) - lengths
        position = torch.arange(int(lengths.sum()), device=self.device) - first_token[doc_of_token]
        return lengths, doc_of_token, position, self.offsets[rows][doc_of_token] + position

    def _tokens(self, source, dtype):
        # index_select: on CPU several times faster than advanced indexing for row gathers
        values = self.vectors.index_select(0, source).to(dtype)
        return values * self.scales.index_select(0, source).to(dtype).unsqueeze(-1) if self.quantized else values

    def _mask(self, lengths):
        return torch.arange(self.max_tokens, device=self.device) < lengths.unsqueeze(1)

    def get(self, ids, dtype=None):
        """Padded (n, K, dim) vectors and (n, K) mask for `ids`, in that order (int8 is dequantised)."""
        dtype = dtype or (torch.float32 if self.quantized else self.dtype)
        lengths, doc_of_token, position, source = self._locate(ids)
        out = torch.zeros(len(lengths), self.max_tokens, self.dim, dtype=dtype, device=self.device)
        out.view(-1, self.dim).index_copy_(0, doc_of_token * self.max_tokens + position, self._tokens(source, dtype))
        return out, self._mask(lengths)

    def similarity(self, query_vectors, ids, block_tokens: int = 16384):
        """S (n, q, K) of one query (1, q, dim) against the stored documents `ids`, and their (n, K) mask.

        Equal to `LiteModel.similarity(query, get(ids))` without building the padded documents: GEMMs over the stored
        tokens only, `block_tokens` at a time (each block gathered, converted and multiplied while it is in cache),
        scattered into S. Pass only the query's real rows (`real_query_rows`): the scorer accounts for the padded
        ones without computing them.
        """
        lengths, doc_of_token, position, source = self._locate(ids)
        query = query_vectors[0].to(self.device)  # (q, dim)
        similarity = torch.zeros(len(lengths), self.max_tokens, query.shape[0], dtype=query.dtype, device=self.device)
        flat, rows = similarity.view(-1, query.shape[0]), doc_of_token * self.max_tokens + position
        for start in range(0, len(source), block_tokens):
            part = slice(start, start + block_tokens)
            # .to(): under autocast (dev selection in bf16 training) the product comes back in the autocast dtype
            flat.index_copy_(0, rows[part], (self._tokens(source[part], query.dtype) @ query.T).to(flat.dtype))
        return similarity.transpose(1, 2).contiguous(), self._mask(lengths)

    def save(self, path, metadata: dict | None = None):
        """One safetensors file: vectors, lengths (and scales); the ids and shape in its metadata. No pickle."""
        self._flush()
        tensors = {"vectors": self.vectors.cpu(), "lengths": self.lengths.to(torch.int32).cpu()}
        if self.quantized:
            tensors["scales"] = self.scales.cpu()
        info = {"ids": json.dumps(list(self.row_of)), "doc_tokens": str(self.max_tokens), "dim": str(self.dim)}
        save_file(tensors, str(path), metadata={**(metadata or {}), **info})

    @classmethod
    def load(cls, path, device="cpu") -> "TokenEmbeddingStore":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            info = handle.metadata()
        tensors = load_file(str(path), device=str(device))
        store = cls(int(info["doc_tokens"]), int(info["dim"]), tensors["vectors"].dtype, device)
        store.row_of = {doc_id: row for row, doc_id in enumerate(json.loads(info["ids"]))}
        store.vectors, store.lengths = tensors["vectors"], tensors["lengths"].long()
        store.scales = tensors.get("scales")
        store.offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=store.device), store.lengths.cumsum(0)])
        return store


def real_query_rows(query_vectors, query_mask):
    """The query vectors (batch, q, dim) up to the longest real query: padded rows are zero and need not enter S."""
    return query_vectors[:, : int(query_mask.sum(dim=1).max())]


def batches_by_length(lengths, batch_size: int):
    """Index batches of similar lengths (longest first), so dynamic padding wastes little compute."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def token_id_lists(tokenizer, texts, max_length: int, chunk: int = 512) -> list[list[int]]:
    """`tokenizer(texts, truncation=True, max_length=...)["input_ids"]`, a chunk of texts at a time: a fast
    tokenizer encodes a batch on several threads, and the memory their allocators keep grows with the batch (10,000
    passages at once left ≈ 1 GB behind that a chunked pass does not)."""
    texts = list(texts)
    return [
        ids
        for start in range(0, len(texts), chunk)
        for ids in tokenizer(texts[start : start + chunk], truncation=True, max_length=max_length)["input_ids"]
    ]


@torch.inference_mode()
def encode_texts(model, ids, texts, kind: str, batch_size: int = 64, store_dtype=None, progress=True):
    """Encode `texts` with `model.encode_documents` (kind="documents") or `encode_queries` into a new store.

    The store keeps the model's dtype unless `store_dtype` is given, so scores equal the model's forward pass.
    """
    max_length = model.config.doc_max_length if kind == "documents" else model.config.query_max_length
    max_tokens = model.config.doc_vectors if kind == "documents" else model.config.query_max_length
    store = TokenEmbeddingStore(max_tokens, model.config.embedding_dim, store_dtype or model.dtype, model.device)
    if not texts:  # (a block of queries without candidates): an empty store, nothing to tokenise
        return store
    token_ids = token_id_lists(model.tokenizer, texts, max_length)
    encode = model.encode_documents if kind == "documents" else model.encode_queries
    # at most one vector per position a text can fill: the store writes them in place, held once
    prefix = len((model.config.doc_prefix_ids if kind == "documents" else model.config.query_prefix_ids) or ())
    fixed = model.config.doc_stored_tokens if kind == "documents" else model.config.query_expansion
    store.reserve(len(token_ids) * max_tokens if fixed else sum(min(len(t) + prefix, max_tokens) for t in token_ids))
    batches = batches_by_length([len(sequence) for sequence in token_ids], batch_size)
    for batch in tqdm(batches, desc=f"Encoding {kind}", disable=not progress):
        padded = model.tokenizer.pad({"input_ids": [token_ids[i] for i in batch]}, return_tensors="pt")
        vectors, mask = encode(padded["input_ids"].to(model.device), padded["attention_mask"].to(model.device))
        store.add([ids[i] for i in batch], vectors, mask)
    return store
