"""Teacher supervision in a compact form that can be committed, and back (issue 23, item 7).

    python scripts/pack_supervision.py pack --scored runs/scored/top30.train.jsonl.gz \
        --output data/debian-supervision/real.top30
    python scripts/pack_supervision.py unpack --packed data/debian-supervision/real.top30 \
        --output runs/scored/top30.train.jsonl.gz

`pack` reads a scored listwise file (`teacher_scores.py` output, next to its provenance) and writes
- PREFIX.queries.jsonl.gz: one row per training row, in order, with its `query` text;
- PREFIX.safetensors: `candidates` (int32 [rows, K]: each passage's line number in the corpus file, 0-based, the row's
  `positive` first, -1 where a row has fewer) and `teacher_scores` (float16 [rows, K], the teacher's raw logits);
- PREFIX.provenance.json: the scoring provenance (teacher weights sha256, command), the corpus file's sha256, this
  command.
`unpack` writes the scored listwise file again, its texts read from the corpus (which must be the one packed against),
in the layout train_accelerate.py and research/frozen_encoder.py read. Scores come back rounded to float16: within
0.004 of a logit of magnitude 8 (the rankings they define do not change except between near-ties).
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lite_rerank.data import DataError, read_beir_texts, read_jsonl  # noqa: E402
from lite_rerank.utils import (  # noqa: E402
    file_sha256,
    provenance_path,
    refuse_outputs_over_inputs,
    write_atomically,
    write_gzip_atomically,
    write_text_atomically,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "debian-rerank"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="a scored listwise file → PREFIX.{queries.jsonl.gz,safetensors,...}")
    pack.add_argument("--scored", required=True, help="teacher_scores.py output (.jsonl.gz)")
    pack.add_argument("--output", required=True, help="PREFIX of the three files")
    unpack = commands.add_parser("unpack", help="PREFIX → the scored listwise file")
    unpack.add_argument("--packed", required=True, help="PREFIX written by pack")
    unpack.add_argument("--output", required=True, help=".jsonl.gz")
    for command in (pack, unpack):
        command.add_argument("--corpus", default=str(DATA / "corpus.jsonl.gz"), help="the BEIR corpus file")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.command == "unpack" and not args.output.endswith(".jsonl.gz"):
        parser.error("--output must end in .jsonl.gz")
    return args


def files_of(prefix) -> dict[str, Path]:
    prefix = Path(prefix)
    return {kind: prefix.with_name(f"{prefix.name}.{kind}") for kind in ("queries.jsonl.gz", "safetensors")} | {
        "provenance": prefix.with_name(f"{prefix.name}.provenance.json")
    }


def pack(args):
    scored = Path(args.scored)
    record = provenance_path(scored)
    if not record.is_file():
        raise SystemExit(f"--scored {scored}: its {record.name} is missing; pack only finished outputs")
    scoring = json.loads(record.read_text())
    if scoring.get("output_sha256") != file_sha256(scored):
        raise SystemExit(f"--scored {scored}: its content is not what {record.name} records")
    corpus = read_beir_texts(args.corpus, with_title=False)
    line_of = {}
    for position, text in enumerate(corpus.values()):
        line_of.setdefault(text, position)  # passages of identical text train alike: the first stands for all
    queries, candidates, scores = [], [], []
    for line_no, row in read_jsonl(scored, required=("query", "positive", "negatives", "teacher_positive")):
        passages, values = [row["positive"], *row["negatives"]], [row["teacher_positive"], *row["teacher_negatives"]]
        if len(values) != len(passages):
            raise DataError(scored, f"{len(passages)} passages but {len(values)} teacher scores", line_no)
        missing = next((text for text in passages if text not in line_of), None)
        if missing is not None:
            raise DataError(scored, f"passage not in {args.corpus}: {missing[:80]!r}", line_no)
        queries.append(row["query"])
        candidates.append([line_of[text] for text in passages])
        scores.append(values)
    width = max(map(len, candidates))
    candidate_tensor = torch.full((len(candidates), width), -1, dtype=torch.int32)
    score_tensor = torch.zeros((len(candidates), width), dtype=torch.float16)
    for i, (ids, values) in enumerate(zip(candidates, scores)):
        candidate_tensor[i, : len(ids)] = torch.tensor(ids, dtype=torch.int32)
        score_tensor[i, : len(values)] = torch.tensor(values, dtype=torch.float16)
    if not torch.isfinite(score_tensor).all():
        raise SystemExit(f"--scored {scored}: a teacher score does not fit float16 (|logit| > 65504)")
    files = files_of(args.output)
    files["safetensors"].parent.mkdir(parents=True, exist_ok=True)
    write_gzip_atomically(
        files["queries.jsonl.gz"], ((json.dumps({"query": q}, ensure_ascii=False) + "\n").encode() for q in queries)
    )
    write_atomically(
        files["safetensors"],
        lambda path: save_file({"candidates": candidate_tensor, "teacher_scores": score_tensor}, str(path)),
    )
    provenance = {
        "rows": len(queries),
        "candidates_per_row": width,
        "corpus": str(args.corpus),
        "corpus_sha256": file_sha256(args.corpus),
        "queries_sha256": file_sha256(files["queries.jsonl.gz"]),
        "safetensors_sha256": file_sha256(files["safetensors"]),
        "scored_from": scoring,
        "command": "python " + shlex.join(["scripts/pack_supervision.py", *args.argv]),
    }
    write_text_atomically(files["provenance"], json.dumps(provenance, indent=2) + "\n")
    print(f"{args.output}: {len(queries)} rows × {width} candidates")
    return provenance


def unpack(args):
    files = files_of(args.packed)
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise SystemExit(f"--packed {args.packed}: missing {missing}")
    provenance = json.loads(files["provenance"].read_text())
    for kind, key in (("queries.jsonl.gz", "queries_sha256"), ("safetensors", "safetensors_sha256")):
        if file_sha256(files[kind]) != provenance[key]:
            raise SystemExit(f"{files[kind]}: not the file {files['provenance'].name} records (changed since?)")
    if file_sha256(args.corpus) != provenance["corpus_sha256"]:
        raise SystemExit(f"--corpus {args.corpus}: not the corpus {args.packed} was packed against (sha256 differs)")
    corpus = list(read_beir_texts(args.corpus, with_title=False).values())
    tensors = load_file(str(files["safetensors"]))
    queries = [row["query"] for _, row in read_jsonl(files["queries.jsonl.gz"], required=("query",))]
    if len(queries) != len(tensors["candidates"]):
        raise SystemExit(f"--packed {args.packed}: {len(queries)} queries but {len(tensors['candidates'])} rows")

    def rows():
        for query, ids, values in zip(queries, tensors["candidates"].tolist(), tensors["teacher_scores"].tolist()):
            kept = [(corpus[i], value) for i, value in zip(ids, values) if i >= 0]
            row = {"query": query, "positive": kept[0][0], "negatives": [text for text, _ in kept[1:]]}
            row |= {"teacher_positive": kept[0][1], "teacher_negatives": [value for _, value in kept[1:]]}
            yield (json.dumps(row, ensure_ascii=False) + "\n").encode()

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_gzip_atomically(output, rows())
    print(f"{output}: {len(queries)} scored rows")
    return output


def main(argv=None):
    args = parse_args(argv)
    if args.command == "pack":  # L7: PREFIX.provenance.json must not replace the scoring's own record
        inputs = [("--scored", args.scored), ("--scored", provenance_path(args.scored)), ("--corpus", args.corpus)]
        outputs = [("--output", path) for path in files_of(args.output).values()]
    else:  # L6: the rows must not replace the corpus or the packed files they come from
        inputs = [("--corpus", args.corpus)] + [("--packed", path) for path in files_of(args.packed).values()]
        outputs = [("--output", args.output)]
    refuse_outputs_over_inputs(outputs, inputs)
    try:
        return pack(args) if args.command == "pack" else unpack(args)
    except DataError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
