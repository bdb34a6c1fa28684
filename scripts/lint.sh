#!/usr/bin/env bash
# The house style, enforced: every C++ file of the repository must be formatted as .clang-format says
# (clang-format, dry run), and the public headers must pass .clang-tidy's checks through the header
# self-compile units, where a clang-tidy that can parse LibTorch's headers in C++20 mode is installed.
# Exits non-zero on any finding. Called by .ci/run; run it before you commit.
#
# Debian 12's clang-tidy 14, 16 and 19 all stop on LibTorch 1.13's headers in C++20 mode (an incomplete
# c10::IValue in a constexpr std::vector, pytorch issue 97689; with libstdc++ and with libc++ alike), so on
# these machines the clang-tidy step reports that it cannot run instead of passing silently. With a
# LibTorch whose headers clang parses (CLANG_TIDY=clang-tidy-19 and a newer LibTorch), it runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mapfile -t sources < <(git ls-files '*.hpp' '*.cpp' ':!:tests/catch.hpp')
clang-format --dry-run --Werror "${sources[@]}"
echo "lint: clang-format: ${#sources[@]} files formatted as .clang-format says"

tidy="${CLANG_TIDY:-clang-tidy}"
build="${ARDENT_BUILD_DIR:-$root/build}"
if ! command -v "$tidy" >/dev/null; then
  echo "lint: clang-tidy: $tidy is not installed, skipped"
  exit 0
fi
torch_includes=(-isystem /usr/include/torch/csrc/api/include)
probe=$(mktemp --suffix .cpp)
trap 'rm -f "$probe"' EXIT
echo '#include <torch/torch.h>' > "$probe"
if ! "$tidy" --checks=-* "$probe" -- -std=c++20 "${torch_includes[@]}" >/dev/null 2>&1; then
  echo "lint: clang-tidy: $("$tidy" --version | grep -o 'version [0-9.]*') cannot parse LibTorch's headers in C++20 mode, skipped"
  exit 0
fi
[ -f "$build/compile_commands.json" ] || cmake -S "$root" -B "$build" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
run-clang-tidy -quiet -clang-tidy-binary "$(command -v "$tidy")" -p "$build" -warnings-as-errors='*' \
  'tests/headers/.*\.cpp'
