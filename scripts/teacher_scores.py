"""Score each training row's positive and hard negatives with a cross-encoder teacher, once, into a training file.

    python scripts/teacher_scores.py --teacher runs/teacher/best --train-data listwise.train.jsonl.gz \
        --hard-negatives 7 --output runs/teacher/scored.train.jsonl.gz

Writes the listwise rows (`query`, `positive`, `negatives`) with `teacher_positive` and `teacher_negatives` (raw
logits), the format train_accelerate.py reads for `--loss kl` / `--loss margin_mse` (with --hard-negatives ≤ the
number scored): students then train without running the teacher. Triplet rows (`negative`) are written as triplets
with `teacher_positive` / `teacher_negative`. Next to the output, OUTPUT.provenance.json records the teacher (path and
the sha256 of its weights), the data (path and sha256), the command and the timing.

Several processes or machines (`accelerate launch --num_processes N scripts/teacher_scores.py ...`; two CPU processes:
`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 ...`): part j is scored by process j mod N,
and process 0 joins them; the output is the one a single process writes, byte for byte.

Resumable: rows are scored in parts of --part-rows, each named by its row range and written atomically under
OUTPUT.parts/ (with the plan: inputs, row count, --part-rows); a rerun with the same settings scores only the missing
parts (other settings are refused), then joins them and checks the result row by row before the provenance is written
(the parts are removed once the output is complete). One run per output at a time.

More candidates later: `--reuse OUTPUT` of an earlier run (same teacher, dtype, int8 and length, checked from its
provenance) copies the scores of every pair it holds and scores only the others: a row's top 30 after its top 8 costs
the 22 new pairs.
"""

import argparse
import contextlib
import gzip
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers.utils.logging import tqdm  # noqa: E402

from lite_rerank import hardware  # noqa: E402
from lite_rerank.cross_encoder import CrossEncoderScorer  # noqa: E402
from lite_rerank.data import DataError  # noqa: E402
from lite_rerank.locking import LOCK_FILE, FolderInUse, FolderLock  # noqa: E402
from lite_rerank.triplets import load_train_dataset, negatives_of, teacher_scores_of  # noqa: E402
from lite_rerank.utils import (  # noqa: E402
    file_sha256,
    process_state,
    provenance_path,
    refuse_outputs_over_inputs,
    write_atomically,
    write_gzip_atomically,
    write_text_atomically,
)


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
    parser.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="pairs per teacher batch, by length (16: 1.2x faster than 64 on a 2-core CPU; benchmarks/teacher_speed.py)",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="cut pairs to this many tokens (default: the teacher's own, as it was trained): faster, less faithful",
    )
    parser.add_argument("--part-rows", type=int, default=2048, help="rows per resumable part")
    parser.add_argument("--device", default=None, help="default: this process's accelerator device, else cpu")
    hardware.add_arguments(parser, "--dtype", "the teacher scores in")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="CPU: the teacher's linear layers dynamically quantized to int8 (with --dtype float32); check its "
        "agreement with the full-precision teacher first (benchmarks/teacher_speed.py)",
    )
    parser.add_argument(
        "--reuse",
        default=None,
        metavar="SCORED",
        help="an earlier output of this script by the same teacher in the same form (its provenance is checked): "
        "pairs it scored are copied from it, not scored again — e.g. every row's top 30 after its top 8",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for name in ("hard_negatives", "batch_size", "part_rows", "threads", "max_length"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.output.endswith(".jsonl.gz"):
        parser.error("--output must end in .jsonl.gz")
    inputs = [("--train-data", args.train_data), ("--teacher", args.teacher)]
    if args.reuse:
        inputs += [("--reuse", args.reuse), ("--reuse", provenance_path(args.reuse))]
    refuse_outputs_over_inputs([("--output", args.output), ("--output", provenance_path(args.output))], inputs)
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
    state = process_state()
    device = args.device or str(state.device)
    output = Path(args.output)
    try:
        with state.main_process_first():
            data = load_train_dataset(args.train_data, min_negatives=args.hard_negatives or 1)
    except DataError as error:
        raise SystemExit(f"error: {error}") from None
    listwise = "negatives" in data.column_names
    hardware.set_threads(args.threads, log=state.print)
    dtype = hardware.choose_dtype(args.dtype, device)
    state.print(hardware.precision_note(dtype, args.dtype, device) + (", int8 linear layers" if args.int8 else ""))
    try:
        teacher = CrossEncoderScorer.from_pretrained(args.teacher, device, dtype, int8=args.int8)
    except (OSError, ValueError) as error:
        raise SystemExit(f"--teacher {args.teacher}: cannot load it: {error}") from None
    if args.max_length:
        teacher.max_length = min(args.max_length, teacher.max_length)
    parts = output.with_name(output.name.removesuffix(".jsonl.gz") + ".parts")
    source = {
        "train_data": str(args.train_data),
        "sha256": file_sha256(args.train_data),
        "hard_negatives": args.hard_negatives,
        "teacher": str(args.teacher),
        "teacher_weights_sha256": file_sha256(Path(args.teacher) / "model.safetensors")
        if (Path(args.teacher) / "model.safetensors").is_file()
        else None,
    }
    plan = {**source, "rows": len(data), "part_rows": args.part_rows, "int8": args.int8, "dtype": str(dtype)}
    plan["max_length"] = teacher.max_length  # parts of one output are all scored alike
    reused = {}
    if args.reuse:
        plan["reuse"], reused = reused_scores(args.reuse, plan)
    # One scoring run per output at a time: process 0 holds the parts folder, the others of this run follow it.
    lock = FolderLock(parts, "teacher scoring") if state.is_main_process else contextlib.nullcontext()
    try:
        with lock:
            provenance = score_and_join(
                args, argv, state, data, teacher, dtype, source, plan, parts, output, listwise, reused
            )
    except FolderInUse as error:
        raise SystemExit(f"error: {error}") from None
    if not state.is_main_process:
        return None
    (parts / LOCK_FILE).unlink()
    parts.rmdir()
    print(f"{output}: {len(data)} rows with teacher scores")
    return provenance


def score_and_join(
    args, argv, state, data, teacher, dtype, source, plan, parts, output, listwise, reused
) -> dict | None:
    """Score the parts still missing (part j by process j mod N; pairs in `reused` copied, not scored), then, on
    process 0, join them, check the result, write the provenance and remove the parts."""
    if state.is_main_process:
        check_parts(parts, plan)
    state.wait_for_everyone()
    ranges = plan_ranges(plan)
    mine = [(start, end) for j, (start, end) in enumerate(ranges) if j % state.num_processes == state.process_index]
    start_time = time.perf_counter()
    bar = tqdm(
        total=sum(end - start for start, end in mine), desc="Teacher scores", unit="row", disable=args.no_progress
    )
    for start, end in mine:
        part = part_path(parts, start, end)
        rows = data.select(range(start, end))
        if not part.is_file():
            documents = [[row["positive"], *negatives_of(row)[: args.hard_negatives]] for row in rows]
            pairs = [(row["query"], doc) for row, docs in zip(rows, documents) for doc in docs]
            flat = [reused.get(pair_key(query, doc)) for query, doc in pairs]
            missing = [i for i, score in enumerate(flat) if score is None]
            new = teacher.score([pairs[i][0] for i in missing], [pairs[i][1] for i in missing], args.batch_size)
            for i, score in zip(missing, new):
                flat[i] = score
            lines, offset = [], 0
            for row, docs in zip(rows, documents):
                scores = flat[offset : offset + len(docs)]
                offset += len(docs)
                lines.append(json.dumps(scored_row(row, scores, listwise), ensure_ascii=False) + "\n")
            write_atomically(part, lambda path: path.write_text("".join(lines), encoding="utf-8"))
        bar.update(len(rows))
    bar.close()
    state.wait_for_everyone()
    if not state.is_main_process:
        return None

    write_gzip_atomically(output, (part_path(parts, start, end).read_bytes() for start, end in ranges))
    check_output(output, data)  # every row, once, in the training file's order, before anything says so
    provenance = {
        **source,
        "output": str(output),
        "rows": len(data),
        "output_sha256": file_sha256(output),
        "command": "python " + shlex.join(["scripts/teacher_scores.py", *(argv or sys.argv[1:])]),
        "device": str(teacher.device),
        "dtype": str(dtype),
        "int8_linear_layers": args.int8,
        "max_length": teacher.max_length,
        "processes": state.num_processes,
        "hardware": hardware.describe(teacher.device),
        "seconds_this_run": round(time.perf_counter() - start_time),
        "reused": plan.get("reuse"),
    }
    write_text_atomically(
        provenance_path(output),
        json.dumps(provenance, indent=2) + "\n",
    )
    for start, end in ranges:  # what this command wrote, and nothing else
        part_path(parts, start, end).unlink()
    (parts / PLAN).unlink()
    return provenance


PLAN = "plan.json"
# What must match between a reused output and this run for its scores to be this teacher's in this form:
# {key of the plan: key of the provenance}.
SAME_TEACHER = {
    "teacher_weights_sha256": "teacher_weights_sha256",
    "dtype": "dtype",
    "int8": "int8_linear_layers",
    "max_length": "max_length",
}


def pair_key(query: str, passage: str) -> bytes:
    """A compact key of one (query, passage) pair: 16 bytes instead of its texts."""
    return hashlib.blake2b(f"{query}\x00{passage}".encode(), digest_size=16).digest()


def reused_scores(path, plan: dict) -> tuple[dict, dict[bytes, float]]:
    """What the plan records of an earlier output (path, sha256) and its {pair: score}, after checking from its
    provenance that the same teacher in the same form (weights, dtype, int8, max length) scored it."""
    path = Path(path)
    record = provenance_path(path)
    if not path.is_file() or not record.is_file():
        raise SystemExit(f"--reuse {path}: needs a finished output of this script and its {record.name}")
    provenance, sha256 = json.loads(record.read_text()), file_sha256(path)
    if provenance.get("output_sha256") != sha256:
        raise SystemExit(f"--reuse {path}: its content is not what {record.name} records (changed since?)")
    differ = {
        mine: (provenance.get(theirs), plan[mine])
        for mine, theirs in SAME_TEACHER.items()
        if provenance.get(theirs) != plan[mine]
    }
    if differ or plan["teacher_weights_sha256"] is None:
        details = "; ".join(f"{key}: {old!r} there, {new!r} here" for key, (old, new) in sorted(differ.items()))
        raise SystemExit(
            f"--reuse {path}: not scored by this teacher in this form ({details or 'no weights checksum'}); its "
            "scores cannot be mixed with this run's"
        )
    scores = {}
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            for passage, score in zip([row["positive"], *negatives_of(row)], teacher_scores_of(row)):
                scores[pair_key(row["query"], passage)] = score
    return {"path": str(path), "sha256": sha256}, scores


def plan_ranges(plan: dict) -> list[tuple[int, int]]:
    """The row ranges [start, end) of the plan's parts: --part-rows rows each, the last one shorter."""
    step, rows = plan["part_rows"], plan["rows"]
    return [(start, min(start + step, rows)) for start in range(0, rows, step)]


def part_path(parts: Path, start: int, end: int) -> Path:
    """A part holds rows [start, end) of the training file, and says so in its name."""
    return parts / f"part-{start:09d}-{end:09d}.jsonl"


def check_parts(parts: Path, plan: dict) -> list[tuple[int, int]]:
    """The row ranges of the parts, after checking that the parts folder belongs to this plan (same inputs, same rows,
    same --part-rows) and holds nothing else; writes the plan on a first run."""
    plan_path = parts / PLAN
    if plan_path.is_file():
        stored = json.loads(plan_path.read_text())
        changed = {
            key: (stored.get(key), plan.get(key))
            for key in stored.keys() | plan.keys()
            if stored.get(key) != plan.get(key)
        }
        if changed:
            details = "; ".join(f"{key}: {old!r} → {new!r}" for key, (old, new) in sorted(changed.items()))
            raise SystemExit(
                f"{parts} holds parts of another plan ({details}). Rerun with the settings it was started with "
                f"(e.g. --part-rows {stored.get('part_rows')}) to finish it, or choose another --output; nothing was "
                "changed"
            )
    ranges = plan_ranges(plan)
    expected = {part_path(parts, start, end).name for start, end in ranges} | {PLAN, LOCK_FILE}
    strangers = sorted(
        p.name for p in parts.iterdir() if p.name not in expected and not p.name.startswith(".partial-")
    )
    if strangers:
        raise SystemExit(
            f"{parts} holds files this plan does not write ({strangers[:3]}): parts of another run or version? "
            "Move them away or choose another --output; nothing was changed"
        )
    write_text_atomically(plan_path, json.dumps(plan, indent=2) + "\n")
    return ranges


def check_output(output: Path, data):
    """The joined file holds exactly the training file's rows, in order (their queries checked one by one)."""
    with gzip.open(output, "rt", encoding="utf-8") as lines:
        queries = [json.loads(line)["query"] for line in lines]
    if queries != list(data["query"]):
        raise SystemExit(
            f"{output}: holds {len(queries)} rows, the training file {len(data)}, or not in its order; the parts are "
            "inconsistent: remove the .parts folder and score again"
        )


if __name__ == "__main__":
    main()
