"""One command for any saved or shipped LITE model (or two, one the baseline) on any BEIR folder and split: the
table and the paired tests (issue 56). Scorer folders have their own command, scripts/evaluate_scorer.py.

    python scripts/evaluate_models.py models/debian-minilm-residual-student \
        --baseline models/debian-minilm-maxsim-student --output-dir runs/eval/debian-dev
    python scripts/evaluate_models.py MODEL [--baseline MODEL] --data BEIR_FOLDER --split test [--run RUN.trec] \
        --output-dir DIR

A BEIR folder holds corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv (gzipped or not). The candidates are --run, else
DATA/runs/bm25.SPLIT.trec when the folder ships one, else BM25 over the corpus made here (OUTPUT_DIR/bm25.SPLIT.trec;
ties by passage id). `eval_rerank.py` re-ranks them with each model (OUTPUT_DIR/results.json and a TREC run per row;
models that encode passages alike share one encoding), then the paired randomisation test of each model against the
first stage and of the model against the baseline is printed and written to OUTPUT_DIR/paired-tests.json.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import eval_rerank  # noqa: E402
from lite_rerank import hardware  # noqa: E402
from lite_rerank.bm25 import first_stage_run  # noqa: E402
from lite_rerank.data import DataError, find_file  # noqa: E402
from lite_rerank.significance import compare_result_runs  # noqa: E402
from lite_rerank.utils import refuse_outputs_over_inputs, write_text_atomically  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "debian-rerank"
FIRST_STAGE = "first-stage"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a saved LITE model folder (e.g. models/NAME) or Hub id")
    parser.add_argument("--baseline", default=None, help="a second model, the baseline of the paired test")
    parser.add_argument("--data", default=str(DATA), help="BEIR folder: corpus, queries, qrels/SPLIT.tsv")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--run", default=None, help="TREC run of first-stage candidates (default: see above)")
    parser.add_argument("--depth", type=int, default=30, help="BM25 candidates per query when made on the fly")
    parser.add_argument("--output-dir", required=True)
    hardware.add_arguments(parser, "--dtype", "the models score in")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.depth < 1:
        parser.error(f"--depth must be at least 1, got {args.depth}")
    return args


def row_name(path: str) -> str:
    """A model's row: its folder's name (best/ is a run's: the run's name), or the Hub id."""
    path = Path(path)
    return path.parent.name if path.name == "best" else path.name


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.output_dir)
    rows = {row_name(args.model): args.model}
    if args.baseline:
        rows.setdefault(row_name(args.baseline), args.baseline)
        if len(rows) == 1:
            rows = {
                f"{row_name(args.model)} (model)": args.model,
                f"{row_name(args.baseline)} (baseline)": args.baseline,
            }
    names = list(rows)
    inputs = [("model", args.model), ("--baseline", args.baseline), ("--data", args.data), ("--run", args.run)]
    refuse_outputs_over_inputs([("--output-dir", out)], [(flag, p) for flag, p in inputs if p and Path(p).exists()])
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --output-dir {out} exists and is a file, not a folder (nothing was written)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        run = first_stage_run(args.data, args.split, args.run, args.depth, out)
        qrels = find_file(Path(args.data), f"qrels/{args.split}.tsv")
    except DataError as error:
        raise SystemExit(f"error: {error}") from None
    results_path = out / "results.json"
    argv = [f"--model={name}={path}" for name, path in rows.items()]
    argv += ["--data", args.data, "--split", args.split, "--run", str(run), "--output", str(results_path)]
    argv += ["--dtype", args.dtype] + (["--threads", str(args.threads)] if args.threads else [])
    results = eval_rerank.main(argv + (["--no-progress"] if args.no_progress else []))
    every = {name: results_path for name in [FIRST_STAGE, *names]}
    tests = {f"{name} vs {FIRST_STAGE}": test for name, test in compare_result_runs(every, qrels, FIRST_STAGE).items()}
    if args.baseline:
        model, baseline = names
        tests[f"{model} vs {baseline}"] = compare_result_runs(
            {model: results_path, baseline: results_path}, qrels, baseline
        )[model]
    write_text_atomically(out / "paired-tests.json", json.dumps(tests, indent=2) + "\n")
    for label, test in tests.items():
        print(
            f"{label}: {test['difference']:+.4f} MRR@10 ({test['mrr@10']:.4f} against {test['baseline_mrr@10']:.4f}), "
            f"{test['wins']} better / {test['losses']} worse, paired p = {test['p_value']:.3g}"
        )
    return {"results": results, "paired_tests": tests}


if __name__ == "__main__":
    main()
