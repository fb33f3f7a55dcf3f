import json

import pytest
from conftest import TINY_DISTILBERT, tiny_config
from transformers import AutoConfig, BertConfig, DistilBertConfig

from configuration_lite import LiteConfig


def test_defaults_follow_the_paper():
    config = LiteConfig()
    assert isinstance(config.encoder_config, DistilBertConfig)
    assert (config.encoder_config.dim, config.encoder_config.n_layers, config.encoder_config.vocab_size) == (
        768,
        6,
        30522,
    )
    assert (config.query_max_length, config.doc_max_length) == (30, 200)
    assert (config.row_hidden_size, config.col_hidden_size) == (2400, 360)
    assert config.scorer == "lite" and config.activation == "relu" and config.normalize_embeddings
    assert config.projection_dim is None and config.doc_stored_tokens is None
    assert config.num_labels == 1
    assert config.model_type == "lite_reranker"
    assert set(config.auto_map) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}


def test_nested_encoder_config_round_trips_through_json(tmp_path):
    config = tiny_config(projection_dim=16, doc_stored_tokens=8)
    config.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["encoder_config"]["model_type"] == "bert" and raw["encoder_config"]["hidden_size"] == 32
    loaded = LiteConfig.from_pretrained(tmp_path)
    assert isinstance(loaded.encoder_config, BertConfig)
    assert loaded.encoder_config.hidden_size == 32
    assert (loaded.projection_dim, loaded.doc_stored_tokens, loaded.embedding_dim) == (16, 8, 16)
    assert loaded.doc_vectors == 8


def test_any_bert_like_encoder_config_is_accepted():
    config = tiny_config(encoder=TINY_DISTILBERT)
    assert isinstance(config.encoder_config, DistilBertConfig) and config.hidden_size == 32
    assert tiny_config(encoder=AutoConfig.for_model("bert", hidden_size=48).to_dict()).hidden_size == 48


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(scorer="colbert"), "scorer"),
        (dict(doc_stored_tokens=500), "doc_stored_tokens"),
        (dict(doc_stored_tokens=0), "doc_stored_tokens"),
        (dict(projection_dim=0), "projection_dim"),
        (dict(query_max_length=1), "query_max_length"),
        (dict(activation="swishy"), "activation"),
        (dict(doc_max_length=4096), "max_position_embeddings"),
    ],
)
def test_bad_fields_fail_with_the_field_named(fields, message):
    with pytest.raises(Exception, match=message):
        tiny_config(**fields)
