"""scripts/mine_bm25_negatives.py on a generated BEIR folder, against a naive-loop BM25 (Lucene's variant, k1 1.5,
b 0.75, a repeated query word counted each time)."""

import gzip
import json
import math
import random
import re
import sys
from collections import Counter

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import mine_bm25_negatives  # noqa: E402

from lite_rerank.data import read_trec_run  # noqa: E402

# Made-up words: none is an English stop word, so tokenising is lower-casing and splitting on words.
VOCAB = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]
DEPTH = 5


def naive_bm25_top(query: str, corpus: dict[str, str], depth: int, k1=1.5, b=0.75) -> list[str]:
    docs = {d: Counter(re.findall(r"\w\w+", text.lower())) for d, text in corpus.items()}
    avgdl = sum(sum(tf.values()) for tf in docs.values()) / len(docs)
    scores = {}
    for d, tf in docs.items():
        length, score = sum(tf.values()), 0.0
        for term in re.findall(r"\w\w+", query.lower()):
            df = sum(term in other for other in docs.values())
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            score += idf * tf[term] / (tf[term] + k1 * (1 - b + b * length / avgdl))
        scores[d] = score
    ranked = sorted(scores, key=scores.get, reverse=True)
    assert scores[ranked[depth - 1]] > scores[ranked[depth]] > 0, "the generated data must have an unambiguous top-k"
    return [(d, scores[d]) for d in ranked[:depth]]


def write_gz(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def beir(tmp_path):
    rng = random.Random(3)
    corpus = {f"d{i}": " ".join(rng.choices(VOCAB, k=rng.randint(8, 20))) for i in range(60)}
    # Each query: three words of its own passage (so that passage is a strong candidate) plus one random word.
    queries = {f"q{i}": " ".join(rng.sample(corpus[f"d{i}"].split(), 3) + [rng.choice(VOCAB)]) for i in range(24)}
    data = tmp_path / "data"
    (data / "qrels").mkdir(parents=True)
    (data / "runs").mkdir()
    write_gz(data / "corpus.jsonl.gz", [{"_id": d, "title": "", "text": t} for d, t in corpus.items()])
    write_gz(data / "queries.jsonl.gz", [{"_id": q, "text": t} for q, t in queries.items()])
    train, dev = [f"q{i}" for i in range(16)], [f"q{i}" for i in range(16, 24)]
    (data / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\td{q[1:]}\t1\n" for q in train)
    )
    with open(data / "runs" / "bm25.dev.trec", "w") as run:
        for q in dev:
            ranked = naive_bm25_top(queries[q], corpus, DEPTH)
            run.writelines(f"{q} Q0 {d} {r} {score:.4f} bm25\n" for r, (d, score) in enumerate(ranked, 1))
    triplets = [{"query": queries[q], "positive": corpus[f"d{q[1:]}"], "negative": corpus["d59"]} for q in train]
    write_gz(data / "triplets.train.jsonl.gz", triplets)
    return data, corpus, queries, train, triplets


def read_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_negatives_come_from_the_naive_bm25_top_k_and_keep_the_triplets_order(beir, tmp_path):
    data, corpus, queries, train, triplets = beir
    mine_bm25_negatives.main(["--data", str(data), "--depth", str(DEPTH), "--output-dir", str(tmp_path / "out")])
    lines = (tmp_path / "out" / "bm25.train.trec").read_text().splitlines()
    expected = [(q, d, score) for q in train for d, score in naive_bm25_top(queries[q], corpus, DEPTH)]
    assert [(f[0], f[2]) for f in map(str.split, lines)] == [(q, d) for q, d, _ in expected]
    assert [float(f[4]) for f in map(str.split, lines)] == pytest.approx([score for *_, score in expected], abs=1e-5)
    run = {q: [d for d, _ in ranked] for q, ranked in read_trec_run(tmp_path / "out" / "bm25.train.trec").items()}
    mined = read_gz(tmp_path / "out" / "triplets.train.jsonl.gz")
    assert [(t["query"], t["positive"]) for t in mined] == [(t["query"], t["positive"]) for t in triplets]
    for q, triplet in zip(train, mined):
        allowed = {corpus[d] for d in run[q] if d != f"d{q[1:]}"}
        assert triplet["negative"] in allowed
    assert len({t["negative"] for t in mined}) > 1


def test_same_seed_same_file_and_other_seed_other_draws(beir, tmp_path):
    data = beir[0]
    paths = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        mine_bm25_negatives.main(
            ["--data", str(data), "--depth", str(DEPTH), "--seed", str(seed), "--output-dir", str(tmp_path / name)]
        )
        paths[name] = (tmp_path / name / "triplets.train.jsonl.gz").read_bytes()
    assert paths["a"] == paths["b"] and paths["a"] != paths["c"]


def test_refuses_when_the_dev_run_is_not_reproduced(beir, tmp_path):
    data = beir[0]
    lines = [line.split() for line in (data / "runs" / "bm25.dev.trec").read_text().splitlines()]
    lines[0][2], lines[1][2] = lines[1][2], lines[0][2]  # q16's first two candidates swapped
    lines = [" ".join(fields) for fields in lines]
    (data / "runs" / "bm25.dev.trec").write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit, match="query q16"):
        mine_bm25_negatives.main(["--data", str(data), "--depth", str(DEPTH), "--output-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "triplets.train.jsonl.gz").exists()


def test_a_triplet_whose_query_is_not_a_training_query_is_named_with_its_line(beir, tmp_path):
    data, corpus, queries, train, triplets = beir
    write_gz(data / "triplets.train.jsonl.gz", [*triplets[:2], {**triplets[2], "query": "unknown synopsis"}])
    with pytest.raises(SystemExit, match=r"triplets.train.jsonl.gz:3: query is not a training query"):
        mine_bm25_negatives.main(["--data", str(data), "--depth", str(DEPTH), "--output-dir", str(tmp_path / "out")])


def test_selection_split_and_listwise_rows_from_the_top_k(beir, tmp_path):
    data, corpus, queries, train, triplets = beir
    out = tmp_path / "out"
    mine_bm25_negatives.main(
        [
            "--data",
            str(data),
            "--depth",
            str(DEPTH),
            "--output-dir",
            str(out),
            "--selection-queries",
            "4",
            "--negatives-per-query",
            "3",
        ]
    )
    from lite_rerank.data import load_beir_rerank_set

    selection = load_beir_rerank_set(out / "selection", out / "selection" / "bm25.selection.trec", "selection")
    assert len(selection.queries) == 4 and set(selection.queries) <= set(train)
    for qid in selection.queries:
        assert selection.qrels[qid] == {f"d{qid[1:]}": 1}
        assert selection.candidates[qid] == [d for d, _ in naive_bm25_top(queries[qid], corpus, DEPTH)]
    rows = read_gz(out / "listwise.train.jsonl.gz")
    kept = [q for q in train if q not in selection.queries]
    assert [row["query"] for row in rows] == [queries[q] for q in kept]  # the shipped order, selection left out
    for q, row in zip(kept, rows):
        allowed = {corpus[d] for d, _ in naive_bm25_top(queries[q], corpus, DEPTH) if d != f"d{q[1:]}"}
        assert row["positive"] == corpus[f"d{q[1:]}"]
        assert len(row["negatives"]) == len(set(row["negatives"])) == 3 and set(row["negatives"]) <= allowed
    # the triplets of the first runs are unchanged by the new outputs
    again = tmp_path / "again"
    mine_bm25_negatives.main(["--data", str(data), "--depth", str(DEPTH), "--output-dir", str(again)])
    assert (again / "triplets.train.jsonl.gz").read_bytes() == (out / "triplets.train.jsonl.gz").read_bytes()
    with pytest.raises(SystemExit):
        mine_bm25_negatives.main(
            [
                "--data",
                str(data),
                "--depth",
                str(DEPTH),
                "--output-dir",
                str(tmp_path / "x"),
                "--negatives-per-query",
                str(DEPTH),
            ]
        )


def test_pseudo_query_candidates_are_the_naive_bm25_top_k_in_the_teachers_layout(beir, tmp_path):
    import pseudo_query_candidates

    data, corpus, _, _, _ = beir
    rng = random.Random(9)
    pseudo = [" ".join(rng.sample(VOCAB, 3)) for _ in range(7)]
    write_gz(tmp_path / "pseudo.jsonl.gz", [{"query": text, "source": "d0"} for text in pseudo])
    output = tmp_path / "out" / "candidates.jsonl.gz"
    pseudo_query_candidates.main(
        [
            "--data",
            str(data),
            "--pseudo-queries",
            str(tmp_path / "pseudo.jsonl.gz"),
            "--depth",
            "4",
            "--output",
            str(output),
        ]
    )
    rows, run = read_gz(output), read_trec_run(tmp_path / "out" / "candidates.trec")
    assert [row["query"] for row in rows] == pseudo
    for i, (text, row) in enumerate(zip(pseudo, rows)):
        expected = dict(naive_bm25_top(text, corpus, 4))  # ties may come in either order
        found = [d for d, _ in run[f"p{i}"]]
        assert set(found) == set(expected)
        assert [expected[d] for d in found] == pytest.approx(sorted(expected.values(), reverse=True), abs=1e-5)
        assert [row["positive"], *row["negatives"]] == [corpus[d] for d in found]


def test_pseudo_query_candidates_sample_is_nested_and_keeps_each_querys_line(beir, tmp_path):
    """A larger --sample starts with every row of a smaller one (so teacher_scores.py --reuse copies their scores),
    and each row's run id names its pseudo-query's line in the input."""
    import pseudo_query_candidates

    data = beir[0]
    rng = random.Random(4)
    pseudo = [" ".join(rng.sample(VOCAB, 3)) for _ in range(9)]
    write_gz(tmp_path / "pseudo.jsonl.gz", [{"query": text} for text in pseudo])

    def sample(size):
        output = tmp_path / str(size) / "candidates.jsonl.gz"
        common = ["--data", str(data), "--pseudo-queries", str(tmp_path / "pseudo.jsonl.gz"), "--depth", "3"]
        pseudo_query_candidates.main([*common, "--sample", str(size), "--output", str(output)])
        return read_gz(output), read_trec_run(output.with_name("candidates.trec"))

    (small, small_run), (large, _) = sample(4), sample(7)
    assert large[:4] == small and len(large) == 7 and len({row["query"] for row in large}) == 7
    assert {row["query"] for row in small} == {pseudo[int(qid[1:])] for qid in small_run}
    with pytest.raises(SystemExit, match="holds only 9"):
        sample(10)
