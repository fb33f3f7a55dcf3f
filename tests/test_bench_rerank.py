"""The benchmark script runs end to end and prints its tables (tiny encoders: this checks the script, not speed)."""

import json
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_rerank  # noqa: E402


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path, capsys):
    # a saved residual with a live LITE term stands in for the shipped student: loaded with its own config and weights
    shipped = bench_rerank.build_variant(
        bench_rerank.MINILM, {"scorer": "residual"}, bench_rerank.LIVE, None, "cpu", bench_rerank.torch.float32, True
    )
    shipped.save_pretrained(tmp_path / "shipped")
    rows = bench_rerank.main(
        [
            "--smoke",
            "--output",
            str(tmp_path / "bench.json"),
            "--shipped",
            f"{bench_rerank.SHIPPED_LITE}={tmp_path / 'shipped'}",
        ]
    )
    table = capsys.readouterr().out
    assert "| scorer only (cached) | LITE (768-d × 200 tokens) | real | padding-free | 8 |" in table
    assert "× the previous code's speed" in table and "× the cross-encoder" in table and "matmul ceiling" in table
    assert {row["kind"] for row in rows} == {"ceiling", "scorer", "e2e", "storage"}
    scorer = [(r["name"], r["lengths"], r["path"]) for r in rows if r["kind"] == "scorer"]
    distilbert = sum(encoder is bench_rerank.DISTILBERT for encoder, _, _ in bench_rerank.VARIANTS.values())
    # the paper's sizes by the previous code and the current one; the shipped sizes by the current one
    shipped = 1
    assert len(scorer) == len(set(scorer)) == 4 * distilbert + 2 * (len(bench_rerank.VARIANTS) - distilbert + shipped)
    # every target of issue 57 measured, each against its bound; the shipped student's too
    targets = {r["what"] for r in json.loads((tmp_path / "bench.json").read_text())["targets"]}
    assert targets == {*bench_rerank.RATIOS, "cached MiniLM residual / cross-encoder, candidates per s",
                       "cached shipped student / cross-encoder, candidates per s",
                       "10-token / 30-token query, cached, end to end"}  # fmt: skip
    assert any(r["kind"] == "e2e" and r["name"].startswith(bench_rerank.SHIPPED_LITE) for r in rows)

    assert "| zero-term residual / MaxSim | float32 | 8 |" in table
    storage = {(r["name"], r["cache_dtype"]): r["bytes_per_doc"] for r in rows if r["kind"] == "storage"}
    # the same documents: int8 stores dim + 2 bytes per vector instead of 2·dim
    assert storage[("Small-LITE d'=128, 50 tokens", "float16")] == 50 * 128 * 2
    assert storage[("Small-LITE d'=128, 50 tokens", "int8")] == 50 * (128 + 2)
    assert (tmp_path / "bench.json").exists()


def test_a_shipped_row_must_name_a_saved_model(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_rerank.parse_args(["--shipped", f"student={tmp_path}"])  # no config.json there
    assert "a saved LITE model (with config.json)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_rerank.parse_args(["--shipped", f"MiniLM LITE={tmp_path}"])
    assert "is a built-in row's name" in capsys.readouterr().err


def test_flops_of_the_padding_free_path_count_only_the_real_rows_and_columns():
    config = bench_rerank.LiteConfig(
        query_max_length=30, doc_max_length=200, row_hidden_size=2400, col_hidden_size=360
    )
    full = bench_rerank.scorer_flops(config)
    assert full == 2 * 30 * 200 * 768 + 2 * 30 * (200 * 2400 + 2400 * 200) + 2 * 200 * (2 * 30 * 360) + 2 * 30 * 200
    assert bench_rerank.scorer_flops(config, 30, 200) == full
    assert bench_rerank.scorer_flops(config, 11, 81) < full / 2
