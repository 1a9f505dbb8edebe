// examples/cifar100_resnet20/model_unit.cpp — the runs of one model family (run.hpp's
// run_model for each depth), compiled once per family by examples/CMakeLists.txt with
// NETSPLIT_PROGRAM_FAMILY (resnet or vgg) defined. The depths of a family share their layer
// and block types, which one translation unit compiles once: a ResNet20 and a ResNet32 took
// 205 s together against 129 s alone (g++ 12 -O3, 2026-12-05), so the four depths in one
// unit cost about 0.7 of four units, while the two families still build in parallel.
#include "run.hpp"

namespace cifar_cli {
#define NETSPLIT_INSTANTIATE_RUN_MODEL(D) template int run_model<family::NETSPLIT_PROGRAM_FAMILY, D>(const run_request&);
#if NETSPLIT_PROGRAM_FAMILY_IS_RESNET
NETSPLIT_INSTANTIATE_RUN_MODEL(20)
NETSPLIT_INSTANTIATE_RUN_MODEL(32)
NETSPLIT_INSTANTIATE_RUN_MODEL(44)
NETSPLIT_INSTANTIATE_RUN_MODEL(56)
#else
NETSPLIT_INSTANTIATE_RUN_MODEL(11)
NETSPLIT_INSTANTIATE_RUN_MODEL(13)
NETSPLIT_INSTANTIATE_RUN_MODEL(16)
NETSPLIT_INSTANTIATE_RUN_MODEL(19)
#endif
#undef NETSPLIT_INSTANTIATE_RUN_MODEL
}  // namespace cifar_cli
