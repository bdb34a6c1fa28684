#!/usr/bin/env bash
# The main job: installs what is missing, builds the example programs and, on Fashion-MNIST,
# trains the small CNN for one epoch and prints its clean accuracy and its accuracy under each of
# ardent's gradient attacks on the 10,000 test images (about three minutes on two cores).
# Extra arguments go to the `attack` program (see `build/examples/attack --help`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ARDENT_BUILD_DIR:-$root/build}"

"$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target attack
"$build/examples/attack" --train-epochs 1 "$@"
