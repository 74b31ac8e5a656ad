#!/usr/bin/env bash
# Install Debian's Chromium for the browser test (tests/test_app.py), if it is not there yet.
# Playwright drives this system browser (executable_path=/usr/bin/chromium) because its own
# browser download is not reachable from CI. Idempotent and quiet; needs root (or sudo) once.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "install_browser: /usr/bin/chromium is missing and this user cannot install it" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq chromium >/dev/null
if [ ! -x /usr/bin/chromium ]; then
  echo "install_browser: apt-get installed chromium but /usr/bin/chromium is missing" >&2
  exit 1
fi
