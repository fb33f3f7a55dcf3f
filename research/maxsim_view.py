"""MaxSim on a model's own embeddings: is the learned scorer or the encoder the weak link?

    python research/maxsim_view.py runs/debian-distill/lite-500/best runs/diag/lite-500.maxsim
    python research/maxsim_view.py --encoder ENCODER --projection-dim 128 --seed 42 runs/diag/random-projection-128
    python research/maxsim_view.py --encoder ENCODER --projection-dim 128 --projection-init pca \
        --train-data runs/bm25-negatives/listwise.train.jsonl.gz runs/diag/pca-projection-128

Writes a copy of a trained LITE or Small-LITE model whose scorer is MaxSim: the encoder and any Small-LITE layers
(projection, document compressor) are kept, the learned scorer's weights are dropped. `eval_rerank.py --model
NAME=OUTPUT` then scores exactly the embeddings the learned scorer read, with MaxSim. With --encoder instead of a
model: a fresh model from a pretrained encoder with freshly initialised Small-LITE layers (--seed), which measures
what an untrained projection alone costs; with --projection-init pca the projection is the encoder's principal
directions over training positives (`train_accelerate.py --projection-init pca`'s start). OUTPUT must not exist.
"""

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lite_rerank.projection import init_projection_from_training_rows  # noqa: E402
from lite_rerank.triplets import load_local_triplets  # noqa: E402
from modeling_lite import LiteModel  # noqa: E402


def maxsim_view(model: LiteModel) -> LiteModel:
    """The same encoder and Small-LITE layers, scored by MaxSim."""
    config = copy.deepcopy(model.config)
    config.scorer = "maxsim"
    view = LiteModel(config)
    kept = {key: value for key, value in model.state_dict().items() if not key.startswith("lite_scorer.")}
    view.load_state_dict(kept, strict=True)  # strict: every kept weight has its place, and nothing is left fresh
    view.tokenizer = model.tokenizer
    return view.eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="a trained LITE / Small-LITE model folder")
    parser.add_argument("output", help="folder to write (must not exist)")
    parser.add_argument("--encoder", help="instead of a model: a pretrained encoder, with fresh Small-LITE layers")
    parser.add_argument("--projection-dim", type=int, default=None, help="with --encoder: the projection's size")
    parser.add_argument("--seed", type=int, default=42, help="with --encoder: seed of the fresh layers")
    parser.add_argument("--projection-init", choices=["random", "pca"], default="random", help="with --encoder")
    parser.add_argument("--train-data", default=None, help="with --projection-init pca: the training rows")
    args = parser.parse_args(argv)
    if (args.model is None) == (args.encoder is None):
        parser.error("give a trained model folder or --encoder, not both")
    if args.model is None and args.projection_dim is None:
        parser.error("--encoder without --projection-dim is plain zero-shot MaxSim: nothing to measure")
    if (args.projection_init == "pca") != (args.train_data is not None):
        parser.error("--projection-init pca and --train-data go together (the principal directions of its positives)")
    output = Path(args.output)
    if output.exists():
        parser.error(f"{output} exists; choose a new folder")
    if args.model is not None:
        model = LiteModel.from_pretrained(args.model)
    else:
        torch.manual_seed(args.seed)
        model = LiteModel.from_encoder(args.encoder, scorer="maxsim", projection_dim=args.projection_dim)
        if args.projection_init == "pca":
            print(
                init_projection_from_training_rows(
                    model, model.tokenizer, load_local_triplets(args.train_data), args.seed
                )
            )
    view = model if model.config.scorer == "maxsim" else maxsim_view(model)  # --encoder builds MaxSim already
    view.save_pretrained(output)
    print(f"MaxSim on the embeddings of {args.model or args.encoder}: {output}")


if __name__ == "__main__":
    main()
