"""Encode a corpus once into a document-embedding cache, on one process or many (GPUs, machines).

    python scripts/build_doc_cache.py --model runs/lite/best --corpus ../shared/data/debian-rerank --output caches/debian
    accelerate launch --num_processes 8 scripts/build_doc_cache.py --model USER/lite --corpus corpus.parquet \
        --output caches/corpus --dtype int8
    # two CPU processes (accelerate's --cpu starts only one)
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 scripts/build_doc_cache.py ...

--corpus: a BEIR folder (its corpus.jsonl[.gz]), a .jsonl[.gz] / .parquet file with `_id`, `text` and optional
`title`, or a Hub dataset id (`--corpus-config`, `--corpus-split`). It is read through `datasets` (Arrow, memory-
mapped): only the ids are held in memory. The documents still missing are planned in corpus order into chunks of
--chunk-docs; process r encodes chunks r, r + N, r + 2N, … and records them in its own manifest, and process 0 merges
them into cache.json: the cache is the one a single process would write, chunk for chunk. Rerunning the command
after a crash (of any process) keeps every finished chunk and encodes the rest.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402
from transformers import AutoModel  # noqa: E402

from lite_rerank import hardware  # noqa: E402
from lite_rerank.data import DataError, find_file  # noqa: E402
from lite_rerank.doc_cache import DTYPES, CacheError, build_document_cache  # noqa: E402
from lite_rerank.utils import process_state, refuse_outputs_over_inputs  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved LITE model (folder or Hub id)")
    parser.add_argument("--corpus", required=True, help="BEIR folder, .jsonl[.gz] / .parquet file, or Hub dataset id")
    parser.add_argument("--corpus-config", default=None, help="config of a Hub dataset corpus (e.g. 'corpus')")
    parser.add_argument("--corpus-split", default="train", help="split of a file / Hub dataset corpus")
    parser.add_argument("--max-docs", type=int, default=None, help="only the first N documents (trials, scale curves)")
    parser.add_argument("--output", required=True, help="the cache folder (new, or a cache of this model to extend)")
    parser.add_argument("--dtype", default="float16", choices=sorted(DTYPES), help="storage (int8: per-vector scales)")
    hardware.add_arguments(parser, "--model-dtype", "the model encodes in")
    parser.add_argument("--chunk-docs", type=int, default=8192, help="documents per chunk file")
    parser.add_argument("--batch-size", type=int, default=64, help="documents per encoder batch")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for name in ("max_docs", "chunk_docs", "batch_size", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args


def load_corpus(spec: str, config: str | None, split: str, max_docs: int | None) -> datasets.Dataset:
    path = Path(spec)
    if path.is_dir():
        path = find_file(path, "corpus.jsonl")
    if path.is_file():
        kind = "parquet" if path.suffix == ".parquet" else "json"
        corpus = datasets.load_dataset(kind, data_files=str(path), split="train")
    elif path.suffix in (".jsonl", ".gz", ".parquet", ".json") or spec.startswith((".", "/")):
        raise DataError(path, "file not found")
    else:
        corpus = datasets.load_dataset(spec, config, split=split)
    missing = [column for column in ("_id", "text") if column not in corpus.column_names]
    if missing:
        raise DataError(spec, f"the corpus lacks column(s) {missing}; found {corpus.column_names}")
    return corpus.select(range(min(max_docs, len(corpus)))) if max_docs else corpus


def main(argv=None) -> dict:
    args = parse_args(argv)
    refuse_outputs_over_inputs([("--output", args.output)], [("--corpus", args.corpus), ("--model", args.model)])
    state = process_state()
    try:
        with state.main_process_first():  # the Arrow conversion happens once
            corpus = load_corpus(args.corpus, args.corpus_config, args.corpus_split, args.max_docs)
    except DataError as error:
        raise SystemExit(f"error: {error}") from None
    hardware.set_threads(args.threads, log=state.print)
    dtype = hardware.choose_dtype(args.model_dtype, state.device)
    state.print(hardware.precision_note(dtype, args.model_dtype, state.device))
    try:
        model = AutoModel.from_pretrained(args.model, trust_remote_code=True).to(state.device, dtype).eval()
        model.tokenizer  # noqa: B018 (checked now, by name: a missing or foreign tokenizer)
    except (OSError, ValueError) as error:
        raise SystemExit(f"--model {args.model}: cannot load it: {error}") from None
    start = time.perf_counter()
    try:
        cache = build_document_cache(
            model,
            corpus,
            args.output,
            args.dtype,
            args.chunk_docs,
            args.batch_size,
            progress=not args.no_progress and state.is_main_process,
            process_index=state.process_index,
            num_processes=state.num_processes,
            wait_for_everyone=state.wait_for_everyone,
        )
    except CacheError as error:
        raise SystemExit(f"error: {error.flag_hint('--model-dtype')}") from None
    seconds = time.perf_counter() - start
    chunks = cache.manifest["chunks"]
    report = {
        "documents": len(cache),
        "chunks": len(chunks),
        "processes": state.num_processes,
        "model_dtype": hardware.dtype_name(dtype),
        "hardware": hardware.describe(state.device),
        "seconds": round(seconds, 2),
        "bytes": sum(c["size"] for c in chunks),
        "vector_bytes_per_document": round(cache.bytes_per_document, 1),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if state.is_main_process:
        print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
