#!/usr/bin/env bash
# Generates the API reference from the `///` comments of the public headers into build/docs/html
# (open build/docs/html/index.html). Needs doxygen (Debian's package; installed when missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if ! command -v doxygen >/dev/null; then
  sudo_cmd=(); [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends doxygen >/dev/null
fi
mkdir -p build/docs
doxygen docs/api/Doxyfile
echo "API reference: $root/build/docs/html/index.html ($(grep -c . build/docs/warnings.log || true) doxygen warnings in build/docs/warnings.log)"
