"""research/supervision_curve.py on the small generated set of test_frozen_encoder.py, with a tiny encoder."""

import gzip
import json
import math
import sys

import pytest
from product_fixtures import ROOT, minilm_path, tiny_encoder_dir, tokenizer  # noqa: F401 (fixtures)
from test_frozen_encoder import data  # noqa: F401 (fixture)

pytestmark = pytest.mark.research

sys.path.insert(0, str(ROOT / "research"))
import frozen_encoder  # noqa: E402
import supervision_curve  # noqa: E402

from lite_rerank.data import read_qrels, read_trec_run  # noqa: E402
from lite_rerank.significance import reciprocal_ranks  # noqa: E402
from lite_rerank.utils import nested_sample  # noqa: E402


def with_teacher_scores(negatives):
    """The generated listwise rows with made-up teacher scores (the positive first), as teacher_scores.py writes."""
    path = negatives / "listwise.train.jsonl.gz"
    rows = [json.loads(line) for line in gzip.open(path, "rt")]
    scored = negatives / "scored.train.jsonl.gz"
    with gzip.open(scored, "wt") as out:
        for row in rows:
            row["teacher_positive"] = 5.0
            row["teacher_negatives"] = [-float(k) for k in range(len(row["negatives"]))]
            out.write(json.dumps(row) + "\n")
    return scored


def test_nested_samples_are_subsets_of_larger_ones():
    small, large = nested_sample(100, 10), nested_sample(100, 40)
    assert len(set(large)) == 40 and set(small) <= set(large)
    assert nested_sample(100, 10) == small  # seeded


def test_trend_slope_and_where_it_crosses_zero():
    points = [{"training_rows": 1000, "difference": -0.02}, {"training_rows": 10000, "difference": -0.01}]
    fit = supervision_curve.trend(points)
    assert fit["slope_per_tenfold"] == pytest.approx(0.01)
    assert fit["zero_crossing_rows"] == pytest.approx(100000) and fit["zero_crossing_is"] == "an extrapolation"
    widening = [{"training_rows": 1000, "difference": -0.01}, {"training_rows": 10000, "difference": -0.02}]
    assert supervision_curve.trend(widening)["zero_crossing_rows"] is None
    assert supervision_curve.trend(points[:1]) is None


def test_a_series_of_nested_sizes_with_paired_tests_resumed_without_training(
    tmp_path,
    data,  # noqa: F811
    tiny_encoder_dir,  # noqa: F811
    monkeypatch,
):
    data_dir, negatives = data
    scored = with_teacher_scores(negatives)
    results, plot = tmp_path / "curve.json", tmp_path / "curve.png"
    results.write_text(json.dumps({"series": {"kept": {"points": [], "trend": None}}}))  # another series, kept
    argv = [
        "--label",
        "real, 8 candidates",
        "--sizes",
        "12",
        "6",
        "--variant",
        "kl from the teacher, 7 hard negatives",
        "--negatives",
        str(negatives),
        "--teacher-scores",
        str(scored),
        "--encoder",
        str(tiny_encoder_dir),
        "--data",
        str(data_dir),
        "--epochs",
        "2",
        "--min-examples",
        "18",  # the 6-row point trains for 3 epochs, the 12-row one for 2
        "--batch-size",
        "4",
        "--dtype",
        "float32",
        "--permutations",
        "2000",
        "--start",
        "maxsim-imitation",
        "--work-dir",
        str(tmp_path / "work"),
        "--results",
        str(results),
        "--plot",
        str(plot),
    ]
    first = supervision_curve.main(argv)
    series = first["series"]["real, 8 candidates"]
    assert [p["training_rows"] for p in series["points"]] == [6, 12]
    assert [p["epochs"] for p in series["points"]] == [3, 2]
    assert [p["start"] for p in series["points"]] == ["maxsim-imitation"] * 2 and series["start"] == "maxsim-imitation"
    assert "kept" in first["series"] and json.loads(results.read_text()) == first
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    qrels = read_qrels(data_dir / "qrels" / "dev.tsv")
    for p in series["points"]:
        report = json.loads((tmp_path / "work" / p["report"].rsplit("/", 1)[-1]).read_text())
        assert report["kl from the teacher, 7 hard negatives"]["training_rows"] == p["training_rows"]
        # the difference, recomputed from the two dev runs read back independently
        path = supervision_curve.report_path(tmp_path / "work", "real, 8 candidates", p["training_rows"])
        lite = reciprocal_ranks(
            read_trec_run(frozen_encoder.trec_path(path, "kl from the teacher, 7 hard negatives")), qrels
        )
        maxsim = reciprocal_ranks(read_trec_run(frozen_encoder.trec_path(path, supervision_curve.MAXSIM)), qrels)
        assert p["difference"] == pytest.approx(sum(lite.values()) / 4 - sum(maxsim.values()) / 4, abs=1e-9)
        assert p["lite_dev_mrr@10"] - p["maxsim_dev_mrr@10"] == pytest.approx(p["difference"], abs=1e-9)
        assert 0 < p["p_value"] <= 1 and not math.isnan(p["p_value"])

    def no_training(argv):
        raise AssertionError("a size with a dev result was trained again")

    monkeypatch.setattr(frozen_encoder, "main", no_training)
    again = supervision_curve.main(argv)
    assert again["series"]["real, 8 candidates"]["points"] == series["points"]


def test_more_rows_than_the_file_holds_is_refused(tmp_path, data, tiny_encoder_dir):  # noqa: F811
    data_dir, negatives = data
    scored = with_teacher_scores(negatives)
    with pytest.raises(SystemExit, match="--train-queries 99: .* hold only 16 rows"):
        frozen_encoder.main(
            ["--encoder", str(tiny_encoder_dir), "--data", str(data_dir), "--negatives", str(negatives)]
            + ["--teacher-scores", str(scored), "--variants", "kl from the teacher, 7 hard negatives"]
            + ["--train-queries", "99", "--dtype", "float32", "--output", str(tmp_path / "r.json")]
        )


def test_fill_in_order_takes_earlier_files_whole_then_a_nested_sample_of_the_next():
    assert frozen_encoder.fill_in_order([5, 10], 15) == [list(range(5)), list(range(10))]
    small, large = frozen_encoder.fill_in_order([5, 10], 3), frozen_encoder.fill_in_order([5, 10], 8)
    assert len(small[0]) == 3 and small[1] == [] and set(small[0]) < set(range(5))
    assert large[0] == list(range(5)) and len(large[1]) == 3 and large[1] == sorted(nested_sample(10, 3))


def test_pseudo_queries_from_a_second_file_are_encoded_and_fill_after_the_real_rows(
    tmp_path,
    data,  # noqa: F811
    tiny_encoder_dir,  # noqa: F811
):
    """Real + pseudo points of the curve: pseudo-queries have no id in queries.jsonl (they are encoded with it), and
    --train-queries takes every real row before any pseudo row."""
    data_dir, negatives = data
    scored = with_teacher_scores(negatives)
    rows = [json.loads(line) for line in gzip.open(scored, "rt")]
    pseudo = tmp_path / "pseudo.scored.jsonl.gz"
    with gzip.open(pseudo, "wt") as out:
        out.writelines(json.dumps({**rows[i], "query": f"made up pseudo query {i}"}) + "\n" for i in range(3))
    report = frozen_encoder.main(
        ["--encoder", str(tiny_encoder_dir), "--data", str(data_dir), "--negatives", str(negatives)]
        + ["--teacher-scores", str(scored), str(pseudo), "--variants", "kl from the teacher, 7 hard negatives"]
        + ["--epochs", "1", "--train-queries", "18", "--batch-size", "4", "--dtype", "float32"]
        + ["--output", str(tmp_path / "r.json")]
    )
    assert report["kl from the teacher, 7 hard negatives"]["training_rows"] == 16 + 2
    cached = [p.name for p in (tmp_path / "embeddings").iterdir()]
    assert any(name.startswith("queries+3-more-") for name in cached), cached
    with pytest.raises(SystemExit, match="--train-queries 20: .* hold only 19 rows"):
        frozen_encoder.main(
            ["--encoder", str(tiny_encoder_dir), "--data", str(data_dir), "--negatives", str(negatives)]
            + ["--teacher-scores", str(scored), str(pseudo), "--variants", "kl from the teacher, 7 hard negatives"]
            + ["--train-queries", "20", "--dtype", "float32", "--output", str(tmp_path / "r.json")]
        )


def test_a_teacher_variant_without_teacher_scores_is_refused_before_encoding(tmp_path, data, tiny_encoder_dir):  # noqa: F811
    data_dir, negatives = data
    with pytest.raises(SystemExit, match="learns from teacher scores: give --teacher-scores"):
        frozen_encoder.main(
            ["--encoder", str(tiny_encoder_dir), "--data", str(data_dir), "--negatives", str(negatives)]
            + ["--variants", "kl from the teacher, 7 hard negatives", "--dtype", "float32"]
            + ["--output", str(tmp_path / "r.json")]
        )
    assert not (tmp_path / "embeddings" / "passages.safetensors").exists()


def test_the_figure_draws_curves_and_single_points_of_the_same_encoder_only():
    def series(points, encoder="minilm"):
        return {"encoder": encoder, "points": [{"training_rows": n} for n in range(points)]}

    results = {
        "series": {"real": series(5), "pseudo": series(1), "other encoder": series(1, "teacher"), "x": series(2)}
    }
    assert set(supervision_curve.drawn_series(results)) == {"real", "pseudo", "x"}


# --keep-points: a series measured over several sessions grows, never mixes scorers
KEEP_VARIANT = "kl from the teacher, 29 hard negatives"


def stored_series(scorer=None):
    series = {"variant": KEEP_VARIANT, "points": [{"training_rows": n, "difference": 0.0} for n in (5000, 41329)]}
    if scorer:
        series["scorer"] = scorer
    return series


def keep_points_args(*extra):
    base = ["--label", "real", "--sizes", "5000", "13000", "--negatives", "n", "--work-dir", "w", "--results", "r"]
    return supervision_curve.parse_args([*base, "--variant", KEEP_VARIANT, *extra])


def test_kept_points_are_the_stored_sizes_not_measured_again():
    kept = supervision_curve.kept_points(keep_points_args("--keep-points"), stored_series())
    assert [p["training_rows"] for p in kept] == [41329]


def test_without_keep_points_the_series_is_replaced():
    assert supervision_curve.kept_points(keep_points_args(), stored_series()) == []


def test_a_series_of_another_scorer_is_refused_by_name():
    with pytest.raises(SystemExit, match="'residual' scorer; this run is .* with 'lite'"):
        supervision_curve.kept_points(keep_points_args("--keep-points"), stored_series("residual"))
    with pytest.raises(SystemExit, match="with 'residual'"):
        supervision_curve.kept_points(keep_points_args("--keep-points", "--scorer", "residual"), stored_series())


def test_a_series_with_other_query_token_weights_is_refused_by_name():
    weighted = stored_series() | {"query_token_weights": "w.safetensors"}
    with pytest.raises(SystemExit, match="query token weights 'w.safetensors', this run None"):
        supervision_curve.kept_points(keep_points_args("--keep-points"), weighted)
    args = keep_points_args("--keep-points", "--query-token-weights", "w.safetensors")
    assert [p["training_rows"] for p in supervision_curve.kept_points(args, weighted)] == [41329]


def test_a_weighted_series_compares_each_point_with_the_weighted_maxsim_too(
    tmp_path,
    data,  # noqa: F811
    tiny_encoder_dir,  # noqa: F811
):
    import torch
    from safetensors.torch import save_file

    data_dir, negatives = data
    scored = with_teacher_scores(negatives)
    weights = tmp_path / "w.safetensors"
    save_file({"log_weights": torch.randn(30522, generator=torch.Generator().manual_seed(0))}, weights)
    argv = ["--label", "weighted", "--sizes", "12", "--variant", "kl from the teacher, 7 hard negatives"]
    argv += ["--negatives", str(negatives), "--teacher-scores", str(scored), "--encoder", str(tiny_encoder_dir)]
    argv += ["--data", str(data_dir), "--epochs", "1", "--batch-size", "4", "--dtype", "float32"]
    argv += ["--permutations", "2000", "--min-examples", "12", "--scorer", "residual"]
    argv += ["--query-token-weights", str(weights)]
    argv += ["--work-dir", str(tmp_path / "work"), "--results", str(tmp_path / "curve.json")]
    series = supervision_curve.main(argv)["series"]["weighted"]
    assert series["query_token_weights"] == str(weights)
    (p,) = series["points"]
    qrels = read_qrels(data_dir / "qrels" / "dev.tsv")
    path = supervision_curve.report_path(tmp_path / "work", "weighted", 12)
    weighted = reciprocal_ranks(read_trec_run(frozen_encoder.trec_path(path, frozen_encoder.WEIGHTED_MAXSIM)), qrels)
    assert p["weighted_maxsim_dev_mrr@10"] == pytest.approx(sum(weighted.values()) / 4, abs=1e-9)
    lite = reciprocal_ranks(
        read_trec_run(frozen_encoder.trec_path(path, "kl from the teacher, 7 hard negatives")), qrels
    )
    assert p["vs_weighted_maxsim"]["difference"] == pytest.approx(
        sum(lite.values()) / 4 - sum(weighted.values()) / 4, abs=1e-9
    )
