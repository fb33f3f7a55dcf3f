"""Train LITE, the MaxSim baseline or a cross-encoder teacher with Accelerate: Margin-MSE distillation on MS MARCO by
default.

    # the paper's recipe on two GPUs with fp16: DistilBERT, MS MARCO v2.1, Margin-MSE from the MiniLM cross-encoder
    accelerate launch --config_file configs/accelerate/2xT4_fp16.yaml train_accelerate.py \
        --config configs/msmarco_distilbert.yaml --output-dir runs/lite-msmarco
    # the MaxSim baseline: same everything else
    accelerate launch --config_file configs/accelerate/2xT4_fp16.yaml train_accelerate.py \
        --config configs/msmarco_distilbert.yaml --scorer maxsim --output-dir runs/maxsim-msmarco
    # a new domain: a cross-encoder teacher on listwise rows (query, positive, negatives), then LITE distilled from it
    python train_accelerate.py --scorer cross-encoder --encoder ENCODER --train-data listwise.jsonl.gz --loss ce \
        --hard-negatives 3 --output-dir runs/teacher
    python scripts/teacher_scores.py --teacher runs/teacher/best --train-data listwise.jsonl.gz --output scored.jsonl.gz
    python train_accelerate.py --encoder ENCODER --train-data scored.jsonl.gz --loss kl --hard-negatives 7 ...
    # two CPU processes (accelerate's --cpu starts only one)
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 train_accelerate.py --config ...

Resuming: run the same command again (or add --resume); training restarts from the newest complete checkpoint with
optimizer, scheduler, loss scaler, RNG and data position. SIGTERM / Ctrl-C save a checkpoint before exiting (a single
process at once, dropping the step or dev evaluation in progress: launchers may allow seconds). A run folder
remembers its settings (run_config.json): resuming it with other settings is refused.

Output: OUTPUT_DIR/best (Hugging Face format: AutoModel + trust_remote_code for LITE / MaxSim,
AutoModelForSequenceClassification or sentence-transformers CrossEncoder for a cross-encoder), OUTPUT_DIR/checkpoints,
OUTPUT_DIR/metrics.jsonl (loss, lr, pairs/s, dev metrics).
"""

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator, DataLoaderConfiguration, skip_first_batches
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lite_rerank import hardware
from lite_rerank.checkpoints import (
    CheckpointError,
    latest_checkpoint,
    own_checkpoints,
    read_training_state,
    recover_folder,
    replace_folder,
    save_checkpoint,
)
from lite_rerank.cross_encoder import CrossEncoderScorer, cross_encoder_logits, new_cross_encoder
from lite_rerank.data import DataError, load_rerank_set
from lite_rerank.evaluation import compute_metrics, load_metrics, score_rerank_set
from lite_rerank.locking import FolderInUse, FolderLock
from lite_rerank.losses import LOSSES
from lite_rerank.projection import PCA_ROWS, init_projection_from_training_rows
from lite_rerank.residual import FIT_ROWS, fit_maxsim_scale, residual_scorer, set_maxsim_scale
from lite_rerank.scorer_weights import ScorerError, read_scorer
from lite_rerank.scorer_weights import build_model as build_scorer_model
from lite_rerank.teacher import TEACHER_SCORES_IN_DATA, CrossEncoderTeacher, TeacherScoreCache
from lite_rerank.triplets import IndexedTriplets, TripletCollator, load_train_dataset
from lite_rerank.utils import content_fingerprint, write_text_atomically
from modeling_lite import LiteModel, is_multi_vector_model

DEV_METRICS = ("mrr@10", "ndcg@10", "recall@10")
# Flags that may change between the sessions of one run; every other flag defines the run (run_config.json).
RUN_CONTROL_FLAGS = {
    "config",
    "resume",
    "stop_after",
    "overwrite_output_dir",
    "output_dir",
    "num_workers",
    "log_every",
    "eval_batch_size",
    "save_every",
    "keep_checkpoints",
    "teacher_cache",
    "threads",
    "resume_from",
}
RUN_FILES = ("checkpoints", "best", "metrics.jsonl", "run_config.json")  # what a run writes into OUTPUT_DIR
# Flags that are LiteConfig fields of the student.
ARCHITECTURE = (
    "query_max_length",
    "doc_max_length",
    "row_hidden_size",
    "col_hidden_size",
    "projection_dim",
    "doc_stored_tokens",
    "normalize_embeddings",
    "query_token_weights",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML or JSON file whose keys set any of the flags below (flags win)")
    model = parser.add_argument_group("model")
    model.add_argument("--encoder", default="distilbert-base-uncased", help="pretrained encoder (Hub id or folder)")
    model.add_argument(
        "--scorer",
        default="lite",
        choices=["lite", "maxsim", "residual", "cross-encoder"],
        help="LITE, the MaxSim baseline, the residual LITE (MaxSim plus a LITE term that starts at zero: the run "
        "starts at MaxSim's ranking, its scale fitted to the teacher before the first step, and the step-0 model is "
        "a candidate for best/), or a plain cross-encoder (AutoModelForSequenceClassification on "
        "[CLS] query [SEP] passage [SEP], e.g. a teacher)",
    )
    model.add_argument(
        "--scorer-weights",
        default=None,
        metavar="FOLDER",
        help="start the scorer from a committed scorer folder (scorer.safetensors + scorer.json, e.g. data/scorers/"
        "NAME) instead of a fresh one; --encoder must be the encoder it was trained on (sha256 checked) and "
        "--scorer and the sizes must match its config; the start is a candidate for best/",
    )
    model.add_argument("--query-max-length", type=int, default=30, help="L1: query tokens")
    model.add_argument(
        "--doc-max-length",
        type=int,
        default=200,
        help="L2: document tokens (a cross-encoder reads pairs of L1 + L2 tokens)",
    )
    model.add_argument("--row-hidden-size", type=int, default=2400, help="hidden size of LITE's row MLP")
    model.add_argument("--col-hidden-size", type=int, default=360, help="hidden size of LITE's column MLP")
    model.add_argument("--projection-dim", type=int, default=None, help="Small-LITE: project token vectors d → d'")
    model.add_argument("--doc-stored-tokens", type=int, default=None, help="Small-LITE: compress L2 doc tokens to K")
    model.add_argument(
        "--query-token-weights",
        action="store_true",
        help="a learned weight per vocabulary token on the query's vectors (1 at the start): MaxSim, and the "
        "residual's MaxSim term, become the weighted sum Σ_i w(q_i) max_j S_ij (LiteConfig.query_token_weights)",
    )
    model.add_argument(
        "--projection-init",
        choices=["random", "pca"],
        default="random",
        help="Small-LITE: the projection's start: random (the paper), or the encoder's principal directions over the "
        f"token vectors of {PCA_ROWS} training rows' positives (keeps S close to the full-width one)",
    )
    model.add_argument(
        "--normalize-embeddings",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="L2-normalise token vectors before S = Q·Dᵀ",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--train-data",
        default="microsoft/ms_marco",
        help="'microsoft/ms_marco' (v2.1), 'sentence-transformers/msmarco' (margin-mse) or a local "
        ".jsonl[.gz]/.csv/.parquet with query, positive, negative[, teacher_positive/negative] or "
        "listwise query, positive, negatives[, teacher_positive, teacher_negatives]",
    )
    data.add_argument("--max-train-rows", type=int, default=None, help="use only the first N source rows")
    data.add_argument(
        "--hard-negatives",
        type=int,
        default=1,
        help="negatives per query: the first K of each listwise row's 'negatives' (1 for triplets)",
    )
    data.add_argument(
        "--in-batch-negatives",
        type=int,
        default=0,
        help="LITE / MaxSim with --loss ce: also score each query against N passages of the other "
        "queries in its batch (a partial grid; -1: all of them)",
    )
    data.add_argument(
        "--dev-data",
        default=None,
        help="dev set for checkpoint selection and early stopping: BEIR folder (with --dev-run), "
        "'microsoft/ms_marco' or a local v2.1 file (own pool); none → best/ is the last model",
    )
    data.add_argument("--dev-split", default=None, help="dev split (BEIR qrels name / MS MARCO split)")
    data.add_argument("--dev-run", default=None, help="TREC run of dev candidates (BEIR dev data)")
    data.add_argument("--dev-queries", type=int, default=None, help="evaluate only the first N dev queries")
    data.add_argument("--num-workers", type=int, default=2, help="DataLoader workers (tokenisation happens there)")
    loss = parser.add_argument_group("loss")
    loss.add_argument(
        "--loss",
        default="margin_mse",
        choices=sorted(LOSSES),
        help="margin_mse / kl: distillation from teacher scores; ce: labels only, no teacher",
    )
    loss.add_argument(
        "--teacher",
        default="cross-encoder/ms-marco-MiniLM-L-6-v2",
        help="cross-encoder scoring pairs on the fly when the data has no teacher scores",
    )
    loss.add_argument(
        "--teacher-cache",
        default=None,
        help="folder caching teacher scores across runs/epochs (default OUTPUT_DIR/teacher-cache)",
    )
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--batch-size", type=int, default=64, help="global batch: queries per optimizer step")
    optim.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    optim.add_argument("--lr", type=float, default=2.8e-5, help="AdamW learning rate of the encoder")
    optim.add_argument(
        "--scorer-lr",
        type=float,
        default=None,
        help="learning rate of the scorer / Small-LITE layers / cross-encoder head (default: --lr)",
    )
    optim.add_argument(
        "--projection-lr",
        type=float,
        default=None,
        help="learning rate of the Small-LITE projection alone (default: --scorer-lr); a fresh projection moving at "
        "the scorer's rate changes the similarity matrix the scorer is learning from",
    )
    optim.add_argument(
        "--token-weights-lr",
        type=float,
        default=1e-2,
        help="learning rate of --query-token-weights (their logarithms; 1e-2 was the selection split's choice on "
        "the frozen all-MiniLM-L6-v2, research/query_token_weights.py)",
    )
    optim.add_argument(
        "--freeze-encoder-steps",
        type=int,
        default=0,
        help="train only the scorer for the first N steps, then everything (the fresh scorer learns on "
        "the pretrained features before it steers the encoder: LP-FT, Kumar et al. 2022)",
    )
    optim.add_argument(
        "--freeze-encoder",
        action="store_true",
        help="LITE / Small-LITE: train only the scorer (and Small-LITE layers) on the pretrained encoder's token "
        "vectors, the encoder in eval mode and without gradients (the paper's frozen-encoder setting; a step costs "
        "one encoder forward)",
    )
    optim.add_argument("--weight-decay", type=float, default=0.01)
    optim.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up (default: 10%% of max steps)")
    optim.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default: --num-epochs epochs)")
    optim.add_argument("--num-epochs", type=int, default=1)
    optim.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient-norm clipping (0: none)")
    optim.add_argument(
        "--mixed-precision",
        default="auto",
        choices=["auto", "no", "fp16", "bf16"],
        help="auto: fp16 on a GPU (with loss scaling), bf16 on a CPU that runs it natively, else float32 (no); "
        "explicit bf16 on a CPU without it runs emulated, many times slower",
    )
    optim.add_argument("--threads", type=int, default=None, help="CPU threads per process (default: one per core)")
    optim.add_argument("--seed", type=int, default=42)
    run = parser.add_argument_group("evaluation, checkpoints, output")
    run.add_argument("--eval-every", type=int, default=500, help="dev evaluation every N steps (and at the end)")
    run.add_argument(
        "--patience", type=int, default=3, help="stop after N evaluations without a better dev MRR@10 (0: never)"
    )
    run.add_argument("--eval-batch-size", type=int, default=64)
    run.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (default --eval-every)")
    run.add_argument("--keep-checkpoints", type=int, default=2, help="how many checkpoints to keep")
    run.add_argument("--log-every", type=int, default=20, help="log loss / lr / pairs per second every N steps")
    run.add_argument("--output-dir", default="runs/lite")
    run.add_argument("--resume", action="store_true", help="resume from OUTPUT_DIR/checkpoints (also automatic)")
    run.add_argument(
        "--resume-from",
        default=None,
        metavar="step-NNNNNNNN",
        help="resume from this checkpoint of OUTPUT_DIR/checkpoints instead of the newest (e.g. when the newest is "
        "damaged; the error names the newest intact one)",
    )
    run.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="end this run after N optimizer steps, checkpointed (fits a time-limited session; rerun to continue)",
    )
    run.add_argument(
        "--overwrite-output-dir",
        action="store_true",
        help="start a new run in OUTPUT_DIR: its previous checkpoints, best/ and metrics are deleted "
        "(once every input has been checked)",
    )
    return parser


POSITIVE = (
    "batch_size",
    "grad_accum",
    "lr",
    "num_epochs",
    "eval_every",
    "save_every",
    "keep_checkpoints",
    "log_every",
    "eval_batch_size",
    "query_max_length",
    "doc_max_length",
    "row_hidden_size",
    "col_hidden_size",
    "hard_negatives",
)
POSITIVE_OR_NONE = (
    "max_steps",
    "scorer_lr",
    "projection_lr",
    "token_weights_lr",
    "stop_after",
    "dev_queries",
    "max_train_rows",
    "projection_dim",
    "doc_stored_tokens",
)
POSITIVE_OR_NONE += ("threads",)
NON_NEGATIVE = ("weight_decay", "warmup_steps", "freeze_encoder_steps", "patience", "max_grad_norm", "num_workers")


def config_flags(parser, path: Path) -> list[str]:
    """A --config file's keys as the command-line flags they stand for, so that argparse checks their types and
    choices exactly as it checks typed flags (a YAML value is not trusted to be of the right type)."""
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        parser.error(f"--config {path}: {error}")
    if not isinstance(values, dict):
        parser.error(f"--config {path}: expected keys and values (a mapping), got {type(values).__name__}")
    actions = {action.dest: action for action in parser._actions}
    unknown = sorted(key for key in values if str(key).replace("-", "_") not in actions or key == "config")
    if unknown:
        parser.error(f"{path}: unknown key(s) {unknown}")
    flags = []
    for key, value in values.items():
        action = actions[key.replace("-", "_")]
        flag = next(option for option in action.option_strings if option.startswith("--"))
        if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
            if not isinstance(value, bool):
                parser.error(f"{path}: {key} must be true or false, got {value!r}")
            if value:
                flags.append(flag)
            elif isinstance(action, argparse.BooleanOptionalAction):
                flags.append(f"--no-{flag.removeprefix('--')}")
        elif isinstance(value, bool):  # YAML reads an unquoted no / off / yes / on as a boolean
            if value is False and "no" in (action.choices or ()):
                flags += [flag, "no"]  # `mixed-precision: no`
            else:
                parser.error(
                    f"{path}: {key}: YAML read the value as {str(value).lower()} (a boolean), which this flag does not "
                    f'take; quote it (e.g. {key}: "{value}")'
                )
        elif value is not None:
            flags += [flag, str(value)]
    checker = build_parser()  # the config's flags alone first, so that an error names the file
    checker.error = lambda message: parser.error(f"{path}: {message}")
    checker.parse_args(flags)
    return flags


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if known.config:  # the file's flags first: flags on the command line win
        argv = config_flags(parser, Path(known.config)) + argv
    args = parser.parse_args(argv)
    if args.save_every is None:
        args.save_every = args.eval_every

    def flag(name):
        return "--" + name.replace("_", "-")

    for name in POSITIVE + POSITIVE_OR_NONE:
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"{flag(name)} must be greater than 0, got {value}")
    for name in NON_NEGATIVE:
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"{flag(name)} must be 0 or more, got {value}")
    if args.in_batch_negatives < -1:
        parser.error(f"--in-batch-negatives must be -1 (all), 0 (none) or a count, got {args.in_batch_negatives}")
    if args.in_batch_negatives and (args.loss != "ce" or args.scorer == "cross-encoder"):
        parser.error(
            "--in-batch-negatives needs --loss ce (in-batch passages have no teacher scores) and a late-"
            "interaction student (--scorer lite or maxsim: each passage is encoded once and scored by "
            "every query)"
        )
    if args.freeze_encoder and (args.scorer == "cross-encoder" or args.freeze_encoder_steps):
        parser.error("--freeze-encoder is for LITE / MaxSim students and replaces --freeze-encoder-steps")
    if args.freeze_encoder and args.scorer == "maxsim" and not (args.projection_dim or args.doc_stored_tokens):
        parser.error("--freeze-encoder with --scorer maxsim leaves nothing to train (MaxSim has no parameters)")
    if args.projection_init != "random" and not args.projection_dim:
        parser.error(
            f"--projection-init {args.projection_init} starts the Small-LITE projection: it needs --projection-dim"
        )
    if args.scorer_weights:
        try:
            stored, _, _ = read_scorer(args.scorer_weights)
        except ScorerError as error:
            parser.error(f"--scorer-weights: {error}")
        for name, value in stored.items():
            if name != "activation" and getattr(args, name) != value:
                parser.error(
                    f"--scorer-weights {args.scorer_weights} holds a scorer with {name} {value!r}: "
                    f"pass {flag(name)}{'' if isinstance(value, bool) else f' {value}'} (got {getattr(args, name)!r})"
                )
        if args.query_token_weights and not stored.get("query_token_weights"):
            parser.error(f"--query-token-weights: --scorer-weights {args.scorer_weights} holds no query token weights")
        if args.projection_dim or args.doc_stored_tokens:
            parser.error("--scorer-weights: a committed scorer reads the encoder's own vectors; no Small-LITE layers")
    if args.query_token_weights and args.scorer == "cross-encoder":
        parser.error("--query-token-weights weighs LITE's query vectors: a cross-encoder has none")
    if args.projection_lr and not args.projection_dim:
        parser.error("--projection-lr sets the Small-LITE projection's learning rate: it needs --projection-dim")
    if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        parser.error(f"--output-dir {args.output_dir} is a file, not a folder")
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
    """Where training stands; saved as JSON with every checkpoint (training_state.json, no pickle)."""

    def __init__(self):
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_mrr, self.best_step, self.evals_without_improvement, self.stopped_early = -1.0, 0, 0, False
        self.evaluation_pending = False  # a stop cut the dev evaluation of `step` short: resuming evaluates it first

    def state_dict(self):
        return dict(vars(self))

    def load_state_dict(self, state):
        unknown = set(state) - set(vars(self))
        if unknown:
            raise CheckpointError(f"training_state.json holds fields this version does not know: {sorted(unknown)}")
        vars(self).update(state)


# ---------------------------------------------------------------------------------------------- builders


def run_settings(args) -> dict:
    """The flags that define a run, as stored in OUTPUT_DIR/run_config.json, and the training file's content."""
    settings = {k: v for k, v in vars(args).items() if k not in RUN_CONTROL_FLAGS}
    if Path(args.train_data).is_file():  # a resumed run must read the data it started on
        settings[TRAIN_DATA_CONTENT] = content_fingerprint(args.train_data)
    if args.scorer_weights:  # and start from the scorer it started from
        settings["scorer_weights_content"] = content_fingerprint(Path(args.scorer_weights) / "scorer.safetensors")
    return json.loads(json.dumps(settings, default=str))


TRAIN_DATA_CONTENT = "train_data_content"


def describe_changes(stored: dict, settings: dict) -> str:
    """The settings that differ from a run's stored ones; a flag newer than the run (absent from them) is unchanged
    at its default, which is how the run started (a release adding a flag must not strand runs in flight)."""
    parser = build_parser()

    def before(key):
        return stored[key] if key in stored else parser.get_default(key)

    changed = sorted(key for key in stored.keys() | settings.keys() if before(key) != settings.get(key))
    return "; ".join(
        f"the content of --train-data {settings.get('train_data')} changed since the run started "
        f"({stored.get(key)} → {settings.get(key)})"
        if key == TRAIN_DATA_CONTENT
        else f"--{key.replace('_', '-')} {before(key)!r} → {settings.get(key)!r}"
        for key in changed
    )


def read_run_config(path: Path) -> dict:
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(
            f"{path} does not read as JSON ({error.msg} at line {error.lineno}): the run folder's record of its "
            "settings is damaged; restore it, or choose another --output-dir, or pass --overwrite-output-dir"
        ) from None
    if not isinstance(stored, dict):
        raise SystemExit(f"{path} is not a run's settings (a JSON object); restore it or choose another --output-dir")
    return stored


def clear_run(output_dir: Path):
    """--overwrite-output-dir: remove what a run writes (its own checkpoints, best/, metrics, settings) and nothing
    else: a copy or any other file a user keeps in the run folder stays."""
    checkpoints = output_dir / "checkpoints"
    for path in [*own_checkpoints(checkpoints), *checkpoints.glob(".partial-step-*")]:
        shutil.rmtree(path)
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
    for name in ("best", ".previous-best", ".partial-best"):
        shutil.rmtree(output_dir / name, ignore_errors=True)
    for name in ("metrics.jsonl", "run_config.json"):
        (output_dir / name).unlink(missing_ok=True)


def prepare_output_dir(args, accelerator) -> Path | None:
    """Start, continue or replace the run in OUTPUT_DIR; returns the checkpoint to resume from. Called only once every
    input has been checked (nothing in OUTPUT_DIR is touched before) and the folder's lock is held."""
    output_dir = Path(args.output_dir)
    config_path = output_dir / "run_config.json"
    settings = run_settings(args)
    if accelerator.is_main_process:
        if args.overwrite_output_dir:  # a fresh start must not mix with, or later resume from, an old run
            clear_run(output_dir)
        recover_folder(output_dir / "best")
    accelerator.wait_for_everyone()
    try:
        resume_from = latest_checkpoint(output_dir / "checkpoints", args.resume_from)
    except CheckpointError as error:
        raise SystemExit(f"error: {error}") from None
    if args.resume and resume_from is None:
        raise SystemExit(f"--resume: no complete checkpoint under {output_dir / 'checkpoints'}")
    previous_run = [name for name in RUN_FILES if name != "checkpoints" and (output_dir / name).exists()]
    previous_run += ["checkpoints"] if own_checkpoints(output_dir / "checkpoints") else []
    if config_path.is_file():
        changes = describe_changes(read_run_config(config_path), settings)
        if changes:
            raise SystemExit(
                f"{output_dir} holds a run with other settings ({changes}). Rerun with that run's "
                "settings to continue it, choose another --output-dir, or pass --overwrite-output-dir "
                "to replace it (its checkpoints, best/ and metrics are deleted)."
            )
    elif previous_run and resume_from is None:
        raise SystemExit(
            f"{output_dir} holds {previous_run} from an earlier run that cannot be continued; choose "
            "another --output-dir or pass --overwrite-output-dir to replace it."
        )
    if accelerator.is_main_process:
        write_text_atomically(config_path, json.dumps(settings, indent=2) + "\n")
    return resume_from


def lock_run_folder(args, accelerator) -> FolderLock | None:
    """The run folder is one run's: a second training on it stops here, naming the first (main process only)."""
    if not accelerator.is_main_process:
        return None
    try:
        return FolderLock(args.output_dir, "training run").acquire()
    except FolderInUse as error:
        raise SystemExit(f"error: {error}") from None


def load_data(args, accelerator):
    """The training rows and the dev set, each fully validated (errors name file and line)."""
    with accelerator.main_process_first():
        train_data = load_train_dataset(
            args.train_data, args.max_train_rows, args.seed, log=accelerator.print, min_negatives=args.hard_negatives
        )
        dev_set = (
            load_rerank_set(args.dev_data, args.dev_split, args.dev_run, args.dev_queries) if args.dev_data else None
        )
    return train_data, dev_set


def build_model(args):
    """The student and its tokenizer: LITE / MaxSim on a pretrained encoder, or a plain cross-encoder."""
    if args.scorer == "cross-encoder":
        return new_cross_encoder(args.encoder, args.query_max_length + args.doc_max_length)
    if args.scorer_weights:
        try:
            model = build_scorer_model(args.scorer_weights, args.encoder)
        except ScorerError as error:
            raise SystemExit(f"error: --scorer-weights: {error}") from None
    elif is_multi_vector_model(args.encoder):
        model = multi_vector_student(args)
    else:
        model = LiteModel.from_encoder(
            args.encoder, scorer=args.scorer, **{name: getattr(args, name) for name in ARCHITECTURE}
        )
    if model.tokenizer is None:
        raise SystemExit(f"--encoder {args.encoder} has no tokenizer files")
    if args.projection_init == "pca" and args.projection_dim > model.config.hidden_size:
        raise SystemExit(
            f"--projection-init pca: --projection-dim {args.projection_dim} is wider than --encoder {args.encoder} "
            f"({model.config.hidden_size}): it has only that many principal directions; choose a smaller d′"
        )
    if args.freeze_encoder:
        model.base_model.requires_grad_(False)  # no gradients, no saved activations, not in the optimizer
    return model, model.tokenizer


def multi_vector_student(args):
    """LITE on a multi-vector model (MultiVectorEncoder, PyLate, ColBERT folder): its lengths, projection, prompts,
    expansion and skiplist come from it, so the flags that would set them are refused when they differ."""
    from lite_rerank.multi_vector import CARRIED_FIELDS, lite_from_multi_vector

    try:
        model = lite_from_multi_vector(
            args.encoder,
            scorer=args.scorer,
            **{name: getattr(args, name) for name in ARCHITECTURE if name not in CARRIED_FIELDS},
        )
    except ValueError as error:
        raise SystemExit(f"error: --encoder {args.encoder}: {error}") from None
    for name in ("query_max_length", "doc_max_length", "projection_dim"):
        given, carried = getattr(args, name), getattr(model.config, name)
        if given != carried and given != build_parser().get_default(name):
            flag = "--" + name.replace("_", "-")
            raise SystemExit(f"error: {flag} {given}: --encoder {args.encoder} is a multi-vector model with {carried}")
        setattr(args, name, carried)  # the collator tokenises to the model's lengths
    if not args.normalize_embeddings and model.config.normalize_embeddings:
        raise SystemExit(f"error: --no-normalize-embeddings: --encoder {args.encoder} normalises its vectors")
    return model


def starting_fresh(args) -> bool:
    """This session starts the run from step 0: no checkpoint of it to resume from (or --overwrite-output-dir)."""
    return args.overwrite_output_dir or not own_checkpoints(Path(args.output_dir) / "checkpoints")


def initialise_start(args, accelerator, model, tokenizer, train_data, teacher, loss_fn):
    """A fresh run's start, computed before the run folder is touched, so that a refusal leaves nothing that blocks
    a rerun: Small-LITE's projection from the training rows' principal directions (--projection-init pca), the
    residual scorer's MaxSim scale fitted to the teacher. Every process alike: same rows, same arithmetic."""
    if args.projection_init == "pca":
        accelerator.print(init_projection_from_training_rows(model, tokenizer, train_data, args.seed))
    if residual_scorer(model) is not None and not args.scorer_weights:  # S as training sees it
        accelerator.print(fit_residual_start(args, model, tokenizer, train_data, teacher, loss_fn))


@torch.no_grad()
def fit_residual_start(args, model, tokenizer, train_data, teacher, loss_fn) -> str:
    """The residual scorer's MaxSim scale fitted to the training loss on FIT_ROWS seeded training rows, before the
    first step. The fresh model's scores are MaxSim's. A label loss sets no scale (its best is unbounded wherever
    MaxSim ranks the rows right): the scale stays 1."""
    if teacher is None:
        return f"residual start: --loss {args.loss} trains on labels, which set no MaxSim scale; kept at 1"
    rows = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(args.seed))[:FIT_ROWS].tolist()
    sample = torch.utils.data.Subset(IndexedTriplets(train_data), sorted(rows))  # row indices kept: the cache's keys
    loader = DataLoader(sample, batch_size=32, collate_fn=get_collator(args, tokenizer, teacher.tokenizer))
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    maxsim, targets = [], []
    for batch in loader:
        batch = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
        maxsim.append(student_scores(model, batch).float().cpu())
        targets.append(teacher(batch, device, check=False).float().cpu())
    model.train(was_training)
    try:
        scale = fit_maxsim_scale(torch.cat(maxsim), torch.cat(targets), loss_fn)
    except ValueError as error:
        raise SystemExit(f"error: --scorer residual: the teacher ({teacher.source}): {error}") from None
    set_maxsim_scale(model, scale)
    return f"residual start: MaxSim scale fitted to the {args.loss} loss on {len(rows)} training rows: 1 → {scale:.4f}"


def train_mode(model, args):
    """Training mode, with a frozen encoder kept in eval mode: its token vectors do not change from step to step."""
    model.train()
    if args.freeze_encoder:
        getattr(model, "module", model).base_model.eval()


def get_collator(args, tokenizer, teacher_tokenizer) -> TripletCollator:
    return TripletCollator(
        tokenizer,
        args.query_max_length,
        args.doc_max_length,
        teacher_tokenizer,
        teacher_max_length=getattr(teacher_tokenizer, "model_max_length", 512),
        hard_negatives=args.hard_negatives,
        pairs=args.scorer == "cross-encoder",
    )


def get_dataloader(args, train_data, tokenizer, teacher_tokenizer, processes: int) -> DataLoader:
    """Shuffled training batches of `--batch-size / (processes × grad-accum)` rows, tokenised in the workers."""
    return DataLoader(
        IndexedTriplets(train_data),
        batch_size=args.batch_size // (processes * args.grad_accum),
        shuffle=True,
        drop_last=True,
        collate_fn=get_collator(args, tokenizer, teacher_tokenizer),
        num_workers=args.num_workers,
        worker_init_fn=ignore_stop_signals,
        generator=torch.Generator().manual_seed(args.seed),  # keeps the loader off the global RNG (exact resume)
    )


def build_optimizer(args, model, max_steps: int, processes: int):
    """AdamW: the encoder at --lr (frozen for --freeze-encoder-steps), the rest (scorer, Small-LITE layers,
    cross-encoder head) at --scorer-lr, the Small-LITE projection at --projection-lr when given, the query token
    weights at --token-weights-lr; linear warm-up
    and decay. Also returns the groups' names, which metrics.jsonl gives their rates (see `learning_rates`)."""
    warmup = args.warmup_steps if args.warmup_steps is not None else max_steps // 10
    # A prepared scheduler steps once per process per optimizer step: size it accordingly.
    schedule = linear_schedule(warmup * processes, max_steps * processes)
    encoder_schedule = linear_schedule(
        warmup * processes,
        (max_steps - args.freeze_encoder_steps) * processes,
        delay=args.freeze_encoder_steps * processes,
    )
    is_encoder = {id(p) for p in model.base_model.parameters()}  # LITE's encoder, or the cross-encoder's BERT
    trainable = [p for p in model.parameters() if p.requires_grad]  # all but a --freeze-encoder encoder
    projection = getattr(model, "projection", None) if args.projection_lr else None
    is_projection = {id(p) for p in projection.parameters()} if projection is not None else set()
    token_weights = getattr(model, "query_token_weights", None)
    is_token_weights = {id(p) for p in token_weights.parameters()} if token_weights is not None else set()
    groups = {  # name: (parameters, rate, schedule); a group without parameters is left out
        "lr": ([p for p in trainable if id(p) in is_encoder], args.lr, encoder_schedule),
        "scorer_lr": (
            [p for p in trainable if id(p) not in is_encoder | is_projection | is_token_weights],
            args.scorer_lr or args.lr,
            schedule,
        ),
        "projection_lr": ([p for p in trainable if id(p) in is_projection], args.projection_lr, schedule),
        "token_weights_lr": ([p for p in trainable if id(p) in is_token_weights], args.token_weights_lr, schedule),
    }
    groups = {name: group for name, group in groups.items() if group[0]}
    optimizer = torch.optim.AdamW(
        [{"params": params, "lr": lr} for params, lr, _ in groups.values()], weight_decay=args.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [schedule for _, _, schedule in groups.values()])
    return optimizer, scheduler, list(groups)


def learning_rates(scheduler, names: list[str]) -> dict:
    """The current rate of each of build_optimizer's groups by name; `scorer_lr` is the encoder's where nothing but
    the encoder trains (MaxSim without Small-LITE layers), as metrics.jsonl always recorded it."""
    rates = dict(zip(names, scheduler.get_last_lr(), strict=True))
    encoder = rates.get("lr", 0.0)  # 0 for a --freeze-encoder encoder
    return {"lr": encoder, "scorer_lr": rates.get("scorer_lr", encoder)} | rates


class TeacherScores:
    """Teacher scores of a batch (batch, 1 + k): carried by the data, or computed on the fly by `--teacher` and kept
    in a disk cache (OUTPUT_DIR/teacher-cache), so a resumed run or a second epoch does not recompute them."""

    def __init__(self, source: str, teacher=None, cache=None):
        self.source, self.teacher, self.cache = source, teacher, cache  # source: what training_summary.json names

    @classmethod
    def create(cls, args, train_data, loss_fn, accelerator):
        if not loss_fn.needs_teacher:
            return None
        if "teacher_positive" in train_data.column_names:
            return cls(TEACHER_SCORES_IN_DATA)
        teacher = CrossEncoderTeacher(args.teacher, accelerator.device)
        meta = {
            "teacher": args.teacher,
            "teacher_weights": teacher.weights_id,  # a teacher retrained in the same folder has other scores
            "train_data": args.train_data,
            "max_train_rows": args.max_train_rows,
            "hard_negatives": args.hard_negatives,
            "fingerprint": train_data._fingerprint,
        }
        folder = args.teacher_cache or Path(args.output_dir) / "teacher-cache"
        try:
            return cls(args.teacher, teacher, TeacherScoreCache(folder, meta, accelerator.process_index))
        except ValueError as error:  # a cache of another teacher's (or other rows') scores
            raise SystemExit(f"error: {error}") from None

    @property
    def tokenizer(self):
        return self.teacher.tokenizer if self.teacher is not None else None

    def __call__(self, batch, device, check: bool = True) -> torch.Tensor:
        """The batch's teacher scores; with `check`, scores that are not finite stop training, naming the teacher
        and the rows (the loss would otherwise be NaN, and the error would blame the learning rate)."""
        if "teacher_scores" in batch:
            scores = batch["teacher_scores"]
        else:
            rows = batch["rows"].tolist()
            scores = self.cache.lookup(rows)
            if scores is None:
                scores = self.teacher.score(batch["teacher_inputs"]).view(len(rows), -1).cpu()
                self.cache.add(rows, scores)
        if check and not torch.isfinite(scores).all():
            rows = batch["rows"][~torch.isfinite(scores).all(dim=1).cpu()].tolist()
            raise SystemExit(
                f"error: the teacher ({self.source}) gives scores that are not finite for training rows {rows[:5]}: "
                "the teacher is broken, or the training file's teacher scores are damaged"
            )
        return scores.to(device)


def student_scores(model, batch, in_batch_negatives: int = 0) -> torch.Tensor:
    """(batch, n) scores of each query's documents, the positive first, then its hard (and in-batch) negatives."""
    if "pair_input_ids" in batch:  # a cross-encoder: one pass per (query, document) pair
        tokens = {key.removeprefix("pair_"): value for key, value in batch.items() if key.startswith("pair_")}
        return cross_encoder_logits(model, tokens).view(len(batch["rows"]), -1)
    extra = {"in_batch_negatives": in_batch_negatives} if in_batch_negatives else {}
    return model(
        query_input_ids=batch["query_input_ids"],
        query_attention_mask=batch["query_attention_mask"],
        doc_input_ids=batch["doc_input_ids"],
        doc_attention_mask=batch["doc_attention_mask"],
        **extra,
    ).logits


def training_summary(args, accelerator, teacher, step: int, **extra) -> dict:
    """What best/training_summary.json records; the model card reads it (teacher: where the distillation targets
    came from, None without distillation)."""
    source = teacher.source if teacher is not None else None
    history = precision_history(Path(args.output_dir) / "metrics.jsonl")
    changed = {"precision_history": history} if len(history) > 1 else {}
    return {
        "step": step,
        **extra,
        "num_processes": accelerator.num_processes,
        "teacher": source,
        "precision": accelerator.mixed_precision,
        **changed,
        "hardware": hardware.describe(accelerator.device),
        "args": vars(args),
    }


def precision_history(metrics_path: Path) -> list[dict]:
    """[{"from_step", "precision"}]: the precision of each stretch of a run, from the start record metrics.jsonl holds
    for every session (a run resumed on another CPU, or under another LITE_NATIVE_BF16, changes it). A session that
    starts from step s discards what earlier sessions trained from s on (they stopped before their next checkpoint),
    so their stretches are dropped."""
    history = []
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            record = json.loads(line)
            if record.get("event") != "start":
                continue
            history = [stretch for stretch in history if stretch["from_step"] < record["step"]]
            if not history or history[-1]["precision"] != record["precision"]:
                history.append({"from_step": record["step"], "precision": record["precision"]})
    return history


def save_model(accelerator, model, tokenizer, folder, info: dict):
    """`save_pretrained` + tokenizer + a training summary into `folder`, swapped in atomically."""
    if not accelerator.is_main_process:
        return

    def write(tmp):
        accelerator.unwrap_model(model).save_pretrained(tmp, save_function=accelerator.save)
        if not (tmp / "tokenizer_config.json").exists():
            tokenizer.save_pretrained(tmp)
        (tmp / "training_summary.json").write_text(json.dumps(info, indent=2, default=str) + "\n")

    replace_folder(write, folder)


class DevSelection:
    """Dev evaluation every --eval-every steps, each process scoring its shard of the queries (metrics gathered with
    `gather_for_metrics`): the best model so far is saved to best/; --patience evaluations without a better MRR@10
    stop the run. Non-finite scores stop the run and never reach best/."""

    def __init__(self, args, accelerator, dev_set, tokenizer, teacher, stop=None):
        self.args, self.accelerator, self.dev_set, self.tokenizer = args, accelerator, dev_set, tokenizer
        self.teacher, self.stop = teacher, stop
        self.metrics = load_metrics()
        self.query_loader = accelerator.prepare_data_loader(DataLoader(range(len(dev_set.queries)), batch_size=16))

    def due(self, step: int, finished: bool) -> bool:
        return step % self.args.eval_every == 0 or finished

    def evaluate(self, model) -> dict:
        model = self.accelerator.unwrap_model(model)
        if not isinstance(model, LiteModel):
            model = CrossEncoderScorer(model, self.tokenizer)
        qids, per_query = list(self.dev_set.queries), []
        for indices in self.query_loader:
            shard = self.dev_set.subset([qids[i] for i in indices.tolist()])
            with self.accelerator.autocast():
                scores = score_rerank_set(model, shard, self.args.eval_batch_size, progress=False)
            if all(math.isfinite(value) for values in scores.values() for value in values):
                values = compute_metrics(shard, scores, (10,), self.metrics, return_per_query=True)["per_query"]
                rows = [[v[name] for name in DEV_METRICS] for v in values]
            else:
                rows = [[math.nan] * len(DEV_METRICS) for _ in shard.queries]
            per_query.append(self.accelerator.gather_for_metrics(torch.tensor(rows, device=self.accelerator.device)))
        return dict(zip(DEV_METRICS, torch.cat(per_query).mean(dim=0).tolist()))

    def select(self, model, progress: TrainingProgress, log) -> bool:
        """Evaluate, keep the model if it is the best so far; True when the run should stop early. A stop signal drops
        the evaluation itself (`StopSignal.droppable`), never the bookkeeping or the save that follow it."""
        with self.stop.droppable() if self.stop else contextlib.nullcontext():
            dev = self.evaluate(model)
        if not all(math.isfinite(value) for value in dev.values()):
            raise SystemExit(
                f"step {progress.step}: the model's dev scores are not finite (training diverged); "
                f"best/ keeps step {progress.best_step}. Lower --lr / --scorer-lr."
            )
        if dev["mrr@10"] > progress.best_mrr:
            progress.best_mrr, progress.best_step, progress.evals_without_improvement = dev["mrr@10"], progress.step, 0
            save_model(
                self.accelerator,
                model,
                self.tokenizer,
                Path(self.args.output_dir) / "best",
                training_summary(self.args, self.accelerator, self.teacher, progress.step, dev=dev),
            )
        else:
            progress.evals_without_improvement += 1
        log(
            progress.step,
            {f"dev_{name}": value for name, value in dev.items()} | {"best_dev_mrr@10": progress.best_mrr},
        )
        self.accelerator.print(
            f"step {progress.step}: dev MRR@10 {dev['mrr@10']:.4f} (best {progress.best_mrr:.4f} "
            f"at step {progress.best_step})"
        )
        if self.args.patience and progress.evals_without_improvement >= self.args.patience:
            self.accelerator.print(f"early stop: {self.args.patience} evaluations without improvement")
            progress.stopped_early = True
        return progress.stopped_early


def ignore_stop_signals(worker_id: int):
    """DataLoader workers outlive a SIGTERM / Ctrl-C sent to the whole process group (schedulers, terminals): the
    main process stops them after it has saved its checkpoint."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class StopRequested(BaseException):
    """A stop signal inside droppable work. A BaseException, as KeyboardInterrupt is: no `except Exception` on the way
    out of a forward pass swallows it."""


class StopSignal:
    """SIGTERM / Ctrl-C set Accelerate's trigger; `accelerator.check_trigger()` after each optimizer step tells every
    process, so they all save a checkpoint together.

    A single process stops at once inside droppable work, which changes nothing a checkpoint holds: a step's forward
    and backward passes (before the optimizer touches the weights) and a dev evaluation. It drops that work and saves
    the last step boundary (`mark_boundary`), whose RNG state it puts back. Launchers may allow only seconds: since
    accelerate 1.16, `accelerate launch` kills a single process 5 s after SIGTERM / Ctrl-C, while a step or an
    evaluation on a CPU takes longer. (The signal handler runs between Python operations, so a long backward pass
    still finishes first.) Several processes keep to the trigger: one cannot leave a collective the others are in."""

    def __init__(self, accelerator):
        self.accelerator, self.signal = accelerator, None
        self.single_process = accelerator.num_processes == 1
        self.in_droppable_work, self.boundary = False, None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle)

    def handle(self, signum, frame):
        self.signal = signum
        self.accelerator.set_trigger()
        if self.in_droppable_work:
            self.in_droppable_work = False
            raise StopRequested

    def mark_boundary(self, progress):
        """The state a stop inside the next droppable work saves: where training stands, and the RNG."""
        if self.single_process:
            self.boundary = progress.state_dict(), rng_states(self.accelerator.device)

    def restore_boundary(self, progress):
        state, rng = self.boundary
        progress.load_state_dict(state)
        set_rng_states(self.accelerator.device, rng)

    @contextlib.contextmanager
    def droppable(self):
        if not self.single_process:
            yield
            return
        try:
            self.in_droppable_work = True  # before the check: a signal between the two still raises
            if self.signal is not None:
                raise StopRequested
            yield
        finally:
            self.in_droppable_work = False


def device_generator(device):
    """torch.cuda, torch.mps, torch.xpu...: the module of the device's generator (None on the CPU)."""
    module = torch.get_device_module(device.type) if device.type != "cpu" else None
    return module if hasattr(module, "get_rng_state") else None


def rng_states(device) -> tuple:
    """Python's, NumPy's, torch's CPU and the device's generators: what a checkpoint saves of the RNG."""
    generator = device_generator(device)
    device_rng = generator.get_rng_state() if generator is not None else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), device_rng


def set_rng_states(device, states: tuple):
    python, numpy, cpu, device_rng = states
    random.setstate(python)
    np.random.set_state(numpy)
    torch.set_rng_state(cpu)
    if device_rng is not None:
        device_generator(device).set_rng_state(device_rng)


def checkpoint(accelerator, args, progress):
    """OUTPUT_DIR/checkpoints/step-N: accelerate's state and where training stands."""
    folder = Path(args.output_dir) / "checkpoints"
    save_checkpoint(accelerator, folder, progress.step, args.keep_checkpoints, progress.state_dict())


def select_at_boundary(dev, model, progress, log, stop) -> bool:
    """`dev.select` at a step boundary (True: stop early). Marked pending first, so that a stop inside the evaluation
    saves this step with the evaluation still to do, and a resumed run does it before training on."""
    progress.evaluation_pending = True
    stop.mark_boundary(progress)
    stopped_early = dev.select(model, progress, log)
    progress.evaluation_pending = False
    stop.mark_boundary(progress)
    return stopped_early


def stop_with_checkpoint(accelerator, args, progress, stop):
    checkpoint(accelerator, args, progress)
    accelerator.print(f"stopped by signal at step {progress.step}; checkpoint saved, rerun to resume")
    accelerator.end_training()
    sys.exit(128 + (stop.signal or signal.SIGTERM))


class MetricsLog:
    """metrics.jsonl (main process): one JSON record per line, never NaN; loss and throughput averaged over the
    steps since the previous record."""

    def __init__(self, path, accelerator, args, max_steps: int, rate_names: list[str]):
        self.path, self.accelerator, self.rate_names = Path(path), accelerator, rate_names
        self.pairs_per_step = args.batch_size * (1 + args.hard_negatives)
        self.every, self.max_steps = args.log_every, max_steps
        self.loss, self.steps, self.since = 0.0, 0, time.perf_counter()

    def __call__(self, step: int, record: dict):
        if self.accelerator.is_main_process:
            with self.path.open("a") as out:
                out.write(json.dumps({"step": step, **record}, allow_nan=False) + "\n")

    def add(self, loss: float):
        self.loss += loss

    def step_done(self, step: int, epoch: int, scheduler) -> dict:
        """Count an optimizer step; every `every` steps (and at the last), write and return a record."""
        self.steps += 1
        if step % self.every and step != self.max_steps:
            return {}
        loss = self.accelerator.reduce(torch.tensor(self.loss / self.steps, device=self.accelerator.device), "mean")
        record = {
            "epoch": epoch,
            "loss": loss.item(),
            **learning_rates(scheduler, self.rate_names),
            "pairs_per_s": self.steps * self.pairs_per_step / (time.perf_counter() - self.since),
        }
        if self.accelerator.scaler is not None:
            record["loss_scale"] = self.accelerator.scaler.get_scale()
        self(step, record)
        self.loss, self.steps, self.since = 0.0, 0, time.perf_counter()
        return record


def precision(args) -> str:
    """accelerate's mixed precision for --mixed-precision on this machine (the rule of lite_rerank.hardware)."""
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    if args.mixed_precision == "fp16" and use_cpu:
        # fp16 kernels on CPU are orders of magnitude slower: fall back to float32 and say so rather than stall
        print("note: fp16 needs a GPU; training in float32 (--mixed-precision auto picks what this CPU runs well)")
        return "no"
    return hardware.choose_mixed_precision(args.mixed_precision, "cpu" if use_cpu else "cuda")


def make_accelerator(args) -> Accelerator:
    hardware.set_threads(args.threads, log=None)
    accelerator = Accelerator(
        mixed_precision=precision(args),
        gradient_accumulation_steps=args.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    device = accelerator.device
    accelerator.print(
        f"threads: {torch.get_num_threads()} per process; "
        + hardware.precision_note(
            hardware.ACCELERATE_DTYPES[accelerator.mixed_precision], args.mixed_precision, device
        )
    )
    if args.batch_size % (accelerator.num_processes * args.grad_accum):
        raise SystemExit(
            f"--batch-size {args.batch_size} is not divisible by {accelerator.num_processes} processes × "
            f"--grad-accum {args.grad_accum}"
        )
    return accelerator


def log_session_start(accelerator, log, output_dir: Path, step: int):
    """What this session runs on (precision, threads, hardware), in metrics.jsonl; a note when the precision differs
    from the one the run trained in until now."""
    before = precision_history(output_dir / "metrics.jsonl") if accelerator.is_main_process else []
    if before and before[-1]["precision"] != accelerator.mixed_precision:
        accelerator.print(
            f"note: this run trained in {before[-1]['precision']} until step {step} and continues in "
            f"{accelerator.mixed_precision} (another CPU, or LITE_NATIVE_BF16): training_summary.json and the "
            "model card record both"
        )
    log(step, {"event": "start", "precision": accelerator.mixed_precision} | hardware.describe(accelerator.device))


def optimizer_step(accelerator, model, optimizer, scheduler, max_grad_norm: float, step: int):
    """Clip, step. Non-finite gradients (the same on every process, after the all-reduce) stop the run before the
    weights are touched; with fp16 loss scaling, the scaler skips such steps itself."""
    if accelerator.sync_gradients:
        norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm or math.inf)
        if accelerator.scaler is None and not math.isfinite(norm):
            raise SystemExit(
                f"step {step + 1}: the loss or its gradients are not finite; stopped before updating the weights "
                "(checkpoints and best/ are from earlier steps). Lower --lr / --scorer-lr."
            )
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def finish(args, accelerator, model, tokenizer, teacher, progress, dev, finished, paused, already_done):
    """End of a session: report, and without a dev set keep the last model (a rerun of a finished run keeps what it
    saved)."""
    output_dir = Path(args.output_dir)
    if paused and not finished:
        accelerator.print(f"paused at step {progress.step} (--stop-after); rerun to continue")
    elif dev is None and not (already_done and (output_dir / "best").is_dir()):
        info = training_summary(args, accelerator, teacher, progress.step)
        save_model(accelerator, model, tokenizer, output_dir / "best", info)
    accelerator.wait_for_everyone()
    if finished:
        selection = (
            f"best dev MRR@10 {progress.best_mrr:.4f} at step {progress.best_step}" if dev else "the last model"
        )
        accelerator.print(f"done: step {progress.step}; {selection}; model in {output_dir / 'best'}")
    accelerator.end_training()


# ---------------------------------------------------------------------------------------------- training


def training_function(args) -> TrainingProgress:
    accelerator = make_accelerator(args)
    processes, output_dir = accelerator.num_processes, Path(args.output_dir)
    train_data, dev_set = load_data(args, accelerator)
    loss_fn = LOSSES[args.loss]()
    teacher = TeacherScores.create(args, train_data, loss_fn, accelerator)
    set_seed(args.seed)
    model, tokenizer = build_model(args)
    train_loader = get_dataloader(args, train_data, tokenizer, teacher and teacher.tokenizer, processes)
    steps_per_epoch = len(train_loader) // (processes * args.grad_accum)
    if steps_per_epoch == 0:
        raise SystemExit(f"{len(train_data)} training rows do not fill one batch of {args.batch_size}")
    max_steps = args.max_steps or steps_per_epoch * args.num_epochs
    if starting_fresh(args):
        initialise_start(args, accelerator, model, tokenizer, train_data, teacher, loss_fn)
    lock = lock_run_folder(args, accelerator)  # every input is checked by now; held until the process ends
    resume_from = prepare_output_dir(args, accelerator)
    optimizer, scheduler, rate_names = build_optimizer(args, model, max_steps, processes)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    stop = StopSignal(accelerator)
    dev = DevSelection(args, accelerator, dev_set, tokenizer, teacher, stop) if dev_set is not None else None
    progress = TrainingProgress()
    if resume_from is not None:  # accelerate's own files with weights_only (no code runs), ours as JSON
        accelerator.load_state(str(resume_from), load_kwargs={"weights_only": True})
        progress.load_state_dict(read_training_state(resume_from))
        accelerator.print(f"resumed from {resume_from} (step {progress.step}, epoch {progress.epoch})")
    progress.evaluation_pending &= dev is not None
    accelerator.print(
        f"{len(train_data)} training rows, {processes} process(es), {steps_per_epoch} steps/epoch, "
        f"{max_steps} steps, precision {accelerator.mixed_precision}, device {accelerator.device}"
    )
    log = MetricsLog(output_dir / "metrics.jsonl", accelerator, args, max_steps, rate_names)
    finished = already_done = (
        progress.step >= max_steps or progress.stopped_early
    ) and not progress.evaluation_pending
    if resume_from is not None and not already_done:
        log(progress.step, {"event": "resumed", "checkpoint": resume_from.name})  # later steps may repeat earlier ones
    if not already_done:
        log_session_start(accelerator, log, output_dir, progress.step)
    bar = tqdm(total=max_steps, initial=progress.step, disable=not accelerator.is_main_process, desc="Training")
    paused, first_step = False, progress.step
    if dev is not None and (residual_scorer(model) is not None or args.scorer_weights) and resume_from is None:
        progress.evaluation_pending = True  # a start worth keeping (MaxSim's ranking, a committed scorer): a candidate
    stop.mark_boundary(progress)
    try:
        if dev is not None and progress.evaluation_pending:  # that start, or an evaluation a stop cut short
            finished = select_at_boundary(dev, model, progress, log, stop) or progress.step >= max_steps
            if resume_from is not None:  # the checkpoint saved by that stop now records the evaluation
                checkpoint(accelerator, args, progress)
        train_mode(model, args)
        while not (finished or paused):
            train_loader.set_epoch(progress.epoch)
            skip = progress.batch_in_epoch  # a resumed epoch continues where it stopped
            for batch in skip_first_batches(train_loader, skip) if skip else train_loader:
                with accelerator.accumulate(model):
                    targets = teacher(batch, accelerator.device) if teacher else None  # (its cache is written here)
                    with stop.droppable():
                        loss = loss_fn(student_scores(model, batch, args.in_batch_negatives), targets)
                        accelerator.backward(loss)
                    optimizer_step(accelerator, model, optimizer, scheduler, args.max_grad_norm, progress.step)
                progress.batch_in_epoch += 1
                log.add(loss.detach().float().item() / args.grad_accum)
                if not accelerator.sync_gradients:
                    continue
                progress.step += 1
                bar.update(1)
                if record := log.step_done(progress.step, progress.epoch, scheduler):
                    bar.set_postfix(loss=f"{record['loss']:.4f}", pairs_s=f"{record['pairs_per_s']:.0f}")
                finished = progress.step >= max_steps
                if dev is not None and dev.due(progress.step, finished):
                    finished = select_at_boundary(dev, model, progress, log, stop) or finished
                    train_mode(model, args)
                if accelerator.check_trigger():
                    stop_with_checkpoint(accelerator, args, progress, stop)
                paused = args.stop_after is not None and progress.step - first_step >= args.stop_after
                if finished or paused or progress.step % args.save_every == 0:
                    checkpoint(accelerator, args, progress)
                if finished or paused:
                    break
                stop.mark_boundary(progress)
            else:
                progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
                stop.mark_boundary(progress)
    except StopRequested:  # a single process, stopped in droppable work: the last step boundary is what it saves
        stop.restore_boundary(progress)
        stop_with_checkpoint(accelerator, args, progress, stop)
    bar.close()
    finish(args, accelerator, model, tokenizer, teacher, progress, dev, finished, paused, already_done)
    if lock is not None:
        lock.release()
    return progress


def main(argv=None):
    try:
        return training_function(parse_args(argv))
    except DataError as error:  # bad input data: the message names the file and line; no traceback needed
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
