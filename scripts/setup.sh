#!/usr/bin/env bash
# Installs every Debian package ardent needs (the table in docs/design.md) that is missing.
# Idempotent: prints nothing and touches nothing when all are present.
set -euo pipefail

packages=(
  build-essential cmake clang-format python3
  libtorch-dev libgloo-dev libopenblas0-openmp libpng-dev libjpeg62-turbo-dev
  python3-torch iproute2
  libfmt-dev catch2 libbenchmark-dev libcli11-dev zlib1g-dev nlohmann-json3-dev
  dataset-fashion-mnist
  afl++
  libonnx-dev libprotobuf-dev protobuf-compiler python3-onnx nodejs
)

# nodejs brings npm (nodesource's build); Debian's separate npm package conflicts with it.
# ONNX Runtime for the ONNX checks (ctest -L onnx): npm's onnxruntime-node, CPU only, into .onnxruntime/.
# Without --onnxruntime-node-install-cuda=skip its install script tries to download a CUDA build.
install_onnxruntime() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  [ -d "$root/.onnxruntime/node_modules/onnxruntime-node" ] && return 0
  if ! command -v npm >/dev/null; then
    # Debian's own nodejs comes without npm: its npm package then brings it.
    apt-get install -y -qq --no-install-recommends npm >/dev/null 2>&1 ||
      { echo "setup: npm is missing: the ONNX Runtime checks (ctest -L onnx) will be skipped"; return 0; }
  fi
  echo "setup: installing onnxruntime-node into $root/.onnxruntime"
  mkdir -p "$root/.onnxruntime"
  npm install --prefix "$root/.onnxruntime" --no-audit --no-fund onnxruntime-node \
    --onnxruntime-node-install-cuda=skip >/dev/null ||
    echo "setup: onnxruntime-node could not be installed: the ONNX Runtime checks (ctest -L onnx) will be skipped"
}
trap install_onnxruntime EXIT

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
