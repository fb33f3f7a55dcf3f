"""Train LITE (or the MaxSim baseline) with Accelerate: Margin-MSE distillation on MS MARCO by default.

    # the paper's recipe on two GPUs with fp16: DistilBERT, MS MARCO v2.1, Margin-MSE from the MiniLM cross-encoder
    accelerate launch --config_file configs/accelerate/2xT4_fp16.yaml train_accelerate.py \
        --config configs/msmarco_distilbert.yaml --output-dir runs/lite-msmarco
    # the MaxSim baseline: same everything else
    accelerate launch --config_file configs/accelerate/2xT4_fp16.yaml train_accelerate.py \
        --config configs/msmarco_distilbert.yaml --scorer maxsim --output-dir runs/maxsim-msmarco
    # CPU, offline: the Debian set (labels only: no teacher exists offline)
    python train_accelerate.py --config configs/debian_minilm.yaml
    # two CPU processes (accelerate's --cpu starts only one)
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 train_accelerate.py --config ...

Resuming: run the same command again (or add --resume); training restarts from the newest complete checkpoint with
optimizer, scheduler, loss scaler, RNG and data position. SIGTERM / Ctrl-C save a checkpoint before exiting.

Output: OUTPUT_DIR/best (Hugging Face format, AutoModel + trust_remote_code), OUTPUT_DIR/checkpoints,
OUTPUT_DIR/metrics.jsonl (loss, lr, pairs/s, dev metrics).
"""

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, DataLoaderConfiguration, skip_first_batches
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lite_rerank.checkpoints import latest_checkpoint, replace_folder, save_checkpoint
from lite_rerank.data import RerankSet, load_rerank_set
from lite_rerank.evaluation import compute_metrics, load_metrics, score_rerank_set
from lite_rerank.losses import LOSSES
from lite_rerank.teacher import CrossEncoderTeacher, TeacherScoreCache
from lite_rerank.triplets import IndexedTriplets, TripletCollator, load_train_dataset
from modeling_lite import LiteModel

DEV_METRICS = ("mrr@10", "ndcg@10", "recall@10")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML or JSON file whose keys set any of the flags below (flags win)")
    model = parser.add_argument_group("model")
    model.add_argument("--encoder", default="distilbert-base-uncased", help="pretrained encoder (Hub id or folder)")
    model.add_argument("--scorer", default="lite", choices=["lite", "maxsim"], help="LITE or the MaxSim baseline")
    model.add_argument("--query-max-length", type=int, default=30, help="L1: query tokens")
    model.add_argument("--doc-max-length", type=int, default=200, help="L2: document tokens")
    model.add_argument("--row-hidden-size", type=int, default=2400, help="hidden size of LITE's row MLP")
    model.add_argument("--col-hidden-size", type=int, default=360, help="hidden size of LITE's column MLP")
    model.add_argument("--projection-dim", type=int, default=None, help="Small-LITE: project token vectors d → d'")
    model.add_argument("--doc-stored-tokens", type=int, default=None, help="Small-LITE: compress L2 doc tokens to K")
    model.add_argument("--normalize-embeddings", action=argparse.BooleanOptionalAction, default=True,
                       help="L2-normalise token vectors before S = Q·Dᵀ")
    data = parser.add_argument_group("data")
    data.add_argument("--train-data", default="microsoft/ms_marco",
                      help="'microsoft/ms_marco' (v2.1), 'sentence-transformers/msmarco' (margin-mse) or a local "
                           ".jsonl[.gz]/.csv/.parquet with query, positive, negative[, teacher_positive/negative]")
    data.add_argument("--max-train-rows", type=int, default=None, help="use only the first N source rows")
    data.add_argument("--dev-data", default=None,
                      help="dev set for early stopping: BEIR folder (with --dev-run), 'microsoft/ms_marco' or a local "
                           "v2.1 file (own pool); none → no early stopping, best/ is the last model")
    data.add_argument("--dev-split", default=None, help="dev split (BEIR qrels name / MS MARCO split)")
    data.add_argument("--dev-run", default=None, help="TREC run of dev candidates (BEIR dev data)")
    data.add_argument("--dev-queries", type=int, default=None, help="evaluate only the first N dev queries")
    data.add_argument("--num-workers", type=int, default=2, help="DataLoader workers (tokenisation happens there)")
    loss = parser.add_argument_group("loss")
    loss.add_argument("--loss", default="margin_mse", choices=sorted(LOSSES),
                      help="margin_mse / kl: distillation from teacher scores; ce: labels only, no teacher")
    loss.add_argument("--teacher", default="cross-encoder/ms-marco-MiniLM-L-6-v2",
                      help="cross-encoder scoring pairs on the fly when the data has no teacher scores")
    loss.add_argument("--teacher-cache", default=None,
                      help="folder caching teacher scores across runs/epochs (default OUTPUT_DIR/teacher-cache)")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--batch-size", type=int, default=64, help="global batch: triplets per optimizer step")
    optim.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    optim.add_argument("--lr", type=float, default=2.8e-5, help="AdamW learning rate of the encoder")
    optim.add_argument("--scorer-lr", type=float, default=None,
                       help="learning rate of the scorer / Small-LITE layers (default: --lr)")
    optim.add_argument("--freeze-encoder-steps", type=int, default=0,
                       help="train only the scorer for the first N steps, then everything (the fresh scorer learns on "
                            "the pretrained features before it steers the encoder: LP-FT, Kumar et al. 2022)")
    optim.add_argument("--weight-decay", type=float, default=0.01)
    optim.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up (default: 10%% of max steps)")
    optim.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default: --num-epochs epochs)")
    optim.add_argument("--num-epochs", type=int, default=1)
    optim.add_argument("--max-grad-norm", type=float, default=1.0)
    optim.add_argument("--mixed-precision", default="fp16", choices=["no", "fp16", "bf16"],
                       help="fp16 needs a GPU (with loss scaling); bf16 also runs on CPU")
    optim.add_argument("--seed", type=int, default=42)
    run = parser.add_argument_group("evaluation, checkpoints, output")
    run.add_argument("--eval-every", type=int, default=500, help="dev evaluation every N steps (and at the end)")
    run.add_argument("--patience", type=int, default=3, help="stop after N evaluations without a better dev "
                                                             "MRR@10 (0: never)")
    run.add_argument("--eval-batch-size", type=int, default=64)
    run.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (default --eval-every)")
    run.add_argument("--keep-checkpoints", type=int, default=2, help="how many checkpoints to keep")
    run.add_argument("--log-every", type=int, default=20, help="log loss / lr / pairs per second every N steps")
    run.add_argument("--output-dir", default="runs/lite")
    run.add_argument("--resume", action="store_true", help="resume from OUTPUT_DIR/checkpoints (also automatic)")
    run.add_argument("--stop-after", type=int, default=None,
                     help="end this run after N optimizer steps, checkpointed (fits a time-limited session; rerun "
                          "to continue)")
    run.add_argument("--overwrite-output-dir", action="store_true", help="start fresh even if checkpoints exist")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    if known.config:
        path = Path(known.config)
        values = yaml.safe_load(path.read_text()) or {}
        flags = {action.dest for action in parser._actions}
        unknown = sorted(key for key in values if key.replace("-", "_") not in flags)
        if unknown:
            parser.error(f"{path}: unknown key(s) {unknown}")
        parser.set_defaults(**{key.replace("-", "_"): value for key, value in values.items()})
    args = parser.parse_args(argv)
    if args.save_every is None:
        args.save_every = args.eval_every
    return args


def linear_schedule(warmup: int, total: int, delay: int = 0):
    """LR multiplier: 0 for `delay` steps, then linear warm-up over `warmup` and linear decay to 0 at delay + total."""

    def multiplier(step: int) -> float:
        step -= delay
        if step < 0:
            return 0.0
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return multiplier


class TrainingProgress:
    """Where training stands; saved with every checkpoint (accelerate `register_for_checkpointing`)."""

    def __init__(self):
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_mrr, self.best_step, self.evals_without_improvement, self.stopped_early = -1.0, 0, 0, False

    def state_dict(self):
        return dict(vars(self))

    def load_state_dict(self, state):
        vars(self).update(state)


def ignore_stop_signals(worker_id: int):
    """DataLoader workers outlive a SIGTERM / Ctrl-C sent to the whole process group (schedulers, terminals): the
    main process stops them after it has saved its checkpoint."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class StopRequest:
    """SIGTERM / Ctrl-C set a flag; the loop checks it after each optimizer step and saves before exiting."""

    def __init__(self):
        self.signal = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle)

    def handle(self, signum, frame):
        self.signal = signum

    def agreed(self, accelerator) -> bool:
        """True on every process as soon as any process got a signal (they must all save together)."""
        flag = torch.tensor(float(self.signal is not None), device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def evaluate_dev(accelerator, model, dev_set: RerankSet, query_loader, batch_size, metrics) -> dict:
    """Dev metrics, each process scoring its own shard of the queries; values gathered with gather_for_metrics."""
    unwrapped = accelerator.unwrap_model(model)
    qids = list(dev_set.queries)
    per_query = []
    for indices in query_loader:
        shard = dev_set.subset([qids[i] for i in indices.tolist()])
        with accelerator.autocast():
            scores = score_rerank_set(unwrapped, shard, batch_size, progress=False)
        values = compute_metrics(shard, scores, (10,), metrics, return_per_query=True)["per_query"]
        local = torch.tensor([[v[name] for name in DEV_METRICS] for v in values], device=accelerator.device)
        per_query.append(accelerator.gather_for_metrics(local))
    means = torch.cat(per_query).mean(dim=0).tolist()
    return dict(zip(DEV_METRICS, means))


def save_model(accelerator, model, folder, info: dict):
    """`save_pretrained` (+ tokenizer + a training summary) into `folder`, swapped in atomically."""
    if not accelerator.is_main_process:
        return

    def write(tmp):
        accelerator.unwrap_model(model).save_pretrained(tmp, save_function=accelerator.save)
        (tmp / "training_summary.json").write_text(json.dumps(info, indent=2, default=str) + "\n")

    replace_folder(write, folder)


def training_function(args) -> TrainingProgress:
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    mixed_precision = args.mixed_precision
    if mixed_precision == "fp16" and use_cpu:
        mixed_precision = "no"  # fp16 kernels on CPU are orders of magnitude slower; say so rather than stall
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=args.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    if mixed_precision != args.mixed_precision:
        accelerator.print("note: fp16 needs a GPU; training in float32 (use --mixed-precision bf16 on CPU)")
    main = accelerator.is_main_process
    output_dir = Path(args.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    if args.overwrite_output_dir and main:  # a fresh start must not mix with, or later resume from, an old run
        for stale in (checkpoint_dir, output_dir / "best"):
            shutil.rmtree(stale, ignore_errors=True)
        (output_dir / "metrics.jsonl").unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    resume_from = latest_checkpoint(checkpoint_dir)
    if args.resume and resume_from is None:
        raise SystemExit(f"--resume: no complete checkpoint under {checkpoint_dir}")
    set_seed(args.seed)

    processes = accelerator.num_processes
    if args.batch_size % (processes * args.grad_accum):
        raise SystemExit(f"--batch-size {args.batch_size} is not divisible by {processes} processes × "
                         f"--grad-accum {args.grad_accum}")  # fmt: skip
    with accelerator.main_process_first():
        train_data = load_train_dataset(args.train_data, args.max_train_rows, args.seed, log=accelerator.print)
        dev_set = (load_rerank_set(args.dev_data, args.dev_split, args.dev_run, args.dev_queries)
                   if args.dev_data else None)  # fmt: skip
        metrics = load_metrics() if dev_set is not None else None
    loss_fn = LOSSES[args.loss]()
    teacher = teacher_cache = None
    if loss_fn.needs_teacher and "teacher_positive" not in train_data.column_names:
        teacher = CrossEncoderTeacher(args.teacher, accelerator.device)
        cache_dir = args.teacher_cache or output_dir / "teacher-cache"
        meta = {"teacher": args.teacher, "train_data": args.train_data, "max_train_rows": args.max_train_rows,
                "fingerprint": train_data._fingerprint}  # fmt: skip
        teacher_cache = TeacherScoreCache(cache_dir, meta, accelerator.process_index)

    model = LiteModel.from_encoder(
        args.encoder, scorer=args.scorer, query_max_length=args.query_max_length,
        doc_max_length=args.doc_max_length, row_hidden_size=args.row_hidden_size,
        col_hidden_size=args.col_hidden_size, projection_dim=args.projection_dim,
        doc_stored_tokens=args.doc_stored_tokens, normalize_embeddings=args.normalize_embeddings,
    )  # fmt: skip
    if model.tokenizer is None:
        raise SystemExit(f"--encoder {args.encoder} has no tokenizer files")
    collator = TripletCollator(model.tokenizer, args.query_max_length, args.doc_max_length,
                               teacher.tokenizer if teacher else None)  # fmt: skip
    train_loader = DataLoader(
        IndexedTriplets(train_data), batch_size=args.batch_size // (processes * args.grad_accum), shuffle=True,
        drop_last=True, collate_fn=collator, num_workers=args.num_workers, worker_init_fn=ignore_stop_signals,
        generator=torch.Generator().manual_seed(args.seed),  # keeps the loader off the global RNG (exact resume)
    )  # fmt: skip
    steps_per_epoch = len(train_loader) // (processes * args.grad_accum)
    if steps_per_epoch == 0:
        raise SystemExit(f"{len(train_data)} triplets do not fill one batch of {args.batch_size}")
    max_steps = args.max_steps or steps_per_epoch * args.num_epochs
    warmup_steps = args.warmup_steps if args.warmup_steps is not None else max_steps // 10
    is_encoder = {id(p) for p in model.encoder.parameters()}
    groups = [
        {"params": [p for p in model.parameters() if id(p) in is_encoder], "lr": args.lr},
        {"params": [p for p in model.parameters() if id(p) not in is_encoder], "lr": args.scorer_lr or args.lr},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=args.weight_decay)
    # A prepared scheduler steps once per process per optimizer step: size it accordingly.
    schedule = linear_schedule(warmup_steps * processes, max_steps * processes)
    encoder_schedule = linear_schedule(warmup_steps * processes, (max_steps - args.freeze_encoder_steps) * processes,
                                       delay=args.freeze_encoder_steps * processes)  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, [encoder_schedule, schedule] if len(optimizer.param_groups) == 2 else [encoder_schedule]
    )
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    query_loader = None
    if dev_set is not None:
        query_loader = accelerator.prepare_data_loader(DataLoader(range(len(dev_set.queries)), batch_size=16))
    progress = TrainingProgress()
    accelerator.register_for_checkpointing(progress)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        accelerator.print(f"resumed from {resume_from} (step {progress.step}, epoch {progress.epoch})")

    accelerator.print(f"{len(train_data)} triplets, {processes} process(es), {steps_per_epoch} steps/epoch, "
                      f"{max_steps} steps, precision {mixed_precision}, device {accelerator.device}")  # fmt: skip
    log_path = output_dir / "metrics.jsonl"
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)

    def log(record):
        if main:
            with log_path.open("a") as out:
                out.write(json.dumps({"step": progress.step, **record}) + "\n")

    already_done = progress.step >= max_steps or progress.stopped_early
    if resume_from is not None and not already_done:
        log({"event": "resumed", "checkpoint": resume_from.name})  # steps after this line may repeat earlier ones
    stop = StopRequest()
    bar = tqdm(total=max_steps, initial=progress.step, disable=not main, desc="Training", dynamic_ncols=True)
    running_loss, running_steps, interval_start = 0.0, 0, time.perf_counter()

    def checkpoint():
        save_checkpoint(accelerator, checkpoint_dir, progress.step, args.keep_checkpoints)

    def teacher_scores_for(batch):
        if "teacher_scores" in batch:
            return batch["teacher_scores"]
        if teacher is None:
            return None
        rows = batch["rows"].tolist()
        scores = teacher_cache.lookup(rows)
        if scores is None:
            scores = teacher.score(batch["teacher_inputs"]).view(-1, 2).cpu()
            teacher_cache.add(rows, scores)
        return scores.to(accelerator.device)

    model.train()
    finished = already_done
    paused, first_step = False, progress.step
    while not (finished or paused):
        train_loader.set_epoch(progress.epoch)
        epoch_batches = skip_first_batches(train_loader, progress.batch_in_epoch) if progress.batch_in_epoch else train_loader
        for batch in epoch_batches:
            with accelerator.accumulate(model):
                scores = model(
                    query_input_ids=batch["query_input_ids"], query_attention_mask=batch["query_attention_mask"],
                    doc_input_ids=batch["doc_input_ids"], doc_attention_mask=batch["doc_attention_mask"],
                ).logits  # (batch, 2): [positive, negative]  # fmt: skip
                loss = loss_fn(scores, teacher_scores_for(batch))
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            progress.batch_in_epoch += 1
            running_loss += loss.detach().float().item() / args.grad_accum
            if not accelerator.sync_gradients:
                continue
            progress.step += 1
            running_steps += 1
            bar.update(1)
            if progress.step % args.log_every == 0 or progress.step == max_steps:
                mean_loss = accelerator.reduce(torch.tensor(running_loss / running_steps, device=accelerator.device),
                                               reduction="mean").item()  # fmt: skip
                elapsed = time.perf_counter() - interval_start
                record = {"epoch": progress.epoch, "loss": mean_loss, "lr": scheduler.get_last_lr()[0],
                          "scorer_lr": scheduler.get_last_lr()[-1],
                          "pairs_per_s": running_steps * args.batch_size * 2 / elapsed}  # fmt: skip
                if accelerator.scaler is not None:
                    record["loss_scale"] = accelerator.scaler.get_scale()
                log(record)
                bar.set_postfix(loss=f"{mean_loss:.4f}", pairs_s=f"{record['pairs_per_s']:.0f}")
                running_loss, running_steps, interval_start = 0.0, 0, time.perf_counter()
            finished = progress.step >= max_steps
            if dev_set is not None and (progress.step % args.eval_every == 0 or finished):
                dev = evaluate_dev(accelerator, model, dev_set, query_loader, args.eval_batch_size, metrics)
                improved = dev["mrr@10"] > progress.best_mrr
                if improved:
                    progress.best_mrr, progress.best_step, progress.evals_without_improvement = dev["mrr@10"], progress.step, 0
                    save_model(accelerator, model, output_dir / "best", {"step": progress.step, "dev": dev,
                               "num_processes": processes, "args": vars(args)})  # fmt: skip
                else:
                    progress.evals_without_improvement += 1
                log({f"dev_{name}": value for name, value in dev.items()} | {"best_dev_mrr@10": progress.best_mrr})
                accelerator.print(f"step {progress.step}: dev MRR@10 {dev['mrr@10']:.4f} (best {progress.best_mrr:.4f} "
                                  f"at step {progress.best_step})")  # fmt: skip
                model.train()
                if args.patience and progress.evals_without_improvement >= args.patience:
                    progress.stopped_early = finished = True
                    accelerator.print(f"early stop: {args.patience} evaluations without improvement")
            interrupted = stop.agreed(accelerator)
            paused = args.stop_after is not None and progress.step - first_step >= args.stop_after
            if finished or interrupted or paused or progress.step % args.save_every == 0:
                checkpoint()
            if interrupted:
                accelerator.print(f"stopped by signal at step {progress.step}; checkpoint saved, rerun to resume")
                accelerator.end_training()
                sys.exit(128 + (stop.signal or signal.SIGTERM))
            if finished or paused:
                break
        else:
            progress.epoch += 1
            progress.batch_in_epoch = 0
    bar.close()
    if paused and not finished:
        accelerator.print(f"paused at step {progress.step} of {max_steps} (--stop-after); rerun to continue")
    elif dev_set is None and not (already_done and (output_dir / "best").is_dir()):
        # nothing to select on: the last model is the one to keep (a rerun of a finished run keeps what it saved)
        save_model(accelerator, model, output_dir / "best",
                   {"step": progress.step, "num_processes": processes, "args": vars(args)})  # fmt: skip
    accelerator.wait_for_everyone()
    if finished:
        selection = (f"best dev MRR@10 {progress.best_mrr:.4f} at step {progress.best_step}" if dev_set is not None
                     else "no dev set: the last model")  # fmt: skip
        accelerator.print(f"done: step {progress.step}; {selection}; model in {output_dir / 'best'}")
    accelerator.end_training()
    return progress


def main(argv=None):
    return training_function(parse_args(argv))


if __name__ == "__main__":
    main()
