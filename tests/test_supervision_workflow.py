"""scripts/supervision_workflow.py end to end on a generated BEIR folder with a tiny encoder: candidates → the packed
supervision → the students (issue 34's residual ones too), each evaluated on dev once → paired tests; a rerun skips
what is done."""

import gzip
import json
import subprocess
import sys

import pytest
from conftest import ROOT
from test_mine_bm25_negatives import DEPTH, beir  # noqa: F401 (fixture)

sys.path.insert(0, str(ROOT / "scripts"))
import mine_bm25_negatives  # noqa: E402
import pack_supervision  # noqa: E402
import supervision_workflow  # noqa: E402

from lite_rerank.data import read_qrels, read_trec_run  # noqa: E402
from lite_rerank.significance import compare, reciprocal_ranks  # noqa: E402
from lite_rerank.utils import file_sha256  # noqa: E402


def packed_supervision(data, tmp_path):
    """Listwise rows of the training queries outside a 4-query selection split, with made-up teacher scores, packed
    as data/debian-supervision is."""
    mined = tmp_path / "mined"
    mine_bm25_negatives.main(
        ["--data", str(data), "--depth", str(DEPTH), "--output-dir", str(mined)]
        + ["--selection-queries", "4", "--negatives-per-query", "3"]
    )
    scored = tmp_path / "scored.train.jsonl.gz"
    with gzip.open(mined / "listwise.train.jsonl.gz", "rt") as rows, gzip.open(scored, "wt") as out:
        for line in rows:
            row = json.loads(line)
            row |= {"teacher_positive": 4.0, "teacher_negatives": [1.0, -1.0, -2.5]}
            out.write(json.dumps(row) + "\n")
    (tmp_path / "scored.train.provenance.json").write_text(json.dumps({"output_sha256": file_sha256(scored)}))
    prefix = tmp_path / "supervision" / "real.top8"
    pack_supervision.main(
        ["pack", "--scored", str(scored), "--corpus", str(data / "corpus.jsonl.gz")] + ["--output", str(prefix)]
    )
    return prefix.parent


@pytest.mark.slow
def test_the_workflow_runs_end_to_end_and_a_rerun_skips_what_is_done(beir, tmp_path, tiny_encoder_dir, capfd):  # noqa: F811
    data = beir[0]
    dev = [f"q{i}" for i in range(16, 24)]
    (data / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\td{q[1:]}\t1\n" for q in dev)
    )
    supervision = packed_supervision(data, tmp_path)
    out = tmp_path / "workflow"
    argv = ["--output-dir", str(out), "--data", str(data), "--supervision", str(supervision)]
    argv += ["--selection-queries", "4", "--depth", str(DEPTH), "--max-steps", "2", "--encoder", str(tiny_encoder_dir)]
    argv += ["--threads", "1", "--batch-size", "4"]
    # Small-LITE fails (a PCA start wider than the tiny encoder's 32): the students before it are reported already
    with pytest.raises(subprocess.CalledProcessError):
        supervision_workflow.main(argv + ["--projection-dim", "64"])
    early = json.loads((out / "report.json").read_text())["students"]
    assert set(early) == {"LITE", "MaxSim"} and early["LITE"]["vs_maxsim"]["queries"] == len(dev)
    assert not (out / "dev" / "small-lite.json").exists()
    # issue 34's students join: the residual and its Small-LITE (the same projection flags as Small-LITE's)
    argv += ["--projection-dim", "16", "--students", "LITE", "MaxSim", "Small-LITE", "Residual", "Small-Residual"]
    capfd.readouterr()
    tests = supervision_workflow.main(argv)
    printed = capfd.readouterr().out
    assert "=== evaluation LITE: skipped" in printed and "=== evaluation MaxSim: skipped" in printed, printed
    students = ("LITE", "MaxSim", "Small-LITE", "Residual", "Small-Residual")
    results = {name: json.loads((out / "dev" / f"{name.lower()}.json").read_text()) for name in students}
    for name in students:
        assert set(results[name]["models"]) == {"first-stage", name}
        summary = json.loads((out / name.lower() / "best" / "training_summary.json").read_text())
        # a residual student's step 0 (MaxSim on its encoder) is a candidate for the kept step
        assert summary["step"] in ({0, 2} if name.endswith("Residual") else {2})
        assert summary["args"]["train_data"] == str(out / "supervision.train.jsonl.gz")
        weights = file_sha256(out / name.lower() / "best" / "model.safetensors")
        assert results[name]["model_files"][name]["weights_sha256"] == weights
    for small, scorer in (("small-lite", "lite"), ("small-residual", "residual")):
        config = json.loads((out / small / "best" / "config.json").read_text())
        assert (config["projection_dim"], config["scorer"]) == (16, scorer)
    # the paired tests, recomputed from the TREC runs read back
    qrels = read_qrels(data / "qrels" / "dev.tsv")
    rr = {n: reciprocal_ranks(read_trec_run(out / "dev" / f"{n.lower()}.{n}.trec"), qrels) for n in students}
    assert tests["vs_maxsim"] == {n: compare(rr["MaxSim"], rr[n]) for n in students if n != "MaxSim"}
    assert tests["vs_full_size"] == {
        "Small-LITE": compare(rr["LITE"], rr["Small-LITE"]),
        "Small-Residual": compare(rr["Residual"], rr["Small-Residual"]),
    }
    assert json.loads((out / "paired-tests.json").read_text()) == tests
    report = json.loads((out / "report.json").read_text())["students"]
    for name in students:
        logged = [json.loads(line) for line in (out / name.lower() / "metrics.jsonl").read_text().splitlines()]
        assert report[name]["selection_mrr@10_by_step"] == {
            str(r["step"]): r["dev_mrr@10"] for r in logged if "dev_mrr@10" in r
        }
        assert report[name]["selection_mrr@10_by_step"], "the students evaluate on the selection split at the end"
        assert report[name]["dev"]["mrr@10"] == results[name]["models"][name]["mrr@10"]
        assert report[name]["vs_maxsim"] == tests["vs_maxsim"].get(name)
        assert report[name]["vs_full_size"] == tests["vs_full_size"].get(name)
    assert report["LITE"] == early["LITE"], "the first run's LITE row stands"
    again = supervision_workflow.main(argv)
    printed = capfd.readouterr().out
    for stage in ("candidates", "supervision", *(f"evaluation {name}" for name in students)):
        assert f"=== {stage}: skipped" in printed, printed
    assert again == tests


def test_the_report_gathers_each_students_selection_curve_kept_step_dev_metrics_and_paired_test(tmp_path, capsys):
    out = tmp_path / "workflow"
    curves = {"LITE": [(250, 0.61), (500, 0.65), (500, 0.66), (750, 0.64)], "MaxSim": [(250, 0.70), (500, 0.71)]}
    for name, curve in curves.items():
        best = out / name.lower() / "best"
        best.mkdir(parents=True)
        # a resumed run logs step 500 twice: the later record is what its checkpoints hold
        records = [{"step": 0, "event": "start"}] + [{"step": s, "dev_mrr@10": m} for s, m in curve]
        records.insert(2, {"step": 260, "epoch": 0, "loss": 0.3})
        (out / name.lower() / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (best / "training_summary.json").write_text(json.dumps({"step": max(curve, key=lambda c: c[1])[0]}))
    evaluated = {}
    for name, dev in {
        "LITE": {"mrr@10": 0.72, "ndcg@10": 0.75, "recall@10": 0.86, "num_queries": 920},
        "MaxSim": {"mrr@10": 0.74, "ndcg@10": 0.77, "recall@10": 0.87, "num_queries": 920},
    }.items():
        models = {"first-stage": {"mrr@10": 0.5, "ndcg@10": 0.55, "recall@10": 0.8}, name: dev}
        evaluated[name] = out / "dev" / f"{name.lower()}.json"
        evaluated[name].parent.mkdir(exist_ok=True)
        evaluated[name].write_text(json.dumps({"models": models, "protocol": "rerank bm25.dev.trec (dev)"}))
    test = {"difference": -0.02, "wins": 10, "losses": 20, "p_value": 0.04}
    record = supervision_workflow.report(out, evaluated, {"vs_maxsim": {"LITE": test}, "vs_full_size": {}})
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(record))
    lite, maxsim = record["students"]["LITE"], record["students"]["MaxSim"]
    assert lite["selection_mrr@10_by_step"] == {250: 0.61, 500: 0.66, 750: 0.64}
    assert (lite["kept_step"], maxsim["kept_step"]) == (500, 500)
    assert lite["dev"] == {"mrr@10": 0.72, "ndcg@10": 0.75, "recall@10": 0.86}
    assert (lite["vs_maxsim"], maxsim["vs_maxsim"]) == (test, None)
    printed = capsys.readouterr().out
    assert (
        "| LITE | 250: 0.6100 / 500: 0.6600 / 750: 0.6400 (500) | 0.7200 | 0.7500 | -0.0200, 10 / 20, p = 0.04 |  |"
        in printed
    )


@pytest.mark.parametrize(
    "precision, train_flags, eval_flags",
    [("auto", [], []), ("bf16", ["--mixed-precision", "bf16"], ["--dtype", "bfloat16"])],
)
def test_precision_reaches_the_students_training_and_their_dev_evaluation(
    monkeypatch, tmp_path, precision, train_flags, eval_flags
):
    commands = []
    monkeypatch.setattr(supervision_workflow, "run", lambda stage, command: commands.append(command))
    monkeypatch.setattr(supervision_workflow, "candidates_stage", lambda args, out: out / "selection")
    monkeypatch.setattr(supervision_workflow, "supervision_stage", lambda args, out: out / "rows.jsonl.gz")
    monkeypatch.setattr(supervision_workflow, "file_sha256", lambda path: "no weights yet")
    monkeypatch.setattr(supervision_workflow, "paired_tests", lambda *args: {})
    monkeypatch.setattr(supervision_workflow, "report", lambda *args: {})
    argv = ["--output-dir", str(tmp_path), "--encoder", "enc", "--students", "MaxSim", "--precision", precision]
    supervision_workflow.main(argv)
    train, evaluate = commands
    assert train[0] == "train_accelerate.py" and evaluate[0] == "eval_rerank.py"

    def flags(command, names):
        return [part for i, part in enumerate(command) if part in names or (i and command[i - 1] in names)]

    assert flags(train, {"--mixed-precision"}) == train_flags
    assert flags(evaluate, {"--dtype"}) == eval_flags


@pytest.mark.parametrize("patience, train_flags", [(None, []), ("0", ["--patience", "0"]), ("6", ["--patience", "6"])])
def test_patience_reaches_the_students_training(monkeypatch, tmp_path, patience, train_flags):
    """Issue 56: a baseline student trains through its LITE counterpart's whole budget with --patience 0."""
    commands = []
    monkeypatch.setattr(supervision_workflow, "run", lambda stage, command: commands.append(command))
    monkeypatch.setattr(supervision_workflow, "candidates_stage", lambda args, out: out / "selection")
    monkeypatch.setattr(supervision_workflow, "supervision_stage", lambda args, out: out / "rows.jsonl.gz")
    monkeypatch.setattr(supervision_workflow, "file_sha256", lambda path: "no weights yet")
    monkeypatch.setattr(supervision_workflow, "paired_tests", lambda *args: {})
    monkeypatch.setattr(supervision_workflow, "report", lambda *args: {})
    argv = ["--output-dir", str(tmp_path), "--encoder", "enc", "--students", "MaxSim"]
    supervision_workflow.main(argv + (["--patience", patience] if patience else []))
    train = commands[0]
    assert [
        part for i, part in enumerate(train) if part == "--patience" or train[i - 1] == "--patience"
    ] == train_flags
