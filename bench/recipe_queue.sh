#!/usr/bin/env bash
# The experiments that judge the next bundled recipe, out of fold, in one queue. Each recipe is a
# cross-validation folder under OUT (default runs/cv); a rerun skips finished folds and resumes a
# killed one, so the queue can be stopped and started again on any machine (a GPU box finishes it
# in minutes; a 2-core CPU needs 0.5-1 hour per fold and recipe).
#
#   bash bench/recipe_queue.sh [OUT] [JOBS]     # JOBS: processes for the 5-fold steps (default 2)
#   SET="train.amp=off" bash bench/recipe_queue.sh   # extra --set for every recipe (space-separated)
#
# The folds kept in bench/results/cv were trained without SET (train.amp auto: bf16 on a CPU that
# has it, on CUDA too): an extra --set is another recipe, and reusing those folds is refused.
#
# 1. fold by fold, the v3 recipe at its 25 epochs and at 40 (v4, bundled from 2026-12-04 until v5:
#    better on all five folds). Stopped anywhere, the queue leaves folds both share, which
#    bench/paired.py compares; every step names its epochs (the config says 60: v5, bundled
#    since 2026-12-04 after GPU runs of 40 and 60 epochs on both fold seeds, bench/gpu_folds.sh);
# 2. the same two on fold seed 1, fold by fold: the confirmation of the winner (and, with seed 0,
#    a two-member ensemble judged on faces neither member saw). Steps 1-2 are all kept in git;
#    (Self-training of v4, fold by fold against 60 epochs, ran in December 2026: on folds
#    0-2 it matched v5 and was stopped; its commands are in docs/results/recipes.md, section
#    st-v4. 60 and 40
#    epochs on both fold seeds ran on a lent GPU: bench/gpu_folds.sh, bench/results/cv_gpu.)
#    Width 48 at v5's 60 epochs (folds 0-1) matched v5 and 512 px input at 40 epochs (fold 0)
#    matched v4: both stopped (December 2026, bench/results/cv/v3_w48_e60 and v3_s512_e40; their
#    commands are in docs/results/recipes.md, section size).
# 3. then, all folds at once: self-training of v3 (66 or 132 pseudo-labelled faces an epoch, or
#    an ensemble teacher);
# then flips and ensembles out of fold (bench/bench_averaging.py) and the table (bench/cv_table.py).
# After each step the folder's small files go to bench/results/cv (bench/keep_cv.sh) for git, and
# folds kept there are not trained again (--reuse-kept): a new machine goes on where the last one
# stopped, for every step that needs no fold model (step 3 needs the v3 models).
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
        --reuse-kept "bench/results/cv/$name" ${SETS[@]+"${SETS[@]}"} "$@"
    bash bench/keep_cv.sh "$OUT/$name"  # its small files into bench/results/cv, for git
}
for k in 0 1 2 3 4; do
    cv v3 --epochs 25 --fold "$k"
    cv v3_e40 --epochs 40 --fold "$k"
done
for k in 0 1 2 3 4; do
    cv v3_seed1 --fold-seed 1 --epochs 25 --fold "$k"
    cv v3_e40_seed1 --fold-seed 1 --epochs 40 --fold "$k"
done
cv v3_st66 --epochs 25 --teachers "$OUT/v3" --set data.pseudo_per_epoch=66 --jobs "$JOBS"
cv v3_st132 --epochs 25 --teachers "$OUT/v3" --set data.pseudo_per_epoch=132 --jobs "$JOBS"
cv v3_st66_ens --epochs 25 --teachers "$OUT/v3" "$OUT/v3_e40" --set data.pseudo_per_epoch=66 --jobs "$JOBS"
for name in v3 v3_e40 v3_st66 v3_st132 v3_st66_ens; do
    "$PY" bench/bench_averaging.py --cv "$OUT/$name" --out "$OUT/$name/averaging.json"
    bash bench/keep_cv.sh "$OUT/$name"
done
"$PY" bench/bench_averaging.py --cv "$OUT/v3" "$OUT/v3_seed1" --out "$OUT/ensemble_v3.json"
"$PY" bench/paired.py "$OUT/v3" "$OUT/v3_e40" --out "$OUT/paired_e40_seed0.json"
"$PY" bench/paired.py "$OUT/v3_seed1" "$OUT/v3_e40_seed1" --out "$OUT/paired_e40_seed1.json"
"$PY" bench/cv_table.py "$OUT"/v3*
exit
}
