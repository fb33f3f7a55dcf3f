import pytest
from conftest import DOCUMENTS, QUERIES

from handler import EndpointHandler
from modeling_lite import LiteModel


@pytest.fixture(scope="module")
def handler(saved_tiny_model):
    return EndpointHandler(str(saved_tiny_model))


def test_ranking_payload(handler, saved_tiny_model):
    expected = LiteModel.from_pretrained(saved_tiny_model).rerank(QUERIES[0], DOCUMENTS)
    out = handler({"inputs": {"query": QUERIES[0], "texts": DOCUMENTS}})
    assert [r["index"] for r in out] == [r["index"] for r in expected]
    assert [r["score"] for r in out] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert all(set(r) == {"index", "score"} for r in out)
    with_text = handler({"inputs": {"query": QUERIES[0], "texts": DOCUMENTS, "return_documents": True}})
    assert all(r["text"] == DOCUMENTS[r["index"]] for r in with_text)


def test_pairs_payload(handler, saved_tiny_model):
    pairs = [[QUERIES[0], doc] for doc in DOCUMENTS]
    expected = LiteModel.from_pretrained(saved_tiny_model).compute_score(pairs)
    assert handler({"inputs": pairs})["scores"] == pytest.approx(expected, abs=1e-5)
    assert handler({"inputs": pairs[:1]})["scores"] == pytest.approx(expected[:1], abs=1e-5)


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"query": "q"}, '"inputs"'),
        ({"inputs": {"query": "", "texts": ["a"]}}, "inputs.query"),
        ({"inputs": {"query": "q", "texts": []}}, "inputs.texts"),
        ({"inputs": {"query": "q", "texts": "not a list"}}, "inputs.texts"),
        ({"inputs": [["q", "d"], ["q"]]}, r'"inputs"\[1\]'),
        ({"inputs": 42}, "must be"),
        ("not even a dict", '"inputs"'),
    ],
)
def test_bad_payloads_get_clear_errors(handler, payload, message):
    with pytest.raises(ValueError, match=message):
        handler(payload)
