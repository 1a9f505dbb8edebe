// netsplit/backend/cuda/kernels.hpp — the element-wise and per-channel functors that
// cuda_backend hands to thrust. Each runs on the device under nvcc and on the host under
// thrust's CPP system. Every functor computes its output element from its inputs alone (a
// gather), so no atomics are needed and results do not depend on scheduling.
// Per-channel and per-plane sums accumulate in double, like the CPU backend.
#pragma once

#include <cmath>
#include <cstdint>

#include "netsplit/backend/cuda/config.hpp"
#include "netsplit/backend/descriptors.hpp"

namespace netsplit::detail::cuda_kernels {

using i64 = std::int64_t;

// ---- element-wise --------------------------------------------------------------------------
template <class T>
struct axpy_f {
  T a;
  NETSPLIT_HD T operator()(T x, T y) const { return y + a * x; }
};
template <class T>
struct relu_f {
  NETSPLIT_HD T operator()(T x) const { return x > T(0) ? x : T(0); }
};
template <class T>
struct relu_grad_f {
  NETSPLIT_HD T operator()(T y, T dy) const { return y > T(0) ? dy : T(0); }
};
template <class T>
struct add_relu_f {
  NETSPLIT_HD T operator()(T a, T b) const {
    const T s = a + b;
    return s > T(0) ? s : T(0);
  }
};
/// x - x is 0 for finite x and NaN for NaN and infinities (needs no math library).
template <class T>
struct not_finite_f {
  NETSPLIT_HD bool operator()(T x) const {
    const T d = x - x;
    return !(d == d);
  }
};

// ---- convolution lowering --------------------------------------------------------------------
/// col[n][(c*k + ky)*k + kx][oy*wo + ox] = x[n][c][oy*s - pad + ky][ox*s - pad + kx] (0 outside)
/// for the images of one chunk; the same layout as the CPU backend's reference im2col.
template <class T>
struct im2col_f {
  const T* x;
  int channels, height, width, k, stride, pad, ho, wo;
  NETSPLIT_HD T operator()(i64 idx) const {
    const i64 plane = i64{ho} * wo, rows = i64{channels} * k * k;
    const i64 p = idx % plane, t = idx / plane, r = t % rows, n = t / rows;
    const int ox = static_cast<int>(p % wo), oy = static_cast<int>(p / wo);
    const int kx = static_cast<int>(r % k), ky = static_cast<int>((r / k) % k), c = static_cast<int>(r / (k * k));
    const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
    if (iy < 0 || iy >= height || ix < 0 || ix >= width) return T(0);
    return x[((n * channels + c) * height + iy) * width + ix];
  }
};
/// Adjoint of im2col as a gather: dx[n][c][iy][ix] = sum of the column entries that
/// im2col read from that pixel.
template <class T>
struct col2im_f {
  const T* col;
  int channels, height, width, k, stride, pad, ho, wo;
  NETSPLIT_HD T operator()(i64 idx) const {
    const int ix = static_cast<int>(idx % width);
    i64 t = idx / width;
    const int iy = static_cast<int>(t % height);
    t /= height;
    const int c = static_cast<int>(t % channels);
    const i64 n = t / channels;
    const i64 plane = i64{ho} * wo, rows = i64{channels} * k * k;
    const T* base = col + (n * rows + i64{c} * k * k) * plane;
    T acc = T(0);
    for (int ky = 0; ky < k; ++ky) {
      const int ty = iy + pad - ky;
      if (ty < 0 || ty % stride != 0 || ty / stride >= ho) continue;
      const int oy = ty / stride;
      for (int kx = 0; kx < k; ++kx) {
        const int tx = ix + pad - kx;
        if (tx < 0 || tx % stride != 0 || tx / stride >= wo) continue;
        acc += base[(i64{ky} * k + kx) * plane + i64{oy} * wo + tx / stride];
      }
    }
    return acc;
  }
};
/// out[i] (+)= sum over b < count of part[b * stride + i], in b order.
template <class T>
struct sum_partials_f {
  const T* part;
  i64 count, stride;
  bool accumulate;
  T* out;
  NETSPLIT_HD void operator()(i64 i) const {
    T acc = accumulate ? out[i] : T(0);
    for (i64 b = 0; b < count; ++b) acc += part[b * stride + i];
    out[i] = acc;
  }
};

/// Row-major GEMM on thrust (the CPP system's stand-in for cuBLAS): element idx of the
/// batch of products C_b = alpha op(A_b) op(B_b) + beta C_b; beta == 0 ignores C.
template <class T>
struct gemm_f {
  bool ta, tb;
  int m, n, k;
  T alpha;
  const T* a;
  int lda;
  i64 sa;
  const T* b;
  int ldb;
  i64 sb;
  T beta;
  T* c;
  int ldc;
  i64 sc;
  NETSPLIT_HD void operator()(i64 idx) const {
    const int j = static_cast<int>(idx % n);
    const i64 t = idx / n;
    const int i = static_cast<int>(t % m);
    const i64 batch = t / m;
    const T* ab = a + batch * sa;
    const T* bb = b + batch * sb;
    T acc = T(0);
    for (int p = 0; p < k; ++p)
      acc += (ta ? ab[i64{p} * lda + i] : ab[i64{i} * lda + p]) * (tb ? bb[i64{j} * ldb + p] : bb[i64{p} * ldb + j]);
    T& out = c[batch * sc + i64{i} * ldc + j];
    out = beta == T(0) ? alpha * acc : alpha * acc + beta * out;
  }
};

// ---- batch normalisation ---------------------------------------------------------------------
/// Per plane p = n*C + c: sums of (x - k) and (x - k)^2 with the channel's shift k = x[0][c][0]
/// (a value of the channel keeps the one-pass variance accurate).
template <class T>
struct bn_plane_sums_f {
  const T* x;
  int channels, spatial;
  double *s1, *s2;
  NETSPLIT_HD void operator()(i64 p) const {
    const T k = x[(p % channels) * spatial];
    const T* xp = x + p * spatial;
    double a = 0, b = 0;
    for (int i = 0; i < spatial; ++i) {
      const double v = static_cast<double>(xp[i] - k);
      a += v;
      b += v * v;
    }
    s1[p] = a;
    s2[p] = b;
  }
};
/// Per channel: batch mean and biased variance from the plane sums; saves mean and
/// 1/sqrt(var + eps), updates the running statistics (unbiased variance), and writes the
/// normalisation as y = x * scale + shift.
template <class T>
struct bn_train_stats_f {
  const T *x, *gamma, *beta;
  int batch, channels, spatial;
  double eps, momentum;
  const double *s1, *s2;
  T *save_mean, *save_invstd, *running_mean, *running_var, *scale, *shift;
  NETSPLIT_HD void operator()(int c) const {
    double a = 0, b = 0;
    for (int n = 0; n < batch; ++n) {
      a += s1[i64{n} * channels + c];
      b += s2[i64{n} * channels + c];
    }
    const double m = static_cast<double>(i64{batch} * spatial);
    const double shifted_mean = a / m;
    const double mean = static_cast<double>(x[i64{c} * spatial]) + shifted_mean;
    double sq = b - a * shifted_mean;  // sum of squared deviations
    if (sq < 0) sq = 0;
    const double invstd = 1.0 / ::sqrt(sq / m + eps);
    scale[c] = static_cast<T>(gamma[c] * invstd);
    shift[c] = static_cast<T>(beta[c] - mean * gamma[c] * invstd);
    save_mean[c] = static_cast<T>(mean);
    save_invstd[c] = static_cast<T>(invstd);
    running_mean[c] = static_cast<T>((1 - momentum) * running_mean[c] + momentum * mean);
    running_var[c] = static_cast<T>((1 - momentum) * running_var[c] + momentum * (sq / (m - 1)));
  }
};
template <class T>
struct bn_eval_stats_f {
  const T *gamma, *beta, *running_mean, *running_var;
  double eps;
  T *save_mean, *save_invstd, *scale, *shift;
  NETSPLIT_HD void operator()(int c) const {
    const double invstd = 1.0 / ::sqrt(static_cast<double>(running_var[c]) + eps);
    scale[c] = static_cast<T>(gamma[c] * invstd);
    shift[c] = static_cast<T>(beta[c] - running_mean[c] * gamma[c] * invstd);
    save_mean[c] = running_mean[c];
    save_invstd[c] = static_cast<T>(invstd);
  }
};
/// y[i] = x[i] * scale[c] + shift[c], c the channel of element i.
template <class T>
struct bn_normalize_f {
  const T *x, *scale, *shift;
  int channels, spatial;
  NETSPLIT_HD T operator()(i64 i) const {
    const i64 c = (i / spatial) % channels;
    return x[i] * scale[c] + shift[c];
  }
};
/// y[i] = y[i] + shift[c] + r[i] (terms that are null left out), then max(., 0) with relu.
template <class T>
struct affine_epilogue_f {
  const T *y, *shift, *r;
  int channels, spatial;
  bool relu;
  NETSPLIT_HD T operator()(i64 i) const {
    T v = y[i];
    if (shift) v += shift[(i / spatial) % channels];
    if (r) v += r[i];
    return relu && !(v > T(0)) ? T(0) : v;
  }
};
/// Per output channel c: w_out[c][.] = w[c][.] * scale, shift[c] = beta - mean * scale,
/// scale = gamma / sqrt(var + eps) (batch_norm_forward_eval's rounding).
template <class T>
struct bn_fold_f {
  const T *w, *gamma, *beta, *running_mean, *running_var;
  double eps;
  i64 row;
  T *w_out, *shift;
  NETSPLIT_HD void operator()(int c) const {
    const double invstd = 1.0 / ::sqrt(static_cast<double>(running_var[c]) + eps);
    const T scale = static_cast<T>(gamma[c] * invstd);
    shift[c] = static_cast<T>(beta[c] - running_mean[c] * gamma[c] * invstd);
    for (i64 i = 0; i < row; ++i) w_out[c * row + i] = w[c * row + i] * scale;
  }
};
/// Per plane: sum dy and sum dy * (x - mean[c]).
template <class T>
struct bn_grad_sums_f {
  const T *x, *dy, *mean;
  int channels, spatial;
  double *s1, *s2;
  NETSPLIT_HD void operator()(i64 p) const {
    const T mu = mean[p % channels];
    const T* xp = x + p * spatial;
    const T* gp = dy + p * spatial;
    double a = 0, b = 0;
    for (int i = 0; i < spatial; ++i) {
      a += gp[i];
      b += static_cast<double>(gp[i]) * (xp[i] - mu);
    }
    s1[p] = a;
    s2[p] = b;
  }
};
/// Per channel: dgamma, dbeta and the coefficients of dx = g*dy + cx*(x - mean) + c0
/// (train: the batch statistics depend on x; eval: cx = c0 = 0).
template <class T>
struct bn_backward_coef_f {
  const T *gamma, *save_invstd;
  int batch, channels, spatial;
  bool batch_stats;
  const double *s1, *s2;
  T *dgamma, *dbeta, *g, *cx, *c0;
  NETSPLIT_HD void operator()(int c) const {
    double sdy = 0, sdyc = 0;
    for (int n = 0; n < batch; ++n) {
      sdy += s1[i64{n} * channels + c];
      sdyc += s2[i64{n} * channels + c];
    }
    const double m = static_cast<double>(i64{batch} * spatial);
    const double invstd = save_invstd[c];
    const double sdyx = sdyc * invstd;  // sum dy * xhat
    dgamma[c] = static_cast<T>(sdyx);
    dbeta[c] = static_cast<T>(sdy);
    const double gc = gamma[c] * invstd;
    g[c] = static_cast<T>(gc);
    cx[c] = batch_stats ? static_cast<T>(-gc * invstd * sdyx / m) : T(0);
    c0[c] = batch_stats ? static_cast<T>(-gc * sdy / m) : T(0);
  }
};
template <class T>
struct bn_input_grad_f {
  const T *x, *dy, *mean, *g, *cx, *c0;
  int channels, spatial;
  NETSPLIT_HD T operator()(i64 i) const {
    const i64 c = (i / spatial) % channels;
    return g[c] * dy[i] + cx[c] * (x[i] - mean[c]) + c0[c];
  }
};

// ---- shortcut, pooling, linear, loss, optimiser ---------------------------------------------------
/// y[n][co][oy][ox] = sum over entries e with dst[e] == co of coef[e] * x[n][src[e]][oy*s][ox*s].
template <class T>
struct scatter_forward_f {
  const T* x;
  const int *src, *dst;
  const T* coef;
  int entries, in_channels, out_channels, height, width, stride, ho, wo;
  NETSPLIT_HD T operator()(i64 i) const {
    const int ox = static_cast<int>(i % wo);
    i64 t = i / wo;
    const int oy = static_cast<int>(t % ho);
    t /= ho;
    const int co = static_cast<int>(t % out_channels);
    const i64 n = t / out_channels;
    T acc = T(0);
    for (int e = 0; e < entries; ++e)
      if (dst[e] == co)
        acc += coef[e] * x[((n * in_channels + src[e]) * height + i64{oy} * stride) * width + i64{ox} * stride];
    return acc;
  }
};
/// dx[n][ci][iy][ix] = sum over entries e with src[e] == ci of coef[e] * dy[n][dst[e]][iy/s][ix/s]
/// at sampled pixels (iy, ix multiples of the stride), else 0.
template <class T>
struct scatter_backward_f {
  const T* dy;
  const int *src, *dst;
  const T* coef;
  int entries, in_channels, out_channels, height, width, stride, ho, wo;
  NETSPLIT_HD T operator()(i64 i) const {
    const int ix = static_cast<int>(i % width);
    i64 t = i / width;
    const int iy = static_cast<int>(t % height);
    t /= height;
    const int ci = static_cast<int>(t % in_channels);
    const i64 n = t / in_channels;
    if (iy % stride != 0 || ix % stride != 0) return T(0);
    const i64 at = i64{iy / stride} * wo + ix / stride;
    T acc = T(0);
    for (int e = 0; e < entries; ++e)
      if (src[e] == ci) acc += coef[e] * dy[(n * out_channels + dst[e]) * ho * wo + at];
    return acc;
  }
};
template <class T>
struct avg_pool_forward_f {
  const T* x;
  int spatial;
  NETSPLIT_HD T operator()(i64 p) const {
    double s = 0;
    for (int i = 0; i < spatial; ++i) s += x[p * spatial + i];
    return static_cast<T>(s / spatial);
  }
};
template <class T>
struct avg_pool_backward_f {
  const T* dy;
  int spatial;
  NETSPLIT_HD T operator()(i64 i) const { return dy[i / spatial] / static_cast<T>(spatial); }
};
/// y[o] for output element o of 2x2 max pooling over planes of h x w (max_window_index).
template <class T>
struct max_pool_forward_f {
  const T* x;
  int h, w;
  NETSPLIT_HD T operator()(i64 o) const {
    const int ho = h / 2, wo = w / 2;
    const i64 p = o / (ho * wo);
    const int i = static_cast<int>(o % (ho * wo)) / wo, j = static_cast<int>(o % wo);
    const T* r = x + p * h * w + (2 * i) * w + 2 * j;
    const T v[4] = {r[0], r[1], r[w], r[w + 1]};
    return v[max_window_index(v[0], v[1], v[2], v[3])];
  }
};
/// dx[e] for input element e: dy of its window when e won it, else 0.
template <class T>
struct max_pool_backward_f {
  const T* x;
  const T* dy;
  int h, w;
  NETSPLIT_HD T operator()(i64 e) const {
    const int ho = h / 2, wo = w / 2;
    const i64 p = e / (h * w);
    const int y = static_cast<int>(e % (h * w)) / w, xq = static_cast<int>(e % w);
    const int i = y / 2, j = xq / 2;
    const T* r = x + p * h * w + (2 * i) * w + 2 * j;
    const int k = (y % 2) * 2 + (xq % 2);
    return max_window_index(r[0], r[1], r[w], r[w + 1]) == k ? dy[(p * ho + i) * wo + j] : T(0);
  }
};
/// y[i] += b[i % out]
template <class T>
struct add_bias_f {
  T* y;
  const T* b;
  int out;
  NETSPLIT_HD void operator()(i64 i) const { y[i] += b[i % out]; }
};
/// db[j] = sum over rows n of dy[n][j]
template <class T>
struct column_sums_f {
  const T* dy;
  int rows, cols;
  NETSPLIT_HD T operator()(int j) const {
    double s = 0;
    for (int n = 0; n < rows; ++n) s += dy[i64{n} * cols + j];
    return static_cast<T>(s);
  }
};
/// One sample of mean softmax cross-entropy: returns its loss, writes its dL/dlogits.
template <class T>
struct softmax_xent_f {
  const T* logits;
  const int* labels;
  T* dlogits;
  int n, classes;
  NETSPLIT_HD double operator()(int i) const {
    const T* z = logits + i64{i} * classes;
    T* g = dlogits + i64{i} * classes;
    double zmax = z[0];
    for (int k = 1; k < classes; ++k) zmax = z[k] > zmax ? static_cast<double>(z[k]) : zmax;
    double sum = 0;
    for (int k = 0; k < classes; ++k) sum += ::exp(z[k] - zmax);
    const double log_sum = ::log(sum) + zmax;
    const int y = labels[i];
    for (int k = 0; k < classes; ++k) g[k] = static_cast<T>((::exp(z[k] - log_sum) - (k == y ? 1.0 : 0.0)) / n);
    return log_sum - z[y];
  }
};
/// PyTorch-form SGD with momentum on element i.
template <class T>
struct sgd_f {
  T *w;
  const T* g;
  T* m;
  T lr, mu, wd;
  bool nesterov;
  NETSPLIT_HD void operator()(i64 i) const {
    const T gi = g[i] + wd * w[i];
    const T mi = mu * m[i] + gi;
    m[i] = mi;
    w[i] -= lr * (nesterov ? gi + mu * mi : mi);
  }
};

}  // namespace netsplit::detail::cuda_kernels
