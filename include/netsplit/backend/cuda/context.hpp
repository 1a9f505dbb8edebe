// netsplit/backend/cuda/context.hpp — cuda_context: the runtime resources of cuda_backend.
// It owns the CUDA stream every operation is queued on, the cuBLAS handle (and the cuDNN
// handle with its convolution plans when cuDNN is used) and the scratch buffers of the
// heavy operations. Created in the constructor, destroyed in the destructor: no globals,
// no init/finalize pairs. One context serves one thread at a time.
// Ordering: the stream is a blocking stream, so the backend's static memory operations
// (allocate, copy, copy_to_host, fill: thrust on the legacy default stream, which take no
// context) are ordered with the work queued here; a copy to the host waits for it.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>

#include <thrust/device_free.h>
#include <thrust/device_malloc.h>
#include <thrust/device_ptr.h>

#include "netsplit/backend/cuda/check.hpp"
#include "netsplit/backend/cuda/config.hpp"
#include "netsplit/core/workspace.hpp"

#if NETSPLIT_CUDA_DEVICE
#include <thrust/system/cuda/execution_policy.h>
#else
#include <thrust/system/cpp/execution_policy.h>
#endif
#if NETSPLIT_CUDA_CUDNN
#include "netsplit/backend/cuda/cudnn_plans.hpp"
#endif

namespace netsplit {

/// How a cuda_context is set up.
struct cuda_options {
  int device = 0;           // CUDA device ordinal (ignored on thrust's CPP system)
  bool allow_tf32 = false;  // let cuBLAS/cuDNN use TF32 tensor cores for fp32 (10-bit mantissa
                            // products: faster, but results then differ from the CPU backend
                            // by ~1e-3 relative instead of ~1e-6)
};

class cuda_context {
 public:
  static constexpr int scratch_slots = 4;

  explicit cuda_context(cuda_options options = {}) : options_(options) {
#if NETSPLIT_CUDA_DEVICE
    try {
      NETSPLIT_CUDA_CHECK(cudaSetDevice(options_.device));
      NETSPLIT_CUDA_CHECK(cudaStreamCreate(&stream_));
      NETSPLIT_CUDA_CHECK(cublasCreate(&blas_));
      NETSPLIT_CUDA_CHECK(cublasSetStream(blas_, stream_));
      NETSPLIT_CUDA_CHECK(cublasSetMathMode(blas_, options_.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
#if NETSPLIT_CUDA_CUDNN
      NETSPLIT_CUDA_CHECK(cudnnCreate(&dnn_));
      NETSPLIT_CUDA_CHECK(cudnnSetStream(dnn_, stream_));
#endif
    } catch (...) {
      release();
      throw;
    }
#endif
  }
  ~cuda_context() { release(); }
  cuda_context(const cuda_context&) = delete;
  cuda_context& operator=(const cuda_context&) = delete;

  const cuda_options& options() const { return options_; }

  /// The thrust execution policy of this context: the context's stream without a
  /// synchronisation after each algorithm (thrust's CPP system: the host, in order).
  auto policy() const {
#if NETSPLIT_CUDA_DEVICE
    return thrust::cuda::par_nosync.on(stream_);
#else
    return thrust::cpp::par;
#endif
  }

  /// Waits until every operation queued on this context has finished.
  void synchronize() {
#if NETSPLIT_CUDA_DEVICE
    NETSPLIT_CUDA_CHECK(cudaStreamSynchronize(stream_));
#endif
  }

#if NETSPLIT_CUDA_DEVICE
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t blas() const { return blas_; }
#endif
#if NETSPLIT_CUDA_CUDNN
  cudnnHandle_t dnn() const { return dnn_; }
  detail::cudnn::plan_cache& conv_plans() { return plans_; }
#endif

  /// Host-side loops of callers (Backend's parallel_for): one chunk on the calling thread.
  template <class F>
  void parallel_for(std::ptrdiff_t n, F&& body) {
    if (n > 0) body(std::ptrdiff_t{0}, n, 0);
  }

  /// Tensors that live for part of a backward pass (core/workspace.hpp).
  tensor_workspace& workspace() { return workspace_; }

  /// Device scratch: slot `slot` (0..3) holds at least `count` elements of T, valid until
  /// the next call with the same slot. Growing it waits for queued work first.
  template <class T>
  T* scratch(int slot, std::size_t count) {
    auto& s = scratch_.at(static_cast<std::size_t>(slot));
    const std::size_t bytes = count * sizeof(T);
    if (bytes > s.bytes) {
      synchronize();
      free_buffer(s);
      // grow geometrically so a slowly growing network (splits) reallocates rarely
      const std::size_t want = std::max(bytes, s.bytes + s.bytes / 2);
      NETSPLIT_THRUST("thrust::device_malloc<char>(scratch)", s.ptr = thrust::device_malloc<char>(want));
      s.bytes = want;
    }
    return reinterpret_cast<T*>(s.ptr.get());
  }

 private:
  struct buffer {
    thrust::device_ptr<char> ptr{};
    std::size_t bytes = 0;
  };
  static void free_buffer(buffer& b) noexcept {
    if (b.ptr.get()) {
      try {
        thrust::device_free(b.ptr);
      } catch (...) {  // freeing never reports; a broken device fails the next call
      }
    }
    b.ptr = thrust::device_ptr<char>{};
    b.bytes = 0;
  }
  void release() noexcept {
#if NETSPLIT_CUDA_DEVICE
    if (stream_) cudaStreamSynchronize(stream_);
#endif
    for (auto& b : scratch_) free_buffer(b);
    workspace_.clear();
#if NETSPLIT_CUDA_CUDNN
    plans_.clear();
    if (dnn_) cudnnDestroy(dnn_);
    dnn_ = nullptr;
#endif
#if NETSPLIT_CUDA_DEVICE
    if (blas_) cublasDestroy(blas_);
    blas_ = nullptr;
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
#endif
  }

  cuda_options options_;
  std::array<buffer, scratch_slots> scratch_{};
  tensor_workspace workspace_;
#if NETSPLIT_CUDA_DEVICE
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
#endif
#if NETSPLIT_CUDA_CUDNN
  cudnnHandle_t dnn_ = nullptr;
  detail::cudnn::plan_cache plans_;
#endif
};

}  // namespace netsplit
