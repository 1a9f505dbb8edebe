#!/usr/bin/env bash
# The README's test command: installs what is missing (with Debian's python3-torch, numpy
# and onnx, for the PyTorch parity and export tests), builds the release configuration and
# runs every test that is not labelled slow or gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh python3-torch python3-numpy python3-onnx
jobs=$(nproc)
start=$(date +%s)
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$jobs"
echo "netsplit: release build took $(( $(date +%s) - start )) s"
ctest --test-dir build/release --output-on-failure -j "$jobs" -LE 'slow|gpu'
echo "netsplit: all tests passed in $(( $(date +%s) - start )) s"
