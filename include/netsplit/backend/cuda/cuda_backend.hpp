// netsplit/backend/cuda/cuda_backend.hpp — the CUDA backend: models Backend on thrust.
// Storage is thrust device memory (thrust::device_malloc); element-wise operations,
// reductions, BN statistics, the shortcut scatter, pooling, the loss and SGD are thrust
// algorithms over the functors of kernels.hpp, queued on the context's stream without
// host synchronisation (all_finite and softmax_cross_entropy return host values, so they
// wait). Convolutions: cuDNN when NETSPLIT_CUDA_CUDNN is 1, else im2col (thrust) + cuBLAS
// strided-batched GEMM; linear layers: cuBLAS. Semantics are the CPU backend's (NCHW,
// weights [out, in, k, k], BN with biased batch variance, unbiased running variance and
// momentum 0.1, PyTorch-form SGD); results agree with it to rounding (see
// tests/cuda/backend_tests.hpp for the tolerances).
// Determinism: every reduction has a fixed order and cuDNN algorithms are picked
// deterministic first, so a fixed context configuration gives the same results run to run.
// The static memory operations take no context: they run on the legacy default stream,
// which orders them with the context's blocking stream (see context.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <thrust/copy.h>
#include <thrust/device_free.h>
#include <thrust/device_malloc.h>
#include <thrust/device_ptr.h>
#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/logical.h>
#include <thrust/reduce.h>
#include <thrust/transform.h>
#include <thrust/transform_reduce.h>

#include "netsplit/backend/cuda/check.hpp"
#include "netsplit/backend/cuda/config.hpp"
#include "netsplit/backend/cuda/context.hpp"
#include "netsplit/backend/cuda/gemm.hpp"
#include "netsplit/backend/cuda/kernels.hpp"
#include "netsplit/backend/backend.hpp"
#include "netsplit/backend/descriptors.hpp"
#include "netsplit/core/errors.hpp"

namespace netsplit {

struct cuda_backend {
  using context = cuda_context;
  static constexpr const char* name = "cuda";
  /// Device memory (also on thrust's CPP system, so its tests take the GPU's staging path).
  static constexpr bool host_memory = false;

  /// Policy of the context-free memory operations: the legacy default stream, no host wait.
  static auto default_policy() {
#if NETSPLIT_CUDA_DEVICE
    return thrust::cuda::par_nosync.on(cudaStreamLegacy);
#else
    return thrust::cpp::par;
#endif
  }

  // ---- memory (static: no context; see the ordering note above) ------------------------------
  template <class T>
  static T* allocate(std::size_t n) {
    T* p = nullptr;
    NETSPLIT_THRUST("thrust::device_malloc<T>(n)", p = thrust::device_malloc<T>(n).get());
    return p;
  }
  template <class T>
  static void deallocate(T* p, std::size_t) noexcept {
    try {
      thrust::device_free(thrust::device_pointer_cast(p));
    } catch (...) {  // a destructor cannot report; a broken device fails the next checked call
    }
  }
  template <class T>
  static void copy(const T* src, T* dst, std::size_t n) {
    NETSPLIT_THRUST("thrust::copy_n(device -> device)",
                    thrust::copy_n(default_policy(), src, n, dst));
  }
  template <class T>
  static void copy_to_host(const T* src, T* dst, std::size_t n) {
    NETSPLIT_THRUST("thrust::copy_n(device -> host)",
                    thrust::copy_n(thrust::device_pointer_cast(src), n, dst));
  }
  template <class T>
  static void copy_from_host(const T* src, T* dst, std::size_t n) {
    NETSPLIT_THRUST("thrust::copy_n(host -> device)",
                    thrust::copy_n(src, n, thrust::device_pointer_cast(dst)));
  }
  template <class T>
  static void fill(T* p, std::size_t n, T value) {
    NETSPLIT_THRUST("thrust::fill_n", thrust::fill_n(default_policy(), p, n, value));
  }

  // ---- element-wise ------------------------------------------------------------------------
  /// y += a * x
  template <class T>
  static void axpy(context& ctx, std::int64_t n, T a, const T* x, T* y) {
    NETSPLIT_THRUST("thrust::transform(axpy)",
                    thrust::transform(ctx.policy(), x, x + n, y, y, detail::cuda_kernels::axpy_f<T>{a}));
  }
  /// y = max(x, 0)
  template <class T>
  static void relu_forward(context& ctx, std::int64_t n, const T* x, T* y) {
    NETSPLIT_THRUST("thrust::transform(relu)",
                    thrust::transform(ctx.policy(), x, x + n, y, detail::cuda_kernels::relu_f<T>{}));
  }
  /// dx = dy where y > 0, else 0 (y is the forward output).
  template <class T>
  static void relu_backward(context& ctx, std::int64_t n, const T* y, const T* dy, T* dx) {
    NETSPLIT_THRUST("thrust::transform(relu_backward)",
                    thrust::transform(ctx.policy(), y, y + n, dy, dx, detail::cuda_kernels::relu_grad_f<T>{}));
  }
  /// y = max(a + b, 0)
  template <class T>
  static void add_relu_forward(context& ctx, std::int64_t n, const T* a, const T* b, T* y) {
    NETSPLIT_THRUST("thrust::transform(add_relu)",
                    thrust::transform(ctx.policy(), a, a + n, b, y, detail::cuda_kernels::add_relu_f<T>{}));
  }
  /// y = a + b
  template <class T>
  static void add(context& ctx, std::int64_t n, const T* a, const T* b, T* y) {
    NETSPLIT_THRUST("thrust::transform(add)", thrust::transform(ctx.policy(), a, a + n, b, y, thrust::plus<T>{}));
  }
  /// True when every element is finite (waits for the context's queued work).
  template <class T>
  static bool all_finite(context& ctx, std::int64_t n, const T* x) {
    bool bad = false;
    NETSPLIT_THRUST("thrust::any_of(not finite)",
                    bad = thrust::any_of(ctx.policy(), x, x + n, detail::cuda_kernels::not_finite_f<T>{}));
    return !bad;
  }

  // ---- convolution -------------------------------------------------------------------------
  template <class T>
  static void conv2d_forward(context& ctx, const conv2d_desc& d, const T* x, const T* w, T* y) {
#if NETSPLIT_CUDA_CUDNN
    auto& plan = ctx.conv_plans().get<T>(ctx.dnn(), d, ctx.options().allow_tf32);
    void* ws = plan.workspace ? ctx.scratch<char>(3, plan.workspace) : nullptr;
    const T one = 1, zero = 0;
    plan.use_math(plan.forward_math);
    NETSPLIT_CUDA_CHECK(cudnnConvolutionForward(ctx.dnn(), &one, plan.x.d, x, plan.w.d, w, plan.conv.d, plan.forward,
                                                ws, plan.workspace, &zero, plan.y.d, y));
#else
    lowered_conv_forward(ctx, d, x, w, y);
#endif
  }

  /// dw = dL/dw (overwritten); dx = dL/dx (overwritten) unless dx is null.
  /// y = conv(x, w) + shift[m] (+ r) (then max(., 0) with relu): a convolution with an
  /// eval-mode batch norm folded into w and shift (batch_norm_fold), the residual sum and the
  /// ReLU; here the convolution, then one element-wise pass. shift and r may be null.
  template <class T>
  static void conv2d_forward_affine(context& ctx, const conv2d_desc& d, const T* x, const T* w, const T* shift,
                                    const T* r, bool relu, T* y) {
    conv2d_forward(ctx, d, x, w, y);
    if (!shift && !r && !relu) return;
    const int spatial = d.out_height() * d.out_width();
    const std::int64_t n = std::int64_t{d.batch} * d.out_channels * spatial;
    NETSPLIT_THRUST("thrust::transform(affine_epilogue)",
                    thrust::transform(ctx.policy(), count(0), count(n), y,
                                      detail::cuda_kernels::affine_epilogue_f<T>{y, shift, r, d.out_channels, spatial,
                                                                                 relu}));
  }
  /// An eval-mode batch norm after a convolution, folded into it (see the CPU backend).
  template <class T>
  static void batch_norm_fold(context& ctx, const batch_norm_desc& d, std::int64_t row, const T* w, const T* gamma,
                              const T* beta, const T* running_mean, const T* running_var, T* w_out, T* shift) {
    NETSPLIT_THRUST("thrust::for_each_n(batch_norm_fold)",
                    thrust::for_each_n(ctx.policy(), thrust::counting_iterator<int>(0), d.channels,
                                       detail::cuda_kernels::bn_fold_f<T>{w, gamma, beta, running_mean, running_var,
                                                                          d.eps, row, w_out, shift}));
  }

  /// dw = dL/dw; dx = dL/dx (unless null) plus dx_add where that is not null (the CPU
  /// backend's contract; here a separate element-wise pass).
  template <class T>
  static void conv2d_backward(context& ctx, const conv2d_desc& d, const T* x, const T* w, const T* dy, T* dx,
                              T* dw, const T* dx_add = nullptr) {
#if NETSPLIT_CUDA_CUDNN
    auto& plan = ctx.conv_plans().get<T>(ctx.dnn(), d, ctx.options().allow_tf32);
    void* ws = plan.workspace ? ctx.scratch<char>(3, plan.workspace) : nullptr;
    const T one = 1, zero = 0;
    plan.use_math(plan.backward_filter_math);
    NETSPLIT_CUDA_CHECK(cudnnConvolutionBackwardFilter(ctx.dnn(), &one, plan.x.d, x, plan.y.d, dy, plan.conv.d,
                                                       plan.backward_filter, ws, plan.workspace, &zero, plan.w.d, dw));
    if (dx) {
      plan.use_math(plan.backward_data_math);
      NETSPLIT_CUDA_CHECK(cudnnConvolutionBackwardData(ctx.dnn(), &one, plan.w.d, w, plan.y.d, dy, plan.conv.d,
                                                       plan.backward_data, ws, plan.workspace, &zero, plan.x.d, dx));
    }
#else
    lowered_conv_backward(ctx, d, x, w, dy, dx, dw);
#endif
    if (dx && dx_add) add(ctx, std::int64_t{d.batch} * d.in_channels * d.in_height * d.in_width, dx, dx_add, dx);
  }

  // ---- batch normalisation -----------------------------------------------------------------
  /// Training mode: batch statistics (biased variance) normalise; saves mean and
  /// 1/sqrt(var + eps); running statistics take the unbiased variance.
  template <class T>
  static void batch_norm_forward_train(context& ctx, const batch_norm_desc& d, const T* x, const T* gamma,
                                       const T* beta, T* y, T* save_mean, T* save_invstd, T* running_mean,
                                       T* running_var) {
#if NETSPLIT_CUDA_CUDNN
    const detail::cudnn::tensor_desc xd(detail::cudnn::data_type<T>, d.batch, d.channels, d.spatial, 1);
    const detail::cudnn::tensor_desc pd(detail::cudnn::data_type<T>, 1, d.channels, 1, 1);
    const T one = 1, zero = 0;
    NETSPLIT_CUDA_CHECK(cudnnBatchNormalizationForwardTraining(
        ctx.dnn(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd.d, x, xd.d, y, pd.d, gamma, beta, d.momentum,
        running_mean, running_var, d.eps, save_mean, save_invstd));
#else
    namespace k = detail::cuda_kernels;
    const std::int64_t planes = std::int64_t{d.batch} * d.channels;
    double* s1 = ctx.scratch<double>(1, static_cast<std::size_t>(2 * planes));
    double* s2 = s1 + planes;
    T* scale = ctx.scratch<T>(2, static_cast<std::size_t>(2 * d.channels));
    T* shift = scale + d.channels;
    NETSPLIT_THRUST("batch_norm_forward_train (thrust)",
      thrust::for_each_n(ctx.policy(), count(0), planes, k::bn_plane_sums_f<T>{x, d.channels, d.spatial, s1, s2});
      thrust::for_each_n(ctx.policy(), thrust::counting_iterator<int>(0), d.channels,
                         k::bn_train_stats_f<T>{x, gamma, beta, d.batch, d.channels, d.spatial, d.eps, d.momentum, s1,
                                                s2, save_mean, save_invstd, running_mean, running_var, scale, shift});
      thrust::transform(ctx.policy(), count(0), count(planes * d.spatial), y,
                        k::bn_normalize_f<T>{x, scale, shift, d.channels, d.spatial}));
#endif
  }

  /// Evaluation mode: running statistics normalise; writes the mean and 1/sqrt(var + eps)
  /// used, so batch_norm_backward can differentiate this mode too.
  template <class T>
  static void batch_norm_forward_eval(context& ctx, const batch_norm_desc& d, const T* x, const T* gamma,
                                      const T* beta, const T* running_mean, const T* running_var, T* y,
                                      T* save_mean, T* save_invstd) {
    namespace k = detail::cuda_kernels;
    T* scale = ctx.scratch<T>(2, static_cast<std::size_t>(2 * d.channels));
    T* shift = scale + d.channels;
    const std::int64_t n = std::int64_t{d.batch} * d.channels * d.spatial;
    NETSPLIT_THRUST("batch_norm_forward_eval (thrust)",
      thrust::for_each_n(ctx.policy(), thrust::counting_iterator<int>(0), d.channels,
                         k::bn_eval_stats_f<T>{gamma, beta, running_mean, running_var, d.eps, save_mean, save_invstd,
                                               scale, shift});
      thrust::transform(ctx.policy(), count(0), count(n), y, k::bn_normalize_f<T>{x, scale, shift, d.channels, d.spatial}));
  }

  /// Gradients of either mode (batch_stats: train mode). dgamma/dbeta are overwritten; dx
  /// too unless it is null.
  template <class T>
  static void batch_norm_backward(context& ctx, const batch_norm_desc& d, bool batch_stats, const T* x,
                                  const T* gamma, const T* save_mean, const T* save_invstd, const T* dy, T* dx,
                                  T* dgamma, T* dbeta) {
#if NETSPLIT_CUDA_CUDNN
    if (batch_stats && dx) {
      const detail::cudnn::tensor_desc xd(detail::cudnn::data_type<T>, d.batch, d.channels, d.spatial, 1);
      const detail::cudnn::tensor_desc pd(detail::cudnn::data_type<T>, 1, d.channels, 1, 1);
      const T one = 1, zero = 0;
      NETSPLIT_CUDA_CHECK(cudnnBatchNormalizationBackward(ctx.dnn(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero,
                                                          xd.d, x, xd.d, dy, xd.d, dx, pd.d, gamma, dgamma, dbeta,
                                                          d.eps, save_mean, save_invstd));
      return;
    }
#endif
    namespace k = detail::cuda_kernels;
    const std::int64_t planes = std::int64_t{d.batch} * d.channels;
    double* s1 = ctx.scratch<double>(1, static_cast<std::size_t>(2 * planes));
    double* s2 = s1 + planes;
    T* g = ctx.scratch<T>(2, static_cast<std::size_t>(3 * d.channels));
    T* cx = g + d.channels;
    T* c0 = cx + d.channels;
    NETSPLIT_THRUST("batch_norm_backward (thrust)",
      thrust::for_each_n(ctx.policy(), count(0), planes,
                         k::bn_grad_sums_f<T>{x, dy, save_mean, d.channels, d.spatial, s1, s2});
      thrust::for_each_n(ctx.policy(), thrust::counting_iterator<int>(0), d.channels,
                         k::bn_backward_coef_f<T>{gamma, save_invstd, d.batch, d.channels, d.spatial, batch_stats, s1,
                                                  s2, dgamma, dbeta, g, cx, c0});
      if (dx) thrust::transform(ctx.policy(), count(0), count(planes * d.spatial), dx,
                                k::bn_input_grad_f<T>{x, dy, save_mean, g, cx, c0, d.channels, d.spatial}));
  }

  // Batch norm fused with the ReLU (and residual sum) after it, as the CPU backend has them.
  // Here they are compositions of the plain operations: cuDNN's batch norm, then an
  // in-place element-wise pass (one extra pass on the device; same results).
  /// y = max(bn(x) + r, 0), or max(bn(x), 0) when r is null; training mode.
  template <class T>
  static void batch_norm_relu_forward_train(context& ctx, const batch_norm_desc& d, const T* x, const T* gamma,
                                            const T* beta, const T* r, T* y, T* save_mean, T* save_invstd,
                                            T* running_mean, T* running_var) {
    batch_norm_forward_train(ctx, d, x, gamma, beta, y, save_mean, save_invstd, running_mean, running_var);
    relu_epilogue(ctx, d, r, y);
  }
  /// Evaluation mode of batch_norm_relu_forward_train.
  template <class T>
  static void batch_norm_relu_forward_eval(context& ctx, const batch_norm_desc& d, const T* x, const T* gamma,
                                           const T* beta, const T* running_mean, const T* running_var, const T* r,
                                           T* y, T* save_mean, T* save_invstd) {
    batch_norm_forward_eval(ctx, d, x, gamma, beta, running_mean, running_var, y, save_mean, save_invstd);
    relu_epilogue(ctx, d, r, y);
  }
  /// Gradients of y = max(bn(x) (+ r), 0) given dL/dy and y: dy masked by y > 0 (into dr,
  /// dL/dr, where that is not null, else into scratch), then batch norm's.
  template <class T>
  static void batch_norm_relu_backward(context& ctx, const batch_norm_desc& d, bool batch_stats, const T* x,
                                       const T* y, const T* gamma, const T* save_mean, const T* save_invstd,
                                       const T* dy, T* dx, T* dgamma, T* dbeta, T* dr = nullptr) {
    const std::int64_t n = std::int64_t{d.batch} * d.channels * d.spatial;
    T* masked = dr ? dr : ctx.scratch<T>(0, static_cast<std::size_t>(n));
    relu_backward(ctx, n, y, dy, masked);
    batch_norm_backward(ctx, d, batch_stats, x, gamma, save_mean, save_invstd, masked, dx, dgamma, dbeta);
  }

  // ---- shortcut, pooling, linear, loss -------------------------------------------------------
  /// y[n, dst[e]] += coef[e] * x[n, src[e]] subsampled by the stride, for each entry e;
  /// output channels no entry maps to are zero. src, dst, coef are device arrays.
  template <class T>
  static void channel_scatter_forward(context& ctx, const channel_scatter_desc& d, const T* x, const int* src,
                                      const int* dst, const T* coef, T* y) {
    const int ho = (d.in_height - 1) / d.stride + 1, wo = (d.in_width - 1) / d.stride + 1;
    const std::int64_t n = std::int64_t{d.batch} * d.out_channels * ho * wo;
    NETSPLIT_THRUST("thrust::transform(channel_scatter_forward)",
                    thrust::transform(ctx.policy(), count(0), count(n), y,
                                      detail::cuda_kernels::scatter_forward_f<T>{x, src, dst, coef, d.entries,
                                                                                 d.in_channels, d.out_channels,
                                                                                 d.in_height, d.in_width, d.stride, ho,
                                                                                 wo}));
  }
  /// Adjoint of channel_scatter_forward: dx (overwritten) gathers coef * dy at the sampled pixels.
  template <class T>
  static void channel_scatter_backward(context& ctx, const channel_scatter_desc& d, const T* dy, const int* src,
                                       const int* dst, const T* coef, T* dx) {
    const int ho = (d.in_height - 1) / d.stride + 1, wo = (d.in_width - 1) / d.stride + 1;
    const std::int64_t n = std::int64_t{d.batch} * d.in_channels * d.in_height * d.in_width;
    NETSPLIT_THRUST("thrust::transform(channel_scatter_backward)",
                    thrust::transform(ctx.policy(), count(0), count(n), dx,
                                      detail::cuda_kernels::scatter_backward_f<T>{dy, src, dst, coef, d.entries,
                                                                                  d.in_channels, d.out_channels,
                                                                                  d.in_height, d.in_width, d.stride,
                                                                                  ho, wo}));
  }

  /// y[p] = mean of plane p of x.
  template <class T>
  static void global_avg_pool_forward(context& ctx, std::int64_t planes, int spatial, const T* x, T* y) {
    NETSPLIT_THRUST("thrust::transform(global_avg_pool_forward)",
                    thrust::transform(ctx.policy(), count(0), count(planes), y,
                                      detail::cuda_kernels::avg_pool_forward_f<T>{x, spatial}));
  }
  template <class T>
  static void global_avg_pool_backward(context& ctx, std::int64_t planes, int spatial, const T* dy, T* dx) {
    NETSPLIT_THRUST("thrust::transform(global_avg_pool_backward)",
                    thrust::transform(ctx.policy(), count(0), count(planes * spatial), dx,
                                      detail::cuda_kernels::avg_pool_backward_f<T>{dy, spatial}));
  }

  /// 2x2 max pooling, stride 2, planes of h x w (both even); ties and NaN as
  /// max_window_index (backend/descriptors.hpp), like the CPU backend.
  template <class T>
  static void max_pool2x2_forward(context& ctx, std::int64_t planes, int h, int w, const T* x, T* y) {
    NETSPLIT_THRUST("thrust::transform(max_pool2x2_forward)",
                    thrust::transform(ctx.policy(), count(0), count(planes * (h / 2) * (w / 2)), y,
                                      detail::cuda_kernels::max_pool_forward_f<T>{x, h, w}));
  }
  template <class T>
  static void max_pool2x2_backward(context& ctx, std::int64_t planes, int h, int w, const T* x, const T* dy, T* dx) {
    NETSPLIT_THRUST("thrust::transform(max_pool2x2_backward)",
                    thrust::transform(ctx.policy(), count(0), count(planes * h * w), dx,
                                      detail::cuda_kernels::max_pool_backward_f<T>{x, dy, h, w}));
  }

  /// y[N, out] = x[N, in] * w[out, in]^T + b
  template <class T>
  static void linear_forward(context& ctx, int n, int in, int out, const T* x, const T* w, const T* b, T* y) {
    detail::cuda::gemm<T>(ctx, false, true, n, out, in, T(1), x, in, 0, w, in, 0, T(0), y, out, 0, 1);
    NETSPLIT_THRUST("thrust::for_each_n(add_bias)",
                    thrust::for_each_n(ctx.policy(), count(0), std::int64_t{n} * out,
                                       detail::cuda_kernels::add_bias_f<T>{y, b, out}));
  }
  template <class T>
  static void linear_backward(context& ctx, int n, int in, int out, const T* x, const T* w, const T* dy, T* dx,
                              T* dw, T* db) {
    detail::cuda::gemm<T>(ctx, true, false, out, in, n, T(1), dy, out, 0, x, in, 0, T(0), dw, in, 0, 1);
    NETSPLIT_THRUST("thrust::transform(column_sums)",
                    thrust::transform(ctx.policy(), thrust::counting_iterator<int>(0),
                                      thrust::counting_iterator<int>(out), db,
                                      detail::cuda_kernels::column_sums_f<T>{dy, n, out}));
    if (dx) detail::cuda::gemm<T>(ctx, false, false, n, in, out, T(1), dy, out, 0, w, in, 0, T(0), dx, in, 0, 1);
  }

  /// Mean softmax cross-entropy over the batch; writes dL/dlogits. labels is a device array
  /// with values in [0, classes) (checked by the caller). Waits for the result.
  template <class T>
  static double softmax_cross_entropy(context& ctx, int n, int classes, const T* logits, const int* labels,
                                      T* dlogits) {
    double total = 0;
    NETSPLIT_THRUST("thrust::transform_reduce(softmax_cross_entropy)",
                    total = thrust::transform_reduce(ctx.policy(), thrust::counting_iterator<int>(0),
                                                     thrust::counting_iterator<int>(n),
                                                     detail::cuda_kernels::softmax_xent_f<T>{logits, labels, dlogits,
                                                                                              n, classes},
                                                     0.0, thrust::plus<double>()));
    return total / n;
  }

  // ---- optimiser ------------------------------------------------------------------------------
  /// PyTorch-form SGD: g' = g + wd*w; m = mu*m + g'; w -= lr * (nesterov ? g' + mu*m : m).
  template <class T>
  static void sgd_step(context& ctx, std::int64_t n, T* w, const T* g, T* m, T lr, T mu, T wd, bool nesterov) {
    NETSPLIT_THRUST("thrust::for_each_n(sgd_step)",
                    thrust::for_each_n(ctx.policy(), count(0), n,
                                       detail::cuda_kernels::sgd_f<T>{w, g, m, lr, mu, wd, nesterov}));
  }

  // ---- the convolution lowering (no cuDNN): im2col on thrust + strided-batched GEMM ------------
  // Public so that tests can run it in every build and force several chunks (max_chunk).
  /// Images per chunk so that one chunk's column matrix stays under 256 MiB.
  static int conv_chunk(const conv2d_desc& d, std::size_t elem) {
    const std::size_t per_image = static_cast<std::size_t>(d.in_channels) * d.kernel * d.kernel *
                                  static_cast<std::size_t>(d.out_height()) * d.out_width() * elem;
    const std::size_t budget = std::size_t{256} << 20;
    return static_cast<int>(std::clamp<std::size_t>(budget / std::max<std::size_t>(per_image, 1), 1,
                                                    static_cast<std::size_t>(std::max(d.batch, 1))));
  }

  template <class T>
  static void lowered_conv_forward(context& ctx, const conv2d_desc& d, const T* x, const T* w, T* y,
                                   int max_chunk = 0) {
    const std::int64_t plane = std::int64_t{d.out_height()} * d.out_width();
    const std::int64_t rows = std::int64_t{d.in_channels} * d.kernel * d.kernel;
    const std::int64_t in_img = std::int64_t{d.in_channels} * d.in_height * d.in_width;
    const std::int64_t out_img = std::int64_t{d.out_channels} * plane;
    const int chunk = max_chunk > 0 ? std::min(max_chunk, conv_chunk(d, sizeof(T))) : conv_chunk(d, sizeof(T));
    for (int n0 = 0; n0 < d.batch; n0 += chunk) {
      const int cn = std::min(chunk, d.batch - n0);
      const T* col = lower(ctx, d, x + n0 * in_img, cn);
      detail::cuda::gemm<T>(ctx, false, false, d.out_channels, static_cast<int>(plane), static_cast<int>(rows), T(1),
                            w, static_cast<int>(rows), 0, col, static_cast<int>(plane), rows * plane, T(0),
                            y + n0 * out_img, static_cast<int>(plane), out_img, cn);
    }
  }

  template <class T>
  static void lowered_conv_backward(context& ctx, const conv2d_desc& d, const T* x, const T* w, const T* dy, T* dx,
                                    T* dw, int max_chunk = 0) {
    namespace k = detail::cuda_kernels;
    const std::int64_t plane = std::int64_t{d.out_height()} * d.out_width();
    const std::int64_t rows = std::int64_t{d.in_channels} * d.kernel * d.kernel;
    const std::int64_t in_img = std::int64_t{d.in_channels} * d.in_height * d.in_width;
    const std::int64_t out_img = std::int64_t{d.out_channels} * plane;
    const std::int64_t wcount = d.weight_count();
    const bool direct = pointwise(d);
    const int chunk = max_chunk > 0 ? std::min(max_chunk, conv_chunk(d, sizeof(T))) : conv_chunk(d, sizeof(T));
    for (int n0 = 0; n0 < d.batch; n0 += chunk) {
      const int cn = std::min(chunk, d.batch - n0);
      const T* col = lower(ctx, d, x + n0 * in_img, cn);
      const T* dyc = dy + n0 * out_img;
      // per-image weight gradients dY_b col_b^T, summed in image order (deterministic)
      T* part = ctx.scratch<T>(1, static_cast<std::size_t>(cn * wcount));
      detail::cuda::gemm<T>(ctx, false, true, d.out_channels, static_cast<int>(rows), static_cast<int>(plane), T(1),
                            dyc, static_cast<int>(plane), out_img, col, static_cast<int>(plane), rows * plane, T(0),
                            part, static_cast<int>(rows), wcount, cn);
      NETSPLIT_THRUST("thrust::for_each_n(sum_partials)",
                      thrust::for_each_n(ctx.policy(), count(0), wcount,
                                         k::sum_partials_f<T>{part, cn, wcount, n0 > 0, dw}));
      if (!dx) continue;
      T* dxc = dx + n0 * in_img;
      T* dcol = direct ? dxc : ctx.scratch<T>(2, static_cast<std::size_t>(cn * rows * plane));
      detail::cuda::gemm<T>(ctx, true, false, static_cast<int>(rows), static_cast<int>(plane), d.out_channels, T(1), w,
                            static_cast<int>(rows), 0, dyc, static_cast<int>(plane), out_img, T(0), dcol,
                            static_cast<int>(plane), rows * plane, cn);
      if (!direct)
        NETSPLIT_THRUST("thrust::transform(col2im)",
                        thrust::transform(ctx.policy(), count(0), count(cn * in_img), dxc,
                                          k::col2im_f<T>{dcol, d.in_channels, d.in_height, d.in_width, d.kernel,
                                                         d.stride, d.pad, d.out_height(), d.out_width()}));
    }
  }

 private:
  template <class T>
  static void relu_epilogue(context& ctx, const batch_norm_desc& d, const T* r, T* y) {
    const std::int64_t n = std::int64_t{d.batch} * d.channels * d.spatial;
    if (r)
      add_relu_forward(ctx, n, y, r, y);
    else
      relu_forward(ctx, n, y, y);
  }

  static thrust::counting_iterator<std::int64_t> count(std::int64_t i) { return thrust::counting_iterator<std::int64_t>(i); }

  static bool pointwise(const conv2d_desc& d) { return d.kernel == 1 && d.stride == 1 && d.pad == 0; }

  /// The column matrices of `images` images starting at x (x itself for a pointwise conv).
  template <class T>
  static const T* lower(context& ctx, const conv2d_desc& d, const T* x, int images) {
    if (pointwise(d)) return x;
    const std::int64_t n = std::int64_t{images} * d.in_channels * d.kernel * d.kernel * d.out_height() * d.out_width();
    T* col = ctx.scratch<T>(0, static_cast<std::size_t>(n));
    NETSPLIT_THRUST("thrust::transform(im2col)",
                    thrust::transform(ctx.policy(), count(0), count(n), col,
                                      detail::cuda_kernels::im2col_f<T>{x, d.in_channels, d.in_height, d.in_width,
                                                                        d.kernel, d.stride, d.pad, d.out_height(),
                                                                        d.out_width()}));
    return col;
  }
};

static_assert(Backend<cuda_backend, float>, "cuda_backend must model Backend<cuda_backend, float>");

}  // namespace netsplit
