"""Pictures for RESULTS.md.

    python research/plots.py curve "cross-encoder teacher=runs/debian-distill/teacher/metrics.jsonl" \
        results/teacher-curve.png --baseline "BM25" 0.6346 --baseline "MaxSim, frozen all-MiniLM-L6-v2" 0.7069
    python research/plots.py curve LITE=runs/workflow/lite/metrics.jsonl MaxSim=runs/workflow/maxsim/metrics.jsonl \
        Small-LITE=runs/workflow/small-lite/metrics.jsonl results/students-curve.png --baseline "BM25" 0.6346
    python research/plots.py quality-cost results/quality-cost.json results/quality-cost.png

`curve`: selection MRR@10 against optimizer steps, one line per training run (NAME=its metrics.jsonl; a bare path is
named by its folder), with horizontal baselines.
`quality-cost`: dev MRR@10 against ms per query (log scale), one point per system, from
{"systems": [{"name", "mrr@10", "ms_30", "ms_1000"[, "label_dy"]}]} (ms per query for 30 and 1,000 cached candidates).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lite_rerank.utils import named_paths, selection_curve  # noqa: E402


def curve(runs: dict[str, str], output, baselines) -> dict[str, list[tuple[int, float]]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {name: list(selection_curve(path).items()) for name, path in runs.items()}
    first_step = min((points[0][0] for points in series.values() if points), default=0)
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, points in series.items():
        axis.plot([s for s, _ in points], [m for _, m in points], "o-", label=name)
    for name, value in baselines:
        axis.axhline(value, linestyle="--", linewidth=1, color="gray")
        axis.text(first_step, value + 0.002, name, fontsize=8, color="gray")
    axis.set_xlabel("optimizer steps (32 queries × (1 + 3) passages)")
    axis.set_ylabel("MRR@10, selection split (500 training queries)")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    return series


def quality_cost(results_path, output):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = json.loads(Path(results_path).read_text())["systems"]
    figure, axis = plt.subplots(figsize=(7, 6))
    for index, system in enumerate(systems):  # one colour per system; a line joins its two costs
        color = f"C{index % 10}"
        costs = [system["ms_30"], system["ms_1000"]]
        axis.plot(costs, [system["mrr@10"]] * 2, "-", color=color, linewidth=0.8, alpha=0.5)
        axis.scatter(costs[0], system["mrr@10"], marker="o", color=color)
        axis.scatter(costs[1], system["mrr@10"], marker="s", color=color)
        # "label_dy" (points, optional) lifts or lowers a label that two systems of equal quality would overlap
        axis.annotate(
            system["name"],
            (costs[1], system["mrr@10"]),
            fontsize=7,
            xytext=(5, -3 + system.get("label_dy", 0)),
            textcoords="offset points",
        )
    axis.set_xscale("log")
    costs = [system[key] for system in systems for key in ("ms_30", "ms_1000")]
    axis.set_xlim(min(costs) / 2, max(costs) * 40)  # room for the labels right of the squares
    axis.set_xlabel("ms per query (circles: 30 cached candidates, squares: 1,000)")
    axis.set_ylabel("dev MRR@10 (920 queries, BM25 top-30)")
    axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(output, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("curve")
    c.add_argument("metrics", nargs="+", metavar="NAME=METRICS", help="a training run's metrics.jsonl, named")
    c.add_argument("output")
    c.add_argument("--baseline", nargs=2, action="append", default=[], metavar=("NAME", "MRR"))
    q = commands.add_parser("quality-cost")
    q.add_argument("results")
    q.add_argument("output")
    args = parser.parse_args(argv)
    if args.command == "curve":
        # a bare path is named by its folder, refused like a repeated NAME when two folders share a name
        specs = [spec if "=" in spec else f"{Path(spec).parent.name}={spec}" for spec in args.metrics]
        runs = named_paths("curve", specs, parser.error)
        return curve(runs, args.output, [(name, float(value)) for name, value in args.baseline])
    return quality_cost(args.results, args.output)


if __name__ == "__main__":
    main()
