"""Fault cases, fourth round (issue 58): the scorer-folder scripts, nested secrets, the residual's scale, and the Hub
code kept to itself. Each case is driven as a user drives it (a script through its command line where it has one)
and ends in the right answer or a clear error naming the file, flag or field; nothing is written over an input.
Labels follow the issue (O / E / M = outputs, X = security, B / S = silently wrong, R = resource, U = unclear)."""

import json
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
