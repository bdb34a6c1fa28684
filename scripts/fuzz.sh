#!/usr/bin/env bash
# Fuzzes ardent's file readers with AFL++ (Debian package afl++), each target for N minutes:
#   scripts/fuzz.sh [minutes per target, default 10] [target...]
# Targets: state_dict idx cifar checkpoint image (default: all). One binary (fuzz/fuzz_main.cpp, the
# target chosen by ARDENT_FUZZ_TARGET) is compiled by g++ through AFL++'s afl-as instrumentation
# (AFL_CC_COMPILER=GCC afl-g++; Debian's afl-g++-fast plugin refuses this g++ build, "GCC and
# plugin have incompatible versions"), with AddressSanitizer and UndefinedBehaviorSanitizer; afl-fuzz
# runs it on one file per execution (@@) through afl-as's fork server. Seeds: fuzz/corpus/<target>.
# Findings go to
# fuzz/runs/<target>/default/crashes; copy each into fuzz/corpus/<target>/ as a regression case
# (the ctest label `fuzz` replays it on every scripts/test.sh) once it is fixed.
# (clang 16 cannot compile LibTorch 1.13's headers in C++20 mode with libstdc++ 12, so libFuzzer
# is not an option; see docs/reliability.md.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
minutes="${1:-10}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(state_dict idx cifar checkpoint image)
build="${ARDENT_FUZZ_BUILD_DIR:-$root/build-fuzz}"
runs="$root/fuzz/runs"
mkdir -p "$build" "$runs"

"$root/scripts/setup.sh"
# The include paths and definitions of LibTorch as CMake finds them.
cmake -S "$root" -B "$build/cmake" -DCMAKE_BUILD_TYPE=Release -DARDENT_BUILD_EXAMPLES=OFF -DARDENT_BUILD_TOOLS=OFF \
  -DARDENT_BUILD_BENCHMARKS=OFF >/dev/null
flags_file="$build/cmake/tests/CMakeFiles/ardent_kill_resume_child.dir/flags.make"
defines="$(sed -n 's/^CXX_DEFINES = //p' "$flags_file")"
includes="$(sed -n 's/^CXX_INCLUDES = //p' "$flags_file")"

binary="$build/ardent_fuzz"
if [ ! -x "$binary" ] || [ "$root/fuzz/targets.hpp" -nt "$binary" ] || [ "$root/fuzz/fuzz_main.cpp" -nt "$binary" ]; then
  echo "fuzz: building $binary (one instrumented translation unit; slow)"
  sanitizers=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
  # shellcheck disable=SC2086
  AFL_QUIET=1 AFL_CC_COMPILER=GCC afl-g++ -std=c++20 -O1 "${sanitizers[@]}" $defines $includes \
    -c "$root/fuzz/fuzz_main.cpp" -o "$binary.o"
  g++ "${sanitizers[@]}" "$binary.o" -o "$binary" \
    -ltorch -ltorch_cpu -lc10 -lfmt -lz -lpng -ljpeg
fi

for target in "${targets[@]}"; do
  echo "fuzz: $target for $minutes minutes"
  # LibTorch starts slowly and maps much virtual memory under ASan, so afl-fuzz's own limit (-m, on
  # address space) is off; ASan limits what matters instead: a resident size above 1 GB
  # (hard_rss_limit_mb) or one allocation above 512 MB (malloc_limit_mb) aborts the run, which
  # afl-fuzz records as a crash: a memory blow-up is a finding. No seed needs more than 64 MB.
  # malloc_context_size=0: no stack trace per allocation, which made each run 8 times slower.
  ARDENT_FUZZ_TARGET="$target" AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    OMP_NUM_THREADS=1 ASAN_OPTIONS="abort_on_error=1:symbolize=0:detect_leaks=0:malloc_context_size=0:hard_rss_limit_mb=1024:malloc_limit_mb=512:allocator_may_return_null=0" \
    timeout --foreground $((minutes * 60 + 60)) \
    afl-fuzz -V $((minutes * 60)) -m none -t 20000 -i "$root/fuzz/corpus/$target" -o "$runs/$target" \
    -- "$binary" @@ || true
  crashes=$(find "$runs/$target/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
  hangs=$(find "$runs/$target/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
  execs=$(sed -n 's/^execs_done *: //p' "$runs/$target/default/fuzzer_stats" 2>/dev/null || echo "?")
  paths=$(sed -n 's/^corpus_count *: //p' "$runs/$target/default/fuzzer_stats" 2>/dev/null || echo "?")
  echo "fuzz: $target: $execs executions, $paths inputs in the corpus, $crashes crashes, $hangs hangs (in $runs/$target/default)"
done
