// examples/cifar100_resnet20/model_unit.cpp — the runs of a group of models (run.hpp's
// run_model), compiled once per group by examples/CMakeLists.txt with NETSPLIT_PROGRAM_UNIT
// defined. Models of one family share their layer and block types, which a translation unit
// compiles once (g++ 12 -O3, 2026-12-05, AMD EPYC: ResNet20 alone 129 s beside ResNet20 and
// ResNet32 together 205 s; in a build, all four ResNets in one unit 441 s and the four VGGs
// 246 s, against 590 and 380 s in eight units in CI's build of 8376052), while the groups
// still build in parallel. Units 3 (ResNet20 and 56) and 4 (VGG11), in a build with the CUDA
// backend (nvcc, or thrust's CPP system for tests), hold the models cli.hpp's cuda_model() accepts on
// cuda_backend: the study's models, not all eight, for CI's time (nvcc -O0, 2026-12-07, AMD
// EPYC: all eight models in one unit 332 s; on thrust's CPP system with g++ -O3 263 s).
#if NETSPLIT_PROGRAM_UNIT >= 3
#include "netsplit/cuda.hpp"
#endif
#include "run.hpp"
#if NETSPLIT_PROGRAM_UNIT >= 3
#include "cuda_runs.hpp"
#endif

namespace cifar_cli {
#if NETSPLIT_PROGRAM_UNIT >= 3
#define NETSPLIT_INSTANTIATE_RUN_MODEL(F, D) template int run_model<family::F, D, netsplit::cuda_backend>(const run_request&);
#else
#define NETSPLIT_INSTANTIATE_RUN_MODEL(F, D) template int run_model<family::F, D, netsplit::cpu_backend>(const run_request&);
#endif
#if NETSPLIT_PROGRAM_UNIT == 3
NETSPLIT_INSTANTIATE_RUN_MODEL(resnet, 20)
NETSPLIT_INSTANTIATE_RUN_MODEL(resnet, 56)
#elif NETSPLIT_PROGRAM_UNIT == 4
NETSPLIT_INSTANTIATE_RUN_MODEL(vgg, 11)
#elif NETSPLIT_PROGRAM_UNIT == 0
NETSPLIT_INSTANTIATE_RUN_MODEL(resnet, 20)
NETSPLIT_INSTANTIATE_RUN_MODEL(resnet, 32)
#elif NETSPLIT_PROGRAM_UNIT == 1
NETSPLIT_INSTANTIATE_RUN_MODEL(resnet, 44)
NETSPLIT_INSTANTIATE_RUN_MODEL(resnet, 56)
#elif NETSPLIT_PROGRAM_UNIT == 2
NETSPLIT_INSTANTIATE_RUN_MODEL(vgg, 11)
NETSPLIT_INSTANTIATE_RUN_MODEL(vgg, 13)
NETSPLIT_INSTANTIATE_RUN_MODEL(vgg, 16)
NETSPLIT_INSTANTIATE_RUN_MODEL(vgg, 19)
#else
#error "NETSPLIT_PROGRAM_UNIT must be 0 to 4 (examples/CMakeLists.txt)"
#endif
#undef NETSPLIT_INSTANTIATE_RUN_MODEL
}  // namespace cifar_cli
