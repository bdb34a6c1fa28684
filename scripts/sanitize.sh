#!/usr/bin/env bash
# The sanitizer configuration: the unit tests (ctest label `unit`: every test of ardent_tests, the
# kill-and-resume test included) and the fuzz corpora replays (label `fuzz`), built with AddressSanitizer and
# UndefinedBehaviorSanitizer (-fno-sanitize-recover: any finding fails), in their own build
# directory. Run by scripts/test.sh after the main suite. Exits non-zero on any failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ARDENT_SANITIZE_BUILD_DIR:-$root/build-sanitize}"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DARDENT_SANITIZE=ON \
  -DARDENT_BUILD_EXAMPLES=OFF -DARDENT_BUILD_TOOLS=OFF -DARDENT_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target ardent_tests ardent_kill_resume_child ardent_fuzz_replay
cd "$build"
# LeakSanitizer on; LibTorch's own allocations that live until exit are not ardent's leaks.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$root/fuzz/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export OMP_NUM_THREADS=1
ctest --output-on-failure -j 1 -L "unit|fuzz"
