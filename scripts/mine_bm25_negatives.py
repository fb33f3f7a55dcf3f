"""Training negatives from the same first stage the re-ranker is evaluated on: BM25 top-30 of each training query.

    python scripts/mine_bm25_negatives.py --output-dir runs/bm25-negatives

The shipped `triplets.train.jsonl.gz` draws each negative from the query's BM25 *top-10*, while dev re-ranks the
BM25 *top-30*; a learned scorer never sees a rank 11–30 candidate in training (RESULTS.md, "What was tried").
This script indexes the corpus with the same BM25 as `runs/bm25.dev.trec` (bm25s, English stop words, defaults),
first checks that it reproduces that dev run exactly, then writes for the training queries
- `bm25.train.trec`: their BM25 top-30 (TREC run format), and
- `triplets.train.jsonl.gz`: the shipped triplets, in the same order, with each negative drawn uniformly (seeded)
  from the query's top-30 minus its own passage — the candidate distribution dev re-ranks.
"""

import argparse
import gzip
import json
import random
from pathlib import Path

import bm25s

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "debian-rerank"


def read_jsonl_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def read_run(path) -> dict[str, list[str]]:
    ranked = {}
    for line in Path(path).read_text().splitlines():
        qid, _, doc_id, *_ = line.split()
        ranked.setdefault(qid, []).append(doc_id)
    return ranked


class BM25Index:
    """bm25s over the corpus, tokenised as the dataset's dev run was: lower-cased words, English stop words out."""

    def __init__(self, corpus: list[dict]):
        self.doc_ids = [doc["_id"] for doc in corpus]
        self.retriever = bm25s.BM25()
        tokens = bm25s.tokenize([doc["text"] for doc in corpus], stopwords="en", show_progress=False)
        self.retriever.index(tokens, show_progress=False)

    def search(self, texts: list[str], depth: int) -> list[list[tuple[str, float]]]:
        tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
        rows, scores = self.retriever.retrieve(tokens, k=depth, show_progress=False)
        return [[(self.doc_ids[r], float(s)) for r, s in zip(row, score)] for row, score in zip(rows, scores)]


def check_reproduces(index: BM25Index, queries: dict[str, str], reference: dict[str, list[str]], depth: int):
    qids = list(reference)
    for qid, hits in zip(qids, index.search([queries[q] for q in qids], depth)):
        if [doc_id for doc_id, _ in hits][: len(reference[qid])] != reference[qid]:
            raise SystemExit(f"BM25 does not reproduce the reference run for query {qid}: the index or tokenisation "
                             "differs from the one that made the dev candidates; refusing to mine negatives with it.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA), help="BEIR folder with corpus, queries, qrels/train.tsv, triplets")
    parser.add_argument("--depth", type=int, default=30, help="candidates per query, as in the dev run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    corpus = read_jsonl_gz(data / "corpus.jsonl.gz")
    text_of = {doc["_id"]: doc["text"] for doc in corpus}
    queries = {q["_id"]: q["text"] for q in read_jsonl_gz(data / "queries.jsonl.gz")}
    index = BM25Index(corpus)
    check_reproduces(index, queries, read_run(data / "runs" / "bm25.dev.trec"), args.depth)

    relevant = {}
    for number, line in enumerate((data / "qrels" / "train.tsv").read_text().splitlines()[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 3:
            raise SystemExit(f"{data / 'qrels' / 'train.tsv'}:{number}: expected query-id, corpus-id, score")
        relevant[fields[0]] = fields[1]
    qid_of = {queries[qid]: qid for qid in relevant}
    triplets = read_jsonl_gz(data / "triplets.train.jsonl.gz")
    missing = [n for n, t in enumerate(triplets, start=1) if t["query"] not in qid_of]
    if missing:
        raise SystemExit(f"{data / 'triplets.train.jsonl.gz'}:{missing[0]}: query is not a training query of "
                         f"qrels/train.tsv ({len(missing)} such lines)")
    qids = [qid_of[t["query"]] for t in triplets]
    hits = index.search([t["query"] for t in triplets], args.depth)

    rng = random.Random(args.seed)
    with open(out / "bm25.train.trec", "w") as run:
        for qid, ranked in zip(qids, hits):
            run.writelines(f"{qid} Q0 {d} {rank} {score:.4f} bm25\n" for rank, (d, score) in enumerate(ranked, 1))
    with open(out / "triplets.train.jsonl.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for qid, triplet, ranked in zip(qids, triplets, hits):
            negatives = [d for d, _ in ranked if d != relevant[qid]]
            mined = dict(triplet, negative=text_of[rng.choice(negatives)])
            gz.write((json.dumps(mined, ensure_ascii=False) + "\n").encode())
    print(f"{out}: {len(triplets)} triplets with BM25 top-{args.depth} negatives (dev run reproduced exactly)")


if __name__ == "__main__":
    main()
