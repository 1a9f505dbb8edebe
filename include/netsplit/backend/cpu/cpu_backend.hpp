// netsplit/backend/cpu/cpu_backend.hpp — the CPU backend: models Backend on Eigen.
// Activations are NCHW. Convolutions run as implicit GEMMs over padded plane buffers with
// SIMD micro-kernels (conv_kernels.hpp); work is split over the batch by the context's
// thread pool. Weight gradients keep one partial per group of image chunks (per thread in the
// nested stride-2 tiles), summed in order whichever thread ran which group, so
// results are bit-reproducible for a given thread count and Winograd chunk plan (the
// context's: sized from the machine's L2, so two machines with different L2 sizes round
// Winograd weight gradients differently unless cpu_context::set_caches makes them agree).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "netsplit/backend/cpu/batch_norm_kernels.hpp"
#include "netsplit/backend/cpu/context.hpp"
#include "netsplit/backend/cpu/conv_instances.hpp"
#include "netsplit/backend/cpu/conv_kernels.hpp"
#include "netsplit/backend/cpu/pool_kernels.hpp"
#include "netsplit/backend/cpu/winograd.hpp"
#include "netsplit/backend/descriptors.hpp"
#include "netsplit/core/errors.hpp"

namespace netsplit {

struct cpu_backend {
  using context = cpu_context;
  static constexpr const char* name = "cpu";
  static constexpr bool host_memory = true;

  // ---- memory ---------------------------------------------------------------------------
  template <class T>
  static T* allocate(std::size_t n) {
    return static_cast<T*>(detail::aligned_bytes(n * sizeof(T)));
  }
  template <class T>
  static void deallocate(T* p, std::size_t) noexcept {
    std::free(p);
  }
  template <class T>
  static void copy(const T* src, T* dst, std::size_t n) {
    std::memcpy(dst, src, n * sizeof(T));
  }
  template <class T>
  static void copy_to_host(const T* src, T* dst, std::size_t n) {
    std::memcpy(dst, src, n * sizeof(T));
  }
  template <class T>
  static void copy_from_host(const T* src, T* dst, std::size_t n) {
    std::memcpy(dst, src, n * sizeof(T));
  }
  template <class T>
  static void fill(T* p, std::size_t n, T value) {
    std::fill(p, p + n, value);
  }

  // ---- element-wise ------------------------------------------------------------------------
  /// Blocks of the loops whose blocks a free thread takes over (thread_pool::
  /// parallel_for_dynamic): element-wise loops take 512 KB of floats at a time (16 blocks of a
  /// 16 x 32 x 32 map at batch 128), per-channel loops (for_channels) an eighth of the
  /// channels. With one channel or 128 KB per block a ResNet20 step ran 3,345 blocks and its
  /// threads were busy about 1.7% longer than with fixed halves; with these, 2,021 and even
  /// (docs/performance.md, twelfth pass).
  static constexpr std::ptrdiff_t elementwise_grain = 131072;

  /// y += a * x
  template <class T>
  static void axpy(context& ctx, std::int64_t n, T a, const T* x, T* y) {
    parallel_elementwise(ctx, n, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) y[i] += a * x[i];
    });
  }
  /// y = max(x, 0)
  template <class T>
  static void relu_forward(context& ctx, std::int64_t n, const T* x, T* y) {
    parallel_elementwise(ctx, n, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
    });
  }
  /// dx = dy where y > 0, else 0 (y is the forward output).
  template <class T>
  static void relu_backward(context& ctx, std::int64_t n, const T* y, const T* dy, T* dx) {
    parallel_elementwise(ctx, n, [&](std::int64_t b, std::int64_t e) {
      // dy is read unconditionally so the select vectorises (a conditional load does not)
      for (std::int64_t i = b; i < e; ++i) {
        const T g = dy[i];
        dx[i] = y[i] > T(0) ? g : T(0);
      }
    });
  }
  /// y = max(a + b, 0): the residual sum followed by its ReLU.
  template <class T>
  static void add_relu_forward(context& ctx, std::int64_t n, const T* a, const T* b, T* y) {
    parallel_elementwise(ctx, n, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t i = lo; i < hi; ++i) {
        const T s = a[i] + b[i];
        y[i] = s > T(0) ? s : T(0);
      }
    });
  }
  /// y = a + b
  template <class T>
  static void add(context& ctx, std::int64_t n, const T* a, const T* b, T* y) {
    parallel_elementwise(ctx, n, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t i = lo; i < hi; ++i) y[i] = a[i] + b[i];
    });
  }
  /// True when every element is finite.
  template <class T>
  static bool all_finite(context&, std::int64_t n, const T* x) {
    for (std::int64_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i])) return false;
    return true;
  }

  // ---- convolution -------------------------------------------------------------------------
  /// y = conv(x, w): Winograd F(2x2, 3x3) or F(4x4, 3x3) for 3x3 stride-1 "same"
  /// convolutions as the context's cpu_conv_algorithm says (winograd.hpp), else implicit GEMM
  /// over padded plane buffers (conv_kernels.hpp).
  template <class T>
  static void conv2d_forward(context& ctx, const conv2d_desc& d, const T* x, const T* w, T* y) {
    namespace cc = detail::cpu_conv;
    cc::forward_with(winograd_tile_for<T>(ctx, d, cc::conv_pass::forward), ctx, d, x, w, y);
  }

  /// y = conv(x, w) + shift[m] (+ r) (then max(., 0) with relu): a convolution followed by an
  /// eval-mode batch norm folded into w and shift (batch_norm_fold), the residual sum and the
  /// ReLU, in one pass over y (with F(4x4, 3x3) inside the output transform). shift and r may
  /// be null; r is shaped like y.
  template <class T>
  static void conv2d_forward_affine(context& ctx, const conv2d_desc& d, const T* x, const T* w, const T* shift,
                                    const T* r, bool relu, T* y) {
    namespace cc = detail::cpu_conv;
    const cc::conv_epilogue<T> ep{shift, r, relu};
    cc::forward_with(winograd_tile_for<T>(ctx, d, cc::conv_pass::forward), ctx, d, x, w, y, &ep);
  }

  /// y = conv(x, w) and, per output channel m, the shifted sums of y that a training-mode
  /// batch norm after it needs: s1[m] = sum(y - shift[m]), s2[m] = sum((y - shift[m])^2) about
  /// shift[m], a value of y's channel m that this call writes (the first one stored for image
  /// 0), as batch_norm_forward_train takes its statistics about one of the channel's values;
  /// the sums are taken from the outputs as the engine stores them (with F(4x4, 3x3) inside
  /// the output transform) instead of in a pass of their own. The engine sums each block of
  /// images it takes as one chunk about the block's own first value; the blocks' sums are
  /// moved to shift[m] in double and added in image order, so the result depends only on the
  /// shapes and the blocks (the thread count and cache sizes), not on which thread ran which.
  template <class T>
  static void conv2d_forward_sums(context& ctx, const conv2d_desc& d, const T* x, const T* w, T* y, T* shift,
                                  double* s1, double* s2) {
    namespace cc = detail::cpu_conv;
    const int M = d.out_channels;
    const std::int64_t batch = d.batch;
    // thread 0's slot 7 (the convolution engine uses it only in the weight gradient): the
    // sums [2][M] of a block starting at each image, then the shifts [M], then the blocks'
    // image counts; each block readies its own sums and shifts (conv_epilogue::of_block)
    const std::size_t sums = 2 * static_cast<std::size_t>(M) * batch;
    const std::size_t shift_words = (static_cast<std::size_t>(M) * batch * sizeof(T) + 7) / 8;
    double* part = ctx.scratch<double>(0, cc::slot_packed, sums + shift_words + (batch * sizeof(int) + 7) / 8);
    T* shifts = reinterpret_cast<T*>(part + sums);
    int* images = reinterpret_cast<int*>(part + sums + shift_words);
    std::fill(images, images + batch, 0);
    const cc::conv_epilogue<T> ep{nullptr, nullptr, false, shifts, part, nullptr, images};
    cc::forward_with(winograd_tile_for<T>(ctx, d, cc::conv_pass::forward), ctx, d, x, w, y, &ep);
    const double plane = static_cast<double>(d.out_height()) * d.out_width();
    for (int m = 0; m < M; ++m) {  // block 0 starts at image 0
      shift[m] = shifts[m];
      s1[m] = part[m];
      s2[m] = part[M + m];
    }
    for (std::int64_t n0 = images[0]; n0 < batch; n0 += images[n0]) {
      NETSPLIT_EXPECT(images[n0] > 0, "conv2d_forward_sums: no block of the engine starts at image ", n0);
      const double n = plane * images[n0];
      for (int m = 0; m < M; ++m) {
        const double dk = static_cast<double>(shifts[M * n0 + m]) - static_cast<double>(shift[m]);
        const double t1 = part[2 * M * n0 + m], t2 = part[2 * M * n0 + M + m];
        s2[m] += t2 + dk * (2 * t1 + n * dk);  // sum (y - shift)^2 = sum ((y - k_b) + dk)^2
        s1[m] += t1 + n * dk;
      }
    }
  }

  /// An eval-mode batch norm after a convolution, folded into it: w_out[m] = w[m] * scale[m],
  /// shift[m] = beta[m] - mean[m] * scale[m], scale[m] = gamma[m] / sqrt(var[m] + eps), with
  /// batch_norm_forward_eval's rounding of scale and shift; w holds d.channels rows of
  /// `row` values (the convolution's out channels).
  template <class T>
  static void batch_norm_fold(context&, const batch_norm_desc& d, std::int64_t row, const T* w, const T* gamma,
                              const T* beta, const T* running_mean, const T* running_var, T* w_out, T* shift) {
    for (int c = 0; c < d.channels; ++c) {
      const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + d.eps);
      const T scale = static_cast<T>(gamma[c] * invstd);
      shift[c] = static_cast<T>(beta[c] - running_mean[c] * gamma[c] * invstd);
      for (std::int64_t i = 0; i < row; ++i) w_out[c * row + i] = w[c * row + i] * scale;
    }
  }

  /// dw = dL/dw (overwritten); dx = dL/dx (overwritten) unless dx is null, plus dx_add where
  /// that is not null (shaped like x: a residual block adds its shortcut's gradient in the
  /// same pass, per chunk or plane while it is in cache; the sum is dL/dx + dx_add as one
  /// float addition, as a separate add would give). Each gradient takes its own choice of
  /// Winograd tile; where the weight gradient is direct, both are (the direct engine shares
  /// its input buffers between them).
  template <class T>
  static void conv2d_backward(context& ctx, const conv2d_desc& d, const T* x, const T* w,
                              const T* dy, T* dx, T* dw, const T* dx_add = nullptr) {
    namespace cc = detail::cpu_conv;
    switch (winograd_tile_for<T>(ctx, d, cc::conv_pass::backward_weights)) {
      case cc::winograd_tile::f4x4: cc::winograd_backward_weights<cc::winograd::f4x4>(ctx, d, x, dy, dw); break;
      case cc::winograd_tile::f2x2: cc::winograd_backward_weights<cc::winograd::f2x2>(ctx, d, x, dy, dw); break;
      case cc::winograd_tile::s2: cc::winograd_s2::backward_weights(ctx, d, x, dy, dw); break;
      default: return cc::backward(ctx, d, x, w, dy, dx, dw, dx_add);
    }
    if (!dx) return;
    const cc::conv_epilogue<T> ep{nullptr, dx_add, false};
    cc::winograd_backward_data(ctx, d, winograd_tile_for<T>(ctx, cc::transposed(d), cc::conv_pass::backward_data),
                               w, dy, dx, dx_add ? &ep : nullptr);
  }

 private:
  template <class T>
  static detail::cpu_conv::winograd_tile winograd_tile_for(const context& ctx, const conv2d_desc& d,
                                                           detail::cpu_conv::conv_pass pass) {
    namespace cc = detail::cpu_conv;
    if (cc::winograd_s2_applicable(d))
      return ctx.conv_algorithm() == cpu_conv_algorithm::fastest ? cc::winograd_s2_fastest<T>(d, pass, ctx.threads())
                                                                 : cc::winograd_tile::none;
    if (!cc::winograd_applicable(d)) return cc::winograd_tile::none;
    switch (ctx.conv_algorithm()) {
      case cpu_conv_algorithm::winograd_2x2: return cc::winograd_tile::f2x2;
      case cpu_conv_algorithm::winograd_4x4:
        return cc::winograd::f4x4::applicable(d) ? cc::winograd_tile::f4x4 : cc::winograd_tile::none;
      case cpu_conv_algorithm::fastest: return cc::winograd_fastest<T>(d, pass);
      default: return cc::winograd_tile::none;
    }
  }

 public:
  // ---- batch normalisation -----------------------------------------------------------------
  /// Training mode: normalise with batch statistics (biased variance), save mean and
  /// 1/sqrt(var + eps) for backward, update running statistics with unbiased variance.
  template <class T>
  static void batch_norm_forward_train(context& ctx, const batch_norm_desc& d, const T* x,
                                       const T* gamma, const T* beta, T* y, T* save_mean,
                                       T* save_invstd, T* running_mean, T* running_var) {
    bn_forward_train(ctx, d, x, gamma, beta, static_cast<const T*>(nullptr), false, y, save_mean, save_invstd,
                     running_mean, running_var);
  }
  /// Training-mode batch norm fused with what follows it in a residual network:
  /// y = max(bn(x) + r, 0), or max(bn(x), 0) when r is null. Statistics, saved values and
  /// running averages exactly as batch_norm_forward_train; one pass over y instead of three.
  template <class T>
  static void batch_norm_relu_forward_train(context& ctx, const batch_norm_desc& d, const T* x,
                                            const T* gamma, const T* beta, const T* r, T* y,
                                            T* save_mean, T* save_invstd, T* running_mean,
                                            T* running_var) {
    bn_forward_train(ctx, d, x, gamma, beta, r, true, y, save_mean, save_invstd, running_mean, running_var);
  }

 private:
  template <class T>
  static void bn_forward_train(context& ctx, const batch_norm_desc& d, const T* x, const T* gamma,
                               const T* beta, const T* r, bool relu, T* y, T* save_mean,
                               T* save_invstd, T* running_mean, T* running_var) {
    const std::int64_t m = std::int64_t{d.batch} * d.spatial;
    for_channels(ctx, d, [&](std::ptrdiff_t cb, std::ptrdiff_t ce) {
      for (std::ptrdiff_t c = cb; c < ce; ++c) {
        const T k = x[c * std::int64_t{d.spatial}];  // shift: a value of this channel
        double s1 = 0, s2 = 0;
        detail::cpu_bn::shifted_sums(x + c * std::int64_t{d.spatial}, d.batch, std::int64_t{d.channels} * d.spatial,
                                     d.spatial, k, s1, s2);
        bn_apply_stats(d, c, static_cast<double>(m), static_cast<double>(k), s1, s2, x, gamma, beta, r, relu, y,
                       save_mean, save_invstd, running_mean, running_var);
      }
    });
  }
  /// Channel c from its shifted sums over `m` values (s1 = Σ(x - k), s2 = Σ(x - k)²):
  /// normalise this process's values, save mean and 1/sqrt(var + eps), update the running
  /// statistics (unbiased variance over the m values).
  template <class T>
  static void bn_apply_stats(const batch_norm_desc& d, std::ptrdiff_t c, double m, double k, double s1, double s2,
                             const T* x, const T* gamma, const T* beta, const T* r, bool relu, T* y, T* save_mean,
                             T* save_invstd, T* running_mean, T* running_var) {
    const double shifted_mean = s1 / m;
    const double mean = k + shifted_mean;
    const double sq = std::max(0.0, s2 - s1 * shifted_mean);  // sum of squared deviations
    const double var = sq / m;
    const double invstd = 1.0 / std::sqrt(var + d.eps);
    const T scale = static_cast<T>(gamma[c] * invstd);
    const T shift = static_cast<T>(beta[c] - mean * gamma[c] * invstd);
    for_channel(d, c, [&](std::int64_t off) { normalize(x + off, d.spatial, scale, shift, r ? r + off : nullptr, relu, y + off); });
    save_mean[c] = static_cast<T>(mean);
    save_invstd[c] = static_cast<T>(invstd);
    const double unbiased = sq / (m - 1);
    running_mean[c] = static_cast<T>((1 - d.momentum) * running_mean[c] + d.momentum * mean);
    running_var[c] = static_cast<T>((1 - d.momentum) * running_var[c] + d.momentum * unbiased);
  }

 public:
  // ---- batch normalisation over the batches of several processes (sync batch norm) -------
  // The training-mode forward and backward in two halves, so the per-channel sums of every
  // process can be added between them: batch_norm_shifted_sums, (sum over processes),
  // batch_norm_forward_sums; batch_norm_backward_sums, (sum), batch_norm_backward_apply.
  // With one process they compute what batch_norm(_relu)_forward_train and _backward do.

  /// Per channel c: s1[c] = Σ(x - shift[c]), s2[c] = Σ(x - shift[c])² over this batch
  /// (shift: a value near the channel's mean that every process shares, e.g. the running mean).
  template <class T>
  static void batch_norm_shifted_sums(context& ctx, const batch_norm_desc& d, const T* x, const T* shift,
                                      double* s1, double* s2) {
    for_channels(ctx, d, [&](std::ptrdiff_t cb, std::ptrdiff_t ce) {
      for (std::ptrdiff_t c = cb; c < ce; ++c) {
        s1[c] = 0;
        s2[c] = 0;
        detail::cpu_bn::shifted_sums(x + c * std::int64_t{d.spatial}, d.batch, std::int64_t{d.channels} * d.spatial,
                                     d.spatial, shift[c], s1[c], s2[c]);
      }
    });
  }
  /// Normalises x with the statistics of `count` values whose shifted sums are s1, s2 (the
  /// summed batch_norm_shifted_sums of every process, same shift), fused with the ReLU and
  /// residual as batch_norm_relu_forward_train when `relu`; saves mean and inverse standard
  /// deviation and updates the running statistics as batch_norm_forward_train does.
  template <class T>
  static void batch_norm_forward_sums(context& ctx, const batch_norm_desc& d, const T* x, const T* shift,
                                      const double* s1, const double* s2, double count, const T* gamma,
                                      const T* beta, const T* r, bool relu, T* y, T* save_mean, T* save_invstd,
                                      T* running_mean, T* running_var) {
    for_channels(ctx, d, [&](std::ptrdiff_t cb, std::ptrdiff_t ce) {
      for (std::ptrdiff_t c = cb; c < ce; ++c)
        bn_apply_stats(d, c, count, static_cast<double>(shift[c]), s1[c], s2[c], x, gamma, beta, r, relu, y,
                       save_mean, save_invstd, running_mean, running_var);
    });
  }
  /// This batch's parameter gradients: dbeta = Σ dy, dgamma = Σ dy·x̂ (dy masked by y > 0
  /// when y is not null: the fused ReLU), also returned in double as sdy and sdyx. Where dr
  /// is not null the masked dy is stored there too, as batch_norm_relu_backward's dr (the
  /// apply half then takes dr as its dy, and no y).
  template <class T>
  static void batch_norm_backward_sums(context& ctx, const batch_norm_desc& d, const T* x, const T* y,
                                       const T* save_mean, const T* save_invstd, const T* dy, T* dgamma, T* dbeta,
                                       double* sdy, double* sdyx, T* dr = nullptr) {
    NETSPLIT_EXPECT(!dr || y, "batch_norm backward: a residual gradient needs the ReLU's output");
    for_channels(ctx, d, [&](std::ptrdiff_t cb, std::ptrdiff_t ce) {
      for (std::ptrdiff_t c = cb; c < ce; ++c) {
        double s = 0, sc = 0;
        const std::int64_t first = c * std::int64_t{d.spatial}, stride = std::int64_t{d.channels} * d.spatial;
        detail::cpu_bn::gradient_sums(dy + first, y ? y + first : nullptr, x + first, d.batch, stride, d.spatial,
                                      save_mean[c], s, sc, dr ? dr + first : nullptr);
        sdy[c] = s;
        sdyx[c] = sc * static_cast<double>(save_invstd[c]);
        dgamma[c] = static_cast<T>(sdyx[c]);
        dbeta[c] = static_cast<T>(s);
      }
    });
  }
  /// dx of training-mode batch norm whose statistics came from `count` values, given the
  /// sums Σ dy and Σ dy·x̂ over all of them (the summed batch_norm_backward_sums).
  template <class T>
  static void batch_norm_backward_apply(context& ctx, const batch_norm_desc& d, const T* x, const T* y,
                                        const T* gamma, const T* save_mean, const T* save_invstd, const T* dy,
                                        const double* sdy, const double* sdyx, double count, T* dx) {
    for_channels(ctx, d, [&](std::ptrdiff_t cb, std::ptrdiff_t ce) {
      for (std::ptrdiff_t c = cb; c < ce; ++c) bn_input_gradient(d, c, true, count, x, y, gamma, save_mean, save_invstd, dy, sdy[c], sdyx[c], dx);
    });
  }

 private:
  template <class T>
  static void bn_input_gradient(const batch_norm_desc& d, std::ptrdiff_t c, bool batch_stats, double m, const T* x,
                                const T* y, const T* gamma, const T* save_mean, const T* save_invstd, const T* dy,
                                double sdy, double sdyx, T* dx) {
    const double invstd = save_invstd[c];
    const T mean = save_mean[c];
    const double g = gamma[c] * invstd;
    // train: dx = g * (dy - sdy/m - xhat * sdyx/m); eval: dx = g * dy
    const T cx = batch_stats ? static_cast<T>(-g * invstd * sdyx / m) : T(0);
    const T c0 = batch_stats ? static_cast<T>(-g * sdy / m) : T(0);
    const T gt = static_cast<T>(g);
    if (y)
      for_channel(d, c, [&](std::int64_t off) {
        detail::cpu_bn::input_gradient(dy + off, y + off, x + off, d.spatial, gt, cx, mean, c0, dx + off);
      });
    else
      for_channel(d, c, [&](std::int64_t off) {
        detail::cpu_bn::input_gradient(dy + off, x + off, d.spatial, gt, cx, mean, c0, dx + off);
      });
  }

  template <class T>
  static void normalize(const T* x, std::int64_t n, T scale, T shift, const T* r, bool relu, T* y) {
    if (!relu)
      detail::cpu_bn::scale_shift(x, n, scale, shift, y);
    else if (r)
      detail::cpu_bn::scale_shift_add_relu(x, n, scale, shift, r, y);
    else
      detail::cpu_bn::scale_shift_relu(x, n, scale, shift, y);
  }

 public:
  /// Evaluation mode: normalise with running statistics; also writes the mean and inverse
  /// standard deviation used, so batch_norm_backward can differentiate this mode too.
  template <class T>
  static void batch_norm_forward_eval(context& ctx, const batch_norm_desc& d, const T* x,
                                      const T* gamma, const T* beta, const T* running_mean,
                                      const T* running_var, T* y, T* save_mean, T* save_invstd) {
    bn_forward_eval(ctx, d, x, gamma, beta, running_mean, running_var, static_cast<const T*>(nullptr), false, y,
                    save_mean, save_invstd);
  }
  /// Evaluation-mode counterpart of batch_norm_relu_forward_train: y = max(bn(x) + r, 0).
  template <class T>
  static void batch_norm_relu_forward_eval(context& ctx, const batch_norm_desc& d, const T* x,
                                           const T* gamma, const T* beta, const T* running_mean,
                                           const T* running_var, const T* r, T* y, T* save_mean,
                                           T* save_invstd) {
    bn_forward_eval(ctx, d, x, gamma, beta, running_mean, running_var, r, true, y, save_mean, save_invstd);
  }

 private:
  template <class T>
  static void bn_forward_eval(context& ctx, const batch_norm_desc& d, const T* x, const T* gamma,
                              const T* beta, const T* running_mean, const T* running_var, const T* r,
                              bool relu, T* y, T* save_mean, T* save_invstd) {
    for_channels(ctx, d, [&](std::ptrdiff_t cb, std::ptrdiff_t ce) {
      for (std::ptrdiff_t c = cb; c < ce; ++c) {
        const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + d.eps);
        const T scale = static_cast<T>(gamma[c] * invstd);
        const T shift = static_cast<T>(beta[c] - running_mean[c] * gamma[c] * invstd);
        for_channel(d, c, [&](std::int64_t off) { normalize(x + off, d.spatial, scale, shift, r ? r + off : nullptr, relu, y + off); });
        save_mean[c] = running_mean[c];
        save_invstd[c] = static_cast<T>(invstd);
      }
    });
  }

 public:
  /// Gradients of either mode. With batch_stats the mean and variance depend on x (train
  /// mode); without, they are constants (eval mode). dgamma/dbeta are overwritten.
  template <class T>
  static void batch_norm_backward(context& ctx, const batch_norm_desc& d, bool batch_stats,
                                  const T* x, const T* gamma, const T* save_mean,
                                  const T* save_invstd, const T* dy, T* dx, T* dgamma, T* dbeta) {
    bn_backward(ctx, d, batch_stats, x, static_cast<const T*>(nullptr), gamma, save_mean, save_invstd, dy, dx,
                dgamma, dbeta);
  }
  /// Gradients of y = max(bn(x) (+ r), 0) given dL/dy and the forward output y:
  /// batch_norm_backward of dy masked by y > 0. Where dr is not null the masked gradient is
  /// stored there too (dL/dr: a residual block's shortcut takes it), in the pass that takes
  /// the sums, and the input gradient reads it back; else it is never materialised.
  template <class T>
  static void batch_norm_relu_backward(context& ctx, const batch_norm_desc& d, bool batch_stats,
                                       const T* x, const T* y, const T* gamma, const T* save_mean,
                                       const T* save_invstd, const T* dy, T* dx, T* dgamma, T* dbeta,
                                       T* dr = nullptr) {
    bn_backward(ctx, d, batch_stats, x, y, gamma, save_mean, save_invstd, dy, dx, dgamma, dbeta, dr);
  }

 private:
  /// y non-null: dy is masked by y > 0 where it is read (a masked copy only into dr, where
  /// that is not null; the input gradient then reads dr: two tensors instead of three).
  template <class T>
  static void bn_backward(context& ctx, const batch_norm_desc& d, bool batch_stats, const T* x, const T* y,
                          const T* gamma, const T* save_mean, const T* save_invstd, const T* dy, T* dx,
                          T* dgamma, T* dbeta, T* dr = nullptr) {
    NETSPLIT_EXPECT(!dr || y, "batch_norm backward: a residual gradient needs the ReLU's output");
    const double m = static_cast<double>(std::int64_t{d.batch} * d.spatial);
    for_channels(ctx, d, [&](std::ptrdiff_t cb, std::ptrdiff_t ce) {
      for (std::ptrdiff_t c = cb; c < ce; ++c) {
        const double invstd = save_invstd[c];
        const T mean = save_mean[c];
        double sdy = 0, sdyc = 0;  // sum dy, sum dy * (x - mean)
        const std::int64_t first = c * std::int64_t{d.spatial}, stride = std::int64_t{d.channels} * d.spatial;
        detail::cpu_bn::gradient_sums(dy + first, y ? y + first : nullptr, x + first, d.batch, stride, d.spatial,
                                      mean, sdy, sdyc, dr ? dr + first : nullptr);
        const double sdyx = sdyc * invstd;  // sum dy * xhat
        dgamma[c] = static_cast<T>(sdyx);
        dbeta[c] = static_cast<T>(sdy);
        if (dx)
          bn_input_gradient(d, c, batch_stats, m, x, dr ? nullptr : y, gamma, save_mean, save_invstd, dr ? dr : dy,
                            sdy, sdyx, dx);
      }
    });
  }

 public:

  // ---- shortcut, pooling, linear, loss -------------------------------------------------------
  /// y[n, dst[e]] += coef[e] * x[n, src[e]] subsampled by the stride, for each entry e;
  /// output channels no entry maps to are zero.
  template <class T>
  static void channel_scatter_forward(context& ctx, const channel_scatter_desc& d, const T* x, const int* src,
                                      const int* dst, const T* coef, T* y) {
    const int ho = (d.in_height - 1) / d.stride + 1, wo = (d.in_width - 1) / d.stride + 1;
    const std::int64_t out_plane = std::int64_t{ho} * wo, in_plane = std::int64_t{d.in_height} * d.in_width;
    ctx.pool().parallel_for_dynamic(d.batch, 1, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
      for (std::ptrdiff_t n = b; n < e; ++n) {
        T* yn = y + n * d.out_channels * out_plane;
        std::fill(yn, yn + d.out_channels * out_plane, T(0));
        for (int k = 0; k < d.entries; ++k) {
          const T* xc = x + (n * d.in_channels + src[k]) * in_plane;
          T* yc = yn + std::int64_t{dst[k]} * out_plane;
          const T c = coef[k];
          for (int oy = 0; oy < ho; ++oy)
            for (int ox = 0; ox < wo; ++ox) yc[oy * wo + ox] += c * xc[oy * d.stride * d.in_width + ox * d.stride];
        }
      }
    });
  }
  /// Adjoint of channel_scatter_forward: dx (overwritten) gathers coef * dy at the sampled pixels.
  template <class T>
  static void channel_scatter_backward(context& ctx, const channel_scatter_desc& d, const T* dy, const int* src,
                                       const int* dst, const T* coef, T* dx) {
    const int ho = (d.in_height - 1) / d.stride + 1, wo = (d.in_width - 1) / d.stride + 1;
    const std::int64_t out_plane = std::int64_t{ho} * wo, in_plane = std::int64_t{d.in_height} * d.in_width;
    ctx.pool().parallel_for_dynamic(d.batch, 1, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
      for (std::ptrdiff_t n = b; n < e; ++n) {
        T* dxn = dx + n * d.in_channels * in_plane;
        std::fill(dxn, dxn + d.in_channels * in_plane, T(0));
        for (int k = 0; k < d.entries; ++k) {
          const T* dyc = dy + (n * d.out_channels + dst[k]) * out_plane;
          T* dxc = dxn + std::int64_t{src[k]} * in_plane;
          const T c = coef[k];
          for (int oy = 0; oy < ho; ++oy)
            for (int ox = 0; ox < wo; ++ox) dxc[oy * d.stride * d.in_width + ox * d.stride] += c * dyc[oy * wo + ox];
        }
      }
    });
  }

  /// y[n, c] = mean over the plane of x[n, c].
  template <class T>
  static void global_avg_pool_forward(context&, std::int64_t planes, int spatial, const T* x, T* y) {
    for (std::int64_t p = 0; p < planes; ++p) {
      double s = 0;
      for (int i = 0; i < spatial; ++i) s += x[p * spatial + i];
      y[p] = static_cast<T>(s / spatial);
    }
  }
  template <class T>
  static void global_avg_pool_backward(context&, std::int64_t planes, int spatial, const T* dy, T* dx) {
    for (std::int64_t p = 0; p < planes; ++p) {
      const T g = dy[p] / static_cast<T>(spatial);
      std::fill(dx + p * spatial, dx + (p + 1) * spatial, g);
    }
  }

  /// 2x2 max pooling, stride 2, over `planes` planes of h x w (both even): y[p, i, j] is the
  /// largest of x[p, 2i..2i+1, 2j..2j+1]; of equal values the first in row-major order wins
  /// (top-left, top-right, bottom-left, bottom-right), as PyTorch's CPU kernel; a NaN wins.
  /// (pool_kernels.hpp: 8 windows at a time with masks, no branches.)
  template <class T>
  static void max_pool2x2_forward(context& ctx, std::int64_t planes, int h, int w, const T* x, T* y) {
    const int ho = h / 2, wo = w / 2;
    ctx.pool().parallel_for_dynamic(planes, 16, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
      for (std::ptrdiff_t p = b; p < e; ++p)
        for (int i = 0; i < ho; ++i) {
          const T* r0 = x + p * h * w + (2 * i) * w;
          detail::cpu_pool::max_pool_row_forward(r0, r0 + w, wo, y + p * ho * wo + i * wo);
        }
    });
  }
  /// dx of max_pool2x2_forward: dy goes to the window element that won (recomputed from x:
  /// no index tensor is kept), zero elsewhere.
  template <class T>
  static void max_pool2x2_backward(context& ctx, std::int64_t planes, int h, int w, const T* x, const T* dy, T* dx) {
    const int ho = h / 2, wo = w / 2;
    ctx.pool().parallel_for_dynamic(planes, 16, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
      for (std::ptrdiff_t p = b; p < e; ++p)
        for (int i = 0; i < ho; ++i) {
          const std::int64_t row = p * h * w + (2 * i) * w;
          detail::cpu_pool::max_pool_row_backward(x + row, x + row + w, dy + p * ho * wo + i * wo, wo, dx + row,
                                                  dx + row + w);
        }
    });
  }

  /// y[N, out] = x[N, in] * w[out, in]^T + b
  template <class T>
  static void linear_forward(context&, int n, int in, int out, const T* x, const T* w,
                             const T* b, T* y) {
    MapM<T> Y(y, n, out);
    Y.noalias() = MapC<T>(x, n, in) * MapC<T>(w, out, in).transpose();
    Y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(b, out);
  }
  template <class T>
  static void linear_backward(context&, int n, int in, int out, const T* x, const T* w,
                              const T* dy, T* dx, T* dw, T* db) {
    const MapC<T> dY(dy, n, out);
    MapM<T>(dw, out, in).noalias() = dY.transpose() * MapC<T>(x, n, in);
    Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(db, out) = dY.colwise().sum();
    if (dx) MapM<T>(dx, n, in).noalias() = dY * MapC<T>(w, out, in);
  }

  /// Mean softmax cross-entropy over the batch; writes dL/dlogits. Labels must be in
  /// [0, classes) (checked by the caller).
  template <class T>
  static double softmax_cross_entropy(context&, int n, int classes, const T* logits,
                                      const int* labels, T* dlogits) {
    double total = 0;
    for (int i = 0; i < n; ++i) {
      const T* z = logits + std::int64_t{i} * classes;
      T* g = dlogits + std::int64_t{i} * classes;
      const double zmax = *std::max_element(z, z + classes);
      double sum = 0;
      for (int k = 0; k < classes; ++k) sum += std::exp(z[k] - zmax);
      const double log_sum = std::log(sum) + zmax;
      total += log_sum - z[labels[i]];
      for (int k = 0; k < classes; ++k)
        g[k] = static_cast<T>((std::exp(z[k] - log_sum) - (k == labels[i] ? 1.0 : 0.0)) / n);
    }
    return total / n;
  }

  // ---- optimiser ------------------------------------------------------------------------------
  /// SGD with momentum in PyTorch's form: g' = g + wd*w; m = mu*m + g';
  /// w -= lr * (nesterov ? g' + mu*m : m).
  template <class T>
  static void sgd_step(context&, std::int64_t n, T* w, const T* g, T* m, T lr, T mu, T wd,
                       bool nesterov) {
    for (std::int64_t i = 0; i < n; ++i) {
      const T gi = g[i] + wd * w[i];
      m[i] = mu * m[i] + gi;
      w[i] -= lr * (nesterov ? gi + mu * m[i] : m[i]);
    }
  }

 private:
  /// body(cb, ce) over the channels [cb, ce) of d, in blocks of an eighth of them that the
  /// pool's threads take over from each other (elementwise_grain's comment).
  template <class F>
  static void for_channels(context& ctx, const batch_norm_desc& d, F&& body) {
    ctx.pool().parallel_for_dynamic(d.channels, std::max(1, d.channels / 8),
                                    [&](std::ptrdiff_t cb, std::ptrdiff_t ce, int) { body(cb, ce); });
  }
  /// Runs f(begin, end) over [0, n) on the pool in blocks of elementwise_grain; a range of
  /// one block runs inline, where waking the pool would cost more than the work.
  template <class F>
  static void parallel_elementwise(context& ctx, std::int64_t n, F&& f) {
    ctx.pool().parallel_for_dynamic(n, elementwise_grain, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) { f(b, e); });
  }

  template <class T>
  using MapM = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  template <class T>
  using MapC = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

  template <class F>
  static void for_channel(const batch_norm_desc& d, std::int64_t c, F&& f) {
    for (int n = 0; n < d.batch; ++n) f((std::int64_t{n} * d.channels + c) * d.spatial);
  }

};

}  // namespace netsplit
