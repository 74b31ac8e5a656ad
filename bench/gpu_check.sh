#!/usr/bin/env bash
# GPU check from a clean checkout, in about 5 minutes: set up Python, print nvidia-smi, then run
# bench/gpu_check.py (training and inference speed of the U-Nets) into OUT_DIR/gpu_check.json.
#
#   bash bench/gpu_check.sh OUT_DIR [gpu_check.py flags, e.g. --budget 400]
#
# Python, fastest first (GPU minutes are scarce, and a CUDA torch is a 3 GB download):
#   1. an existing .venv-gpu (or the project's .venv) whose torch sees the GPU;
#   2. the system python3 when its torch sees the GPU: a .venv-gpu with --system-site-packages,
#      plus only the missing small packages gpu_check.py needs (pinned in requirements.txt);
#   3. otherwise a fresh .venv-gpu with torch and those packages from requirements.txt
#      (GPU_CHECK_FULL=1: all of requirements.txt).
# The Python part runs under `timeout` (290 s, less when the setup already used some of the
# 5 minutes) and rewrites the JSON after each measurement, so a stopped run keeps what it measured.
set -uo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: bash bench/gpu_check.sh OUT_DIR [gpu_check.py flags]" >&2
    exit 2
fi
START=$SECONDS
OUT_DIR=$1
shift
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR=$(cd "$OUT_DIR" && pwd)
cd "$(dirname "$0")/.." || exit 2
LOG="$OUT_DIR/gpu_check.log"
: > "$LOG"

VENV=.venv-gpu
PIP_OPTS=(-q --disable-pip-version-check --retries 1 --timeout 30)
NEEDED="torch numpy pyyaml opencv-python-headless albumentations"  # what gpu_check.py imports

say() { echo "[gpu_check $((SECONDS - START))s] $*" | tee -a "$LOG"; }

cuda_ok() {  # does this interpreter's torch see a CUDA GPU?
    [[ -x "$1" ]] || command -v "$1" > /dev/null 2>&1 || return 1
    timeout 60 "$1" -c "import torch; assert torch.cuda.is_available()" > /dev/null 2>&1
}

pin() {  # the requirements.txt line for a package (or its bare name if it is not pinned there)
    local line
    line=$(grep -iE "^$1==" requirements.txt | head -n 1)
    echo "${line:-$1}"
}

install_missing() {  # pip-install the needed packages this interpreter cannot import
    local py=$1 pkgs=() mod pkg
    for pair in yaml:pyyaml cv2:opencv-python-headless albumentations:albumentations \
                numpy:numpy; do
        mod=${pair%%:*}
        pkg=${pair#*:}
        "$py" -c "import $mod" > /dev/null 2>&1 || pkgs+=("$(pin "$pkg")")
    done
    if [[ ${#pkgs[@]} -gt 0 ]]; then
        say "installing ${pkgs[*]}"
        timeout 200 "$py" -m pip install "${PIP_OPTS[@]}" "${pkgs[@]}" 2>&1 | tail -n 5 \
            || say "warning: pip could not install ${pkgs[*]}"
    fi
}

PY=""
if cuda_ok "$VENV/bin/python"; then
    PY=$VENV/bin/python
    say "reusing $VENV"
elif cuda_ok .venv/bin/python; then
    PY=.venv/bin/python
    say "reusing the project's .venv"
elif cuda_ok python3; then
    if python3 -m venv --system-site-packages "$VENV" > /dev/null 2>&1; then
        PY=$VENV/bin/python
        say "system torch sees the GPU: $VENV with --system-site-packages"
    else
        PY=python3
        say "system torch sees the GPU; no venv module, using python3 itself"
    fi
    install_missing "$PY"
else
    say "no CUDA torch found: creating $VENV and installing from requirements.txt"
    python3 -m venv "$VENV" || { say "error: python3 -m venv failed"; exit 3; }
    PY=$VENV/bin/python
    timeout 60 "$PY" -m pip install "${PIP_OPTS[@]}" --upgrade pip > /dev/null 2>&1
    if [[ "${GPU_CHECK_FULL:-0}" == 1 ]]; then
        timeout 420 "$PY" -m pip install "${PIP_OPTS[@]}" -r requirements.txt 2>&1 | tail -n 5
    else
        pkgs=()
        for p in $NEEDED; do pkgs+=("$(pin "$p")"); done
        say "installing ${pkgs[*]}"
        timeout 420 "$PY" -m pip install "${PIP_OPTS[@]}" "${pkgs[@]}" 2>&1 | tail -n 5
    fi
fi
if ! cuda_ok "$PY"; then
    say "error: torch in $PY does not see a CUDA GPU (is this the GPU machine? is the driver up?)"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
        2>&1 | tee -a "$LOG"
    exit 3
fi
say "python: $PY ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"

echo "---- nvidia-smi" | tee -a "$LOG"
timeout 30 nvidia-smi 2>&1 | tee -a "$LOG" || echo "(nvidia-smi not available)" | tee -a "$LOG"

# Whatever the setup used comes off the Python part's share of the 5 minutes.
LEFT=$((295 - (SECONDS - START)))
LIMIT=$((LEFT < 290 ? LEFT : 290))
LIMIT=$((LIMIT < 90 ? 90 : LIMIT))
BUDGET=$((LIMIT - 50))  # start-up, CUDA context, the last measurement's overrun
say "gpu_check.py: timeout ${LIMIT}s, measurement budget ${BUDGET}s"
PYTHONUNBUFFERED=1 timeout "$LIMIT" "$PY" bench/gpu_check.py --out "$OUT_DIR/gpu_check.json" \
    --budget "$BUDGET" "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
if [[ $rc -eq 124 ]]; then
    say "gpu_check.py ran out of time; $OUT_DIR/gpu_check.json holds what it measured"
fi
say "done (exit $rc): $OUT_DIR/gpu_check.json, log $LOG"
exit "$rc"
