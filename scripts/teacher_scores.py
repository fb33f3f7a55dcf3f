"""Score each training row's positive and hard negatives with a cross-encoder teacher, once, into a training file.

    python scripts/teacher_scores.py --teacher runs/teacher/best --train-data listwise.train.jsonl.gz \
        --hard-negatives 7 --output runs/teacher/scored.train.jsonl.gz

Writes the listwise rows (`query`, `positive`, `negatives`) with `teacher_positive` and `teacher_negatives` (raw
logits), the format train_accelerate.py reads for `--loss kl` / `--loss margin_mse` (with --hard-negatives ≤ the
number scored): students then train without running the teacher. Triplet rows (`negative`) are written as triplets
with `teacher_positive` / `teacher_negative`. Next to the output, OUTPUT.provenance.json records the teacher (path and
the sha256 of its weights), the data (path and sha256), the command and the timing.

Resumable: rows are scored in parts of --part-rows, each written atomically under OUTPUT.parts/; a rerun scores only
the missing parts, then joins them (the parts are removed once the output is complete).
"""

import argparse
import gzip
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers.utils.logging import tqdm  # noqa: E402

from lite_rerank.cross_encoder import CrossEncoderScorer  # noqa: E402
from lite_rerank.data import DataError  # noqa: E402
from lite_rerank.triplets import load_train_dataset, negatives_of  # noqa: E402
from lite_rerank.utils import file_sha256, inference_dtype, write_atomically, write_text_atomically  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--teacher", required=True, help="a cross-encoder (train_accelerate.py --scorer cross-encoder)"
    )
    parser.add_argument("--train-data", required=True, help="a local triplet or listwise file")
    parser.add_argument(
        "--hard-negatives",
        type=int,
        default=None,
        help="score the first K negatives of each row (default: all of them)",
    )
    parser.add_argument("--output", required=True, help="the scored training file (.jsonl.gz)")
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per teacher batch")
    parser.add_argument("--part-rows", type=int, default=2048, help="rows per resumable part")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="teacher dtype (auto: float16 on CUDA, float32 on CPU)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for name in ("hard_negatives", "batch_size", "part_rows"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.output.endswith(".jsonl.gz"):
        parser.error("--output must end in .jsonl.gz")
    return args


def scored_row(row: dict, scores: list[float], listwise: bool) -> dict:
    if listwise:
        return {
            "query": row["query"],
            "positive": row["positive"],
            "negatives": row["negatives"][: len(scores) - 1],
            "teacher_positive": scores[0],
            "teacher_negatives": scores[1:],
        }
    return {
        "query": row["query"],
        "positive": row["positive"],
        "negative": row["negative"],
        "teacher_positive": scores[0],
        "teacher_negative": scores[1],
    }


def main(argv=None):
    args = parse_args(argv)
    output = Path(args.output)
    try:
        data = load_train_dataset(args.train_data, min_negatives=args.hard_negatives or 1)
    except DataError as error:
        raise SystemExit(f"error: {error}") from None
    listwise = "negatives" in data.column_names
    dtype = inference_dtype(args.device) if args.dtype == "auto" else getattr(torch, args.dtype)
    try:
        teacher = CrossEncoderScorer.from_pretrained(args.teacher, args.device, dtype)
    except (OSError, ValueError) as error:
        raise SystemExit(f"--teacher {args.teacher}: cannot load it: {error}") from None
    parts = output.with_name(output.name.removesuffix(".jsonl.gz") + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    source = {
        "train_data": str(args.train_data),
        "sha256": file_sha256(args.train_data),
        "hard_negatives": args.hard_negatives,
        "teacher": str(args.teacher),
        "teacher_weights_sha256": file_sha256(Path(args.teacher) / "model.safetensors")
        if (Path(args.teacher) / "model.safetensors").is_file()
        else None,
    }
    meta_path = parts / "meta.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()) != source:
        raise SystemExit(
            f"{parts} holds parts scored for other inputs ({meta_path}); remove that folder (this command "
            "made it) or choose another --output"
        )
    write_text_atomically(meta_path, json.dumps(source, indent=2) + "\n")
    starts = range(0, len(data), args.part_rows)
    start_time = time.perf_counter()
    bar = tqdm(total=len(data), desc="Teacher scores", unit="row", disable=args.no_progress)
    for start in starts:
        part = parts / f"part-{start:09d}.jsonl"
        rows = data.select(range(start, min(start + args.part_rows, len(data))))
        if not part.is_file():
            documents = [[row["positive"], *negatives_of(row)[: args.hard_negatives]] for row in rows]
            flat = teacher.score(
                [row["query"] for row, docs in zip(rows, documents) for _ in docs],
                [doc for docs in documents for doc in docs],
                args.batch_size,
            )
            lines, offset = [], 0
            for row, docs in zip(rows, documents):
                scores = flat[offset : offset + len(docs)]
                offset += len(docs)
                lines.append(json.dumps(scored_row(row, scores, listwise), ensure_ascii=False) + "\n")
            write_atomically(part, lambda path: path.write_text("".join(lines), encoding="utf-8"))
        bar.update(len(rows))
    bar.close()

    def join(path):
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
            for start in starts:
                out.write((parts / f"part-{start:09d}.jsonl").read_bytes())

    write_atomically(output, join)
    provenance = {
        **source,
        "output": str(output),
        "rows": len(data),
        "output_sha256": file_sha256(output),
        "command": "python " + shlex.join(["scripts/teacher_scores.py", *(argv or sys.argv[1:])]),
        "device": args.device,
        "dtype": str(dtype),
        "seconds_this_run": round(time.perf_counter() - start_time),
    }
    write_text_atomically(
        output.with_name(output.name.removesuffix(".jsonl.gz") + ".provenance.json"),
        json.dumps(provenance, indent=2) + "\n",
    )
    for start in starts:
        (parts / f"part-{start:09d}.jsonl").unlink()
    meta_path.unlink()
    parts.rmdir()
    print(f"{output}: {len(data)} rows with teacher scores")
    return provenance


if __name__ == "__main__":
    main()
