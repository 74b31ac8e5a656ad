#!/usr/bin/env bash
# Keep the small files of cross-validation folders in git, under bench/results/cv/<name>/: the
# recipe, the folds, the report and, per fold, its summary, its per-epoch history and its
# held-out predictions as per-face counts (fold<k>/*.counts.json, a few kilobytes where the
# probabilities and the model are megabytes). bench/paired.py and bench/cv_table.py read such a
# folder as they read the full one, so the comparisons in docs/results/ can be recomputed without the
# training runs, on any machine and on any later day, and bench/cross_validate.py
# --reuse-kept counts them as done (bench/recipe_queue.sh does), so a queue goes on where it was.
#
#   bash bench/keep_cv.sh runs/cv/v3 runs/cv/v3_e40
set -euo pipefail
if [ $# -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -eq 0 ] && exit 1 || exit 0
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEST=${KEEP_CV_DEST:-$REPO/bench/results/cv}
mkdir -p "$DEST" && DEST=$(cd "$DEST" && pwd)  # the copies below run inside each source
PY=${PYTHON:-$REPO/.venv/bin/python}
for src in "$@"; do
    if [ ! -f "$src/folds.json" ]; then
        echo "error: $src: not a cross-validation folder (no folds.json)" >&2
        exit 1
    fi
    name=$(basename "$src")
    if [ -f "$DEST/$name/recipe.json" ] && ! cmp -s "$src/recipe.json" "$DEST/$name/recipe.json"; then
        echo "error: $DEST/$name holds another recipe than $src (recipe.json differs); keep" \
            "this one under another folder name" >&2
        exit 1
    fi
    if [ -f "$DEST/$name/folds.json" ] && ! cmp -s "$src/folds.json" "$DEST/$name/folds.json"; then
        echo "error: $DEST/$name holds other folds than $src (folds.json differs)" >&2
        exit 1
    fi
    # predictions made before counts were kept get theirs now
    (cd "$REPO" && "$PY" -c 'import sys; from utils.training.crossval import ensure_counts
for p in ensure_counts(sys.argv[1]): print(f"counted {p}")' "$(cd "$src" && pwd)")
    (
        cd "$src"
        shopt -s nullglob
        files=(*.json fold*/summary.json fold*/history.csv fold*/*.counts.json)
        mkdir -p "$DEST/$name"
        cp --parents "${files[@]}" "$DEST/$name/"
    )
    echo "kept $src -> $DEST/$name"
done
