"""research/maxsim_view.py: the copy keeps a Small-LITE model's embeddings and scores them with MaxSim, checked
against a naive MaxSim loop over the original model's own token vectors."""

import sys

import pytest
import torch
from product_fixtures import (  # noqa: F401 (fixtures)
    DOCUMENTS,
    QUERIES,
    ROOT,
    minilm_path,
    tiny_encoder_dir,
    tiny_model,
    tokenizer,
)

pytestmark = pytest.mark.research

sys.path.insert(0, str(ROOT / "research"))
import maxsim_view  # noqa: E402

from modeling_lite import LiteModel  # noqa: E402


def naive_maxsim(query_vectors, query_mask, doc_vectors, doc_mask) -> float:
    total = 0.0
    for i in range(query_vectors.shape[0]):
        if query_mask[i]:
            total += max(float(query_vectors[i] @ doc_vectors[j]) for j in range(doc_vectors.shape[0]) if doc_mask[j])
    return total


def test_the_copy_scores_the_trained_embeddings_with_maxsim(tmp_path, tokenizer):  # noqa: F811
    source = tmp_path / "small-lite"
    trained = tiny_model(seed=3, tokenizer=tokenizer, projection_dim=8)
    trained.save_pretrained(source)
    maxsim_view.main([str(source), str(tmp_path / "view")])
    view = LiteModel.from_pretrained(tmp_path / "view").eval()
    assert view.config.scorer == "maxsim" and view.lite_scorer is None
    assert view.config.projection_dim == 8
    with torch.no_grad():
        queries, query_mask = trained.encode_queries(QUERIES)
        docs, doc_mask = trained.encode_documents(DOCUMENTS)
        scores = view.compute_score([(q, d) for q in QUERIES for d in DOCUMENTS])
    expected = [
        naive_maxsim(queries[i], query_mask[i], docs[j], doc_mask[j])
        for i in range(len(QUERIES))
        for j in range(len(DOCUMENTS))
    ]
    assert scores == pytest.approx(expected, abs=1e-5)
    with pytest.raises(SystemExit):  # never writes over a folder
        maxsim_view.main([str(source), str(tmp_path / "view")])


def test_a_fresh_projection_on_a_pretrained_encoder(tmp_path, tiny_encoder_dir):  # noqa: F811
    maxsim_view.main(["--encoder", str(tiny_encoder_dir), "--projection-dim", "4", str(tmp_path / "fresh")])
    view = LiteModel.from_pretrained(tmp_path / "fresh")
    assert view.config.scorer == "maxsim" and view.projection.out_features == 4
    with pytest.raises(SystemExit):
        maxsim_view.main(["--encoder", str(tiny_encoder_dir), str(tmp_path / "plain")])


def test_a_pca_projection_on_a_pretrained_encoder_is_the_training_start(tmp_path, tiny_encoder_dir):  # noqa: F811
    import gzip
    import json

    train = tmp_path / "train.jsonl.gz"
    with gzip.open(train, "wt") as out:
        for i, text in enumerate(DOCUMENTS * 3):
            out.write(json.dumps({"query": f"query {i}", "positive": text, "negative": DOCUMENTS[0]}) + "\n")
    flags = ["--encoder", str(tiny_encoder_dir), "--projection-dim", "4", "--projection-init", "pca"]
    maxsim_view.main([*flags, "--train-data", str(train), str(tmp_path / "pca")])
    weight = LiteModel.from_pretrained(tmp_path / "pca").projection.weight.detach().double()
    assert torch.allclose(weight @ weight.T, torch.eye(4, dtype=torch.float64), atol=1e-4)
    with pytest.raises(SystemExit):
        maxsim_view.main([*flags, str(tmp_path / "no-rows")])
