"""Re-rank the same first-stage candidates with every model; report MRR@10, nDCG@10 and Recall.

    # the paper's protocol: a BEIR folder plus a TREC run of candidates
    python eval_rerank.py --model runs/lite/best --model maxsim=runs/maxsim/best \
        --data ../shared/data/debian-rerank --split dev --run ../shared/data/debian-rerank/runs/bm25.dev.trec \
        --output results/debian-dev.json
    # MS MARCO v2.1 validation, each query's own ~10 passages (the seed's easy protocol)
    python eval_rerank.py --model USER/lite-distilbert --data microsoft/ms_marco --max-queries 2000

Prints a markdown table (one row per model plus the `first-stage` order itself; with no model, only that row). With --output, writes the JSON that
push_to_hub.py reads and one TREC run file per model next to it.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import torch
from transformers import AutoModel

from lite_rerank.cross_encoder import CrossEncoderScorer, is_cross_encoder
from lite_rerank.data import load_rerank_set, write_trec_run
from lite_rerank.doc_cache import build_document_cache
from lite_rerank.evaluation import compute_metrics, load_metrics, rankings, score_rerank_set

ROOT = Path(__file__).resolve().parent
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH_OR_ID",
                        help="a saved LITE model or cross-encoder (folder or Hub id); repeat to compare models on the "
                             "same candidates")
    parser.add_argument("--zero-shot-encoder", action="append", default=[], metavar="[NAME=]PATH_OR_ID",
                        help="an untrained encoder scored with MaxSim (zero-shot baseline row)")
    parser.add_argument("--data", required=True,
                        help="BEIR folder (with --run), 'microsoft/ms_marco', or a local MS MARCO v2.1 .jsonl/.parquet")
    parser.add_argument("--split", default=None, help="qrels split of a BEIR folder (default dev) or MS MARCO split")
    parser.add_argument("--run", default=None, help="TREC run file of first-stage candidates (BEIR data)")
    parser.add_argument("--max-queries", type=int, default=None, help="evaluate only the first N judged queries")
    parser.add_argument("--output", default=None, help="results JSON; TREC runs are written next to it")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per encoder batch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                        help="model dtype; auto = float16 on CUDA, float32 on CPU")
    parser.add_argument("--query-max-length", type=int, default=30, help="L1 of --zero-shot-encoder rows")
    parser.add_argument("--doc-max-length", type=int, default=200, help="L2 of --zero-shot-encoder rows")
    parser.add_argument("--max-docs-in-memory", type=int, default=100_000,
                        help="documents encoded and held at once; larger candidate sets are processed in blocks")
    parser.add_argument("--doc-cache", default=None, metavar="DIR",
                        help="score from document-embedding caches DIR/<model name>, built on first use and reused "
                             "by later runs (checked against the model's fingerprint)")
    parser.add_argument("--cache-dtype", default="float16", choices=["float16", "bfloat16", "float32", "int8"],
                        help="storage of a new --doc-cache (int8: per-vector scales)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser.parse_args(argv)


def named(spec: str) -> tuple[str, str]:
    """`NAME=PATH` → (NAME, PATH); `PATH` → (a name made from the path, PATH)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        return name, path
    parts = [part for part in Path(spec).parts if part not in ("best", "/", ".")]
    return (parts[-1] if parts else spec), spec


def load_models(args):
    dtype = DTYPES.get(args.dtype) or (torch.float16 if args.device.startswith("cuda") else torch.float32)
    for spec in args.model:
        name, path = named(spec)
        if is_cross_encoder(path):
            yield name, CrossEncoderScorer.from_pretrained(path, args.device, dtype)
        else:
            yield name, AutoModel.from_pretrained(path, trust_remote_code=True, dtype=dtype).to(args.device)
    for spec in args.zero_shot_encoder:
        from modeling_lite import LiteModel

        name, path = named(spec)
        model = LiteModel.from_encoder(path, scorer="maxsim", query_max_length=args.query_max_length,
                                       doc_max_length=args.doc_max_length)  # fmt: skip
        yield f"{name} (zero-shot MaxSim)", model.to(device=args.device, dtype=dtype)


def file_tag(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def markdown_table(results: dict, depth: int) -> str:
    lines = [f"| system | MRR@10 | nDCG@10 | Recall@10 | Recall@{depth} | queries |", "|---|---|---|---|---|---|"]
    for name, m in results.items():
        lines.append(f"| {name} | {m['mrr@10']:.4f} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | "
                     f"{m['recall@k']:.4f} | {m['num_queries']} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    rerank_set = load_rerank_set(args.data, args.split, args.run, args.max_queries)
    depth = rerank_set.depth
    print(f"{len(rerank_set.queries)} queries, {len(rerank_set.documents)} distinct candidates, depth {depth}; "
          f"{rerank_set.protocol}", file=sys.stderr)  # fmt: skip
    for problem, count in rerank_set.counts.items():
        if count:
            print(f"note: {count} {problem.replace('_', ' ')}", file=sys.stderr)
    metrics = load_metrics()
    k_values = sorted({10, depth})

    def summarize(scores):
        values = compute_metrics(rerank_set, scores, k_values, metrics)
        return {"mrr@10": values["mrr@10"], "ndcg@10": values["ndcg@10"], "recall@10": values["recall@10"],
                "recall@k": values[f"recall@{depth}"], "num_queries": values["num_queries"]}  # fmt: skip

    all_scores = {"first-stage": rerank_set.first_stage_scores}
    results = {"first-stage": summarize(rerank_set.first_stage_scores)}
    for name, model in load_models(args):
        print(f"scoring with {name}", file=sys.stderr)
        doc_store = None
        if args.doc_cache and not isinstance(model, CrossEncoderScorer):
            doc_store = build_document_cache(model, rerank_set.documents, Path(args.doc_cache) / file_tag(name),
                                             args.cache_dtype, batch_size=args.batch_size,
                                             progress=not args.no_progress)  # fmt: skip
        all_scores[name] = score_rerank_set(model, rerank_set, args.batch_size, args.max_docs_in_memory,
                                            progress=not args.no_progress, doc_store=doc_store)  # fmt: skip
        results[name] = summarize(all_scores[name])
        del model
    print(markdown_table(results, depth))
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "models": results,
            "data": {"spec": args.data, "split": args.split, "run": args.run, "num_queries": len(rerank_set.queries),
                     "candidate_depth": depth, "counts": rerank_set.counts},  # fmt: skip
            "protocol": rerank_set.protocol,
        }
        output.write_text(json.dumps(report, indent=2) + "\n")
        for name, scores in all_scores.items():
            tag = file_tag(name)
            write_trec_run(output.with_name(f"{output.stem}.{tag}.trec"), rankings(rerank_set, scores), tag)
    return results


if __name__ == "__main__":
    main()
