"""Why does LITE trail MaxSim on the Debian set? Diagnostics on a trained LITE model (RESULTS.md, "What was tried").

    .venv/bin/python research/investigate_scorer.py --model runs/debian/lite/best --output runs/debian/investigation.json

Everything is computed from one encoding of the dev candidates and the training triplets with the model's frozen
encoder (bf16 autocast where the CPU runs bf16 natively, `--dtype`), so each probe costs a scorer pass, not an encoder pass:
1. the trained encoder scored by MaxSim (no parameters) vs by its own LITE scorer, on the same embeddings;
2. LITE on S cut to the first T passage tokens (are the scorer's rarely filled late positions noise?);
3. more scorer training on the frozen encoder: the trained scorer continued, and fresh scorers (other learning
   rates, without LayerNorm, as a correction on top of MaxSim, on sorted rows), for --epochs epochs; judged on
   held-out *training* triplets (pairwise accuracy), dev MRR@10 reported alongside.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformers import AutoModel  # noqa: E402
from transformers.activations import ACT2FN  # noqa: E402

from lite_rerank import hardware  # noqa: E402
from lite_rerank.data import load_rerank_set  # noqa: E402
from lite_rerank.embeddings import encode_texts  # noqa: E402
from lite_rerank.evaluation import compute_metrics, load_metrics  # noqa: E402
from lite_rerank.losses import ContrastiveCrossEntropyLoss  # noqa: E402
from lite_rerank.triplets import load_local_triplets  # noqa: E402
from modeling_lite import LiteModel, LiteSeparableScorer, MaxSimScorer  # noqa: E402

# name: (start from, lr, dropout on S while training, form). Forms: "lite" is the model's scorer; the others probe
# the axes (normalisation, init) and one structural question (are position-specific weights the problem?).
VARIANTS = {
    "trained scorer continued": ("trained", 2e-4, 0.0, "lite"),
    "fresh scorer": ("fresh", 1e-3, 0.0, "lite"),
    "fresh scorer, S dropout 0.2": ("fresh", 1e-3, 0.2, "lite"),
    "fresh scorer, lr 3e-4": ("fresh", 3e-4, 0.0, "lite"),
    "fresh scorer, lr 3e-3": ("fresh", 3e-3, 0.0, "lite"),
    "fresh scorer without LayerNorm": ("fresh", 1e-3, 0.0, "no layernorm"),
    "fresh scorer on MaxSim (zero-init correction)": ("fresh", 1e-3, 0.0, "maxsim residual"),
    "fresh scorer on rows sorted by similarity": ("fresh", 1e-3, 0.0, "sorted rows"),
}
ce_loss = ContrastiveCrossEntropyLoss()  # train_accelerate.py --loss ce: softmax over [positive, negative]
maxsim = MaxSimScorer()
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "debian-rerank"


class NoLayerNormScorer(nn.Module):
    """LITE's separable scorer without its LayerNorms: row MLP, column MLP (Linear → act → Linear → act), Linear."""

    def __init__(self, config):
        super().__init__()
        q_len, d_len, act = config.query_max_length, config.doc_vectors, ACT2FN[config.activation]
        self.row_mlp = nn.Sequential(
            nn.Linear(d_len, config.row_hidden_size), act, nn.Linear(config.row_hidden_size, d_len), act
        )
        self.col_mlp = nn.Sequential(
            nn.Linear(q_len, config.col_hidden_size), act, nn.Linear(config.col_hidden_size, q_len), act
        )
        self.out = nn.Linear(q_len * d_len, 1)

    def forward(self, similarity, doc_mask=None):  # (batch, q_len, d_len)
        cols = self.col_mlp(self.row_mlp(similarity).transpose(1, 2))  # (batch, d_len, q_len)
        return self.out(cols.flatten(1)).squeeze(-1)


class MaxSimResidual(nn.Module):
    """MaxSim plus a LITE scorer whose output layer starts at zero: training starts from MaxSim and learns a correction."""

    def __init__(self, scorer):
        super().__init__()
        self.scorer = scorer
        nn.init.zeros_(scorer.out.weight)
        nn.init.zeros_(scorer.out.bias)

    def forward(self, similarity, doc_mask):
        return maxsim(similarity, doc_mask) + self.scorer(similarity, doc_mask)


class SortedRows(nn.Module):
    """The LITE scorer on S with each row sorted (descending): the row MLP sees how strongly a query token matches,
    not where in the passage; MaxSim is the first column, so the scorer can represent it exactly."""

    def __init__(self, scorer):
        super().__init__()
        self.scorer = scorer

    def forward(self, similarity, doc_mask=None):
        return self.scorer(similarity.sort(dim=-1, descending=True).values, doc_mask)


def make_scorer(model, start, form, trained_state):
    if form == "no layernorm":
        scorer = NoLayerNormScorer(model.config)
    elif start == "fresh":
        scorer = LiteModel(model.config).lite_scorer  # the model's own initialisation, as from_encoder gives it
    else:
        scorer = LiteSeparableScorer(model.config)
        scorer.load_state_dict(trained_state)
    if form == "maxsim residual":
        return MaxSimResidual(scorer)
    return SortedRows(scorer) if form == "sorted rows" else scorer


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
    parser.add_argument(
        "--triplets",
        default=None,
        help="training triplets for the scorer probes (default: the data folder's triplets.train.jsonl.gz)",
    )
    parser.add_argument("--heldout", type=int, default=2000, help="training triplets kept out of scorer training")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=sorted(VARIANTS),
        default=["trained scorer continued", "fresh scorer"],
        help="scorer trainings to run on the frozen encoder",
    )
    parser.add_argument("--max-queries", type=int, default=None, help="first N dev queries (smoke runs)")
    parser.add_argument("--max-triplets", type=int, default=None, help="first N training triplets (smoke runs)")
    hardware.add_arguments(parser, "--dtype", "the encoder and scorers compute in")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    hardware.set_threads(args.threads)
    args.bf16 = hardware.choose_dtype(args.dtype) == torch.bfloat16

    def save(report):  # after every probe, so that an interrupted run keeps what it measured
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")

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
    save(report)

    # Training triplets: unique texts encoded once; a held-out slice for judging scorer training.
    triplets = load_local_triplets(args.triplets or f"{args.data}/triplets.train.jsonl.gz", args.max_triplets)
    q_texts, d_texts = sorted(set(triplets["query"])), sorted(set(triplets["positive"]) | set(triplets["negative"]))
    q_row, d_row = {t: i for i, t in enumerate(q_texts)}, {t: i for i, t in enumerate(d_texts)}
    train_q, train_d = encode(model, q_texts, "queries", args.bf16), encode(model, d_texts, "documents", args.bf16)
    rows = [
        (q_row[q], d_row[p], d_row[n])
        for q, p, n in zip(triplets["query"], triplets["positive"], triplets["negative"])
    ]
    order = torch.randperm(len(rows)).tolist()
    held, train = [rows[i] for i in order[: args.heldout]], [rows[i] for i in order[args.heldout :]]
    held_sims = [
        [
            pair_similarity(train_q, train_d, [r[0] for r in held[s : s + 256]], [r[k] for r in held[s : s + 256]])
            for s in range(0, len(held), 256)
        ]
        for k in (1, 2)
    ]
    report["heldout: LITE scorer"] = heldout(held_sims, lite)
    report["heldout: MaxSim on the LITE-trained encoder"] = heldout(held_sims, maxsim)
    print(json.dumps(report, indent=2), flush=True)
    save(report)

    base_state = {k: v.clone() for k, v in model.lite_scorer.state_dict().items()}
    for variant in args.variants:
        start, lr, dropout, form = VARIANTS[variant]
        torch.manual_seed(0)  # every variant sees the same initialisation and batch order
        scorer = make_scorer(model, start, form, base_state)
        optimizer = torch.optim.AdamW(scorer.parameters(), lr=lr, weight_decay=0.01)
        steps = args.epochs * (len(train) // 64)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, step / (steps // 10 + 1), (steps - step) / steps)
        )
        for epoch in range(args.epochs):
            scorer.train()
            shuffled = [train[i] for i in torch.randperm(len(train)).tolist()]
            for offset in tqdm(range(0, len(shuffled) - 63, 64), desc=f"{variant}, epoch {epoch + 1}"):
                batch = shuffled[offset : offset + 64]
                q = [r[0] for r in batch]
                s, mask = pair_similarity(train_q, train_d, q + q, [r[1] for r in batch] + [r[2] for r in batch])
                s = torch.nn.functional.dropout(s, dropout)  # regularisation probe: drop single similarities
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                    scores = scorer(s, mask).float().view(2, -1).T  # (batch, 2): [positive, negative]
                loss = ce_loss(scores)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(scorer.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
            scorer.eval()
            key = f"{variant} (lr {lr}), +{epoch + 1} epoch(s) on the frozen encoder"
            report[key] = {
                "heldout": heldout(held_sims, scorer),
                "dev mrr@10": dev_mrr(dev, dev_sims, scorer, metrics),
            }
            print(key, report[key], flush=True)
            save(report)
    return report


if __name__ == "__main__":
    main()
