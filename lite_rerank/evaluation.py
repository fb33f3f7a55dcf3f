"""Re-rank a `RerankSet` with a model and compute MRR@10 / nDCG@10 / Recall with the repo's `evaluate` module."""

import contextlib
from pathlib import Path

import evaluate
import torch
from transformers.utils.logging import tqdm

from .cross_encoder import CrossEncoderScorer
from .data import RerankSet, texts_of
from .embeddings import encode_texts, real_query_rows, token_id_lists
from .rerank_metrics import rank_order
from .utils import VECTOR_FIELDS, eval_mode, weights_fingerprint

METRICS_SCRIPT = Path(__file__).with_name("rerank_metrics.py")


def load_metrics():
    return evaluate.load(str(METRICS_SCRIPT), keep_in_memory=True)


# what a block of passages may hold in memory by default: their vectors at their real lengths (eval_rerank.py's
# --memory-budget-gb), so that peak memory does not grow with the number of distinct candidates
DEFAULT_MEMORY_BUDGET = 1024**3


def query_blocks(rerank_set: RerankSet, max_bytes: float, bytes_of=None, max_docs: int | None = None):
    """Consecutive groups of queries whose distinct candidates together take at most `max_bytes` (`bytes_of(doc_id)`
    each; a block always holds at least one query) and number at most `max_docs` (None: no count cap).

    >>> from lite_rerank.data import RerankSet
    >>> data = RerankSet({"a": "", "b": "", "c": ""}, {}, {"a": ["x", "y"], "b": ["y", "z"], "c": ["w"]}, {}, {}, "")
    >>> [sorted(docs) for _, docs in query_blocks(data, max_bytes=3, bytes_of=lambda doc: 1)]
    [['x', 'y', 'z'], ['w']]
    """
    bytes_of = bytes_of or (lambda doc_id: 0)
    block, docs, used = [], set(), 0.0
    for qid, candidates in rerank_set.candidates.items():
        new = set(candidates) - docs
        extra = sum(bytes_of(doc_id) for doc_id in new)
        if block and (used + extra > max_bytes or (max_docs is not None and len(docs) + len(new) > max_docs)):
            yield block, docs
            block, docs, used = [], set(), 0.0
            new, extra = set(candidates), sum(bytes_of(doc_id) for doc_id in candidates)
        block.append(qid)
        docs |= new
        used += extra
    if block:
        yield block, docs


def passage_bytes(model, rerank_set: RerankSet):
    """`bytes_of(doc_id)`: what a passage's vectors take in a block's store — its real length in tokens (or the
    stored K of Small-LITE) × width × element size (the store holds them once: `TokenEmbeddingStore.reserve`)."""
    config, documents = model.config, rerank_set.documents
    ids = sorted({doc_id for candidates in rerank_set.candidates.values() for doc_id in candidates})
    prefix = len(config.doc_prefix_ids or ())
    if config.doc_stored_tokens or not ids:
        lengths = dict.fromkeys(ids, config.doc_stored_tokens)
    else:
        tokens = token_id_lists(model.tokenizer, texts_of(documents, ids), config.doc_max_length)
        lengths = {doc_id: min(len(t) + prefix, config.doc_max_length) for doc_id, t in zip(ids, tokens)}
    per_vector = config.embedding_dim * torch.tensor([], dtype=model.dtype).element_size()
    return lambda doc_id: lengths[doc_id] * per_vector


def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_free_memory():
    """Hand the memory the C allocator holds free back to the system (glibc's malloc_trim; nothing elsewhere): what
    one block of passages freed would otherwise stay resident, fragmented, and the next block grow past it."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


M_MMAP_THRESHOLD, MMAP_THRESHOLD = -3, 4 << 20


def bound_allocator_retention() -> bool:
    """glibc raises its mmap threshold as large blocks are freed (up to 32 MB), after which the encoder's per-batch
    tensors come from the heap and stay resident, fragmented: evaluating 30,000 passages then peaked at 2.8–3.3 GB
    where 10,000 took 2.0. A fixed 4 MB threshold maps every larger tensor on its own and returns it when freed:
    1.9 GB for both, ≈ 15 % more encoding time (benchmarks/eval_memory.py). True where it was set (glibc only)."""
    libc = _libc()
    return bool(libc is not None and hasattr(libc, "mallopt") and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


@torch.inference_mode()
def score_rerank_set(
    model,
    rerank_set: RerankSet,
    batch_size: int = 64,
    memory_budget: float = DEFAULT_MEMORY_BUDGET,
    progress: bool = True,
    doc_store=None,
    max_docs_in_memory: int | None = None,
) -> dict[str, list[float]]:
    """{qid: scores of its candidates}. Each distinct document is encoded once per block of queries whose
    documents' vectors fit `memory_budget` bytes together (and number at most `max_docs_in_memory`), then every
    query is scored against its cached candidates in one batched call.
    With `doc_store` (e.g. a `DocumentCache` built by this model), document vectors come from there instead.
    A `CrossEncoderScorer` scores every (query, candidate) pair instead."""
    if isinstance(model, CrossEncoderScorer):
        return score_pairs(model, rerank_set, batch_size, progress)
    return score_with_shared_encoding(
        [model], rerank_set, batch_size, memory_budget, progress, doc_store, max_docs_in_memory
    )[0]


# weights and config fields that act on the query's vectors only: passages encode alike with or without them
QUERY_ONLY_FIELD, QUERY_ONLY_WEIGHTS = "query_token_weights", "query_token_weights."


def encoding_fingerprint(model, side: str = "documents") -> str:
    """What a LITE model's document (or query) vectors depend on: its config and every weight but the scorer's, and
    for documents but the query token weights. Models with one document fingerprint (e.g. LITE trained on a frozen
    encoder, with or without query token weights, and MaxSim on that encoder) encode every passage alike."""
    if side == "queries":
        return f"{model.dtype}:{weights_fingerprint(model, VECTOR_FIELDS, skip_prefix='lite_scorer.')}"
    fields = tuple(field for field in VECTOR_FIELDS if field != QUERY_ONLY_FIELD)
    return f"{model.dtype}:{weights_fingerprint(model, fields, skip_prefix=('lite_scorer.', QUERY_ONLY_WEIGHTS))}"


@torch.inference_mode()
def score_with_shared_encoding(
    models: list,
    rerank_set: RerankSet,
    batch_size: int = 64,
    memory_budget: float = DEFAULT_MEMORY_BUDGET,
    progress: bool = True,
    doc_store=None,
    max_docs_in_memory: int | None = None,
) -> list[dict[str, list[float]]]:
    """`score_rerank_set` for LITE models whose passages encode alike (one `encoding_fingerprint`): documents are
    encoded once per block, by the first, queries once per distinct query encoding (query token weights differ),
    and each model's scorer reads the similarity matrices of its queries. One {qid: scores} each."""
    first, scores = models[0], [{} for _ in models]
    # (a fingerprint hashes every encoder weight: not worth it for one model)
    query_keys = [encoding_fingerprint(model, "queries") for model in models] if len(models) > 1 else [""]
    encoders = {key: model for key, model in zip(query_keys, models)}  # one model per distinct query encoding
    if doc_store is not None:
        blocks = [(list(rerank_set.candidates), None)]
    else:
        blocks = query_blocks(rerank_set, memory_budget, passage_bytes(first, rerank_set), max_docs_in_memory)
    with contextlib.ExitStack() as modes:
        for model in models:
            modes.enter_context(eval_mode(model))
        for qids, doc_ids in blocks:
            docs = doc_store  # (the previous block's vectors go before this block's are encoded)
            release_free_memory()
            if docs is None:
                doc_ids = sorted(doc_ids)
                docs = encode_texts(
                    first, doc_ids, texts_of(rerank_set.documents, doc_ids), "documents", batch_size, progress=progress
                )
            texts = [rerank_set.queries[q] for q in qids]
            queries = {
                key: encode_texts(model, qids, texts, "queries", batch_size, progress=progress)
                for key, model in encoders.items()
            }
            for qid in tqdm(qids, desc="Scoring queries", disable=not progress):
                if not rerank_set.candidates[qid]:
                    for model_scores in scores:
                        model_scores[qid] = []
                    continue
                similarities = {
                    key: docs.similarity(real_query_rows(*vectors.get([qid])), rerank_set.candidates[qid])
                    for key, vectors in queries.items()
                }
                for model, key, model_scores in zip(models, query_keys, scores):
                    similarity, doc_mask = similarities[key]
                    model_scores[qid] = model.score_similarity(similarity, doc_mask).float().tolist()
    return scores


def score_pairs(
    cross_encoder: CrossEncoderScorer, rerank_set: RerankSet, batch_size: int = 64, progress: bool = True
) -> dict[str, list[float]]:
    """{qid: scores of its candidates} from a cross-encoder: every (query, candidate) pair, batched by length."""
    qids = list(rerank_set.candidates)
    queries = [rerank_set.queries[qid] for qid in qids for _ in rerank_set.candidates[qid]]
    passages = texts_of(rerank_set.documents, [doc_id for qid in qids for doc_id in rerank_set.candidates[qid]])
    flat = cross_encoder.score(queries, passages, batch_size, progress) if queries else []
    scores, start = {}, 0
    for qid in qids:
        end = start + len(rerank_set.candidates[qid])
        scores[qid], start = flat[start:end], end
    return scores


def compute_metrics(
    rerank_set: RerankSet, scores: dict[str, list[float]], k_values=(10,), metrics=None, return_per_query: bool = False
) -> dict:
    """Metric means over the set's queries (each query's candidates scored by `scores`)."""
    metrics = metrics or load_metrics()
    qids = list(rerank_set.queries)
    return metrics.compute(
        predictions=[scores[qid] for qid in qids],
        references=[[rerank_set.qrels[qid].get(d, 0) for d in rerank_set.candidates[qid]] for qid in qids],
        judged_relevances=[list(rerank_set.qrels[qid].values()) for qid in qids],
        k_values=list(k_values),
        return_per_query=return_per_query,
    )


def rankings(rerank_set: RerankSet, scores: dict[str, list[float]]) -> dict[str, list[tuple[str, float]]]:
    """{qid: [(docid, score), ...] best first}, in the metrics' order (ties keep the first-stage order)."""
    return {
        qid: [(rerank_set.candidates[qid][i], scores[qid][i]) for i in rank_order(scores[qid])]
        for qid in rerank_set.queries
    }


def results_table(models: dict, depth, with_queries: bool = True) -> str:
    """Markdown table of {system: metrics} as eval_rerank.py reports it (and the model card shows it).

    >>> row = {"mrr@10": 0.5, "ndcg@10": 0.6, "recall@10": 0.9, "recall@k": 1.0, "num_queries": 3}
    >>> print(results_table({"bm25": row}, 30, with_queries=False))
    | system | MRR@10 | nDCG@10 | Recall@10 | Recall@30 |
    |---|---|---|---|---|
    | bm25 | 0.5000 | 0.6000 | 0.9000 | 1.0000 |
    """
    header = f"| system | MRR@10 | nDCG@10 | Recall@10 | Recall@{depth} |" + (" queries |" if with_queries else "")
    lines = [header, "|---" * (6 if with_queries else 5) + "|"]
    for name, m in models.items():
        row = f"| {name} | {m['mrr@10']:.4f} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['recall@k']:.4f} |"
        lines.append(row + (f" {m['num_queries']} |" if with_queries else ""))
    return "\n".join(lines)
