"""BM25 candidates of the pseudo-queries, as rows for the teacher to score (issue 23, item 2).

    python scripts/pseudo_query_candidates.py --pseudo-queries data/debian-pseudo/pseudo-queries.train.jsonl.gz \
        --depth 30 --sample 41329 --output runs/pseudo/candidates-41329.train.jsonl.gz
    python scripts/teacher_scores.py --teacher runs/debian-distill/teacher/best --hard-negatives 7 \
        --train-data runs/pseudo/candidates-41329.train.jsonl.gz --output runs/pseudo/scored-41329.train.jsonl.gz

Each pseudo-query is searched over the whole corpus with the BM25 that made the dev candidates (checked against the
dev run first, as `mine_bm25_negatives.py` does). A row holds its top --depth passages in BM25 order, in the listwise
layout `teacher_scores.py` and `train_accelerate.py` read: `positive` is only the first slot (the BM25 top passage) —
the source passage is not assumed relevant; the teacher's scores decide, so train on these rows with `--loss kl`.
The candidate ids go to OUTPUT.trec (query id `p<N>`, N the pseudo-query's line in its file), in the same order.

Teacher scoring 165 k queries is hours on a CPU: `--sample N` keeps a seeded random N of them, in the order of one
permutation, so a larger sample starts with every row of a smaller one and `teacher_scores.py --reuse` copies their
scores — the pool grows across sessions without rescoring.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mine_bm25_negatives import DATA, BM25Index, check_reproduces  # noqa: E402

from lite_rerank.data import DataError, read_beir_texts, read_jsonl, read_trec_run, write_trec_run  # noqa: E402
from lite_rerank.utils import (  # noqa: E402
    nested_sample,
    refuse_outputs_over_inputs,
    write_atomically,
    write_gzip_atomically,
)


def run_path(output) -> Path:
    """The BM25 run written next to the output (X.jsonl.gz → X.trec)."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".jsonl.gz") + ".trec")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA), help="the BEIR folder (corpus, queries, runs/bm25.dev.trec)")
    parser.add_argument("--pseudo-queries", required=True, help="make_pseudo_queries.py output")
    parser.add_argument("--depth", type=int, default=8, help="candidates per pseudo-query (the teacher scores each)")
    parser.add_argument("--max-queries", type=int, default=None, help="the first N pseudo-queries only (trials)")
    parser.add_argument(
        "--sample", type=int, default=None, help="a seeded random N of the pseudo-queries, nested across N"
    )
    parser.add_argument("--output", required=True, help=".jsonl.gz")
    args = parser.parse_args(argv)
    if args.depth < 2:
        parser.error(f"--depth must be at least 2 (the first slot and a negative), got {args.depth}")
    for flag in ("max_queries", "sample"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.max_queries is not None and args.sample is not None:
        parser.error("--max-queries and --sample choose the pseudo-queries two ways: give one")
    if not args.output.endswith(".jsonl.gz"):
        parser.error("--output must end in .jsonl.gz")
    inputs = [("--pseudo-queries", args.pseudo_queries), ("--data", args.data)]
    refuse_outputs_over_inputs([("--output", args.output), ("--output", run_path(args.output))], inputs)
    return args


def main(argv=None):
    args = parse_args(argv)
    data, output = Path(args.data), Path(args.output)
    try:
        pseudo = [row["query"] for _, row in read_jsonl(args.pseudo_queries, required=("query",))]
        corpus = read_beir_texts(data / "corpus.jsonl.gz", with_title=False)
        queries = read_beir_texts(data / "queries.jsonl.gz", with_title=False)
        dev_run = read_trec_run(data / "runs" / "bm25.dev.trec")
    except DataError as error:
        raise SystemExit(f"error: {error}") from None
    if args.sample is not None and args.sample > len(pseudo):
        raise SystemExit(f"--sample {args.sample}: {args.pseudo_queries} holds only {len(pseudo)} pseudo-queries")
    lines_kept = nested_sample(len(pseudo), args.sample) if args.sample else range(len(pseudo))[: args.max_queries]
    pseudo = [pseudo[i] for i in lines_kept]
    index = BM25Index(corpus)
    check_reproduces(index, queries, dev_run, max(len(ranked) for ranked in dev_run.values()))
    hits = index.search(pseudo, args.depth)
    output.parent.mkdir(parents=True, exist_ok=True)

    def lines():
        for query, ranked in zip(pseudo, hits):
            texts = [corpus[doc_id] for doc_id, _ in ranked]
            row = {"query": query, "positive": texts[0], "negatives": texts[1:]}
            yield (json.dumps(row, ensure_ascii=False) + "\n").encode()

    write_atomically(
        run_path(output), lambda path: write_trec_run(path, {f"p{i}": r for i, r in zip(lines_kept, hits)}, "bm25")
    )
    write_gzip_atomically(output, lines())
    print(f"{output}: {len(pseudo)} pseudo-queries with their BM25 top-{args.depth}")


if __name__ == "__main__":
    main()
