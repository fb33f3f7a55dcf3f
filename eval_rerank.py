"""Re-rank the same first-stage candidates with every model; report MRR@10, nDCG@10 and Recall.

    # the paper's protocol: a BEIR folder plus a TREC run of candidates
    python eval_rerank.py --model runs/lite/best --model maxsim=runs/maxsim/best \
        --data ../shared/data/debian-rerank --split dev --run ../shared/data/debian-rerank/runs/bm25.dev.trec \
        --output results/debian-dev.json
    # MS MARCO v2.1 validation, each query's own ~10 passages (the seed's easy protocol)
    python eval_rerank.py --model USER/lite-distilbert --data microsoft/ms_marco --max-queries 2000
    # several processes (GPUs or machines): each scores its share of the queries, the metrics and runs are gathered
    accelerate launch --num_processes 4 eval_rerank.py --model ... --data ... --run ... --doc-cache caches/

A model is a LITE folder or Hub id, or a cross-encoder (AutoModelForSequenceClassification). Every model is loaded
and checked before any is scored. Prints a markdown table (one row per model plus the `first-stage` order itself;
with no model, only that row). With --output, writes the JSON that push_to_hub.py reads (with the number of
processes, the queries each scored, and the peak memory) and one TREC run file per model next to it.
"""

import argparse
import json
import re
import resource
import sys
from pathlib import Path

from accelerate.utils import gather_object
from transformers import AutoModel

from lite_rerank import hardware
from lite_rerank.cross_encoder import CrossEncoderScorer, is_cross_encoder
from lite_rerank.data import DataError, load_rerank_set, write_trec_run
from lite_rerank.doc_cache import CacheError, build_document_cache
from lite_rerank.evaluation import (
    DEFAULT_MEMORY_BUDGET,
    bound_allocator_retention,
    compute_metrics,
    encoding_fingerprint,
    load_metrics,
    rankings,
    results_table,
    score_rerank_set,
    score_with_shared_encoding,
)
from lite_rerank.utils import (
    file_sha256,
    file_tag,
    process_state,
    refuse_outputs_over_inputs,
    result_run_path,
    write_atomically,
    write_text_atomically,
)

ROOT = Path(__file__).resolve().parent


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]PATH_OR_ID",
        help="a saved LITE model or cross-encoder (folder or Hub id); repeat to compare models on the same candidates",
    )
    parser.add_argument(
        "--zero-shot-encoder",
        action="append",
        default=[],
        metavar="[NAME=]PATH_OR_ID",
        help="an untrained encoder scored with MaxSim (zero-shot baseline row)",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="BEIR folder (with --run), 'microsoft/ms_marco', or a local MS MARCO v2.1 .jsonl/.parquet",
    )
    parser.add_argument("--split", default=None, help="qrels split of a BEIR folder (default dev) or MS MARCO split")
    parser.add_argument("--run", default=None, help="TREC run file of first-stage candidates (BEIR data)")
    parser.add_argument("--max-queries", type=int, default=None, help="evaluate only the first N judged queries")
    parser.add_argument("--output", default=None, help="results JSON; TREC runs are written next to it")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per encoder batch")
    parser.add_argument("--device", default=None, help="default: this process's accelerator device, else cpu")
    hardware.add_arguments(parser, "--dtype", "the models score in")
    parser.add_argument("--query-max-length", type=int, default=30, help="L1 of --zero-shot-encoder rows")
    parser.add_argument("--doc-max-length", type=int, default=200, help="L2 of --zero-shot-encoder rows")
    parser.add_argument(
        "--memory-budget-gb",
        type=float,
        default=DEFAULT_MEMORY_BUDGET / 1024**3,
        help="what the passages' vectors may take at once (GiB, at their real lengths): larger candidate sets are "
        "encoded and scored in blocks of queries, so peak memory does not grow with them",
    )
    parser.add_argument(
        "--max-docs-in-memory",
        type=int,
        default=None,
        help="also cap the passages held at once by their number (default: the memory budget alone)",
    )
    parser.add_argument(
        "--doc-cache",
        default=None,
        metavar="DIR",
        help="score LITE models from document-embedding caches DIR/<model name>, built on first use "
        "(across all processes) and reused by later runs (checked against the model's fingerprint "
        "and each passage's text)",
    )
    parser.add_argument(
        "--cache-dtype",
        default="float16",
        choices=["float16", "bfloat16", "float32", "int8"],
        help="storage of a new --doc-cache (int8: per-vector scales)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    for name in ("batch_size", "max_queries", "max_docs_in_memory", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.memory_budget_gb > 0:
        parser.error(f"--memory-budget-gb must be a positive number of GiB, got {args.memory_budget_gb}")
    args.memory_budget = args.memory_budget_gb * 1024**3
    if args.output and Path(args.output).is_dir():
        parser.error(f"--output {args.output} is a folder; give the results JSON's file name")
    return args


def named(spec: str) -> tuple[str, str]:
    """`NAME=PATH` → (NAME, PATH); `PATH` → (a name made from the path, PATH)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        return name, path
    parts = [part for part in Path(spec).parts if part not in ("best", "/", ".")]
    return (parts[-1] if parts else spec), spec


def check_model_spec(flag: str, spec: str) -> tuple[str, str]:
    """(name, path) of a --model / --zero-shot-encoder, refused before any work when it cannot load: a missing
    folder, a folder without config.json, or weights whose safetensors header does not read."""
    name, path = named(spec)
    local = Path(path)
    if local.exists() or path.startswith((".", "/", "~")) or path.count("/") > 1:
        if not (local / "config.json").is_file():
            raise SystemExit(f"{flag} {spec}: no model folder there (no {local / 'config.json'})")
        weights = local / "model.safetensors"
        if weights.exists():
            from safetensors import safe_open

            try:
                with safe_open(str(weights), framework="pt"):
                    pass
            except Exception as error:
                raise SystemExit(f"{flag} {spec}: {weights} does not read ({error}); the file is damaged") from None
    return name, path


def load_model(name: str, path: str, args, device: str, dtype, zero_shot: bool = False):
    try:
        if zero_shot:
            from lite_rerank.multi_vector import from_encoder  # a plain or a multi-vector encoder

            model = from_encoder(
                path, scorer="maxsim", query_max_length=args.query_max_length, doc_max_length=args.doc_max_length
            )
        elif is_cross_encoder(path):
            return CrossEncoderScorer.from_pretrained(path, device, dtype)
        else:
            model = AutoModel.from_pretrained(path, trust_remote_code=True)
        model.tokenizer  # noqa: B018 (a folder without a tokenizer fails here, by name)
    except (OSError, ValueError) as error:
        raise SystemExit(f"--model {name}={path}: cannot load it: {error}") from None
    return model.to(device=device, dtype=dtype).eval()


FIRST_STAGE = "first-stage"  # the row of the candidates' own order
ROW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+()-]*")


def check_row_names(rows: list[tuple[str, str]]):
    """Every row (flag and name) needs a name of its own and a TREC file of its own: no reserved, repeated or path-like
    names, and no two names that map to one file (`a b` and `a_b`; case is ignored, as some file systems do)."""
    tags: dict[str, str] = {}
    for flag, name in rows:
        if name.lower() == FIRST_STAGE:
            raise SystemExit(f"{flag} {name}=…: {FIRST_STAGE!r} names the first stage's own row; choose another name")
        if not ROW_NAME.fullmatch(name) or ".." in name:
            raise SystemExit(
                f"{flag} {name!r}=…: a row name is letters, digits, spaces and . _ + ( ) -, starting with a letter or "
                "digit, without '..' (it names the row's TREC file and doc-cache folder)"
            )
        tag = file_tag(name).lower()
        if tag in tags:
            same = "twice" if tags[tag] == name else f"and {tags[tag]!r} (one file name, {file_tag(name)!r})"
            raise SystemExit(
                f"{flag}: the row name {name!r} is given {same}; name each model with NAME=PATH (e.g. "
                "--model exp1-lite=exp1/lite/best --model exp2-lite=exp2/lite/best)"
            )
        tags[tag] = name


def output_paths(output: Path, names) -> list[Path]:
    """What --output writes: a TREC run per row (first stage included), then the results JSON."""
    return [result_run_path(output, name) for name in [FIRST_STAGE, *names]] + [output]


def check_outputs_spare_inputs(outputs: list[Path], args, model_paths):
    """Refused before any work: an output that would replace an input file (the run, the data, a model's files)."""
    inputs = [("--data", args.data), ("--run", args.run)] + [("--model", path) for path in model_paths]
    refuse_outputs_over_inputs([("--output", path) for path in outputs], inputs)


def main(argv=None):
    args = parse_args(argv)
    bound_allocator_retention()  # peak memory that does not grow with the number of passages (see there)
    state = process_state()
    specs = [(check_model_spec("--model", spec), False) for spec in args.model]
    specs += [
        ((f"{name} (zero-shot MaxSim)", path), True)
        for name, path in (check_model_spec("--zero-shot-encoder", spec) for spec in args.zero_shot_encoder)
    ]
    check_row_names([("--zero-shot-encoder" if zero_shot else "--model", name) for (name, _), zero_shot in specs])
    if args.output:
        outputs = output_paths(Path(args.output), [name for (name, _), _ in specs])
        check_outputs_spare_inputs(outputs, args, [path for (_, path), _ in specs if Path(path).exists()])
    try:
        rerank_set = load_rerank_set(args.data, args.split, args.run, args.max_queries)
    except DataError as error:
        raise SystemExit(f"error: {error}") from None
    device = args.device or str(state.device)
    hardware.set_threads(args.threads, log=lambda line: state.print(line, file=sys.stderr))
    dtype = hardware.choose_dtype(args.dtype, device)
    state.print(hardware.precision_note(dtype, args.dtype, device), file=sys.stderr)
    models = [(name, load_model(name, path, args, device, dtype, zero_shot)) for (name, path), zero_shot in specs]
    depth = rerank_set.depth
    if state.is_main_process:
        print(
            f"{len(rerank_set.queries)} queries, {len(rerank_set.documents)} distinct candidates, depth {depth}; "
            f"{rerank_set.protocol}",
            file=sys.stderr,
        )
        for problem, count in rerank_set.counts.items():
            if count:
                loud = problem in ("judged_documents_missing_from_corpus", "queries_with_empty_text")
                print(f"{'WARNING' if loud else 'note'}: {count} {problem.replace('_', ' ')}", file=sys.stderr)
    with state.split_between_processes(list(rerank_set.queries)) as qids:
        shard = rerank_set.subset(qids)
    all_scores = {FIRST_STAGE: rerank_set.first_stage_scores}
    progress = not args.no_progress and state.is_main_process
    for group in encoding_groups(models, shared=not args.doc_cache):
        names = [name for name, _ in group]
        state.print(
            f"scoring with {', '.join(names)}" + (" (one encoding)" if len(group) > 1 else ""), file=sys.stderr
        )
        try:
            if len(group) > 1:
                group_scores = score_with_shared_encoding(
                    [model for _, model in group],
                    shard,
                    args.batch_size,
                    args.memory_budget,
                    progress,
                    max_docs_in_memory=args.max_docs_in_memory,
                )
            else:
                group_scores = [score_one(*group[0], rerank_set, shard, args, state, progress)]
        except CacheError as error:
            raise SystemExit(f"error: {error.flag_hint('--dtype')}") from None
        for name, scores in zip(names, group_scores):
            all_scores[name] = dict(pair for part in gather_object([list(scores.items())]) for pair in part)
    queries_per_process = [len(part) for part in gather_object([qids])]
    if not state.is_main_process:
        return None
    metrics, k_values, results = load_metrics(), sorted({10, depth}), {}
    for name, scores in all_scores.items():
        broken = [qid for qid, values in scores.items() if not all(map(_finite, values))]
        if broken:
            raise SystemExit(
                f"{name}: scores that are not finite for {len(broken)} queries (e.g. {broken[0]}); the "
                "model is broken (NaN or infinite weights?), no results written"
            )
        values = compute_metrics(rerank_set, scores, k_values, metrics)
        results[name] = {
            "mrr@10": values["mrr@10"],
            "ndcg@10": values["ndcg@10"],
            "recall@10": values["recall@10"],
            "recall@k": values[f"recall@{depth}"],
            "num_queries": values["num_queries"],
        }
    print(results_table(results, depth))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{state.num_processes} process(es), queries per process {queries_per_process}; peak memory of this "
        f"process {peak_mb:.0f} MB",
        file=sys.stderr,
    )
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "models": results,
            "data": {
                "spec": args.data,
                "split": args.split,
                "run": args.run,
                "num_queries": len(rerank_set.queries),
                "candidate_depth": depth,
                "counts": rerank_set.counts,
            },
            "protocol": rerank_set.protocol,
            "precision": {"dtype": hardware.dtype_name(dtype), "requested": args.dtype},
            "hardware": hardware.describe(device),
            "processes": {
                "count": state.num_processes,
                "queries_per_process": queries_per_process,
                "peak_memory_mb_main_process": round(peak_mb),
            },
        }
        report["model_files"] = {name: model_files(path) for (name, path), zero_shot in specs if not zero_shot}
        # The runs first, the JSON last, each complete before it replaces anything: a full disk never leaves a new
        # results file beside half-written runs, nor loses the previous results.
        for path, (name, scores) in zip(outputs, all_scores.items()):
            tag = file_tag(name)
            write_atomically(path, lambda tmp: write_trec_run(tmp, rankings(rerank_set, scores), tag))
        write_text_atomically(output, json.dumps(report, indent=2) + "\n")
    return results


def model_files(path: str) -> dict:
    """Which model a results row is: its path and the sha256 of its weights (push_to_hub.py checks it)."""
    weights = Path(path) / "model.safetensors"
    return {"path": path, "weights_sha256": file_sha256(weights) if weights.is_file() else None}


def encoding_groups(models: list, shared: bool) -> list[list]:
    """The (name, model) rows in groups whose passages encode alike (LITE models with one `encoding_fingerprint`,
    e.g. a scorer trained on a frozen encoder and MaxSim on that encoder): each group encodes every passage once.
    Cross-encoders, and every model when `shared` is off (document caches are per model), are groups of one."""
    groups: dict[str, list] = {}
    for index, (name, model) in enumerate(models):
        key = str(index) if not shared or isinstance(model, CrossEncoderScorer) else encoding_fingerprint(model)
        groups.setdefault(key, []).append((name, model))
    return list(groups.values())


def score_one(name, model, rerank_set, shard, args, state, progress: bool):
    """{qid: scores} of this process's `shard` of the queries by one model; under --doc-cache from the model's cache
    of every candidate of `rerank_set`, built on first use by all processes together."""
    doc_store = None
    if args.doc_cache and not isinstance(model, CrossEncoderScorer):
        doc_store = build_document_cache(
            model,
            rerank_set.documents,
            Path(args.doc_cache) / file_tag(name),
            args.cache_dtype,
            batch_size=args.batch_size,
            progress=progress,
            process_index=state.process_index,
            num_processes=state.num_processes,
            wait_for_everyone=state.wait_for_everyone,
        )
        doc_store.check_model(model)
    return score_rerank_set(
        model, shard, args.batch_size, args.memory_budget, progress, doc_store, args.max_docs_in_memory
    )


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


if __name__ == "__main__":
    main()
