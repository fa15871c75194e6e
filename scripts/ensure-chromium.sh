#!/usr/bin/env bash
# Install headless Chromium for the dashboard test when this machine allows it (root + apt-get,
# as in CI). Elsewhere print how to get it; the test that needs it then skips, saying why.
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> Installing Chromium for the dashboard test (apt-get install chromium)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q chromium >/tmp/audiocls-chromium-install.log 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q chromium >/tmp/audiocls-chromium-install.log 2>&1 ||
      echo "    could not install Chromium (see /tmp/audiocls-chromium-install.log); the dashboard test will skip"
  fi
else
  echo "Note: Chromium not found; the dashboard browser test will skip (apt-get install chromium)."
fi
exit 0
