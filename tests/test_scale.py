"""Everything after training across processes (issue 15): the document cache built by several processes is the one
a single process builds, a process that died is resumed, and evaluation sharded over processes gives the metrics
and runs of one process. Two CPU processes (gloo), as the training tests use."""

import json

import pytest
from conftest import DOCUMENTS, QUERIES, run_script, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture
def corpus(tmp_path):
    rows = [
        {"_id": f"p{i:02d}", "title": "", "text": f"{DOCUMENTS[i % 4]} {QUERIES[i % 3]} {' extra' * (i % 5)} {i}"}
        for i in range(23)
    ]
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


def build(model, corpus, output, processes, *extra):
    return run_script(
        "scripts/build_doc_cache.py",
        [
            "--model",
            model,
            "--corpus",
            corpus,
            "--output",
            output,
            "--chunk-docs",
            "4",
            "--dtype",
            "float16",
            "--no-progress",
            *extra,
        ],
        processes,
    )


def chunks(folder):
    """{file: (metadata, {tensor name: values})} of every chunk: ids, text hashes and vectors, bit for bit (the
    header's key order is not part of the content: safetensors writes it from a hash map)."""
    from safetensors import safe_open

    content = {}
    for path in sorted(folder.glob("chunk-*.safetensors")):
        with safe_open(str(path), framework="np") as handle:
            tensors = {name: handle.get_tensor(name).tobytes() for name in handle.keys()}
            content[path.name] = (handle.metadata(), tensors)
    return content


def test_two_processes_write_the_cache_one_process_writes_and_a_dead_process_is_resumed(
    tmp_path, saved_tiny_model, corpus
):
    build(saved_tiny_model, corpus, tmp_path / "one", 1)
    result = build(saved_tiny_model, corpus, tmp_path / "two", 2)
    assert json.loads(result.stdout.strip().splitlines()[-1])["processes"] == 2
    one, two = chunks(tmp_path / "one"), chunks(tmp_path / "two")
    assert len(one) == 6 and one == two  # same ids, same vectors, bit for bit
    manifest = json.loads((tmp_path / "two" / "cache.json").read_text())

    def listing(chunks):  # files and sizes; the checksums cover each file's own header order
        return [(c["file"], c["num_docs"], c["vector_bytes"], c["size"]) for c in chunks]

    assert listing(manifest["chunks"]) == listing(json.loads((tmp_path / "one" / "cache.json").read_text())["chunks"])
    assert not list((tmp_path / "two").glob("cache.rank*.json"))
    # The state a crash of process 1 after its first chunk leaves: the build's plan, no merge yet, process 0's
    # chunks written and listed in its own manifest, process 1's second and third chunks never written.
    import datasets

    from lite_rerank.doc_cache import Corpus, _plan

    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for path in (tmp_path / "two").glob("chunk-*.safetensors"):
        if path.name not in ("chunk-00003.safetensors", "chunk-00005.safetensors"):
            (crashed / path.name).write_bytes(path.read_bytes())
    by_file = {chunk["file"]: chunk for chunk in manifest["chunks"]}
    (crashed / "cache.json").write_text(json.dumps({**manifest, "chunks": []}))
    _plan(crashed, Corpus(datasets.load_dataset("json", data_files=str(corpus), split="train")), {"chunks": []}, {}, 4)
    (crashed / "cache.rank0.json").write_text(
        json.dumps({"chunks": [by_file[f"chunk-0000{i}.safetensors"] for i in (0, 2, 4)]})
    )
    (crashed / "cache.rank1.json").write_text(json.dumps({"chunks": [by_file["chunk-00001.safetensors"]]}))
    kept = {name: (crashed / name).stat().st_mtime_ns for name in chunks(crashed)}
    build(saved_tiny_model, corpus, crashed, 2)
    assert chunks(crashed) == one
    assert all((crashed / name).stat().st_mtime_ns == mtime for name, mtime in kept.items())  # not encoded again
    assert listing(json.loads((crashed / "cache.json").read_text())["chunks"]) == listing(manifest["chunks"])
    assert not (crashed / "plan.json").exists() and not list(crashed.glob("cache.rank*.json"))


def test_evaluation_sharded_over_two_processes_equals_one_process(tmp_path, saved_tiny_model, beir_fixture):
    args = [
        "--model",
        f"m={saved_tiny_model}",
        "--data",
        beir_fixture,
        "--run",
        beir_fixture / "run.trec",
        "--no-progress",
        "--doc-cache",
        tmp_path / "caches",
    ]
    run_script("eval_rerank.py", [*args, "--output", tmp_path / "one" / "r.json"])
    run_script("eval_rerank.py", [*args, "--output", tmp_path / "two" / "r.json"], processes=2)
    one, two = (json.loads((tmp_path / name / "r.json").read_text()) for name in ("one", "two"))
    assert one["models"] == two["models"]
    assert one["processes"]["count"] == 1 and two["processes"]["count"] == 2
    assert sum(two["processes"]["queries_per_process"]) == one["data"]["num_queries"] == 3
    assert len(two["processes"]["queries_per_process"]) == 2
    for tag in ("m", "first-stage"):
        assert (tmp_path / "one" / f"r.{tag}.trec").read_text() == (tmp_path / "two" / f"r.{tag}.trec").read_text()
