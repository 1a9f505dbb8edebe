// netsplit/backend/cuda/gemm.hpp — row-major, strided-batched matrix products for
// cuda_backend: cuBLAS on the GPU; on thrust's CPP system a thrust for_each stand-in with
// the same contract (used by CI to test the convolution and linear code paths).
#pragma once

#include <cstdint>
#include <type_traits>

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include "netsplit/backend/cuda/check.hpp"
#include "netsplit/backend/cuda/context.hpp"
#include "netsplit/backend/cuda/kernels.hpp"

namespace netsplit::detail::cuda {

/// For b in [0, count): C_b = alpha * op(A_b) * op(B_b) + beta * C_b, all matrices
/// row-major; op(A_b) is m x k, op(B_b) is k x n; X_b = X + b * stride_x (a stride of 0
/// reuses one matrix for the whole batch). beta == 0 overwrites C without reading it.
template <class T>
void gemm(cuda_context& ctx, bool ta, bool tb, int m, int n, int k, T alpha, const T* a, int lda,
          std::int64_t stride_a, const T* b, int ldb, std::int64_t stride_b, T beta, T* c, int ldc,
          std::int64_t stride_c, int count) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "netsplit: cuda_backend GEMM needs float or double");
  if (m <= 0 || n <= 0 || count <= 0) return;
#if NETSPLIT_CUDA_DEVICE
  // Column-major cuBLAS sees each row-major C as C^T = op(B)^T op(A)^T.
  const auto opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  if constexpr (std::is_same_v<T, float>) {
    if (count == 1)
      NETSPLIT_CUDA_CHECK(cublasSgemm(ctx.blas(), opa, opb, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc));
    else
      NETSPLIT_CUDA_CHECK(cublasSgemmStridedBatched(ctx.blas(), opa, opb, n, m, k, &alpha, b, ldb, stride_b, a, lda,
                                                    stride_a, &beta, c, ldc, stride_c, count));
  } else {
    if (count == 1)
      NETSPLIT_CUDA_CHECK(cublasDgemm(ctx.blas(), opa, opb, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc));
    else
      NETSPLIT_CUDA_CHECK(cublasDgemmStridedBatched(ctx.blas(), opa, opb, n, m, k, &alpha, b, ldb, stride_b, a, lda,
                                                    stride_a, &beta, c, ldc, stride_c, count));
  }
#else
  const cuda_kernels::gemm_f<T> f{ta, tb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c};
  NETSPLIT_THRUST("thrust::for_each_n(gemm)",
                  thrust::for_each_n(ctx.policy(), thrust::counting_iterator<std::int64_t>(0),
                                     std::int64_t{count} * m * n, f));
#endif
}

}  // namespace netsplit::detail::cuda
