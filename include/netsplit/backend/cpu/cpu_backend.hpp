// netsplit/backend/cpu/cpu_backend.hpp — the CPU backend: models Backend on Eigen.
// Activations are NCHW. Convolutions lower each image to a column matrix (im2col) and
// multiply with Eigen's GEMM; work is split over the batch by the context's thread pool.
// Weight gradients keep one partial per thread, summed in thread order, so results are
// bit-reproducible for a given thread count.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "netsplit/backend/cpu/context.hpp"
#include "netsplit/backend/descriptors.hpp"
#include "netsplit/core/errors.hpp"

namespace netsplit {

struct cpu_backend {
  using context = cpu_context;
  static constexpr const char* name = "cpu";

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
  /// y += a * x
  template <class T>
  static void axpy(context&, std::int64_t n, T a, const T* x, T* y) {
    for (std::int64_t i = 0; i < n; ++i) y[i] += a * x[i];
  }
  /// y = max(x, 0)
  template <class T>
  static void relu_forward(context& ctx, std::int64_t n, const T* x, T* y) {
    ctx.pool().parallel_for(n, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
      for (std::ptrdiff_t i = b; i < e; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
    });
  }
  /// dx = dy where y > 0, else 0 (y is the forward output).
  template <class T>
  static void relu_backward(context& ctx, std::int64_t n, const T* y, const T* dy, T* dx) {
    ctx.pool().parallel_for(n, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
      for (std::ptrdiff_t i = b; i < e; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
    });
  }
  /// y = max(a + b, 0): the residual sum followed by its ReLU.
  template <class T>
  static void add_relu_forward(context& ctx, std::int64_t n, const T* a, const T* b, T* y) {
    ctx.pool().parallel_for(n, [&](std::ptrdiff_t lo, std::ptrdiff_t hi, int) {
      for (std::ptrdiff_t i = lo; i < hi; ++i) {
        const T s = a[i] + b[i];
        y[i] = s > T(0) ? s : T(0);
      }
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
  template <class T>
  static void conv2d_forward(context& ctx, const conv2d_desc& d, const T* x, const T* w, T* y) {
    const int ho = d.out_height(), wo = d.out_width();
    const std::int64_t in_img = std::int64_t{d.in_channels} * d.in_height * d.in_width;
    const std::int64_t out_img = std::int64_t{d.out_channels} * ho * wo;
    const std::int64_t rows = std::int64_t{d.in_channels} * d.kernel * d.kernel;
    const bool direct = is_pointwise(d);
    const MapC<T> W(w, d.out_channels, rows);
    ctx.pool().parallel_for(d.batch, [&](std::ptrdiff_t b, std::ptrdiff_t e, int t) {
      T* col = direct ? nullptr : ctx.scratch<T>(t, 0, static_cast<std::size_t>(rows * ho * wo));
      for (std::ptrdiff_t n = b; n < e; ++n) {
        const T* xn = x + n * in_img;
        if (!direct) im2col(d, xn, col);
        MapM<T> Y(y + n * out_img, d.out_channels, std::int64_t{ho} * wo);
        Y.noalias() = W * MapC<T>(direct ? xn : col, rows, std::int64_t{ho} * wo);
      }
    });
  }

  /// dw = dL/dw (overwritten); dx = dL/dx (overwritten) unless dx is null.
  template <class T>
  static void conv2d_backward(context& ctx, const conv2d_desc& d, const T* x, const T* w,
                              const T* dy, T* dx, T* dw) {
    const int ho = d.out_height(), wo = d.out_width();
    const std::int64_t hw_out = std::int64_t{ho} * wo;
    const std::int64_t in_img = std::int64_t{d.in_channels} * d.in_height * d.in_width;
    const std::int64_t out_img = std::int64_t{d.out_channels} * hw_out;
    const std::int64_t rows = std::int64_t{d.in_channels} * d.kernel * d.kernel;
    const bool direct = is_pointwise(d);
    const MapC<T> W(w, d.out_channels, rows);
    const auto wcount = static_cast<std::size_t>(d.weight_count());
    const int used = std::min(d.batch, ctx.threads());
    ctx.pool().parallel_for(d.batch, [&](std::ptrdiff_t b, std::ptrdiff_t e, int t) {
      T* col = direct ? nullptr : ctx.scratch<T>(t, 0, static_cast<std::size_t>(rows * hw_out));
      T* dcol = direct ? nullptr : ctx.scratch<T>(t, 1, static_cast<std::size_t>(rows * hw_out));
      T* dw_part = t == 0 ? dw : ctx.scratch<T>(t, 2, wcount);
      MapM<T> dW(dw_part, d.out_channels, rows);
      dW.setZero();
      for (std::ptrdiff_t n = b; n < e; ++n) {
        const T* xn = x + n * in_img;
        const MapC<T> dY(dy + n * out_img, d.out_channels, hw_out);
        if (!direct) im2col(d, xn, col);
        dW.noalias() += dY * MapC<T>(direct ? xn : col, rows, hw_out).transpose();
        if (dx) {
          if (direct) {
            MapM<T>(dx + n * in_img, rows, hw_out).noalias() = W.transpose() * dY;
          } else {
            MapM<T>(dcol, rows, hw_out).noalias() = W.transpose() * dY;
            col2im(d, dcol, dx + n * in_img);
          }
        }
      }
    });
    for (int t = 1; t < used; ++t) {
      const T* part = ctx.scratch<T>(t, 2, wcount);
      for (std::size_t i = 0; i < wcount; ++i) dw[i] += part[i];
    }
  }

  // ---- batch normalisation -----------------------------------------------------------------
  /// Training mode: normalise with batch statistics (biased variance), save mean and
  /// 1/sqrt(var + eps) for backward, update running statistics with unbiased variance.
  template <class T>
  static void batch_norm_forward_train(context& ctx, const batch_norm_desc& d, const T* x,
                                       const T* gamma, const T* beta, T* y, T* save_mean,
                                       T* save_invstd, T* running_mean, T* running_var) {
    const std::int64_t m = std::int64_t{d.batch} * d.spatial;
    ctx.pool().parallel_for(d.channels, [&](std::ptrdiff_t cb, std::ptrdiff_t ce, int) {
      for (std::ptrdiff_t c = cb; c < ce; ++c) {
        double sum = 0;
        for_channel(d, c, [&](std::int64_t off) {
          for (int i = 0; i < d.spatial; ++i) sum += x[off + i];
        });
        const double mean = sum / static_cast<double>(m);
        double sq = 0;
        for_channel(d, c, [&](std::int64_t off) {
          for (int i = 0; i < d.spatial; ++i) {
            const double v = x[off + i] - mean;
            sq += v * v;
          }
        });
        const double var = sq / static_cast<double>(m);
        const double invstd = 1.0 / std::sqrt(var + d.eps);
        const T scale = static_cast<T>(gamma[c] * invstd);
        const T shift = static_cast<T>(beta[c] - mean * gamma[c] * invstd);
        for_channel(d, c, [&](std::int64_t off) {
          for (int i = 0; i < d.spatial; ++i) y[off + i] = x[off + i] * scale + shift;
        });
        save_mean[c] = static_cast<T>(mean);
        save_invstd[c] = static_cast<T>(invstd);
        const double unbiased = sq / static_cast<double>(m - 1);
        running_mean[c] = static_cast<T>((1 - d.momentum) * running_mean[c] + d.momentum * mean);
        running_var[c] = static_cast<T>((1 - d.momentum) * running_var[c] + d.momentum * unbiased);
      }
    });
  }

  /// Evaluation mode: normalise with running statistics; also writes the mean and inverse
  /// standard deviation used, so batch_norm_backward can differentiate this mode too.
  template <class T>
  static void batch_norm_forward_eval(context& ctx, const batch_norm_desc& d, const T* x,
                                      const T* gamma, const T* beta, const T* running_mean,
                                      const T* running_var, T* y, T* save_mean, T* save_invstd) {
    ctx.pool().parallel_for(d.channels, [&](std::ptrdiff_t cb, std::ptrdiff_t ce, int) {
      for (std::ptrdiff_t c = cb; c < ce; ++c) {
        const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + d.eps);
        const T scale = static_cast<T>(gamma[c] * invstd);
        const T shift = static_cast<T>(beta[c] - running_mean[c] * gamma[c] * invstd);
        for_channel(d, c, [&](std::int64_t off) {
          for (int i = 0; i < d.spatial; ++i) y[off + i] = x[off + i] * scale + shift;
        });
        save_mean[c] = running_mean[c];
        save_invstd[c] = static_cast<T>(invstd);
      }
    });
  }

  /// Gradients of either mode. With batch_stats the mean and variance depend on x (train
  /// mode); without, they are constants (eval mode). dgamma/dbeta are overwritten.
  template <class T>
  static void batch_norm_backward(context& ctx, const batch_norm_desc& d, bool batch_stats,
                                  const T* x, const T* gamma, const T* save_mean,
                                  const T* save_invstd, const T* dy, T* dx, T* dgamma, T* dbeta) {
    const double m = static_cast<double>(std::int64_t{d.batch} * d.spatial);
    ctx.pool().parallel_for(d.channels, [&](std::ptrdiff_t cb, std::ptrdiff_t ce, int) {
      for (std::ptrdiff_t c = cb; c < ce; ++c) {
        const double mean = save_mean[c], invstd = save_invstd[c];
        double sdy = 0, sdyx = 0;
        for_channel(d, c, [&](std::int64_t off) {
          for (int i = 0; i < d.spatial; ++i) {
            sdy += dy[off + i];
            sdyx += dy[off + i] * ((x[off + i] - mean) * invstd);
          }
        });
        dgamma[c] = static_cast<T>(sdyx);
        dbeta[c] = static_cast<T>(sdy);
        if (!dx) continue;
        const double g = gamma[c] * invstd;
        if (batch_stats) {
          const double a = sdy / m, bcoef = sdyx / m;
          for_channel(d, c, [&](std::int64_t off) {
            for (int i = 0; i < d.spatial; ++i) {
              const double xhat = (x[off + i] - mean) * invstd;
              dx[off + i] = static_cast<T>(g * (dy[off + i] - a - xhat * bcoef));
            }
          });
        } else {
          const T gt = static_cast<T>(g);
          for_channel(d, c, [&](std::int64_t off) {
            for (int i = 0; i < d.spatial; ++i) dx[off + i] = gt * dy[off + i];
          });
        }
      }
    });
  }

  // ---- shortcut, pooling, linear, loss -------------------------------------------------------
  /// y[n, dst[e]] += coef[e] * x[n, src[e]] subsampled by the stride, for each entry e;
  /// output channels no entry maps to are zero.
  template <class T>
  static void channel_scatter_forward(context& ctx, const channel_scatter_desc& d, const T* x, const int* src,
                                      const int* dst, const T* coef, T* y) {
    const int ho = (d.in_height - 1) / d.stride + 1, wo = (d.in_width - 1) / d.stride + 1;
    const std::int64_t out_plane = std::int64_t{ho} * wo, in_plane = std::int64_t{d.in_height} * d.in_width;
    ctx.pool().parallel_for(d.batch, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
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
    ctx.pool().parallel_for(d.batch, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
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
  template <class T>
  using MapM = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  template <class T>
  using MapC = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

  static bool is_pointwise(const conv2d_desc& d) {
    return d.kernel == 1 && d.stride == 1 && d.pad == 0;
  }

  template <class F>
  static void for_channel(const batch_norm_desc& d, std::int64_t c, F&& f) {
    for (int n = 0; n < d.batch; ++n) f((std::int64_t{n} * d.channels + c) * d.spatial);
  }

  /// col[(c*k + ky)*k + kx][oy*wo + ox] = x[c][oy*s - pad + ky][ox*s - pad + kx] (0 outside).
  template <class T>
  static void im2col(const conv2d_desc& d, const T* x, T* col) {
    const int ho = d.out_height(), wo = d.out_width(), k = d.kernel, s = d.stride;
    for (int c = 0; c < d.in_channels; ++c) {
      const T* xc = x + std::int64_t{c} * d.in_height * d.in_width;
      for (int ky = 0; ky < k; ++ky)
        for (int kx = 0; kx < k; ++kx) {
          T* row = col + ((std::int64_t{c} * k + ky) * k + kx) * ho * wo;
          for (int oy = 0; oy < ho; ++oy) {
            const int iy = oy * s - d.pad + ky;
            T* out = row + std::int64_t{oy} * wo;
            if (iy < 0 || iy >= d.in_height) {
              std::fill(out, out + wo, T(0));
              continue;
            }
            const T* xr = xc + std::int64_t{iy} * d.in_width;
            for (int ox = 0; ox < wo; ++ox) {
              const int ix = ox * s - d.pad + kx;
              out[ox] = (ix >= 0 && ix < d.in_width) ? xr[ix] : T(0);
            }
          }
        }
    }
  }
  /// Adjoint of im2col: dx (overwritten) = sum of dcol entries at their source pixels.
  template <class T>
  static void col2im(const conv2d_desc& d, const T* col, T* dx) {
    const int ho = d.out_height(), wo = d.out_width(), k = d.kernel, s = d.stride;
    std::fill(dx, dx + std::int64_t{d.in_channels} * d.in_height * d.in_width, T(0));
    for (int c = 0; c < d.in_channels; ++c) {
      T* xc = dx + std::int64_t{c} * d.in_height * d.in_width;
      for (int ky = 0; ky < k; ++ky)
        for (int kx = 0; kx < k; ++kx) {
          const T* row = col + ((std::int64_t{c} * k + ky) * k + kx) * ho * wo;
          for (int oy = 0; oy < ho; ++oy) {
            const int iy = oy * s - d.pad + ky;
            if (iy < 0 || iy >= d.in_height) continue;
            T* xr = xc + std::int64_t{iy} * d.in_width;
            const T* in = row + std::int64_t{oy} * wo;
            for (int ox = 0; ox < wo; ++ox) {
              const int ix = ox * s - d.pad + kx;
              if (ix >= 0 && ix < d.in_width) xr[ix] += in[ox];
            }
          }
        }
    }
  }
};

}  // namespace netsplit
