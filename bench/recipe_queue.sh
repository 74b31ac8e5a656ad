#!/usr/bin/env bash
# The experiments that judge the next bundled recipe, out of fold, in one queue. Each recipe is a
# cross-validation folder under OUT (default runs/cv); a rerun skips finished folds and resumes a
# killed one, so the queue can be stopped and started again on any machine (a GPU box finishes it
# in minutes; a 2-core CPU needs 0.5-1 hour per fold and recipe).
#
#   bash bench/recipe_queue.sh [OUT] [JOBS]     # JOBS: processes for the 5-fold steps (default 2)
#   SET="train.amp=off" bash bench/recipe_queue.sh   # extra --set for every recipe (space-separated)
#
# 1. fold by fold, the three recipes that answer the first question (does self-training help beyond
#    the longer schedule its extra pseudo-labelled faces amount to?): the bundled recipe (v3) at its
#    25 epochs, at 40 epochs (about the student's number of steps), and the self-trained student
#    (fold k's v3 model labels the 607 unlabelled faces, flip-averaged; 66 drawn per epoch beside the
#    132 labelled faces). Stopped anywhere, the queue leaves folds that all three share, which
#    bench/paired.py compares;
# 2. then, all folds at once: the same 25-epoch recipe on fold seed 1 (the second seed a winner is
#    confirmed on, and with seed 0 a two-member ensemble judged on faces neither member saw), 60
#    epochs, 132 pseudo-labelled faces per epoch, 66 labelled by an ensemble teacher (fold k's v3
#    and 40-epoch models averaged), width 48, faces upsampled to 512 px (scored at 256 px, the
#    images' own size, as every recipe is);
# then flips and ensembles out of fold (bench/bench_averaging.py) and the table (bench/cv_table.py).
set -euo pipefail
{  # read whole before it runs: editing this file cannot derail a running queue
OUT=${1:-runs/cv}
JOBS=${2:-2}
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CFG=configs/default_ffhq256.yaml
SETS=()
for s in ${SET:-}; do SETS+=(--set "$s"); done
cv() {  # cv NAME [cross_validate.py flags]
    local name=$1
    shift
    echo "== $name: $* ($(date +%H:%M))"
    "$PY" bench/cross_validate.py --config "$CFG" --out "$OUT/$name" --no-progress \
        ${SETS[@]+"${SETS[@]}"} "$@"
}
for k in 0 1 2 3 4; do
    cv v3 --fold "$k"
    cv v3_e40 --epochs 40 --fold "$k"
    cv v3_st66 --teachers "$OUT/v3" --set data.pseudo_per_epoch=66 --fold "$k"
done
cv v3_seed1 --fold-seed 1 --jobs "$JOBS"
cv v3_e60 --epochs 60 --jobs "$JOBS"
cv v3_st132 --teachers "$OUT/v3" --set data.pseudo_per_epoch=132 --jobs "$JOBS"
cv v3_st66_ens --teachers "$OUT/v3" "$OUT/v3_e40" --set data.pseudo_per_epoch=66 --jobs "$JOBS"
cv v3_w48 --set model.base_channels=48 --jobs "$JOBS"
cv v3_s512 --set data.image_size=512 --jobs "$JOBS"
for name in v3 v3_e40 v3_e60 v3_st66 v3_st132 v3_st66_ens v3_w48 v3_s512; do
    "$PY" bench/bench_averaging.py --cv "$OUT/$name" --out "$OUT/$name/averaging.json"
done
"$PY" bench/bench_averaging.py --cv "$OUT/v3" "$OUT/v3_seed1" --out "$OUT/ensemble_v3.json"
"$PY" bench/cv_table.py "$OUT"/v3*
exit
}
