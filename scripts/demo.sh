#!/usr/bin/env bash
# The main job: installs what is missing, builds the demo, and on Fashion-MNIST distils a SmallCNN
# student with ARD from the robust teacher in models/fashion_teacher.pt, trains the same student
# naturally, and prints clean, PGD-20 and APGD accuracy at epsilon 0.1 for the three networks
# (about eight minutes on two cores). Extra arguments go to the demo program (see `demo --help`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ARDENT_BUILD_DIR:-$root/build}"

"$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target demo
cd "$root"
"$build/tools/demo" --teacher models/fashion_teacher.pt "$@"
