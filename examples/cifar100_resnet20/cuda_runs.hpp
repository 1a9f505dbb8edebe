// examples/cifar100_resnet20/cuda_runs.hpp — runs on cuda_backend (--backend cuda): each run
// opens its own cuda_context, so its own stream, cuBLAS and cuDNN handles and scratch on the
// device --device names; a study's concurrent runs (--concurrent-runs) thus queue their
// steps on separate streams of the one GPU. Included by the program's CUDA translation units
// only (model_unit.cpp with NETSPLIT_PROGRAM_UNIT 3 or 4, after netsplit/cuda.hpp and run.hpp).
#pragma once

#include <string>

#include "netsplit/cuda.hpp"
#include "world.hpp"

namespace cifar_cli {

template <>
struct run_backend<netsplit::cuda_backend> {
  static netsplit::cuda_context open(int /*threads*/, int /*concurrent_runs*/, int device) {
    netsplit::cuda_options options;
    options.device = device;  // fp32 as on the CPU: no TF32 (cuda_options::allow_tf32)
    return netsplit::cuda_context(options);
  }
  static std::string describe(netsplit::cuda_context& ctx) {
#if NETSPLIT_CUDA_DEVICE
    return "cuda backend: device " + std::to_string(ctx.options().device) +
#if NETSPLIT_CUDA_CUDNN
           ", cuDNN convolutions and batch norm"
#else
           ", im2col + cuBLAS convolutions"
#endif
           + std::string(", one stream per run, fp32 without TF32");
#else
    (void)ctx;
    return "cuda backend on thrust's CPP system: the backend's code run on the host, one thread per run (a "
           "test build, not a GPU)";
#endif
  }
};

}  // namespace cifar_cli
