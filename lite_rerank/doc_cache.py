"""A document-embedding cache on disk: a corpus encoded once with `encode_documents`, stored in safetensors chunks.

Layout of a cache folder:
    cache.json                  format, model fingerprint, dtype, and the complete chunks (file, size, sha256)
    chunk-00000.safetensors     vectors (+ int8 scales), lengths; in its header the chunk's document ids and a hash
                                of each passage's text
    cache.rank<r>.json          (while a multi-process build runs) the chunks process r has finished
    plan.json                   (while a build runs) the chunks it writes, kept by a crash and carried out by the rerun

A build plans the documents still missing, in the corpus's order, into chunks of `chunk_docs`; chunk j goes to
process j mod num_processes, so any number of processes writes the same chunks as one. Chunks are written under a
temporary name and renamed when complete, and the manifests are rewritten atomically after each chunk: an
interrupted build (of any process) keeps every finished chunk, and its rerun carries out the same plan. Every read checks a chunk's
sha256 and the model's fingerprint; a rebuild re-encodes damaged chunks and refuses passages whose text changed.
Memory holds one chunk while building and at most `max_chunks_in_memory` while reading. No pickle anywhere.
"""

import contextlib
import hashlib
import json
import re
from collections import OrderedDict
from pathlib import Path

import datasets
import torch
from transformers.utils.logging import tqdm

from .data import ArrowTexts, texts_of
from .embeddings import TokenEmbeddingStore, encode_texts, real_query_rows
from .locking import FolderInUse, FolderLock
from .utils import (
    SCORER_FIELDS,
    VECTOR_FIELDS,
    eval_mode,
    file_sha256,
    weights_fingerprint,
    write_atomically,
    write_text_atomically,
)

FORMAT = "lite-doc-cache/3"  # 3: the fingerprint leaves out where the model was loaded from; chunk names checked
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "int8": torch.int8}


class CacheError(ValueError):
    """A cache folder that cannot be used as asked; the message names the folder or file and what to do."""

    def flag_hint(self, flag: str) -> str:
        """The message, with the command's own flag where one would fix it (a script names its flag)."""
        return str(self)


class CachePrecisionError(CacheError):
    """A cache built by the same model computing in another precision (`dtype`): loading the model in that
    precision reads it."""

    def __init__(self, message: str, dtype: str):
        super().__init__(message)
        self.dtype = dtype

    def flag_hint(self, flag: str) -> str:
        return f"{self} (this command: {flag} {self.dtype})"


def model_fingerprint(model, dtype=torch.float32) -> str:
    """sha256 of what the model computes (its scoring config and every weight, not the path it was loaded from): a
    cache is only ever read with the model that wrote it. As bfloat16, the fingerprint recognises the same model
    computing in another precision (cache.json records both, and the precision)."""
    return weights_fingerprint(model, VECTOR_FIELDS + SCORER_FIELDS, dtype=dtype)


def check_same_model(manifest: dict, model, where) -> None:
    """Refuse a cache of another model, naming the precision when that is all that differs."""
    if manifest["model_fingerprint"] == model_fingerprint(model):
        return
    built_in, runs_in = manifest.get("model_dtype"), str(model.dtype).removeprefix("torch.")
    if manifest.get("model_fingerprint_bf16") == model_fingerprint(model, torch.bfloat16) and built_in != runs_in:
        raise CachePrecisionError(
            f"{where}: this cache was built by the same model computing in {built_in}; this one computes in "
            f"{runs_in}, and the vectors differ: load the model in {built_in}, or build a cache for it in another "
            "folder",
            built_in,
        )
    raise CacheError(
        f"{where}: this cache was built by another model (fingerprint differs); build one for this model in another "
        "folder"
    )


def text_hash(text: str) -> str:
    """A passage's identity in the cache: 64 bits of BLAKE2b of its UTF-8 text.

    >>> text_hash("grep searches files"), text_hash("grep searches files ") == text_hash("grep searches files")
    ('499fbdfdfaae9c96', False)
    """
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _chunk_header(path: Path) -> dict:
    """The chunk's metadata (ids, text hashes), read from its safetensors header only."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
    except Exception as error:  # a truncated or overwritten file: say which
        raise CacheError(f"{path}: not a readable cache chunk ({error})") from None
    return {"ids": json.loads(metadata["ids"]), "text_hashes": json.loads(metadata.get("text_hashes", "[]"))}


CHUNK_NAME = re.compile(r"chunk-\d{5,}\.safetensors")
CHUNK_FIELDS = {"file": str, "num_docs": int, "vector_bytes": int, "size": int, "sha256": str}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CacheError(f"{path}: not valid JSON ({error}); the cache folder is damaged") from None


def _checked_chunks(path: Path, record) -> list[dict]:
    """The chunk entries of a manifest, each exactly as a build writes it: a cache folder may come from someone
    else, and a rebuild deletes the chunk files it names when they are damaged, so a name is only ever one of the
    cache's own files (chunk-NNNNN.safetensors, in the folder), never a path."""
    chunks = record.get("chunks") if isinstance(record, dict) else None
    if not isinstance(chunks, list):
        raise CacheError(f"{path}: no list of chunks; the cache folder is damaged")
    for chunk in chunks:
        if (
            not isinstance(chunk, dict)
            or set(chunk) != set(CHUNK_FIELDS)
            or not all(
                isinstance(chunk[k], kind) and not isinstance(chunk[k], bool) for k, kind in CHUNK_FIELDS.items()
            )
        ):
            raise CacheError(
                f"{path}: a chunk entry {str(chunk)[:120]} is not one this code writes; not a cache of its own"
            )
        if not CHUNK_NAME.fullmatch(chunk["file"]):
            raise CacheError(
                f"{path}: names the file {chunk['file']!r}, which is not a chunk of a cache (chunk-NNNNN.safetensors "
                "in its folder); a cache from elsewhere is data to check: this one is refused, nothing was touched"
            )
    return chunks


def _read_manifest(path: Path) -> dict:
    manifest = _read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise CacheError(
            f"{path}: cache format {found!r}, this code reads {FORMAT!r}; build a new cache in another folder"
        )
    _checked_chunks(path, manifest)
    return manifest


class DocumentCache:
    """Read side of a cache folder: `get` and `similarity` like `TokenEmbeddingStore`, over lazily loaded chunks whose
    checksums are verified on load. `check_model(model)` (done by `rerank_with_cache` and evaluation) refuses a model
    other than the one that built the cache."""

    def __init__(self, folder, device="cpu", max_chunks_in_memory: int = 4):
        self.folder, self.device = Path(folder), torch.device(device)
        manifest_path = self.folder / "cache.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path}: not a document-embedding cache (no cache.json)")
        self.manifest = _read_manifest(manifest_path)
        self.max_tokens, self.dim = self.manifest["doc_tokens"], self.manifest["dim"]
        self.chunk_of: dict[str, int] = {}
        for index, chunk in enumerate(self.manifest["chunks"]):
            self.chunk_of.update(dict.fromkeys(_chunk_header(self.folder / chunk["file"])["ids"], index))
        self._loaded: OrderedDict[int, TokenEmbeddingStore] = OrderedDict()
        self.max_chunks_in_memory = max_chunks_in_memory
        self._checked_model = None

    def __len__(self):
        return len(self.chunk_of)

    def __contains__(self, doc_id):
        return doc_id in self.chunk_of

    @property
    def bytes_per_document(self) -> float:
        chunks = self.manifest["chunks"]
        return sum(c["vector_bytes"] for c in chunks) / max(1, sum(c["num_docs"] for c in chunks))

    def check_model(self, model):
        """Refuse another model's cache. Remembered per model object and weight version (cheap to call again)."""
        version = (id(model), tuple(None if p.is_inference() else p._version for p in model.parameters()))
        if self._checked_model == version:
            return
        check_same_model(self.manifest, model, self.folder)
        self._checked_model = version

    def _chunk(self, index: int) -> TokenEmbeddingStore:
        if index not in self._loaded:
            if len(self._loaded) >= self.max_chunks_in_memory:
                self._loaded.popitem(last=False)
            chunk = self.manifest["chunks"][index]
            path = self.folder / chunk["file"]
            if file_sha256(path) != chunk["sha256"]:
                raise CacheError(
                    f"{path}: damaged (its sha256 differs from cache.json); rerun the build "
                    "(build_document_cache / eval_rerank.py --doc-cache) to re-encode it"
                )
            self._loaded[index] = TokenEmbeddingStore.load(path, self.device)
        self._loaded.move_to_end(index)
        return self._loaded[index]

    def damaged_chunks(self) -> list[str]:
        """Chunk files whose size or sha256 differs from cache.json (reads every chunk)."""
        return [
            chunk["file"]
            for chunk in self.manifest["chunks"]
            if not (path := self.folder / chunk["file"]).is_file()
            or path.stat().st_size != chunk["size"]
            or file_sha256(path) != chunk["sha256"]
        ]

    def _by_chunk(self, ids) -> dict[int, list[int]]:
        missing = [doc_id for doc_id in ids if doc_id not in self.chunk_of]
        if missing:
            damaged = self.damaged_chunks()  # a damaged header can hide ids: say so rather than "not cached"
            if damaged:
                raise CacheError(
                    f"{self.folder}: {damaged[:3]} damaged (size or sha256 differs from cache.json), so "
                    f"{len(missing)} document(s) cannot be found (e.g. {missing[0]!r}); rerun the build to re-encode them"
                )
            raise KeyError(f"{len(missing)} document(s) not in the cache {self.folder}, e.g. {missing[0]!r}")
        by_chunk: dict[int, list[int]] = {}
        for position, doc_id in enumerate(ids):
            by_chunk.setdefault(self.chunk_of[doc_id], []).append(position)
        return by_chunk

    def _gather(self, ids, read):
        """Call `read(chunk_store, chunk_ids)` per chunk and put the (tensor, mask) parts back in `ids` order."""
        ids = list(ids)
        parts = [
            (positions, *read(self._chunk(index), [ids[p] for p in positions]))
            for index, positions in self._by_chunk(ids).items()
        ]
        if len(parts) == 1:
            return parts[0][1], parts[0][2]
        values = torch.empty(len(ids), *parts[0][1].shape[1:], dtype=parts[0][1].dtype, device=self.device)
        mask = torch.empty(len(ids), self.max_tokens, dtype=torch.bool, device=self.device)
        for positions, part_values, part_mask in parts:
            where = torch.tensor(positions, device=self.device)
            values[where], mask[where] = part_values, part_mask
        return values, mask

    def get(self, ids, dtype=torch.float32):
        """Padded (n, K, dim) vectors and (n, K) mask, like `TokenEmbeddingStore.get`."""
        return self._gather(ids, lambda store, part: store.get(part, dtype))

    def similarity(self, query_vectors, ids):
        """S (n, q, K) and (n, K) mask, like `TokenEmbeddingStore.similarity`."""
        return self._gather(ids, lambda store, part: store.similarity(query_vectors, part))


class Corpus:
    """The documents to cache: {id: text}, a `datasets.Dataset` with `_id` and `text` (and optional `title`) columns,
    or any mapping read by id (`ArrowTexts`, `SubsetTexts`). An Arrow-backed corpus stays memory-mapped: only the
    ids are held in memory, texts are read chunk by chunk."""

    def __init__(self, documents, where="the cache"):
        self.where = where  # what errors name: the cache folder being built
        if isinstance(documents, datasets.Dataset):
            documents = ArrowTexts(documents)
        self.documents, self.ids = documents, list(documents)
        bad = next((doc_id for doc_id in self.ids if not isinstance(doc_id, str)), None)
        if bad is not None:
            raise CacheError(
                f"{where}: document ids must be strings (they name the cached passages), got {bad!r} "
                f"({type(bad).__name__}); convert them, e.g. {{str(k): v for k, v in documents.items()}}"
            )

    def texts(self, ids) -> list[str]:
        texts = texts_of(self.documents, ids)
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise CacheError(
                f"{self.where}: document {ids[bad]!r} has no text ({texts[bad]!r}); give every passage a string"
            )
        return texts

    def changed(self, cached_hashes: dict[str, str], batch: int = 10_000) -> list[str]:
        """Ids whose text no longer has the hash it was cached with."""
        ids = [doc_id for doc_id in self.ids if doc_id in cached_hashes]
        return [
            doc_id
            for start in range(0, len(ids), batch)
            for doc_id, text in zip(ids[start : start + batch], self.texts(ids[start : start + batch]))
            if cached_hashes[doc_id] != text_hash(text)
        ]


def _new_manifest(model, dtype: str) -> dict:
    return {
        "format": FORMAT,
        "model": model.name_or_path,
        "model_fingerprint": model_fingerprint(model),
        "model_fingerprint_bf16": model_fingerprint(model, torch.bfloat16),
        "model_dtype": str(model.dtype).removeprefix("torch."),
        "dtype": dtype,
        "doc_tokens": model.config.doc_vectors,
        "dim": model.config.embedding_dim,
        "chunks": [],
    }


def _chunk_index(chunk: dict) -> int:
    return int(chunk["file"].removeprefix("chunk-").removesuffix(".safetensors"))


def _prepare(folder: Path, model, dtype: str, progress: bool, verify: bool = True) -> dict:
    """cache.json with the chunks every process has finished (its own manifests merged in). With `verify`, chunks
    that are missing, cut short or not matching their sha256 are dropped and their files removed, so that a build
    encodes their documents again."""
    manifest_path = folder / "cache.json"
    manifest = _read_manifest(manifest_path) if manifest_path.exists() else _new_manifest(model, dtype)
    check_same_model(manifest, model, folder)
    if manifest["dtype"] != dtype:
        raise CacheError(f"{folder}: cache stored as {manifest['dtype']}, not {dtype}; use another folder")
    parts = sorted(folder.glob("cache.rank*.json"))
    listed = {chunk["file"] for chunk in manifest["chunks"]}
    for part in parts:
        manifest["chunks"] += [
            chunk for chunk in _checked_chunks(part, _read_json(part)) if chunk["file"] not in listed
        ]
    if verify:
        kept = []
        for chunk in tqdm(manifest["chunks"], desc="Checking cache chunks", disable=not progress):
            path = folder / chunk["file"]
            if path.is_file() and path.stat().st_size == chunk["size"] and file_sha256(path) == chunk["sha256"]:
                kept.append(chunk)
            else:
                print(f"note: {path} is missing or damaged; its documents are encoded again")
                path.unlink(missing_ok=True)
        manifest["chunks"] = kept
    manifest["chunks"].sort(key=_chunk_index)
    write_text_atomically(manifest_path, json.dumps(manifest, indent=2) + "\n")
    for part in parts:
        part.unlink()
    return manifest


def build_document_cache(
    model,
    documents,
    folder,
    dtype: str = "float16",
    chunk_docs: int = 8192,
    batch_size: int = 64,
    progress: bool = True,
    process_index: int = 0,
    num_processes: int = 1,
    wait_for_everyone=None,
) -> DocumentCache:
    """Encode `documents` ({id: text} or a Dataset with `_id`, `text`) into `folder`; documents already cached there
    (by the same model, with the same text) are skipped, so an interrupted build resumes.

    With several processes (`process_index`, `num_processes`, and `wait_for_everyone`, e.g. Accelerate's), each
    encodes its own chunks of the plan and records them in its own manifest; process 0 merges them into cache.json.
    A passage whose text differs from the cached one is refused (build into another folder).
    """
    if dtype not in DTYPES:
        raise ValueError(f"cache dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    for name, value in (("chunk_docs", chunk_docs), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    folder = Path(folder)
    corpus = Corpus(documents, folder)
    # One build per folder at a time: process 0 holds the folder's lock, the other processes of this build follow it.
    lock = FolderLock(folder, "document-cache build") if process_index == 0 else contextlib.nullcontext()
    try:
        with lock:
            _build(
                model,
                corpus,
                folder,
                dtype,
                chunk_docs,
                batch_size,
                progress,
                process_index,
                num_processes,
                wait_for_everyone or (lambda: None),
            )
    except FolderInUse as error:
        raise CacheError(str(error)) from None
    return DocumentCache(folder, model.device)


def _build(model, corpus, folder, dtype, chunk_docs, batch_size, progress, process_index, num_processes, barrier):
    if process_index == 0:
        _prepare(folder, model, dtype, progress)
    barrier()
    manifest = _read_manifest(folder / "cache.json")
    headers = {_chunk_index(chunk): _chunk_header(folder / chunk["file"]) for chunk in manifest["chunks"]}
    cached = {
        doc_id: digest for header in headers.values() for doc_id, digest in zip(header["ids"], header["text_hashes"])
    }
    changed = corpus.changed(cached)
    if changed:
        raise CacheError(
            f"{folder}: {len(changed)} passage(s) changed since they were cached (e.g. {changed[0]!r}); "
            "build into another folder"
        )
    if process_index == 0:
        _plan(folder, corpus, manifest, cached, chunk_docs)
    barrier()
    plan = json.loads((folder / "plan.json").read_text())
    first = plan["first_index"]
    earlier = {doc_id for index, header in headers.items() if index < first for doc_id in header["ids"]}
    mine = [
        (first + j, [corpus.ids[p] for p in range(start, end) if corpus.ids[p] not in earlier])
        for j, (start, end) in enumerate(plan["chunks"])
        if j % num_processes == process_index and first + j not in headers
    ]
    record = folder / ("cache.json" if num_processes == 1 else f"cache.rank{process_index}.json")
    done = manifest if num_processes == 1 else {"chunks": []}
    bar = tqdm(total=sum(len(ids) for _, ids in mine), desc="Caching documents", unit="doc", disable=not progress)
    with eval_mode(model):
        for index, ids in mine:
            texts = corpus.texts(ids)
            store = encode_texts(model, ids, texts, "documents", batch_size, DTYPES[dtype], progress=False)
            name = f"chunk-{index:05d}.safetensors"
            text_of = dict(zip(ids, texts))
            hashes = json.dumps([text_hash(text_of[doc_id]) for doc_id in store.row_of])  # in stored order
            write_atomically(folder / name, lambda path: store.save(path, {"text_hashes": hashes}))
            done["chunks"].append(
                {
                    "file": name,
                    "num_docs": len(ids),
                    "vector_bytes": store.nbytes,
                    "size": (folder / name).stat().st_size,
                    "sha256": file_sha256(folder / name),
                }
            )
            write_text_atomically(record, json.dumps(done, indent=2) + "\n")
            bar.update(len(ids))
    bar.close()
    barrier()
    if process_index == 0:
        if num_processes > 1:
            _prepare(folder, model, dtype, progress=False, verify=False)  # every process's chunks into cache.json
        (folder / "plan.json").unlink()  # the plan is carried out
    barrier()


def _plan(folder: Path, corpus: Corpus, manifest: dict, cached: dict, chunk_docs: int):
    """plan.json: which chunks this build writes. Chunk first_index + j holds the documents at corpus positions
    [start_j, end_j) that no earlier chunk holds. A build cut short leaves its plan, and the rerun carries it out as
    it was (each remaining chunk to the process it was planned for) when the corpus is the same."""
    ids_digest = hashlib.sha256("\n".join(corpus.ids).encode()).hexdigest()
    path = folder / "plan.json"
    if path.is_file():
        plan = json.loads(path.read_text())
        if plan["corpus"] == ids_digest and plan["chunk_docs"] == chunk_docs:
            return plan
    positions = [p for p, doc_id in enumerate(corpus.ids) if doc_id not in cached]
    groups = [positions[start : start + chunk_docs] for start in range(0, len(positions), chunk_docs)]
    plan = {
        "corpus": ids_digest,
        "chunk_docs": chunk_docs,
        "first_index": 1 + max((_chunk_index(chunk) for chunk in manifest["chunks"]), default=-1),
        "chunks": [[group[0], group[-1] + 1] for group in groups],
    }
    write_text_atomically(path, json.dumps(plan) + "\n")
    return plan


@torch.inference_mode()
def rerank_with_cache(model, query: str, doc_ids, cache, top_n: int | None = None):
    """`model.rerank` for documents already in `cache` (built by this model): only the query is encoded.
    `[{"id", "score"}]`, best first."""
    if not isinstance(query, str):
        raise ValueError(f"rerank_with_cache: query must be a string, got {type(query).__name__}")
    if isinstance(doc_ids, (str, bytes)) or not hasattr(doc_ids, "__iter__"):
        raise ValueError(f"rerank_with_cache: doc_ids must be a list of document ids, got {doc_ids!r:.60}")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise ValueError(f"rerank_with_cache: top_n must be a positive integer or None, got {top_n!r}")
    doc_ids = list(doc_ids)
    if not doc_ids:
        raise ValueError("rerank_with_cache: the document list is empty")
    cache.check_model(model)
    query_vectors = real_query_rows(*model.encode_queries([query]))
    similarity, doc_mask = cache.similarity(query_vectors, doc_ids)
    scores = model.score_similarity(similarity.to(model.device), doc_mask.to(model.device))
    order = torch.argsort(-scores.float(), stable=True)[:top_n].tolist()
    return [{"id": doc_ids[i], "score": float(scores[i])} for i in order]
