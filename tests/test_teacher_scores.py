"""scripts/teacher_scores.py: a cross-encoder's scores of each row's positive and hard negatives, written once into a
training file (resumable, with provenance) that students then train on without the teacher."""

import gzip
import itertools
import json
import sys

import pytest
from conftest import DOCUMENTS, QUERIES, ROOT, run_script, write_jsonl

sys.path.insert(0, str(ROOT / "scripts"))
import teacher_scores  # noqa: E402

from lite_rerank.cross_encoder import CrossEncoderScorer  # noqa: E402


@pytest.fixture(scope="module")
def teacher(tiny_cross_encoder_dir):
    return tiny_cross_encoder_dir


@pytest.fixture
def listwise(tmp_path):
    rows = [
        {
            "query": f"{q} {i}",
            "positive": DOCUMENTS[(i + k) % 4],
            "negatives": [DOCUMENTS[(i + k + j) % 4] for j in (1, 2, 3)],
        }
        for i, (k, q) in enumerate(itertools.islice(itertools.cycle(enumerate(QUERIES)), 10))
    ]
    return write_jsonl(tmp_path / "listwise.jsonl", rows), rows


def read(path):
    with gzip.open(path, "rt") as lines:
        return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_scores_are_the_teachers_and_a_student_trains_on_them_without_it(
    tmp_path, teacher, listwise, tiny_encoder_dir
):
    path, rows = listwise
    output = tmp_path / "scored.jsonl.gz"
    teacher_scores.main(
        [
            "--teacher",
            str(teacher),
            "--train-data",
            str(path),
            "--hard-negatives",
            "2",
            "--output",
            str(output),
            "--part-rows",
            "4",
            "--no-progress",
        ]
    )
    scored = read(output)
    assert [row["query"] for row in scored] == [row["query"] for row in rows]
    reference = CrossEncoderScorer.from_pretrained(teacher)
    for row, out in zip(rows, scored):
        expected = reference.score([row["query"]] * 3, [row["positive"], *row["negatives"][:2]])
        assert [out["teacher_positive"], *out["teacher_negatives"]] == pytest.approx(expected, abs=1e-5)
        assert out["negatives"] == row["negatives"][:2]
    provenance = json.loads((tmp_path / "scored.provenance.json").read_text())
    assert provenance["rows"] == 10 and provenance["teacher"] == str(teacher) and len(provenance["sha256"]) == 64
    assert "scripts/teacher_scores.py" in provenance["command"] and not (tmp_path / "scored.parts").exists()
    student = tmp_path / "student"
    run_script(
        "train_accelerate.py",
        [
            "--encoder",
            tiny_encoder_dir,
            "--train-data",
            output,
            "--loss",
            "kl",
            "--hard-negatives",
            "2",
            "--batch-size",
            "4",
            "--max-steps",
            "2",
            "--output-dir",
            student,
            "--mixed-precision",
            "no",
            "--num-workers",
            "0",
            "--query-max-length",
            "8",
            "--doc-max-length",
            "24",
            "--row-hidden-size",
            "48",
            "--col-hidden-size",
            "16",
        ],
    )
    assert (student / "best" / "model.safetensors").is_file() and not (student / "teacher-cache").exists()


def test_an_interrupted_run_scores_only_the_missing_parts(tmp_path, teacher, listwise):
    path, _ = listwise
    fresh = tmp_path / "fresh.jsonl.gz"
    args = ["--teacher", str(teacher), "--train-data", str(path), "--part-rows", "4", "--no-progress"]
    teacher_scores.main([*args, "--output", str(fresh)])
    resumed = tmp_path / "resumed.jsonl.gz"
    parts = tmp_path / "resumed.parts"
    parts.mkdir()
    source = {
        "train_data": str(path),
        "sha256": teacher_scores.file_sha256(path),
        "hard_negatives": None,
        "teacher": str(teacher),
        "teacher_weights_sha256": teacher_scores.file_sha256(teacher / "model.safetensors"),
    }
    (parts / "meta.json").write_text(json.dumps(source))
    sentinel = (
        json.dumps(
            {"query": "kept", "positive": "p", "negatives": ["n"], "teacher_positive": 9.0, "teacher_negatives": [1.0]}
        )
        + "\n"
    )
    (parts / "part-000000004.jsonl").write_text(sentinel * 4)  # a part finished before the interruption
    teacher_scores.main([*args, "--output", str(resumed)])
    rows = read(resumed)
    assert [row["query"] for row in rows[4:8]] == ["kept"] * 4  # not scored again
    assert rows[:4] == read(fresh)[:4] and rows[8:] == read(fresh)[8:]


def test_bad_inputs_are_named(tmp_path, teacher):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query": "q", "positive": "p", "negatives": ["n"]}])
    with pytest.raises(SystemExit, match=r"bad.jsonl:1: field 'negatives' must be a list of at least 2"):
        teacher_scores.main(
            [
                "--teacher",
                str(teacher),
                "--train-data",
                str(bad),
                "--hard-negatives",
                "2",
                "--output",
                str(tmp_path / "o.jsonl.gz"),
            ]
        )
    with pytest.raises(SystemExit, match="--teacher .*nowhere: cannot load it"):
        teacher_scores.main(
            [
                "--teacher",
                str(tmp_path / "nowhere"),
                "--train-data",
                str(bad),
                "--output",
                str(tmp_path / "o.jsonl.gz"),
            ]
        )
