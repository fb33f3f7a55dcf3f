"""scripts/pack_supervision.py: teacher-scored rows packed for git (query texts, corpus line numbers, float16 scores)
and unpacked into the same rows."""

import gzip
import json
import sys

import pytest
import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import pack_supervision  # noqa: E402

from lite_rerank.utils import file_sha256  # noqa: E402

PASSAGES = [f"passage number {i} about tool {i % 3}" for i in range(8)] + ["passage number 1 about tool 1"]


def write_gz(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return path


@pytest.fixture
def scored(tmp_path):
    corpus = write_gz(tmp_path / "corpus.jsonl.gz", [{"_id": f"d{i}", "text": t} for i, t in enumerate(PASSAGES)])
    rows = [
        {
            "query": "grep für Wörter",
            "positive": PASSAGES[2],
            "negatives": [PASSAGES[5], PASSAGES[0], PASSAGES[7]],
            "teacher_positive": 7.123456,
            "teacher_negatives": [-3.5, 0.001, -9.87654],
        },
        {
            "query": "an image editor",
            "positive": PASSAGES[1],
            "negatives": [PASSAGES[4]],
            "teacher_positive": 1.5,
            "teacher_negatives": [2.25],
        },
    ]
    path = write_gz(tmp_path / "scored.train.jsonl.gz", rows)
    provenance = {"output_sha256": file_sha256(path), "teacher_weights_sha256": "ab" * 32}
    (tmp_path / "scored.train.provenance.json").write_text(json.dumps(provenance))
    return corpus, path, rows


def read(path):
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_unpacked_rows_are_the_packed_ones_with_float16_scores(tmp_path, scored):
    corpus, path, rows = scored
    prefix = tmp_path / "packed" / "real.top4"
    provenance = pack_supervision.main(
        ["pack", "--scored", str(path), "--corpus", str(corpus), "--output", str(prefix)]
    )
    assert provenance["rows"] == 2 and provenance["candidates_per_row"] == 4
    assert (
        provenance["scored_from"]["teacher_weights_sha256"] == "ab" * 32 and "pack --scored" in provenance["command"]
    )
    assert [r["query"] for r in read(tmp_path / "packed" / "real.top4.queries.jsonl.gz")] == [r["query"] for r in rows]
    out = tmp_path / "unpacked.jsonl.gz"
    pack_supervision.main(["unpack", "--packed", str(prefix), "--corpus", str(corpus), "--output", str(out)])
    for before, after in zip(rows, read(out), strict=True):
        assert {k: after[k] for k in ("query", "positive", "negatives")} == {
            k: before[k] for k in ("query", "positive", "negatives")
        }
        expected = [before["teacher_positive"], *before["teacher_negatives"]]
        got = [after["teacher_positive"], *after["teacher_negatives"]]
        assert got == pytest.approx(expected, abs=abs(max(expected, key=abs)) * 2**-10)


def test_bad_inputs_are_named_and_nothing_is_written(tmp_path, scored):
    corpus, path, rows = scored
    prefix = tmp_path / "packed" / "x"
    unknown = write_gz(tmp_path / "unknown.jsonl.gz", [rows[0], {**rows[1], "negatives": ["not in the corpus"]}])
    (tmp_path / "unknown.provenance.json").write_text(json.dumps({"output_sha256": file_sha256(unknown)}))
    with pytest.raises(SystemExit, match=r"unknown.jsonl.gz:2: passage not in .*'not in the corpus'"):
        pack_supervision.main(["pack", "--scored", str(unknown), "--corpus", str(corpus), "--output", str(prefix)])
    (tmp_path / "scored.train.provenance.json").write_text(json.dumps({"output_sha256": "0" * 64}))
    with pytest.raises(SystemExit, match="its content is not what scored.train.provenance.json records"):
        pack_supervision.main(["pack", "--scored", str(path), "--corpus", str(corpus), "--output", str(prefix)])
    assert not prefix.parent.exists()
    (tmp_path / "scored.train.provenance.json").write_text(json.dumps({"output_sha256": file_sha256(path)}))
    pack_supervision.main(["pack", "--scored", str(path), "--corpus", str(corpus), "--output", str(prefix)])
    other = write_gz(tmp_path / "other.jsonl.gz", [{"_id": "d0", "text": "another corpus"}])
    out = tmp_path / "out.jsonl.gz"
    with pytest.raises(SystemExit, match="not the corpus .* was packed against"):
        pack_supervision.main(["unpack", "--packed", str(prefix), "--corpus", str(other), "--output", str(out)])
    (tmp_path / "packed" / "x.safetensors").write_bytes(b"changed")
    with pytest.raises(SystemExit, match="x.safetensors: not the file x.provenance.json records"):
        pack_supervision.main(["unpack", "--packed", str(prefix), "--corpus", str(corpus), "--output", str(out)])
    assert not out.exists()


def test_the_committed_supervision_checks_out_and_its_pseudo_rows_are_the_seeded_sample():
    """data/debian-supervision: each set's files are those its provenance records, of one shape, by one teacher; the
    pseudo set's queries are the committed pseudo-queries in the order of pseudo_query_candidates.py --sample; the
    top-30 set extends the top-8 one (same rows, their shared pairs' scores reused); 25 MB at most."""
    from safetensors.torch import load_file

    from lite_rerank.utils import nested_sample

    folder = ROOT / "data" / "debian-supervision"
    prefixes = sorted({path.name.split(".provenance.json")[0] for path in folder.glob("*.provenance.json")})
    assert {"real.top8", "real.top30", "pseudo.top8"} <= set(prefixes)
    assert sum(path.stat().st_size for path in folder.iterdir()) <= 25 * 2**20
    teachers, tensors_of = set(), {}
    for prefix in prefixes:
        files = pack_supervision.files_of(folder / prefix)
        provenance = json.loads(files["provenance"].read_text())
        assert file_sha256(files["queries.jsonl.gz"]) == provenance["queries_sha256"]
        assert file_sha256(files["safetensors"]) == provenance["safetensors_sha256"]
        tensors = tensors_of[prefix] = load_file(str(files["safetensors"]))
        rows, width = provenance["rows"], provenance["candidates_per_row"]
        assert width == int(prefix.rpartition(".top")[2])
        assert tuple(tensors["candidates"].shape) == tuple(tensors["teacher_scores"].shape) == (rows, width)
        assert bool((tensors["candidates"] >= 0).all()) and bool(tensors["teacher_scores"].isfinite().all())
        teachers.add(provenance["scored_from"]["teacher_weights_sha256"])
        if prefix.startswith("pseudo"):
            with gzip.open(files["queries.jsonl.gz"], "rt", encoding="utf-8") as lines:
                packed = [json.loads(line)["query"] for line in lines]
            with gzip.open(ROOT / "data" / "debian-pseudo" / "pseudo-queries.train.jsonl.gz", "rt") as lines:
                pseudo = [json.loads(line)["query"] for line in lines]
            assert packed == [pseudo[i] for i in nested_sample(len(pseudo), rows)]
    assert len(teachers) == 1
    # Same rows, positive first; the 8's pairs are the 30's with the same scores (reused, not rescored), but where a
    # positive lies outside BM25's top 30 the 30 hold 29 of its 30 other passages, and the 8 may hold the one left out.
    top8, top30 = tensors_of["real.top8"], tensors_of["real.top30"]
    assert torch.equal(top8["candidates"][:, 0], top30["candidates"][:, 0])
    shared = top8["candidates"][:, :, None] == top30["candidates"][:, None, :]  # (rows, 8, 30)
    assert bool((shared.sum(2) <= 1).all()) and bool((shared.sum((1, 2)) >= 7).all())
    scores8 = top8["teacher_scores"][:, :, None].expand(-1, -1, 30)[shared]
    scores30 = top30["teacher_scores"][:, None, :].expand(-1, 8, -1)[shared]
    assert torch.equal(scores8, scores30)
