"""scripts/make_pseudo_queries.py: pseudo-queries come only from the positives of training queries outside the
selection split (any other passage may answer a held-out query), are spans of their source, are unique, and are the
same for the same seed."""

import gzip
import json
import random
import sys

import pytest
from conftest import ROOT, SHARED_DEBIAN, needs_shared_data

sys.path.insert(0, str(ROOT / "scripts"))
import make_pseudo_queries  # noqa: E402

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa".split()


def write_gz(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)


def passage(rng, marker: str) -> str:
    """A few sentences of made-up words; `marker` in every sentence tells where a span came from."""
    return " ".join(
        " ".join([marker, *rng.choices(WORDS, k=rng.randrange(4, 14))]).capitalize() + "." for _ in range(4)
    )


@pytest.fixture
def collection(tmp_path):
    """Passages d0-d29: d0-d19 positives of training queries (q15-q19 in the selection split), d20-d24 of dev queries,
    d25-d29 of no query. Each passage's words carry its kind: `train`, `selection`, `dev` or `orphan`."""
    rng = random.Random(3)
    kinds = ["train"] * 15 + ["selection"] * 5 + ["dev"] * 5 + ["orphan"] * 5
    data = tmp_path / "data"
    (data / "qrels").mkdir(parents=True)
    write_gz(data / "corpus.jsonl.gz", [{"_id": f"d{i}", "text": passage(rng, kind)} for i, kind in enumerate(kinds)])
    queries = [{"_id": f"q{i}", "text": f"{WORDS[i % 16]} {WORDS[(i * 7) % 16]} tool {i}"} for i in range(25)]
    write_gz(data / "queries.jsonl.gz", queries)
    (data / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(20))
    )
    (data / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(20, 25))
    )
    selection = tmp_path / "negatives" / "selection" / "qrels"
    selection.mkdir(parents=True)
    (selection / "selection.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(15, 20))
    )
    return data, tmp_path / "negatives", {f"d{i}": kind for i, kind in enumerate(kinds)}


def run(collection, output, *extra):
    data, negatives, _ = collection
    make_pseudo_queries.main(
        ["--data", str(data), "--negatives", str(negatives), "--output", str(output), "--per-passage", "4", *extra]
    )
    with gzip.open(output, "rt") as lines:
        return [json.loads(line) for line in lines]


def test_pseudo_queries_come_only_from_training_positives_outside_the_selection_split(tmp_path, collection):
    _, _, kind = collection
    rows = run(collection, tmp_path / "pseudo.jsonl.gz")
    assert {row["source"] for row in rows} == {f"d{i}" for i in range(15)}
    words = {word.lower().strip(".,") for row in rows for word in row["query"].split()}
    assert "train" in words and not words & {"selection", "dev", "orphan"}
    assert all(kind[row["source"]] == "train" for row in rows)


def test_each_is_a_span_of_its_source_unique_and_of_synopsis_length(tmp_path, collection):
    data, _, _ = collection
    corpus = {row["_id"]: row["text"] for row in map(json.loads, gzip.open(data / "corpus.jsonl.gz", "rt"))}
    real = [json.loads(line)["text"] for line in gzip.open(data / "queries.jsonl.gz", "rt")]
    rows = run(collection, tmp_path / "pseudo.jsonl.gz")
    assert len(rows) == 15 * 4
    for row in rows:
        assert " ".join(row["query"].split()) in " ".join(corpus[row["source"]].split())
        assert 3 <= len(row["query"].split()) <= max(len(text.split()) for text in real)
        assert row["query"].split()[-1].lower() not in make_pseudo_queries.TRAILING
    keys = [" ".join(row["query"].lower().split()) for row in rows]
    assert len(set(keys)) == len(keys) and not set(keys) & {" ".join(text.lower().split()) for text in real}
    stats = json.loads((tmp_path / "pseudo.stats.json").read_text())
    assert stats["pseudo_queries"] == 60 and stats["passages"] == 15
    assert sum(stats["words_pseudo"].values()) == 60 and sum(stats["tokens_pseudo"].values()) == 60


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_queries(tmp_path, collection):
    run(collection, tmp_path / "a.jsonl.gz")
    run(collection, tmp_path / "b.jsonl.gz")
    other = run(collection, tmp_path / "c.jsonl.gz", "--seed", "7")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert [row["query"] for row in other] != [row["query"] for row in run(collection, tmp_path / "a.jsonl.gz")]


@needs_shared_data
def test_the_committed_pseudo_queries_come_only_from_training_positives_outside_the_selection_split():
    """data/debian-pseudo: every source is the positive of a training query outside the selection split (re-derived
    here as mine_bm25_negatives.py carves it), and every pseudo-query is a span of its source."""
    import mine_bm25_negatives

    from lite_rerank.data import read_beir_texts, read_jsonl, read_qrels

    queries = read_beir_texts(SHARED_DEBIAN / "queries.jsonl.gz", with_title=False)
    train = read_qrels(SHARED_DEBIAN / "qrels" / "train.tsv")
    qid_of = {queries[qid]: qid for qid in train}
    qids = [qid_of[row["query"]] for _, row in read_jsonl(SHARED_DEBIAN / "triplets.train.jsonl.gz")]
    selection = mine_bm25_negatives.selection_split(qids, 500, 42)
    allowed = {doc for qid, judged in train.items() if qid not in selection for doc, grade in judged.items() if grade}
    corpus = read_beir_texts(SHARED_DEBIAN / "corpus.jsonl.gz", with_title=False)
    held_out = {doc for qid in selection for doc in train[qid]}
    held_out |= {doc for judged in read_qrels(SHARED_DEBIAN / "qrels" / "dev.tsv").values() for doc in judged}
    rows = [row for _, row in read_jsonl(ROOT / "data" / "debian-pseudo" / "pseudo-queries.train.jsonl.gz")]
    assert len(rows) >= 4 * 40_000
    sources = {row["source"] for row in rows}
    assert sources <= allowed and not sources & held_out and len(sources) > 0.99 * len(allowed)
    for row in rows:
        assert " ".join(row["query"].split()) in " ".join(corpus[row["source"]].split()), row
