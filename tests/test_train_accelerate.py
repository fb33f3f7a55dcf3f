"""Training end to end on CPU with tiny models built from configs; each run is a fresh process (as users run it)."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import DOCUMENTS, QUERIES, ROOT, SHARED_DEBIAN, TINY_BERT, write_jsonl
from safetensors.torch import load_file

import train_accelerate

TINY_SCORER = ["--query-max-length", "8", "--doc-max-length", "24", "--row-hidden-size", "48", "--col-hidden-size", "16"]


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    rows = [
        {"query": f"{q} {i}", "positive": DOCUMENTS[(i + k) % 4], "negative": DOCUMENTS[(i + k + 1) % 4]}
        for i, (k, q) in enumerate(itertools.islice(itertools.cycle(enumerate(QUERIES)), 24))
    ]
    return write_jsonl(tmp_path_factory.mktemp("data") / "triplets.jsonl", rows)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tokenizer):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    folder = tmp_path_factory.mktemp("teacher")
    fields = {key: value for key, value in TINY_BERT.items() if key != "model_type"}
    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_config(AutoConfig.for_model("bert", num_labels=1, **fields)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def launch(args, processes=1, check=True, **popen):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if processes == 1:
        command = [sys.executable, str(ROOT / "train_accelerate.py"), *args]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   str(ROOT / "train_accelerate.py"), *args]  # fmt: skip
    if popen:
        return subprocess.Popen(command, env=env, cwd=ROOT, **popen)
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def tiny_run(encoder, train_file, output, *extra):
    return ["--encoder", str(encoder), "--train-data", str(train_file), "--output-dir", str(output),
            "--mixed-precision", "no", "--num-workers", "0", "--log-every", "1", *TINY_SCORER, *extra]  # fmt: skip


def test_two_processes_shard_the_data_and_agree_on_dev_metrics(tmp_path, tiny_encoder_dir, train_file, teacher_dir,
                                                               beir_fixture):  # fmt: skip
    output = tmp_path / "run"
    result = launch(tiny_run(
        tiny_encoder_dir, train_file, output, "--loss", "margin_mse", "--teacher", str(teacher_dir),
        "--batch-size", "8", "--max-steps", "3", "--eval-every", "3",
        "--dev-data", str(beir_fixture), "--dev-run", str(beir_fixture / "run.trec"),
    ), processes=2)  # fmt: skip
    assert "2 process(es)" in result.stdout + result.stderr
    # Teacher scores were computed on the fly; each process cached the rows it trained on.
    shards = [
        {json.loads(line)["row"] for line in (output / "teacher-cache" / f"scores.rank{rank}.jsonl").read_text().splitlines()}
        for rank in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 12 and not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(range(24))
    summary = json.loads((output / "best" / "training_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["step"] == 3
    # The dev MRR@10 gathered from two processes equals a single-process evaluation of best/.
    import eval_rerank

    results = eval_rerank.main(["--model", f"best={output / 'best'}", "--data", str(beir_fixture),
                                "--run", str(beir_fixture / "run.trec"), "--no-progress"])  # fmt: skip
    assert summary["dev"]["mrr@10"] == pytest.approx(results["best"]["mrr@10"], abs=1e-6)
    assert summary["dev"]["ndcg@10"] == pytest.approx(results["best"]["ndcg@10"], abs=1e-6)
    log = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3] and all(r["pairs_per_s"] > 0 for r in log if "loss" in r)


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
    a, b = load_file(straight / "best" / "model.safetensors"), load_file(resumed / "best" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    checkpointed = load_file(resumed / "checkpoints" / "step-00000010" / "model.safetensors")
    assert torch.equal(checkpointed["lite_scorer.out.weight"], b["lite_scorer.out.weight"])
    assert sorted(p.name for p in (resumed / "checkpoints").glob("step-*")) == ["step-00000005", "step-00000010"]
    # Rerunning a finished run trains nothing, logs nothing and leaves best/ as it was.
    best_written = (resumed / "best" / "model.safetensors").stat().st_mtime_ns
    log_before = (resumed / "metrics.jsonl").read_text()
    third = launch(tiny_run(tiny_encoder_dir, train_file, resumed, *common))
    assert "done: step 10" in third.stdout + third.stderr
    assert (resumed / "metrics.jsonl").read_text() == log_before
    assert (resumed / "best" / "model.safetensors").stat().st_mtime_ns == best_written


def test_sigterm_to_the_process_group_saves_a_checkpoint_and_the_run_resumes(tmp_path, tiny_encoder_dir, train_file):
    output = tmp_path / "run"
    args = tiny_run(tiny_encoder_dir, train_file, output, "--loss", "ce", "--batch-size", "4", "--max-steps", "100000",
                    "--save-every", "100000")  # fmt: skip
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
    assert step >= 3
    again = launch(args + ["--stop-after", "1"])
    assert f"resumed from {saved[0]} (step {step}" in again.stdout + again.stderr
    assert (output / "checkpoints" / f"step-{step + 1:08d}").exists()


def test_training_on_debian_lowers_the_loss(tmp_path, minilm_path):
    output = tmp_path / "run"
    launch(["--encoder", str(minilm_path), "--train-data", str(SHARED_DEBIAN / "triplets.train.jsonl.gz"),
            "--max-train-rows", "32", "--loss", "ce", "--batch-size", "16", "--max-steps", "6", "--lr", "5e-5",
            "--scorer-lr", "1e-3", "--output-dir", str(output), "--mixed-precision", "no", "--num-workers", "0",
            "--query-max-length", "16", "--doc-max-length", "64", "--log-every", "1"])  # fmt: skip
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
    losses = [json.loads(line)["loss"] for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]


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


def test_overwrite_output_dir_starts_clean(tmp_path, tiny_encoder_dir, train_file):
    output = tmp_path / "run"
    common = ["--loss", "ce", "--batch-size", "4"]
    launch(tiny_run(tiny_encoder_dir, train_file, output, *common, "--max-steps", "10", "--stop-after", "3"))
    launch(tiny_run(tiny_encoder_dir, train_file, output, *common, "--max-steps", "2", "--overwrite-output-dir"))
    assert sorted(p.name for p in (output / "checkpoints").glob("step-*")) == ["step-00000002"]
    steps = [json.loads(line)["step"] for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_freeze_encoder_steps_train_only_the_scorer_first(tmp_path, tiny_encoder_dir, train_file):
    output = tmp_path / "run"
    launch(tiny_run(tiny_encoder_dir, train_file, output, "--loss", "ce", "--batch-size", "4", "--max-steps", "2",
                    "--freeze-encoder-steps", "2", "--lr", "1e-2", "--scorer-lr", "1e-2"))  # fmt: skip
    trained = load_file(output / "best" / "model.safetensors")
    initial = load_file(tiny_encoder_dir / "model.safetensors")
    for key, value in initial.items():
        if not key.startswith("pooler."):
            assert torch.equal(trained[f"encoder.{key}"], value), key
    from modeling_lite import LiteModel

    torch.manual_seed(42)
    fresh = LiteModel.from_encoder(str(tiny_encoder_dir), query_max_length=8, doc_max_length=24, row_hidden_size=48,
                                   col_hidden_size=16)  # fmt: skip
    assert not torch.equal(trained["lite_scorer.out.weight"], fresh.state_dict()["lite_scorer.out.weight"])
