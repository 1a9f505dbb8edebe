// netsplit/backend/cpu/pool_kernels.hpp — 2x2 max pooling (stride 2) over one row of windows.
// The winner of a window is max_window_index's (backend/descriptors.hpp: the first maximum in
// row-major order; a NaN wins, the first NaN if several). With its branches, random inputs
// make the winner unpredictable: the backward of 64 channels 32x32 at batch 128 took 29 ms
// against 6 ms when one element always won. Here 8 windows at a time (4 for rows of 4-7
// windows) are compared and selected with masks in GCC/clang vector types, which the
// compiler lowers to AVX-512, AVX2 or SSE: the same three steps as max_window_index,
// m = take ? v : m with take = (m == m) & (v > m | v != v), so the selected value (its sign of
// zero, a NaN's bits) and the winner are exactly max_window_index's. The windows left over
// (and double) take the scalar rule.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "netsplit/backend/descriptors.hpp"

namespace netsplit::detail::cpu_pool {

typedef float f8 __attribute__((vector_size(32)));
typedef std::int32_t i8 __attribute__((vector_size(32)));
typedef float f4 __attribute__((vector_size(16)));
typedef std::int32_t i4 __attribute__((vector_size(16)));

/// Lane shuffles for 8 (f8) and 4 (f4) windows at a time: the even and odd elements of two
/// vectors, and their interleave (low and high halves).
struct w8 {
  using F = f8;
  using I = i8;
  static constexpr int n = 8;
  static F even(F a, F b) { return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14); }
  static F odd(F a, F b) { return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15); }
  static F lo(F a, F b) { return __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11); }
  static F hi(F a, F b) { return __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15); }
};
struct w4 {
  using F = f4;
  using I = i4;
  static constexpr int n = 4;
  static F even(F a, F b) { return __builtin_shufflevector(a, b, 0, 2, 4, 6); }
  static F odd(F a, F b) { return __builtin_shufflevector(a, b, 1, 3, 5, 7); }
  static F lo(F a, F b) { return __builtin_shufflevector(a, b, 0, 4, 1, 5); }
  static F hi(F a, F b) { return __builtin_shufflevector(a, b, 2, 6, 3, 7); }
};

template <class V>
V load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
void store(float* p, V v) {
  std::memcpy(p, &v, sizeof v);
}
template <class F, class I>
F select(I take, F a, F b) {
  return (F)((take & (I)a) | (~take & (I)b));
}

/// The winners of W::n windows (columns 2j.. of rows r0, r1): m their values, k their
/// indices 0..3.
template <class W>
struct winners {
  typename W::F m;
  typename W::I k;
};
template <class W>
winners<W> find_winners(const float* r0, const float* r1) {
  using F = typename W::F;
  using I = typename W::I;
  const F a0 = load<F>(r0), a1 = load<F>(r0 + W::n), b0 = load<F>(r1), b1 = load<F>(r1 + W::n);
  const F v[3] = {W::odd(a0, a1), W::even(b0, b1), W::odd(b0, b1)};
  F m = W::even(a0, a1);
  I k{};
  for (int q = 0; q < 3; ++q) {
    const I take = (m == m) & ((v[q] > m) | (v[q] != v[q]));
    m = select(take, v[q], m);
    k = (take & (q + 1)) | (~take & k);
  }
  return {m, k};
}
template <class W>
void backward_windows(const float* r0, const float* r1, const float* g, float* d0, float* d1) {
  using F = typename W::F;
  const auto w = find_winners<W>(r0, r1);
  const F gj = load<F>(g), zero{};
  const F e0 = select(w.k == 0, gj, zero), e1 = select(w.k == 1, gj, zero);
  const F e2 = select(w.k == 2, gj, zero), e3 = select(w.k == 3, gj, zero);
  store(d0, W::lo(e0, e1));
  store(d0 + W::n, W::hi(e0, e1));
  store(d1, W::lo(e2, e3));
  store(d1 + W::n, W::hi(e2, e3));
}

/// y[j] = the winner's value of window j of rows r0, r1 (columns 2j, 2j+1), j < wo.
template <class T>
void max_pool_row_forward(const T* r0, const T* r1, int wo, T* y) {
  int j = 0;
  if constexpr (std::is_same_v<T, float>) {
    for (; j + 8 <= wo; j += 8) store(y + j, find_winners<w8>(r0 + 2 * j, r1 + 2 * j).m);
    for (; j + 4 <= wo; j += 4) store(y + j, find_winners<w4>(r0 + 2 * j, r1 + 2 * j).m);
  }
  for (; j < wo; ++j) {
    const T v[4] = {r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]};
    y[j] = v[max_window_index(v[0], v[1], v[2], v[3])];
  }
}

/// d0, d1 (rows 2i, 2i+1 of dx) = g[j] at window j's winner, zero elsewhere.
template <class T>
void max_pool_row_backward(const T* r0, const T* r1, const T* g, int wo, T* d0, T* d1) {
  int j = 0;
  if constexpr (std::is_same_v<T, float>) {
    for (; j + 8 <= wo; j += 8) backward_windows<w8>(r0 + 2 * j, r1 + 2 * j, g + j, d0 + 2 * j, d1 + 2 * j);
    for (; j + 4 <= wo; j += 4) backward_windows<w4>(r0 + 2 * j, r1 + 2 * j, g + j, d0 + 2 * j, d1 + 2 * j);
  }
  for (; j < wo; ++j) {
    const int win = max_window_index(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]);
    d0[2 * j] = win == 0 ? g[j] : T(0);
    d0[2 * j + 1] = win == 1 ? g[j] : T(0);
    d1[2 * j] = win == 2 ? g[j] : T(0);
    d1[2 * j + 1] = win == 3 ? g[j] : T(0);
  }
}

}  // namespace netsplit::detail::cpu_pool
