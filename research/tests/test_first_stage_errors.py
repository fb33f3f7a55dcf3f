"""research/first_stage_errors.py on hand-built runs whose answers follow from their construction."""

import sys

import pytest
from product_fixtures import ROOT
from run_files import write_ranked_run

pytestmark = pytest.mark.research

sys.path.insert(0, str(ROOT / "research"))
import first_stage_errors  # noqa: E402


def test_wrong_top1_counted_by_its_first_stage_rank(tmp_path):
    first = {f"q{i}": [f"q{i}d{r}" for r in range(1, 7)] for i in range(5)}  # six candidates each
    relevant = {
        "q0": "q0d1",
        "q1": "q1d2",
        "q2": "q2d5",
        "q3": "q3d4",
        "q4": "elsewhere",
    }  # q4: relevant not a candidate
    (tmp_path / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in relevant.items())
    )
    rerank = {
        "q0": ["q0d1", *first["q0"][1:]],  # right
        "q1": ["q1d1", "q1d2", *first["q1"][2:]],  # wrong, its top-1 has first-stage rank 1
        "q2": ["q2d6", "q2d5", *first["q2"][:4]],  # wrong, rank 6
        "q3": ["q3d3", "q3d4", "q3d1", "q3d2", "q3d5", "q3d6"],  # wrong, rank 3 (= split: the high band)
        "q4": first["q4"],  # not counted at all
    }
    report = first_stage_errors.main(
        [
            "--qrels",
            str(tmp_path / "qrels.tsv"),
            "--first-stage",
            write_ranked_run(tmp_path / "first.trec", first),
            "--run",
            f"model={write_ranked_run(tmp_path / 'model.trec', rerank)}",
            "--run",
            f"first={tmp_path / 'first.trec'}",
            "--split",
            "3",
        ]
    )
    assert report["model"] == {
        "queries": 4,
        "wrong top-1 from first-stage ranks 1-3": 2,
        "wrong top-1 from first-stage ranks 4+": 1,
    }
    # The first stage itself is wrong where the relevant passage is not its rank 1, always from its own top band.
    assert report["first"] == {
        "queries": 4,
        "wrong top-1 from first-stage ranks 1-3": 3,
        "wrong top-1 from first-stage ranks 4+": 0,
    }


@pytest.mark.parametrize("spec", ["model=b.trec", "b.trec", "=b.trec", "model="])
def test_a_run_without_a_name_or_path_or_named_twice_is_refused_before_any_reading(tmp_path, spec, capsys):
    """A second --run with the same name used to overwrite the first one's row of the report without a word."""
    with pytest.raises(SystemExit):
        first_stage_errors.main(
            ["--qrels", "missing.tsv", "--first-stage", "missing.trec", "--run", "model=a.trec", "--run", spec]
        )
    message = capsys.readouterr().err
    assert f"--run {spec!r}" in message
    assert ("given twice" if spec == "model=b.trec" else "expected NAME=PATH") in message
