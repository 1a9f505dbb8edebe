// netsplit/backend/cuda/config.hpp — which device system the CUDA backend runs on.
// The backend is written against thrust. Compiled by nvcc with thrust's default (CUDA)
// device system it runs on the GPU and uses cuBLAS (and cuDNN when NETSPLIT_CUDA_CUDNN
// is 1). Compiled by any C++20 compiler with
// -DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP it runs the same thrust code on the
// host, with portable stand-ins for the library calls: that is how CI tests the backend's
// logic without a GPU. Only the CUDA umbrella (netsplit/cuda.hpp) includes this folder.
#pragma once

#include <thrust/detail/config.h>

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#if !defined(__CUDACC__)
#error "netsplit's cuda_backend on thrust's CUDA system must be compiled by nvcc; to run it on the host, define THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP"
#endif
/// 1 when the backend drives a GPU, 0 when thrust's device system is the host (CPP).
#define NETSPLIT_CUDA_DEVICE 1
#elif THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CPP
#define NETSPLIT_CUDA_DEVICE 0
#else
#error "netsplit's cuda_backend supports thrust's CUDA and CPP device systems only"
#endif

/// cuDNN for convolution and batch normalisation (set by the netsplit::cuda CMake target
/// when cuDNN is found); without it, convolutions are im2col + cuBLAS GEMMs and batch
/// normalisation runs on thrust.
#ifndef NETSPLIT_CUDA_CUDNN
#define NETSPLIT_CUDA_CUDNN 0
#endif
#if !NETSPLIT_CUDA_DEVICE
#undef NETSPLIT_CUDA_CUDNN
#define NETSPLIT_CUDA_CUDNN 0
#endif

/// Annotation of functors that thrust runs on the device: empty unless nvcc compiles.
#if defined(__CUDACC__)
#define NETSPLIT_HD __host__ __device__
#else
#define NETSPLIT_HD
#endif
