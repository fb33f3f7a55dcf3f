"""scripts/ship_model.py (issue 56): a trained student becomes models/NAME — a Hub folder with float16 weights that
loads and computes in float32, its provenance and its dev run — on a tiny run trained here; the inputs are checked
before anything is written."""

import gzip
import json
import shutil
import sys

import pytest
import torch
from conftest import ROOT, run_script, write_jsonl
from safetensors import safe_open

from lite_rerank.data import read_trec_run
from lite_rerank.significance import compare, reciprocal_ranks
from modeling_lite import LiteModel

sys.path.insert(0, str(ROOT / "scripts"))
import ship_model  # noqa: E402

SCORER = ["--row-hidden-size", "48", "--col-hidden-size", "16", "--query-max-length", "16", "--doc-max-length", "32"]


@pytest.fixture(scope="module")
def student(tmp_path_factory, tiny_encoder_dir):
    """A tiny residual student trained with dev selection on a BEIR fixture, and its float32 dev results."""
    from conftest import DOCUMENTS, QUERIES, write_beir_fixture

    work = tmp_path_factory.mktemp("student")
    beir = write_beir_fixture(work / "beir")
    rows = [
        {"query": f"{QUERIES[i % 3]} {i}", "positive": DOCUMENTS[i % 4], "negative": DOCUMENTS[(i + 1) % 4],
         "teacher_positive": 3.0 + i % 2, "teacher_negative": -1.0}
        for i in range(16)
    ]  # fmt: skip
    data = write_jsonl(work / "rows.jsonl", rows)
    run = work / "runs" / "residual"
    train = ["--encoder", tiny_encoder_dir, "--train-data", data, "--output-dir", run, "--scorer", "residual"]
    train += ["--loss", "margin_mse", "--batch-size", "4", "--max-steps", "4", "--eval-every", "2"]
    train += ["--dev-data", beir, "--dev-run", beir / "run.trec", "--mixed-precision", "no", "--num-workers", "0"]
    run_script("train_accelerate.py", [*train, *SCORER], check=True)
    results = work / "dev" / "residual.json"
    evaluate = ["--model", f"Residual={run / 'best'}", "--data", beir, "--run", beir / "run.trec"]
    run_script("eval_rerank.py", [*evaluate, "--output", results, "--dtype", "float32", "--no-progress"], check=True)
    return run, results, beir


def ship(student, output, *extra):
    run, results, _ = student
    argv = ["--run", str(run), "--results", str(results), "--results-model", "Residual", "--name", "tiny-residual"]
    argv += ["--description", "A tiny residual student.", "--output-dir", str(output), "--no-progress", *extra]
    return ship_model.main(argv)


def test_a_student_ships_as_a_float16_hub_folder_with_its_provenance_and_dev_run(tmp_path, student):
    run, results, beir = student
    record = ship(student, tmp_path / "models", "--command", "python train_accelerate.py ...")
    folder = tmp_path / "models" / "tiny-residual"
    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float16}  # noqa: SIM118
    loaded = LiteModel.from_pretrained(folder)  # config.json keeps float32: computed in float32
    assert loaded.dtype == torch.float32
    original = LiteModel.from_pretrained(run / "best")
    for name, tensor in original.state_dict().items():  # the weights are the student's, rounded to float16
        assert torch.equal(loaded.state_dict()[name], tensor.half().float()), name
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance == json.loads(json.dumps(record))
    assert provenance["weights"]["sha256"] == ship_model.file_sha256(folder / "model.safetensors")
    assert (
        provenance["selection"]["kept_step"]
        == json.loads((run / "best" / "training_summary.json").read_text())["step"]
    )
    assert set(provenance["selection"]["mrr@10_by_step"]) == {"0", "2", "4"}  # the start, then every 2 steps
    assert provenance["recipe"]["train_flags"]["scorer"] == "residual" and provenance["recipe"]["seed"] == 42
    unrounded = json.loads(results.read_text())["models"]["Residual"]["mrr@10"]
    assert provenance["dev"]["unrounded_float32"]["mrr@10"] == unrounded
    assert abs(provenance["dev"]["float32"]["mrr@10"] - unrounded) <= ship_model.MAX_MRR_CHANGE
    # the dev run is the shipped file's: scoring the folder again ranks every query alike
    with gzip.open(folder / "dev-run.trec.gz", "rt") as lines:
        (tmp_path / "shipped.trec").write_text(lines.read())
    again = tmp_path / "again.json"
    argv = ["--model", f"m={folder}", "--data", beir, "--run", beir / "run.trec", "--output", again]
    run_script("eval_rerank.py", [*argv, "--dtype", "float32", "--no-progress"], check=True)
    shipped_run = read_trec_run(tmp_path / "shipped.trec")
    assert [[d for d, _ in ranked] for ranked in shipped_run.values()] == [
        [d for d, _ in ranked] for ranked in read_trec_run(again.with_name("again.m.trec")).values()
    ]
    card = (folder / "README.md").read_text()
    assert "## Provenance" in card and provenance["weights"]["sha256"][:16] in card and "float16" in card
    # a paired test of two shipped runs reruns from the files alone
    qrels = {"q0": {"d0": 2, "d4": 1}, "q1": {"d1": 1, "d7": 1}}
    test = compare(reciprocal_ranks(shipped_run, qrels), reciprocal_ranks(shipped_run, qrels), permutations=10)
    assert test["difference"] == 0
    # shipping again into the same folder replaces the earlier stage (and only it)
    ship(student, tmp_path / "models")
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not a previous stage"):
        ship(student, tmp_path / "models")


def test_results_of_other_weights_or_precision_are_refused_before_anything_is_written(tmp_path, student):
    run, results, _ = student
    other = tmp_path / "other.json"
    values = json.loads(results.read_text())
    values["model_files"]["Residual"]["weights_sha256"] = "0" * 64
    other.write_text(json.dumps(values))
    argv = ["--run", str(run), "--results-model", "Residual", "--name", "x", "--description", "x"]
    argv += ["--output-dir", str(tmp_path / "models")]
    with pytest.raises(SystemExit, match="was measured with other weights"):
        ship_model.main([*argv, "--results", str(other)])
    values = json.loads(results.read_text())
    values["precision"]["dtype"] = "bfloat16"
    other.write_text(json.dumps(values))
    with pytest.raises(SystemExit, match="not float32"):
        ship_model.main([*argv, "--results", str(other)])
    assert not (tmp_path / "models").exists()


def test_a_rounding_that_moves_dev_mrr_is_refused(tmp_path, student, monkeypatch):
    monkeypatch.setattr(ship_model, "MAX_MRR_CHANGE", -1.0)  # any change, even none, is too much
    with pytest.raises(SystemExit, match="ship it with --weights-dtype float32"):
        ship(student, tmp_path / "models")
    assert not (tmp_path / "models" / "tiny-residual").exists()
    shutil.rmtree(tmp_path / "models", ignore_errors=True)
