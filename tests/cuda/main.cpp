// tests/cuda/main.cpp — doctest main of the CUDA backend's tests. On the GPU build it
// exits 77 (ctest's SKIP_RETURN_CODE) when no CUDA device is usable, so machines without a
// GPU report a skip, not a failure. The thrust-CPP build always runs.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "netsplit/backend/cuda/config.hpp"
#if NETSPLIT_CUDA_DEVICE
#include <cuda_runtime_api.h>
#endif

int main(int argc, char** argv) {
#if NETSPLIT_CUDA_DEVICE
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    std::printf("no usable CUDA device (%s): skipping the GPU tests\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "device count 0");
    return 77;
  }
  std::printf("netsplit: testing cuda_backend on the GPU (cuDNN %s)\n", NETSPLIT_CUDA_CUDNN ? "on" : "off");
#else
  std::printf("netsplit: testing cuda_backend on thrust's CPP device system (host)\n");
#endif
  doctest::Context context(argc, argv);
  return context.run();
}
