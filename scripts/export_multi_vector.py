"""A LITE model's encoder side as a sentence-transformers MultiVectorEncoder folder, for the first stage (issue 37).

    python scripts/export_multi_vector.py outputs/lite/best --output-dir outputs/lite-first-stage

The folder ([Transformer, Dense, MultiVectorMask, Normalize], with the model's prompts, query expansion, skiplist and
lengths) loads with `MultiVectorEncoder(path)` and encodes as `LiteModel.encode_queries` / `encode_documents` do;
its MaxSim ranks candidates (or a PLAID / brute-force index) and LITE re-ranks them, from the same vectors
(`lite_rerank.multi_vector.score_multi_vector_embeddings`). The export is checked before the command returns: both
sides encode a few texts and must agree within 1e-5. Small-LITE's document compressor has no multi-vector form and is
refused. Needs the multi-vector extra.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lite_rerank.multi_vector import MultiVectorError, export_multi_vector_encoder  # noqa: E402
from lite_rerank.utils import new_folder_problem, refuse_outputs_over_inputs  # noqa: E402
from modeling_lite import LiteModel  # noqa: E402

CHECK_TEXTS = [
    "how do i search files recursively",
    "grep: searches (recursively) through directories for lines matching a pattern, like sed & awk.",
    "x",
]


@torch.inference_mode()
def check_export(model, encoder) -> float:
    """Largest difference between the two sides' vectors on CHECK_TEXTS, queries and documents."""
    worst = 0.0
    for encode, lite_encode in (
        (encoder.encode_query, model.encode_queries),
        (encoder.encode_document, model.encode_documents),
    ):
        vectors, mask = lite_encode(CHECK_TEXTS)
        for index, reference in enumerate(encode(CHECK_TEXTS)):
            ours = vectors[index][mask[index]].float()
            if ours.shape != reference.shape:
                return float("inf")
            worst = max(worst, float((ours - reference.float()).abs().max()))
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a saved LITE model (folder or Hub id)")
    parser.add_argument("--output-dir", required=True, help="the MultiVectorEncoder folder to write (new or empty)")
    args = parser.parse_args(argv)
    refuse_outputs_over_inputs([("--output-dir", args.output_dir)], [("model", args.model)])
    output = Path(args.output_dir)
    problem = new_folder_problem(output)
    if problem:  # before the model is loaded (export_multi_vector_encoder refuses it too)
        raise SystemExit(f"error: --output-dir {problem}; choose a new one")
    model = LiteModel.from_pretrained(args.model).float().eval()  # float32: the check compares exact vectors
    try:
        encoder = export_multi_vector_encoder(model, output)
    except MultiVectorError as error:
        raise SystemExit(f"error: {args.model}: {error}") from None
    difference = check_export(model, encoder)
    if difference > 1e-5:
        raise SystemExit(f"error: {output}: the exported encoder's vectors differ from LITE's by {difference:.2e}")
    print(f"{output}: MultiVectorEncoder of {args.model}'s encoder (vectors agree within {difference:.1e})")
    print(f'  from sentence_transformers import MultiVectorEncoder; MultiVectorEncoder("{output}")')
    return output


if __name__ == "__main__":
    main()
