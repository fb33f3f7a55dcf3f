"""research/paired_test.py's command line: systems named NAME=RUN or by their path, each compared once."""

import sys

import pytest
from product_fixtures import ROOT
from run_files import write_ranked_run

pytestmark = pytest.mark.research

sys.path.insert(0, str(ROOT / "research"))
import paired_test  # noqa: E402


def test_named_and_bare_systems_against_the_baseline(tmp_path):
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tgood\t1\nq2\tgood\t1\n")
    baseline = write_ranked_run(tmp_path / "base.trec", {"q1": ["bad", "good"], "q2": ["bad", "good"]})  # RR 1/2, 1/2
    better = write_ranked_run(tmp_path / "run=better.trec", {"q1": ["good", "bad"], "q2": ["good", "bad"]})  # RR 1, 1
    args = ["--qrels", str(tmp_path / "qrels.tsv"), "--baseline", baseline, "--permutations", "1000"]
    results = paired_test.main([*args, "--system", f"top={better}", "--system", baseline])
    assert list(results) == ["top", baseline]  # split at the first "=": the path may hold one, the name may not
    assert (results["top"]["wins"], results["top"]["losses"]) == (2, 0)
    assert results["top"]["difference"] == pytest.approx(0.5)
    assert results[baseline]["difference"] == 0


def test_a_name_given_twice_is_refused(tmp_path, capsys):
    """The second system of a name used to replace the first one's result in the returned table."""
    with pytest.raises(SystemExit):
        paired_test.main(
            ["--qrels", "q.tsv", "--baseline", "b.trec", "--system", "LITE=a.trec", "--system", "LITE=c.trec"]
        )
    assert "the name 'LITE' is given twice" in capsys.readouterr().err
