"""research/frozen_encoder.py on a small generated set with a tiny encoder (a smoke run of every label variant)."""

import gzip
import json
import random
import shutil
import sys

import pytest
import torch
from product_fixtures import ROOT, minilm_path, tiny_encoder_dir, tokenizer  # noqa: F401 (fixtures)
from safetensors.torch import load_file, save_file

pytestmark = pytest.mark.research

sys.path.insert(0, str(ROOT / "research"))
import frozen_encoder  # noqa: E402

import eval_rerank  # noqa: E402
from lite_rerank.data import read_qrels, read_trec_run  # noqa: E402
from lite_rerank.significance import reciprocal_ranks  # noqa: E402

WORDS = "grep image editor python web framework font viewer archive compress audio player network shell".split()


def write_gz(path, rows):
    with gzip.open(path, "wt") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def data(tmp_path):
    rng = random.Random(0)
    corpus = {f"d{i}": " ".join(rng.choices(WORDS, k=rng.randint(5, 15))) for i in range(40)}
    queries = {f"q{i}": " ".join(corpus[f"d{i}"].split()[:3]) for i in range(24)}
    data, negatives = tmp_path / "data", tmp_path / "neg"
    (data / "qrels").mkdir(parents=True)
    (data / "runs").mkdir()
    (negatives / "selection" / "qrels").mkdir(parents=True)
    write_gz(data / "corpus.jsonl.gz", [{"_id": d, "title": "", "text": t} for d, t in corpus.items()])
    write_gz(data / "queries.jsonl.gz", [{"_id": q, "text": t} for q, t in queries.items()])
    for name in ("corpus.jsonl.gz", "queries.jsonl.gz"):
        (negatives / "selection" / name).symlink_to(data / name)

    def run(qids):
        return "".join(
            f"{q} Q0 {d} {r} {10 - r} bm25\n"
            for q in qids
            for r, d in enumerate([f"d{q[1:]}", *rng.sample(sorted(corpus), 5)], 1)
        )

    train, selection, dev = [f"q{i}" for i in range(16)], ["q16", "q17", "q18", "q19"], ["q20", "q21", "q22", "q23"]
    (data / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\td{q[1:]}\t1\n" for q in dev)
    )
    (data / "runs" / "bm25.dev.trec").write_text(run(dev))
    (negatives / "selection" / "qrels" / "selection.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\td{q[1:]}\t1\n" for q in selection)
    )
    (negatives / "selection" / "bm25.selection.trec").write_text(run(selection))
    rows = [
        {
            "query": queries[q],
            "positive": corpus[f"d{q[1:]}"],
            "negatives": [corpus[f"d{(int(q[1:]) + k) % 40}"] for k in range(1, 9)],
        }
        for q in train
    ]
    write_gz(negatives / "listwise.train.jsonl.gz", rows)
    return data, negatives


def test_every_label_variant_trains_and_maxsim_equals_eval_rerank(tmp_path, data, tiny_encoder_dir):  # noqa: F811
    data_dir, negatives = data
    variants = [name for name, spec in frozen_encoder.VARIANTS.items() if not spec[3]]
    report = frozen_encoder.main(
        [
            "--encoder",
            str(tiny_encoder_dir),
            "--data",
            str(data_dir),
            "--negatives",
            str(negatives),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--dtype",
            "float32",
            "--variants",
            *variants,
            "--output",
            str(tmp_path / "new" / "report.json"),  # a folder that does not exist yet
        ]
    )
    reference = eval_rerank.main(
        [
            "--zero-shot-encoder",
            f"tiny={tiny_encoder_dir}",
            "--data",
            str(data_dir),
            "--run",
            str(data_dir / "runs" / "bm25.dev.trec"),
            "--no-progress",
            "--query-max-length",
            "30",
            "--doc-max-length",
            "200",
            "--dtype",
            "float32",
        ]
    )
    maxsim = report["MaxSim (frozen all-MiniLM-L6-v2)"]
    assert maxsim["dev"]["mrr@10"] == pytest.approx(reference["tiny (zero-shot MaxSim)"]["mrr@10"], abs=1e-6)
    for name in variants:
        record = report[name]
        assert [e["epoch"] for e in record["epochs"]] == [1, 2] and record["selected_epoch"] in (1, 2)
        assert record["epochs"][-1]["loss"] > 0 and 0.0 <= record["dev"]["mrr@10"] <= 1.0
    assert json.loads((tmp_path / "new" / "report.json").read_text()) == report
    # each dev row's TREC run, read back independently, gives the row's MRR@10
    qrels = read_qrels(data_dir / "qrels" / "dev.tsv")
    for name in ["MaxSim (frozen all-MiniLM-L6-v2)", *variants]:
        run = read_trec_run(frozen_encoder.trec_path(tmp_path / "new" / "report.json", name))
        per_query = reciprocal_ranks(run, qrels)
        assert sum(per_query.values()) / len(per_query) == pytest.approx(report[name]["dev"]["mrr@10"], abs=1e-9)


def test_any_beir_folder_and_split_can_be_the_evaluation(tmp_path, data, tiny_encoder_dir):  # noqa: F811
    data_dir, negatives = data
    (data_dir / "qrels" / "test.tsv").write_text(
        (data_dir / "qrels" / "dev.tsv").read_text().replace("q23\td23\t1\n", "")
    )
    test_run = tmp_path / "test-candidates.trec"
    test_run.write_text((data_dir / "runs" / "bm25.dev.trec").read_text())
    report = frozen_encoder.main(
        [
            "--encoder",
            str(tiny_encoder_dir),
            "--data",
            str(data_dir),
            "--negatives",
            str(negatives),
            "--eval-split",
            "test",
            "--eval-run",
            str(test_run),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--dtype",
            "float32",
            "--variants",
            "ce, 1 hard negative",
            "--output",
            str(tmp_path / "report.json"),
        ]
    )
    reference = eval_rerank.main(
        [
            "--zero-shot-encoder",
            f"tiny={tiny_encoder_dir}",
            "--data",
            str(data_dir),
            "--split",
            "test",
            "--run",
            str(test_run),
            "--no-progress",
            "--query-max-length",
            "30",
            "--doc-max-length",
            "200",
            "--dtype",
            "float32",
        ]
    )
    maxsim = report["MaxSim (frozen all-MiniLM-L6-v2)"]["dev"]
    assert maxsim["mrr@10"] == pytest.approx(reference["tiny (zero-shot MaxSim)"]["mrr@10"], abs=1e-6)
    assert reference["tiny (zero-shot MaxSim)"]["num_queries"] == 3


def test_a_scorer_started_by_imitating_maxsim_ranks_closer_to_maxsim(tmp_path, data, tiny_encoder_dir):  # noqa: F811
    """Item 5 of issue 23: the imitation reads no label; afterwards the scorer agrees with MaxSim more than before."""
    data_dir, negatives = data
    report = frozen_encoder.main(
        [
            "--encoder",
            str(tiny_encoder_dir),
            "--data",
            str(data_dir),
            "--negatives",
            str(negatives),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--lr",
            "1e-2",
            "--dtype",
            "float32",
            "--variants",
            "ce, 1 hard negative",
            "--start",
            "maxsim-imitation",
            "--imitation-epochs",
            "3",
            "--output",
            str(tmp_path / "report.json"),
        ]
    )
    record = report["ce, 1 hard negative"]
    assert record["start"] == "maxsim-imitation" and record["imitation"]["epochs"] == 3
    assert record["imitation"]["last_loss"] < record["imitation"]["first_loss"]
    assert 0.0 <= record["imitation"]["selection"]["mrr@10"] <= 1.0 and len(record["epochs"]) == 1


def test_a_cache_of_another_encoders_embeddings_is_refused(tmp_path, data, tiny_encoder_dir):  # noqa: F811
    data_dir, negatives = data
    argv = ["--data", str(data_dir), "--negatives", str(negatives), "--variants", "ce, 1 hard negative"]
    argv += ["--epochs", "1", "--batch-size", "4", "--dtype", "float32", "--cache-dir", str(tmp_path / "cache")]
    frozen_encoder.main([*argv, "--encoder", str(tiny_encoder_dir), "--output", str(tmp_path / "a.json")])
    other = tmp_path / "other-encoder"
    shutil.copytree(tiny_encoder_dir, other)
    weights = load_file(other / "model.safetensors")
    weights = {name: tensor + 0.01 if tensor.is_floating_point() else tensor for name, tensor in weights.items()}
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    moved = tmp_path / "moved-copy"  # the same weights elsewhere: the cache serves it
    shutil.copytree(tiny_encoder_dir, moved)
    frozen_encoder.main([*argv, "--encoder", str(moved), "--output", str(tmp_path / "c.json")])
    with pytest.raises(SystemExit, match=r"--cache-dir .*cache: holds the embeddings of .*, not of .*other-encoder"):
        frozen_encoder.main([*argv, "--encoder", str(other), "--output", str(tmp_path / "b.json")])
    assert not (tmp_path / "b.json").exists()


def test_a_residual_scorer_starts_at_maxsim_its_start_a_candidate_and_its_weights_saved(
    tmp_path,
    data,
    tiny_encoder_dir,  # noqa: F811
):
    """Issue 34, item 2: with --scorer residual, epoch 0 (before any step) is MaxSim itself on the teacher's scale and
    a candidate of the selection; the selected scorer's weights are written next to the report."""
    data_dir, negatives = data
    output = tmp_path / "report.json"
    argv = ["--encoder", str(tiny_encoder_dir), "--data", str(data_dir), "--negatives", str(negatives)]
    argv += ["--epochs", "2", "--batch-size", "4", "--dtype", "float32", "--variants", "ce, 7 hard negatives"]
    report = frozen_encoder.main([*argv, "--scorer", "residual", "--output", str(output)])
    record, maxsim = report["ce, 7 hard negatives"], report["MaxSim (frozen all-MiniLM-L6-v2)"]
    assert record["scorer"] == "residual" and [e["epoch"] for e in record["epochs"]] == [0, 1, 2]
    assert record["epochs"][0]["selection"] == maxsim["selection"]  # the untrained start ranks as MaxSim
    assert record["maxsim_scale"] > 0
    best = max(record["epochs"], key=lambda e: e["selection"]["mrr@10"])
    assert record["selected_epoch"] == best["epoch"]
    weights = load_file(frozen_encoder.scorer_path(output, "ce, 7 hard negatives"))
    assert "maxsim_scale" in weights and "row_mlp.dense_in.weight" in weights
    if record["selected_epoch"] == 0:
        assert weights["out.weight"].abs().max() == 0
    with pytest.raises(SystemExit):  # the residual starts at MaxSim: no other start
        frozen_encoder.main([*argv, "--scorer", "residual", "--start", "maxsim-imitation", "--output", str(output)])


def export(tmp_path, report, encoder):
    """research/export_scorer.py on the report's "ce, 7 hard negatives" into TMP/scorer, with a stand-in packed
    supervision (only its files' bytes matter: the export records their sha256). Returns (folder, packed prefix)."""
    import export_scorer

    packed = tmp_path / "packed" / "real.top30"
    packed.parent.mkdir()
    for suffix in ("queries.jsonl.gz", "safetensors"):
        packed.with_name(f"real.top30.{suffix}").write_bytes(suffix.encode())
    packed.with_name("real.top30.provenance.json").write_text(
        json.dumps({"scored_from": {"teacher_weights_sha256": "t"}})
    )
    folder = tmp_path / "scorer"
    export_scorer.main(
        ["--report", str(report), "--variant", "ce, 7 hard negatives", "--supervision", str(packed)]
        + ["--encoder", str(encoder), "--output", str(folder)]
    )
    return folder, packed


def test_export_writes_a_scorer_folder_that_rebuilds_the_selected_scorer(tmp_path, data, tiny_encoder_dir):  # noqa: F811
    import export_scorer

    from lite_rerank.scorer_weights import build_model, read_scorer

    data_dir, negatives = data
    output = tmp_path / "report.json"
    argv = ["--encoder", str(tiny_encoder_dir), "--data", str(data_dir), "--negatives", str(negatives)]
    argv += ["--epochs", "1", "--batch-size", "4", "--dtype", "float32", "--variants", "ce, 7 hard negatives"]
    frozen_encoder.main([*argv, "--scorer", "residual", "--output", str(output)])
    folder, packed = export(tmp_path, output, tiny_encoder_dir)
    config, state, record = read_scorer(folder)
    selected = load_file(frozen_encoder.scorer_path(output, "ce, 7 hard negatives"))
    assert config["scorer"] == "residual" and set(state) == set(selected)
    assert all(torch.equal(state[name], selected[name]) for name in state)
    report = json.loads(output.read_text())["ce, 7 hard negatives"]
    assert (
        record["dev"]["scorer"] == report["dev"] and record["selection"]["selected_epoch"] == report["selected_epoch"]
    )
    assert record["training"]["supervision"]["teacher_weights_sha256"] == "t"
    model = build_model(folder, str(tiny_encoder_dir))
    assert torch.equal(model.lite_scorer.maxsim_scale.detach(), selected["maxsim_scale"])
    with pytest.raises(SystemExit, match="which is an input of this run"):  # never over the report it reads
        export_scorer.main(
            ["--report", str(output), "--variant", "ce, 7 hard negatives", "--supervision", str(packed)]
            + ["--encoder", str(tiny_encoder_dir), "--output", str(tmp_path)]
        )


def test_fixed_query_token_weights_score_as_the_model_with_those_weights(tmp_path, data, tiny_encoder_dir):  # noqa: F811
    """--query-token-weights (issue 34): the cached query vectors weighted per token score as LiteModel with
    query_token_weights and those log-weights does from the texts (fp16 cache: to 5e-3); the residual's start
    (epoch 0) ranks as the weighted MaxSim; plain MaxSim is still reported."""
    from modeling_lite import LiteModel

    data_dir, negatives = data
    model = LiteModel.from_encoder(str(tiny_encoder_dir), scorer="maxsim", query_token_weights=True).eval()
    log_weights = torch.randn(model.config.encoder_config.vocab_size, generator=torch.Generator().manual_seed(0))
    save_file({"log_weights": log_weights}, tmp_path / "weights.safetensors")
    output = tmp_path / "report.json"
    argv = ["--encoder", str(tiny_encoder_dir), "--data", str(data_dir), "--negatives", str(negatives)]
    argv += ["--epochs", "1", "--batch-size", "4", "--dtype", "float32", "--variants", "ce, 7 hard negatives"]
    argv += ["--query-token-weights", str(tmp_path / "weights.safetensors"), "--scorer", "residual"]
    report = frozen_encoder.main([*argv, "--output", str(output)])
    weighted = report["MaxSim, weighted query tokens (frozen all-MiniLM-L6-v2)"]
    assert report["ce, 7 hard negatives"]["epochs"][0]["selection"] == weighted["selection"]
    with torch.no_grad():
        model.query_token_weights.log_weights.copy_(log_weights)
    queries = {json.loads(line)["_id"]: json.loads(line)["text"] for line in gzip.open(data_dir / "queries.jsonl.gz")}
    corpus = {json.loads(line)["_id"]: json.loads(line)["text"] for line in gzip.open(data_dir / "corpus.jsonl.gz")}
    gaps = {"weighted": 0.0, "plain": 0.0}
    for name, key in (
        ("MaxSim, weighted query tokens (frozen all-MiniLM-L6-v2)", "weighted"),
        ("MaxSim (frozen all-MiniLM-L6-v2)", "plain"),
    ):
        for qid, ranked in read_trec_run(frozen_encoder.trec_path(output, name)).items():
            expected = model.compute_score([[queries[qid], corpus[doc]] for doc, _ in ranked])
            gaps[key] = max(gaps[key], max(abs(s - e) for (_, s), e in zip(ranked, expected)))
    assert gaps["weighted"] < 5e-3 < gaps["plain"]


def test_a_scorer_trained_on_query_token_weights_is_exported_and_rebuilt_with_them(
    tmp_path,
    data,
    tiny_encoder_dir,  # noqa: F811
):
    from lite_rerank.scorer_weights import TOKEN_WEIGHTS, ScorerError, build_model, read_scorer

    data_dir, negatives = data
    log_weights = torch.randn(30522, generator=torch.Generator().manual_seed(0))
    save_file({"log_weights": log_weights}, tmp_path / "weights.safetensors")
    output = tmp_path / "report.json"
    argv = ["--encoder", str(tiny_encoder_dir), "--data", str(data_dir), "--negatives", str(negatives)]
    argv += ["--epochs", "1", "--batch-size", "4", "--dtype", "float32", "--variants", "ce, 7 hard negatives"]
    argv += ["--query-token-weights", str(tmp_path / "weights.safetensors")]
    frozen_encoder.main([*argv, "--scorer", "residual", "--output", str(output)])
    folder, _ = export(tmp_path, output, tiny_encoder_dir)
    config, _, record = read_scorer(folder)
    assert config["query_token_weights"] is True and "weighted_maxsim" in record["dev"]
    model = build_model(folder, str(tiny_encoder_dir))
    assert torch.equal(model.query_token_weights.log_weights.detach(), log_weights)
    # the rebuilt model scores the dev candidates as the run did on its float16 cache
    queries = {json.loads(line)["_id"]: json.loads(line)["text"] for line in gzip.open(data_dir / "queries.jsonl.gz")}
    corpus = {json.loads(line)["_id"]: json.loads(line)["text"] for line in gzip.open(data_dir / "corpus.jsonl.gz")}
    for qid, ranked in read_trec_run(frozen_encoder.trec_path(output, "ce, 7 hard negatives")).items():
        expected = model.compute_score([[queries[qid], corpus[doc]] for doc, _ in ranked])
        # float16 vectors, weights up to e³: a relative tolerance
        assert all(abs(score - e) <= 1e-3 * abs(e) for (_, score), e in zip(ranked, expected))
    (folder / TOKEN_WEIGHTS).unlink()
    with pytest.raises(ScorerError, match="query_token_weights is true, but no query_token_weights.safetensors"):
        read_scorer(folder)
