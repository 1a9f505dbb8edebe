// netsplit/backend/cuda/check.hpp — every CUDA runtime, cuBLAS, cuDNN and thrust call of
// the CUDA backend goes through these checks; a failure becomes netsplit::backend_error
// naming the call as written, the library's error name and string, and the source line.
#pragma once

#include <exception>
#include <new>
#include <string>
#include <utility>

#include <thrust/system_error.h>

#include "netsplit/backend/cuda/config.hpp"
#include "netsplit/core/errors.hpp"

#if NETSPLIT_CUDA_DEVICE
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#if NETSPLIT_CUDA_CUDNN
#include <cudnn.h>
#endif
#endif

namespace netsplit::detail::cuda {

[[noreturn]] inline void fail(const char* call, const std::string& why, const char* file, int line) {
  raise<backend_error>("netsplit: `", call, "` failed: ", why, " [", file, ":", line, "]");
}

#if NETSPLIT_CUDA_DEVICE
inline void check(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) [[unlikely]]
    fail(call, concat(cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"), file, line);
}
inline void check(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) [[unlikely]]
    fail(call, concat(cublasGetStatusName(s), " (", cublasGetStatusString(s), ")"), file, line);
}
#if NETSPLIT_CUDA_CUDNN
inline void check(cudnnStatus_t s, const char* call, const char* file, int line) {
  if (s != CUDNN_STATUS_SUCCESS) [[unlikely]]
    fail(call, cudnnGetErrorString(s), file, line);
}
#endif
#endif

/// Runs f, turning thrust's and the allocator's exceptions into backend_error naming
/// `call` (thrust reports CUDA failures of its kernels and copies as system_error).
template <class F>
decltype(auto) guarded(const char* call, const char* file, int line, F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (const netsplit::error&) {
    throw;
  } catch (const thrust::system_error& e) {
    fail(call, e.what(), file, line);
  } catch (const std::bad_alloc& e) {
    fail(call, concat("out of memory (", e.what(), ")"), file, line);
  }
}

}  // namespace netsplit::detail::cuda

/// Checks a CUDA runtime, cuBLAS or cuDNN status; throws backend_error naming the call.
#define NETSPLIT_CUDA_CHECK(call) ::netsplit::detail::cuda::check((call), #call, __FILE__, __LINE__)

/// Runs thrust statements, converting their exceptions to backend_error naming `what`.
#define NETSPLIT_THRUST(what, ...) ::netsplit::detail::cuda::guarded(what, __FILE__, __LINE__, [&]() { __VA_ARGS__; })
