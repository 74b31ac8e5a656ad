#!/usr/bin/env bash
# Prepare the FFHQ-Wrinkle training images under a base folder, as the data set does:
#
#   1. png_parsing.py:  images1024x1024/ + manual_wrinkle_masks/ -> face_images/<id>.png
#   2. face_masking.py: face_images/ + etcs/face_parsed_labels/  -> masked_face_images/<id>.png
#      (every pixel but skin and nose set to 0)
#
# usage: bash face_masking.sh [BASE_DIR] [png_parsing options, e.g. --link]
#   BASE_DIR defaults to ./data. The face-parsing labels are downloaded first if they are missing
#   (download_ffhq_wrinkle.sh BASE_DIR labels). Both steps skip what is already done.
# Python: $PYTHON if set, else this repository's .venv, else python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
base="${1:-./data}"
if [ "$#" -gt 0 ]; then shift; fi

python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  if [ -x "$here/.venv/bin/python" ]; then python_bin="$here/.venv/bin/python"
  elif command -v python3 >/dev/null 2>&1; then python_bin=python3
  else python_bin=python; fi
fi

images="$base/images1024x1024"
masks="$base/manual_wrinkle_masks"
labels="$base/etcs/face_parsed_labels"

if [ ! -d "$images" ]; then
  echo "error: $images not found: get the FFHQ images (1024x1024) from NVIDIA's ffhq-dataset" \
       "project (python download_ffhq.py --images) and put them there (00000/, 01000/, ...)" >&2
  exit 1
fi
if [ ! -d "$masks" ]; then
  echo "error: $masks not found: run 'bash download_ffhq_wrinkle.sh $base manual' first" >&2
  exit 1
fi
if [ ! -d "$labels" ]; then
  echo "face-parsing labels missing: downloading them"
  bash "$here/download_ffhq_wrinkle.sh" "$base" labels
fi

echo "step 1/2: png_parsing"
if ! "$python_bin" "$here/png_parsing.py" "$images" "$masks" "$base/face_images" "$@"; then
  echo "error: png_parsing failed (see above); fix the files it names and run again" >&2
  exit 1
fi

echo "step 2/2: face_masking"
if ! "$python_bin" "$here/face_masking.py" "$base/face_images" "$labels" \
     "$base/masked_face_images"; then
  echo "error: face_masking failed (see above); fix the files it names and run again" >&2
  exit 1
fi
echo "done: $base/face_images and $base/masked_face_images"
