#!/usr/bin/env bash
# The README's test command: installs what is missing (with Debian's python3-torch, numpy
# and onnx, for the PyTorch parity and export tests, and Open MPI for the data-parallel
# component), builds the release configuration and runs every test that is not labelled
# slow or gpu — with the MPI component (tests labelled mpi run 2 ranks under mpirun).
# NETSPLIT_MPI=0 builds and tests without it, as a user without MPI would: the library's
# default (CMake's NETSPLIT_ENABLE_MPI is OFF) needs no MPI.
set -euo pipefail
cd "$(dirname "$0")/.."
mpi=${NETSPLIT_MPI:-1}
packages=(python3-torch python3-numpy python3-onnx)
[ "$mpi" = 1 ] && packages+=(libopenmpi-dev openmpi-bin)
bash scripts/install_deps.sh "${packages[@]}"
jobs=$(nproc)
start=$(date +%s)
mpi_flag=OFF
[ "$mpi" = 1 ] && mpi_flag=ON
# where thrust's headers are (CUDA's CCCL), also the program on the CUDA backend's code run on
# the host (cifar100_resnet20_thrust_cpp, tests/test_cuda_program.sh)
thrust_flag=OFF
if [ -f /usr/local/cuda/include/cccl/thrust/device_malloc.h ] || [ -f /usr/local/cuda/include/thrust/device_malloc.h ]; then
  thrust_flag=ON
else
  echo "netsplit: no thrust headers under /usr/local/cuda: the program's CUDA-backend test is not built"
fi
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DNETSPLIT_ENABLE_MPI=$mpi_flag \
  -DNETSPLIT_BUILD_THRUST_CPP_PROGRAM=$thrust_flag >/dev/null
cmake --build build/release -j "$jobs"
echo "netsplit: release build (MPI component: $mpi_flag) took $(( $(date +%s) - start )) s"
ctest --test-dir build/release --output-on-failure -j "$jobs" -LE 'slow|gpu'
echo "netsplit: all tests passed in $(( $(date +%s) - start )) s"
