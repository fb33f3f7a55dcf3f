import json

import pytest
import torch
from conftest import SHARED_DEBIAN, needs_shared_data, tiny_model, write_jsonl
from ranx import Qrels, Run
from ranx import evaluate as ranx_evaluate

import eval_rerank
from lite_rerank.data import read_beir_texts, read_trec_run
from modeling_lite import LiteModel


@pytest.mark.slow
@needs_shared_data
def test_first_stage_on_debian_dev_equals_ranx(tmp_path):
    run = SHARED_DEBIAN / "runs" / "bm25.dev.trec"
    results = eval_rerank.main(["--data", str(SHARED_DEBIAN), "--run", str(run), "--output", str(tmp_path / "r.json")])
    lines = (SHARED_DEBIAN / "qrels" / "dev.tsv").read_text().splitlines()[1:]
    qrels = {}
    for line in lines:
        qid, docid, grade = line.split()
        qrels.setdefault(qid, {})[docid] = int(grade)
    reference = ranx_evaluate(Qrels(qrels), Run.from_file(str(run), kind="trec"), ["mrr@10", "recall@30"])
    first_stage = results["first-stage"]
    assert first_stage["num_queries"] == 920
    assert first_stage["mrr@10"] == pytest.approx(float(reference["mrr@10"]), abs=1e-12)
    assert first_stage["recall@k"] == pytest.approx(float(reference["recall@30"]), abs=1e-12)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["data"]["candidate_depth"] == 30


def test_two_models_end_to_end_on_a_beir_fixture(tmp_path, beir_fixture, tokenizer, capsys):
    for name, scorer in (("lite", "lite"), ("maxsim", "maxsim")):
        tiny_model(tokenizer=tokenizer, scorer=scorer).save_pretrained(tmp_path / name)
    output = tmp_path / "out" / "results.json"
    results = eval_rerank.main(
        [
            "--model",
            f"lite={tmp_path / 'lite'}",
            "--model",
            str(tmp_path / "maxsim"),
            "--data",
            str(beir_fixture),
            "--run",
            str(beir_fixture / "run.trec"),
            "--output",
            str(output),
            "--batch-size",
            "2",
            "--dtype",
            "float32",  # the reference below scores in float32 (auto is bf16 on a CPU with native bf16)
            "--no-progress",
        ]
    )
    table = capsys.readouterr().out
    assert "| first-stage |" in table and "| lite |" in table and "| maxsim |" in table
    report = json.loads(output.read_text())
    assert set(report["models"]) == {"first-stage", "lite", "maxsim"}
    for values in report["models"].values():
        assert set(values) == {"mrr@10", "ndcg@10", "recall@10", "recall@k", "num_queries"}
        assert values["num_queries"] == 3
    assert report["data"]["counts"]["candidates_missing_from_corpus"] == 1
    assert "BEIR" in report["protocol"]
    # First stage, by hand: q0 → d0 at rank 2 (MRR 1/2); q1 → d1 at rank 2 (1/2); q2 has no candidates (0).
    assert results["first-stage"]["mrr@10"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert results["first-stage"]["recall@k"] == pytest.approx((1 + 0.5 + 0) / 3)
    # Each model's run file holds the model's own scores, best first.
    model = LiteModel.from_pretrained(tmp_path / "lite")
    corpus = read_beir_texts(beir_fixture / "corpus.jsonl", with_title=True)
    run = read_trec_run(output.with_name("results.lite.trec"))
    assert set(run) == {"q0", "q1"}
    expected = model.rerank("how do i search files recursively", [corpus[d] for d in ["d3", "d0", "d4", "d1"]])
    assert [docid for docid, _ in run["q0"]] == [["d3", "d0", "d4", "d1"][r["index"]] for r in expected]
    assert [score for _, score in run["q0"]] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert read_trec_run(output.with_name("results.first-stage.trec"))["q1"] == [("d5", 6.0), ("d1", 5.0), ("d6", 3.0)]


def test_msmarco_own_pool_from_a_local_v21_file(tmp_path, tokenizer):
    tiny_model(tokenizer=tokenizer).save_pretrained(tmp_path / "model")
    rows = [
        {
            "query_id": 1,
            "query": "python web framework",
            "passages": {"is_selected": [0, 1], "passage_text": ["cats", "flask is a python web framework"]},
        },
        {"query_id": 2, "query": "nothing selected", "passages": {"is_selected": [0, 0], "passage_text": ["a", "b"]}},
    ]
    data = write_jsonl(tmp_path / "dev.jsonl", rows)
    results = eval_rerank.main(["--model", str(tmp_path / "model"), "--data", str(data), "--no-progress"])
    assert results["model"]["num_queries"] == 1 and results["first-stage"]["mrr@10"] == 0.5


def test_models_that_encode_alike_share_one_encoding_and_score_as_alone(
    tmp_path, beir_fixture, tokenizer, monkeypatch
):
    """LITE trained on a frozen encoder, MaxSim on that encoder and a model there with query token weights: every
    passage is encoded once for the three rows (the weights act on queries only), the queries once per weighting,
    and each row equals the model's scores evaluated alone."""
    lite = tiny_model(tokenizer=tokenizer)
    maxsim = tiny_model(tokenizer=tokenizer, scorer="maxsim")
    weighted = tiny_model(tokenizer=tokenizer, scorer="residual", query_token_weights=True)
    for model in (maxsim, weighted):
        model.encoder.load_state_dict(lite.encoder.state_dict())
    with torch.no_grad():
        weighted.query_token_weights.log_weights.normal_(0, 0.5)
    other = tiny_model(seed=4, tokenizer=tokenizer)  # another encoder: encoded on its own
    names = ("lite", "maxsim", "weighted", "other")
    for name, model in zip(names, (lite, maxsim, weighted, other)):
        model.save_pretrained(tmp_path / name)
    base = [
        "--data",
        str(beir_fixture),
        "--run",
        str(beir_fixture / "run.trec"),
        "--dtype",
        "float32",
        "--no-progress",
    ]
    alone = {
        name: eval_rerank.main(
            ["--model", f"{name}={tmp_path / name}", *base, "--output", str(tmp_path / f"{name}.json")]
        )
        for name in names
    }
    from lite_rerank import evaluation

    encoded = []
    real_encode = evaluation.encode_texts
    monkeypatch.setattr(evaluation, "encode_texts", lambda *a, **k: encoded.append(a[3]) or real_encode(*a, **k))
    models = [arg for name in names for arg in ("--model", f"{name}={tmp_path / name}")]
    together = eval_rerank.main([*models, *base, "--output", str(tmp_path / "all.json")])
    assert encoded.count("documents") == 2  # lite + maxsim + weighted once, other once
    assert encoded.count("queries") == 3  # lite + maxsim, weighted, other
    assert alone["weighted"]["weighted"] != alone["maxsim"]["maxsim"]  # the weights change the scores
    for name in names:
        assert together[name] == alone[name][name]
        assert (tmp_path / f"all.{name}.trec").read_text() == (tmp_path / f"{name}.{name}.trec").read_text()


def test_a_memory_budget_smaller_than_one_query_scores_as_one_block(tmp_path, beir_fixture, tokenizer, monkeypatch):
    """Issue 57: blocks sized by the passages' vectors. A budget below one query's candidates makes one block per
    query (each encodes its own passages), with the scores of the single block a large budget gives."""
    from lite_rerank import evaluation

    tiny_model(tokenizer=tokenizer, scorer="residual").save_pretrained(tmp_path / "lite")
    blocks = []
    original = evaluation.query_blocks
    monkeypatch.setattr(evaluation, "query_blocks", lambda *a, **k: [blocks.append(b) or b for b in original(*a, **k)])
    runs = {}
    for budget in ("1e-9", "2"):
        output = tmp_path / budget / "results.json"
        argv = [
            "--model",
            f"lite={tmp_path / 'lite'}",
            "--data",
            str(beir_fixture),
            "--run",
            str(beir_fixture / "run.trec"),
        ]
        argv += ["--output", str(output), "--dtype", "float32", "--no-progress", "--memory-budget-gb", budget]
        eval_rerank.main(argv)
        runs[budget] = read_trec_run(output.with_name("results.lite.trec"))
    assert [len(qids) for qids, _ in blocks] == [1, 1, 1, 3]  # q0, q1, q2 alone; then all three together
    # the same rankings and, to float32 rounding (passages are encoded in other batches: another summation order on
    # another CPU), the same scores
    assert {q: [d for d, _ in hits] for q, hits in runs["1e-9"].items()} == {
        q: [d for d, _ in hits] for q, hits in runs["2"].items()
    }
    for qid, hits in runs["1e-9"].items():
        assert [s for _, s in hits] == pytest.approx([s for _, s in runs["2"][qid]], rel=1e-5, abs=1e-5)
    with pytest.raises(SystemExit):
        eval_rerank.parse_args(["--data", "x", "--memory-budget-gb", "0"])
