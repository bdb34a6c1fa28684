#!/usr/bin/env bash
# Installs what is missing, builds ardent's tests, examples, tools and benchmarks with both cores, and
# runs the whole test suite, then the sanitizer configuration (scripts/sanitize.sh: the unit
# tests and the fuzz corpora under ASan and UBSan). Exits non-zero on any failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ARDENT_BUILD_DIR:-$root/build}"

"$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"
(cd "$build" && ctest --output-on-failure -j 1)
"$root/scripts/sanitize.sh"
