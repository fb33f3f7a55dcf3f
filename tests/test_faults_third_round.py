"""Fault cases, third round (issue 36): outputs that are inputs, what a folder may name, and what a record claims.
Each case is driven as a user drives it and ends in the right answer or a clear error naming the file, line, flag or
field; nothing is written over an input. Labels follow the issue (L = data lost, X = security, S = silently wrong,
R = resource, U = unclear error)."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, SCRIPT_ENV, TINY_BERT, tiny_model

import train_accelerate
from configuration_lite import LiteConfig
from lite_rerank import hardware
from modeling_lite import LiteModel

sys.path.insert(0, str(ROOT / "scripts"))


# ---------------------------------------------------------------- S23: LITE_NATIVE_BF16 spellings


@pytest.mark.parametrize(
    "value, native",
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off ", False),
    ],
)
def test_s23_the_usual_spellings_of_lite_native_bf16_are_understood(monkeypatch, value, native):
    monkeypatch.setenv(hardware.ENV_OVERRIDE, value)
    hardware.native_bf16.cache_clear()
    try:
        assert hardware.native_bf16()[0] is native
    finally:
        hardware.native_bf16.cache_clear()


@pytest.mark.parametrize("value", ["2", "", "maybe", "1.0"])
def test_s23_any_other_value_of_lite_native_bf16_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv(hardware.ENV_OVERRIDE, value)
    hardware.native_bf16.cache_clear()
    try:
        with pytest.raises(SystemExit, match=r"LITE_NATIVE_BF16=.* is not understood: set it to 1 .* or 0"):
            hardware.native_bf16()
    finally:
        hardware.native_bf16.cache_clear()


def test_s23_an_entry_point_refuses_a_misspelt_lite_native_bf16_in_one_line(tmp_path, beir_fixture):
    command = [sys.executable, str(ROOT / "eval_rerank.py"), "--data", str(beir_fixture)]
    command += ["--run", str(beir_fixture / "run.trec")]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**SCRIPT_ENV, "LITE_NATIVE_BF16": "false-ish"}, cwd=tmp_path
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "LITE_NATIVE_BF16='false-ish' is not understood" in result.stderr


# ---------------------------------------------------------------- U25: special token ids and size fields


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("pad_token_id", 40000, "pad_token_id must be a token id of the encoder's vocabulary"),
        ("sep_token_id", -1, "sep_token_id must be a token id"),
        ("projection_dim", True, "projection_dim must be a positive integer or None, got True"),
        ("doc_stored_tokens", True, "doc_stored_tokens must be between 1 and doc_max_length"),
    ],
)
def test_u25_a_config_field_of_the_wrong_kind_is_refused_when_the_folder_loads(tmp_path, field, value, message):
    config = LiteConfig(encoder_config=dict(TINY_BERT)).to_dict()
    config[field] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        LiteConfig.from_pretrained(tmp_path)


# ---------------------------------------------------------------- U21: YAML booleans


def test_u21_yaml_no_for_mixed_precision_means_no(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("mixed-precision: no\n")
    assert train_accelerate.parse_args(["--config", str(config)]).mixed_precision == "no"


def test_u21_a_yaml_boolean_for_a_flag_that_takes_no_boolean_is_named(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("scorer: yes\n")
    with pytest.raises(SystemExit):
        train_accelerate.parse_args(["--config", str(config)])
    assert "scorer: YAML read the value as true (a boolean)" in capsys.readouterr().err


# ---------------------------------------------------------------- S25, R1: config.json against the weights


@pytest.fixture
def saved_lite(tmp_path, tokenizer):
    folder = tmp_path / "lite"
    tiny_model(tokenizer=tokenizer).save_pretrained(folder)
    return folder


def edit_config(folder, change):
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def test_s25_a_config_switched_to_maxsim_does_not_drop_the_trained_scorer_silently(saved_lite):
    edit_config(saved_lite, lambda c: c.update(scorer="maxsim"))
    with pytest.raises(ValueError, match=r"holds \d+ weight\(s\) this config has no place for .*lite_scorer"):
        LiteModel.from_pretrained(saved_lite)


def test_s25_a_config_with_fewer_encoder_layers_is_refused(saved_lite):
    edit_config(saved_lite, lambda c: c["encoder_config"].update(num_hidden_layers=1))
    with pytest.raises(ValueError, match="asks for an encoder of 1 layers, the weights hold 2"):
        LiteModel.from_pretrained(saved_lite)


def test_r1_a_config_of_20000_layers_is_refused_before_the_model_is_built(saved_lite, monkeypatch):
    edit_config(saved_lite, lambda c: c["encoder_config"].update(num_hidden_layers=20000))
    built = []
    monkeypatch.setattr(LiteModel, "__init__", lambda *a, **k: built.append(1) or pytest.fail("model built"))
    with pytest.raises(ValueError, match="asks for an encoder of 20000 layers, the weights hold 2"):
        LiteModel.from_pretrained(saved_lite)
    assert not built


def test_s25_a_changed_hidden_size_names_the_shapes(saved_lite):
    edit_config(saved_lite, lambda c: c.update(row_hidden_size=40))
    with pytest.raises(ValueError, match=r"has other shapes for \[\('lite_scorer.row_mlp"):
        LiteModel.from_pretrained(saved_lite)
