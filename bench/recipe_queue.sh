#!/usr/bin/env bash
# The experiments that judge the next bundled recipe, out of fold, in one queue. Each step is a
# cross-validation folder under OUT (default runs/cv); a rerun skips finished folds and resumes a
# killed one, so the queue can be stopped and started again on any machine (a GPU box finishes it
# in minutes, this 2-core CPU needs about 2.5 hours per 25-epoch recipe).
#
#   bash bench/recipe_queue.sh [OUT] [JOBS]        # JOBS: folds trained at once (default 2)
#
# 1. the bundled recipe (v3) at its own schedule and at 40 and 60 epochs, fold seed 0;
# 2. the same 25-epoch recipe on fold seed 1: the second seed a winner is confirmed on, and with
#    seed 0 a two-member ensemble judged on faces neither member saw;
# 3. self-training: each fold's v3 model labels the 607 unlabelled faces (flip-averaged) for that
#    fold's student, 66 or 132 of them drawn per epoch beside the 132 labelled faces;
# 4. width 48;
# then flips and ensembles out of fold (bench/bench_averaging.py) and the table (bench/cv_table.py).
set -euo pipefail
OUT=${1:-runs/cv}
JOBS=${2:-2}
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CFG=configs/default_ffhq256.yaml
cv() {  # cv NAME [cross_validate.py flags]
    local name=$1
    shift
    echo "== $name: $*"
    "$PY" bench/cross_validate.py --config "$CFG" --out "$OUT/$name" --jobs "$JOBS" \
        --no-progress "$@"
}
cv v3
cv v3_e40 --epochs 40
cv v3_e60 --epochs 60
cv v3_seed1 --fold-seed 1
cv v3_st66 --teachers "$OUT/v3" --set data.pseudo_per_epoch=66
cv v3_st132 --teachers "$OUT/v3" --set data.pseudo_per_epoch=132
cv v3_w48 --set model.base_channels=48
for name in v3 v3_e40 v3_e60 v3_st66 v3_st132 v3_w48; do
    "$PY" bench/bench_averaging.py --cv "$OUT/$name" --out "$OUT/$name/averaging.json"
done
"$PY" bench/bench_averaging.py --cv "$OUT/v3" "$OUT/v3_seed1" --out "$OUT/ensemble_v3.json"
"$PY" bench/cv_table.py "$OUT"/v3*
