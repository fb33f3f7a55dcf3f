import ast
import json
import math
import re
from unittest.mock import patch

import pytest
import torch
import yaml
from conftest import DOCUMENTS, QUERIES, tiny_model, write_beir_fixture
from huggingface_hub import HfApi
from test_modeling_lite import run_fresh

import eval_rerank
import push_to_hub
from lite_rerank import publishing
from modeling_lite import LiteModel

STAGED_FILES = {
    "README.md",
    "config.json",
    "configuration_lite.py",
    "modeling_lite.py",
    "handler.py",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "requirements.txt",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("runs") / "lite" / "best"
    tiny_model(tokenizer=tokenizer).save_pretrained(folder)
    (folder / "training_summary.json").write_text(
        json.dumps(
            {
                "step": 7,
                "args": {
                    "encoder": "sentence-transformers/all-MiniLM-L6-v2",
                    "train_data": "/somewhere/debian-rerank/triplets.jsonl",
                    "loss": "ce",
                    "batch_size": 64,
                    "lr": 2.8e-5,
                    "scorer_lr": 1e-3,
                    "mixed_precision": "bf16",
                },
            }
        )
    )
    # things a run folder may hold that must never reach the Hub
    (folder / "optimizer.pt").write_bytes(b"state")
    (folder / ".hf_token").write_text("hf_secret")
    return folder


@pytest.fixture(scope="module")
def results_file(model_dir, beir_fixture_module):
    output = model_dir.parent.parent / "results.json"
    eval_rerank.main(
        [
            "--model",
            f"lite={model_dir}",
            "--data",
            str(beir_fixture_module),
            "--run",
            str(beir_fixture_module / "run.trec"),
            "--output",
            str(output),
            "--no-progress",
        ]
    )
    return output


@pytest.fixture(scope="module")
def beir_fixture_module(tmp_path_factory):
    return write_beir_fixture(tmp_path_factory.mktemp("data") / "beir")


@pytest.fixture(scope="module")
def staged(model_dir, results_file, tmp_path_factory):
    stage = tmp_path_factory.mktemp("stage") / "hub"
    push_to_hub.main(
        [
            "--model-dir",
            str(model_dir),
            "--repo-id",
            "me/lite-tiny",
            "--results",
            str(results_file),
            "--dry-run",
            "--stage-dir",
            str(stage),
        ]
    )
    return stage


def front_matter(stage):
    return yaml.safe_load(re.match(r"---\n(.*?)\n---\n", (stage / "README.md").read_text(), re.S).group(1))


FOUR_WAYS = r"""
import json, sys, importlib.util, torch
from transformers import AutoModel, AutoModelForSequenceClassification
from sentence_transformers import CrossEncoder
path, query, docs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
spec = importlib.util.spec_from_file_location("handler", f"{path}/handler.py")
handler_module = importlib.util.module_from_spec(spec); spec.loader.exec_module(handler_module)
handler = handler_module.EndpointHandler(path)
orders = {
    "auto": [r["index"] for r in AutoModel.from_pretrained(path, trust_remote_code=True).rerank(query, docs)],
    "seq": [r["index"] for r in AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True).rerank(query, docs)],
    "cross": [r["corpus_id"] for r in CrossEncoder(path, trust_remote_code=True).rank(query, docs)],
    "handler": [r["index"] for r in handler({"inputs": {"query": query, "texts": docs}})],
}
print(json.dumps(orders))
"""


@pytest.mark.slow
def test_stage_holds_exactly_the_hub_files(staged):
    assert {p.name for p in staged.iterdir()} == STAGED_FILES | {publishing.STAGE_MANIFEST}
    config = json.loads((staged / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    assert json.loads((staged / "tokenizer_config.json").read_text())["model_max_length"] == 512


@pytest.mark.slow
def test_stage_loads_four_ways_in_a_fresh_process_and_all_rank_alike(staged, model_dir, tmp_path):
    result = run_fresh(FOUR_WAYS, str(staged), QUERIES[0], json.dumps(DOCUMENTS), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    orders = json.loads(result.stdout.strip().splitlines()[-1])
    expected = [r["index"] for r in LiteModel.from_pretrained(model_dir).rerank(QUERIES[0], DOCUMENTS)]
    assert orders == {"auto": expected, "seq": expected, "cross": expected, "handler": expected}


@pytest.mark.slow
def test_card_front_matter_matches_results_and_model(staged, model_dir, results_file):
    meta = front_matter(staged)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-ranking"
    assert {"reranker", "late-interaction", "lite", "custom_code"} <= set(meta["tags"])
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["license"] == "apache-2.0"
    assert "datasets" not in meta  # a local training file is not a Hub dataset
    # A local evaluation set is not a Hub dataset either: no model-index entry would link anywhere real; the
    # results are in the card's text.
    assert "model-index" not in meta
    results = json.loads(results_file.read_text())["models"]["lite"]
    model = LiteModel.from_pretrained(model_dir)
    for example in meta["widget"]:  # scores as the Hub draws them: sigmoid(logit), as CrossEncoder/pipeline give them
        scores = model.compute_score([[example["source_sentence"], p] for p in example["sentences"]])
        sigmoid = [1 / (1 + math.exp(-s)) for s in scores]
        assert [o["score"] for o in example["output"]] == pytest.approx([round(s, 4) for s in sigmoid], abs=1e-4)
        title, sentence = example["example_title"], example["source_sentence"]
        assert len(title) <= 40 and (title == sentence or title.endswith("…"))
        if title != sentence:  # cut between words, never inside one
            assert sentence.startswith(title[:-1]) and sentence[len(title) - 1] in " ,;:"
    assert any(example["example_title"].endswith("…") for example in meta["widget"])
    body = (staged / "README.md").read_text()
    assert "arXiv:2406.17968" in body and "| lite |" in body and "/somewhere" not in body
    assert f"| {results['mrr@10']:.4f} |" in body and "Data: beir." in body
    assert "debian-rerank/triplets.jsonl" in body
    assert "4.46.3" in body and "raw logits" in body and "sigmoid" in body


@pytest.mark.slow
@pytest.mark.parametrize("private, revision", [(True, "dev"), (False, None)])
def test_upload_calls(model_dir, results_file, tmp_path, monkeypatch, private, revision):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    uploaded = {}

    def fake_upload(self, **kwargs):
        uploaded.update(kwargs, files={p.name for p in (tmp_path / "stage").iterdir()})
        return "https://huggingface.co/me/lite-tiny/commit/abc"

    args = [
        "--model-dir",
        str(model_dir),
        "--repo-id",
        "me/lite-tiny",
        "--results",
        str(results_file),
        "--stage-dir",
        str(tmp_path / "stage"),
        "--commit-message",
        "first upload",
    ]
    args += (["--private"] if private else []) + (["--revision", revision] if revision else [])
    with (
        patch.object(HfApi, "create_repo") as create_repo,
        patch.object(HfApi, "create_branch") as create_branch,
        patch.object(HfApi, "upload_folder", fake_upload),
    ):
        push_to_hub.main(args)
    create_repo.assert_called_once_with("me/lite-tiny", private=private, exist_ok=True, repo_type="model")
    if revision:
        create_branch.assert_called_once_with("me/lite-tiny", branch=revision, exist_ok=True)
    else:
        create_branch.assert_not_called()
    assert uploaded["repo_id"] == "me/lite-tiny" and uploaded["revision"] == revision
    assert uploaded["commit_message"] == "first upload"
    assert uploaded["files"] == STAGED_FILES | {publishing.STAGE_MANIFEST}  # the record of the stage stays local:
    assert uploaded["ignore_patterns"] == [publishing.STAGE_MANIFEST]


def test_missing_token_results_or_weights_stop_before_any_upload(model_dir, results_file, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(push_to_hub, "get_token", lambda: None)
    base = ["--repo-id", "me/lite-tiny", "--stage-dir", str(tmp_path / "stage")]
    with patch.object(HfApi, "create_repo") as create_repo, patch.object(HfApi, "upload_folder") as upload:
        with pytest.raises(SystemExit, match="no Hugging Face token"):
            push_to_hub.main(base + ["--model-dir", str(model_dir)])
        with pytest.raises(SystemExit, match="not found"):
            push_to_hub.main(base + ["--model-dir", str(model_dir), "--results", str(tmp_path / "absent.json")])
        (tmp_path / "empty").mkdir()
        with pytest.raises(SystemExit, match="no model.safetensors"):
            push_to_hub.main(base + ["--model-dir", str(tmp_path / "empty")])
    create_repo.assert_not_called()
    upload.assert_not_called()


@pytest.mark.slow
def test_a_broken_stage_is_never_uploaded(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    real_stage = publishing.stage_model

    def broken_stage(*args, **kwargs):
        folder = real_stage(*args, **kwargs)
        (folder / "configuration_lite.py").write_text("raise ImportError('broken')\n")
        return folder

    monkeypatch.setattr(push_to_hub, "stage_model", broken_stage)
    with patch.object(HfApi, "create_repo") as create_repo, patch.object(HfApi, "upload_folder") as upload:
        with pytest.raises(SystemExit, match="stage validation failed"):
            push_to_hub.main(["--model-dir", str(model_dir), "--repo-id", "me/x", "--stage-dir", str(tmp_path / "s")])
    create_repo.assert_not_called()
    upload.assert_not_called()


@pytest.mark.slow
def test_stage_carries_no_local_paths_and_a_requirements_file(staged):
    config = json.loads((staged / "config.json").read_text())
    assert "_name_or_path" not in config["encoder_config"] and config["tokenizer_class"] == "BertTokenizer"
    tokenizer_config = json.loads((staged / "tokenizer_config.json").read_text())
    assert not {"is_local", "local_files_only"} & set(tokenizer_config)
    assert (staged / "requirements.txt").read_text() == "transformers>=4.46.3,<6\n"
    assert str(staged.parent.parent) not in (staged / "config.json").read_text()


@pytest.mark.slow
def test_hub_dataset_results_go_into_the_model_index(model_dir, results_file, tmp_path):
    results = json.loads(results_file.read_text())
    results["data"]["spec"] = "microsoft/ms_marco"
    hub_results = tmp_path / "hub.json"
    hub_results.write_text(json.dumps(results))
    push_to_hub.main(
        [
            "--model-dir",
            str(model_dir),
            "--repo-id",
            "me/lite-tiny",
            "--results",
            str(hub_results),
            "--dry-run",
            "--stage-dir",
            str(tmp_path / "stage"),
        ]
    )
    entry = front_matter(tmp_path / "stage")["model-index"][0]["results"][0]
    assert entry["dataset"]["type"] == "microsoft/ms_marco"
    metrics = {m["name"]: m["value"] for m in entry["metrics"]}
    row = results["models"]["lite"]
    assert metrics == {"MRR@10": round(row["mrr@10"], 4), "nDCG@10": round(row["ndcg@10"], 4)}


@pytest.mark.slow
def test_local_data_is_named_with_its_provenance_link(model_dir, results_file, tmp_path):
    push_to_hub.main(
        [
            "--model-dir",
            str(model_dir),
            "--repo-id",
            "me/lite-tiny",
            "--results",
            str(results_file),
            "--dataset-name",
            "Debian 12 package descriptions",
            "--dataset-url",
            "https://deb.debian.org/x",
            "--dry-run",
            "--stage-dir",
            str(tmp_path / "stage"),
        ]
    )
    body = (tmp_path / "stage" / "README.md").read_text()
    assert "Data: Debian 12 package descriptions ([provenance](https://deb.debian.org/x))." in body


@pytest.mark.parametrize("where", ["user folder", "model folder", "run folder above best"])
def test_stage_dir_never_deletes_what_it_did_not_stage(model_dir, tmp_path, where):
    """D1-D3: a --stage-dir holding anything but a previous stage is refused, and nothing is deleted."""
    if where == "user folder":
        stage = tmp_path / "mine"
        stage.mkdir()
        (stage / "thesis.tex").write_text("years of work")
    else:
        stage = model_dir if where == "model folder" else model_dir.parent
    before = {p: p.stat().st_mtime_ns for p in stage.rglob("*")}
    with pytest.raises(SystemExit, match="stage-dir"):
        push_to_hub.main(["--model-dir", str(model_dir), "--repo-id", "me/x", "--dry-run", "--stage-dir", str(stage)])
    assert {p: p.stat().st_mtime_ns for p in stage.rglob("*")} == before


@pytest.mark.slow
def test_a_previous_stage_is_replaced(model_dir, tmp_path):
    stage = tmp_path / "stage"
    for _ in range(2):
        push_to_hub.main(["--model-dir", str(model_dir), "--repo-id", "me/x", "--dry-run", "--stage-dir", str(stage)])
    assert {p.name for p in stage.iterdir()} == STAGED_FILES | {publishing.STAGE_MANIFEST}


@pytest.mark.parametrize("repo_id", ["not a valid/repo id!!/x", "noslash", "a/b/c", "-x/y", "user/../etc"])
def test_bad_repo_ids_are_refused_before_anything_happens(model_dir, tmp_path, repo_id):
    with pytest.raises(SystemExit, match="--repo-id"):
        push_to_hub.main(
            [
                "--model-dir",
                str(model_dir),
                f"--repo-id={repo_id}",
                "--dry-run",
                "--stage-dir",
                str(tmp_path / "stage"),
            ]
        )
    assert not (tmp_path / "stage").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", r"bad.json: not valid JSON"),
        ('{"models": {"lite": {"mrr@10": 0.5}}}', r"bad.json: model 'lite' lacks \['ndcg@10'"),
        ('{"rows": []}', r"bad.json: no 'models' section"),
    ],
)
def test_bad_results_files_are_named(model_dir, tmp_path, content, message):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(SystemExit, match=message):
        push_to_hub.main(
            [
                "--model-dir",
                str(model_dir),
                "--repo-id",
                "me/x",
                "--dry-run",
                "--results",
                str(tmp_path / "bad.json"),
                "--stage-dir",
                str(tmp_path / "stage"),
            ]
        )


def test_a_model_folder_without_a_tokenizer_is_named(tmp_path):
    folder = tmp_path / "no-tokenizer"
    tiny_model().save_pretrained(folder)
    with pytest.raises(SystemExit, match=r"no-tokenizer.*tokenizer"):
        push_to_hub.main(
            ["--model-dir", str(folder), "--repo-id", "me/x", "--dry-run", "--stage-dir", str(tmp_path / "stage")]
        )


# ---------------------------------------------------------------- issue 24: L2, L3, S0, S12, temporary stages


def dry_run(model_dir, stage, *extra):
    return push_to_hub.main(
        ["--model-dir", str(model_dir), "--repo-id", "me/x", "--dry-run", "--stage-dir", str(stage), *extra]
    )


@pytest.fixture
def previous_stage(model_dir, tmp_path):
    stage = tmp_path / "stage"
    dry_run(model_dir, stage)
    return stage


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, kept",
    [
        ("a folder named like a stage file", "vocab.txt/thesis.tex"),
        ("a stage file edited by hand", "README.md"),
        ("a file added", "notes.md"),
    ],
)
def test_l2_a_stage_is_replaced_only_when_exactly_what_was_staged(model_dir, previous_stage, change, kept):
    if change == "a folder named like a stage file":
        (previous_stage / "vocab.txt").mkdir()
        (previous_stage / "vocab.txt" / "thesis.tex").write_text("years of work")
    elif change == "a stage file edited by hand":
        (previous_stage / "README.md").write_text("my own notes on this model")
    else:
        (previous_stage / "notes.md").write_text("mine")
    before = (previous_stage / kept).read_text()
    with pytest.raises(SystemExit, match="is not a previous stage of push_to_hub.py.*nothing was deleted"):
        dry_run(model_dir, previous_stage)
    assert (previous_stage / kept).read_text() == before


def test_l3_another_saved_model_folder_is_not_a_stage(model_dir, tmp_path, tokenizer):
    other = tmp_path / "other-model"
    tiny_model(seed=5, tokenizer=tokenizer).save_pretrained(other)
    before = {p.name: p.read_bytes() for p in other.iterdir()}
    with pytest.raises(SystemExit, match=r"not a previous stage of push_to_hub.py \(no .lite-stage.json\)"):
        dry_run(model_dir, other)
    assert {p.name: p.read_bytes() for p in other.iterdir()} == before


@pytest.mark.slow
def test_a_dry_run_without_a_stage_dir_leaves_no_temporary_stage(model_dir, monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    push_to_hub.main(["--model-dir", str(model_dir), "--repo-id", "me/x", "--dry-run"])
    assert list(tmp_path.iterdir()) == []


def test_s12_results_of_another_model_are_refused(model_dir, results_file, tmp_path, tokenizer):
    other = tmp_path / "other" / "best"
    tiny_model(seed=5, tokenizer=tokenizer).save_pretrained(other)
    with pytest.raises(SystemExit, match=r"row 'lite' was measured with other weights .* than --model-dir"):
        dry_run(other, tmp_path / "stage", "--results", str(results_file), "--results-model", "lite")
    older = json.loads(results_file.read_text())
    del older["model_files"]  # a results file written before the weights were recorded
    (tmp_path / "older.json").write_text(json.dumps(older))
    with pytest.raises(SystemExit, match="does not record which weights it scored"):
        dry_run(model_dir, tmp_path / "stage", "--results", str(tmp_path / "older.json"))
    assert not (tmp_path / "stage").exists()


def test_s0_a_model_whose_tokenizer_lost_its_vocabulary_is_not_staged(model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(SystemExit, match=r"broken: cannot load the model: .*its tokenizer has \d+ tokens"):
        dry_run(broken, tmp_path / "stage")


def test_u8_u16_damaged_weights_are_named_before_anything_is_staged(model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"")
    with pytest.raises(
        SystemExit, match=r"broken: cannot load the model: .*model.safetensors does not read \(.*header"
    ):
        dry_run(broken, tmp_path / "stage")
    assert not (tmp_path / "stage").exists()


def test_usage_code_in_the_card_is_python_that_gives_back_the_examples(tokenizer):
    """The card's code blocks hold the widget example as Python literals, one passage per line: a quote, a backslash
    or a line break in an example used to end up verbatim inside "..." and break the code a reader copies."""
    examples = [
        {
            "query": 'the "rg" tool: search C:\\path\nrecursively',
            "passages": ['ripgrep "rg" searches…', "a font", "back\\slash and a tab\there"],
        }
    ]
    model = tiny_model(tokenizer=tokenizer)
    card = publishing.render_card(model, "me/lite-tiny", None, None, publishing.widget_examples(model, examples), {})
    blocks = re.findall(r"```python\n(.*?)```", str(card), re.S)
    usage, *others = [ast.parse(block) for block in blocks]  # every block parses
    assert others
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in usage.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant | ast.List)
    }
    assert values == {"query": examples[0]["query"], "passages": examples[0]["passages"]}
    passage_lines = [line for line in blocks[0].splitlines() if line.startswith("    ")]
    assert len(passage_lines) == len(examples[0]["passages"])


@pytest.mark.parametrize(
    "overrides, described, first_stage",
    [
        ({"scorer": "residual"}, "the residual LITE scorer: ColBERT's MaxSim", True),
        ({"scorer": "maxsim"}, "ColBERT's MaxSim, Σ_i max_j S_ij (the late-interaction baseline", True),
        ({"doc_stored_tokens": 8}, "the separable LITE scorer", False),
        ({"scorer": "residual", "query_token_weights": True}, "so MaxSim's sum is weighted", False),
    ],
)
def test_the_card_names_the_scorer_and_offers_the_first_stage_export(tokenizer, overrides, described, first_stage):
    """A residual model was described as plain MaxSim; the multi-vector export (issue 37) is offered only where it
    exists (Small-LITE's compressed passages have no multi-vector form)."""
    card = str(
        publishing.render_card(tiny_model(tokenizer=tokenizer, **overrides), "me/lite-tiny", None, None, [], {})
    )
    assert described in card
    assert ("scripts/export_multi_vector.py me/lite-tiny" in card) is first_stage


def test_a_residual_models_widget_shows_its_ranking_in_raw_scores(tmp_path, tokenizer):
    """Issue 56 item 6: a residual model's raw scores are tens; the sigmoid of them is 1.0 for every passage and the
    page would show no ranking. Its widget shows the raw scores its routes return, in the model's order, and the card
    says so."""
    from conftest import tiny_model

    model = tiny_model(tokenizer=tokenizer, scorer="residual")
    with torch.no_grad():
        model.lite_scorer.maxsim_scale.fill_(30.0)  # scores of a trained residual: far beyond the sigmoid's range
    examples = json.loads(publishing.WIDGET_EXAMPLES.read_text())
    widget = publishing.widget_examples(model, examples)
    for example, entry in zip(examples, widget):
        scores = model.compute_score([[example["query"], p] for p in example["passages"]])
        assert max(scores) > 40 and len({round(1 / (1 + math.exp(-s)), 4) for s in scores}) == 1  # saturated
        shown = [o["score"] for o in entry["output"]]
        # rounded to 4 decimals from scores computed in other batches (float32, another summation order): one unit
        # of the last place apart at most, on scores of ≈ 170
        assert shown == pytest.approx([round(s, 4) for s in scores], abs=2e-4)
        assert sorted(range(len(shown)), key=lambda i: -shown[i]) == sorted(
            range(len(scores)), key=lambda i: -scores[i]
        )
    card = str(publishing.render_card(model, "me/residual", None, None, widget, {}))
    assert "Every route returns raw scores" in card and "shows those sigmoid scores" not in card
    plain = publishing.render_card(tiny_model(tokenizer=tokenizer), "me/lite", None, None, [], {})
    assert "shows those sigmoid scores" in str(plain) and "Every route returns raw scores" not in str(plain)
