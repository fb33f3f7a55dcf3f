"""Why does LITE trail MaxSim on the Debian set? Diagnostics on a trained LITE model (RESULTS.md, "What was tried").

    .venv/bin/python scripts/investigate_scorer.py --model runs/debian/lite/best --output runs/debian/investigation.json

Everything is computed from one encoding of the dev candidates and the training triplets with the model's frozen
encoder (bf16 autocast), so each probe costs a scorer pass, not an encoder pass:
1. the trained encoder scored by MaxSim (no parameters) vs by its own LITE scorer, on the same embeddings;
2. LITE on S cut to the first T passage tokens (are the scorer's rarely filled late positions noise?);
3. more scorer training on the frozen encoder: the trained scorer continued, and a fresh scorer, for --epochs more
   epochs; judged on held-out *training* triplets (pairwise accuracy), dev MRR@10 reported alongside.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformers import AutoModel  # noqa: E402

from lite_rerank.data import load_rerank_set  # noqa: E402
from lite_rerank.embeddings import encode_texts  # noqa: E402
from lite_rerank.evaluation import compute_metrics, load_metrics  # noqa: E402
from lite_rerank.losses import ContrastiveCrossEntropyLoss  # noqa: E402
from lite_rerank.triplets import load_local_triplets  # noqa: E402
from modeling_lite import LiteModel, LiteSeparableScorer, maxsim  # noqa: E402

# name: (start from, lr, dropout on S while training)
VARIANTS = {"trained scorer continued": ("trained", 2e-4, 0.0), "fresh scorer": ("fresh", 1e-3, 0.0),
            "fresh scorer, S dropout 0.2": ("fresh", 1e-3, 0.2)}
ce_loss = ContrastiveCrossEntropyLoss()  # train_accelerate.py --loss ce: softmax over [positive, negative]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "debian-rerank"


def encode(model, texts, kind, bf16=True):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        ids = [str(i) for i in range(len(texts))]
        return encode_texts(model, ids, texts, kind, 64)


def pair_similarity(queries, docs, query_rows, doc_rows):
    """S (n, L1, L2) of query_rows[i] against doc_rows[i], float32, and the (n, L2) document mask."""
    q, _ = queries.get([str(i) for i in query_rows], dtype=torch.float32)
    d, mask = docs.get([str(i) for i in doc_rows], dtype=torch.float32)
    return LiteModel.similarity(q, d), mask


def dev_mrr(rerank_set, dev_sims, scorer, metrics):
    with torch.inference_mode():
        scores = {qid: scorer(s, m).float().tolist() for qid, (s, m) in dev_sims.items()}
    return compute_metrics(rerank_set, scores, metrics=metrics)["mrr@10"]


def heldout(sims, scorer):
    """Pairwise accuracy (positive above negative) and CE loss on held-out triplets."""
    with torch.inference_mode():
        pos, neg = torch.cat([scorer(s, m) for s, m in sims[0]]), torch.cat([scorer(s, m) for s, m in sims[1]])
    loss = ce_loss(torch.stack([pos, neg], 1)).item()
    return {"accuracy": (pos > neg).float().mean().item(), "ce": loss}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--heldout", type=int, default=2000, help="training triplets kept out of scorer training")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["trained scorer continued", "fresh scorer"],
                        help="scorer trainings to run on the frozen encoder")
    parser.add_argument("--max-queries", type=int, default=None, help="first N dev queries (smoke runs)")
    parser.add_argument("--max-triplets", type=int, default=None, help="first N training triplets (smoke runs)")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="encode in float32")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    metrics = load_metrics()
    report = {}

    # Dev candidates: one encoding, S per query kept in memory.
    dev = load_rerank_set(args.data, "dev", f"{args.data}/runs/bm25.dev.trec", args.max_queries)
    doc_ids = sorted({d for c in dev.candidates.values() for d in c})
    docs = encode(model, [dev.documents[d] for d in doc_ids], "documents", args.bf16)
    queries = encode(model, [dev.queries[q] for q in dev.candidates], "queries", args.bf16)
    doc_row = {d: i for i, d in enumerate(doc_ids)}
    dev_sims = {}
    for i, qid in enumerate(dev.candidates):
        query, _ = queries.get([str(i)], dtype=torch.float32)
        dev_sims[qid] = docs.similarity(query, [str(doc_row[d]) for d in dev.candidates[qid]])
    lite = model.score_similarity
    report["dev: LITE scorer"] = dev_mrr(dev, dev_sims, lite, metrics)
    report["dev: MaxSim on the LITE-trained encoder"] = dev_mrr(dev, dev_sims, maxsim, metrics)
    for cut in (160, 128, 96):
        def cut_scorer(s, m, cut=cut):
            s, m = s.clone(), m.clone()
            s[..., cut:], m[:, cut:] = 0, False
            return lite(s, m)

        report[f"dev: LITE on the first {cut} passage tokens"] = dev_mrr(dev, dev_sims, cut_scorer, metrics)
    print(json.dumps(report, indent=2), flush=True)

    # Training triplets: unique texts encoded once; a held-out slice for judging scorer training.
    triplets = load_local_triplets(f"{args.data}/triplets.train.jsonl.gz", args.max_triplets)
    q_texts, d_texts = sorted(set(triplets["query"])), sorted(set(triplets["positive"]) | set(triplets["negative"]))
    q_row, d_row = {t: i for i, t in enumerate(q_texts)}, {t: i for i, t in enumerate(d_texts)}
    train_q, train_d = encode(model, q_texts, "queries", args.bf16), encode(model, d_texts, "documents", args.bf16)
    rows = [(q_row[q], d_row[p], d_row[n]) for q, p, n in zip(triplets["query"], triplets["positive"], triplets["negative"])]
    order = torch.randperm(len(rows)).tolist()
    held, train = [rows[i] for i in order[: args.heldout]], [rows[i] for i in order[args.heldout :]]
    held_sims = [[pair_similarity(train_q, train_d, [r[0] for r in held[s : s + 256]], [r[k] for r in held[s : s + 256]])
                  for s in range(0, len(held), 256)] for k in (1, 2)]  # fmt: skip
    report["heldout: LITE scorer"] = heldout(held_sims, lite)
    report["heldout: MaxSim on the LITE-trained encoder"] = heldout(held_sims, maxsim)
    print(json.dumps(report, indent=2), flush=True)

    base_state = {k: v.clone() for k, v in model.lite_scorer.state_dict().items()}
    for variant in args.variants:
        init, lr, dropout = VARIANTS[variant]
        scorer = LiteSeparableScorer(model.config)
        if init == "fresh":
            scorer.apply(model._init_weights)  # the model's own initialisation, as from_encoder gives it
        else:
            scorer.load_state_dict(base_state)
        model.lite_scorer = scorer
        optimizer = torch.optim.AdamW(scorer.parameters(), lr=lr, weight_decay=0.01)
        steps = args.epochs * (len(train) // 64)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, step / (steps // 10 + 1),
                                                                                 (steps - step) / steps))  # fmt: skip
        for epoch in range(args.epochs):
            scorer.train()
            shuffled = [train[i] for i in torch.randperm(len(train)).tolist()]
            for start in tqdm(range(0, len(shuffled) - 63, 64), desc=f"{variant}, epoch {epoch + 1}"):
                batch = shuffled[start : start + 64]
                q = [r[0] for r in batch]
                s, _ = pair_similarity(train_q, train_d, q + q, [r[1] for r in batch] + [r[2] for r in batch])
                s = torch.nn.functional.dropout(s, dropout)  # regularisation probe: drop single similarities
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    scores = scorer(s).float().view(2, -1).T  # (batch, 2): [positive, negative]
                loss = ce_loss(scores)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(scorer.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
            scorer.eval()
            key = f"{variant} (lr {lr}), +{epoch + 1} epoch(s) on the frozen encoder"
            report[key] = {"heldout": heldout(held_sims, model.score_similarity),
                           "dev mrr@10": dev_mrr(dev, dev_sims, model.score_similarity, metrics)}  # fmt: skip
            print(key, report[key], flush=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
