"""research/ensemble_teacher.py: the per-query standardised sum against a naive loop, the queries a member trained on
left out, and runs of another split refused."""

import doctest
import gzip
import json
import random
import statistics
import sys

import pytest
from product_fixtures import ROOT

pytestmark = pytest.mark.research

sys.path.insert(0, str(ROOT / "research"))
import ensemble_teacher  # noqa: E402


def write_run(path, run):
    with open(path, "w") as out:
        for qid, ranked in run.items():
            for rank, (doc, score) in enumerate(sorted(ranked, key=lambda x: -x[1]), 1):
                out.write(f"{qid} Q0 {doc} {rank} {score:.6f} x\n")


def naive_fused_order(members, qid):
    """Sum of z-scores (population standard deviation) over a query's candidates, by plain loops."""
    docs = sorted(members[0][qid])
    totals = {doc: 0.0 for doc in docs}
    for member in members:
        scores = [member[qid][doc] for doc in docs]
        mean, spread = statistics.fmean(scores), statistics.pstdev(scores)
        for doc, score in zip(docs, scores):
            totals[doc] += (score - mean) / spread
    return sorted(docs, key=lambda doc: -totals[doc])


@pytest.fixture
def split(tmp_path):
    rng = random.Random(3)
    queries = [f"q{i}" for i in range(40)]
    docs = [f"d{j}" for j in range(6)]
    teacher = {q: {d: rng.gauss(0, 3) for d in docs} for q in queries}
    student = {q: {d: rng.gauss(10, 0.2) for d in docs} for q in queries}  # another scale: z-scores matter
    for name, run in (("teacher", teacher), ("student", student)):
        write_run(tmp_path / f"{name}.trec", {q: list(s.items()) for q, s in run.items()})
    relevant = {q: rng.choice(docs) for q in queries}
    with open(tmp_path / "qrels.tsv", "w") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        out.writelines(f"{q}\t{d}\t1\n" for q, d in relevant.items())
    return tmp_path, teacher, student, relevant


def test_the_ensemble_is_the_naive_standardised_sum(split):
    folder, teacher, student, relevant = split
    assert doctest.testmod(ensemble_teacher).failed == 0
    report = ensemble_teacher.main(
        ["--qrels", str(folder / "qrels.tsv"), "--run", f"teacher={folder / 'teacher.trec'}"]
        + ["--run", f"student={folder / 'student.trec'}", "--permutations", "1000"]
    )
    expected = statistics.fmean(
        next((1 / rank for rank, d in enumerate(naive_fused_order([teacher, student], q), 1) if d == relevant[q]), 0)
        for q in relevant
    )
    row = report["table"]["teacher + student"]
    assert row["mrr@10"] == pytest.approx(expected, abs=1e-5)
    alone = statistics.fmean(
        1 / (sorted(teacher[q], key=lambda d: -teacher[q][d]).index(relevant[q]) + 1) for q in relevant
    )
    assert report["table"]["teacher"]["mrr@10"] == pytest.approx(alone, abs=1e-9)
    assert row["baseline_mrr@10"] == pytest.approx(alone, abs=1e-9)


def test_queries_a_member_trained_on_are_left_out(split):
    folder = split[0]
    with gzip.open(folder / "queries.jsonl.gz", "wt") as out:
        out.writelines(json.dumps({"_id": f"q{i}", "text": f"query text {i}"}) + "\n" for i in range(40))
    with gzip.open(folder / "train.jsonl.gz", "wt") as out:
        out.writelines(
            json.dumps({"query": f"query text {i}", "positive": "p", "negative": "n"}) + "\n" for i in (1, 5)
        )
        out.write(json.dumps({"query": "a training query of no split", "positive": "p", "negative": "n"}) + "\n")
    report = ensemble_teacher.main(
        ["--qrels", str(folder / "qrels.tsv"), "--run", f"teacher={folder / 'teacher.trec'}"]
        + ["--run", f"student={folder / 'student.trec'}", "--permutations", "100"]
        + ["--queries", str(folder / "queries.jsonl.gz"), "--exclude-training", str(folder / "train.jsonl.gz")]
    )
    assert report["queries"] == 38 and report["excluded_queries"] == 2


def test_a_run_of_another_split_is_refused(split):
    folder = split[0]
    write_run(folder / "other.trec", {"x1": [("d0", 1.0)]})
    with pytest.raises(SystemExit, match="student=.*other.trec: no candidates for 40 judged queries"):
        ensemble_teacher.main(
            ["--qrels", str(folder / "qrels.tsv"), "--run", f"teacher={folder / 'teacher.trec'}"]
            + ["--run", f"student={folder / 'other.trec'}"]
        )
