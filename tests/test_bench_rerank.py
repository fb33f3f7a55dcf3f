"""The benchmark script runs end to end and prints its table (tiny encoders: this checks the script, not speed)."""

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_rerank  # noqa: E402


def test_benchmark_smoke_run(tmp_path, capsys):
    rows = bench_rerank.main(["--smoke", "--dtype", "float32", "--output", str(tmp_path / "bench.json")])
    table = capsys.readouterr().out
    assert "| scorer only (cached) | LITE (768-d × 200 tokens) | 8 |" in table
    assert "× the cross-encoder" in table and "matmul ceiling" in table
    kinds = {row["kind"] for row in rows}
    assert kinds == {"ceiling", "scorer", "e2e", "storage"}
    storage = {(r["name"], r["cache_dtype"]): r["bytes_per_doc"] for r in rows if r["kind"] == "storage"}
    # the same documents: int8 stores dim + 2 bytes per vector instead of 2·dim
    assert storage[("Small-LITE d'=128, 50 tokens", "float16")] == 50 * 128 * 2
    assert storage[("Small-LITE d'=128, 50 tokens", "int8")] == 50 * (128 + 2)
    assert (tmp_path / "bench.json").exists()
