"""Training negatives from the same first stage the re-ranker is evaluated on: BM25 top-30 of each training query.

    python scripts/mine_bm25_negatives.py --output-dir runs/bm25-negatives

The shipped `triplets.train.jsonl.gz` draws each negative from the query's BM25 *top-10*, while dev re-ranks the
BM25 *top-30*; a learned scorer never sees a rank 11–30 candidate in training (RESULTS.md, "What was tried").
This script indexes the corpus with the same BM25 as `runs/bm25.dev.trec` (bm25s, English stop words, defaults),
first checks that it reproduces that dev run exactly, then writes for the training queries
- `bm25.train.trec`: their BM25 top-30 (TREC run format), and
- `triplets.train.jsonl.gz`: the shipped triplets, in the same order, with each negative drawn uniformly (seeded)
  from the query's top-30 minus its own passage — the candidate distribution dev re-ranks;
and, when asked,
- `--selection-queries N`: a selection split carved from the training queries (seeded), for choosing checkpoints,
  epochs and learning rates without looking at dev: `selection/` is a BEIR folder (links to the corpus and queries,
  `qrels/selection.tsv`) with `selection/bm25.selection.trec`, the same BM25 top-30 candidates dev has;
- `--negatives-per-query K`: `listwise.train.jsonl.gz`, one row per training query not in the selection split, in
  the shipped order: `query`, `positive` and `negatives`, K distinct passages drawn (seeded) from the query's top-30
  minus its own passage (train with `--hard-negatives k` ≤ K; score with `scripts/teacher_scores.py`).

    python scripts/mine_bm25_negatives.py --output-dir runs/bm25-negatives --selection-queries 500 \
        --negatives-per-query 8
"""

import argparse
import gzip
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lite_rerank.bm25 import BM25Index, same_ranking  # noqa: E402
from lite_rerank.data import (  # noqa: E402
    DataError,
    read_beir_texts,
    read_jsonl,
    read_qrels,
    read_trec_run,
    write_trec_run,
)
from lite_rerank.utils import refuse_outputs_over_inputs  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "debian-rerank"


def check_reproduces(
    index: BM25Index, queries: dict[str, str], reference: dict[str, list[tuple[str, float]]], depth: int
):
    """The index gives the reference run (up to the order of tied passages, which bm25s's sort leaves to the CPU)."""
    qids = list(reference)
    for qid, hits in zip(qids, index.search([queries[q] for q in qids], depth, whole_ties=True)):
        if not same_ranking(reference[qid], hits):
            raise SystemExit(
                f"BM25 does not reproduce the reference run for query {qid}: the index or tokenisation "
                "differs from the one that made the dev candidates; refusing to mine negatives with it."
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", default=str(DATA), help="BEIR folder with corpus, queries, qrels/train.tsv, triplets"
    )
    parser.add_argument("--depth", type=int, default=30, help="candidates per query, as in the dev run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--selection-queries",
        type=int,
        default=0,
        help="carve a selection split of N training queries (excluded from the listwise file)",
    )
    parser.add_argument(
        "--negatives-per-query",
        type=int,
        default=None,
        help="also write listwise.train.jsonl.gz with K negatives per query from its top-depth",
    )
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args(argv)
    if args.negatives_per_query is not None and not 1 <= args.negatives_per_query < args.depth:
        parser.error(f"--negatives-per-query must be between 1 and --depth - 1 = {args.depth - 1}")
    if args.selection_queries < 0:
        parser.error(f"--selection-queries must be 0 (none) or more, got {args.selection_queries}")
    data, out = Path(args.data), Path(args.output_dir)
    written = ["triplets.train.jsonl.gz", "bm25.train.trec", "listwise.train.jsonl.gz", "selection"]
    refuse_outputs_over_inputs([("--output-dir", out / name) for name in written], [("--data", data)])
    if (out / "selection").exists() and not args.selection_queries:
        raise SystemExit(
            f"--output-dir {out} holds a selection split from an earlier run, whose queries this run would put back "
            "into the training files (checkpoints would then be chosen on training queries): rerun with its "
            "--selection-queries, or choose another --output-dir"
        )
    try:
        training_queries = len(read_qrels(data / "qrels" / "train.tsv"))
    except DataError as error:
        raise SystemExit(f"error: {error}") from None
    if args.selection_queries >= training_queries:
        raise SystemExit(
            f"--selection-queries {args.selection_queries}: {data / 'qrels' / 'train.tsv'} holds only "
            f"{training_queries} training queries, and some must be left to train on"
        )
    out.mkdir(parents=True, exist_ok=True)

    corpus = read_beir_texts(data / "corpus.jsonl.gz", with_title=False)
    queries = read_beir_texts(data / "queries.jsonl.gz", with_title=False)
    index = BM25Index(corpus)
    check_reproduces(index, queries, read_trec_run(data / "runs" / "bm25.dev.trec"), args.depth)

    relevant = {
        qid: next(d for d, grade in judged.items() if grade > 0)
        for qid, judged in read_qrels(data / "qrels" / "train.tsv").items()
    }
    qid_of = {queries[qid]: qid for qid in relevant}
    triplets_path = data / "triplets.train.jsonl.gz"
    numbered = list(read_jsonl(triplets_path, required=("query", "positive", "negative")))
    missing = [line_no for line_no, t in numbered if t["query"] not in qid_of]
    if missing:
        raise SystemExit(
            f"{triplets_path}:{missing[0]}: query is not a training query of "
            f"qrels/train.tsv ({len(missing)} such lines)"
        )
    triplets = [t for _, t in numbered]
    qids = [qid_of[t["query"]] for t in triplets]
    hits = index.search([t["query"] for t in triplets], args.depth)

    rng = random.Random(args.seed)
    write_trec_run(out / "bm25.train.trec", dict(zip(qids, hits)), tag="bm25")
    with open(out / "triplets.train.jsonl.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for qid, triplet, ranked in zip(qids, triplets, hits):
            negatives = [d for d, _ in ranked if d != relevant[qid]]
            mined = dict(triplet, negative=corpus[rng.choice(negatives)])
            gz.write((json.dumps(mined, ensure_ascii=False) + "\n").encode())
    print(f"{out}: {len(triplets)} triplets with BM25 top-{args.depth} negatives (dev run reproduced exactly)")
    selection = selection_split(qids, args.selection_queries, args.seed)
    if selection:
        write_selection_split(data, out / "selection", selection, relevant, dict(zip(qids, hits)))
        print(f"{out / 'selection'}: {len(selection)} selection queries with their BM25 top-{args.depth}")
    if args.negatives_per_query:
        rng = random.Random(args.seed + 2)
        with open(out / "listwise.train.jsonl.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for qid, triplet, ranked in zip(qids, triplets, hits):
                if qid in selection:
                    continue
                negatives = rng.sample([d for d, _ in ranked if d != relevant[qid]], args.negatives_per_query)
                row = {
                    "query": triplet["query"],
                    "positive": triplet["positive"],
                    "negatives": [corpus[d] for d in negatives],
                }
                gz.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
        print(
            f"{out / 'listwise.train.jsonl.gz'}: {len(set(qids) - selection)} queries, "
            f"{args.negatives_per_query} negatives each"
        )


def selection_split(training_qids, count: int, seed: int) -> set[str]:
    """The `count` training queries carved out for selection (seeded): never trained on, never a pseudo-query's
    source."""
    return set(random.Random(seed + 1).sample(sorted(set(training_qids)), count))


def write_selection_split(data: Path, folder: Path, qids: set, relevant: dict, hits: dict):
    """A BEIR folder for `--dev-data` (split `selection`) and its candidates `bm25.selection.trec`."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl.gz", "queries.jsonl.gz"):
        link = folder / name
        if not link.is_symlink():
            link.symlink_to((data / name).resolve())
    ordered = [qid for qid in hits if qid in qids]
    (folder / "qrels" / "selection.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{qid}\t{relevant[qid]}\t1\n" for qid in ordered)
    )
    write_trec_run(folder / "bm25.selection.trec", {qid: hits[qid] for qid in ordered}, tag="bm25")


if __name__ == "__main__":
    main()
