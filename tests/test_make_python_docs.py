"""scripts/make_python_docs.py (issue 56's out-of-domain set): a BEIR folder where every query has exactly its own
passage as the answer, BM25 candidates made with the project's BM25, and — on the Python release it was built with —
exactly the committed data/python-docs."""

import gzip
import json
import sys

import pytest
from conftest import ROOT

from lite_rerank.data import read_qrels, read_trec_run
from lite_rerank.utils import file_sha256

sys.path.insert(0, str(ROOT / "scripts"))
import make_python_docs  # noqa: E402

COMMITTED = ROOT / "data" / "python-docs"


def rows(path):
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_the_set_is_built_from_the_standard_library_and_rebuilds_the_committed_one(tmp_path):
    provenance = make_python_docs.main(["--output-dir", str(tmp_path / "set")])
    folder = tmp_path / "set"
    queries, corpus = rows(folder / "queries.jsonl.gz"), rows(folder / "corpus.jsonl.gz")
    qrels = read_qrels(folder / "qrels" / "test.tsv")
    assert len(queries) == len(corpus) == len(qrels) == provenance["queries"] > 500
    assert all(qrels[q["_id"]] == {"d:" + q["_id"][2:]: 1} for q in queries)  # one answer each: its own body
    assert len({q["text"] for q in queries}) == len(queries) and len({d["text"] for d in corpus}) == len(corpus)
    assert all(len(q["text"].split()) >= 4 and not make_python_docs.SIGNATURE.match(q["text"]) for q in queries)
    run = read_trec_run(folder / "runs" / "bm25.test.trec")
    assert set(run) == set(qrels) and all(len(hits) == 30 for hits in run.values())
    assert provenance["files_sha256"] == {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in folder.rglob("*")
        if path.is_file() and path.name != "provenance.json"
    }
    committed = json.loads((COMMITTED / "provenance.json").read_text())
    if committed["python"] == provenance["python"]:  # the same release: the same files, byte for byte
        assert committed["files_sha256"] == provenance["files_sha256"]
    else:  # another release documents other objects: the committed set is still whole
        assert all(file_sha256(COMMITTED / name) == sha for name, sha in committed["files_sha256"].items())
    with pytest.raises(SystemExit, match="is not an empty folder"):
        make_python_docs.main(["--output-dir", str(folder)])


def test_the_committed_set_matches_its_provenance():
    committed = json.loads((COMMITTED / "provenance.json").read_text())
    assert all(file_sha256(COMMITTED / name) == sha for name, sha in committed["files_sha256"].items())
    assert len(read_qrels(COMMITTED / "qrels" / "test.tsv")) == committed["queries"]
