"""A document-embedding cache on disk: a corpus encoded once with `encode_documents`, stored in safetensors chunks.

Layout of a cache folder:
    cache.json                  format, model fingerprint, dtype, and the list of complete chunks
    chunk-00000.safetensors     vectors (+ int8 scales), lengths; the chunk's document ids in its header metadata

Chunks are written under a temporary name and renamed when complete, and `cache.json` is rewritten atomically after
each chunk, so an interrupted build keeps every finished chunk and a rerun encodes only the missing documents.
Memory holds one chunk while building and at most `max_chunks_in_memory` while reading: a corpus larger than RAM
works. No pickle anywhere.
"""

import hashlib
import itertools
import json
from collections import OrderedDict
from pathlib import Path

import torch
from transformers.utils.logging import tqdm

from .embeddings import TokenEmbeddingStore, encode_texts, real_query_rows
from .utils import eval_mode, write_atomically, write_text_atomically

FORMAT = "lite-doc-cache/1"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "int8": torch.int8}


def model_fingerprint(model) -> str:
    """sha256 of the config and every weight: a cache is only ever read with the model that wrote it."""
    digest = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _chunk_ids(path: Path) -> list[str]:
    """Document ids of a chunk, read from its safetensors header only."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["ids"])


def _write_json_atomically(path: Path, value):
    write_text_atomically(path, json.dumps(value, indent=2) + "\n")


class DocumentCache:
    """Read side of a cache folder: `get` and `similarity` like `TokenEmbeddingStore`, over lazily loaded chunks."""

    def __init__(self, folder, device="cpu", max_chunks_in_memory: int = 4):
        self.folder, self.device = Path(folder), torch.device(device)
        manifest_path = self.folder / "cache.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path}: not a document-embedding cache (no cache.json)")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{manifest_path}: unknown cache format {self.manifest.get('format')!r}")
        self.doc_tokens, self.dim = self.manifest["doc_tokens"], self.manifest["dim"]
        self.chunk_of: dict[str, int] = {}
        for index, chunk in enumerate(self.manifest["chunks"]):
            self.chunk_of.update(dict.fromkeys(_chunk_ids(self.folder / chunk["file"]), index))
        self._loaded: OrderedDict[int, TokenEmbeddingStore] = OrderedDict()
        self.max_chunks_in_memory = max_chunks_in_memory

    def __len__(self):
        return len(self.chunk_of)

    def __contains__(self, doc_id):
        return doc_id in self.chunk_of

    @property
    def bytes_per_document(self) -> float:
        chunks = self.manifest["chunks"]
        return sum(c["vector_bytes"] for c in chunks) / max(1, sum(c["num_docs"] for c in chunks))

    def check_model(self, model):
        if self.manifest["model_fingerprint"] != model_fingerprint(model):
            raise ValueError(f"{self.folder}: this cache was built by another model (fingerprint differs)")

    def _chunk(self, index: int) -> TokenEmbeddingStore:
        if index not in self._loaded:
            if len(self._loaded) >= self.max_chunks_in_memory:
                self._loaded.popitem(last=False)
            self._loaded[index] = TokenEmbeddingStore.load(self.folder / self.manifest["chunks"][index]["file"],
                                                           self.device)  # fmt: skip
        self._loaded.move_to_end(index)
        return self._loaded[index]

    def _by_chunk(self, ids) -> dict[int, list[int]]:
        missing = [doc_id for doc_id in ids if doc_id not in self.chunk_of]
        if missing:
            raise KeyError(f"{len(missing)} document(s) not in the cache {self.folder}, e.g. {missing[0]!r}")
        by_chunk: dict[int, list[int]] = {}
        for position, doc_id in enumerate(ids):
            by_chunk.setdefault(self.chunk_of[doc_id], []).append(position)
        return by_chunk

    def _gather(self, ids, read):
        """Call `read(chunk_store, chunk_ids)` per chunk and put the (tensor, mask) parts back in `ids` order."""
        ids = list(ids)
        parts = [(positions, *read(self._chunk(index), [ids[p] for p in positions]))
                 for index, positions in self._by_chunk(ids).items()]  # fmt: skip
        if len(parts) == 1:
            return parts[0][1], parts[0][2]
        values = torch.empty(len(ids), *parts[0][1].shape[1:], dtype=parts[0][1].dtype, device=self.device)
        mask = torch.empty(len(ids), self.doc_tokens, dtype=torch.bool, device=self.device)
        for positions, part_values, part_mask in parts:
            where = torch.tensor(positions, device=self.device)
            values[where], mask[where] = part_values, part_mask
        return values, mask

    def get(self, ids, dtype=torch.float32):
        """Padded (n, K, dim) vectors and (n, K) mask, like `TokenEmbeddingStore.get`."""
        return self._gather(ids, lambda store, part: store.get(part, dtype))

    def similarity(self, query_vectors, ids):
        """S (n, L1, K) and (n, K) mask, like `TokenEmbeddingStore.similarity`."""
        return self._gather(ids, lambda store, part: store.similarity(query_vectors, part))


def build_document_cache(model, documents, folder, dtype: str = "float16", chunk_docs: int = 8192,
                         batch_size: int = 64, progress: bool = True) -> DocumentCache:  # fmt: skip
    """Encode `documents` ({id: text} or an iterable of (id, text)) into `folder`; documents already cached there
    (by the same model) are skipped, so an interrupted build resumes."""
    if dtype not in DTYPES:
        raise ValueError(f"cache dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "cache.json"
    fingerprint = model_fingerprint(model)
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest["model_fingerprint"] != fingerprint or manifest["dtype"] != dtype:
            raise ValueError(f"{folder}: cache built by another model or with dtype {manifest['dtype']}; "
                             "use another folder")  # fmt: skip
    else:
        manifest = {"format": FORMAT, "model": model.name_or_path, "model_fingerprint": fingerprint, "dtype": dtype,
                    "doc_tokens": model.config.doc_scored_tokens, "dim": model.config.embedding_dim, "chunks": []}  # fmt: skip
    cached = {doc_id for chunk in manifest["chunks"] for doc_id in _chunk_ids(folder / chunk["file"])}
    items = documents.items() if isinstance(documents, dict) else documents
    pending = ((doc_id, text) for doc_id, text in items if doc_id not in cached)
    total = len(documents) - len(cached) if isinstance(documents, dict) else None
    bar = tqdm(total=total, desc="Caching documents", unit="doc", disable=not progress)
    with eval_mode(model):
        while batch := list(itertools.islice(pending, chunk_docs)):
            ids, texts = zip(*batch)
            store = encode_texts(model, list(ids), texts, "documents", batch_size, DTYPES[dtype], progress=False)
            name = f"chunk-{len(manifest['chunks']):05d}.safetensors"
            write_atomically(folder / name, store.save)
            manifest["chunks"].append({"file": name, "num_docs": len(ids), "vector_bytes": store.nbytes})
            _write_json_atomically(manifest_path, manifest)
            bar.update(len(ids))
    bar.close()
    if not manifest_path.exists():
        _write_json_atomically(manifest_path, manifest)
    return DocumentCache(folder, model.device)


@torch.inference_mode()
def rerank_with_cache(model, query: str, doc_ids, cache, top_n: int | None = None):
    """`model.rerank` for documents already in `cache`: only the query is encoded. `[{"id", "score"}]`, best first."""
    doc_ids = list(doc_ids)
    if not doc_ids:
        raise ValueError("rerank_with_cache: the document list is empty")
    query_vectors = real_query_rows(*model.encode_queries([query]))
    similarity, doc_mask = cache.similarity(query_vectors, doc_ids)
    scores = model.score_similarity(similarity.to(model.device), doc_mask.to(model.device))
    order = torch.argsort(-scores.float(), stable=True)[:top_n].tolist()
    return [{"id": doc_ids[i], "score": float(scores[i])} for i in order]
