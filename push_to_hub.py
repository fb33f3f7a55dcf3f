"""Publish a trained LITE model to the Hugging Face Hub: stage, validate, upload.

    python push_to_hub.py --model-dir runs/lite/best --repo-id USER/lite-minilm --results results/debian-dev.json
    python push_to_hub.py --model-dir runs/lite/best --repo-id USER/lite-minilm --dry-run   # stage + validate only

1. Stages a self-contained Hub folder: model.safetensors, config.json (auto_map), configuration_lite.py,
   modeling_lite.py, the tokenizer (model_max_length set), handler.py, requirements.txt and README.md rendered from
   model_card/. The stage folder must be new, empty or a previous stage: nothing else is ever deleted.
2. Validates it: a fresh, offline process loads it with trust_remote_code=True and must reproduce the source
   model's scores on the widget examples. A broken stage is never uploaded.
3. Uploads it in one commit (HfApi.create_repo(exist_ok=True) + upload_folder); the token comes from HF_TOKEN or the
   saved login (`hf auth login`).
"""

import argparse
import json
import re
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, get_token

from lite_rerank.publishing import (
    STAGE_MANIFEST,
    WIDGET_EXAMPLES,
    StageDirError,
    StageError,
    check_stage_dir,
    load_results,
    stage_manifest,
    stage_model,
    validate_stage,
)
from lite_rerank.utils import file_sha256
from modeling_lite import LiteModel


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="a folder written by save_pretrained (e.g. runs/lite/best)")
    parser.add_argument("--repo-id", required=True, help="USER/NAME on the Hub")
    parser.add_argument("--results", default=None, help="eval_rerank.py --output JSON for the card's model-index")
    parser.add_argument(
        "--results-model",
        default=None,
        help="the row of --results that is this model (default: the only non-first-stage row, or "
        "the model dir's name)",
    )
    parser.add_argument(
        "--base-model",
        default=None,
        help="Hub id of the encoder the model started from, for the card (default: the training "
        "summary's --encoder when it is a Hub id)",
    )
    parser.add_argument(
        "--dataset-name",
        default=None,
        help="how the card names the evaluation data when it is not a Hub dataset (default: its folder)",
    )
    parser.add_argument("--dataset-url", default=None, help="link to the evaluation data's provenance, for the card")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--revision", default=None, help="branch to commit to (created if missing)")
    parser.add_argument("--commit-message", default="Upload LITE re-ranker")
    parser.add_argument(
        "--stage-dir",
        default=None,
        help="where to stage: a new or empty folder, or a previous stage (default: a temporary folder)",
    )
    parser.add_argument("--dry-run", action="store_true", help="stage and validate, then print what would be uploaded")
    return parser.parse_args(argv)


def pick_results_row(results: dict, wanted: str | None, model_dir: Path) -> str:
    rows = [name for name in results["models"] if name != "first-stage"]
    if wanted:
        if wanted not in results["models"]:
            raise SystemExit(f"--results-model {wanted!r} is not in the results ({sorted(results['models'])})")
        return wanted
    if len(rows) == 1:
        return rows[0]
    for candidate in (model_dir.name, model_dir.parent.name):
        if candidate in rows:
            return candidate
    raise SystemExit(f"the results hold several models {rows}; pick this model's row with --results-model")


def check_results_are_this_models(results: dict, model_key: str, results_path, model_dir: Path):
    """The card may only publish figures measured with these weights: the results row must record (eval_rerank.py
    does) the sha256 of the model.safetensors it scored, and it must be --model-dir's."""
    files = (results.get("model_files") or {}).get(model_key) or {}
    recorded = files.get("weights_sha256")
    if recorded is None:
        raise SystemExit(
            f"--results {results_path}: row {model_key!r} does not record which weights it scored (written by an "
            f"older eval_rerank.py?); evaluate {model_dir} again and pass that results file"
        )
    if recorded != file_sha256(model_dir / "model.safetensors"):
        raise SystemExit(
            f"--results {results_path}: row {model_key!r} was measured with other weights ({files.get('path')}) than "
            f"--model-dir {model_dir}; pass the results of this model (or --results-model for its row)"
        )


REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def main(argv=None):
    args = parse_args(argv)
    # Every input is checked before anything is written or loaded.
    if not REPO_ID.fullmatch(args.repo_id) or "--" in args.repo_id or ".." in args.repo_id or len(args.repo_id) > 96:
        raise SystemExit(
            f"--repo-id {args.repo_id!r} is not a Hub model id: USER/NAME with letters, digits, '-', '_' and '.'"
        )
    model_dir = Path(args.model_dir)
    if not (model_dir / "model.safetensors").is_file() or not (model_dir / "config.json").is_file():
        raise SystemExit(f"{model_dir}: no model.safetensors / config.json; point --model-dir at a saved model")
    results = model_key = None
    if args.results:
        try:
            results = load_results(args.results)
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(str(error)) from None
        model_key = pick_results_row(results, args.results_model, model_dir)
        check_results_are_this_models(results, model_key, args.results, model_dir)
    token = None
    if not args.dry_run:
        token = get_token()  # HF_TOKEN, or the token saved by `hf auth login`
        if not token:
            raise SystemExit("no Hugging Face token: set HF_TOKEN or run `hf auth login` (or use --dry-run)")
    try:
        stage_dir = check_stage_dir(args.stage_dir, model_dir) if args.stage_dir else None
    except StageDirError as error:
        raise SystemExit(str(error)) from None
    if stage_dir is None:  # a temporary stage: this command made it, so it removes it when done
        with tempfile.TemporaryDirectory(prefix="lite-stage-") as folder:
            return publish(args, model_dir, Path(folder) / "stage", results, model_key, token)
    return publish(args, model_dir, stage_dir, results, model_key, token)


def publish(args, model_dir: Path, stage_dir: Path, results, model_key, token):
    """Stage, validate, then upload (or, with --dry-run, say what would be uploaded)."""
    try:
        model = LiteModel.from_pretrained(model_dir).eval()
        model.tokenizer  # noqa: B018 (loaded now, so that a folder without one fails here, by name)
    except (OSError, ValueError) as error:
        raise SystemExit(f"{model_dir}: cannot load the model: {error}") from None
    summary_path = model_dir / "training_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    examples = json.loads(WIDGET_EXAMPLES.read_text())
    try:
        stage_model(
            model,
            stage_dir,
            args.repo_id,
            results,
            model_key,
            summary,
            examples,
            args.base_model,
            args.dataset_name,
            args.dataset_url,
        )
    except StageError as error:
        raise SystemExit(f"{model_dir}: cannot stage it, nothing uploaded: {error}") from None
    pairs = [[example["query"], passage] for example in examples for passage in example["passages"]]
    try:
        validate_stage(stage_dir, pairs, model.compute_score(pairs), model.config.scorer)
    except StageError as error:
        raise SystemExit(f"stage validation failed, nothing uploaded: {error}") from None

    files = sorted(stage_manifest(stage_dir)["files"])
    print(f"staged and validated {stage_dir}:")
    for name in files:
        print(f"  {name}  ({(stage_dir / name).stat().st_size:,} bytes)")
    if args.dry_run:
        print(
            f"dry run: would upload {len(files)} files to {args.repo_id}"
            f"{f' (branch {args.revision})' if args.revision else ''}"
        )
        return stage_dir
    api = HfApi(token=token)
    try:
        api.create_repo(args.repo_id, private=args.private, exist_ok=True, repo_type="model")
        if args.revision:
            api.create_branch(args.repo_id, branch=args.revision, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(stage_dir),
            repo_id=args.repo_id,
            revision=args.revision,
            commit_message=args.commit_message,
            repo_type="model",
            ignore_patterns=[STAGE_MANIFEST],
        )
    except Exception as error:  # offline, bad token, no permission: say so instead of a traceback
        raise SystemExit(f"upload to {args.repo_id} failed: {type(error).__name__}: {error}") from None
    print(f"uploaded: {getattr(commit, 'commit_url', commit)}")
    return stage_dir


if __name__ == "__main__":
    main()
