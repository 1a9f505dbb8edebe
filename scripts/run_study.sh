#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds the trainer program and
# runs the study on the default preset (one seed): baseline -> snapshot -> TPM scores ->
# 9 splits -> derived run, plus a random-split control; prints the comparison table and
# where the report and plots are. Uses CIFAR-100 from data/cifar-100-binary when present
# (scripts/download_cifar100.sh), else the shared CIFAR-10, and says so.
# Extra arguments go to the program, e.g.: scripts/run_study.sh --preset quick --seeds 1,2,3
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
cmake -S . -B build/study -G Ninja -DCMAKE_BUILD_TYPE=Release -DNETSPLIT_BUILD_TESTS=OFF \
  -DNETSPLIT_BUILD_BENCHMARKS=OFF -DNETSPLIT_BUILD_EXAMPLES=ON >/dev/null
cmake --build build/study --target cifar100_resnet20 -j "$(nproc)"
exec build/study/examples/cifar100_resnet20 --mode study "$@"
