"""scripts/teacher_scores.py: a cross-encoder's scores of each row's positive and hard negatives, written once into a
training file (resumable, with provenance) that students then train on without the teacher."""

import gzip
import itertools
import json
import os
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
            "--dtype",
            "float32",  # as the reference below (auto is bf16 on a CPU with native bf16)
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


class Killed(Exception):
    """What a kill does to the scoring loop, as an exception the test can catch."""


def interrupted(monkeypatch, after_calls: int):
    """Make the teacher fail on its call number `after_calls + 1`, as a kill after that many parts would; returns
    the list of calls made."""
    calls, score = [], CrossEncoderScorer.score

    def failing(self, *args, **kwargs):
        calls.append(len(args[0]))
        if len(calls) > after_calls:
            raise Killed
        return score(self, *args, **kwargs)

    monkeypatch.setattr(CrossEncoderScorer, "score", failing)
    return calls


def test_an_interrupted_run_scores_only_the_missing_parts(tmp_path, teacher, listwise, monkeypatch):
    path, _ = listwise
    args = ["--teacher", str(teacher), "--train-data", str(path), "--part-rows", "4", "--no-progress"]
    teacher_scores.main([*args, "--output", str(tmp_path / "fresh.jsonl.gz")])
    resumed = tmp_path / "resumed.jsonl.gz"
    interrupted(monkeypatch, after_calls=2)
    with pytest.raises(Killed):
        teacher_scores.main([*args, "--output", str(resumed)])
    assert sorted(p.name for p in (tmp_path / "resumed.parts").glob("part-*")) == [
        "part-000000000-000000004.jsonl",
        "part-000000004-000000008.jsonl",
    ]
    monkeypatch.undo()
    calls = interrupted(monkeypatch, after_calls=10)
    teacher_scores.main([*args, "--output", str(resumed)])
    assert calls == [2 * 4]  # only rows 8-9 were scored, with their positive and negatives
    assert read(resumed) == read(tmp_path / "fresh.jsonl.gz")
    assert not (tmp_path / "resumed.parts").exists()


@pytest.mark.parametrize("first, second", [(4, 3), (3, 4)])
def test_s1_a_resume_with_other_part_settings_is_refused_and_the_output_stays_exact(
    tmp_path, teacher, listwise, monkeypatch, first, second
):
    """Issue 24, S1: killed after some parts of one size, rerun with another size: refused (it used to drop or
    duplicate rows and still write a provenance claiming every row); rerun as started, it completes exactly."""
    path, rows = listwise
    args = [
        "--teacher",
        str(teacher),
        "--train-data",
        str(path),
        "--no-progress",
        "--output",
        str(tmp_path / "o.jsonl.gz"),
    ]
    interrupted(monkeypatch, after_calls=2)
    with pytest.raises(Killed):
        teacher_scores.main([*args, "--part-rows", str(first)])
    monkeypatch.undo()
    with pytest.raises(
        SystemExit, match=rf"holds parts of another plan \(part_rows: {first} → {second}\).*--part-rows {first}"
    ):
        teacher_scores.main([*args, "--part-rows", str(second)])
    assert not (tmp_path / "o.jsonl.gz").exists() and not (tmp_path / "o.provenance.json").exists()
    provenance = teacher_scores.main([*args, "--part-rows", str(first)])
    assert [row["query"] for row in read(tmp_path / "o.jsonl.gz")] == [row["query"] for row in rows]
    assert provenance["rows"] == len(rows)


def test_s1_parts_of_an_older_layout_are_refused_not_joined(tmp_path, teacher, listwise):
    path, _ = listwise
    parts = tmp_path / "o.parts"
    parts.mkdir()
    (parts / "part-000000004.jsonl").write_text("{}\n")  # named without its row range
    with pytest.raises(SystemExit, match=r"holds files this plan does not write \(\['part-000000004.jsonl'\]\)"):
        teacher_scores.main(
            ["--teacher", str(teacher), "--train-data", str(path), "--output", str(tmp_path / "o.jsonl.gz")]
        )
    assert (parts / "part-000000004.jsonl").read_text() == "{}\n"


def test_s13_one_scoring_run_per_output_at_a_time(tmp_path, teacher, listwise):
    from lite_rerank.locking import FolderLock

    path, _ = listwise
    with FolderLock(tmp_path / "o.parts", "teacher scoring"):  # another run holds the parts
        with pytest.raises(SystemExit, match=rf"o.parts is in use by another teacher scoring \(process {os.getpid()}"):
            teacher_scores.main(
                ["--teacher", str(teacher), "--train-data", str(path), "--output", str(tmp_path / "o.jsonl.gz")]
            )
    assert not (tmp_path / "o.jsonl.gz").exists()


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


@pytest.mark.slow
def test_two_processes_share_the_parts_and_write_what_one_process_writes(tmp_path, teacher, listwise):
    path, rows = listwise
    common = [
        "--teacher",
        str(teacher),
        "--train-data",
        str(path),
        "--part-rows",
        "3",
        "--dtype",
        "float32",
        "--no-progress",
        "--threads",
        "1",
    ]
    run_script("scripts/teacher_scores.py", [*common, "--output", str(tmp_path / "one.jsonl.gz")])
    result = run_script(
        "scripts/teacher_scores.py", [*common, "--output", str(tmp_path / "two.jsonl.gz")], processes=2
    )
    assert (tmp_path / "two.jsonl.gz").read_bytes() == (tmp_path / "one.jsonl.gz").read_bytes()
    assert json.loads((tmp_path / "two.provenance.json").read_text())["processes"] == 2
    assert result.stdout.count("rows with teacher scores") == 1 and not (tmp_path / "two.parts").exists()


@pytest.mark.slow
def test_an_int8_teacher_scores_close_to_the_float32_one_and_is_recorded(tmp_path, teacher, listwise, minilm_path):
    import numpy as np
    import torch

    from lite_rerank.cross_encoder import new_cross_encoder

    path, rows = listwise
    queries = [row["query"] for row in rows for _ in range(4)]
    passages = [text for row in rows for text in (row["positive"], *row["negatives"])]
    torch.manual_seed(0)  # real MiniLM features under a random head: scores that vary as a teacher's do
    model, tokenizer = new_cross_encoder(str(minilm_path), 230)
    model.save_pretrained(tmp_path / "minilm-ce")
    tokenizer.save_pretrained(tmp_path / "minilm-ce")
    full = CrossEncoderScorer.from_pretrained(tmp_path / "minilm-ce", "cpu", torch.float32)
    int8 = CrossEncoderScorer.from_pretrained(tmp_path / "minilm-ce", "cpu", torch.float32, int8=True)
    assert any("quantized" in type(module).__module__ for module in int8.model.modules())
    a, b = np.array(full.score(queries, passages)), np.array(int8.score(queries, passages))
    ranks = [np.argsort(np.argsort(x)) for x in (a, b)]
    # a random head's scores spread little, so quantisation noise shows; the trained teacher's agreement is measured
    # by benchmarks/teacher_speed.py
    assert np.isfinite(b).all() and np.corrcoef(*ranks)[0, 1] > 0.8
    with pytest.raises(ValueError, match="from a float32 model"):
        CrossEncoderScorer.from_pretrained(teacher, "cpu", torch.bfloat16, int8=True)
    args = ["--teacher", str(teacher), "--train-data", str(path), "--no-progress", "--dtype", "float32", "--int8"]
    provenance = teacher_scores.main([*args, "--output", str(tmp_path / "int8.jsonl.gz")])
    assert provenance["int8_linear_layers"] is True


def test_max_length_cuts_the_pairs_as_asked_and_is_recorded(tmp_path, teacher, listwise):
    path, rows = listwise
    args = ["--teacher", str(teacher), "--train-data", str(path), "--no-progress", "--dtype", "float32"]
    provenance = teacher_scores.main([*args, "--max-length", "12", "--output", str(tmp_path / "short.jsonl.gz")])
    assert provenance["max_length"] == 12
    scorer = CrossEncoderScorer.from_pretrained(teacher)
    scorer.max_length = 12
    first = read(tmp_path / "short.jsonl.gz")[0]
    expected = scorer.score([rows[0]["query"]] * 4, [rows[0]["positive"], *rows[0]["negatives"]])
    assert [first["teacher_positive"], *first["teacher_negatives"]] == pytest.approx(expected, abs=1e-5)


def test_reuse_scores_only_the_pairs_an_earlier_output_lacks(tmp_path, teacher, listwise, monkeypatch):
    """Top 8 first, top 30 later: the second run copies the first run's scores and scores only the new pairs."""
    path, rows = listwise
    args = ["--teacher", str(teacher), "--train-data", str(path), "--no-progress", "--dtype", "float32"]
    first = tmp_path / "top2.jsonl.gz"
    teacher_scores.main([*args, "--hard-negatives", "1", "--output", str(first)])
    scored_pairs = []
    score = CrossEncoderScorer.score

    def counting(self, queries, passages, *rest, **kwargs):
        scored_pairs.extend(zip(queries, passages))
        return score(self, queries, passages, *rest, **kwargs)

    monkeypatch.setattr(CrossEncoderScorer, "score", counting)
    provenance = teacher_scores.main([*args, "--reuse", str(first), "--output", str(tmp_path / "all.jsonl.gz")])
    assert sorted(scored_pairs) == sorted((row["query"], doc) for row in rows for doc in row["negatives"][1:])
    assert provenance["reused"]["path"] == str(first) and len(provenance["reused"]["sha256"]) == 64
    monkeypatch.setattr(CrossEncoderScorer, "score", score)
    fresh = teacher_scores.main([*args, "--output", str(tmp_path / "fresh.jsonl.gz")])
    assert fresh["reused"] is None
    old, extended, reference = (read(tmp_path / name) for name in ("top2.jsonl.gz", "all.jsonl.gz", "fresh.jsonl.gz"))
    for before, after, alone in zip(old, extended, reference):
        assert after["negatives"] == alone["negatives"] and len(after["teacher_negatives"]) == 3
        # the reused pairs are copied exactly; the new ones are what a run from scratch gives
        assert after["teacher_positive"] == before["teacher_positive"]
        assert after["teacher_negatives"][:1] == before["teacher_negatives"]
        assert [after["teacher_positive"], *after["teacher_negatives"]] == pytest.approx(
            [alone["teacher_positive"], *alone["teacher_negatives"]], abs=1e-5
        )


def test_reuse_of_a_smaller_pool_copies_whole_parts_without_running_the_teacher(
    tmp_path, teacher, listwise, monkeypatch
):
    """The pool grows (pseudo_query_candidates.py --sample 41329, then 82658: the larger starts with the smaller's
    rows): parts whose every pair was scored before are written with nothing scored (the empty batch crashed the
    tokenizer), the rest scored."""
    path, rows = listwise
    args = ["--no-progress", "--dtype", "float32", "--part-rows", "4", "--hard-negatives", "1"]
    smaller = write_jsonl(tmp_path / "first4.jsonl", rows[:4])
    first = tmp_path / "first4.scored.jsonl.gz"
    teacher_scores.main(["--teacher", str(teacher), "--train-data", str(smaller), *args, "--output", str(first)])
    calls = []
    score = CrossEncoderScorer.score

    def counting(self, queries, passages, *rest, **kwargs):
        calls.append(len(queries))
        return score(self, queries, passages, *rest, **kwargs)

    monkeypatch.setattr(CrossEncoderScorer, "score", counting)
    grown = tmp_path / "all.scored.jsonl.gz"
    teacher_scores.main(
        ["--teacher", str(teacher), "--train-data", str(path), *args, "--reuse", str(first)] + ["--output", str(grown)]
    )
    assert sorted(n for n in calls if n) == [2 * 2, 4 * 2]  # rows 4-7 and 8-9, two pairs each; rows 0-3 copied
    assert read(grown)[:4] == read(first)


def test_reuse_of_another_teachers_or_forms_scores_is_refused(tmp_path, teacher, listwise):
    path, rows = listwise
    args = ["--teacher", str(teacher), "--train-data", str(path), "--no-progress"]
    first = tmp_path / "top2.jsonl.gz"
    teacher_scores.main([*args, "--dtype", "float32", "--hard-negatives", "1", "--output", str(first)])
    target = str(tmp_path / "all.jsonl.gz")
    with pytest.raises(SystemExit, match=r"--reuse .*top2.jsonl.gz: not scored by this teacher in this form \(int8"):
        teacher_scores.main([*args, "--dtype", "float32", "--int8", "--reuse", str(first), "--output", target])
    with pytest.raises(SystemExit, match=r"max_length: \d+ there, 8 here"):
        teacher_scores.main(
            [*args, "--dtype", "float32", "--max-length", "8", "--reuse", str(first), "--output", target]
        )
    with pytest.raises(
        SystemExit, match=r"--output would write .*top2.jsonl.gz, which is an input of this run \(--reuse\)"
    ):
        teacher_scores.main([*args, "--dtype", "float32", "--reuse", str(first), "--output", str(first)])
    with gzip.open(first, "at") as out:  # changed after its provenance was written
        out.write(json.dumps(rows[0]) + "\n")
    with pytest.raises(SystemExit, match="not what top2.provenance.json records"):
        teacher_scores.main([*args, "--dtype", "float32", "--reuse", str(first), "--output", target])
    assert not (tmp_path / "all.jsonl.gz").exists() and not (tmp_path / "all.parts").exists()
