"""Cut the embedded demo sample (data/debian-sample) from ../shared/data/debian-rerank.

    python scripts/make_debian_sample.py [--train 3000] [--dev 300]

Keeps the first N training triplets, the first M dev queries (qrels order) with their BM25 top-30 candidates, and
only the corpus passages those candidates need. Deterministic: rerunning gives byte-identical files.
"""

import argparse
import gzip
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "debian-rerank"
TARGET = ROOT / "data" / "debian-sample"


def write_gz(path: Path, lines):
    # mtime=0: the same content gives the same bytes
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        for line in lines:
            out.write(line.encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--dev", type=int, default=300)
    args = parser.parse_args()
    (TARGET / "qrels").mkdir(parents=True, exist_ok=True)
    (TARGET / "runs").mkdir(exist_ok=True)

    with gzip.open(SOURCE / "triplets.train.jsonl.gz", "rt") as lines:
        write_gz(TARGET / "triplets.train.jsonl.gz", (line for _, line in zip(range(args.train), lines)))

    qrels_lines = (SOURCE / "qrels" / "dev.tsv").read_text().splitlines()
    header, judged = qrels_lines[0], qrels_lines[1 : args.dev + 1]
    dev_queries = {line.split("\t")[0] for line in judged}
    (TARGET / "qrels" / "dev.tsv").write_text("\n".join([header, *judged]) + "\n")

    run = [
        line for line in (SOURCE / "runs" / "bm25.dev.trec").read_text().splitlines() if line.split()[0] in dev_queries
    ]
    (TARGET / "runs" / "bm25.dev.trec").write_text("\n".join(run) + "\n")
    needed = {line.split()[2] for line in run} | {line.split("\t")[1] for line in judged}

    with gzip.open(SOURCE / "queries.jsonl.gz", "rt") as lines:
        write_gz(TARGET / "queries.jsonl.gz", (line for line in lines if json.loads(line)["_id"] in dev_queries))
    with gzip.open(SOURCE / "corpus.jsonl.gz", "rt") as lines:
        write_gz(TARGET / "corpus.jsonl.gz", (line for line in lines if json.loads(line)["_id"] in needed))
    shutil.copy(SOURCE / "README.md", TARGET / "SOURCE-README.md")
    print(
        f"{TARGET}: {args.train} triplets, {len(dev_queries)} dev queries, {len(run)} candidates, "
        f"{len(needed)} passages"
    )


if __name__ == "__main__":
    main()
