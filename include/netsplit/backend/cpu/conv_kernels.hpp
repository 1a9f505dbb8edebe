// netsplit/backend/cpu/conv_kernels.hpp — the CPU backend's convolution engine.
// Convolution as an implicit GEMM over "plane buffers": a batch chunk of images is copied
// once into zero-padded, flattened planes (one per stride phase) so that every kernel tap
// is a contiguous, shifted view of the buffer. Forward and input-gradient are then
//   out[m][q] = sum_k A[k][m] * src[off[k] + q]      (vectorised over positions q)
// and the weight gradient is  dw[m][k] += sum_q g[m][q] * src[off[k] + q].
// Positions q cover whole image blocks, including a few padding positions per row that are
// computed and thrown away (3-20% extra work at ResNet20's sizes), in exchange for no
// im2col matrix and no index arithmetic in the inner loops.
// Float uses AVX-512 or AVX2/FMA register-blocked kernels when compiled for them; every
// other case (double, other ISAs) uses the same engine with portable scalar kernels.
// Summation order depends only on the shapes and the thread count: results are
// bit-reproducible for a fixed thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#include "netsplit/backend/cpu/batch_norm_kernels.hpp"
#include "netsplit/backend/cpu/context.hpp"
#include "netsplit/backend/descriptors.hpp"
#include "netsplit/core/errors.hpp"

namespace netsplit::detail::cpu_conv {

using i64 = std::int64_t;

constexpr i64 round_up(i64 v, i64 m) { return (v + m - 1) / m * m; }

#if defined(__AVX2__) && defined(__FMA__)
/// out[j][i] = in[i][j] for 8 vectors of 8 (the AVX2 transpose16 below and the F(4x4) AVX2
/// transforms of winograd_f4.hpp).
inline void transpose8(const __m256 in[8], __m256 out[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(in[2 * i], in[2 * i + 1]);      // [a0 b0 a1 b1 | a4 b4 a5 b5]
    t[2 * i + 1] = _mm256_unpackhi_ps(in[2 * i], in[2 * i + 1]);  // [a2 b2 a3 b3 | a6 b6 a7 b7]
  }
  for (int h = 0; h < 2; ++h)  // rows 4h .. 4h+3: s[4h + q] = column q (and 4 + q) of them
    for (int u = 0; u < 2; ++u) {
      s[4 * h + 2 * u] = _mm256_shuffle_ps(t[4 * h + u], t[4 * h + 2 + u], _MM_SHUFFLE(1, 0, 1, 0));
      s[4 * h + 2 * u + 1] = _mm256_shuffle_ps(t[4 * h + u], t[4 * h + 2 + u], _MM_SHUFFLE(3, 2, 3, 2));
    }
  for (int q = 0; q < 4; ++q) {
    out[q] = _mm256_permute2f128_ps(s[q], s[4 + q], 0x20);
    out[4 + q] = _mm256_permute2f128_ps(s[q], s[4 + q], 0x31);
  }
}
/// Stores v's first k lanes at p (all of them where k >= 8): the AVX2 transpose16 below and
/// the F(4x4) AVX2 transforms' last, partial vectors.
inline void store_first(float* p, __m256 v, i64 k) {
  if (k >= 8) {
    _mm256_storeu_ps(p, v);
  } else if (k == 4) {
    _mm_storeu_ps(p, _mm256_castps256_ps128(v));
  } else {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(k)), lane), v);
  }
}
#endif

// ---- micro-kernels ------------------------------------------------------------------------------
// fwd_tile: out[r][0..qt) = sum_k a[k][r] * (base + off[k])[0..qt) for r < fwd_mr.
// wgrad_tile: dw[r][c] += sum_{q in [q0,q1)} g[r][q] * (base + off[c])[q], r < wg_mr, c < wg_kr;
// q0 and q1 are multiples of wg_step.
// wgrad_tile needs ten 64-byte loads (in the direct engine, six of them line-splitting) per
// 24 FMAs. Until 2026-12-06 it ran at half fwd_tile's rate: GCC folded each column load into
// its four FMAs (28 loads per 24 FMAs; in_register keeps the column in a register now), and
// its sums went through the stack. A variant on g transposed to [q][co] (vectorised over
// output channels, input broadcast) was measured too: no faster at 32-64 channels, and slower
// at 16 channels, where the transpose costs more than it saves. With at least 32 channels each
// way (128 where transpose16 is the scalar loop) winograd.hpp transposes both operands and
// computes the weight gradient by fwd_tile (winograd_backward_weights_packed).

/// dst[q * ld + r] = src[r * ls + q] for r < rows (at most 16) and q < 16: a block of a
/// transposed operand (winograd.hpp's packed weight gradient; kernels<T>::transpose16).
template <class T>
void transpose16_portable(const T* src, i64 ls, int rows, T* dst, i64 ld) {
  for (int r = 0; r < rows; ++r)
    for (int q = 0; q < 16; ++q) dst[q * ld + r] = src[r * ls + q];
}

/// Portable kernels for any scalar type.
template <class T>
struct kernels {
  static constexpr int fwd_mr = 4, fwd_qt = 8, fwd_step = fwd_qt, wg_mr = 1, wg_kr = 1, wg_step = 1;
  static constexpr bool vector_transpose = false;  // transpose16 is the scalar loop
  /// Never called: with fwd_step = fwd_qt no product has a narrower last block.
  template <bool Acc = false>
  static void fwd_tail(const T*, const i64*, i64, const T*, T*, i64, i64) {}
  /// Acc: out += the sums instead of out = (winograd.hpp's packed weight gradient).
  template <bool Acc = false>
  static void fwd_tile(const T* base, const i64* off, i64 K, const T* a, T* out, i64 ors) {
    T acc[fwd_mr][fwd_qt] = {};
    for (i64 k = 0; k < K; ++k, a += fwd_mr) {
      const T* b = base + off[k];
      for (int r = 0; r < fwd_mr; ++r)
        for (int j = 0; j < fwd_qt; ++j) acc[r][j] += a[r] * b[j];
    }
    for (int r = 0; r < fwd_mr; ++r)
      for (int j = 0; j < fwd_qt; ++j) out[r * ors + j] = Acc ? out[r * ors + j] + acc[r][j] : acc[r][j];
  }
  static void transpose16(const T* src, i64 ls, int rows, T* dst, i64 ld) {
    transpose16_portable(src, ls, rows, dst, ld);
  }
  static void wgrad_tile(const T* g, i64, const T* base, const i64* off, i64 q0, i64 q1, T* dw, i64) {
    const T* s = base + off[0];
    T acc = 0;
    for (i64 q = q0; q < q1; ++q) acc += g[q] * s[q];
    dw[0] += acc;
  }
};

#if defined(__AVX512F__)
template <>
struct kernels<float> {
  static constexpr int fwd_mr = 8, fwd_nv = 3, fwd_qt = 16 * fwd_nv, fwd_step = 16;
  static constexpr int wg_mr = 4, wg_kr = 6, wg_step = 16;
  static constexpr bool vector_transpose = true;
  /// fwd_tile over the first `width` columns only (16 or 32: a product's last block of
  /// columns), each column summed in the same order as fwd_tile's. Without it a product of
  /// 64 columns (VGG's 4x4 maps: one tile per image, 64 images per thread) computed 96.
  template <bool Acc = false>
  static void fwd_tail(const float* base, const i64* off, i64 K, const float* a, float* out, i64 ors, i64 width) {
    if (width > 16)
      fwd_narrow<2, Acc>(base, off, K, a, out, ors);
    else
      fwd_narrow<1, Acc>(base, off, K, a, out, ors);
  }
  /// out = (Acc: out +) v
  template <bool Acc>
  static void put(float* out, __m512 v) {
    _mm512_storeu_ps(out, Acc ? _mm512_add_ps(_mm512_loadu_ps(out), v) : v);
  }
  template <int NV, bool Acc>
  static void fwd_narrow(const float* base, const i64* off, i64 K, const float* a, float* out, i64 ors) {
    static_assert(fwd_mr == 8 && (NV == 1 || NV == 2), "fwd_narrow names 8 x 2 accumulators");
    const __m512 z = _mm512_setzero_ps();
#define NETSPLIT_ROW(r) __m512 c##r##0 = z, c##r##1 = z;
    NETSPLIT_ROW(0) NETSPLIT_ROW(1) NETSPLIT_ROW(2) NETSPLIT_ROW(3)
    NETSPLIT_ROW(4) NETSPLIT_ROW(5) NETSPLIT_ROW(6) NETSPLIT_ROW(7)
#undef NETSPLIT_ROW
    for (i64 k = 0; k < K; ++k, a += fwd_mr) {
      const float* b = base + off[k];
      const __m512 b0 = _mm512_loadu_ps(b), b1 = NV == 2 ? _mm512_loadu_ps(b + 16) : z;
#define NETSPLIT_ROW(r)                                            \
  {                                                                \
    const __m512 av = _mm512_set1_ps(a[r]);                        \
    c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);                    \
    if constexpr (NV == 2) c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1); \
  }
      NETSPLIT_ROW(0) NETSPLIT_ROW(1) NETSPLIT_ROW(2) NETSPLIT_ROW(3)
      NETSPLIT_ROW(4) NETSPLIT_ROW(5) NETSPLIT_ROW(6) NETSPLIT_ROW(7)
#undef NETSPLIT_ROW
    }
#define NETSPLIT_ROW(r)                                            \
  put<Acc>(out + r * ors, c##r##0);                                \
  if constexpr (NV == 2) put<Acc>(out + r * ors + 16, c##r##1);
    NETSPLIT_ROW(0) NETSPLIT_ROW(1) NETSPLIT_ROW(2) NETSPLIT_ROW(3)
    NETSPLIT_ROW(4) NETSPLIT_ROW(5) NETSPLIT_ROW(6) NETSPLIT_ROW(7)
#undef NETSPLIT_ROW
  }
  // Masked forms with an explicit source: the plain ones (and _mm512_reduce_add_ps) pass
  // _mm512_undefined_ps(), which trips GCC 12's -Wuninitialized inside its own headers.
  // The 24 accumulators are named variables, not an array: GCC 12 does not split an array of
  // 24 vectors (1.5 KB, over its scalar-replacement limit) into registers at the loop's ends,
  // so it zeroed, spilled and reloaded all of them through the stack on every call (72 extra
  // memory moves; about a quarter of a call at 16 input channels). Measured in isolation
  // (16 channels, L2-resident operands, 4 runs): 72-89 -> 86-114 GFLOP/s on one core.
  /// Acc: out += the sums instead of out = (winograd.hpp's packed weight gradient).
  template <bool Acc = false>
  static void fwd_tile(const float* base, const i64* off, i64 K, const float* a, float* out, i64 ors) {
    static_assert(fwd_mr == 8 && fwd_nv == 3, "fwd_tile names 8 x 3 accumulators");
    const __m512 z = _mm512_setzero_ps();
#define NETSPLIT_ROW(r) __m512 c##r##0 = z, c##r##1 = z, c##r##2 = z;
    NETSPLIT_ROW(0) NETSPLIT_ROW(1) NETSPLIT_ROW(2) NETSPLIT_ROW(3)
    NETSPLIT_ROW(4) NETSPLIT_ROW(5) NETSPLIT_ROW(6) NETSPLIT_ROW(7)
#undef NETSPLIT_ROW
    for (i64 k = 0; k < K; ++k, a += fwd_mr) {
      const float* b = base + off[k];
      const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32);
#define NETSPLIT_ROW(r)                                   \
  {                                                       \
    const __m512 av = _mm512_set1_ps(a[r]);               \
    c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);           \
    c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1);           \
    c##r##2 = _mm512_fmadd_ps(av, b2, c##r##2);           \
  }
      NETSPLIT_ROW(0) NETSPLIT_ROW(1) NETSPLIT_ROW(2) NETSPLIT_ROW(3)
      NETSPLIT_ROW(4) NETSPLIT_ROW(5) NETSPLIT_ROW(6) NETSPLIT_ROW(7)
#undef NETSPLIT_ROW
    }
#define NETSPLIT_ROW(r)                               \
  put<Acc>(out + r * ors, c##r##0);                   \
  put<Acc>(out + r * ors + 16, c##r##1);              \
  put<Acc>(out + r * ors + 32, c##r##2);
    NETSPLIT_ROW(0) NETSPLIT_ROW(1) NETSPLIT_ROW(2) NETSPLIT_ROW(3)
    NETSPLIT_ROW(4) NETSPLIT_ROW(5) NETSPLIT_ROW(6) NETSPLIT_ROW(7)
#undef NETSPLIT_ROW
  }
  /// As transpose16_portable, in registers: 16 loads (rows past `rows` zero), four
  /// stages of 16 two-source shuffles, 16 stores of `rows` lanes.
  static void transpose16(const float* src, i64 ls, int rows, float* dst, i64 ld) {
    constexpr __mmask16 all = 0xFFFF;
    constexpr __mmask8 all8 = 0xFF;
    const __mmask16 lanes = static_cast<__mmask16>((1u << rows) - 1);
    __m512 a[16], b[16];
    for (int r = 0; r < 16; ++r) a[r] = r < rows ? _mm512_loadu_ps(src + r * ls) : _mm512_setzero_ps();
    for (int i = 0; i < 16; i += 2) {  // b[i]: per 128-bit lane, [a_i q0, a_i+1 q0, a_i q1, a_i+1 q1]
      b[i] = _mm512_mask_unpacklo_ps(a[i], all, a[i], a[i + 1]);
      b[i + 1] = _mm512_mask_unpackhi_ps(a[i], all, a[i], a[i + 1]);
    }
    const auto pd = [](__m512 x) { return _mm512_castps_pd(x); };
    const auto ps = [](__m512d x) { return _mm512_castpd_ps(x); };
    for (int i = 0; i < 16; i += 4)  // a[i + j]: per 128-bit lane, rows i..i+3 of one column
      for (int j = 0; j < 2; ++j) {
        a[i + 2 * j] = ps(_mm512_mask_unpacklo_pd(pd(b[i + j]), all8, pd(b[i + j]), pd(b[i + j + 2])));
        a[i + 2 * j + 1] = ps(_mm512_mask_unpackhi_pd(pd(b[i + j]), all8, pd(b[i + j]), pd(b[i + j + 2])));
      }
    for (int i = 0; i < 16; i += 8)  // 128-bit lanes across groups of four rows
      for (int j = 0; j < 4; ++j) {
        b[i + j] = _mm512_mask_shuffle_f32x4(a[i + j], all, a[i + j], a[i + j + 4], _MM_SHUFFLE(2, 0, 2, 0));
        b[i + j + 4] = _mm512_mask_shuffle_f32x4(a[i + j], all, a[i + j], a[i + j + 4], _MM_SHUFFLE(3, 1, 3, 1));
      }
    for (int j = 0; j < 8; ++j) {
      a[j] = _mm512_mask_shuffle_f32x4(b[j], all, b[j], b[j + 8], _MM_SHUFFLE(2, 0, 2, 0));
      a[j + 8] = _mm512_mask_shuffle_f32x4(b[j], all, b[j], b[j + 8], _MM_SHUFFLE(3, 1, 3, 1));
    }
    for (int q = 0; q < 16; ++q) _mm512_mask_storeu_ps(dst + q * ld, lanes, a[q]);  // a[q]: column q
  }
  /// Keeps v in a register: GCC 12 otherwise folds wgrad_tile's column loads into its four
  /// FMAs as memory operands, loading each column four times (28 loads per 24 FMAs, of which
  /// the direct engine's shifted columns mostly split cache lines).
  [[gnu::always_inline]] static inline void in_register(__m512& v) { __asm__("" : "+v"(v)); }
  static void wgrad_tile(const float* g, i64 gs, const float* base, const i64* off, i64 q0, i64 q1,
                         float* dw, i64 dws) {
    // named accumulators, as in fwd_tile (an array of 24 went through the stack every call)
    static_assert(wg_mr == 4 && wg_kr == 6, "wgrad_tile names 4 x 6 accumulators");
    const __m512 z = _mm512_setzero_ps();
#define NETSPLIT_ROW(r) __m512 c##r##0 = z, c##r##1 = z, c##r##2 = z, c##r##3 = z, c##r##4 = z, c##r##5 = z;
    NETSPLIT_ROW(0) NETSPLIT_ROW(1) NETSPLIT_ROW(2) NETSPLIT_ROW(3)
#undef NETSPLIT_ROW
    const float *s0 = base + off[0], *s1 = base + off[1], *s2 = base + off[2], *s3 = base + off[3],
                *s4 = base + off[4], *s5 = base + off[5];
    for (i64 q = q0; q < q1; q += 16) {
      const __m512 g0 = _mm512_load_ps(g + q), g1 = _mm512_load_ps(g + gs + q), g2 = _mm512_load_ps(g + 2 * gs + q),
                   g3 = _mm512_load_ps(g + 3 * gs + q);
#define NETSPLIT_COL(c)                                 \
  {                                                     \
    __m512 sv = _mm512_loadu_ps(s##c + q);              \
    in_register(sv);                                    \
    c0##c = _mm512_fmadd_ps(g0, sv, c0##c);             \
    c1##c = _mm512_fmadd_ps(g1, sv, c1##c);             \
    c2##c = _mm512_fmadd_ps(g2, sv, c2##c);             \
    c3##c = _mm512_fmadd_ps(g3, sv, c3##c);             \
  }
      NETSPLIT_COL(0) NETSPLIT_COL(1) NETSPLIT_COL(2) NETSPLIT_COL(3) NETSPLIT_COL(4) NETSPLIT_COL(5)
#undef NETSPLIT_COL
    }
    // the 24 sums at once by one tree reduction (69 instructions instead of 24 separate
    // horizontal sums' 216: over a chunk's few hundred tiles these were half the kernel's
    // time), added to dw's four rows of six with masked vector moves
    const __m512 acc[wg_mr][wg_kr] = {
        {c00, c01, c02, c03, c04, c05}, {c10, c11, c12, c13, c14, c15},
        {c20, c21, c22, c23, c24, c25}, {c30, c31, c32, c33, c34, c35}};
    // Row r's six sums are lanes 6r .. 6r+5 of [lo, hi], moved to lanes 0..5 in registers: the
    // sums went through a stack buffer before, and masked loads at 24-byte offsets of two
    // 64-byte stores fail store-to-load forwarding (about a third of a call at 64 channels,
    // where a chunk has three steps of tiles; AMD EPYC, perf annotate).
    __m512 lo, hi;
    sum24(acc, lo, hi);
    constexpr __mmask16 six = 0x3F;
    const auto add_row = [dw, dws](int r, __m512 v) {
      float* row = dw + r * dws;
      _mm512_mask_storeu_ps(row, six, _mm512_add_ps(_mm512_maskz_loadu_ps(six, row), v));
    };
    const __m512i six_lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const auto from = [lo, hi, six_lanes](int first) {  // lanes first .. first+5 of [lo, hi]
      return _mm512_permutex2var_ps(lo, _mm512_add_epi32(_mm512_set1_epi32(first), six_lanes), hi);
    };
    add_row(0, lo);
    add_row(1, from(6));
    add_row(2, from(12));
    add_row(3, from(18));
  }
  /// Lane i of lo = the sum of the 16 lanes of v[i / 6][i % 6] (i < 16), lane i of hi that of
  /// v[(16 + i) / 6][(16 + i) % 6] (i < 8; lanes 8.. a copy).
  [[gnu::always_inline]] static inline void sum24(const __m512 (&v)[wg_mr][wg_kr], __m512& lo, __m512& hi) {
    static_assert(wg_mr * wg_kr == 24);
    constexpr __mmask16 all = 0xFFFF;
    constexpr __mmask8 all8 = 0xFF;
    const auto at = [&v](int i) { return v[i / wg_kr][i % wg_kr]; };
    const auto pd = [](__m512 x) { return _mm512_castps_pd(x); };
    const auto ps = [](__m512d x) { return _mm512_castpd_ps(x); };
    // lane-pair sums: per 128-bit lane, p[k] = [A0 B0 A1 B1], partials of A = v(2k), B = v(2k+1)
    __m512 p[12], q[6], r[3];
    for (int k = 0; k < 12; ++k)
      p[k] = _mm512_add_ps(_mm512_mask_unpacklo_ps(at(2 * k), all, at(2 * k), at(2 * k + 1)),
                           _mm512_mask_unpackhi_ps(at(2 * k), all, at(2 * k), at(2 * k + 1)));
    // q[k]: per 128-bit lane, that lane's sums of v(4k .. 4k+3)
    for (int k = 0; k < 6; ++k) {
      const __m512d a = pd(p[2 * k]), b = pd(p[2 * k + 1]);
      q[k] = _mm512_add_ps(ps(_mm512_mask_unpacklo_pd(a, all8, a, b)), ps(_mm512_mask_unpackhi_pd(a, all8, a, b)));
    }
    // r[k] = [lanes 0+1 of q[2k], lanes 2+3 of q[2k], the same two of q[2k+1]]
    const auto pairs = [all](__m512 x, __m512 y) {
      return _mm512_add_ps(_mm512_mask_shuffle_f32x4(x, all, x, y, _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_mask_shuffle_f32x4(x, all, x, y, _MM_SHUFFLE(3, 1, 3, 1)));
    };
    for (int k = 0; k < 3; ++k) r[k] = pairs(q[2 * k], q[2 * k + 1]);
    lo = pairs(r[0], r[1]);  // sums of v(0 .. 15)
    hi = pairs(r[2], r[2]);  // sums of v(16 .. 23), then a copy
  }
};
#elif defined(__AVX2__) && defined(__FMA__)
template <>
struct kernels<float> {
  static constexpr int fwd_mr = 4, fwd_nv = 3, fwd_qt = 8 * fwd_nv, fwd_step = 8;
  static constexpr int wg_mr = 2, wg_kr = 6, wg_step = 8;
  static constexpr bool vector_transpose = true;
  /// As the AVX-512 fwd_tail: the first `width` (8 or 16) columns only.
  template <bool Acc = false>
  static void fwd_tail(const float* base, const i64* off, i64 K, const float* a, float* out, i64 ors, i64 width) {
    if (width > 8)
      fwd_narrow<2, Acc>(base, off, K, a, out, ors);
    else
      fwd_narrow<1, Acc>(base, off, K, a, out, ors);
  }
  /// out = (Acc: out +) v
  template <bool Acc>
  static void put(float* out, __m256 v) {
    _mm256_storeu_ps(out, Acc ? _mm256_add_ps(_mm256_loadu_ps(out), v) : v);
  }
  template <int NV, bool Acc>
  static void fwd_narrow(const float* base, const i64* off, i64 K, const float* a, float* out, i64 ors) {
    static_assert(fwd_mr == 4 && (NV == 1 || NV == 2), "fwd_narrow names 4 x 2 accumulators");
    const __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z;
    for (i64 k = 0; k < K; ++k, a += fwd_mr) {
      const float* b = base + off[k];
      const __m256 b0 = _mm256_loadu_ps(b), b1 = NV == 2 ? _mm256_loadu_ps(b + 8) : z;
#define NETSPLIT_ROW(r)                                            \
  {                                                                \
    const __m256 av = _mm256_broadcast_ss(a + r);                  \
    c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);                    \
    if constexpr (NV == 2) c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1); \
  }
      NETSPLIT_ROW(0) NETSPLIT_ROW(1) NETSPLIT_ROW(2) NETSPLIT_ROW(3)
#undef NETSPLIT_ROW
    }
#define NETSPLIT_ROW(r)                                            \
  put<Acc>(out + r * ors, c##r##0);                                \
  if constexpr (NV == 2) put<Acc>(out + r * ors + 8, c##r##1);
    NETSPLIT_ROW(0) NETSPLIT_ROW(1) NETSPLIT_ROW(2) NETSPLIT_ROW(3)
#undef NETSPLIT_ROW
  }
  // named accumulators, as in the AVX-512 kernels (GCC 12 kept arrays of them on the stack)
  template <bool Acc = false>
  static void fwd_tile(const float* base, const i64* off, i64 K, const float* a, float* out, i64 ors) {
    static_assert(fwd_mr == 4 && fwd_nv == 3, "fwd_tile names 4 x 3 accumulators");
    const __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c02 = z, c10 = z, c11 = z, c12 = z, c20 = z, c21 = z, c22 = z, c30 = z, c31 = z, c32 = z;
    for (i64 k = 0; k < K; ++k, a += fwd_mr) {
      const float* b = base + off[k];
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), b2 = _mm256_loadu_ps(b + 16);
#define NETSPLIT_ROW(r)                                   \
  {                                                       \
    const __m256 av = _mm256_broadcast_ss(a + r);         \
    c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);           \
    c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);           \
    c##r##2 = _mm256_fmadd_ps(av, b2, c##r##2);           \
  }
      NETSPLIT_ROW(0) NETSPLIT_ROW(1) NETSPLIT_ROW(2) NETSPLIT_ROW(3)
#undef NETSPLIT_ROW
    }
#define NETSPLIT_ROW(r)                               \
  put<Acc>(out + r * ors, c##r##0);                   \
  put<Acc>(out + r * ors + 8, c##r##1);               \
  put<Acc>(out + r * ors + 16, c##r##2);
    NETSPLIT_ROW(0) NETSPLIT_ROW(1) NETSPLIT_ROW(2) NETSPLIT_ROW(3)
#undef NETSPLIT_ROW
  }
  /// dst[q * ld + r] = src[r * ls + q] for r < rows (at most 16), q < 16: four 8x8 blocks,
  /// each eight rows (zero past `rows`) loaded, transposed in registers and stored as eight
  /// columns of their first min(8, rows - first row) lanes.
  static void transpose16(const float* src, i64 ls, int rows, float* dst, i64 ld) {
    for (int h = 0; h < rows; h += 8) {
      const int n = std::min(8, rows - h);
      for (int q0 = 0; q0 < 16; q0 += 8) {
        __m256 a[8], t[8];
        for (int i = 0; i < 8; ++i) a[i] = i < n ? _mm256_loadu_ps(src + (h + i) * ls + q0) : _mm256_setzero_ps();
        transpose8(a, t);
        for (int j = 0; j < 8; ++j) store_first(dst + (q0 + j) * ld + h, t[j], n);
      }
    }
  }
  static void wgrad_tile(const float* g, i64 gs, const float* base, const i64* off, i64 q0, i64 q1,
                         float* dw, i64 dws) {
    static_assert(wg_mr == 2 && wg_kr == 6, "wgrad_tile names 2 x 6 accumulators");
    const __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c02 = z, c03 = z, c04 = z, c05 = z, c10 = z, c11 = z, c12 = z, c13 = z, c14 = z, c15 = z;
    const float *s0 = base + off[0], *s1 = base + off[1], *s2 = base + off[2], *s3 = base + off[3],
                *s4 = base + off[4], *s5 = base + off[5];
    for (i64 q = q0; q < q1; q += 8) {
      const __m256 g0 = _mm256_load_ps(g + q), g1 = _mm256_load_ps(g + gs + q);
#define NETSPLIT_COL(c)                                 \
  {                                                     \
    __m256 sv = _mm256_loadu_ps(s##c + q);              \
    __asm__("" : "+v"(sv)); /* as AVX-512's in_register */ \
    c0##c = _mm256_fmadd_ps(g0, sv, c0##c);             \
    c1##c = _mm256_fmadd_ps(g1, sv, c1##c);             \
  }
      NETSPLIT_COL(0) NETSPLIT_COL(1) NETSPLIT_COL(2) NETSPLIT_COL(3) NETSPLIT_COL(4) NETSPLIT_COL(5)
#undef NETSPLIT_COL
    }
    // the 12 sums in one tree of horizontal adds (as the AVX-512 kernel's sum24), not 12
    // reductions of 6 instructions each: r8 = sums of c00..c05, c10, c11; r4 of c12..c15
    const __m256 g0 = _mm256_hadd_ps(_mm256_hadd_ps(c00, c01), _mm256_hadd_ps(c02, c03));
    const __m256 g1 = _mm256_hadd_ps(_mm256_hadd_ps(c04, c05), _mm256_hadd_ps(c10, c11));
    const __m256 g2 = _mm256_hadd_ps(_mm256_hadd_ps(c12, c13), _mm256_hadd_ps(c14, c15));
    const __m256 r8 = _mm256_add_ps(_mm256_permute2f128_ps(g0, g1, 0x20), _mm256_permute2f128_ps(g0, g1, 0x31));
    const __m128 r4 = _mm_add_ps(_mm256_castps256_ps128(g2), _mm256_extractf128_ps(g2, 1));
    const __m128 lo = _mm256_castps256_ps128(r8), hi = _mm256_extractf128_ps(r8, 1);  // hi: c04 c05 c10 c11
    _mm_storeu_ps(dw, _mm_add_ps(_mm_loadu_ps(dw), lo));
    add2(dw + 4, hi);
    add2(dw + dws, _mm_movehl_ps(hi, hi));
    _mm_storeu_ps(dw + dws + 2, _mm_add_ps(_mm_loadu_ps(dw + dws + 2), r4));
  }
  /// p[0..2) += v[0..2) (through __m64, which may alias float)
  static void add2(float* p, __m128 v) {
    const __m128 old = _mm_loadl_pi(_mm_setzero_ps(), reinterpret_cast<const __m64*>(p));
    _mm_storel_pi(reinterpret_cast<__m64*>(p), _mm_add_ps(old, v));
  }
};
#endif

/// What conv2d_forward_affine adds to a convolution's output y: y = max(y + shift[m] + r, 0)
/// (shift per output channel, r shaped like y; either may be null; the max only with relu).
/// With s1 (conv2d_forward_sums), the engine also adds the shifted sums of each output
/// channel's stored values, s1[m] += sum(y - stat_shift[m]), s2[m] += sum((y - stat_shift[m])^2),
/// to the sums of the block of images being stored, about the block's own shift: stat_shift[m]
/// starts as NaN and becomes the first value stored for channel m in the block (a value near
/// the channel's mean, which keeps s2 - s1^2 / n well conditioned). of_block gives each block
/// its own sums and shifts (no two blocks share them, so the result depends only on the shapes
/// and the blocks, not on which thread ran which).
template <class T>
struct conv_epilogue {
  const T* shift = nullptr;
  const T* residual = nullptr;
  bool relu = false;
  // Statistics (s1 not null): per block of images the engine takes as one chunk (named by its
  // first image n0, so the sums do not depend on which thread ran the block), the values'
  // sums about the block's shift, and the block's image count.
  T* stat_shift = nullptr;  // [batch][M] for the whole call; block n0's [M] after of_block
  double* s1 = nullptr;     // [batch][2][M] for the whole call; block n0's [2][M] after of_block
  double* s2 = nullptr;
  int* images = nullptr;    // [batch]: images[n0] = the block's images, 0 where no block starts
  /// The epilogue of the block of `count` images from image n0 of a convolution with M output
  /// channels: its own sums (zeroed) and shifts (NaN: none yet), the block recorded in `images`.
  conv_epilogue of_block(i64 n0, int count, int M) const {
    conv_epilogue e = *this;
    if (s1) {
      e.s1 = s1 + 2 * i64{M} * n0;
      e.s2 = e.s1 + M;
      e.stat_shift = stat_shift + i64{M} * n0;
      std::fill(e.s1, e.s1 + 2 * i64{M}, 0.0);
      std::fill(e.stat_shift, e.stat_shift + M, std::numeric_limits<T>::quiet_NaN());
      images[n0] = count;
    }
    return e;
  }
};
/// Applies e to one plane p of output channel m (`plane` values); r is the residual's plane
/// (null when e has none).
template <class T>
void epilogue_plane(const conv_epilogue<T>& e, int m, i64 plane, T* __restrict p, const T* __restrict r) {
  const T s = e.shift ? e.shift[m] : T(0);
  if (r && e.shift)
    for (i64 i = 0; i < plane; ++i) p[i] += s + r[i];
  else if (r)
    for (i64 i = 0; i < plane; ++i) p[i] += r[i];
  else if (e.shift)
    for (i64 i = 0; i < plane; ++i) p[i] += s;
  if (e.relu)
    for (i64 i = 0; i < plane; ++i) p[i] = p[i] > T(0) ? p[i] : T(0);
  if (e.s1) {
    if (e.stat_shift[m] != e.stat_shift[m]) e.stat_shift[m] = p[0];  // the block's first value
    cpu_bn::shifted_sums(p, 1, 0, plane, e.stat_shift[m], e.s1[m], e.s2[m]);
  }
}
/// Applies e to `count` images of M planes of `plane` values at y; r is the residual at the
/// same images (null when e has none).
template <class T>
void apply_epilogue(const conv_epilogue<T>& e, int count, int M, i64 plane, T* y, const T* r) {
  for (int n = 0; n < count; ++n)
    for (int m = 0; m < M; ++m) {
      const i64 at = (i64{n} * M + m) * plane;
      epilogue_plane(e, m, plane, y + at, r ? r + at : nullptr);
    }
}

#if defined(__AVX512F__)
// Row moves for float with masked loads and stores: one or two instructions for a short
// row, where the generic loops run scalar (ResNet20's rows are 8-34 values).
inline __mmask16 first_lanes(i64 n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }
/// Lanes of 16 consecutive Winograd tiles, from flat tile g0 of rows of tw tiles (tw dividing
/// 16 or a multiple of 16), whose column is 0 (`last` false) or tw-1.
inline __mmask16 tile_column_mask(int tw, i64 g0, bool last) {
  if (tw >= 16) return (g0 + (last ? 16 : 0)) % tw == 0 ? __mmask16(last ? 0x8000 : 0x0001) : __mmask16(0);
  unsigned m = 0;
  for (int l = last ? tw - 1 : 0; l < 16; l += tw) m |= 1u << l;
  return static_cast<__mmask16>(m);
}
inline void copy_row(float* dst, const float* src, i64 n) {
  for (i64 i = 0; i < n; i += 16) {
    const __mmask16 m = first_lanes(n - i);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
  }
}
inline void zero_row(float* dst, i64 n) {
  for (i64 i = 0; i < n; i += 16) _mm512_mask_storeu_ps(dst + i, first_lanes(n - i), _mm512_setzero_ps());
}
inline void gather_even(float* dst, const float* src, i64 n) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (i64 i = 0; i < n; i += 16) {
    const i64 m = std::min<i64>(16, n - i), need = 2 * m - 1;  // reads src[2i, 2i + need)
    const __m512 lo = _mm512_maskz_loadu_ps(first_lanes(need), src + 2 * i);
    const __m512 hi = _mm512_maskz_loadu_ps(first_lanes(std::max<i64>(0, need - 16)), src + 2 * i + 16);
    _mm512_mask_storeu_ps(dst + i, first_lanes(m), _mm512_permutex2var_ps(lo, even, hi));
  }
}
/// even[i] = src[2i] for i < ne, odd[i] = src[2i + 1] for i < no: a row's two stride-2
/// phases from one pass over it.
inline void split_row(float* even, i64 ne, float* odd, i64 no, const float* src) {
  const __m512i ei = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i oi = _mm512_add_epi32(ei, _mm512_set1_epi32(1));
  const i64 n = std::max(2 * ne - 1, 2 * no);  // reads src[0, n)
  for (i64 i = 0; 2 * i < n; i += 16) {
    const i64 need = std::min<i64>(32, n - 2 * i);
    const __m512 lo = _mm512_maskz_loadu_ps(first_lanes(need), src + 2 * i);
    const __m512 hi = _mm512_maskz_loadu_ps(first_lanes(std::max<i64>(0, need - 16)), src + 2 * i + 16);
    if (i < ne) _mm512_mask_storeu_ps(even + i, first_lanes(ne - i), _mm512_permutex2var_ps(lo, ei, hi));
    if (i < no) _mm512_mask_storeu_ps(odd + i, first_lanes(no - i), _mm512_permutex2var_ps(lo, oi, hi));
  }
}
inline void interleave_row(float* dst, const float* even, const float* odd, i64 n) {
  const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (i64 i = 0; i < n; i += 32) {  // dst[i, i + 32) from even/odd[i/2, i/2 + 16)
    const i64 m = std::min<i64>(32, n - i);
    const __m512 e = _mm512_maskz_loadu_ps(first_lanes((m + 1) / 2), even + i / 2);
    const __m512 o = _mm512_maskz_loadu_ps(first_lanes(m / 2), odd + i / 2);
    _mm512_mask_storeu_ps(dst + i, first_lanes(m), _mm512_permutex2var_ps(e, lo_idx, o));
    if (m > 16) _mm512_mask_storeu_ps(dst + i + 16, first_lanes(m - 16), _mm512_permutex2var_ps(e, hi_idx, o));
  }
}
#endif

// ---- geometry -----------------------------------------------------------------------------------
/// Layout of the plane buffers for one convolution.
/// Each (channel, phase) row holds `lead` zeros, then image blocks of hs x ws positions, then
/// zeros up to the row stride. Phase (py, px) position (a, b) of image n holds
/// x[n][s*a + py - pad][s*b + px - pad] (zero outside the image). Output (n, oy, ox) is
/// position q = n*block + oy*ws + ox; tap (ky, kx) reads its phase at q + (ky/s)*ws + kx/s.
/// Stride 1 with "same" padding shares padding between neighbours: a row's right padding is
/// the next row's left padding (ws = W + pad), an image's bottom padding is the next image's
/// top padding (hs = H + pad); otherwise hs = ho + (k-1)/s, ws = wo + (k-1)/s.
/// The output gradient g uses the same positions (zero where q is not an output), so the
/// weight gradient reads src exactly as the forward does, and the input gradient of phase
/// (ry, rx) is a stride-1 correlation of g: dx[s*A + ry - pad][s*B + rx - pad] =
/// sum over taps ky = ry + s*jy, kx = rx + s*jx of w * g[(A - jy)*ws + (B - jx)].
struct geometry {
  int s = 1, k = 1, pad = 0;
  int h = 0, w = 0, ho = 0, wo = 0;
  int hs = 0, ws = 0;  // rows and columns of an image block
  int phases = 1;      // phases per dimension: min(s, k)
  i64 block = 0;       // hs * ws
  i64 reach = 0;       // largest tap offset: ((k-1)/s) * (ws + 1)
  i64 lead = 0;        // zeros before the first image block (>= reach, multiple of 16)

  explicit geometry(const conv2d_desc& d)
      : s(d.stride), k(d.kernel), pad(d.pad), h(d.in_height), w(d.in_width), ho(d.out_height()),
        wo(d.out_width()) {
    if (s == 1 && k == 2 * pad + 1) {
      hs = h + pad;
      ws = w + pad;
    } else {
      hs = ho + (k - 1) / s;
      ws = wo + (k - 1) / s;
    }
    phases = std::min(s, k);
    block = i64{hs} * ws;
    reach = i64{(k - 1) / s} * (ws + 1);
    lead = round_up(reach, 16);
  }
  /// Row stride of a plane buffer holding `images` blocks, computed in tiles of `qt`.
  i64 row_stride(int images, int qt) const {
    return round_up(lead + images * block + qt + reach + 16, 16);
  }
};

// ---- packing ------------------------------------------------------------------------------------
// Rows are short (8-34 values at ResNet20's sizes): copies are inlined in 64-byte pieces,
// since a library memcpy call per row costs as much as the copy.

/// dst[i] = src[i] for i < n.
template <class T>
inline void copy_row(T* dst, const T* src, i64 n) {
  constexpr i64 w = 64 / sizeof(T);
  i64 i = 0;
  for (; i + w <= n; i += w) {
    T piece[w];
    std::memcpy(piece, src + i, sizeof piece);
    std::memcpy(dst + i, piece, sizeof piece);
  }
  for (; i < n; ++i) dst[i] = src[i];
}
/// dst[i] = 0 for i < n.
template <class T>
inline void zero_row(T* dst, i64 n) {
  for (i64 i = 0; i < n; ++i) dst[i] = T(0);
}
/// dst[i] = src[2 * i] for i < n (one stride-2 phase of a row).
template <class T>
inline void gather_even(T* dst, const T* src, i64 n) {
  for (i64 i = 0; i < n; ++i) dst[i] = src[2 * i];
}
/// even[i] = src[2i] for i < ne, odd[i] = src[2i + 1] for i < no.
template <class T>
inline void split_row(T* even, i64 ne, T* odd, i64 no, const T* src) {
  for (i64 i = 0; i < ne; ++i) even[i] = src[2 * i];
  for (i64 i = 0; i < no; ++i) odd[i] = src[2 * i + 1];
}
/// dst[2i] = even[i], dst[2i + 1] = odd[i]: merges two stride-2 phases into a row of n.
template <class T>
inline void interleave_row(T* dst, const T* even, const T* odd, i64 n) {
  const i64 pairs = n / 2;
  for (i64 i = 0; i < pairs; ++i) {
    dst[2 * i] = even[i];
    dst[2 * i + 1] = odd[i];
  }
  if (n % 2) dst[n - 1] = even[pairs];
}

/// Readies `rows` buffer rows of stride rs for a pack that writes only the data of images
/// [0, count) into its first `data_rows` rows: `previous` = 0 (a thread's first block of a
/// call) clears them all; `previous` > 0 says buf holds this call's last pack, of `previous`
/// images, whose zeros are where this one needs them, so only the blocks of images
/// [count, previous) are cleared (a shorter last chunk).
template <class T>
void clear_for_pack(const geometry& g, i64 rows, i64 data_rows, int count, int previous, T* buf, i64 rs) {
  if (previous <= 0)
    std::fill(buf, buf + rows * rs, T(0));
  else
    for (i64 r = 0; r < data_rows && count < previous; ++r)
      std::fill(buf + r * rs + g.lead + count * g.block, buf + r * rs + g.lead + previous * g.block, T(0));
}

/// pack_planes for stride 2 with two phases per dimension: each source row is read once for
/// both column phases. Phase px holds source column 2b + px - pad at b, so the even columns
/// go to phase pe = pad % 2 from b = (pad - pe) / 2, the odd ones to the other from
/// b = (pad + pe) / 2 (ws positions each; the rest zero).
/// The zeros (borders, padding rows and columns, the rows' tails) lie at the same places in
/// every chunk of a call, so only the data are written (clear_for_pack). Each source row then
/// costs two loads, two permutes and two stores; the row-by-row zeroing had taken about as
/// long again (docs/performance.md, "Where a training step goes; stride-2 packs").
template <class T>
void pack_planes_s2(const geometry& g, int channels, int count, const T* x, T* buf, i64 rs, int previous) {
  const i64 plane = i64{g.h} * g.w;
  const int pe = g.pad % 2, be = (g.pad - pe) / 2, bo = (g.pad + pe) / 2;
  const i64 ne = std::clamp<i64>(g.ws - be, 0, (g.w + 1) / 2), no = std::clamp<i64>(g.ws - bo, 0, g.w / 2);
  const i64 lines = (plane * static_cast<i64>(sizeof(T)) + 63) / 64, steps = 2 * i64{g.hs};
  clear_for_pack(g, i64{channels} * 4, i64{channels} * 4, count, previous, buf, rs);
  for (int c = 0; c < channels; ++c) {
    T* rows[4];  // phase (py, px) at rows[2 * py + px]
    for (int ph = 0; ph < 4; ++ph) rows[ph] = buf + (i64{c} * 4 + ph) * rs;
    for (int n = 0; n < count; ++n) {
      const T* xc = x + (i64{n} * channels + c) * plane;
      // the plane read next is a page or more away, where the hardware prefetchers stop:
      // fetch it a few lines per row written
      const T* next = n + 1 < count ? xc + channels * plane : c + 1 < channels ? x + (c + 1) * plane : nullptr;
      i64 step = 0;
      for (int py = 0; py < 2; ++py) {
        T* de = rows[2 * py + pe] + g.lead + n * g.block;
        T* dd = rows[2 * py + 1 - pe] + g.lead + n * g.block;
        for (int a = 0; a < g.hs; ++a, de += g.ws, dd += g.ws, ++step) {
          if (next)
            for (i64 l = step * lines / steps; l < (step + 1) * lines / steps; ++l)
              __builtin_prefetch(reinterpret_cast<const char*>(next) + 64 * l, 0, 3);
          const int iy = 2 * a + py - g.pad;
          if (iy >= 0 && iy < g.h) split_row(de + be, ne, dd + bo, no, xc + i64{iy} * g.w);
        }
      }
    }
  }
}

/// Copies images [0, count) of x (NCHW, `channels` channels) into the phase planes;
/// `previous`: images of this call's last pack into buf (0: none; pack_planes_s2).
template <class T>
void pack_planes(const geometry& g, int channels, int count, const T* x, T* buf, i64 rs, int previous = 0) {
  if (g.s == 2 && g.phases == 2 && g.ws > g.pad) return pack_planes_s2(g, channels, count, x, buf, rs, previous);
  const i64 plane = i64{g.h} * g.w;
  for (int c = 0; c < channels; ++c)
    for (int py = 0; py < g.phases; ++py)
      for (int px = 0; px < g.phases; ++px) {
        T* row = buf + (i64{c} * g.phases * g.phases + py * g.phases + px) * rs;
        std::fill(row, row + g.lead, T(0));
        // columns b whose source x column s*b + px - pad lies inside the image
        const int b_lo = std::min(g.ws, std::max(0, (g.pad - px + g.s - 1) / g.s));
        const int last = g.w - 1 + g.pad - px;  // largest s*b with a source column inside
        const int b_hi = std::max(b_lo, std::min(g.ws, last < 0 ? 0 : last / g.s + 1));
        for (int n = 0; n < count; ++n) {
          const T* xc = x + (i64{n} * channels + c) * plane;
          T* dst = row + g.lead + n * g.block;
          for (int a = 0; a < g.hs; ++a, dst += g.ws) {
            const int iy = g.s * a + py - g.pad;
            if (iy < 0 || iy >= g.h) {
              zero_row(dst, g.ws);
              continue;
            }
            zero_row(dst, b_lo);
            const T* xr = xc + i64{iy} * g.w + (g.s * b_lo + px - g.pad);
            if (g.s == 1) {
              copy_row(dst + b_lo, xr, b_hi - b_lo);
            } else if (g.s == 2) {
              gather_even(dst + b_lo, xr, b_hi - b_lo);
            } else {
              for (int b = 0; b < b_hi - b_lo; ++b) dst[b_lo + b] = xr[g.s * b];
            }
            zero_row(dst + b_hi, g.ws - b_hi);
          }
        }
        std::fill(row + g.lead + count * g.block, row + rs, T(0));
      }
}

/// Copies the output gradient of images [0, count) into position layout (zeros elsewhere);
/// rows [channels, rows) are all zero. Only the data are written (clear_for_pack: `previous`).
template <class T>
void pack_grad(const geometry& g, int channels, int rows, int count, const T* dy, T* buf, i64 rs, int previous) {
  const i64 plane = i64{g.ho} * g.wo;
  clear_for_pack(g, rows, channels, count, previous, buf, rs);
  for (int c = 0; c < channels; ++c) {
    T* row = buf + i64{c} * rs;
    for (int n = 0; n < count; ++n) {
      const T* src = dy + (i64{n} * channels + c) * plane;
      T* dst = row + g.lead + n * g.block;
      for (int a = 0; a < g.ho; ++a, dst += g.ws, src += g.wo) copy_row(dst, src, g.wo);
    }
  }
}

/// out[m][q] = sum_k A[k][m] * base[off[k] + q] for q in [0, qr), all m tiles; qr a multiple of
/// fwd_step (a last block narrower than fwd_qt takes fwd_tail).
template <class T>
void run_fwd(const T* base, const i64* off, i64 K, const T* apack, int mtiles, T* out, i64 ors, i64 qr) {
  using kern = kernels<T>;
  i64 q0 = 0;
  for (; q0 + kern::fwd_qt <= qr; q0 += kern::fwd_qt)
    for (int mt = 0; mt < mtiles; ++mt)
      kern::fwd_tile(base + q0, off, K, apack + mt * K * kern::fwd_mr, out + mt * kern::fwd_mr * ors + q0, ors);
  if (q0 < qr)
    for (int mt = 0; mt < mtiles; ++mt)
      kern::fwd_tail(base + q0, off, K, apack + mt * K * kern::fwd_mr, out + mt * kern::fwd_mr * ors + q0, ors,
                     qr - q0);
}

/// Scratch slots of the context used by the engine: per thread 0 (input planes),
/// 1 (gradient planes or forward output), 2 (input-gradient output), 3 (weight-gradient
/// partial: thread 0's holds every group's of for_weight_gradient_groups); thread 0's slots 4 and 5 hold the packed weights and tap offsets shared by all,
/// slot 6 the transposed weights of winograd.hpp's input gradient; per thread, slot 7 the
/// packed operands of winograd.hpp's packed weight gradient (in the direct engine's backward,
/// the count of images its packs hold).
enum slot : int {
  slot_src = 0, slot_grad = 1, slot_out = 2, slot_dw = 3, slot_weights = 4, slot_offsets = 5, slot_rotated = 6,
  slot_packed = 7
};

/// Images per chunk (at most `images`, at least 1) whose buffers, `values_per_position` values
/// of `elem_bytes` bytes per position of g's layout, fit in `budget_bytes`
/// (cpu_context::conv_chunk_bytes: a share of the core's L2, so the packs stay there).
inline int chunk_images(const geometry& g, i64 values_per_position, std::size_t elem_bytes, int images,
                        std::size_t budget_bytes) {
  const i64 per_image = std::max<i64>(1, g.block * values_per_position * static_cast<i64>(elem_bytes));
  return static_cast<int>(std::clamp<i64>(static_cast<i64>(budget_bytes) / per_image, 1, std::max(1, images)));
}

/// Offsets of the forward taps (ci, ky, kx), in weight order, relative to the first row's base.
inline void forward_offsets(const geometry& g, int in_channels, i64 rs, i64* off) {
  const int p = g.phases;
  i64 i = 0;
  for (int c = 0; c < in_channels; ++c)
    for (int ky = 0; ky < g.k; ++ky)
      for (int kx = 0; kx < g.k; ++kx)
        off[i++] = (i64{c} * p * p + (ky % g.s) * p + kx % g.s) * rs + i64{ky / g.s} * g.ws + kx / g.s;
}

// ---- drivers ------------------------------------------------------------------------------------
/// y = conv(x, w), then the epilogue ep where not null (per output plane as it is stored).
template <class T>
void forward(cpu_context& ctx, const conv2d_desc& d, const T* x, const T* w, T* y, const conv_epilogue<T>* ep = nullptr) {
  using kern = kernels<T>;
  const geometry g(d);
  const int M = d.out_channels, cin = d.in_channels;
  const i64 K = i64{cin} * d.kernel * d.kernel;
  const int mtiles = static_cast<int>((M + kern::fwd_mr - 1) / kern::fwd_mr);
  const int per_thread = (d.batch + ctx.threads() - 1) / ctx.threads();
  const int nb = chunk_images(g, i64{cin} * g.phases * g.phases + M, sizeof(T), per_thread, ctx.conv_chunk_bytes());
  const i64 rs = g.row_stride(nb, kern::fwd_qt);
  const i64 ors = round_up(nb * g.block + kern::fwd_qt, 16);

  T* apack = ctx.scratch<T>(0, slot_weights, static_cast<std::size_t>(mtiles * kern::fwd_mr * K));
  for (int mt = 0; mt < mtiles; ++mt)
    for (i64 k = 0; k < K; ++k)
      for (int r = 0; r < kern::fwd_mr; ++r) {
        const int m = mt * kern::fwd_mr + r;
        apack[(mt * K + k) * kern::fwd_mr + r] = m < M ? w[m * K + k] : T(0);
      }
  i64* off = ctx.scratch<i64>(0, slot_offsets, static_cast<std::size_t>(K));
  forward_offsets(g, cin, rs, off);

  const i64 in_img = i64{cin} * d.in_height * d.in_width, out_img = i64{M} * g.ho * g.wo;
  // per thread, in its slot_out (unused here): the images of its last pack into its buffer
  // (0: none yet), pack_planes' `previous`, across the blocks it takes
  for (int t = 0; t < ctx.threads(); ++t) *ctx.scratch<int>(t, slot_out, 1) = 0;
  // blocks of nb images taken in turn (statistics summed per block: the same whichever
  // thread runs it)
  ctx.pool().parallel_for_dynamic(d.batch, nb, [&](std::ptrdiff_t n0, std::ptrdiff_t n1, int t) {
    T* src = ctx.scratch<T>(t, slot_src, static_cast<std::size_t>(cin * g.phases * g.phases * rs));
    T* out = ctx.scratch<T>(t, slot_grad, static_cast<std::size_t>(mtiles * kern::fwd_mr * ors));
    const int count = static_cast<int>(n1 - n0);
    const conv_epilogue<T> ept = ep ? ep->of_block(n0, count, M) : conv_epilogue<T>{};
    int& packed = *ctx.scratch<int>(t, slot_out, 1);
    pack_planes(g, cin, count, x + n0 * in_img, src, rs, std::exchange(packed, count));
    run_fwd(src + g.lead, off, K, apack, mtiles, out, ors, round_up(count * g.block, kern::fwd_qt));
    T* yn = y + n0 * out_img;
    const i64 plane = i64{g.ho} * g.wo;
    for (int n = 0; n < count; ++n)
      for (int m = 0; m < M; ++m) {
        T* ym = yn + (i64{n} * M + m) * plane;
        for (int oy = 0; oy < g.ho; ++oy) copy_row(ym + i64{oy} * g.wo, out + m * ors + n * g.block + i64{oy} * g.ws, g.wo);
        if (ep) epilogue_plane(ept, m, plane, ym, ep->residual ? ep->residual + (n0 * out_img + (ym - yn)) : nullptr);
      }
  });
}

/// Taps of input-gradient phase (ry, rx): (jy, jx) with ky = ry + s*jy < k, kx = rx + s*jx < k.
struct phase_taps {
  int ry = 0, rx = 0, ny = 0, nx = 0;  // tap counts per dimension
  i64 k_offset = 0;                     // first reduction index of this phase in the shared tables
};

/// A weight gradient's batch in chunks of nb images, the chunks in groups (one for one thread,
/// else four per thread, at most one per chunk) with a partial sum of `per` values each, in
/// thread 0's slot_dw: chunk(t, n0, count, first, part) for each chunk [n0, n0 + count) on
/// thread t, first whether it is its group's first chunk (the body writes or zeroes the
/// group's partial `part` there). The groups are taken over by whichever thread is free
/// (parallel_for_dynamic: a faster core takes over a slower one's last groups instead of
/// waiting, as the forwards' blocks are); the caller adds the partials in group order, so the
/// weight gradient is the same whichever thread ran which group. (With parallel_for's fixed
/// halves the weight gradients, about a quarter of a ResNet20 step, waited for the slower of two
/// uneven vCPUs; docs/performance.md, eighteenth pass.) Used by the direct engine's backward
/// below and winograd.hpp's weight_gradient_frame.
template <class T>
struct weight_gradient_partials {
  T* parts;    // group g's partial at parts + g * per
  int groups;
};
template <class T, class Chunk>
weight_gradient_partials<T> for_weight_gradient_groups(cpu_context& ctx, i64 batch, int nb, i64 per, Chunk&& chunk) {
  const i64 chunks = (batch + nb - 1) / nb;
  const int groups = ctx.threads() <= 1 ? 1 : static_cast<int>(std::min<i64>(chunks, i64{4} * ctx.threads()));
  T* parts = ctx.scratch<T>(0, slot_dw, static_cast<std::size_t>(groups * per));
  ctx.pool().parallel_for_dynamic(groups, 1, [&](std::ptrdiff_t g, std::ptrdiff_t, int t) {
    const i64 c0 = chunks * g / groups, c1 = chunks * (g + 1) / groups;
    for (i64 c = c0; c < c1; ++c)
      chunk(t, c * nb, static_cast<int>(std::min<i64>(nb, batch - c * nb)), c == c0, parts + g * per);
  });
  return {parts, groups};
}

/// dw = dL/dw; dx = dL/dx (unless null), plus dx_add where that is not null (per plane as
/// it is stored).
template <class T>
void backward(cpu_context& ctx, const conv2d_desc& d, const T* x, const T* w, const T* dy, T* dx, T* dw,
              const T* dx_add = nullptr) {
  using kern = kernels<T>;
  const geometry g(d);
  const int cout = d.out_channels, cin = d.in_channels, s = d.stride, kk = d.kernel;
  const i64 K = i64{cin} * kk * kk;
  const int wg_mtiles = (cout + kern::wg_mr - 1) / kern::wg_mr;
  const i64 wg_kpad = round_up(K, kern::wg_kr);
  const int dx_mtiles = (cin + kern::fwd_mr - 1) / kern::fwd_mr;
  const int per_thread = (d.batch + ctx.threads() - 1) / ctx.threads();
  const int nb = chunk_images(g, i64{cin} * g.phases * g.phases + cout + (dx ? cin * s * s : 0), sizeof(T),
                              per_thread, ctx.conv_chunk_bytes());
  const i64 rs = std::max(g.row_stride(nb, kern::fwd_qt), g.row_stride(nb, kern::wg_step));
  const i64 ors = round_up(nb * g.block + kern::fwd_qt, 16);

  // Shared tables: forward tap offsets (padded to the weight-gradient tile), then per phase
  // the input-gradient offsets into g and the packed transposed weights.
  NETSPLIT_EXPECT(s <= 8, "conv2d stride ", s, " is larger than the CPU backend supports (8)");
  phase_taps ph[64];
  int nphases = 0;
  i64 dx_k = 0;
  if (dx) {
    for (int ry = 0; ry < s; ++ry)
      for (int rx = 0; rx < s; ++rx) {
        phase_taps p{ry, rx, ry < kk ? (kk - 1 - ry) / s + 1 : 0, rx < kk ? (kk - 1 - rx) / s + 1 : 0, dx_k};
        dx_k += i64{cout} * p.ny * p.nx;
        ph[nphases++] = p;
      }
  }
  i64* off = ctx.scratch<i64>(0, slot_offsets, static_cast<std::size_t>(wg_kpad + dx_k));
  forward_offsets(g, cin, rs, off);
  std::fill(off + K, off + wg_kpad, i64{0});
  i64* dx_off = off + wg_kpad;
  T* apack = ctx.scratch<T>(0, slot_weights, static_cast<std::size_t>(std::max<i64>(1, dx_mtiles * kern::fwd_mr * dx_k)));
  for (int pi = 0; pi < nphases; ++pi) {
    const auto& p = ph[pi];
    const i64 taps = i64{p.ny} * p.nx, kp = cout * taps;
    i64* po = dx_off + p.k_offset;
    T* pa = apack + p.k_offset * dx_mtiles * kern::fwd_mr;
    for (int co = 0; co < cout; ++co)
      for (int jy = 0; jy < p.ny; ++jy)
        for (int jx = 0; jx < p.nx; ++jx) {
          const i64 kidx = co * taps + jy * p.nx + jx;
          const int ky = p.ry + s * jy, kx = p.rx + s * jx;
          po[kidx] = co * rs - (i64{jy} * g.ws + jx);
          for (int mt = 0; mt < dx_mtiles; ++mt)
            for (int r = 0; r < kern::fwd_mr; ++r) {
              const int ci = mt * kern::fwd_mr + r;
              pa[(mt * kp + kidx) * kern::fwd_mr + r] = ci < cin ? w[((i64{co} * cin + ci) * kk + ky) * kk + kx] : T(0);
            }
        }
  }

  const i64 out_phase = i64{dx_mtiles} * kern::fwd_mr * ors;  // input-gradient buffer of one phase
  // stride 2 with every phase non-empty and in range: merge column phases row by row
  const bool merge2 = s == 2 && kk >= 2 && (d.in_height - 1 + g.pad) / 2 < g.hs && (d.in_width - 1 + g.pad) / 2 < g.ws;
  const i64 in_img = i64{cin} * d.in_height * d.in_width, out_img = i64{cout} * g.ho * g.wo;
  const i64 dw_rows = i64{wg_mtiles} * kern::wg_mr, per = dw_rows * wg_kpad;
  // per thread, in its slot_packed (unused here): the images of its last pack into its
  // buffers (0: none yet), pack_planes' and pack_grad's `previous`, across the groups it takes
  for (int t = 0; t < ctx.threads(); ++t) *ctx.scratch<int>(t, slot_packed, 1) = 0;
  const auto partials = for_weight_gradient_groups<T>(ctx, d.batch, nb, per, [&](int t, i64 n0, int count, bool first,
                                                                                 T* part) {
    T* src = ctx.scratch<T>(t, slot_src, static_cast<std::size_t>(cin * g.phases * g.phases * rs));
    T* gb = ctx.scratch<T>(t, slot_grad, static_cast<std::size_t>(std::max<i64>(dw_rows, cout) * rs));
    T* out = dx ? ctx.scratch<T>(t, slot_out, static_cast<std::size_t>(nphases * out_phase)) : nullptr;
    if (first) std::fill(part, part + per, T(0));
    const i64 q_used = count * g.block;
    // the thread's first chunk clears its buffers whole, the next ones write only data
    const int previous = std::exchange(*ctx.scratch<int>(t, slot_packed, 1), count);
    pack_planes(g, cin, count, x + n0 * in_img, src, rs, previous);
    pack_grad(g, cout, static_cast<int>(dw_rows), count, dy + n0 * out_img, gb, rs, previous);
    // weight gradient, in position blocks that keep g and src rows in L1/L2
    constexpr i64 qblock = 2048;
    const T* sbase = src + g.lead;
    const T* gbase = gb + g.lead;
    const i64 qend = round_up(q_used, kern::wg_step);
    for (i64 q0 = 0; q0 < qend; q0 += qblock) {
      const i64 q1 = std::min(qend, q0 + qblock);
      for (int mt = 0; mt < wg_mtiles; ++mt)
        for (i64 kt = 0; kt < wg_kpad; kt += kern::wg_kr)
          kern::wgrad_tile(gbase + mt * kern::wg_mr * rs, rs, sbase, off + kt, q0, q1,
                           part + mt * kern::wg_mr * wg_kpad + kt, wg_kpad);
    }
    if (!dx) return;
    // input gradient: every stride phase into its own buffer, then merged into dx rows
    T* dxn = dx + n0 * in_img;
    const i64 qr = round_up(q_used, kern::fwd_qt);
    for (int pi = 0; pi < nphases; ++pi) {
      const auto& p = ph[pi];
      const i64 kp = i64{cout} * p.ny * p.nx;
      if (kp > 0)
        run_fwd(gbase, dx_off + p.k_offset, kp, apack + p.k_offset * dx_mtiles * kern::fwd_mr, dx_mtiles,
                out + pi * out_phase, ors, qr);
    }
    const i64 plane = i64{d.in_height} * d.in_width;
    for (int n = 0; n < count; ++n)
      for (int ci = 0; ci < cin; ++ci) {
        T* dxc = dxn + (i64{n} * cin + ci) * plane;
        const T* oc = out + ci * ors + n * g.block;
        if (s == 1) {
          for (int iy = 0; iy < d.in_height; ++iy)
            copy_row(dxc + i64{iy} * d.in_width, oc + i64{iy + g.pad} * g.ws + g.pad, d.in_width);
        } else if (merge2) {
          // row iy comes from row phase (iy+pad)&1; even columns from column phase pad&1
          for (int iy = 0; iy < d.in_height; ++iy) {
            const int ry = (iy + g.pad) & 1;
            const T* orow = oc + i64{(iy + g.pad) >> 1} * g.ws;
            interleave_row(dxc + i64{iy} * d.in_width, orow + (ry * 2 + (g.pad & 1)) * out_phase + (g.pad >> 1),
                           orow + (ry * 2 + ((g.pad + 1) & 1)) * out_phase + ((g.pad + 1) >> 1), d.in_width);
          }
        } else {
          // dx pixel (iy, ix) is position (A, B) = ((iy+pad-ry)/s, (ix+pad-rx)/s) of phase (ry, rx)
          for (int iy = 0; iy < d.in_height; ++iy) {
            const int ry = (iy + g.pad) % s, A = (iy + g.pad) / s;
            T* dr = dxc + i64{iy} * d.in_width;
            for (int ix = 0; ix < d.in_width; ++ix) {
              const int rx = (ix + g.pad) % s, B = (ix + g.pad) / s;
              const auto& p = ph[ry * s + rx];
              dr[ix] = (p.ny * p.nx > 0 && A < g.hs && B < g.ws) ? oc[(ry * s + rx) * out_phase + i64{A} * g.ws + B]
                                                                : T(0);
            }
          }
        }
        if (dx_add) epilogue_plane(conv_epilogue<T>{nullptr, dx_add, false}, ci, plane, dxc, dx_add + (dxc - dx));
      }
  });
  // weight gradient: the groups' partials summed in group order
  for (int i = 0; i < partials.groups; ++i) {
    const T* part = partials.parts + i * per;
    for (int co = 0; co < cout; ++co)
      for (i64 k = 0; k < K; ++k) {
        const T v = part[co * wg_kpad + k];
        dw[co * K + k] = i == 0 ? v : dw[co * K + k] + v;
      }
  }
}

}  // namespace netsplit::detail::cpu_conv
