"""Stage a trained LITE model as a self-contained Hub folder, render its model card, and validate the stage."""

import inspect
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .evaluation import results_table
from .teacher import TEACHER_SCORES_IN_DATA
from .utils import file_sha256

ROOT = Path(__file__).resolve().parents[1]
CARD_TEMPLATE = ROOT / "model_card" / "template.md"
WIDGET_EXAMPLES = ROOT / "model_card" / "widget_examples.json"
HANDLER = ROOT / "handler.py"
METRIC_NAMES = {"mrr@10": ("mrr_at_10", "MRR@10"), "ndcg@10": ("ndcg_at_10", "nDCG@10")}
RESULT_KEYS = ("mrr@10", "ndcg@10", "recall@10", "recall@k")
# The releases the Hub folder is checked with (scripts/check_hub_compat.py --all); stated in the card and in the
# stage's requirements.txt (Inference Endpoints installs it on top of its image).
TESTED_TRANSFORMERS = ("4.46.3", "4.51.3", "4.57.6", "5.0.0", "5.12.1", "5.24.0")
TESTED_SENTENCE_TRANSFORMERS = ("5.7.0", "6.2.0")
REQUIREMENTS = "transformers>=4.46.3,<6\n"
TOKENIZER_LOCAL_KEYS = ("is_local", "local_files_only")  # where the builder loaded it from: not the Hub's business


class StageError(RuntimeError):
    """The staged folder is incomplete or does not reproduce the source model; nothing is uploaded."""


def load_results(path) -> dict:
    """The results JSON written by eval_rerank.py --output, checked: every row carries every metric."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} not found (write it with eval_rerank.py --output)")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}); expected the file written by "
            "eval_rerank.py --output"
        ) from None
    if not isinstance(results, dict) or not isinstance(results.get("models"), dict) or not results["models"]:
        raise ValueError(f"{path}: no 'models' section; expected the JSON written by eval_rerank.py --output")
    for name, row in results["models"].items():
        missing = [key for key in RESULT_KEYS if not isinstance(row, dict) or key not in row]
        if missing:
            raise ValueError(f"{path}: model {name!r} lacks {missing}; expected the JSON written by eval_rerank.py")
    return results


def eval_results(results: dict, model_key: str) -> list[EvalResult] | None:
    """model-index entries of the published model's row, when the data is a Hub dataset: the Hub links `dataset.type`
    to hf.co/datasets/<type>, so local data is described in the card's text instead (name and provenance link)."""
    data = results.get("data", {})
    spec = str(data.get("spec", ""))
    if not is_hub_id(spec):
        return None
    row = results["models"][model_key]
    return [
        EvalResult(
            task_type="text-ranking",
            dataset_type=spec,
            dataset_name=spec,
            dataset_split=data.get("split") or "dev",
            metric_type=metric_type,
            metric_value=round(row[key], 4),
            metric_name=metric_name,
            dataset_args={"protocol": results.get("protocol")},
        )
        for key, (metric_type, metric_name) in METRIC_NAMES.items()
    ]


def widget_examples(model, examples) -> list[dict]:
    """Widget entries (query + passages) with this model's scores as its routes give them by default: sigmoid(logit)
    for a scorer whose CrossEncoder.predict and text-classification pipeline apply the sigmoid, the raw score for a
    raw-score scorer (RAW_SCORE_SCORERS: the residual's scores are MaxSim on the teacher's scale, tens, where the
    sigmoid is 1.0 for every passage and the page would show no ranking). Either way the order is the model's."""
    from configuration_lite import RAW_SCORE_SCORERS

    raw = model.config.scorer in RAW_SCORE_SCORERS
    widget = []
    for example in examples:
        ranked = model.rerank(example["query"], example["passages"])
        scores = {r["index"]: round(r["score"] if raw else 1 / (1 + math.exp(-r["score"])), 4) for r in ranked}
        widget.append(
            {
                "example_title": short_title(example["query"]),
                "source_sentence": example["query"],
                "sentences": example["passages"],
                "output": [{"label": f"passage {i}", "score": scores[i]} for i in range(len(example["passages"]))],
            }
        )
    return widget


def short_title(text: str, limit: int = 40) -> str:
    """`text` cut at a word boundary to at most `limit` characters (an ellipsis marks the cut).

    >>> short_title("Recursively searches directories for a regex pattern")
    'Recursively searches directories for a…'
    >>> short_title("a short query")
    'a short query'
    """
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return f"{cut}…"


def is_hub_id(name: str) -> bool:
    return bool(name) and name.count("/") <= 1 and not name.startswith((".", "/")) and not Path(name).exists()


def display_name(name: str) -> str:
    """A Hub id as is; a local path as its last two components (never this machine's absolute paths)."""
    return name if is_hub_id(name) else "/".join(Path(name).parts[-2:])


def training_description(summary: dict) -> str:
    args = summary.get("args", {})
    if not args:
        return "No training summary was found next to the weights."
    teacher = ""
    if args.get("loss") in ("margin_mse", "kl"):
        # Summaries before "teacher" was recorded name --teacher even when the rows carried the scores.
        source = summary.get("teacher", args.get("teacher"))
        teacher = (
            f" from {source}"
            if source == TEACHER_SCORES_IN_DATA
            else f" from the cross-encoder `{display_name(str(source))}`"
        )
    return (
        f"Trained with `train_accelerate.py` from the `{display_name(str(args.get('encoder')))}` encoder on "
        f"`{display_name(str(args.get('train_data')))}` "
        f"(loss `{args.get('loss')}`{teacher}; global batch {args.get('batch_size')}, AdamW lr {args.get('lr')}, "
        f"scorer lr {args.get('scorer_lr') or args.get('lr')}, {precision_description(summary)}, "
        f"{summary.get('num_processes', 1)} process(es)); the published weights are from step {summary.get('step')}."
    )


def precision_description(summary: dict) -> str:
    """The precision training ran in: what `auto` chose (recorded since it exists), else the flag as given.

    >>> precision_description({"precision": "no", "args": {"mixed_precision": "auto"}})
    'mixed precision no (float32; asked: auto)'
    >>> precision_description({"args": {"mixed_precision": "bf16"}})
    'mixed precision bf16'
    >>> history = [{"from_step": 0, "precision": "bf16"}, {"from_step": 2, "precision": "no"}]
    >>> precision_description({"precision": "no", "precision_history": history, "args": {"mixed_precision": "auto"}})
    'mixed precision bf16 from step 0, then no from step 2 (resumed on hardware of another kind; asked: auto)'
    """
    asked = summary.get("args", {}).get("mixed_precision")
    if "precision" not in summary:
        return f"mixed precision {asked}"
    history = summary.get("precision_history") or []
    if len(history) > 1:  # resumed in another precision (another CPU): every stretch is said
        stretches = ", then ".join(f"{part['precision']} from step {part['from_step']}" for part in history)
        return f"mixed precision {stretches} (resumed on hardware of another kind; asked: {asked})"
    chosen = summary["precision"]
    detail = "float32; " if chosen == "no" else ""
    return f"mixed precision {chosen} ({detail}asked: {asked})"


def render_card(
    model,
    repo_id: str,
    results: dict | None,
    model_key: str | None,
    widget: list[dict],
    summary: dict,
    base_model: str | None = None,
    dataset_name: str | None = None,
    dataset_url: str | None = None,
    provenance: dict | None = None,
) -> ModelCard:
    from configuration_lite import RAW_SCORE_SCORERS

    config = model.config
    encoder = base_model or summary.get("args", {}).get("encoder") or config.encoder_config.model_type
    train_data = str(summary.get("args", {}).get("train_data", ""))
    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="text-ranking",
        tags=["reranker", "late-interaction", "lite", "custom_code"],
        base_model=encoder if is_hub_id(encoder) else None,
        datasets=[train_data] if is_hub_id(train_data) else None,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results(results, model_key) if results else None,
        widget=widget,
    )
    data = (results or {}).get("data", {})
    spec = str(data.get("spec", ""))
    dataset = spec if is_hub_id(spec) else (dataset_name or Path(spec).name or "local data")
    query, passages = (
        (widget[0]["source_sentence"], widget[0]["sentences"])
        if widget
        else ("a query", ["passage one", "passage two"])
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(CARD_TEMPLATE),
        repo_id=repo_id,
        model_name=repo_id.split("/")[-1],
        encoder=display_name(encoder),
        scorer=config.scorer,
        query_max_length=config.query_max_length,
        doc_max_length=config.doc_max_length,
        row_hidden_size=config.row_hidden_size,
        col_hidden_size=config.col_hidden_size,
        projection_dim=config.projection_dim,
        doc_stored_tokens=config.doc_stored_tokens,
        query_token_weights=config.query_token_weights,
        raw_scores=config.scorer in RAW_SCORE_SCORERS,
        # Python literals (a JSON string is one), one passage per line: a quote or backslash in an example must not
        # break the usage code, and a list of long passages on one line cannot be read.
        example_query=json.dumps(query, ensure_ascii=False),
        example_passages="\n".join(f"    {json.dumps(passage, ensure_ascii=False)}," for passage in passages),
        results_table=results_table(results["models"], data.get("candidate_depth", "k"), with_queries=False)
        if results
        else None,
        protocol=(results or {}).get("protocol"),
        num_queries=data.get("num_queries"),
        candidate_depth=data.get("candidate_depth"),
        results_caveat=RESULTS_CAVEAT,
        training_description=training_description(summary),
        dataset=dataset,
        dataset_url=dataset_url,
        dataset_is_hub=is_hub_id(spec),
        transformers_versions=", ".join(TESTED_TRANSFORMERS),
        oldest_transformers=TESTED_TRANSFORMERS[0],
        sentence_transformers_versions=", ".join(TESTED_SENTENCE_TRANSFORMERS),
        provenance=provenance,
    )


RESULTS_CAVEAT = (
    "These figures hold for this protocol and candidate set only: re-ranking cannot recover a relevant passage the "
    "first stage missed (Recall@depth caps every row), and numbers from other protocols (full-corpus MS MARCO dev, "
    "BEIR) are not comparable."
)


class StageDirError(ValueError):
    """The stage folder holds something that is not a previous stage: it is never emptied or written into."""


STAGE_MANIFEST = ".lite-stage.json"  # what stage_model wrote, file by file; never uploaded


def stage_manifest(stage_dir: Path) -> dict:
    files = sorted(p for p in stage_dir.rglob("*") if p.is_file() and p.name != STAGE_MANIFEST)
    return {
        "format": "lite-stage/1",
        "files": {
            p.relative_to(stage_dir).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in files
        },
    }


def check_stage_dir(stage_dir, model_dir=None) -> Path:
    """`stage_dir` if it may be (re)written: absent, empty, or exactly a previous stage, file by file (every file
    listed in its .lite-stage.json with the size and sha256 it was written with, and nothing else); never the model
    folder, a folder above it, or a folder holding anyone's other files."""
    stage_dir = Path(stage_dir).resolve()
    if model_dir is not None:
        model_dir = Path(model_dir).resolve()
        if stage_dir == model_dir or stage_dir in model_dir.parents:
            raise StageDirError(f"--stage-dir {stage_dir} is the model folder or holds it; stage into a new folder")
    if not stage_dir.exists():
        return stage_dir
    if not stage_dir.is_dir():
        raise StageDirError(f"--stage-dir {stage_dir} is a file; stage into a new folder")
    if not any(stage_dir.iterdir()):
        return stage_dir
    refuse = f"--stage-dir {stage_dir} is not a previous stage of push_to_hub.py"
    manifest_path = stage_dir / STAGE_MANIFEST
    if not manifest_path.is_file():
        raise StageDirError(f"{refuse} (no {STAGE_MANIFEST}); nothing was deleted: stage into a new or empty folder")
    try:
        written = json.loads(manifest_path.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise StageDirError(f"{refuse} ({manifest_path} does not read); nothing was deleted") from None
    present = {p.relative_to(stage_dir).as_posix() for p in stage_dir.rglob("*") if p.name != STAGE_MANIFEST}
    folders = {parent.as_posix() for name in written for parent in Path(name).parents if parent != Path(".")}
    others = sorted(present - set(written) - folders)
    changed = sorted(
        name
        for name, info in written.items()
        if name in present
        and ((stage_dir / name).stat().st_size != info["size"] or file_sha256(stage_dir / name) != info["sha256"])
    )
    if others or changed:
        what = f"holds {others[:5]}, which it did not write" if others else f"has {changed[:5]} changed since staging"
        raise StageDirError(f"{refuse}: it {what}; nothing was deleted: stage into a new or empty folder")
    return stage_dir


# config.json keys transformers itself writes besides a LiteConfig's own fields
SAVED_CONFIG_KEYS = {"architectures", "transformers_version", "tokenizer_class", "torch_dtype", "dtype", "auto_map"}


# keys that earlier transformers releases wrote into the encoder configs LITE is built on (all-MiniLM-L6-v2's has the
# first two): known, harmless, and still read by 4.x
LEGACY_ENCODER_CONFIG_KEYS = {"gradient_checkpointing", "position_embedding_type", "use_cache", "classifier_dropout"}
# config.json's `sentence_transformers` object: what LiteConfig writes there for raw-score scorers
SENTENCE_TRANSFORMERS_KEYS = {"activation_fn"}


def init_parameters(cls) -> set[str]:
    """The named parameters of the `__init__` of `cls` and of every class it derives from."""
    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            try:
                names |= set(inspect.signature(vars(klass)["__init__"]).parameters)
            except (TypeError, ValueError):  # a builtin's __init__
                continue
    return names - {"self", "args", "kwargs"}


def refuse_unknown_keys(values: dict, known: set[str], where: str):
    """Keys a class does not write (an `api_key` someone left in a file) are refused, naming the file and keys: they
    would be published with the model."""
    unknown = sorted(set(values) - known)
    if unknown:
        raise StageError(
            f"{where} holds key(s) {unknown} that its class does not write; they would be published with the model: "
            "remove them from the model folder's file"
        )


def publishable_config(config):
    """The config as it may be published: `auto_map` names this package's classes and nothing else (a folder's own
    auto_map is not trusted: it could send CrossEncoder or pipeline users to code in another repository), and keys
    a LiteConfig does not have (an `api_key` someone left there) are refused, not published — at the top level and
    inside the objects it holds (the encoder's config, `sentence_transformers`)."""
    from configuration_lite import LITE_AUTO_MAP, LiteConfig

    values = config.to_dict()
    known = set(LiteConfig(encoder_config=config.encoder_config.to_dict(), scorer=config.scorer).to_dict())
    unknown = sorted(set(values) - known - SAVED_CONFIG_KEYS)
    if unknown:
        raise StageError(
            f"config.json holds key(s) {unknown} that a LITE config does not have; they would be published with the "
            "model: remove them from the model folder's config.json"
        )
    encoder_class = type(config.encoder_config)
    known_encoder = set(encoder_class().to_dict()) | init_parameters(encoder_class) | LEGACY_ENCODER_CONFIG_KEYS
    refuse_unknown_keys(
        values["encoder_config"],
        known_encoder | SAVED_CONFIG_KEYS,
        f"config.json's encoder_config ({encoder_class.__name__})",
    )
    if isinstance(values.get("sentence_transformers"), dict):
        refuse_unknown_keys(
            values["sentence_transformers"], SENTENCE_TRANSFORMERS_KEYS, "config.json's sentence_transformers"
        )
    config.auto_map = dict(LITE_AUTO_MAP)
    if getattr(config.encoder_config, "auto_map", None) is not None:
        del config.encoder_config.auto_map  # the encoder is built from its model_type, never from remote code
    return config


# tokenizer_config.json keys transformers' tokenizer classes write besides their own `__init__` parameters: the base
# class's settings and special tokens (4.x and 5.x), and the BERT WordPiece settings 4.x tokenizers took
TOKENIZER_CONFIG_KEYS = {
    *("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"),
    *("additional_special_tokens", "extra_special_tokens", "added_tokens_decoder", "special_tokens_map_file"),
    *("model_max_length", "padding_side", "truncation_side", "model_input_names", "clean_up_tokenization_spaces"),
    *("split_special_tokens", "tokenizer_class", "name_or_path", "backend", "processor_class"),
    *("max_length", "stride", "truncation_strategy", "pad_to_multiple_of", "pad_token_type_id"),
    *(
        "do_lower_case",
        "do_basic_tokenize",
        "never_split",
        "tokenize_chinese_chars",
        "strip_accents",
        "wordpieces_prefix",
    ),
    *TOKENIZER_LOCAL_KEYS,
}


def publishable_tokenizer(tokenizer):
    """Refuse a tokenizer whose tokenizer_config.json (or special_tokens_map.json) would carry keys its class does not
    write (an `api_key`; an `auto_map` sending users to remote code): the class's `__init__` parameters and
    TOKENIZER_CONFIG_KEYS. Checked on a copy saved aside, before the stage is touched."""
    known = init_parameters(type(tokenizer)) | TOKENIZER_CONFIG_KEYS
    with tempfile.TemporaryDirectory(prefix="lite-tokenizer-") as work:
        tokenizer.save_pretrained(work)
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            path = Path(work) / name
            if path.is_file():
                refuse_unknown_keys(json.loads(path.read_text()), known, f"{name} ({type(tokenizer).__name__})")


def stage_model(
    model,
    stage_dir,
    repo_id: str,
    results: dict | None = None,
    model_key: str | None = None,
    summary: dict | None = None,
    examples=None,
    base_model: str | None = None,
    dataset_name: str | None = None,
    dataset_url: str | None = None,
    weights_dtype=None,
    extra_files: dict | None = None,
    provenance: dict | None = None,
) -> Path:
    """Write the Hub folder: weights, config (with auto_map), both code files, tokenizer, handler.py,
    requirements.txt, README.md. The folder must be new, empty or a previous stage (`check_stage_dir`).
    `weights_dtype` (e.g. torch.float16) stores the floating-point weights in that dtype while config.json keeps the
    model's float32, so every route loads and computes in float32 (the values are the rounded ones: pass the model
    already rounded, so that the card's widget and the validation see what users get). `extra_files` ({name: path})
    are copied in (a provenance record, a dev run); `provenance` adds its section to the card."""
    stage_dir = check_stage_dir(stage_dir)
    publishable_config(model.config)  # refused before the stage is touched
    publishable_tokenizer(model.tokenizer)
    if stage_dir.exists():
        shutil.rmtree(stage_dir)  # a previous stage: only files this function writes
    stage_dir.mkdir(parents=True)
    tokenizer = model.tokenizer
    # Pairs for the cross-encoder convention must not be cut to a short default before the model splits them.
    tokenizer.model_max_length = model.config.encoder_config.max_position_embeddings
    model.save_pretrained(stage_dir)  # weights, config.json, code files, tokenizer
    if weights_dtype is not None:
        store_weights_as(stage_dir / "model.safetensors", weights_dtype)
    for name, path in (extra_files or {}).items():
        shutil.copy(path, stage_dir / name)
    tokenizer_config = stage_dir / "tokenizer_config.json"
    if tokenizer_config.is_file():
        values = json.loads(tokenizer_config.read_text())
        tokenizer_config.write_text(
            json.dumps({k: v for k, v in values.items() if k not in TOKENIZER_LOCAL_KEYS}, indent=2) + "\n"
        )
    shutil.copy(HANDLER, stage_dir / "handler.py")
    (stage_dir / "requirements.txt").write_text(REQUIREMENTS)
    examples = examples if examples is not None else json.loads(WIDGET_EXAMPLES.read_text())
    card = render_card(
        model,
        repo_id,
        results,
        model_key,
        widget_examples(model, examples),
        summary or {},
        base_model,
        dataset_name,
        dataset_url,
        provenance,
    )
    card.save(stage_dir / "README.md")
    (stage_dir / STAGE_MANIFEST).write_text(json.dumps(stage_manifest(stage_dir), indent=2) + "\n")
    return stage_dir


def store_weights_as(path: Path, dtype):
    """Rewrite a safetensors file with its floating-point tensors in `dtype` (its metadata kept)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    stored = {name: t.to(dtype) if torch.is_floating_point(t) else t for name, t in tensors.items()}
    save_file(stored, str(path), metadata=metadata)


HUB_ROUTES = ROOT / "scripts" / "hub_routes.py"


def run_hub_routes(python, stage: Path, pairs, work_dir: Path) -> dict:
    """scripts/hub_routes.py in a fresh, offline process outside this checkout (every route the card advertises,
    as a user runs it); its report."""
    work_dir = Path(work_dir)
    report_path = work_dir / f"report-{os.getpid()}-{abs(hash((str(python), str(stage))))}.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [str(python), str(HUB_ROUTES), str(Path(stage).resolve()), json.dumps(pairs), str(report_path)],
        cwd=work_dir,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
    )
    if result.returncode != 0 or not report_path.is_file():
        return {"runner": {"error": f"hub_routes.py exited {result.returncode}: {result.stderr[-2000:]}"}}
    report = json.loads(report_path.read_text())
    report_path.unlink()
    return report


def route_problems(report: dict, pairs, expected: list[float], scorer: str, tolerance: float) -> list[str]:
    """What a route got wrong: an error, a missing route, or scores off the source model's (raw or sigmoid)."""
    found = [
        f"{name}: {value['error']}" for name, value in report.items() if isinstance(value, dict) and "error" in value
    ]
    if found:
        return found
    from configuration_lite import RAW_SCORE_SCORERS

    # CrossEncoder and the pipeline apply a sigmoid by default, except where the config asks for raw scores
    sigmoid = expected if scorer in RAW_SCORE_SCORERS else [1 / (1 + math.exp(-x)) for x in expected]
    same_query = [i for i, (q, _) in enumerate(pairs) if q == pairs[0][0]]
    order = sorted(same_query, key=lambda i: -expected[i])

    def close(name, got, want):
        worst = max(abs(a - b) for a, b in zip(got, want)) if len(got) == len(want) else math.inf
        if worst > tolerance:
            found.append(f"{name}: max |Δ| {worst:.2e} against the source model")

    config = report["AutoConfig"]
    if config["model_type"] != "lite_reranker" or config["scorer"] != scorer:
        found.append(f"AutoConfig: got {config['model_type']} / {config['scorer']}")
    if not report["AutoModel"]["module"].startswith("transformers_modules."):
        found.append("AutoModel: did not run the staged code")
    close("AutoModel.compute_score", report["AutoModel"]["compute_score"], expected)
    close("AutoModel.rerank", [s for _, s in report["AutoModel"]["rerank"]], [expected[i] for i in order])
    if [i for i, _ in report["AutoModel"]["rerank"]] != order:
        found.append("AutoModel.rerank: wrong order")
    close("AutoModelForSequenceClassification", report["AutoModelForSequenceClassification"]["logits"], expected)
    close("CrossEncoder.predict (sigmoid)", report["CrossEncoder"]["predict_default"], sigmoid)
    if [i for i, _ in report["CrossEncoder"]["rank"]] != order:
        found.append("CrossEncoder.rank: wrong order")
    close("pipeline (sigmoid)", report["pipeline"]["default"], sigmoid)
    close("pipeline (function_to_apply='none')", report["pipeline"]["raw"], expected)
    close("handler pairs", report["handler"]["pairs"], expected)
    if [i for i, _, _ in report["handler"]["ranked"]] != order or not all(
        ok for *_, ok in report["handler"]["ranked"]
    ):
        found.append("handler ranking: wrong order or texts")
    tokenizer = report["AutoTokenizer"]
    if tokenizer["ids"] != report["AutoTokenizer (trust_remote_code=False)"]["ids"]:
        found.append("AutoTokenizer: other token ids than the standard tokenizer")
    if tokenizer["prompted"] and report["versions"]["transformers"].startswith("4."):
        found.append("AutoTokenizer: asked to run custom code")
    return found


def validate_stage(stage_dir, pairs, expected_scores, scorer: str, tolerance: float = 1e-4) -> dict:
    """Every route the card advertises (AutoModel, sequence classification, CrossEncoder, the pipeline, the
    handler), each loaded from the stage in a fresh process, offline and outside this checkout, must reproduce the
    source model's scores; the routes' report is returned."""
    stage_dir = Path(stage_dir)
    required = [
        "model.safetensors",
        "config.json",
        "modeling_lite.py",
        "configuration_lite.py",
        "handler.py",
        "README.md",
        "tokenizer_config.json",
        "requirements.txt",
    ]
    missing = [name for name in required if not (stage_dir / name).is_file()]
    if missing:
        raise StageError(f"{stage_dir}: missing {missing}")
    with tempfile.TemporaryDirectory(prefix="lite-routes-") as work_dir:
        report = run_hub_routes(sys.executable, stage_dir, pairs, Path(work_dir))
    found = route_problems(report, pairs, expected_scores, scorer, tolerance)
    if found:
        raise StageError(f"{stage_dir}: a route the model card advertises fails: " + "; ".join(found)[:4000])
    return report
