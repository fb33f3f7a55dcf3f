"""Stage a trained LITE model as a self-contained Hub folder, render its model card, and validate the stage."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

ROOT = Path(__file__).resolve().parents[1]
CARD_TEMPLATE = ROOT / "model_card" / "template.md"
WIDGET_EXAMPLES = ROOT / "model_card" / "widget_examples.json"
HANDLER = ROOT / "handler.py"
METRIC_NAMES = {"mrr@10": ("mrr_at_10", "MRR@10"), "ndcg@10": ("ndcg_at_10", "nDCG@10")}


class StageError(RuntimeError):
    """The staged folder is incomplete or does not reproduce the source model; nothing is uploaded."""


def load_results(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} not found (write it with eval_rerank.py --output)")
    results = json.loads(path.read_text())
    if not isinstance(results.get("models"), dict) or not results["models"]:
        raise ValueError(f"{path}: no 'models' section; expected the JSON written by eval_rerank.py --output")
    return results


def results_table(results: dict) -> str:
    depth = results.get("data", {}).get("candidate_depth", "k")
    lines = [f"| system | MRR@10 | nDCG@10 | Recall@10 | Recall@{depth} |", "|---|---|---|---|---|"]
    for name, m in results["models"].items():
        lines.append(f"| {name} | {m['mrr@10']:.4f} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['recall@k']:.4f} |")
    return "\n".join(lines)


def eval_results(results: dict, model_key: str) -> list[EvalResult]:
    """model-index entries of the published model's row of the results JSON."""
    data = results.get("data", {})
    spec = str(data.get("spec", "unknown"))
    dataset = spec if is_hub_id(spec) else Path(spec).name
    row = results["models"][model_key]
    return [
        EvalResult(task_type="text-ranking", dataset_type=dataset, dataset_name=dataset,
                   dataset_split=data.get("split") or "dev", metric_type=metric_type, metric_value=round(row[key], 4),
                   metric_name=metric_name, dataset_args={"protocol": results.get("protocol")})  # fmt: skip
        for key, (metric_type, metric_name) in METRIC_NAMES.items()
    ]


def widget_examples(model, examples) -> list[dict]:
    """Widget entries (query + passages) with the scores this model gives them now."""
    widget = []
    for example in examples:
        ranked = model.rerank(example["query"], example["passages"])
        scores = {r["index"]: round(r["score"], 4) for r in ranked}
        widget.append({
            "example_title": example["query"][:40],
            "source_sentence": example["query"],
            "sentences": example["passages"],
            "output": [{"label": f"passage {i}", "score": scores[i]} for i in range(len(example["passages"]))],
        })  # fmt: skip
    return widget


def is_hub_id(name: str) -> bool:
    return bool(name) and name.count("/") <= 1 and not name.startswith((".", "/")) and not Path(name).exists()


def display_name(name: str) -> str:
    """A Hub id as is; a local path as its last two components (never this machine's absolute paths)."""
    return name if is_hub_id(name) else "/".join(Path(name).parts[-2:])


def training_description(summary: dict) -> str:
    args = summary.get("args", {})
    if not args:
        return "No training summary was found next to the weights."
    teacher = f" from the cross-encoder `{args.get('teacher')}`" if args.get("loss") in ("margin_mse", "kl") else ""
    return (
        f"Trained with `train_accelerate.py` from the `{display_name(str(args.get('encoder')))}` encoder on "
        f"`{display_name(str(args.get('train_data')))}` "
        f"(loss `{args.get('loss')}`{teacher}; global batch {args.get('batch_size')}, AdamW lr {args.get('lr')}, "
        f"scorer lr {args.get('scorer_lr') or args.get('lr')}, mixed precision {args.get('mixed_precision')}, "
        f"{summary.get('num_processes', 1)} process(es)); the published weights are from step {summary.get('step')}."
    )


def render_card(model, repo_id: str, results: dict | None, model_key: str | None, widget: list[dict],
                summary: dict, base_model: str | None = None) -> ModelCard:  # fmt: skip
    config = model.config
    encoder = base_model or summary.get("args", {}).get("encoder") or config.encoder_config.model_type
    train_data = str(summary.get("args", {}).get("train_data", ""))
    card_data = ModelCardData(
        language="en", license="apache-2.0", library_name="transformers", pipeline_tag="text-ranking",
        tags=["reranker", "late-interaction", "lite", "custom_code"],
        base_model=encoder if is_hub_id(encoder) else None,
        datasets=[train_data] if is_hub_id(train_data) else None,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results(results, model_key) if results else None,
        widget=widget,
    )  # fmt: skip
    data = (results or {}).get("data", {})
    example = widget[0]["sentences"] if widget else ["passage one", "passage two"]
    return ModelCard.from_template(
        card_data, template_path=str(CARD_TEMPLATE), repo_id=repo_id, model_name=repo_id.split("/")[-1],
        encoder=display_name(encoder), scorer=config.scorer, query_max_length=config.query_max_length,
        doc_max_length=config.doc_max_length, row_hidden_size=config.row_hidden_size,
        col_hidden_size=config.col_hidden_size, projection_dim=config.projection_dim,
        doc_stored_tokens=config.doc_stored_tokens,
        example_query=widget[0]["source_sentence"] if widget else "a query",
        example_passages=json.dumps(example), example_passages_first=json.dumps(example[0]),
        results_table=results_table(results) if results else None, protocol=(results or {}).get("protocol"),
        num_queries=data.get("num_queries"), candidate_depth=data.get("candidate_depth"),
        results_caveat=RESULTS_CAVEAT, training_description=training_description(summary),
    )  # fmt: skip


RESULTS_CAVEAT = (
    "These figures hold for this protocol and candidate set only: re-ranking cannot recover a relevant passage the "
    "first stage missed (Recall@depth caps every row), and numbers from other protocols (full-corpus MS MARCO dev, "
    "BEIR) are not comparable."
)


def stage_model(model, stage_dir, repo_id: str, results: dict | None = None, model_key: str | None = None,
                summary: dict | None = None, examples=None, base_model: str | None = None) -> Path:  # fmt: skip
    """Write the Hub folder: weights, config (with auto_map), both code files, tokenizer, handler.py, README.md."""
    stage_dir = Path(stage_dir)
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    tokenizer = model.tokenizer
    # Pairs for the cross-encoder convention must not be cut to a short default before the model splits them.
    tokenizer.model_max_length = model.config.encoder_config.max_position_embeddings
    model.save_pretrained(stage_dir)  # weights, config.json, code files, tokenizer
    shutil.copy(HANDLER, stage_dir / "handler.py")
    examples = examples if examples is not None else json.loads(WIDGET_EXAMPLES.read_text())
    card = render_card(model, repo_id, results, model_key, widget_examples(model, examples), summary or {}, base_model)
    card.save(stage_dir / "README.md")
    return stage_dir


VALIDATE = r"""
import json, sys
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
print(json.dumps(model.compute_score(json.loads(sys.argv[2]))))
"""


def validate_stage(stage_dir, pairs, expected_scores, tolerance: float = 1e-4):
    """Load the stage in a fresh process (offline, outside this checkout) and compare its scores with the source's."""
    stage_dir = Path(stage_dir)
    required = ["model.safetensors", "config.json", "modeling_lite.py", "configuration_lite.py", "handler.py",
                "README.md", "tokenizer_config.json"]  # fmt: skip
    missing = [name for name in required if not (stage_dir / name).is_file()]
    if missing:
        raise StageError(f"{stage_dir}: missing {missing}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", VALIDATE, str(stage_dir.resolve()), json.dumps(pairs)],
                            cwd=stage_dir.parent, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=600)  # fmt: skip
    if result.returncode != 0:
        raise StageError(f"{stage_dir} does not load with trust_remote_code=True:\n{result.stderr[-3000:]}")
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    worst = max(abs(a - b) for a, b in zip(scores, expected_scores))
    if len(scores) != len(expected_scores) or worst > tolerance:
        raise StageError(f"{stage_dir}: staged model scores differ from the source model's (max |Δ| = {worst:.2e})")
    return scores
