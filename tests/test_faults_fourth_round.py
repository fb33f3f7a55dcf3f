"""Fault cases, fourth round (issue 58): the scorer-folder scripts, nested secrets, the residual's scale, and the Hub
code kept to itself. Each case is driven as a user drives it (a script through its command line where it has one)
and ends in the right answer or a clear error naming the file, flag or field; nothing is written over an input.
Labels follow the issue (O / E / M = outputs, X = security, B / S = silently wrong, R = resource, U = unclear)."""

import json
import math
import re
import sys

import pytest
import torch
from conftest import ROOT, run_script
from safetensors.torch import load_file, save_file

from lite_rerank.scorer_weights import RECORD, TOKEN_WEIGHTS, WEIGHTS, ScorerError, build_model, write_scorer
from lite_rerank.utils import file_sha256
from modeling_lite import LiteModel

sys.path.insert(0, str(ROOT / "scripts"))


# ---------------------------------------------------------------- scorer folders (O3, O4, O5, E1, E2, S1–S18, R2)


@pytest.fixture
def scorer_folder(tmp_path, tiny_encoder_dir):
    """A trained-looking residual scorer folder on the tiny encoder, with query token weights."""
    torch.manual_seed(0)
    model = LiteModel.from_encoder(str(tiny_encoder_dir), scorer="residual", query_token_weights=True)
    with torch.no_grad():
        model.lite_scorer.out.weight.normal_(0, 0.05)
        model.query_token_weights.log_weights.normal_(0, 0.1)
    folder = tmp_path / "scorer"
    record = {"encoder": {"name": "tiny", "weights_sha256": file_sha256(tiny_encoder_dir / "model.safetensors")}}
    write_scorer(folder, model, record)
    return folder


def edit_record(folder, change):
    record = json.loads((folder / RECORD).read_text())
    change(record)
    (folder / RECORD).write_text(json.dumps(record))


def build(folder, encoder, output, check=False):
    return run_script(
        "scripts/build_scorer_model.py", [folder, "--encoder", encoder, "--output-dir", output], check=check
    )


def test_o3_build_scorer_model_refuses_a_folder_that_holds_a_model(tmp_path, scorer_folder, saved_tiny_model):
    import shutil

    target = tmp_path / "a-model"
    shutil.copytree(saved_tiny_model, target)
    before = {path.name: file_sha256(path) for path in target.iterdir() if path.is_file()}
    result = build(scorer_folder, saved_tiny_model.parent / "none", target)  # refused before the encoder is read
    assert result.returncode != 0 and "is not an empty folder" in result.stderr and "Traceback" not in result.stderr
    assert {path.name: file_sha256(path) for path in target.iterdir() if path.is_file()} == before


def test_o4_build_scorer_model_refuses_an_existing_file(tmp_path, scorer_folder, tiny_encoder_dir):
    target = tmp_path / "model.txt"
    target.write_text("keep me")
    result = build(scorer_folder, tiny_encoder_dir, target)
    assert result.returncode != 0 and "is a file, not a folder" in result.stderr and "success" not in result.stdout
    assert target.read_text() == "keep me"


def test_o5_the_default_encoder_is_an_input_build_scorer_model_never_writes_over(scorer_folder, minilm_path):
    weights = minilm_path / "model.safetensors"
    before = file_sha256(weights)
    result = run_script("scripts/build_scorer_model.py", [scorer_folder, "--output-dir", minilm_path], check=False)
    assert result.returncode != 0 and "which is an input of this run (--encoder)" in result.stderr
    assert file_sha256(weights) == before


def test_o3_build_scorer_model_writes_a_new_folder_that_loads(tmp_path, scorer_folder, tiny_encoder_dir):
    build(scorer_folder, tiny_encoder_dir, tmp_path / "new", check=True)
    model = LiteModel.from_pretrained(tmp_path / "new")
    assert torch.equal(model.lite_scorer.out.weight, load_file(scorer_folder / WEIGHTS)["out.weight"])


def evaluate(folder, encoder, output, *extra):
    return run_script(
        "scripts/evaluate_scorer.py", [folder, "--encoder", encoder, "--output-dir", output, *extra], check=False
    )


def test_e2_evaluate_scorer_refuses_an_output_folder_that_holds_its_encoder(tmp_path, scorer_folder, tiny_encoder_dir):
    import shutil

    encoder = tmp_path / "enc" / "model"
    shutil.copytree(tiny_encoder_dir, encoder)
    before = file_sha256(encoder / "model.safetensors")
    result = evaluate(scorer_folder, encoder, tmp_path / "enc")
    assert result.returncode != 0 and "which is an input of this run (--encoder)" in result.stderr
    assert file_sha256(encoder / "model.safetensors") == before and not (tmp_path / "enc" / "model" / "model").exists()


def test_e1_evaluate_scorer_refuses_an_output_that_is_a_file_before_building(
    tmp_path, scorer_folder, tiny_encoder_dir
):
    target = tmp_path / "out"
    target.write_text("keep me")
    result = evaluate(scorer_folder, tiny_encoder_dir, target)
    assert result.returncode != 0 and "is a file, not a folder" in result.stderr and "Traceback" not in result.stderr
    assert target.read_text() == "keep me"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(encoder="all-MiniLM-L6-v2"), "'encoder' must be an object"),  # S1
        (lambda r: r["encoder"].update(weights_sha256=12345), "weights_sha256 must be a sha256"),  # S2
        (lambda r: r["config"].update(query_max_length=1_000_000), "query_max_length"),  # S4
        (lambda r: r["config"].update(row_hidden_size=48.5), "row_hidden_size"),  # S4: a float size
        (lambda r: r["config"].update(col_hidden_size=float("nan")), "col_hidden_size"),  # S4: NaN
        (lambda r: r["config"].update(activation="os.system"), "activation"),  # S4
        (lambda r: r["config"].update(row_hidden_size=4_000_000), "does not fit"),  # R2: refused before building
    ],
)
def test_s1_s4_r2_a_scorer_json_that_cannot_make_a_model_is_named(
    tmp_path, scorer_folder, tiny_encoder_dir, change, message
):
    edit_record(scorer_folder, change)
    result = build(scorer_folder, tiny_encoder_dir, tmp_path / "out")
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert str(scorer_folder / RECORD) in result.stderr or str(scorer_folder / WEIGHTS) in result.stderr
    assert not (tmp_path / "out").exists()


def test_r2_a_huge_layer_is_refused_before_any_memory_is_taken(scorer_folder, tiny_encoder_dir):
    import resource

    edit_record(scorer_folder, lambda r: r["config"].update(row_hidden_size=30_000_000))  # 3e7: ≈ 29 GB a layer
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ScorerError, match="does not fit a residual scorer"):
        build_model(scorer_folder, str(tiny_encoder_dir))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: nothing the size of a layer


def test_s18_a_deeply_nested_scorer_json_is_named(tmp_path, scorer_folder, tiny_encoder_dir):
    (scorer_folder / RECORD).write_text("[" * 100_000 + "]" * 100_000)
    result = build(scorer_folder, tiny_encoder_dir, tmp_path / "out")
    assert result.returncode != 0 and "nested too deeply" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("file, tensor", [(WEIGHTS, "out.weight"), (TOKEN_WEIGHTS, "log_weights")])
def test_s8_a_scorer_folder_with_non_finite_weights_is_refused(
    tmp_path, scorer_folder, tiny_encoder_dir, file, tensor, value
):
    tensors = load_file(scorer_folder / file)
    tensors[tensor][0] = value
    save_file(tensors, scorer_folder / file)
    result = build(scorer_folder, tiny_encoder_dir, tmp_path / "out")
    assert result.returncode != 0 and f"tensor {tensor!r} holds NaN or infinite values" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_s11_a_scorer_tensor_of_the_wrong_dtype_is_refused(tmp_path, scorer_folder, tiny_encoder_dir, dtype):
    tensors = load_file(scorer_folder / WEIGHTS)
    tensors["out.bias"] = tensors["out.bias"].to(dtype)
    save_file(tensors, scorer_folder / WEIGHTS)
    result = build(scorer_folder, tiny_encoder_dir, tmp_path / "out")
    assert result.returncode != 0 and "tensor 'out.bias' is torch." in result.stderr
    assert "not floating point" in result.stderr


def test_s17_a_token_weights_file_with_an_extra_tensor_is_named_as_such(scorer_folder, tiny_encoder_dir):
    tensors = load_file(scorer_folder / TOKEN_WEIGHTS)
    tensors["extra"] = torch.zeros(3)
    save_file(tensors, scorer_folder / TOKEN_WEIGHTS)
    with pytest.raises(ScorerError, match=r"must hold one tensor, log_weights; it holds \['extra', 'log_weights'\]"):
        build_model(scorer_folder, str(tiny_encoder_dir))


# ---------------------------------------------------------------- runs and judgments (E3c, E4b, B23)


def test_e3c_a_run_that_names_no_known_query_and_passage_is_named(tmp_path, beir_fixture, saved_tiny_model):
    run = tmp_path / "foreign.trec"
    run.write_text("x1 Q0 d0 1 9.0 bm25\nq0 Q0 zz 1 8.0 bm25\n")
    result = run_script(
        "eval_rerank.py",
        ["--model", saved_tiny_model, "--data", beir_fixture, "--run", run, "--output", tmp_path / "r.json"],
        check=False,
    )
    assert result.returncode != 0 and f"{run}: none of its lines names a query judged relevant" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r.json").exists()


def test_e3c_evaluate_scorer_names_a_foreign_run_too(tmp_path, beir_fixture, scorer_folder, tiny_encoder_dir):
    run = tmp_path / "foreign.trec"
    run.write_text("x1 Q0 d0 1 9.0 bm25\n")
    result = evaluate(scorer_folder, tiny_encoder_dir, tmp_path / "out", "--data", beir_fixture, "--run", run)
    assert result.returncode != 0 and "none of its lines names a query judged relevant" in result.stderr
    assert "Traceback" not in result.stderr


def test_e4b_qrels_whose_queries_have_no_text_are_named_and_nothing_is_left(
    tmp_path, beir_fixture, scorer_folder, tiny_encoder_dir
):
    (beir_fixture / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq77\td0\t1\nq78\td1\t1\n")
    out = tmp_path / "out"
    result = evaluate(scorer_folder, tiny_encoder_dir, out, "--data", beir_fixture, "--split", "test")
    assert result.returncode != 0 and "test.tsv: none of its 2 queries is in" in result.stderr
    assert "queries.jsonl" in result.stderr and "Traceback" not in result.stderr
    assert not any(out.rglob("*"))  # no empty BM25 run, no model


def test_b23_a_negative_grade_is_not_relevant_and_gains_nothing(tmp_path):
    """trec_eval's rule: a grade ≤ 0 (TREC's "junk", −2) is not relevant, and its gain is 0, not negative."""
    import pytrec_eval

    from lite_rerank.rerank_metrics import query_metrics

    labels, judged = [-2, 0, 1, -2], [-2, 1, -2]
    scores = [0.9, 0.8, 0.7, 0.6]  # the junk passage first
    ours = query_metrics(scores, labels, judged, [10])
    qrels = {"q": {"junk1": -2, "rel": 1, "junk2": -2}}
    run = {"q": {"junk1": 0.9, "other": 0.8, "rel": 0.7, "junk2": 0.6}}
    reference = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recip_rank"}).evaluate(run)["q"]
    assert ours["ndcg@10"] == pytest.approx(reference["ndcg_cut_10"]) and ours["ndcg@10"] >= 0
    assert ours["mrr@10"] == pytest.approx(reference["recip_rank"]) == 1 / 3


# ---------------------------------------------------------------- the multi-vector library functions (M1, M2, M5c, M9)


@pytest.fixture
def multi_vector_lite(tmp_path, tiny_encoder_dir):
    """A residual LITE built from a tiny MultiVectorEncoder folder, its LITE term not zero, and that encoder."""
    from conftest import save_multi_vector
    from sentence_transformers import MultiVectorEncoder

    from lite_rerank.multi_vector import lite_from_multi_vector

    folder = save_multi_vector(tmp_path / "mve", tiny_encoder_dir)
    model = lite_from_multi_vector(str(folder), scorer="residual", row_hidden_size=48, col_hidden_size=16)
    with torch.no_grad():
        model.lite_scorer.out.weight.normal_(0.0, 0.05)
    return model, MultiVectorEncoder(str(folder), device="cpu")


def test_m1_nan_vectors_are_refused_not_scored(multi_vector_lite):
    from lite_rerank.multi_vector import MultiVectorError, score_multi_vector_embeddings

    model, encoder = multi_vector_lite
    queries, docs = encoder.encode_query(["grep a file"]), encoder.encode_document(["grep searches", "an editor"])
    docs = [d.clone() for d in docs]
    docs[1][0, 0] = float("nan")
    with pytest.raises(MultiVectorError, match=r"document embeddings\[1\] hold NaN or infinite values"):
        score_multi_vector_embeddings(model, queries, docs)


@pytest.mark.parametrize("side", ["query", "document"])
def test_m2_an_empty_list_of_vectors_is_named(multi_vector_lite, side):
    from lite_rerank.multi_vector import MultiVectorError, score_multi_vector_embeddings

    model, encoder = multi_vector_lite
    queries, docs = encoder.encode_query(["grep a file"]), encoder.encode_document(["grep searches"])
    with pytest.raises(MultiVectorError, match=f"no {side} embeddings"):
        score_multi_vector_embeddings(model, [] if side == "query" else queries, [] if side == "document" else docs)


def test_m5c_one_zero_padded_tensor_of_passages_is_named_as_padding(multi_vector_lite):
    from torch.nn.utils.rnn import pad_sequence

    from lite_rerank.multi_vector import MultiVectorError, score_multi_vector_embeddings

    model, encoder = multi_vector_lite
    queries = encoder.encode_query(["grep a file"])
    docs = pad_sequence(encoder.encode_document(["grep searches directories recursively", "x"]), batch_first=True)
    with pytest.raises(MultiVectorError, match="all-zero rows: padding; pass each text's own vectors, a list"):
        score_multi_vector_embeddings(model, queries, docs)


def test_m9_the_export_function_refuses_the_models_own_folder(tmp_path, multi_vector_lite):
    from lite_rerank.multi_vector import MultiVectorError, export_multi_vector_encoder

    model, _ = multi_vector_lite
    folder = tmp_path / "lite"
    model.save_pretrained(folder)
    before = {path.name: file_sha256(path) for path in folder.iterdir() if path.is_file()}
    with pytest.raises(MultiVectorError, match="is not an empty folder"):
        export_multi_vector_encoder(LiteModel.from_pretrained(folder), folder)
    assert {path.name: file_sha256(path) for path in folder.iterdir() if path.is_file()} == before
    LiteModel.from_pretrained(folder)  # still loads


# ---------------------------------------------------------------- nested secrets (X3a, X3c)


def stage(model_dir, stage_dir):
    import push_to_hub

    push_to_hub.main(["--model-dir", str(model_dir), "--repo-id", "me/x", "--dry-run", "--stage-dir", str(stage_dir)])


def edit_json(path, change):
    values = json.loads(path.read_text())
    change(values)
    path.write_text(json.dumps(values))


@pytest.mark.parametrize(
    "file, change, message",
    [
        ("config.json", lambda c: c["encoder_config"].update(api_key="hf_secret"), "config.json's encoder_config"),
        ("tokenizer_config.json", lambda c: c.update(api_key="hf_secret"), "tokenizer_config.json"),
    ],
)
def test_x3_a_secret_nested_in_a_staged_json_file_is_refused(tmp_path, tokenizer, file, change, message):
    model_dir, stage_dir = tmp_path / "model", tmp_path / "stage"
    from conftest import tiny_model

    tiny_model(tokenizer=tokenizer).save_pretrained(model_dir)
    stage(model_dir, stage_dir)  # the folder as saved stages (its keys are its classes' own)
    assert "hf_secret" not in "".join(p.read_text() for p in stage_dir.glob("*.json"))
    edit_json(model_dir / file, change)
    with pytest.raises(SystemExit, match=rf"{re.escape(message)}.* holds key\(s\) \['api_key'\]"):
        stage(model_dir, stage_dir)
    assert "hf_secret" not in "".join(p.read_text() for p in stage_dir.glob("*.json"))  # the stage untouched


def test_x3_the_real_encoders_legacy_keys_stage(tmp_path, minilm_path):
    """all-MiniLM-L6-v2's config carries keys older releases wrote (gradient_checkpointing, position_embedding_type):
    those are known, and the model stages."""
    model = LiteModel.from_encoder(str(minilm_path), scorer="maxsim")
    assert {"gradient_checkpointing", "position_embedding_type"} <= set(model.config.encoder_config.to_dict())
    from lite_rerank.publishing import publishable_config, publishable_tokenizer

    publishable_config(model.config)
    publishable_tokenizer(model.tokenizer)


# ---------------------------------------------------------------- significance, skiplists (B25, B31)


def test_b25_a_paired_test_on_no_query_or_on_different_queries_is_refused():
    from lite_rerank.significance import compare

    with pytest.raises(ValueError, match="the baseline run has none"):
        compare({}, {})
    with pytest.raises(ValueError, match=r"1 only in the baseline \(e.g. \['q2'\]\), 0 only in the system"):
        compare({"q1": 1.0, "q2": 0.5}, {"q1": 0.5})
    result = compare({"q1": 1.0, "q2": 0.5}, {"q1": 0.5, "q2": 0.5}, permutations=100)
    assert result["queries"] == 2 and result["difference"] == -0.25 and math.isfinite(result["p_value"])


@pytest.mark.parametrize("field", ["doc_skiplist_ids", "query_skiplist_ids"])
@pytest.mark.parametrize("token", [101, 102])
def test_b31_a_skiplist_holding_cls_or_sep_is_refused(field, token):
    from conftest import tiny_config

    with pytest.raises(ValueError, match=rf"LiteConfig.{field} holds \[{token}\], the \[CLS\] / \[SEP\] ids"):
        tiny_config(**{field: [1010, token]})


def test_b31_a_punctuation_only_passage_scores_finite_with_a_punctuation_skiplist(tokenizer):
    from conftest import tiny_model

    punctuation = tokenizer.convert_tokens_to_ids([".", ",", "!", "?"])
    model = tiny_model(tokenizer=tokenizer, doc_skiplist_ids=punctuation)
    scores = model.compute_score([["a query", "..., !?"], ["a query", ""]])
    assert all(math.isfinite(score) for score in scores)


# ---------------------------------------------------------------- the pair route (B4, B5)


def pair_logits(model, tokenizer, rows):
    """The pair route as CrossEncoder / the pipeline feed it: each row tokenised (a pair, or a query alone where the
    pipeline drops an empty text_pair), the rows padded into one batch, token_type_ids included."""
    encoded = [tokenizer(*row) for row in rows]
    batch = tokenizer.pad(encoded, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.squeeze(-1).tolist()


def test_b4_a_query_holding_the_text_sep_scores_alike_on_every_route(tokenizer):
    from conftest import tiny_model

    model = tiny_model(tokenizer=tokenizer, scorer="residual")
    query, passage = "what does [SEP] mean in bert", "the separator token between two segments"
    assert tokenizer(query)["input_ids"].count(tokenizer.sep_token_id) == 2  # the literal text is the separator
    expected = model.compute_score([query, passage])
    (got,) = pair_logits(model, tokenizer, [(query, passage)])
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_b5_an_empty_passage_scores_alike_alone_and_in_a_padded_batch(tokenizer):
    from conftest import tiny_model

    model = tiny_model(tokenizer=tokenizer, scorer="residual")
    query = "search files"
    alone = model.compute_score([query, ""])
    (single,) = pair_logits(model, tokenizer, [(query,)])
    batched = pair_logits(
        model, tokenizer, [(query,), (query, "grep searches directories for a pattern, recursively")]
    )
    assert single == pytest.approx(alone, rel=1e-5, abs=1e-5)
    assert batched[0] == pytest.approx(alone, rel=1e-5, abs=1e-5)


# ---------------------------------------------------------------- the residual's scale and the teacher (B7–B14)


def train(args, check=False):
    return run_script("train_accelerate.py", args, check=check)


def scored_rows(teacher_positive, teacher_negatives, count=12):
    from conftest import DOCUMENTS, QUERIES

    return [
        {
            "query": f"{QUERIES[i % 3]} {i}",
            "positive": DOCUMENTS[i % 4],
            "negatives": [DOCUMENTS[(i + j) % 4] for j in (1, 2)],
            "teacher_positive": teacher_positive,
            "teacher_negatives": teacher_negatives,
        }
        for i in range(count)
    ]


def tiny_student(encoder, data, output, *extra):
    return [
        "--encoder", str(encoder), "--train-data", str(data), "--output-dir", str(output), "--mixed-precision", "no",
        "--num-workers", "0", "--row-hidden-size", "48", "--col-hidden-size", "16", "--batch-size", "4",
        "--hard-negatives", "2", *extra,
    ]  # fmt: skip


def test_b7_b9_b8_teacher_scores_that_rank_nothing_are_named_and_leave_nothing_that_blocks_a_rerun(
    tmp_path, tiny_encoder_dir
):
    from conftest import write_jsonl

    equal = write_jsonl(tmp_path / "equal.jsonl", scored_rows(0.1 + 0.2, [0.3, 0.30000000000000004]))  # rounding
    output = tmp_path / "run"
    args = ["--scorer", "residual", "--loss", "kl", "--max-steps", "2"]
    result = train(tiny_student(tiny_encoder_dir, equal, output, *args))
    assert result.returncode != 0 and "its scores rank nothing" in result.stderr, result.stderr[-2000:]
    assert "the teacher (the teacher scores carried by the training data)" in result.stderr
    assert "against MaxSim" not in result.stderr and "Traceback" not in result.stderr
    assert not (output / "run_config.json").exists() and not (output / "checkpoints").exists()
    equal.write_text("".join(json.dumps(row) + "\n" for row in scored_rows(3.0, [1.0, -1.0])))  # the data fixed
    fixed = train(tiny_student(tiny_encoder_dir, equal, output, *args), check=True)
    assert "MaxSim scale fitted to the kl loss" in fixed.stdout


def test_b13_a_label_loss_keeps_the_residual_scale_at_1_and_the_scorer_learns(tmp_path, tiny_encoder_dir):
    from conftest import write_jsonl

    data = write_jsonl(tmp_path / "rows.jsonl", scored_rows(3.0, [1.0, -1.0], count=16))
    output = tmp_path / "run"
    args = ["--scorer", "residual", "--loss", "ce", "--max-steps", "4", "--freeze-encoder", "--scorer-lr", "3e-4"]
    args += ["--in-batch-negatives", "-1", "--log-every", "1"]
    result = train(tiny_student(tiny_encoder_dir, data, output, *args), check=True)
    assert "--loss ce trains on labels, which set no MaxSim scale; kept at 1" in result.stdout
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in records if "loss" in record]
    assert len(losses) == 4 and all(0 < loss < 15 for loss in losses)  # neither saturated at 0 nor blown up
    scale = load_file(output / "best" / "model.safetensors")["lite_scorer.maxsim_scale"]
    assert abs(float(scale) - 1) < 0.1


@pytest.fixture
def nan_teacher(tmp_path, tiny_cross_encoder_dir):
    import shutil

    folder = tmp_path / "nan-teacher"
    shutil.copytree(tiny_cross_encoder_dir, folder)
    weights = load_file(folder / "model.safetensors")
    weights = {
        name: tensor.fill_(float("nan")) if "classifier" in name else tensor for name, tensor in weights.items()
    }
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@pytest.mark.parametrize("scorer", ["residual", "lite"])
def test_b11_b14_a_teacher_that_outputs_nan_is_named(tmp_path, tiny_encoder_dir, nan_teacher, scorer):
    from conftest import DOCUMENTS, write_jsonl

    rows = [{"query": f"q {i}", "positive": DOCUMENTS[i % 4], "negative": DOCUMENTS[(i + 1) % 4]} for i in range(8)]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    args = ["--scorer", scorer, "--loss", "margin_mse", "--teacher", str(nan_teacher), "--max-steps", "1"]
    result = train(
        tiny_student(tiny_encoder_dir, data, tmp_path / "run", *args[:-2], "--hard-negatives", "1", *args[-2:])
    )
    assert result.returncode != 0 and f"the teacher ({nan_teacher})" in result.stderr, result.stderr[-2000:]
    assert "finite" in result.stderr and "lower --lr" not in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_b12_a_teacher_retrained_in_the_same_folder_does_not_reuse_the_old_scores(
    tmp_path, tiny_encoder_dir, tiny_cross_encoder_dir
):
    import shutil

    from conftest import DOCUMENTS, write_jsonl

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_cross_encoder_dir, teacher)
    rows = [{"query": f"q {i}", "positive": DOCUMENTS[i % 4], "negative": DOCUMENTS[(i + 1) % 4]} for i in range(8)]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    cache = tmp_path / "teacher-cache"

    def run(output):
        args = ["--loss", "margin_mse", "--teacher", str(teacher), "--teacher-cache", str(cache), "--max-steps", "1"]
        return train(tiny_student(tiny_encoder_dir, data, output, *args[:2], "--hard-negatives", "1", *args[2:]))

    assert run(tmp_path / "first").returncode == 0
    weights = load_file(teacher / "model.safetensors")
    save_file({k: v + 0.01 for k, v in weights.items()}, teacher / "model.safetensors", metadata={"format": "pt"})
    result = run(tmp_path / "second")  # the same path, other weights
    assert result.returncode != 0 and "teacher_weights" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- the Hub code keeps to itself


HUB_FILES = ("modeling_lite.py", "configuration_lite.py")
ALLOWED_IMPORTS = {"torch", "transformers", "configuration_lite"}


@pytest.mark.parametrize("name", HUB_FILES)
def test_the_hub_files_import_torch_transformers_and_configuration_lite_only(name):
    import ast

    tree = ast.parse((ROOT / name).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("configuration_lite" if node.level else node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("import_module", "__import__"):
            imported |= {arg.value.split(".")[0] for arg in node.args if isinstance(arg, ast.Constant)}
    assert imported - set(sys.stdlib_module_names) <= ALLOWED_IMPORTS, imported - set(sys.stdlib_module_names)


def test_the_staged_files_load_and_refuse_a_multi_vector_folder_with_the_package_absent(tmp_path, tokenizer):
    """The Hub files in a fresh process, outside the checkout, with lite_rerank made unimportable: the model loads
    and scores through AutoModel, and LiteModel.from_encoder on a multi-vector folder names the package's function
    instead of failing on an import."""
    import subprocess

    from conftest import save_multi_vector, tiny_model

    model_dir = tmp_path / "model"
    tiny_model(tokenizer=tokenizer).save_pretrained(model_dir)
    encoder_dir = tmp_path / "encoder"
    from transformers import AutoConfig, AutoModel

    AutoModel.from_config(AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=64)).save_pretrained(encoder_dir)  # fmt: skip
    tokenizer.save_pretrained(encoder_dir)
    multi_vector = save_multi_vector(tmp_path / "mve", encoder_dir)
    code = f"""
import sys, json
sys.modules["lite_rerank"] = None  # the package is absent
sys.path = [p for p in sys.path if p not in ("", {str(ROOT)!r})]
from transformers import AutoModel
model = AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
assert model.__module__.startswith("transformers_modules"), model.__module__
score = model.compute_score(["a query", "a passage"])
try:
    type(model).from_encoder({str(multi_vector)!r})
    outcome = "built"
except ValueError as error:
    outcome = str(error)
print(json.dumps([score, outcome]))
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    score, outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert score == pytest.approx(tiny_model(tokenizer=tokenizer).compute_score(["a query", "a passage"]), abs=1e-5)
    assert "is a multi-vector model" in outcome and "lite_rerank.multi_vector import from_encoder" in outcome


# ---------------------------------------------------------------- messages that name the right flag (B32)


def test_b32_the_doc_cache_precision_refusal_names_eval_reranks_own_flag(tmp_path, beir_fixture, saved_tiny_model):
    args = ["--model", f"m={saved_tiny_model}", "--data", beir_fixture, "--run", beir_fixture / "run.trec"]
    args += ["--doc-cache", tmp_path / "caches", "--no-progress"]
    run_script("eval_rerank.py", [*args, "--dtype", "float32"], check=True)
    result = run_script("eval_rerank.py", [*args, "--dtype", "bfloat16"], check=False)
    assert result.returncode != 0 and "computing in float32" in result.stderr
    assert "(this command: --dtype float32)" in result.stderr and "--model-dtype" not in result.stderr


# ---------------------------------------------------------------- the demo (D5)


def test_d5_a_scorer_the_demo_cannot_build_is_refused_before_the_first_stage(
    tmp_path, scorer_folder, tiny_encoder_dir
):
    edit_record(scorer_folder, lambda r: r["config"].update(query_max_length=1_000_000))
    out = tmp_path / "demo"
    args = ["--adapt", "--scorer", scorer_folder, "--encoder", tiny_encoder_dir, "--output-dir", out]
    result = run_script("scripts/demo.py", args, check=False)
    assert result.returncode != 0 and "--scorer:" in result.stderr and "query_max_length" in result.stderr
    assert "=== 1/4" not in result.stdout and "Traceback" not in result.stderr and not out.exists()


def test_d5_a_failed_stage_ends_with_its_message_only(tmp_path, scorer_folder, tiny_encoder_dir):
    import demo

    def failing(step, command, cwd):
        raise __import__("subprocess").CalledProcessError(1, command)

    with pytest.raises(SystemExit, match=r"demo stopped: stage 1 \(committed scorer\) failed; its message is above"):
        demo.main(["--adapt", "--scorer", str(scorer_folder), "--encoder", str(tiny_encoder_dir), "--output-dir", str(tmp_path)],
                  runner=failing)  # fmt: skip
