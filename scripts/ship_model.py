"""A trained student shipped in the repository: a Hub-format folder under models/ that loads straight after cloning
(issue 56), with its provenance and its per-query dev run.

    python scripts/ship_model.py --run runs/students-56/residual --results runs/students-56/dev/residual.json \
        --results-model Residual --name debian-minilm-residual-student --description "The residual LITE student ..."

1. Checks every input first: the run folder (best/, metrics.jsonl, run_config.json), that the results row scored
   exactly best/'s weights in float32, and that models/NAME is new, empty or an earlier stage of this script.
2. Rounds the weights to --weights-dtype (float16: a MiniLM student then takes ≈ 47 MB; config.json keeps float32,
   so every route loads and computes in float32) and evaluates the rounded model on the results' data and split in
   float32 — and in bfloat16 with --bf16-dev — refusing to ship when its dev MRR@10 moves by more than 0.002 from
   the float32 figure of the weights before rounding.
3. Stages models/NAME with push_to_hub.py's stage (weights, config, remote code, tokenizer, handler, model card
   rendered from the provenance) plus provenance.json (recipe and command, the packed supervision's sha256, encoder,
   seed, selection curve, kept step, weights sha256, dev figures) and dev-run.trec.gz (the rounded model's ranking of
   every dev query, so that a paired test of any two shipped models reruns from the clone), and validates the stage
   through every route in a fresh process.
"""

import argparse
import copy
import gzip
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import eval_rerank  # noqa: E402
import push_to_hub  # noqa: E402
from lite_rerank.hardware import DTYPE_NAMES  # noqa: E402
from lite_rerank.publishing import (  # noqa: E402
    WIDGET_EXAMPLES,
    StageDirError,
    StageError,
    check_stage_dir,
    load_results,
    stage_model,
    validate_stage,
)
from lite_rerank.utils import file_sha256, result_run_path, selection_curve  # noqa: E402
from modeling_lite import LiteModel  # noqa: E402

MODELS = ROOT / "models"
PROVENANCE, DEV_RUN = "provenance.json", "dev-run.trec.gz"
MAX_MRR_CHANGE = 0.002  # issue 56: the committed file reproduces the model's dev MRR@10 within this, in float32
MAX_BYTES = 50 * 1024**2
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DATASET_NAME = "Debian package descriptions (BEIR layout; query: a package's synopsis, passage: its description)"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="the student's train_accelerate.py run folder")
    parser.add_argument("--results", required=True, help="eval_rerank.py's float32 dev results of RUN/best")
    parser.add_argument("--results-model", required=True, help="the row of --results that is this student")
    parser.add_argument("--name", required=True, help="the folder under --output-dir (models/NAME)")
    parser.add_argument("--description", required=True, help="one or two sentences for the card and provenance")
    parser.add_argument("--command", default=None, help="the command that trained it, as a user would rerun it")
    parser.add_argument("--output-dir", default=str(MODELS))
    parser.add_argument("--repo-id", default=None, help="for the card's usage code (default: lite-reranker/NAME)")
    parser.add_argument("--weights-dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--bf16-dev", action="store_true", help="also evaluate the shipped file in bfloat16")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def check_inputs(args) -> tuple[Path, dict, Path]:
    """The run's best model, its float32 dev results (the row scored best/'s weights) and the stage folder."""
    run, best = Path(args.run), Path(args.run) / "best"
    for path in (best / "model.safetensors", run / "metrics.jsonl", run / "run_config.json"):
        if not path.is_file():
            raise SystemExit(f"error: --run {run}: no {path.relative_to(run)}; point --run at a finished training run")
    try:
        results = load_results(args.results)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: --results: {error}") from None
    if args.results_model not in results["models"]:
        raise SystemExit(f"error: --results-model {args.results_model!r} is not a row of {args.results}")
    push_to_hub.check_results_are_this_models(results, args.results_model, args.results, best)
    if results.get("precision", {}).get("dtype") != "float32":
        raise SystemExit(f"error: --results {args.results} was computed in {results.get('precision')}, not float32")
    if not (Path(results["data"]["spec"]).is_dir() and results["data"].get("run")):
        raise SystemExit(f"error: --results {args.results}: its data is not a BEIR folder with a first-stage run")
    try:
        stage = check_stage_dir(Path(args.output_dir) / args.name, best)
    except StageDirError as error:
        raise SystemExit(f"error: {error}") from None
    return best, results, stage


def rounded(model: LiteModel, dtype: torch.dtype) -> LiteModel:
    """A float32 copy of `model` whose weights are rounded to `dtype`: what the shipped file loads as."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in copied.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(dtype).float())
    return copied


def evaluate(model_dir: Path, results: dict, dtype: str, output: Path, args) -> dict:
    """The shipped weights on the results' data, split and run, in `dtype`: its row and the TREC run beside it."""
    data = results["data"]
    argv = ["--model", f"shipped={model_dir}", "--data", data["spec"], "--split", data.get("split") or "dev"]
    argv += ["--run", data["run"], "--output", str(output), "--dtype", dtype]
    argv += (["--threads", str(args.threads)] if args.threads else []) + (
        ["--no-progress"] if args.no_progress else []
    )
    return eval_rerank.main(argv)["shipped"]


def metrics(row: dict) -> dict:
    return {key: row[key] for key in ("mrr@10", "ndcg@10", "recall@10", "recall@k", "num_queries")}


def provenance_record(args, run: Path, results: dict, dev: dict, weights: dict) -> dict:
    summary = json.loads((run / "best" / "training_summary.json").read_text())
    curve = selection_curve(run / "metrics.jsonl")
    flags = json.loads((run / "run_config.json").read_text())
    workflow = run.parent / "supervision.json"
    supervision = json.loads(workflow.read_text()) if workflow.is_file() else None
    last = max(curve) if curve else summary["step"]
    ended = "the step budget" if last >= (flags.get("max_steps") or 0) else "early stopping"
    packed = {Path(p).name: sha[:16] + "…" for p, sha in (supervision or {}).get("packed", {}).items()}
    return {
        "format": "lite-shipped-model/1",
        "name": args.name,
        "description": args.description,
        "scorer": flags.get("scorer"),
        "encoder": {"name": BASE_MODEL, "path": flags.get("encoder"), "weights_sha256": file_sha256_or_none(flags)},
        "recipe": {
            "command": args.command,
            "config": flags.get("config"),
            "train_flags": flags,
            "seed": flags.get("seed"),
            "supervision": supervision,
            "supervision_text": ", ".join(f"{name} (sha256 {sha})" for name, sha in packed.items()) or "—",
        },
        "selection": {
            "split": Path(str(flags.get("dev_data"))).name,
            "mrr@10_by_step": curve,
            "curve_text": ", ".join(f"{step}: {mrr:.4f}" for step, mrr in curve.items()),
            "kept_step": summary["step"],
            "last_step": last,
            "ended": ended,
        },
        "training": {key: summary.get(key) for key in ("precision", "precision_history", "hardware", "teacher")},
        "weights": weights,
        "dev": {
            "protocol": results["protocol"],
            "run": DEV_RUN,
            "float32": dev["float32"],
            "bfloat16": dev.get("bfloat16"),
            "unrounded_float32": metrics(results["models"][args.results_model]),
        },
    }


def file_sha256_or_none(flags: dict) -> str | None:
    weights = Path(str(flags.get("encoder"))) / "model.safetensors"
    return file_sha256(weights) if weights.is_file() else None


def main(argv=None):
    args = parse_args(argv)
    best, results, stage = check_inputs(args)
    model = LiteModel.from_pretrained(best).float().eval()
    dtype = DTYPE_NAMES[args.weights_dtype]
    shipped = rounded(model, dtype)
    shipped.tokenizer = model.tokenizer
    with tempfile.TemporaryDirectory(prefix="lite-ship-") as work:
        work = Path(work)
        shipped.save_pretrained(work / "model")
        dev = {"float32": metrics(evaluate(work / "model", results, "float32", work / "dev" / "f32.json", args))}
        before = results["models"][args.results_model]["mrr@10"]
        change = dev["float32"]["mrr@10"] - before
        if abs(change) > MAX_MRR_CHANGE:
            raise SystemExit(
                f"error: rounded to {args.weights_dtype}, the model's dev MRR@10 moves by {change:+.4f} ({before:.4f} → "
                f"{dev['float32']['mrr@10']:.4f}), more than {MAX_MRR_CHANGE}; ship it with --weights-dtype float32"
            )
        if args.bf16_dev:
            dev["bfloat16"] = metrics(evaluate(work / "model", results, "bfloat16", work / "dev" / "bf16.json", args))
        run = work / DEV_RUN
        with gzip.GzipFile(run, "wb", mtime=0) as out:
            out.write(result_run_path(work / "dev" / "f32.json", "shipped").read_bytes())
        examples = json.loads(WIDGET_EXAMPLES.read_text())
        pairs = [[example["query"], passage] for example in examples for passage in example["passages"]]
        expected = shipped.compute_score(pairs)
        provenance = work / PROVENANCE
        weights = {"file": "model.safetensors", "dtype": args.weights_dtype, "sha256": "", "bytes": None}
        for attempt in range(2):  # the weights' sha256 is known once staged: stage, record it, stage again
            if attempt:
                weights |= {"sha256": file_sha256(stage / "model.safetensors"), "bytes": stage_bytes(stage)}
            record = provenance_record(args, Path(args.run), results, dev, weights)
            provenance.write_text(json.dumps(record, indent=2) + "\n")
            try:
                stage_model(
                    shipped,
                    stage,
                    args.repo_id or f"lite-reranker/{args.name}",
                    json.loads((work / "dev" / "f32.json").read_text()),
                    "shipped",
                    json.loads((best / "training_summary.json").read_text()),
                    examples,
                    BASE_MODEL,
                    DATASET_NAME,
                    weights_dtype=dtype if dtype != torch.float32 else None,
                    extra_files={PROVENANCE: provenance, DEV_RUN: run},
                    provenance=record,
                )
            except StageError as error:
                raise SystemExit(f"error: {best}: cannot stage it: {error}") from None
        if file_sha256(stage / "model.safetensors") != record["weights"]["sha256"]:
            raise SystemExit(f"error: {stage}: the weights written twice differ; nothing is shipped")
    if stage_bytes(stage) > MAX_BYTES:
        raise SystemExit(f"error: {stage}: {stage_bytes(stage):,} bytes of weights, more than {MAX_BYTES:,}")
    try:
        validate_stage(stage, pairs, expected, shipped.config.scorer)
    except StageError as error:
        raise SystemExit(f"error: stage validation failed: {error}") from None
    print(
        f"{stage}: {args.name}, weights {args.weights_dtype} ({stage_bytes(stage):,} bytes); dev MRR@10 "
        f"{dev['float32']['mrr@10']:.4f} in float32 from the shipped file ({change:+.4f} from the float32 weights)"
    )
    return record


def stage_bytes(stage: Path) -> int:
    return (stage / "model.safetensors").stat().st_size


if __name__ == "__main__":
    main()
