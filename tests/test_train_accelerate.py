"""Training end to end on CPU with tiny models built from configs; each run is a fresh process (as users run it)."""

import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import (
    DOCUMENTS,
    QUERIES,
    ROOT,
    SCRIPT_ENV,
    SHARED_DEBIAN,
    needs_shared_data,
    save_multi_vector,
    script_command,
    tiny_model,
    tiny_triplets,
    write_jsonl,
)
from safetensors.torch import load_file

import train_accelerate
from lite_rerank.utils import file_sha256
from modeling_lite import LiteModel

TINY_SCORER = [
    "--query-max-length",
    "8",
    "--doc-max-length",
    "24",
    "--row-hidden-size",
    "48",
    "--col-hidden-size",
    "16",
]


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    rows = [
        {"query": f"{q} {i}", "positive": DOCUMENTS[(i + k) % 4], "negative": DOCUMENTS[(i + k + 1) % 4]}
        for i, (k, q) in enumerate(itertools.islice(itertools.cycle(enumerate(QUERIES)), 24))
    ]
    return write_jsonl(tmp_path_factory.mktemp("data") / "triplets.jsonl", rows)


@pytest.fixture(scope="module")
def listwise_file(tmp_path_factory):
    rows = [
        {
            "query": f"{q} {i}",
            "positive": DOCUMENTS[(i + k) % 4],
            "negatives": [DOCUMENTS[(i + k + j) % 4] for j in (1, 2, 3)],
        }
        for i, (k, q) in enumerate(itertools.islice(itertools.cycle(enumerate(QUERIES)), 24))
    ]
    return write_jsonl(tmp_path_factory.mktemp("data") / "listwise.jsonl", rows)


@pytest.fixture(scope="module")
def teacher_dir(tiny_cross_encoder_dir):
    return tiny_cross_encoder_dir


def launch(args, processes=1, check=True, **popen):
    env = {**os.environ, **SCRIPT_ENV}
    command = script_command("train_accelerate.py", args, processes)
    if popen:
        return subprocess.Popen(command, env=env, cwd=ROOT, **popen)
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def training_records(output) -> list[dict]:
    """metrics.jsonl's loss records (it also holds a start record per session, resumptions and dev results)."""
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return [record for record in records if "loss" in record]


def tiny_run(encoder, train_file, output, *extra):
    return [
        "--encoder",
        str(encoder),
        "--train-data",
        str(train_file),
        "--output-dir",
        str(output),
        "--mixed-precision",
        "no",
        "--num-workers",
        "0",
        "--log-every",
        "1",
        *TINY_SCORER,
        *extra,
    ]


@pytest.mark.slow
def test_two_processes_shard_the_data_and_agree_on_dev_metrics(
    tmp_path, tiny_encoder_dir, train_file, teacher_dir, beir_fixture
):
    output = tmp_path / "run"
    result = launch(
        tiny_run(
            tiny_encoder_dir,
            train_file,
            output,
            "--loss",
            "margin_mse",
            "--teacher",
            str(teacher_dir),
            "--batch-size",
            "8",
            "--max-steps",
            "3",
            "--eval-every",
            "3",
            "--dev-data",
            str(beir_fixture),
            "--dev-run",
            str(beir_fixture / "run.trec"),
        ),
        processes=2,
    )
    assert "2 process(es)" in result.stdout + result.stderr
    # Teacher scores were computed on the fly; each process cached the rows it trained on.
    shards = [
        {
            json.loads(line)["row"]
            for line in (output / "teacher-cache" / f"scores.rank{rank}.jsonl").read_text().splitlines()
        }
        for rank in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 12 and not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(range(24))
    summary = json.loads((output / "best" / "training_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["step"] == 3 and summary["teacher"] == str(teacher_dir)
    # The dev MRR@10 gathered from two processes equals a single-process evaluation of best/.
    import eval_rerank

    results = eval_rerank.main(
        [
            "--model",
            f"best={output / 'best'}",
            "--data",
            str(beir_fixture),
            "--run",
            str(beir_fixture / "run.trec"),
            "--no-progress",
            "--dtype",
            "float32",  # as the run trained and selected (tiny_run: --mixed-precision no)
        ]
    )
    assert summary["dev"]["mrr@10"] == pytest.approx(results["best"]["mrr@10"], abs=1e-6)
    assert summary["dev"]["ndcg@10"] == pytest.approx(results["best"]["ndcg@10"], abs=1e-6)
    log = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3] and all(
        r["pairs_per_s"] > 0 for r in log if "loss" in r
    )


def test_a_student_of_scores_in_the_data_is_not_credited_to_the_default_teacher(tmp_path, tiny_encoder_dir):
    from lite_rerank.publishing import training_description

    rows = [
        {
            "query": f"{QUERIES[i % 3]} {i}",
            "positive": DOCUMENTS[i % 3],
            "negative": DOCUMENTS[(i + 1) % 4],
            "teacher_positive": 3.0,
            "teacher_negative": -1.0,
        }
        for i in range(12)
    ]
    data = write_jsonl(tmp_path / "scored.jsonl", rows)
    output = tmp_path / "run"
    launch(tiny_run(tiny_encoder_dir, data, output, "--loss", "margin_mse", "--batch-size", "4", "--max-steps", "1"))
    summary = json.loads((output / "best" / "training_summary.json").read_text())
    assert summary["args"]["teacher"] == "cross-encoder/ms-marco-MiniLM-L-6-v2"  # the flag's default, never used
    assert summary["teacher"] == "the teacher scores carried by the training data"
    description = training_description(summary)
    assert "from the teacher scores carried by the training data" in description
    assert "ms-marco" not in description
    # a summary written before "teacher" was recorded still names --teacher, as it always did
    older = {key: value for key, value in summary.items() if key != "teacher"}
    assert "`cross-encoder/ms-marco-MiniLM-L-6-v2`" in training_description(older)


@pytest.mark.slow
def test_resume_is_exact(tmp_path, tiny_encoder_dir, train_file):
    common = ["--loss", "ce", "--batch-size", "4", "--max-steps", "10", "--lr", "1e-3", "--seed", "7"]
    straight = tmp_path / "straight"
    launch(tiny_run(tiny_encoder_dir, train_file, straight, *common))
    resumed = tmp_path / "resumed"
    first = launch(tiny_run(tiny_encoder_dir, train_file, resumed, *common, "--stop-after", "5"))
    assert "paused at step 5" in first.stdout + first.stderr and not (resumed / "best").exists()
    (resumed / "checkpoints" / ".partial-step-00000099").mkdir()  # a save cut short: must be ignored
    second = launch(tiny_run(tiny_encoder_dir, train_file, resumed, *common))
    assert "resumed from" in second.stdout + second.stderr
    events = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert {"step": 5, "event": "resumed", "checkpoint": "step-00000005"} in events
    assert_same_weights(straight / "best", resumed / "best")
    assert_same_weights(resumed / "checkpoints" / "step-00000010", resumed / "best")
    assert sorted(p.name for p in (resumed / "checkpoints").glob("step-*")) == ["step-00000005", "step-00000010"]
    # Rerunning a finished run trains nothing, logs nothing and leaves best/ as it was.
    best_written = (resumed / "best" / "model.safetensors").stat().st_mtime_ns
    log_before = (resumed / "metrics.jsonl").read_text()
    third = launch(tiny_run(tiny_encoder_dir, train_file, resumed, *common))
    assert "done: step 10" in third.stdout + third.stderr
    assert (resumed / "metrics.jsonl").read_text() == log_before
    assert (resumed / "best" / "model.safetensors").stat().st_mtime_ns == best_written


@pytest.mark.slow
def test_sigterm_to_the_process_group_saves_a_checkpoint_and_the_run_resumes(tmp_path, tiny_encoder_dir, train_file):
    output = tmp_path / "run"
    args = tiny_run(
        tiny_encoder_dir,
        train_file,
        output,
        "--loss",
        "ce",
        "--batch-size",
        "4",
        "--max-steps",
        "100000",
        "--save-every",
        "100000",
    )
    args[args.index("--num-workers") + 1] = "1"  # a DataLoader worker gets the signal too, as under a scheduler
    process = launch(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    log = output / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    saved = sorted((output / "checkpoints").glob("step-*"))
    assert len(saved) == 1
    step = int(saved[0].name.split("-")[1])
    # the last step that finished (logged: --log-every 1); one the signal cut short is dropped, not saved
    logged = [record["step"] for record in training_records(output)]
    assert step == logged[-1] >= 2
    again = launch(args + ["--stop-after", "1"])
    assert f"resumed from {saved[0]} (step {step}" in again.stdout + again.stderr
    assert (output / "checkpoints" / f"step-{step + 1:08d}").exists()


# train_accelerate.py run with SIGTERM sent by the process itself as the Nth call of a function returns: a stop that
# lands inside a step (its forward pass done, dropout drawn: "student_scores") or a dev evaluation ("evaluate").
STOP_ON_CALL = """
import os, signal, sys
import train_accelerate
where, stop_on, calls = sys.argv[1], int(sys.argv[2]), []
owner = train_accelerate.DevSelection if where == "evaluate" else train_accelerate
function = getattr(owner, where)
def stopping(*args, **kwargs):
    result = function(*args, **kwargs)
    calls.append(1)
    if len(calls) == stop_on:
        os.kill(os.getpid(), signal.SIGTERM)
    return result
setattr(owner, where, stopping)
train_accelerate.main(sys.argv[3:])
"""


def launch_stopping_on_call(where: str, call: int, args):
    command = [sys.executable, "-c", STOP_ON_CALL, where, str(call), *args]
    env = {**os.environ, **SCRIPT_ENV, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def assert_same_weights(a, b):
    a, b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_a_stop_during_a_step_saves_the_step_before_it_at_once_and_resuming_is_exact(
    tmp_path, tiny_encoder_dir, train_file
):
    """A single process need not finish the step a stop lands in (`accelerate launch` ≥ 1.16 kills it 5 s after the
    signal): the step is dropped, the previous one saved with the RNG as it was then (the tiny encoder's dropout
    draws from it), and the resumed run ends with the weights of a run never stopped."""
    common = ["--loss", "ce", "--batch-size", "4", "--max-steps", "6", "--lr", "1e-3", "--seed", "7"]
    straight = tmp_path / "straight"
    launch(tiny_run(tiny_encoder_dir, train_file, straight, *common))
    stopped = tmp_path / "stopped"
    first = launch_stopping_on_call("student_scores", 4, tiny_run(tiny_encoder_dir, train_file, stopped, *common))
    assert first.returncode == 128 + signal.SIGTERM, first.stderr[-3000:]
    assert "stopped by signal at step 3; checkpoint saved" in first.stdout
    assert [p.name for p in (stopped / "checkpoints").glob("step-*")] == ["step-00000003"]
    assert [r["step"] for r in training_records(stopped)] == [1, 2, 3]  # step 4 never finished
    second = launch(tiny_run(tiny_encoder_dir, train_file, stopped, *common))
    assert "resumed from" in second.stdout + second.stderr
    assert_same_weights(straight / "best", stopped / "best")


@pytest.mark.slow
def test_a_stop_during_a_dev_evaluation_saves_its_step_and_resuming_evaluates_it_first(
    tmp_path, tiny_encoder_dir, train_file, beir_fixture
):
    common = tiny_run(tiny_encoder_dir, train_file, tmp_path / "unused", "--loss", "ce", "--batch-size", "4")
    common += ["--max-steps", "6", "--lr", "1e-3", "--seed", "7", "--eval-every", "2", "--dev-data", str(beir_fixture)]
    common += ["--dev-run", str(beir_fixture / "run.trec"), "--eval-batch-size", "4"]

    def run(output):
        args = list(common)
        args[args.index("--output-dir") + 1] = str(output)
        return args

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    launch(run(straight))
    first = launch_stopping_on_call("evaluate", 2, run(stopped))  # the evaluation of step 4
    assert first.returncode == 128 + signal.SIGTERM, first.stderr[-3000:]
    assert "stopped by signal at step 4; checkpoint saved" in first.stdout
    state = json.loads((stopped / "checkpoints" / "step-00000004" / "training_state.json").read_text())
    assert state["step"] == 4 and state["evaluation_pending"] is True
    second = launch(run(stopped))
    assert "resumed from" in second.stdout + second.stderr
    logs = {
        name: [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        for name, folder in [("straight", straight), ("stopped", stopped)]
    }
    dev = {name: [(r["step"], r["dev_mrr@10"]) for r in log if "dev_mrr@10" in r] for name, log in logs.items()}
    assert [step for step, _ in dev["stopped"]] == [2, 4, 6]  # step 4 evaluated once, after the resumption
    assert dev["stopped"] == dev["straight"]
    assert_same_weights(straight / "best", stopped / "best")
    assert_same_weights(straight / "checkpoints" / "step-00000006", stopped / "checkpoints" / "step-00000006")
    state = json.loads((stopped / "checkpoints" / "step-00000004" / "training_state.json").read_text())
    assert state["evaluation_pending"] is False  # the checkpoint now records the evaluation
    ends = [
        json.loads((f / "checkpoints" / "step-00000006" / "training_state.json").read_text())
        for f in (straight, stopped)
    ]
    assert ends[0] == ends[1]


@pytest.mark.slow
@needs_shared_data
def test_training_on_debian_lowers_the_loss(tmp_path, minilm_path):
    output = tmp_path / "run"
    launch(
        [
            "--encoder",
            str(minilm_path),
            "--train-data",
            str(SHARED_DEBIAN / "triplets.train.jsonl.gz"),
            "--max-train-rows",
            "32",
            "--loss",
            "ce",
            "--batch-size",
            "16",
            "--max-steps",
            "6",
            "--lr",
            "5e-5",
            "--scorer-lr",
            "1e-3",
            "--output-dir",
            str(output),
            "--mixed-precision",
            "no",
            "--num-workers",
            "0",
            "--query-max-length",
            "16",
            "--doc-max-length",
            "64",
            "--log-every",
            "1",
        ]
    )
    from lite_rerank.losses import ContrastiveCrossEntropyLoss
    from lite_rerank.triplets import IndexedTriplets, TripletCollator, load_local_triplets
    from modeling_lite import LiteModel

    trained = LiteModel.from_pretrained(output / "best").eval()
    torch.manual_seed(42)  # the run's seed: the same fresh scorer the run started from
    initial = LiteModel.from_encoder(str(minilm_path), query_max_length=16, doc_max_length=64).eval()
    data = IndexedTriplets(load_local_triplets(SHARED_DEBIAN / "triplets.train.jsonl.gz", max_rows=32))
    batch = TripletCollator(trained.tokenizer, 16, 64)([data[i] for i in range(32)])
    inputs = {k: v for k, v in batch.items() if k.endswith(("input_ids", "attention_mask"))}
    with torch.no_grad():
        before = ContrastiveCrossEntropyLoss()(initial(**inputs).logits).item()
        after = ContrastiveCrossEntropyLoss()(trained(**inputs).logits).item()
    assert after < before - 0.05, (before, after)
    losses = [record["loss"] for record in training_records(output)]
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_bad_training_data_fails_before_training(tmp_path, tiny_encoder_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "positive": "p", "negative": "n"}\n' * 2 + '{"query": "q", "negative": "n"}\n')
    result = launch(tiny_run(tiny_encoder_dir, bad, tmp_path / "run", "--loss", "ce"), check=False)
    assert result.returncode != 0
    assert "bad.jsonl:3: missing field 'positive'" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_config_file_sets_flags_and_rejects_unknown_keys(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("scorer: maxsim\nbatch-size: 32\nlr: 1.0e-4\n")
    args = train_accelerate.parse_args(["--config", str(config), "--lr", "3e-5"])
    assert (args.scorer, args.batch_size, args.lr, args.save_every) == ("maxsim", 32, 3e-5, 500)
    config.write_text("scorer: maxsim\nbatchsize: 32\n")
    with pytest.raises(SystemExit):
        train_accelerate.parse_args(["--config", str(config)])
    assert "unknown key(s) ['batchsize']" in capsys.readouterr().err


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_parse(config):
    args = train_accelerate.parse_args(["--config", str(config)])
    assert args.batch_size > 0 and args.encoder


@pytest.mark.slow
def test_overwrite_output_dir_starts_clean(tmp_path, tiny_encoder_dir, train_file):
    output = tmp_path / "run"
    common = ["--loss", "ce", "--batch-size", "4"]
    launch(tiny_run(tiny_encoder_dir, train_file, output, *common, "--max-steps", "10", "--stop-after", "3"))
    launch(tiny_run(tiny_encoder_dir, train_file, output, *common, "--max-steps", "2", "--overwrite-output-dir"))
    assert sorted(p.name for p in (output / "checkpoints").glob("step-*")) == ["step-00000002"]
    assert [record["step"] for record in training_records(output)] == [1, 2]


@pytest.mark.slow
def test_freeze_encoder_steps_train_only_the_scorer_first(tmp_path, tiny_encoder_dir, train_file):
    output = tmp_path / "run"
    launch(
        tiny_run(
            tiny_encoder_dir,
            train_file,
            output,
            "--loss",
            "ce",
            "--batch-size",
            "4",
            "--max-steps",
            "2",
            "--freeze-encoder-steps",
            "2",
            "--lr",
            "1e-2",
            "--scorer-lr",
            "1e-2",
        )
    )
    trained = load_file(output / "best" / "model.safetensors")
    initial = load_file(tiny_encoder_dir / "model.safetensors")
    for key, value in initial.items():
        if not key.startswith("pooler."):
            assert torch.equal(trained[f"encoder.{key}"], value), key
    from modeling_lite import LiteModel

    torch.manual_seed(42)
    fresh = LiteModel.from_encoder(
        str(tiny_encoder_dir), query_max_length=8, doc_max_length=24, row_hidden_size=48, col_hidden_size=16
    )
    assert not torch.equal(trained["lite_scorer.out.weight"], fresh.state_dict()["lite_scorer.out.weight"])


@pytest.mark.parametrize("projection_lr", [None, 1e-4])
def test_projection_lr_gives_the_small_lite_projection_its_own_group(projection_lr):
    flags = ["--scorer-lr", "1e-3", "--lr", "2e-5", "--max-steps", "10", "--projection-dim", "8"]
    args = train_accelerate.parse_args(flags + (["--projection-lr", str(projection_lr)] if projection_lr else []))
    model = tiny_model(projection_dim=8)
    optimizer, scheduler, rate_names = train_accelerate.build_optimizer(args, model, max_steps=10, processes=1)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert len(lr_of) == sum(1 for _ in model.parameters())  # every parameter in exactly one group
    assert {lr_of[id(p)] for p in model.encoder.parameters()} == {0.0}  # warm-up starts at 0 ...
    optimizer.step()  # no gradients: changes nothing, keeps the scheduler's order check quiet
    scheduler.step()  # ... and is linear: step 1 of a 1-step warm-up is the full rate
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert {lr_of[id(p)] for p in model.encoder.parameters()} == {2e-5}
    assert {lr_of[id(p)] for p in model.lite_scorer.parameters()} == {1e-3}
    assert {lr_of[id(p)] for p in model.projection.parameters()} == {projection_lr or 1e-3}
    assert len(optimizer.param_groups) == (3 if projection_lr else 2)
    logged = train_accelerate.learning_rates(scheduler, rate_names)  # what metrics.jsonl records
    assert logged == {"lr": 2e-5, "scorer_lr": 1e-3} | ({"projection_lr": projection_lr} if projection_lr else {})


@pytest.mark.parametrize(
    "flags, names", [([], ["lr"]), (["--projection-dim", "8", "--projection-lr", "1e-4"], ["lr", "projection_lr"])]
)
def test_maxsim_logs_each_rate_under_its_own_name(flags, names):
    args = train_accelerate.parse_args(["--scorer", "maxsim", "--lr", "2e-5", "--max-steps", "10", *flags])
    model = tiny_model(scorer="maxsim", projection_dim=8 if flags else None)
    optimizer, scheduler, rate_names = train_accelerate.build_optimizer(args, model, max_steps=10, processes=1)
    assert rate_names == names and len(optimizer.param_groups) == len(names)
    optimizer.step()
    scheduler.step()  # past the 1-step warm-up: every group at its full rate
    logged = train_accelerate.learning_rates(scheduler, rate_names)
    # no scorer parameters: scorer_lr is the encoder's rate, as metrics.jsonl always recorded it for MaxSim
    assert logged == {"lr": 2e-5, "scorer_lr": 2e-5} | ({"projection_lr": 1e-4} if flags else {})


@pytest.mark.slow
def test_cross_encoder_student_selects_on_dev_loads_as_a_cross_encoder_and_teaches(
    tmp_path, tiny_encoder_dir, listwise_file, beir_fixture
):
    output = tmp_path / "teacher"
    launch(
        tiny_run(
            tiny_encoder_dir,
            listwise_file,
            output,
            "--scorer",
            "cross-encoder",
            "--loss",
            "ce",
            "--hard-negatives",
            "2",
            "--batch-size",
            "4",
            "--max-steps",
            "4",
            "--eval-every",
            "2",
            "--lr",
            "1e-3",
            "--dev-data",
            str(beir_fixture),
            "--dev-run",
            str(beir_fixture / "run.trec"),
        ),
        processes=2,
    )
    best = output / "best"
    summary = json.loads((best / "training_summary.json").read_text())
    import eval_rerank

    results = eval_rerank.main(
        [
            "--model",
            f"CE={best}",
            "--data",
            str(beir_fixture),
            "--run",
            str(beir_fixture / "run.trec"),
            "--no-progress",
            "--dtype",
            "float32",  # as the run trained and selected (tiny_run: --mixed-precision no)
        ]
    )
    assert summary["dev"]["mrr@10"] == pytest.approx(results["CE"]["mrr@10"], abs=1e-6)
    # A plain cross-encoder: AutoModelForSequenceClassification and sentence-transformers CrossEncoder agree.
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(best)
    assert tokenizer.model_max_length == 8 + 24  # pairs are cut as in training
    model = AutoModelForSequenceClassification.from_pretrained(best).eval()
    pairs = [[QUERIES[0], DOCUMENTS[0]], [QUERIES[1], DOCUMENTS[3]]]
    with torch.no_grad():
        logits = model(**tokenizer(*zip(*pairs), padding=True, truncation=True, return_tensors="pt")).logits
    raw = CrossEncoder(str(best), activation_fn=torch.nn.Identity()).predict(pairs)
    assert raw.tolist() == pytest.approx(logits.squeeze(-1).tolist(), abs=1e-5)
    # ... and the teacher of a LITE student: on-the-fly scores of 1 + 2 documents per row, cached.
    student = tmp_path / "student"
    launch(
        tiny_run(
            tiny_encoder_dir,
            listwise_file,
            student,
            "--loss",
            "kl",
            "--hard-negatives",
            "2",
            "--teacher",
            str(best),
            "--batch-size",
            "4",
            "--max-steps",
            "2",
        )
    )
    from lite_rerank.cross_encoder import CrossEncoderScorer
    from lite_rerank.triplets import load_train_dataset

    record = json.loads((student / "teacher-cache" / "scores.rank0.jsonl").read_text().splitlines()[0])
    row = load_train_dataset(str(listwise_file))[record["row"]]
    documents = [row["positive"], *row["negatives"][:2]]
    expected = CrossEncoderScorer.from_pretrained(best).score([row["query"]] * 3, documents)
    assert record["scores"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.slow
def test_listwise_ce_with_in_batch_negatives_trains(tmp_path, tiny_encoder_dir, listwise_file):
    output = tmp_path / "run"
    launch(
        tiny_run(
            tiny_encoder_dir,
            listwise_file,
            output,
            "--loss",
            "ce",
            "--hard-negatives",
            "3",
            "--in-batch-negatives",
            "-1",
            "--batch-size",
            "4",
            "--max-steps",
            "3",
        )
    )
    log = training_records(output)
    # 1 + 3 own documents and 3 × 4 in-batch ones per query: the loss starts near log(16)
    assert log[0]["loss"] == pytest.approx(math.log(16), abs=0.3)
    assert (output / "best" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "-0.001"], "--lr must be greater than 0"),
        (["--max-steps", "0"], "--max-steps must be greater than 0"),
        (["--max-steps", "-3"], "--max-steps must be greater than 0"),
        (["--keep-checkpoints", "0"], "--keep-checkpoints must be greater than 0"),
        (["--save-every", "0"], "--save-every must be greater than 0"),
        (["--patience", "-1"], "--patience must be 0 or more"),
        (["--in-batch-negatives", "4", "--loss", "kl"], "--in-batch-negatives needs --loss ce"),
        (["--scorer", "cross-encoder", "--in-batch-negatives", "4", "--loss", "ce"], "late-interaction student"),
        (["--projection-lr", "1e-4"], "--projection-lr sets the Small-LITE projection's learning rate"),
        (["--projection-lr", "0", "--projection-dim", "8"], "--projection-lr must be greater than 0"),
        (
            ["--projection-init", "pca"],
            "--projection-init pca starts the Small-LITE projection: it needs --projection-dim",
        ),
    ],
)
def test_bad_flag_values_are_refused_by_name(flags, message, capsys):
    with pytest.raises(SystemExit):
        train_accelerate.parse_args(flags)
    assert message in capsys.readouterr().err


def test_output_dir_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(SystemExit):
        train_accelerate.parse_args(["--output-dir", str(tmp_path / "file")])
    assert "is a file" in capsys.readouterr().err and (tmp_path / "file").read_text() == "mine"


@pytest.mark.slow
def test_a_run_folder_refuses_other_settings_and_overwrite_waits_for_the_inputs(
    tmp_path, tiny_encoder_dir, train_file
):
    output = tmp_path / "run"
    common = ["--loss", "ce", "--batch-size", "4"]
    launch(tiny_run(tiny_encoder_dir, train_file, output, *common, "--max-steps", "4", "--stop-after", "2"))
    before = sorted(p.relative_to(output).as_posix() for p in output.rglob("*"))
    # Resuming with another learning rate would train the old weights under new flags: refused, nothing touched.
    other = launch(
        tiny_run(tiny_encoder_dir, train_file, output, *common, "--max-steps", "4", "--lr", "1e-3"), check=False
    )
    assert (
        other.returncode != 0 and "--lr 2.8e-05 → 0.001" in other.stderr and "--overwrite-output-dir" in other.stderr
    )
    assert sorted(p.relative_to(output).as_posix() for p in output.rglob("*")) == before
    # --overwrite-output-dir with a mistyped data path: the data is checked first, the old run survives.
    typo = launch(
        tiny_run(tiny_encoder_dir, tmp_path / "typo.jsonl", output, *common, "--overwrite-output-dir"), check=False
    )
    assert typo.returncode != 0 and "typo.jsonl: file not found" in typo.stderr
    assert sorted(p.relative_to(output).as_posix() for p in output.rglob("*")) == before
    # A folder with someone else's best/ and no run of ours to continue is not taken over.
    foreign = tmp_path / "foreign"
    (foreign / "best").mkdir(parents=True)
    (foreign / "best" / "notes.txt").write_text("keep")
    refused = launch(tiny_run(tiny_encoder_dir, train_file, foreign, *common, "--max-steps", "1"), check=False)
    assert refused.returncode != 0 and "cannot be continued" in refused.stderr
    assert (foreign / "best" / "notes.txt").read_text() == "keep"


@pytest.mark.slow
def test_a_diverging_run_stops_before_the_weights_turn_non_finite(tmp_path, tiny_encoder_dir, train_file):
    output = tmp_path / "run"
    result = launch(
        tiny_run(
            tiny_encoder_dir,
            train_file,
            output,
            "--loss",
            "ce",
            "--batch-size",
            "4",
            "--max-steps",
            "50",
            "--lr",
            "1e30",
            "--scorer-lr",
            "1e30",
            "--save-every",
            "1",
            "--max-grad-norm",
            "0",
        ),
        check=False,
    )
    assert result.returncode != 0 and "not finite" in result.stderr
    assert not (output / "best").exists()
    for line in (output / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"metrics.jsonl holds {name}"))
    for checkpoint in (output / "checkpoints").glob("step-*"):
        weights = load_file(checkpoint / "model.safetensors")
        assert all(torch.isfinite(value).all() for value in weights.values()), checkpoint.name


def test_dev_scores_that_are_not_finite_stop_the_run_and_never_reach_best(tmp_path, tokenizer, beir_fixture):
    from accelerate import Accelerator

    from lite_rerank.data import load_rerank_set

    model = tiny_model(tokenizer=tokenizer)
    with torch.no_grad():
        model.lite_scorer.out.bias.fill_(float("nan"))
    args = train_accelerate.parse_args(["--output-dir", str(tmp_path / "run"), "--eval-batch-size", "4"])
    dev = train_accelerate.DevSelection(
        args,
        Accelerator(cpu=True),
        load_rerank_set(str(beir_fixture), "dev", str(beir_fixture / "run.trec")),
        tokenizer,
        teacher=None,
    )
    progress = train_accelerate.TrainingProgress()
    with pytest.raises(SystemExit, match="dev scores are not finite"):
        dev.select(model, progress, log=lambda step, record: None)
    assert not (tmp_path / "run" / "best").exists() and progress.best_mrr == -1.0


def test_a_kill_between_the_renames_of_best_is_recovered(tmp_path):
    from lite_rerank.checkpoints import recover_folder, replace_folder

    best = tmp_path / "best"
    replace_folder(lambda tmp: (tmp.mkdir(), (tmp / "weights").write_text("v1")), best)
    best.rename(tmp_path / ".previous-best")  # killed after the first os.replace, before the second
    recover_folder(best)
    assert (best / "weights").read_text() == "v1"
    replace_folder(lambda tmp: (tmp.mkdir(), (tmp / "weights").write_text("v2")), best)
    assert (best / "weights").read_text() == "v2" and not (tmp_path / ".previous-best").exists()


# ---------------------------------------------------------------------------------------------- issue 24: run folders


def checkpoint_names(output) -> list[str]:
    return sorted(p.name for p in (output / "checkpoints").iterdir())


@pytest.mark.slow
def test_l1_u7_only_the_runs_own_checkpoints_are_resumed_from_or_pruned(tmp_path, tiny_encoder_dir, train_file):
    output = tmp_path / "run"
    common = ["--loss", "ce", "--batch-size", "4", "--max-steps", "4", "--save-every", "1", "--keep-checkpoints", "1"]
    launch(tiny_run(tiny_encoder_dir, train_file, output, *common, "--stop-after", "2"))
    checkpoints = output / "checkpoints"
    shutil.copytree(checkpoints / "step-00000002", checkpoints / "step-00000002.bak")  # a user's copy
    (checkpoints / "step-backup").mkdir()  # and a folder of their own
    (checkpoints / "step-backup" / "notes.txt").write_text("mine")
    resumed = launch(tiny_run(tiny_encoder_dir, train_file, output, *common))
    assert "resumed from " + str(checkpoints / "step-00000002") in resumed.stdout + resumed.stderr
    assert checkpoint_names(output) == ["step-00000002.bak", "step-00000004", "step-backup"]
    assert (checkpoints / "step-backup" / "notes.txt").read_text() == "mine"
    launch(
        tiny_run(
            tiny_encoder_dir, train_file, output, *common[:-2], "--keep-checkpoints", "1", "--overwrite-output-dir"
        )
    )
    assert checkpoint_names(output) == ["step-00000002.bak", "step-00000004", "step-backup"]  # still the user's


@pytest.mark.slow
def test_u5_a_damaged_newest_checkpoint_is_named_and_an_earlier_one_used_only_when_asked(
    tmp_path, tiny_encoder_dir, train_file
):
    output = tmp_path / "run"
    common = ["--loss", "ce", "--batch-size", "4", "--max-steps", "5", "--save-every", "1"]
    launch(tiny_run(tiny_encoder_dir, train_file, output, *common, "--stop-after", "3"))
    weights = output / "checkpoints" / "step-00000003" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, e.g. by a full disk during a copy
    refused = launch(tiny_run(tiny_encoder_dir, train_file, output, *common), check=False)
    assert refused.returncode != 0
    assert (
        "step-00000003 cannot be resumed from (model.safetensors is 1,000 bytes" in refused.stderr
        and "rerun with --resume-from step-00000002" in refused.stderr
    ), refused.stderr[-2000:]
    assert weights.stat().st_size == 1000  # left as it is
    resumed = launch(tiny_run(tiny_encoder_dir, train_file, output, *common, "--resume-from", "step-00000002"))
    assert "resumed from " + str(output / "checkpoints" / "step-00000002") in resumed.stdout + resumed.stderr
    assert "done: step 5" in resumed.stdout + resumed.stderr


PAYLOAD = """
import os, pickle
class Planted:
    def __reduce__(self):
        return (os.system, ("touch {marker}",))
with open({path!r}, "wb") as out:
    pickle.dump(Planted(), out)
"""


@pytest.mark.slow
def test_x1_resuming_runs_no_code_planted_in_a_checkpoint(tmp_path, tiny_encoder_dir, train_file):
    output, marker = tmp_path / "run", tmp_path / "code-ran"
    common = ["--loss", "ce", "--batch-size", "4", "--max-steps", "4", "--save-every", "1"]
    launch(tiny_run(tiny_encoder_dir, train_file, output, *common, "--stop-after", "2"))
    checkpoint = output / "checkpoints" / "step-00000002"
    planted = checkpoint / "custom_checkpoint_0.pkl"
    subprocess.run([sys.executable, "-c", PAYLOAD.format(marker=marker, path=str(planted))], check=True)
    refused = launch(tiny_run(tiny_encoder_dir, train_file, output, *common), check=False)
    assert refused.returncode != 0 and "holds files the run did not write" in refused.stderr
    assert not marker.exists()
    # An attacker who also rewrites the record of the checkpoint: accelerate's pickles load with weights_only=True.
    planted.unlink()
    rng = checkpoint / "random_states_0.pkl"
    subprocess.run([sys.executable, "-c", PAYLOAD.format(marker=marker, path=str(rng))], check=True)
    record = json.loads((checkpoint / "checkpoint.json").read_text())
    record["files"][rng.name] = {"size": rng.stat().st_size, "sha256": file_sha256(rng)}
    (checkpoint / "checkpoint.json").write_text(json.dumps(record))
    launch(tiny_run(tiny_encoder_dir, train_file, output, *common), check=False)
    assert not marker.exists()
    assert not list(checkpoint.glob("*.pkl")) or all(
        p.name.startswith("random_states") for p in checkpoint.glob("*.pkl")
    )


@pytest.mark.slow
def test_s13_a_second_training_on_a_run_folder_in_use_stops_naming_the_first(tmp_path, tiny_encoder_dir, train_file):
    from lite_rerank.locking import FolderLock

    output = tmp_path / "run"
    with FolderLock(output, "training run"):  # the first run, still going
        second = launch(
            tiny_run(tiny_encoder_dir, train_file, output, "--loss", "ce", "--batch-size", "4"), check=False
        )
    assert second.returncode != 0
    assert f"is in use by another training run (process {os.getpid()}" in second.stderr, second.stderr[-2000:]
    assert sorted(p.name for p in output.iterdir()) == [".lock"]


@pytest.mark.slow
def test_s17_u6_resuming_checks_the_data_and_names_a_damaged_run_config(tmp_path, tiny_encoder_dir, train_file):
    output = tmp_path / "run"
    data = tmp_path / "rows.jsonl"
    shutil.copy(train_file, data)
    common = ["--loss", "ce", "--batch-size", "4", "--max-steps", "4", "--save-every", "1"]
    launch(tiny_run(tiny_encoder_dir, data, output, *common, "--stop-after", "1"))
    data.write_text(data.read_text().replace("python web framework", "a changed query"))
    changed = launch(tiny_run(tiny_encoder_dir, data, output, *common), check=False)
    assert changed.returncode != 0
    assert f"the content of --train-data {data} changed since the run started" in changed.stderr
    (output / "run_config.json").write_text("")
    damaged = launch(tiny_run(tiny_encoder_dir, data, output, *common), check=False)
    assert damaged.returncode != 0 and "run_config.json does not read as JSON" in damaged.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("loss: mse\n", r"c.yaml: argument --loss: invalid choice: 'mse'"),
        ("batch-size: 6.5\n", r"c.yaml: argument --batch-size: invalid int value: '6.5'"),
        ("normalize-embeddings: maybe\n", r"c.yaml: normalize-embeddings must be true or false"),
        ("- a list\n", r"--config .*c.yaml: expected keys and values"),
    ],
)
def test_u13_config_values_are_checked_as_flags_are(tmp_path, capsys, content, message):
    config = tmp_path / "c.yaml"
    config.write_text(content)
    with pytest.raises(SystemExit):
        train_accelerate.parse_args(["--config", str(config)])
    assert re.search(message, capsys.readouterr().err)


def test_u13_config_values_reach_the_flags_with_their_types_and_flags_still_win(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("lr: 2.8e-5\nbatch-size: 16\nnormalize-embeddings: false\nprojection-dim: null\n")
    args = train_accelerate.parse_args(["--config", str(config), "--batch-size", "8"])
    assert (args.lr, args.batch_size, args.normalize_embeddings, args.projection_dim) == (2.8e-5, 8, False, None)


@pytest.mark.slow
def test_freeze_encoder_trains_only_the_scorer(tmp_path, tiny_encoder_dir, train_file):
    output = tmp_path / "run"
    launch(
        tiny_run(
            tiny_encoder_dir,
            train_file,
            output,
            "--loss",
            "ce",
            "--batch-size",
            "4",
            "--max-steps",
            "3",
            "--scorer-lr",
            "1e-2",
            "--freeze-encoder",
        )
    )
    trained = load_file(output / "best" / "model.safetensors")
    encoder = load_file(tiny_encoder_dir / "model.safetensors")
    for key, value in encoder.items():
        if not key.startswith("pooler."):
            assert torch.equal(trained[f"encoder.{key}"], value), key
    torch.manual_seed(42)  # the run's seed: the scorer it started from
    fresh = LiteModel.from_encoder(
        str(tiny_encoder_dir),
        **{"query_max_length": 8, "doc_max_length": 24, "row_hidden_size": 48, "col_hidden_size": 16},
    ).state_dict()
    assert not torch.equal(trained["lite_scorer.out.weight"], fresh["lite_scorer.out.weight"])
    records = training_records(output)
    assert all(record["lr"] == 0.0 for record in records) and any(record["scorer_lr"] > 0 for record in records)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--freeze-encoder", "--scorer", "maxsim"], "leaves nothing to train"),
        (["--freeze-encoder", "--scorer", "cross-encoder"], "is for LITE / MaxSim students"),
        (["--freeze-encoder", "--freeze-encoder-steps", "5"], "replaces --freeze-encoder-steps"),
    ],
)
def test_freeze_encoder_is_refused_where_it_makes_no_sense(capsys, flags, message):
    with pytest.raises(SystemExit):
        train_accelerate.parse_args(flags)
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_projection_init_pca_starts_small_lite_from_orthonormal_principal_directions(
    tmp_path, tiny_encoder_dir, train_file
):
    """With rates too small to move them in one step, the saved projection is the start: orthonormal rows and no
    bias (nn.Linear's random start is neither), and the run says where it came from."""
    output = tmp_path / "run"
    tiny = ["--loss", "ce", "--batch-size", "4", "--max-steps", "1", "--lr", "1e-12", "--scorer-lr", "1e-12"]
    launch(tiny_run(tiny_encoder_dir, train_file, output, *tiny, "--projection-dim", "8", "--projection-init", "pca"))
    trained = load_file(output / "best" / "model.safetensors")
    weight = trained["projection.weight"].double()
    assert torch.allclose(weight @ weight.T, torch.eye(8, dtype=torch.float64), atol=1e-4)
    assert trained["projection.bias"].abs().max() < 1e-6
    assert json.loads((output / "run_config.json").read_text())["projection_init"] == "pca"


def test_projection_init_pca_wider_than_the_encoder_is_refused_before_the_run_folder(
    tmp_path, tiny_encoder_dir, train_file
):
    flags = ["--loss", "ce", "--projection-dim", "64", "--projection-init", "pca"]
    result = launch(tiny_run(tiny_encoder_dir, train_file, tmp_path / "run", *flags), check=False)
    assert result.returncode != 0
    assert "--projection-dim 64 is wider than --encoder" in result.stderr and "(32)" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_residual_run_fits_the_maxsim_scale_and_counts_its_start_as_a_candidate(
    tmp_path, tiny_encoder_dir, beir_fixture
):
    """Issue 34: --scorer residual starts at MaxSim, its scale fitted to the teacher before the first step (checked
    against Margin-MSE's closed form, Σ m_t·m_s / Σ m_s² over margins), and the step-0 model is evaluated on dev
    as a candidate for best/."""
    fields = {flag.removeprefix("--").replace("-", "_"): int(value) for flag, value in zip(*[iter(TINY_SCORER)] * 2)}
    maxsim = LiteModel.from_encoder(str(tiny_encoder_dir), scorer="maxsim", **fields)
    rows = tiny_triplets(24)
    student = [maxsim.compute_score([[r["query"], r["positive"]], [r["query"], r["negative"]]]) for r in rows]
    for i, (row, (positive, negative)) in enumerate(zip(rows, student)):  # a teacher ≈ 3 × MaxSim, with noise
        row |= {"teacher_positive": 3 * positive + 0.1 * (i % 5), "teacher_negative": 3 * negative - 0.1 * (i % 3)}
    data = write_jsonl(tmp_path / "scored.jsonl", rows)
    output = tmp_path / "run"
    result = launch(
        tiny_run(tiny_encoder_dir, data, output, "--scorer", "residual", "--loss", "margin_mse", "--batch-size", "8")
        + ["--max-steps", "2", "--eval-every", "2", "--dev-data", str(beir_fixture), "--dev-run"]
        + [str(beir_fixture / "run.trec")]
    )
    fitted = float(re.search(r"residual start: .* 1 → ([0-9.]+)", result.stdout).group(1))
    # the reference: MaxSim on the same encoder, every row (24 < FIT_ROWS), margins by hand
    student_margins = torch.tensor([pos - neg for pos, neg in student], dtype=torch.float64)
    teacher_margins = torch.tensor([r["teacher_positive"] - r["teacher_negative"] for r in rows], dtype=torch.float64)
    expected = float((teacher_margins * student_margins).sum() / (student_margins**2).sum())
    assert fitted == pytest.approx(expected, rel=1e-3)
    log = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    dev = [record for record in log if "dev_mrr@10" in record]
    assert [record["step"] for record in dev] == [0, 2]
    # the step-0 candidate is MaxSim's ranking: its dev MRR@10 is the MaxSim model's
    import eval_rerank

    maxsim.save_pretrained(tmp_path / "maxsim")
    results = eval_rerank.main(
        [
            "--model",
            f"maxsim={tmp_path / 'maxsim'}",
            "--data",
            str(beir_fixture),
            "--run",
            str(beir_fixture / "run.trec"),
        ]
        + ["--no-progress", "--dtype", "float32"]
    )
    assert dev[0]["dev_mrr@10"] == pytest.approx(results["maxsim"]["mrr@10"], abs=1e-9)
    best = LiteModel.from_pretrained(output / "best")
    summary = json.loads((output / "best" / "training_summary.json").read_text())
    assert best.config.scorer == "residual" and summary["dev"]["mrr@10"] == max(r["dev_mrr@10"] for r in dev)
    if summary["step"] == 0:
        assert best.lite_scorer.maxsim_scale.item() == pytest.approx(fitted, rel=1e-4)
        assert best.lite_scorer.out.weight.abs().max().item() == 0


@pytest.mark.slow
def test_a_multi_vector_folder_as_encoder_trains_a_residual_lite_on_its_vectors(
    tmp_path, tiny_encoder_dir, train_file
):
    """--encoder takes a MultiVectorEncoder folder (issue 37): its lengths, projection, prompts and expansion are the
    model's; a flag that would change them is refused by name before any work."""
    folder = save_multi_vector(
        tmp_path / "mve",
        tiny_encoder_dir,
        expansion={"strategy": "fixed", "attend": False, "length": 16},
        prompts={"query": "[Q] ", "document": "[D] "},
    )
    output = tmp_path / "run"
    refused = launch(tiny_run(folder, train_file, output, "--scorer", "residual", "--loss", "ce"), check=False)
    assert refused.returncode != 0
    assert f"--query-max-length 8: --encoder {folder} is a multi-vector model with 16" in refused.stderr
    flags = ["--encoder", str(folder), "--train-data", str(train_file), "--output-dir", str(output)]
    flags += ["--mixed-precision", "no", "--num-workers", "0", "--scorer", "residual", "--row-hidden-size", "48"]
    launch([*flags, "--col-hidden-size", "16", "--loss", "ce", "--batch-size", "4", "--max-steps", "3"])
    model = LiteModel.from_pretrained(output / "best")
    assert model.config.query_expansion["length"] == 16 and model.config.query_prefix_ids
    assert (model.config.query_max_length, model.config.doc_max_length, model.config.projection_dim) == (16, 24, 12)
    assert len(model.compute_score([[QUERIES[0], DOCUMENTS[0]]])) == 1
