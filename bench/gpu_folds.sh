#!/usr/bin/env bash
# Issue #19's deciding comparison on one lent GPU, in calls of under 10 minutes: the bundled
# recipe at 40 epochs (v4) and at 60 (v5: as many steps as a student takes), and v4's
# self-trained student (40 epochs, 66 soft-labelled unlabelled faces an epoch, taught by the same
# fold's v4 model), each on all 5 folds of fold seeds 0 and 1. Every fold trains on the GPU, the
# 5 folds of a recipe at once and the recipes side by side, so they are compared on equal terms
# (a GPU run is a rerun of a CPU one: bf16 sums in another order; recipe.json says 'cuda').
# Folds kept in bench/results/cv_gpu count as done, so each GPU run trains only what is
# missing: on one H200 (December 2026), 20 folds at once took 3.8 min (40 epochs) and 5.1 min (60 epochs).
#
#   bash bench/gpu_folds.sh OUT_DIR [SECONDS]     # on the GPU machine; SECONDS of training (480)
#
# Python: the machine's python3 when its torch sees the GPU, with the packages it lacks from
# wheels in .whl/ (carried). Data: ../shared, or .gpudata/ffhq-wrinkle-256 (carried) linked
# there. Both made here, once (git ignores them through .git/info/exclude), for a Python 3.12 box
# without albumentations: `cp -r ../shared/data/ffhq-wrinkle-256 .gpudata/` and `pip download
# --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl`
# albumentations albucore pydantic pydantic_core annotated-types typing-inspection simsimd
# stringzilla typing_extensions at the versions of requirements.txt / .venv (pip freeze).
# Every 20 s and at the end, OUT_DIR/cv_gpu.tar.gz is rewritten with the small files (recipes,
# folds, reports, per-fold summaries, histories, held-out counts, logs), so a stopped run keeps
# the folds it finished. Then here:
#   tar xzf cv_gpu.tar.gz -C /tmp && KEEP_CV_DEST=bench/results/cv_gpu bash bench/keep_cv.sh /tmp/gpu/v*/
#   python bench/paired.py bench/results/cv_gpu/v3_e40 bench/results/cv_gpu/v4_st66 \
#       bench/results/cv_gpu/v3_e40_seed1 bench/results/cv_gpu/v4_st66_seed1
# Environment (to test the script on a CPU): GPU_FOLDS_DEVICE (cuda), GPU_FOLDS_JOBS (5),
# GPU_FOLDS_E40 / GPU_FOLDS_E60 (epochs, 40 / 60), GPU_FOLDS_EXTRA (more cross_validate flags),
# GPU_FOLDS_KEPT (the kept folds that count as done, bench/results/cv_gpu).
set -uo pipefail
if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 1 || exit 0
fi
START=$SECONDS
mkdir -p "$1" || exit 1
OUT_DIR=$(cd "$1" && pwd)
BUDGET=${2:-480}
cd "$(dirname "$0")/.." || exit 1
DEVICE=${GPU_FOLDS_DEVICE:-cuda}
JOBS=${GPU_FOLDS_JOBS:-5}
E40=${GPU_FOLDS_E40:-40}
E60=${GPU_FOLDS_E60:-60}
read -r -a EXTRA <<< "${GPU_FOLDS_EXTRA:-}"
say() { echo "[gpu_folds $((SECONDS - START))s] $*"; }

PY=${PYTHON:-python3}
if [[ -d .whl ]] && ! "$PY" -c "import albumentations" > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { say "error: the wheels in .whl did not install"; exit 1; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if [[ ! -d ../shared/data/ffhq-wrinkle-256 && -d .gpudata/ffhq-wrinkle-256 ]]; then
    mkdir -p ../shared/data && ln -s "$PWD/.gpudata/ffhq-wrinkle-256" ../shared/data/ || exit 1
fi
"$PY" - "$DEVICE" <<'EOF' || { say "error: this Python cannot train here"; exit 1; }
import sys
import albumentations, cv2, torch, torchvision  # noqa: F401
from utils.runtime import resolve_device
d = resolve_device(sys.argv[1])
name = torch.cuda.get_device_name(d) if d.type == "cuda" else "cpu"
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, torchvision "
      f"{torchvision.__version__}, albumentations {albumentations.__version__}, device {name}")
EOF
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader

mkdir -p runs/gpu
KEPT=${GPU_FOLDS_KEPT:-bench/results/cv_gpu}
CV=("$PY" bench/cross_validate.py --config configs/default_ffhq256.yaml --device "$DEVICE"
    --jobs "$JOBS" --threads 1 --no-progress "${EXTRA[@]}")
cv() {  # cv NAME FLAGS...: one recipe's five folds in runs/gpu/NAME (kept folds count as done)
    local name=$1 t0=$SECONDS
    shift
    "${CV[@]}" --out "runs/gpu/$name" --reuse-kept "$KEPT/$(basename "$name")" "$@" \
        > "runs/gpu/$name.log" 2>&1
    local rc=$?
    say "$name: exit $rc after $((SECONDS - t0)) s ($(grep -m1 -o 'pooled F1 [0-9.]*' \
        "runs/gpu/$name.log" || echo 'no report'))"
    return $rc
}
chain() {  # chain SEED_FLAGS SUFFIX: v4 trained again as the teacher (its model is needed), then
           # its student; nothing to do when the student is kept
    if [[ -f $KEPT/v4_st66$2/fold4/summary.json ]]; then
        cv "v4_st66$2" --epochs "$E40" $1 --teachers "runs/gpu/teachers/v3_e40$2" \
            --set data.pseudo_per_epoch=66
        return
    fi
    mkdir -p runs/gpu/teachers
    "${CV[@]}" --out "runs/gpu/teachers/v3_e40$2" --epochs "$E40" $1 \
        > "runs/gpu/teachers/v3_e40$2.log" 2>&1 &&
        cv "v4_st66$2" --epochs "$E40" $1 --teachers "runs/gpu/teachers/v3_e40$2" \
            --set data.pseudo_per_epoch=66
}
snapshot() {  # the small files so far (no models, probabilities or soft labels), no Python
    (cd runs && find gpu -path '*/pseudo*' -prune -o \( -name '*.json' -o -name history.csv \
        -o -name '*.log' -o -name log.txt \) -type f -print) > /tmp/gpu_folds_files
    tar czf "$OUT_DIR/.cv_gpu.tar.gz" -C runs -T /tmp/gpu_folds_files &&
        mv "$OUT_DIR/.cv_gpu.tar.gz" "$OUT_DIR/cv_gpu.tar.gz"
}

say "training for at most $BUDGET s: v4, 60 epochs and v4's student on fold seeds 0 and 1"
pids=()
cv v3_e40 --epochs "$E40" & pids+=($!)
cv v3_e40_seed1 --epochs "$E40" --fold-seed 1 & pids+=($!)
cv v3_e60 --epochs "$E60" & pids+=($!)
cv v3_e60_seed1 --epochs "$E60" --fold-seed 1 & pids+=($!)
chain "" "" & pids+=($!)
chain "--fold-seed 1" "_seed1" & pids+=($!)
while true; do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2> /dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    if (( SECONDS - START > BUDGET )); then
        say "out of time: stopping (the folds finished are in $OUT_DIR/cv_gpu.tar.gz)"
        pkill -f bench/cross_validate.py
        sleep 3
        break
    fi
    sleep 20
    snapshot
    say "$(find runs/gpu -path '*/fold*/summary.json' | wc -l) fold summaries written"
done
wait
snapshot
for b in v3_e60 v4_st66; do
    if [[ -f runs/gpu/${b}_seed1/report.json && -f runs/gpu/$b/report.json ]]; then
        "$PY" bench/paired.py runs/gpu/v3_e40 "runs/gpu/$b" runs/gpu/v3_e40_seed1 \
            "runs/gpu/${b}_seed1" | tail -n 1
    fi
done
say "done: $OUT_DIR/cv_gpu.tar.gz"
