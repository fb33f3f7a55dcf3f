"""scripts/demo.py's steps on a tiny encoder and scorer (issue 35): the committed scorer built, adapted by
train_accelerate.py, evaluated with MaxSim and BM25 on the same candidates, staged; each stage's entry script run in
this process (the README's command runs each in a fresh one)."""

import gzip
import json
import runpy
import sys

import pytest
import torch
from conftest import DOCUMENTS, QUERIES, ROOT, write_jsonl

from lite_rerank.scorer_weights import encoder_weights_sha256, read_scorer, write_scorer
from modeling_lite import LiteModel

sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402


def in_process(step, command, cwd):
    """An entry script run as `python SCRIPT ARGS` would run it, in this process."""
    argv = sys.argv
    sys.argv = [str(ROOT / command[0]), *command[1:]]
    try:
        runpy.run_path(str(ROOT / command[0]), run_name="__main__")
    finally:
        sys.argv = argv


@pytest.fixture
def sample(tmp_path):
    """A BEIR folder shaped as data/debian-sample: dev qrels, a BM25 run, teacher-scored training triplets."""
    data = tmp_path / "sample"
    (data / "qrels").mkdir(parents=True)
    (data / "runs").mkdir()
    write_jsonl(data / "corpus.jsonl", [{"_id": f"d{i}", "text": t} for i, t in enumerate(DOCUMENTS * 2)])
    write_jsonl(data / "queries.jsonl", [{"_id": f"q{i}", "text": t} for i, t in enumerate(QUERIES)])
    (data / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(3))
    )
    (data / "runs" / "bm25.dev.trec").write_text(
        "".join(f"q{q} Q0 d{d} {r} {10 - r} bm25\n" for q in range(3) for r, d in enumerate((3, 2, 1, 0, 5), 1))
    )
    rows = [
        {
            "query": f"{QUERIES[i % 3]} {i}",
            "positive": DOCUMENTS[i % 4],
            "negative": DOCUMENTS[(i + 1) % 4],
            "teacher_positive": 3.0,
            "teacher_negative": -1.0,
        }
        for i in range(64)
    ]
    with gzip.open(data / "triplets.teacher.train.jsonl.gz", "wt") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)
    return data


@pytest.fixture(params=[False, True], ids=["residual", "residual-weighted"])
def committed(request, tmp_path, tiny_encoder_dir):
    """A residual scorer folder on the tiny encoder, at the demo config's lengths (30 / 200); the committed default
    also holds query token weights."""
    torch.manual_seed(0)
    model = LiteModel.from_encoder(
        str(tiny_encoder_dir),
        scorer="residual",
        row_hidden_size=64,
        col_hidden_size=16,
        query_token_weights=request.param,
    )
    with torch.no_grad():
        model.lite_scorer.out.weight.normal_(0, 0.05)
        model.lite_scorer.maxsim_scale.fill_(2.0)
        if request.param:
            model.query_token_weights.log_weights.normal_(0, 0.5)
    record = {"encoder": {"weights_sha256": encoder_weights_sha256(str(tiny_encoder_dir))}}
    write_scorer(tmp_path / "scorer", model, record)
    return tmp_path / "scorer"


def test_the_demo_runs_its_steps_and_reports_lite_against_maxsim_and_bm25(
    tmp_path, sample, committed, tiny_encoder_dir, monkeypatch, capsys
):
    config = tmp_path / "demo.yaml"  # configs/demo.yaml at the tiny scorer's sizes, two steps
    text = (ROOT / "configs" / "demo.yaml").read_text()
    config.write_text(text + "row-hidden-size: 64\ncol-hidden-size: 16\n")
    monkeypatch.setattr(demo, "SAMPLE", sample)
    out = tmp_path / "demo"
    argv = ["--adapt", "--output-dir", str(out), "--data", str(sample), "--scorer", str(committed)]
    argv += ["--encoder", str(tiny_encoder_dir), "--max-steps", "2", "--threads", "1"]

    def runner(step, command, cwd):
        if command[0] == "train_accelerate.py":
            command = [c if c != "configs/demo.yaml" else str(config) for c in command]
            command += ["--num-workers", "0", "--mixed-precision", "no"]
        if command[0] == "eval_rerank.py":
            command += ["--dtype", "float32", "--no-progress"]
        in_process(step, command, cwd)

    result = demo.main(argv, runner=runner)
    models = result["models"]
    assert set(models) == {"first-stage", "LITE", "LITE adapted", "MaxSim (zero-shot MaxSim)"}
    # LITE is the committed scorer itself: its model folder holds exactly those weights
    built = LiteModel.from_pretrained(out / "lite-committed")
    fields, state, _ = read_scorer(committed)
    token_weights = state.pop("query_token_weights.log_weights", None)
    assert all(torch.equal(built.lite_scorer.state_dict()[name], state[name]) for name in state)
    if fields.get("query_token_weights"):
        assert torch.equal(built.query_token_weights.log_weights, token_weights)
        adapted = LiteModel.from_pretrained(out / "lite" / "best")  # the adaptation trained them too
        assert not torch.equal(adapted.query_token_weights.log_weights, token_weights)
    else:
        assert built.query_token_weights is None
    tests = result["tests"]
    for name in ("LITE", "LITE adapted"):
        test = tests[f"{name} vs MaxSim (zero-shot MaxSim)"]
        assert test["difference"] == pytest.approx(
            models[name]["mrr@10"] - models["MaxSim (zero-shot MaxSim)"]["mrr@10"], abs=1e-9
        )
    assert json.loads((out / "paired-tests.json").read_text()) == json.loads(json.dumps(tests))
    summary = json.loads((out / "lite" / "best" / "training_summary.json").read_text())
    assert summary["step"] == 2 and summary["args"]["scorer_weights"] == str(committed)
    assert (out / "hub" / "model.safetensors").is_file() and (out / "hub" / "README.md").is_file()
    printed = capsys.readouterr().out
    assert "about" in printed and "min left" in printed and "LITE vs MaxSim (zero-shot MaxSim):" in printed


def test_the_fine_tuning_demo_is_one_flag_away(tmp_path, sample, tiny_encoder_dir, monkeypatch):
    monkeypatch.setattr(demo, "SAMPLE", sample)
    out = tmp_path / "demo"
    argv = ["--fine-tune", "--output-dir", str(out), "--data", str(sample), "--encoder", str(tiny_encoder_dir)]
    argv += ["--max-steps", "1", "--threads", "1"]

    def runner(step, command, cwd):
        if command[0] == "train_accelerate.py":
            command += ["--num-workers", "0", "--mixed-precision", "no", "--row-hidden-size", "64"]
        if command[0] == "eval_rerank.py":
            command += ["--dtype", "float32", "--no-progress"]
        in_process(step, command, cwd)

    result = demo.main(argv, runner=runner)
    assert set(result["models"]) == {"first-stage", "LITE", "MaxSim"}
    for name in ("lite", "maxsim"):  # each fine-tuned from the encoder: the encoder's weights moved
        summary = json.loads((out / name / "best" / "training_summary.json").read_text())
        assert summary["step"] == 1 and summary["args"]["scorer"] == name and not summary["args"]["freeze_encoder"]
    assert (out / "hub" / "model.safetensors").is_file()


def test_a_folder_that_is_not_a_scorer_is_refused_before_any_stage_runs(tmp_path, capsys):
    ran = []
    with pytest.raises(SystemExit):
        demo.main(
            ["--adapt", "--scorer", str(tmp_path), "--output-dir", str(tmp_path / "demo")],
            runner=lambda *a: ran.append(a),
        )
    error = capsys.readouterr().err
    assert f"--scorer: {tmp_path}: not a scorer folder" in error, error
    assert not ran and not (tmp_path / "demo").exists()


def test_with_shipped_students_the_demo_reranks_with_them_and_stages_the_lite_one(
    tmp_path, sample, tokenizer, monkeypatch, capsys
):
    """Issue 56 item 3: the default on the shipped students (tiny stand-ins here), LITE against MaxSim and each
    against BM25 with paired tests, the LITE student's folder staged and validated."""
    from conftest import tiny_model

    shipped = {"LITE student": tmp_path / "models" / "lite", "MaxSim student": tmp_path / "models" / "maxsim"}
    tiny_model(tokenizer=tokenizer, scorer="residual").save_pretrained(shipped["LITE student"])
    tiny_model(seed=2, tokenizer=tokenizer, scorer="maxsim").save_pretrained(shipped["MaxSim student"])
    monkeypatch.setattr(demo, "SHIPPED", shipped)
    ran = []

    def runner(step, command, cwd):
        ran.append(command[0])
        if command[0] == "eval_rerank.py":
            command += ["--dtype", "float32", "--no-progress"]
        in_process(step, command, cwd)

    out = tmp_path / "demo"
    result = demo.main(["--output-dir", str(out), "--data", str(sample), "--threads", "1"], runner=runner)
    assert ran == ["eval_rerank.py", "push_to_hub.py"]  # nothing trained, nothing built
    assert set(result["models"]) == {"first-stage", "LITE student", "MaxSim student"}
    test = result["tests"]["LITE student vs MaxSim student"]
    models = result["models"]
    assert test["difference"] == pytest.approx(models["LITE student"]["mrr@10"] - models["MaxSim student"]["mrr@10"])
    assert set(result["tests"]["vs BM25"]) == {"LITE student", "MaxSim student"}
    staged = LiteModel.from_pretrained(out / "hub")
    assert torch.equal(
        staged.lite_scorer.out.weight, LiteModel.from_pretrained(shipped["LITE student"]).lite_scorer.out.weight
    )
    printed = capsys.readouterr().out
    assert "min left" in printed and "LITE student vs MaxSim student:" in printed


def test_without_the_shipped_students_the_demo_says_so_and_runs_the_adaptation(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "SHIPPED", {"LITE student": tmp_path / "none", "MaxSim student": tmp_path / "none"})
    args = demo.parse_args(["--output-dir", str(tmp_path / "demo")])
    assert args.adapt and not args.shipped
    assert "the shipped students are not all in models/ yet" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        demo.parse_args(["--adapt", "--fine-tune"])
