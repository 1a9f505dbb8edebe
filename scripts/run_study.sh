#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds the trainer program and
# runs the study on the default preset (one seed): baseline -> snapshot -> TPM scores ->
# 9 splits -> derived run, plus a random-split control; prints the comparison table and
# where the report and plots are. Uses CIFAR-100 from data/cifar-100-binary when present
# (scripts/download_cifar100.sh), else the shared CIFAR-10, and says so.
# Extra arguments go to the program, e.g.: scripts/run_study.sh --preset quick --seeds 1,2,3
# NETSPLIT_RANKS=N: data parallel on N processes of this machine (builds with the MPI
# component, runs under mpirun with --threads 1 per process unless you pass --threads).
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${NETSPLIT_RANKS:-1}
if [ "$ranks" -gt 1 ]; then
  bash scripts/install_deps.sh libopenmpi-dev openmpi-bin
  cmake -S . -B build/study-mpi -G Ninja -DCMAKE_BUILD_TYPE=Release -DNETSPLIT_BUILD_TESTS=OFF \
    -DNETSPLIT_BUILD_BENCHMARKS=OFF -DNETSPLIT_BUILD_EXAMPLES=ON -DNETSPLIT_ENABLE_MPI=ON >/dev/null
  cmake --build build/study-mpi --target cifar100_resnet20 -j "$(nproc)"
  exec mpirun --oversubscribe --allow-run-as-root -np "$ranks" build/study-mpi/examples/cifar100_resnet20 --mode study \
    --threads 1 "$@"
fi
bash scripts/install_deps.sh
cmake -S . -B build/study -G Ninja -DCMAKE_BUILD_TYPE=Release -DNETSPLIT_BUILD_TESTS=OFF \
  -DNETSPLIT_BUILD_BENCHMARKS=OFF -DNETSPLIT_BUILD_EXAMPLES=ON >/dev/null
cmake --build build/study --target cifar100_resnet20 -j "$(nproc)"
exec build/study/examples/cifar100_resnet20 --mode study "$@"
