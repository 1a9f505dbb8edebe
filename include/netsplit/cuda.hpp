// netsplit/cuda.hpp — umbrella header for CUDA users: everything in netsplit.hpp plus
// cuda_backend (models Backend), cuda_context and the explicit transfers to<B>().
// Link the netsplit::cuda CMake target (NETSPLIT_ENABLE_CUDA=ON) and compile with nvcc;
// or, to run the backend's thrust code on the host (tests without a GPU), compile with
// -DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP. netsplit.hpp never includes this file,
// so host-only code sees no CUDA.
#pragma once

#include "netsplit/netsplit.hpp"
#include "netsplit/backend/cuda/context.hpp"
#include "netsplit/backend/cuda/cuda_backend.hpp"
#include "netsplit/backend/cuda/transfer.hpp"
