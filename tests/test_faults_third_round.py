# ruff: noqa: F811 (pytest fixtures imported from the tools' own test modules)
"""Fault cases, third round (issue 36): outputs that are inputs, what a folder may name, and what a record claims.
Each case is driven as a user drives it and ends in the right answer or a clear error naming the file, line, flag or
field; nothing is written over an input. Labels follow the issue (L = data lost, X = security, S = silently wrong,
R = resource, U = unclear error)."""

import gzip
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import (
    DOCUMENTS,
    QUERIES,
    ROOT,
    SCRIPT_ENV,
    TINY_BERT,
    script_command,
    tiny_model,
    tiny_triplets,
    write_jsonl,
)

import push_to_hub
import train_accelerate
from configuration_lite import LITE_AUTO_MAP, LiteConfig
from lite_rerank import hardware, publishing
from modeling_lite import LiteModel

sys.path.insert(0, str(ROOT / "scripts"))
import build_doc_cache  # noqa: E402
import mine_bm25_negatives  # noqa: E402
import pack_supervision  # noqa: E402
import pseudo_query_candidates  # noqa: E402
import supervision_workflow  # noqa: E402
import teacher_scores  # noqa: E402
from pack_supervision import files_of  # noqa: E402
from test_make_pseudo_queries import collection  # noqa: E402, F401 (fixture)
from test_make_pseudo_queries import run as run_pseudo  # noqa: E402
from test_mine_bm25_negatives import DEPTH, beir  # noqa: E402, F401 (fixture)
from test_pack_supervision import scored  # noqa: E402, F401 (fixture)
from test_teacher_scores import listwise, teacher  # noqa: E402, F401 (fixtures)

from lite_rerank.bm25 import BM25Index, same_ranking  # noqa: E402
from lite_rerank.doc_cache import CacheError, DocumentCache, build_document_cache  # noqa: E402
from lite_rerank.utils import provenance_path  # noqa: E402

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


# ---------------------------------------------------------------- L5-L9: an output that is an input


def unchanged(*paths):
    """{path: bytes} now, to compare after a refused command."""
    return {path: path.read_bytes() for path in paths}


def test_l5_teacher_scores_refuses_an_output_that_is_its_training_file(tmp_path, teacher, listwise):
    path, _ = listwise
    data = tmp_path / "rows.jsonl.gz"
    data.write_bytes(gzip.compress(path.read_bytes()))
    before = unchanged(data)
    with pytest.raises(SystemExit, match=r"--output would write .*rows.jsonl.gz, which is an input of this run"):
        teacher_scores.main(["--teacher", str(teacher), "--train-data", str(data), "--output", str(data)])
    assert unchanged(data) == before and not provenance_path(data).exists()


def test_l6_unpack_refuses_to_write_over_the_corpus_or_the_packed_queries(tmp_path, scored):
    corpus, path, _ = scored
    prefix = tmp_path / "packed" / "p"
    pack_supervision.main(["pack", "--scored", str(path), "--corpus", str(corpus), "--output", str(prefix)])
    queries = files_of(prefix)["queries.jsonl.gz"]
    before = unchanged(corpus, queries)
    for target, flag in ((corpus, "--corpus"), (queries, "--packed")):
        with pytest.raises(SystemExit, match=rf"which is an input of this run \({flag}\)"):
            pack_supervision.main(
                ["unpack", "--packed", str(prefix), "--corpus", str(corpus), "--output", str(target)]
            )
    assert unchanged(corpus, queries) == before


def test_l7_pack_refuses_a_prefix_whose_provenance_is_the_scorings(tmp_path, scored):
    corpus, path, _ = scored  # scored.train.jsonl.gz with scored.train.provenance.json
    record = provenance_path(path)
    before = unchanged(record)
    with pytest.raises(SystemExit, match=r"scored.train.provenance.json, which is an input of this run \(--scored\)"):
        pack_supervision.main(
            ["pack", "--scored", str(path), "--corpus", str(corpus), "--output", str(tmp_path / "scored.train")]
        )
    assert unchanged(record) == before


def test_l8_pseudo_query_candidates_refuses_to_replace_its_pseudo_queries(tmp_path):
    pseudo = tmp_path / "pseudo.jsonl.gz"
    pseudo.write_bytes(gzip.compress(b'{"query": "a b c", "source": "d1"}\n'))
    before = unchanged(pseudo)
    with pytest.raises(SystemExit, match=r"which is an input of this run \(--pseudo-queries\)"):
        pseudo_query_candidates.main(["--pseudo-queries", str(pseudo), "--output", str(pseudo)])
    assert unchanged(pseudo) == before


def test_l9_mine_bm25_negatives_refuses_to_write_into_its_data_folder(beir):
    data = beir[0]
    before = unchanged(data / "triplets.train.jsonl.gz")
    with pytest.raises(SystemExit, match=r"triplets.train.jsonl.gz, which is an input of this run \(--data\)"):
        mine_bm25_negatives.main(["--data", str(data), "--depth", str(DEPTH), "--output-dir", str(data)])
    assert unchanged(data / "triplets.train.jsonl.gz") == before


# ---------------------------------------------------------------- S20, U22: the selection split


def test_s20_a_rerun_without_the_selection_split_refuses_to_keep_the_stale_one(beir, tmp_path):
    data, out = beir[0], tmp_path / "out"
    argv = ["--data", str(data), "--depth", str(DEPTH), "--output-dir", str(out)]
    mine_bm25_negatives.main([*argv, "--selection-queries", "4", "--negatives-per-query", "2"])
    before = unchanged(out / "listwise.train.jsonl.gz")
    with pytest.raises(SystemExit, match="holds a selection split from an earlier run"):
        mine_bm25_negatives.main([*argv, "--negatives-per-query", "2"])
    assert unchanged(out / "listwise.train.jsonl.gz") == before


@pytest.mark.parametrize("count, message", [("-1", "must be 0 .none. or more"), ("16", "holds only 16 training")])
def test_u22_selection_queries_out_of_range_are_refused_before_anything_is_written(
    beir,  # noqa: F811
    tmp_path,
    capsys,
    count,
    message,
):
    data, out = beir[0], tmp_path / "out"
    with pytest.raises(SystemExit) as refused:
        mine_bm25_negatives.main(["--data", str(data), "--output-dir", str(out), "--selection-queries", count])
    assert re.search(message, f"{refused.value} {capsys.readouterr().err}")  # a parser error or a SystemExit message
    assert not out.exists()


# ---------------------------------------------------------------- S26: BM25 ties


def test_s26_bm25_ranks_tied_passages_by_id_whatever_order_bm25s_returns():
    index = BM25Index({"d10": "alpha bravo", "d2": "alpha bravo", "d1": "charlie", "d3": "alpha bravo"})
    hits = index.search(["alpha"], 2)[0]
    assert [d for d, _ in hits] == ["d2", "d3"]  # three tied at the top: by id, and d10 after d3 (natural order)
    assert same_ranking([("d3", hits[0][1]), ("d10", hits[0][1])], index.search(["alpha"], 3)[0])
    assert not same_ranking([("d1", 1.0), ("d2", 1.0)], index.search(["alpha"], 3)[0])


def test_s26_a_reference_run_in_another_cpus_tie_order_is_reproduced_and_a_real_difference_is_not():
    corpus = {
        "d10": "alpha bravo",
        "d2": "alpha bravo",
        "d1": "charlie",
        "d3": "alpha bravo",
        "d4": "alpha bravo charlie delta",
    }
    index = BM25Index(corpus)
    hits = index.search(["alpha"], 4)[0]
    tie, lower = hits[0][1], hits[3][1]
    assert [d for d, _ in hits] == ["d2", "d3", "d10", "d4"] and lower < tie
    other_cpu = {"q1": [("d10", tie), ("d3", tie)]}  # the same tie group, cut at 2, in another order
    mine_bm25_negatives.check_reproduces(index, {"q1": "alpha"}, other_cpu, 2)
    wrong = {"q1": [("d10", tie), ("d4", lower)]}
    with pytest.raises(SystemExit, match="does not reproduce the reference run for query q1"):
        mine_bm25_negatives.check_reproduces(index, {"q1": "alpha"}, wrong, 2)


def test_s26_a_tie_group_larger_than_the_lookahead_is_read_whole():
    """The Debian set ties a hundred Firefox language packs for one query: a tie group that outruns the 32 extra hits
    asked of bm25s must still be read whole, or the passages kept at the cut (and the check against the reference
    run, which failed on the real data for q4690) depend on bm25s's order."""
    corpus = {f"d{i}": "firefox language pack" for i in range(1, 121)}
    corpus.update({"d0": "firefox language pack esr ligurian", "d500": "unrelated text"})
    index = BM25Index(corpus)
    top = index.search(["ligurian firefox language pack"], 5)[0]
    assert [d for d, _ in top] == ["d0", "d1", "d2", "d3", "d4"]
    tie = top[1][1]
    whole = index.search(["ligurian firefox language pack"], 5, whole_ties=True)[0]
    assert len(whole) == 121 and {d for d, s in whole[1:]} == {f"d{i}" for i in range(1, 121)}
    other_cpu = {"q1": [("d0", top[0][1]), ("d119", tie), ("d77", tie), ("d100", tie), ("d5", tie)]}
    mine_bm25_negatives.check_reproduces(index, {"q1": "ligurian firefox language pack"}, other_cpu, 5)


# ---------------------------------------------------------------- S24, U24: pseudo-queries


def test_s24_training_positives_judged_for_a_held_out_query_give_no_pseudo_query(tmp_path, collection, capsys):
    data, negatives, kinds = collection
    with open(data / "qrels" / "dev.tsv", "a") as qrels:
        qrels.write("q20\td3\t1\n")  # d3 is q3's (training) positive, and now judged for dev query q20 too
    rows = run_pseudo(collection, tmp_path / "p.jsonl.gz")
    assert "d3" not in {row["source"] for row in rows} and len(rows) > 0
    assert "1 training positive(s) left out, judged for a held-out query too: d3" in capsys.readouterr().out


def test_u24_a_negatives_folder_without_its_selection_split_is_named(tmp_path, collection):
    data, negatives, _ = collection
    shutil.rmtree(negatives / "selection")
    with pytest.raises(SystemExit, match=r"--negatives .*: no selection split there"):
        run_pseudo(collection, tmp_path / "p.jsonl.gz")


# ---------------------------------------------------------------- X2, U19, U20, U26: document caches


CORPUS = {f"d{i}": f"{doc} {i}" for i, doc in enumerate(DOCUMENTS * 2)}


def test_x2_a_cache_json_naming_a_file_outside_its_chunks_is_refused_and_nothing_is_deleted(tmp_path, tokenizer):
    model_dir = tmp_path / "model"
    tiny_model(tokenizer=tokenizer).save_pretrained(model_dir)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": k, "text": v} for k, v in CORPUS.items()])
    cache = tmp_path / "caches" / "c"
    argv = ["--model", str(model_dir), "--corpus", str(corpus), "--output", str(cache), "--no-progress"]
    build_doc_cache.main(argv)
    notes = tmp_path / "caches" / "notes.txt"
    notes.write_text("mine")
    manifest = json.loads((cache / "cache.json").read_text())
    manifest["chunks"].append({**manifest["chunks"][0], "file": "../notes.txt"})
    (cache / "cache.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match=r"names the file '../notes.txt', which is not a chunk of a cache"):
        build_doc_cache.main(argv)
    assert notes.read_text() == "mine"
    with pytest.raises(CacheError, match="not a chunk of a cache"):
        DocumentCache(cache)  # reading refuses it too


def test_x2_a_cache_may_not_be_built_into_the_models_folder(tmp_path, saved_tiny_model):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "a", "text": "t"}])
    with pytest.raises(SystemExit, match=r"which is an input of this run \(--model\)"):
        build_doc_cache.main(
            ["--model", str(saved_tiny_model), "--corpus", str(corpus), "--output", str(saved_tiny_model)]
        )


def test_u19_the_same_weights_under_another_path_use_the_cache(tmp_path, tokenizer):
    folder = tmp_path / "tiny"
    tiny_model(tokenizer=tokenizer).save_pretrained(folder)
    built = build_document_cache(LiteModel.from_pretrained(folder), CORPUS, tmp_path / "cache", progress=False)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    for source in (f"{folder}/", copy):  # a trailing slash, a copied folder: the same model
        again = build_document_cache(LiteModel.from_pretrained(source), CORPUS, tmp_path / "cache", progress=False)
        assert again.manifest["chunks"] == built.manifest["chunks"]  # nothing encoded again


def test_u20_a_model_in_another_precision_is_named_as_such(tmp_path, tokenizer):
    model = tiny_model(tokenizer=tokenizer)
    build_document_cache(model, CORPUS, tmp_path / "cache", progress=False)
    assert json.loads((tmp_path / "cache" / "cache.json").read_text())["model_dtype"] == "float32"
    with pytest.raises(
        CacheError, match=r"built by the same model computing in float32; this one computes in bfloat16"
    ):
        build_document_cache(model.to(torch.bfloat16), CORPUS, tmp_path / "cache", progress=False)
    other = tiny_model(seed=3, tokenizer=tokenizer).to(torch.bfloat16)
    with pytest.raises(CacheError, match="built by another model"):
        build_document_cache(other, CORPUS, tmp_path / "cache", progress=False)


@pytest.mark.parametrize(
    "documents, message",
    [
        ({1: "a passage", 2: "another"}, r"document ids must be strings .* got 1 \(int\)"),
        ({"d1": None}, "document 'd1' has no text"),
    ],
)
def test_u26_non_string_ids_and_missing_texts_are_named_with_the_cache(tmp_path, tokenizer, documents, message):
    with pytest.raises(CacheError, match=rf"{tmp_path / 'cache'}: {message}"):
        build_document_cache(tiny_model(tokenizer=tokenizer), documents, tmp_path / "cache", progress=False)


# ---------------------------------------------------------------- X3: what a staged config.json publishes


def test_x3_a_foreign_auto_map_is_replaced_and_an_unknown_key_is_refused(tmp_path, tokenizer):
    model_dir = tmp_path / "model"
    tiny_model(tokenizer=tokenizer).save_pretrained(model_dir)
    evil = "attacker/evil--modeling_evil.EvilModel"
    edit_config(model_dir, lambda c: c["auto_map"].update(AutoModelForSequenceClassification=evil))
    stage = tmp_path / "stage"
    push_to_hub.main(["--model-dir", str(model_dir), "--repo-id", "me/x", "--dry-run", "--stage-dir", str(stage)])
    staged = json.loads((stage / "config.json").read_text())
    assert staged["auto_map"] == LITE_AUTO_MAP and evil not in (stage / "config.json").read_text()
    edit_config(model_dir, lambda c: c.update(api_key="hf_secret"))
    with pytest.raises(SystemExit, match=r"holds key\(s\) \['api_key'\] that a LITE config does not have"):
        push_to_hub.main(["--model-dir", str(model_dir), "--repo-id", "me/x", "--dry-run", "--stage-dir", str(stage)])
    assert "hf_secret" not in (stage / "config.json").read_text()  # the earlier stage is untouched


def test_x3_validation_fails_when_a_route_the_card_advertises_does_not_reproduce_the_model(tmp_path, tokenizer):
    """Every route is loaded: a stage whose handler.py scores otherwise is caught, not only a broken AutoModel."""
    model = tiny_model(tokenizer=tokenizer)
    model.save_pretrained(tmp_path / "model")
    stage = publishing.stage_model(LiteModel.from_pretrained(tmp_path / "model"), tmp_path / "stage", "me/x")
    handler = stage / "handler.py"
    broken = (
        handler.read_text()
        .replace(
            'return {"scores": self.model.compute_score(',
            'return {"scores": [1 + s for s in self.model.compute_score(',
            1,
        )
        .replace("batch_size=batch_size)}", "batch_size=batch_size)]}", 1)
    )
    assert broken != handler.read_text()
    handler.write_text(broken)
    pairs = [[QUERIES[0], doc] for doc in DOCUMENTS]
    with pytest.raises(publishing.StageError, match="handler pairs: max"):
        publishing.validate_stage(stage, pairs, model.compute_score(pairs), "lite")


# ---------------------------------------------------------------- U27: an empty passage in the pair route


def test_u27_the_pipeline_scores_an_empty_passage_as_every_other_route_does(saved_tiny_model):
    from transformers import pipeline

    model = LiteModel.from_pretrained(saved_tiny_model)
    pipe = pipeline("text-classification", model=str(saved_tiny_model), trust_remote_code=True)
    raw = pipe([{"text": QUERIES[0], "text_pair": ""}], function_to_apply="none")[0]["score"]
    assert raw == pytest.approx(model.compute_score([QUERIES[0], ""]), abs=1e-5)
    ranked = {r["index"]: r["score"] for r in model.rerank(QUERIES[0], ["", DOCUMENTS[0]])}
    assert raw == pytest.approx(ranked[0], abs=1e-5)


# ---------------------------------------------------------------- S22: a run resumed in another precision


@pytest.mark.slow
def test_s22_a_run_resumed_in_another_precision_records_both(tmp_path, tiny_encoder_dir):
    from test_train_accelerate import tiny_run

    rows = tiny_triplets(16)
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    output = tmp_path / "run"
    argv = tiny_run(tiny_encoder_dir, data, output, "--loss", "ce", "--batch-size", "4", "--max-steps", "4")
    argv[argv.index("--mixed-precision") + 1] = "auto"
    for native, extra in (("1", ["--stop-after", "2"]), ("0", [])):  # a bf16 CPU, then one without bf16
        result = subprocess.run(
            script_command("train_accelerate.py", argv + extra),
            env={**os.environ, **SCRIPT_ENV, "LITE_NATIVE_BF16": native},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    assert "trained in bf16 until step 2 and continues in no" in result.stdout + result.stderr
    summary = json.loads((output / "best" / "training_summary.json").read_text())
    assert summary["precision_history"] == [{"from_step": 0, "precision": "bf16"}, {"from_step": 2, "precision": "no"}]
    assert "bf16 from step 0, then no from step 2" in publishing.precision_description(summary)


def test_s22_a_session_that_stopped_before_its_first_checkpoint_leaves_no_stretch(tmp_path):
    """A session that resumed at step 500 in float32 and was stopped before its next checkpoint trained nothing that
    was kept; the session after it resumes at 500 again, in bf16: the history is bf16 throughout (seen on issue 34's
    residual student), while a stretch that reached a checkpoint stays."""
    starts = [(0, "bf16"), (500, "no"), (500, "bf16")]
    metrics = write_jsonl(
        tmp_path / "metrics.jsonl",
        [{"step": step, "event": "start", "precision": precision} for step, precision in starts] + [{"step": 520}],
    )
    assert train_accelerate.precision_history(metrics) == [{"from_step": 0, "precision": "bf16"}]
    starts = [(0, "bf16"), (500, "no"), (480, "bf16"), (600, "no")]  # the float32 session's 520 was lost, 480 resumed
    write_jsonl(metrics, [{"step": step, "event": "start", "precision": precision} for step, precision in starts])
    assert train_accelerate.precision_history(metrics) == [
        {"from_step": 0, "precision": "bf16"},
        {"from_step": 600, "precision": "no"},
    ]


# ---------------------------------------------------------------- S21, U23: the workflow's stages


def test_s21_a_workflow_stage_made_with_other_settings_is_refused_not_skipped(beir, tmp_path):
    data, out = beir[0], tmp_path / "workflow"
    argv = ["--output-dir", str(out), "--data", str(data), "--selection-queries", "4", "--depth", str(DEPTH)]
    supervision_workflow.candidates_stage(supervision_workflow.parse_args(argv), out)
    qrels = unchanged(out / "bm25-negatives" / "selection" / "qrels" / "selection.tsv")
    for flag, value in (("--selection-queries", "5"), ("--depth", str(DEPTH - 1))):
        changed = supervision_workflow.parse_args(argv + [flag, value])
        with pytest.raises(SystemExit, match=rf"{flag.removeprefix('--').replace('-', '_')}: \d+ → {value}"):
            supervision_workflow.candidates_stage(changed, out)
    assert unchanged(out / "bm25-negatives" / "selection" / "qrels" / "selection.tsv") == qrels
    supervision_workflow.candidates_stage(supervision_workflow.parse_args(argv), out)  # the same settings: skipped


def test_u23_a_missing_packed_file_is_named(tmp_path):
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "real.top8.safetensors").write_bytes(b"x")
    args = supervision_workflow.parse_args(["--supervision", str(tmp_path / "packed"), "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"the packed teacher scores real.top8 are incomplete, .*queries.jsonl.gz"):
        supervision_workflow.supervision_stage(args, tmp_path / "out")


def test_u27_a_pair_row_that_ends_at_its_first_sep_is_the_empty_passage(tokenizer):
    model = tiny_model(tokenizer=tokenizer)
    query = tokenizer(QUERIES[0], return_tensors="pt")  # [CLS] query [SEP]: no passage after it
    with torch.no_grad():
        logits = model(**query).logits
    assert logits.item() == pytest.approx(model.compute_score([QUERIES[0], ""]), abs=1e-5)
