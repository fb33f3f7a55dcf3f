"""The trained students the repository ships (models/, issue 56), tested from the committed files as a user clones
them: the files are what their provenance records, every route loads them in a fresh process, their committed dev
runs give the recorded figures and the paired test, and the weights reproduce those runs' scores."""

import json
import sys

import pytest
import torch
from conftest import ROOT, SHARED_DEBIAN, needs_shared_data

sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402
import ship_model  # noqa: E402

from lite_rerank.data import find_file, read_beir_texts, read_qrels, read_trec_run, texts_of  # noqa: E402
from lite_rerank.publishing import WIDGET_EXAMPLES, validate_stage  # noqa: E402
from lite_rerank.significance import compare, reciprocal_ranks  # noqa: E402
from lite_rerank.utils import file_sha256  # noqa: E402
from modeling_lite import LiteModel  # noqa: E402

SHIPPED = demo.SHIPPED  # the main job's two rows: what a user gets from a clone
PAIRED_TEST = ROOT / "results" / "shipped-students-paired-test.json"
LITE, MAXSIM = "LITE student", "MaxSim student"


def provenance(name: str) -> dict:
    return json.loads((SHIPPED[name] / ship_model.PROVENANCE).read_text())


def test_both_students_are_shipped_with_their_provenance_and_dev_run():
    for name, folder in SHIPPED.items():
        for file in ("model.safetensors", "config.json", "README.md", ship_model.PROVENANCE, ship_model.DEV_RUN):
            assert (folder / file).is_file(), f"{name}: {folder / file} is not in the clone"
    assert provenance(LITE)["scorer"] == "residual" and provenance(MAXSIM)["scorer"] == "maxsim"


@pytest.mark.parametrize("name", list(SHIPPED))
def test_the_files_are_what_the_provenance_records(name):
    folder, record = SHIPPED[name], provenance(name)
    assert file_sha256(folder / "model.safetensors") == record["weights"]["sha256"]
    assert (folder / "model.safetensors").stat().st_size == record["weights"]["bytes"] <= ship_model.MAX_BYTES
    config = json.loads((folder / "config.json").read_text())
    # half-precision storage, float32 compute: every route loads the model in float32
    assert config.get("torch_dtype", config.get("dtype")) == "float32"
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    # the same recipe, rows, seed and step budget for both students (the baseline is not cut short)
    lite, maxsim = provenance(LITE)["recipe"], provenance(MAXSIM)["recipe"]
    assert lite["seed"] == maxsim["seed"] and lite["supervision"] == maxsim["supervision"]
    assert lite["train_flags"]["max_steps"] == maxsim["train_flags"]["max_steps"]
    assert record["selection"]["kept_step"] in {int(step) for step in record["selection"]["mrr@10_by_step"]}
    # the card is rendered from the provenance: it names the kept step and the dev figure
    card = (folder / "README.md").read_text()
    assert f"{record['dev']['float32']['mrr@10']:.4f}" in card


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHIPPED))
def test_every_route_loads_the_committed_folder_in_a_fresh_process(name):
    examples = json.loads(WIDGET_EXAMPLES.read_text())
    pairs = [[example["query"], passage] for example in examples for passage in example["passages"]]
    model = LiteModel.from_pretrained(SHIPPED[name]).float().eval()
    expected = model.compute_score(pairs)
    report = validate_stage(SHIPPED[name], pairs, expected, model.config.scorer)
    assert report  # validate_stage raises on any route that fails or scores otherwise


@needs_shared_data
def test_the_committed_dev_runs_give_the_recorded_figures_and_the_paired_test():
    import pytrec_eval  # an independent reference for MRR@10

    qrels = read_qrels(SHARED_DEBIAN / "qrels" / "dev.tsv")
    ranks = {}
    for name, folder in SHIPPED.items():
        run = read_trec_run(folder / ship_model.DEV_RUN)
        ranks[name] = reciprocal_ranks(run, qrels)
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
        # RR@10: the top 10 of each ranking, given scores that keep its order (pytrec_eval sorts by score)
        top10 = {q: {doc: float(10 - i) for i, (doc, _) in enumerate(ranking[:10])} for q, ranking in run.items()}
        per_query = evaluator.evaluate(top10)
        mrr = sum(per_query.get(q, {}).get("recip_rank", 0.0) for q in qrels) / len(qrels)
        assert mrr == pytest.approx(provenance(name)["dev"]["float32"]["mrr@10"], abs=1e-9)
        assert len(ranks[name]) == provenance(name)["dev"]["float32"]["num_queries"]
    recorded = json.loads(PAIRED_TEST.read_text())
    test = compare(ranks[MAXSIM], ranks[LITE])
    for key in ("difference", "wins", "losses", "ties"):
        assert test[key] == pytest.approx(recorded[key], abs=1e-12), key
    assert test["p_value"] == pytest.approx(recorded["p_value"], abs=0.01)


@needs_shared_data
@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHIPPED))
def test_the_committed_weights_reproduce_their_dev_run(name):
    """The first dev queries of the committed run, re-scored from the committed weights in float32: the same scores
    (to float32 rounding scaled by the scores), hence the same ranking."""
    run = read_trec_run(SHIPPED[name] / ship_model.DEV_RUN)
    queries = read_beir_texts(find_file(SHARED_DEBIAN, "queries.jsonl"), with_title=False)
    corpus = read_beir_texts(find_file(SHARED_DEBIAN, "corpus.jsonl"), with_title=True)
    model = LiteModel.from_pretrained(SHIPPED[name]).float().eval()
    for qid in sorted(run)[:6]:
        docs = [doc for doc, _ in run[qid]]
        with torch.inference_mode():
            scores = model.compute_score([[queries[qid], text] for text in texts_of(corpus, docs)])
        recorded = torch.tensor([score for _, score in run[qid]])
        tolerance = 1e-4 * max(1.0, recorded.abs().max().item())
        assert torch.allclose(torch.as_tensor(scores, dtype=torch.float32), recorded, atol=tolerance), qid
