#!/usr/bin/env bash
# Download the FFHQ-Wrinkle masks and face-parsing labels (Google Drive, with gdown) into the data
# set's layout under a base folder:
#
#   BASE/manual_wrinkle_masks/<id>.png          1,000 manual masks       (manual)
#   BASE/weak_wrinkle_masks/00000/<id>.png ...  50,000 weak masks        (weak)
#   BASE/etcs/face_parsed_labels/<id>.npy       face-parsing label maps  (labels)
#
# usage: bash download_ffhq_wrinkle.sh [BASE_DIR] [manual] [weak] [labels]
#   BASE_DIR defaults to ./data; with no part named, all three are fetched.
# The FFHQ images themselves (images1024x1024/) come from NVIDIA's ffhq-dataset project
# (python download_ffhq.py --images), not from here.
#
# Each zip is tested before it is unpacked, unpacked into a temporary folder inside BASE, and moved
# into place only when complete: a failed or interrupted run leaves no half-written folder. Parts
# already there are skipped, so a rerun fetches only what is missing.
set -euo pipefail

# Google Drive file ids of the data set's zips (as in the FFHQ-Wrinkle data set's own download
# scripts). Override with the environment; an empty id means "download this one by hand".
FFHQ_WRINKLE_MANUAL_ID="${FFHQ_WRINKLE_MANUAL_ID-1QcexZsNp3xc_3HhCUgzN732RFMjFmD30}"
FFHQ_WRINKLE_WEAK_ID="${FFHQ_WRINKLE_WEAK_ID-1irv2YTwbGoBSOCIaJC25AL6dcRYfcJWZ}"
FFHQ_WRINKLE_LABELS_ID="${FFHQ_WRINKLE_LABELS_ID-1Oje4gsfgsScBfLMwP-OobgoFK-DHOGqc}"

DATASET_URL="https://github.com/labhai/ffhq-wrinkle-dataset"
base="${1:-./data}"
if [ "$#" -gt 0 ]; then shift; fi
parts=("$@")
if [ "${#parts[@]}" -eq 0 ]; then parts=(manual weak labels); fi

python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  if command -v python3 >/dev/null 2>&1; then python_bin=python3; else python_bin=python; fi
fi

work=""
cleanup() {
  if [ -n "$work" ] && [ -d "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

# fail ZIP TARGET REASON: say what to fetch by hand and where it goes, then stop.
fail() {
  local zip="$1" target="$2" reason="$3"
  {
    echo "error: $reason"
    echo "  Download $zip by hand (linked from the FFHQ-Wrinkle data set's README,"
    echo "  $DATASET_URL) and unpack it so that its files end up in"
    echo "  $target/"
    echo "  then run this script again (what is already there is skipped)."
  } >&2
  exit 1
}

# has_files DIR: true when DIR holds at least one file (at any depth).
has_files() {
  [ -d "$1" ] && [ -n "$(find "$1" -type f -print -quit)" ]
}

# fetch PART ID ZIP TARGET: download, test, unpack and move one zip into place.
fetch() {
  local part="$1" id="$2" zip="$3" target="$4" var="$5"
  local name src
  name="$(basename "$target")"
  if has_files "$target"; then
    echo "$part: $target is already there, skipped"
    return 0
  fi
  if [ -e "$target" ] && [ -n "$(ls -A "$target")" ]; then
    fail "$zip" "$target" "$target exists but holds no files: move it away first"
  fi
  if [ -z "$id" ]; then
    fail "$zip" "$target" "no Google Drive file id for $zip (set $var to fetch it with gdown)"
  fi
  if ! command -v gdown >/dev/null 2>&1; then
    fail "$zip" "$target" "gdown is not installed (install it with 'pip install gdown' and run again)"
  fi
  mkdir -p "$base"
  work="$(mktemp -d "$base/.download-$part.XXXXXX")"
  echo "$part: downloading $zip ..."
  if ! gdown -O "$work/$zip" "https://drive.google.com/uc?id=$id"; then
    fail "$zip" "$target" "gdown could not download $zip (Google Drive id $id; quota or network?)"
  fi
  if [ ! -s "$work/$zip" ]; then
    fail "$zip" "$target" "the download of $zip is empty"
  fi
  if ! "$python_bin" -m zipfile -t "$work/$zip" >/dev/null 2>&1; then
    fail "$zip" "$target" "$zip is not a valid zip file (corrupt or incomplete download)"
  fi
  mkdir "$work/unpacked"
  if ! "$python_bin" -m zipfile -e "$work/$zip" "$work/unpacked"; then
    fail "$zip" "$target" "could not unpack $zip (disk full?)"
  fi
  rm -rf "$work/unpacked/__MACOSX"
  # The zip holds either a folder named like the target or the files themselves.
  if [ -d "$work/unpacked/$name" ]; then src="$work/unpacked/$name"; else src="$work/unpacked"; fi
  if ! has_files "$src"; then
    fail "$zip" "$target" "$zip holds no files"
  fi
  mkdir -p "$(dirname "$target")"
  if [ -d "$target" ]; then rmdir "$target"; fi  # an empty leftover folder
  mv "$src" "$target"
  rm -rf "$work"
  work=""
  echo "$part: unpacked into $target"
}

for part in "${parts[@]}"; do
  case "$part" in
    manual) fetch manual "$FFHQ_WRINKLE_MANUAL_ID" manual_wrinkle_masks.zip \
              "$base/manual_wrinkle_masks" FFHQ_WRINKLE_MANUAL_ID ;;
    weak) fetch weak "$FFHQ_WRINKLE_WEAK_ID" weak_wrinkle_masks.zip \
            "$base/weak_wrinkle_masks" FFHQ_WRINKLE_WEAK_ID ;;
    labels) fetch labels "$FFHQ_WRINKLE_LABELS_ID" face_parsed_labels.zip \
              "$base/etcs/face_parsed_labels" FFHQ_WRINKLE_LABELS_ID ;;
    *) echo "error: unknown part '$part' (use manual, weak, labels)" >&2; exit 2 ;;
  esac
done
echo "done: FFHQ-Wrinkle files are in $base"
