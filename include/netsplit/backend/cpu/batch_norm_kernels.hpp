// netsplit/backend/cpu/batch_norm_kernels.hpp — per-channel reductions of the CPU backend's
// batch normalisation. Each contiguous run (one image's plane of a channel) is summed in
// the lanes of a 64-byte vector of T; lanes and runs are combined in double, in a fixed
// order, so results are deterministic. Forward statistics
// are taken about a shift (the channel's first value), which keeps E[v^2] - E[v]^2 well
// conditioned when the mean is large against the spread.
#pragma once

#include <cstdint>
#include <cstring>

namespace netsplit::detail::cpu_bn {

// Sums over one channel: `runs` contiguous runs of n values, run r starting at r * stride.

/// s1 += sum(p - k), s2 += sum((p - k)^2) over the channel's values p.
template <class T>
void shifted_sums(const T* p, std::int64_t runs, std::int64_t stride, std::int64_t n, T k, double& s1,
                  double& s2) {
  for (std::int64_t r = 0; r < runs; ++r)
    for (std::int64_t i = 0; i < n; ++i) {
      const double v = static_cast<double>(p[r * stride + i] - k);
      s1 += v;
      s2 += v * v;
    }
}
/// s1 += sum(g), s2 += sum(g * (x - mean)) over the channel's values, where g = dy, or, with
/// y not null, g = dy where y > 0 and 0 elsewhere (the gradient through a ReLU with output y);
/// g is also stored at the same offsets of `gout` where that is not null.
template <class T>
void gradient_sums(const T* dy, const T* y, const T* x, std::int64_t runs, std::int64_t stride, std::int64_t n,
                   T mean, double& s1, double& s2, T* gout = nullptr) {
  for (std::int64_t r = 0; r < runs; ++r)
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t j = r * stride + i;
      const T g = !y || y[j] > T(0) ? dy[j] : T(0);
      if (gout) gout[j] = g;
      s1 += g;
      s2 += static_cast<double>(g) * (x[j] - mean);
    }
}

#if defined(__GNUC__)
// float and double: lane accumulators of one 64-byte group of values (GCC/Clang vector
// extension), moved into double every `flush` values per lane at most. Written out because
// GCC 12 vectorises a plain loop of lane accumulators badly (the outer loop, with gathers).
// Where the target has no 64-byte registers (AVX2) the group is two 32-byte halves with
// their own accumulators: GCC 12 splits arithmetic on a 64-byte vector into halves well, but
// not the ReLU mask's comparison, which it computed a lane at a time (vcomiss and cmova per
// value, the accumulators through the stack: 2026-12-08, perf annotate on an AVX2-only AMD
// EPYC; BM_batch_norm_relu_backward 1.81 -> 1.00-1.26 ms at 16 channels of 32x32). Lane j of
// the group is lane j of the halves in order and the lanes go into double in the same order,
// so the halves add what the 64-byte vector added, in its order; one rounding differs:
// GCC now fuses gradient_sums' g * (x - mean) into its accumulation (an FMA), where the
// split 64-byte form rounded the product first (with -ffp-contract=off both give the same
// bits). The next run (the next image's plane, a page or more away, where hardware
// prefetchers stop) is prefetched at the same offset while this one is summed.
#if defined(__AVX512F__)
inline constexpr int bn_vector_parts = 1;
#else
inline constexpr int bn_vector_parts = 2;
#endif
/// lanes a[0][0..), a[1][0..), ... (the group's lanes in order) added into s, then zeroed
template <class V>
void bn_flush_lanes(V (&a)[bn_vector_parts], double& s) {
  constexpr int lanes = sizeof(V) / sizeof(a[0][0]);
  for (int h = 0; h < bn_vector_parts; ++h) {
    for (int j = 0; j < lanes; ++j) s += a[h][j];
    a[h] = V{};
  }
}
#define NETSPLIT_BN_VECTOR_SUMS(T, I)                                                        \
  inline void shifted_sums(const T* p, std::int64_t runs, std::int64_t stride, std::int64_t n, \
                           T k, double& s1, double& s2) {                                   \
    typedef T vp __attribute__((vector_size(64 / bn_vector_parts)));                        \
    constexpr std::int64_t w = 64 / sizeof(T), h = w / bn_vector_parts, flush = 256 * w;    \
    const std::int64_t body = n / w * w;                                                    \
    vp a1[bn_vector_parts] = {}, a2[bn_vector_parts] = {}, v;                               \
    std::int64_t pending = 0;                                                               \
    for (std::int64_t r = 0; r < runs; ++r) {                                               \
      const T* q = p + r * stride;                                                          \
      const bool ahead = r + 1 < runs;                                                      \
      for (std::int64_t i = 0; i < body; i += w) {                                          \
        if (ahead) __builtin_prefetch(q + stride + i, 0, 3);                                \
        for (int e = 0; e < bn_vector_parts; ++e) {                                         \
          std::memcpy(&v, q + i + e * h, sizeof v);                                         \
          v -= k;                                                                           \
          a1[e] += v;                                                                       \
          a2[e] += v * v;                                                                   \
        }                                                                                   \
      }                                                                                     \
      if (body < n) shifted_sums<T>(q + body, 1, 0, n - body, k, s1, s2);                   \
      pending += body;                                                                      \
      if (pending >= flush || r + 1 == runs) {                                              \
        bn_flush_lanes(a1, s1);                                                             \
        bn_flush_lanes(a2, s2);                                                             \
        pending = 0;                                                                        \
      }                                                                                     \
    }                                                                                       \
  }                                                                                         \
  inline void gradient_sums(const T* dy, const T* y, const T* x, std::int64_t runs, std::int64_t stride, \
                            std::int64_t n, T mean, double& s1, double& s2, T* gout = nullptr) { \
    typedef T vp __attribute__((vector_size(64 / bn_vector_parts)));                        \
    typedef I ivp __attribute__((vector_size(64 / bn_vector_parts)));                       \
    constexpr std::int64_t w = 64 / sizeof(T), h = w / bn_vector_parts, flush = 256 * w;    \
    const std::int64_t body = n / w * w;                                                    \
    vp a1[bn_vector_parts] = {}, a2[bn_vector_parts] = {}, g, v, yv;                        \
    std::int64_t pending = 0;                                                               \
    for (std::int64_t r = 0; r < runs; ++r) {                                               \
      const T* gq = dy + r * stride;                                                        \
      const T* xq = x + r * stride;                                                         \
      const T* yq = y ? y + r * stride : nullptr;                                           \
      T* oq = gout ? gout + r * stride : nullptr;                                           \
      const bool ahead = r + 1 < runs;                                                      \
      for (std::int64_t i = 0; i < body; i += w) {                                          \
        if (ahead) {                                                                        \
          __builtin_prefetch(gq + stride + i, 0, 3);                                        \
          __builtin_prefetch(xq + stride + i, 0, 3);                                        \
          if (yq) __builtin_prefetch(yq + stride + i, 0, 3);                                \
        }                                                                                   \
        for (int e = 0; e < bn_vector_parts; ++e) {                                         \
          const std::int64_t j = i + e * h;                                                 \
          std::memcpy(&g, gq + j, sizeof g);                                                \
          std::memcpy(&v, xq + j, sizeof v);                                                \
          if (yq) {                                                                         \
            std::memcpy(&yv, yq + j, sizeof yv);                                            \
            g = (vp)((ivp)g & (ivp)(yv > T(0)));                                            \
          }                                                                                 \
          if (oq) std::memcpy(oq + j, &g, sizeof g);                                        \
          a1[e] += g;                                                                       \
          a2[e] += g * (v - mean);                                                          \
        }                                                                                   \
      }                                                                                     \
      if (body < n)                                                                         \
        gradient_sums<T>(gq + body, yq ? yq + body : nullptr, xq + body, 1, 0, n - body, mean, s1, s2, \
                         oq ? oq + body : nullptr);                                         \
      pending += body;                                                                      \
      if (pending >= flush || r + 1 == runs) {                                              \
        bn_flush_lanes(a1, s1);                                                             \
        bn_flush_lanes(a2, s2);                                                             \
        pending = 0;                                                                        \
      }                                                                                     \
    }                                                                                       \
  }
NETSPLIT_BN_VECTOR_SUMS(float, std::int32_t)
NETSPLIT_BN_VECTOR_SUMS(double, std::int64_t)
#undef NETSPLIT_BN_VECTOR_SUMS
#endif

/// y = x * scale + shift over [0, n).
template <class T>
void scale_shift(const T* x, std::int64_t n, T scale, T shift, T* y) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = x[i] * scale + shift;
}

/// y = max(x * scale + shift, 0) over [0, n).
template <class T>
void scale_shift_relu(const T* x, std::int64_t n, T scale, T shift, T* y) {
  for (std::int64_t i = 0; i < n; ++i) {
    const T v = x[i] * scale + shift;
    y[i] = v > T(0) ? v : T(0);
  }
}
/// y = max(x * scale + shift + r, 0) over [0, n).
template <class T>
void scale_shift_add_relu(const T* x, std::int64_t n, T scale, T shift, const T* r, T* y) {
  for (std::int64_t i = 0; i < n; ++i) {
    const T v = x[i] * scale + shift + r[i];
    y[i] = v > T(0) ? v : T(0);
  }
}
/// dx = g * dy + c * (x - mean) + c0 over [0, n).
template <class T>
void input_gradient(const T* dy, const T* x, std::int64_t n, T g, T c, T mean, T c0, T* dx) {
  for (std::int64_t i = 0; i < n; ++i) dx[i] = g * dy[i] + c * (x[i] - mean) + c0;
}
/// The same with dy masked by y > 0 (the gradient through a ReLU with output y).
template <class T>
void input_gradient(const T* dy, const T* y, const T* x, std::int64_t n, T g, T c, T mean, T c0, T* dx) {
  for (std::int64_t i = 0; i < n; ++i) {
    const T d = y[i] > T(0) ? dy[i] : T(0);
    dx[i] = g * d + c * (x[i] - mean) + c0;
  }
}

}  // namespace netsplit::detail::cpu_bn
