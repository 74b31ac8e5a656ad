#!/usr/bin/env bash
# Install Debian's Chromium for the browser test (tests/test_app.py), if it is not there yet.
# Playwright drives this system browser (executable_path=/usr/bin/chromium) because its own
# browser download is not reachable from CI. Idempotent and quiet; needs root (or sudo) once;
# where it cannot install, it warns and the browser test is skipped with that reason.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "install_browser: warning: /usr/bin/chromium is missing and this user cannot install it;" \
       "the browser test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null; } \
    || [ ! -x /usr/bin/chromium ]; then
  echo "install_browser: warning: could not install Debian's chromium; the browser test will be" \
       "skipped" >&2
fi
exit 0
