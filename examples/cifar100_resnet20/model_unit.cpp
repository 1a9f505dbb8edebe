// examples/cifar100_resnet20/model_unit.cpp — the runs of one model (run.hpp's run_model),
// compiled once per model by examples/CMakeLists.txt with NETSPLIT_PROGRAM_FAMILY (resnet or
// vgg) and NETSPLIT_PROGRAM_DEPTH defined, so the models compile in parallel.
#include "run.hpp"

template int cifar_cli::run_model<cifar_cli::family::NETSPLIT_PROGRAM_FAMILY, NETSPLIT_PROGRAM_DEPTH>(
    const cifar_cli::run_request&);
