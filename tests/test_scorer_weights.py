"""Committed scorers (issue 34, item 4): a scorer folder round-trips onto its encoder, a wrong encoder or damaged
weights are refused by name, and scripts/evaluate_scorer.py scores it against MaxSim on the same embeddings."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import DOCUMENTS, QUERIES, ROOT, SCRIPT_ENV, write_beir_fixture

from lite_rerank.scorer_weights import ScorerError, build_model, encoder_weights_sha256, read_scorer, write_scorer
from modeling_lite import LiteModel

FIELDS = dict(query_max_length=8, doc_max_length=24, row_hidden_size=48, col_hidden_size=16)


@pytest.fixture
def scorer_folder(tmp_path, tiny_encoder_dir):
    torch.manual_seed(0)
    model = LiteModel.from_encoder(str(tiny_encoder_dir), scorer="residual", **FIELDS)
    with torch.no_grad():  # as training leaves it: a LITE term that is not zero, a scale that is not 1
        model.lite_scorer.out.weight.normal_(0, 0.05)
        model.lite_scorer.maxsim_scale.fill_(2.5)
    record = {"encoder": {"name": "tiny", "weights_sha256": encoder_weights_sha256(str(tiny_encoder_dir))}}
    write_scorer(tmp_path / "scorer", model, record)
    return tmp_path / "scorer", model


def test_a_scorer_folder_rebuilds_the_model_it_was_saved_from(scorer_folder, tiny_encoder_dir):
    folder, model = scorer_folder
    config, state, record = read_scorer(folder)
    assert config == {"scorer": "residual", "activation": "relu", "normalize_embeddings": True, **FIELDS}
    assert (folder / "scorer.safetensors").stat().st_size < 5_000_000
    rebuilt = build_model(folder, str(tiny_encoder_dir))
    pairs = [[query, doc] for query in QUERIES for doc in DOCUMENTS]
    assert rebuilt.compute_score(pairs) == pytest.approx(model.compute_score(pairs), abs=1e-6)


def test_a_scorer_with_query_token_weights_carries_them(tmp_path, tiny_encoder_dir):
    torch.manual_seed(0)
    model = LiteModel.from_encoder(str(tiny_encoder_dir), scorer="residual", query_token_weights=True, **FIELDS)
    with torch.no_grad():
        model.lite_scorer.out.weight.normal_(0, 0.05)
        model.query_token_weights.log_weights.normal_(0, 0.5)
    write_scorer(tmp_path / "scorer", model, {})
    config, _, _ = read_scorer(tmp_path / "scorer")
    assert (
        config["query_token_weights"] is True and (tmp_path / "scorer" / "query_token_weights.safetensors").is_file()
    )
    rebuilt = build_model(tmp_path / "scorer", str(tiny_encoder_dir))
    pairs = [[query, doc] for query in QUERIES for doc in DOCUMENTS]
    assert rebuilt.compute_score(pairs) == pytest.approx(model.compute_score(pairs), abs=1e-5)
    without = LiteModel.from_encoder(str(tiny_encoder_dir), scorer="residual", **FIELDS)
    without.lite_scorer.load_state_dict(model.lite_scorer.state_dict())
    assert max(abs(a - b) for a, b in zip(without.compute_score(pairs), model.compute_score(pairs))) > 1e-3
    (tmp_path / "scorer" / "query_token_weights.safetensors").unlink()
    with pytest.raises(ScorerError, match="no query_token_weights.safetensors"):
        build_model(tmp_path / "scorer", str(tiny_encoder_dir))


def test_another_encoder_or_a_scorer_of_other_sizes_is_refused(scorer_folder, tiny_encoder_dir, minilm_path):
    folder, _ = scorer_folder
    with pytest.raises(ScorerError, match="was trained on the encoder whose weights have sha256"):
        build_model(folder, str(minilm_path))
    record = json.loads((folder / "scorer.json").read_text())
    record["config"]["row_hidden_size"] = 40  # the weights are 48 wide
    (folder / "scorer.json").write_text(json.dumps(record))
    with pytest.raises(ScorerError, match="does not fit a residual scorer of these sizes"):
        build_model(folder, str(tiny_encoder_dir))
    record["config"] = {"scorer": "residual", "pad_token_id": 5}
    (folder / "scorer.json").write_text(json.dumps(record))
    with pytest.raises(ScorerError, match="must hold 'scorer' and only"):
        read_scorer(folder)
    record["config"] = {"scorer": "residual"}
    (folder / "scorer.json").write_text(json.dumps(record))
    (folder / "scorer.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ScorerError, match="scorer.safetensors does not read"):
        read_scorer(folder)


@pytest.mark.slow
def test_evaluate_scorer_scores_it_against_maxsim_with_bm25_made_on_the_fly(scorer_folder, tmp_path, tiny_encoder_dir):
    folder, model = scorer_folder
    data = write_beir_fixture(tmp_path / "beir")  # no runs/bm25.dev.trec: BM25 is made over the corpus
    out = tmp_path / "eval"
    command = [sys.executable, str(ROOT / "scripts" / "evaluate_scorer.py"), str(folder), "--encoder"]
    command += [str(tiny_encoder_dir), "--data", str(data), "--output-dir", str(out), "--dtype", "float32"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **SCRIPT_ENV}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BM25 top-30 of" in result.stdout and (out / "bm25.dev.trec").is_file()
    results = json.loads((out / "results.json").read_text())["models"]
    test = json.loads((out / "paired-test.json").read_text())
    assert test["difference"] == pytest.approx(
        results["scorer"]["mrr@10"] - results["MaxSim (zero-shot MaxSim)"]["mrr@10"], abs=1e-9
    )
    saved = LiteModel.from_pretrained(out / "model")  # the Hub folder it wrote scores as the scorer's model
    pairs = [[QUERIES[0], doc] for doc in DOCUMENTS]
    assert saved.compute_score(pairs) == pytest.approx(model.compute_score(pairs), abs=1e-6)
