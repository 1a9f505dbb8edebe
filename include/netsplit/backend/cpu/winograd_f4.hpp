// netsplit/backend/cpu/winograd_f4.hpp — the transforms of Winograd's F(4x4, 3x3) (Lavin &
// Gray, 2015; interpolation points 0, 1, -1, 2, -2 and infinity), for winograd.hpp's drivers.
// Each 4x4 output tile comes from a 6x6 input tile d: Y = A^T [(G g G^T) . (B^T d B)] A, so
// the 9 multiplies per output of the direct form become 36 / 16 = 2.25 (F(2x2, 3x3): 4), and
// the transformed data are 36 values per 16 outputs (F(2x2, 3x3): 16 per 4).
//   B^T = [[4, 0,-5, 0, 1, 0],     G = [[ 1/4,    0,    0],     A^T = [[1, 1, 1, 1, 1, 0],
//          [0,-4,-4, 1, 1, 0],          [-1/6, -1/6, -1/6],            [0, 1,-1, 2,-2, 0],
//          [0, 4,-4,-1, 1, 0],          [-1/6,  1/6, -1/6],            [0, 1, 1, 4, 4, 0],
//          [0,-2,-1, 2, 1, 0],          [1/24, 1/12,  1/6],            [0, 1,-1, 8,-8, 1]]
//          [0, 2,-1,-2, 1, 0],          [1/24,-1/12,  1/6],
//          [0, 4, 0,-5, 0, 1]]          [   0,    0,    1]]
// Numerics: the input and output transforms multiply by up to 8 and the weight transform
// divides by 6 and 24, so float results carry a few times the rounding error of F(2x2, 3x3)
// (measured in tests/test_conv_kernels.cpp against a double reference); summation order
// still depends only on shapes, thread count and the chunk plan.
// Tile t of a chunk of `count` images is numbered t = n * tiles + ty * TW + tx (TW = W / 4,
// tiles = H / 4 * TW); element e = 6 i + j of tile t lives at [e * es + row * tpad + t].
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "netsplit/backend/cpu/conv_kernels.hpp"
#include "netsplit/backend/cpu/winograd_weights.hpp"

namespace netsplit::detail::cpu_conv::winograd4 {

/// out = B^T d for one column d[0..6) (strided by ds).
template <class T>
inline void bt6(const T* d, i64 ds, T* out) {
  const T d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds];
  out[0] = T(4) * d0 - T(5) * d2 + d4;
  out[1] = (d3 + d4) - T(4) * (d1 + d2);
  out[2] = (d4 - d3) + T(4) * (d1 - d2);
  out[3] = (d4 - d2) + T(2) * (d3 - d1);
  out[4] = (d4 - d2) - T(2) * (d3 - d1);
  out[5] = T(4) * d1 - T(5) * d3 + d5;
}
/// out = A^T m for m[0..6) (strided by ms).
template <class T>
inline void at4(const T* m, i64 ms, T* out) {
  const T s12 = m[ms] + m[2 * ms], d12 = m[ms] - m[2 * ms], s34 = m[3 * ms] + m[4 * ms], d34 = m[3 * ms] - m[4 * ms];
  out[0] = m[0] + s12 + s34;
  out[1] = d12 + T(2) * d34;
  out[2] = s12 + T(4) * s34;
  out[3] = d12 + T(8) * d34 + m[5 * ms];
}
/// out = A q for q[0..4) (strided by qs).
template <class T>
inline void a6(const T* q, i64 qs, T* out) {
  const T q0 = q[0], q1 = q[qs], q2 = q[2 * qs], q3 = q[3 * qs];
  const T e02 = q0 + q2, o13 = q1 + q3, e = q0 + T(4) * q2, o = T(2) * q1 + T(8) * q3;
  out[0] = q0;
  out[1] = e02 + o13;
  out[2] = e02 - o13;
  out[3] = e + o;
  out[4] = e - o;
  out[5] = q3;
}

/// Widths the AVX-512 transforms below handle: TW = W / 4 divides 16 or is a multiple of 16,
/// so the lanes of tile columns 0 and TW-1 are the same in every vector of 16 tiles.
inline bool vector_transforms(int W) {
  const int tw = W / 4;
  return W % 4 == 0 && tw >= 1 && (16 % tw == 0 || tw % 16 == 0);
}

/// out[i][r] = (G (a, b, c)^T)[i] for r in [r0, r1): one column of G g for the rows of a block
/// side by side (r vectorised), in double.
template <int S>
inline void g6(const double* a, const double* b, const double* c, double (*out)[S], int r0, int r1) {
  constexpr double r6 = 1.0 / 6, r12 = 1.0 / 12, r24 = 1.0 / 24;  // reciprocals: no divisions
  for (int r = r0; r < r1; ++r) {
    const double ac = a[r] + c[r], p = a[r] * r24 + c[r] * r6, q = b[r] * r12;
    out[0][r] = 0.25 * a[r];
    out[1][r] = -(ac + b[r]) * r6;
    out[2][r] = (b[r] - ac) * r6;
    out[3][r] = p + q;
    out[4][r] = p - q;
    out[5][r] = c[r];
  }
}

/// F(4x4, 3x3)'s filter transform, the policy of transform_weights_packed (winograd_weights.hpp):
/// out[6i + j][r] = (G g G^T)[i][j] of the filters of rows r in [r0, r1), in double.
struct g6x3 {
  static constexpr int elems = 36, stage = 16;
  template <class T>
  using acc = double;
  template <int S>
  static void apply(const double (*g)[S], double (*out)[S], int r0, int r1) {
    double gg[3][6][S];  // gg[col][i] = (G g)[i][col]
    for (int j = 0; j < 3; ++j) g6<S>(g[j], g[3 + j], g[6 + j], gg[j], r0, r1);
    for (int i = 0; i < 6; ++i) g6<S>(gg[0][i], gg[1][i], gg[2][i], out + 6 * i, r0, r1);
  }
};

/// dw[m][c] (3x3) = G^T dU[m][c] G from dU[e][m][c] at du[(e * rows + m) * ld + c], in double.
/// Per output channel, 16 input channels at a time: each step of the transform is a loop over
/// them (contiguous in du), which the compiler vectorises. G's entries 1/6, 1/12 and 1/24 are
/// multiplications by the double nearest them (a relative error of 1e-16 before the result is
/// rounded to T): as divisions, vectorised, the transform took 20% of a 512->512 4x4 layer's
/// backward (AMD EPYC); per pair, one at a time, its 54 scalar divisions 7% of a 64->64 8x8
/// layer's.
template <class T>
void weight_grad_from(const T* du, i64 rows, i64 ld, int M, int C, T* dw) {
  constexpr int B = 16;
  constexpr double r6 = 1.0 / 6, r12 = 1.0 / 12, r24 = 1.0 / 24;
  for (int m = 0; m < M; ++m)
    for (int c0 = 0; c0 < C; c0 += B) {
      const int n = std::min(B, C - c0);
      double t[3][6][B];  // G^T dU: rows i, columns j
      for (int j = 0; j < 6; ++j) {
        double u[6][B];  // column j: u[k] = dU[6k + j]
        for (int k = 0; k < 6; ++k) {
          const T* src = du + ((6 * k + j) * rows + m) * ld + c0;
          for (int q = 0; q < n; ++q) u[k][q] = double(src[q]);
        }
        for (int q = 0; q < n; ++q) {
          t[0][j][q] = u[0][q] * 0.25 - (u[1][q] + u[2][q]) * r6 + (u[3][q] + u[4][q]) * r24;
          t[1][j][q] = (u[2][q] - u[1][q]) * r6 + (u[3][q] - u[4][q]) * r12;
          t[2][j][q] = ((u[3][q] + u[4][q]) - (u[1][q] + u[2][q])) * r6 + u[5][q];
        }
      }
      double o[3][3][B];  // (G^T dU) G
      for (int i = 0; i < 3; ++i) {
        const auto& r = t[i];
        for (int q = 0; q < n; ++q) {
          o[i][0][q] = r[0][q] * 0.25 - (r[1][q] + r[2][q]) * r6 + (r[3][q] + r[4][q]) * r24;
          o[i][1][q] = (r[2][q] - r[1][q]) * r6 + (r[3][q] - r[4][q]) * r12;
          o[i][2][q] = ((r[3][q] + r[4][q]) - (r[1][q] + r[2][q])) * r6 + r[5][q];
        }
      }
      T* out = dw + (i64{m} * C + c0) * 9;
      for (int q = 0; q < n; ++q)
        for (int i = 0; i < 3; ++i)
          for (int k = 0; k < 3; ++k) out[q * 9 + 3 * i + k] = static_cast<T>(o[i][k][q]);
    }
}

/// V[e][c][t] = (B^T d B)[e] for the 6x6 input tile d of tile t at rows 4ty-1.., columns
/// 4tx-1.. (zero outside), at v[e * ves + c * tpad + t] (ves >= C * tpad: winograd.hpp's
/// element_stride).
template <class T>
void transform_input(const T* x, int C, int H, int W, int count, T* v, i64 tpad, i64 ves) {
  const int TH = H / 4, TW = W / 4;
  const i64 tiles = i64{TH} * TW, es = ves;
  for (int n = 0; n < count; ++n)
    for (int c = 0; c < C; ++c) {
      const T* xc = x + (i64{n} * C + c) * H * W;
      T* out = v + i64{c} * tpad + n * tiles;
      for (int ty = 0; ty < TH; ++ty)
        for (int tx = 0; tx < TW; ++tx) {
          T d[6][6], r[6][6], col[6];
          for (int k = 0; k < 6; ++k)
            for (int o = 0; o < 6; ++o) {
              const int y = 4 * ty - 1 + k, xx = 4 * tx - 1 + o;
              d[k][o] = (y >= 0 && y < H && xx >= 0 && xx < W) ? xc[i64{y} * W + xx] : T(0);
            }
          for (int o = 0; o < 6; ++o) {  // B^T d: r[i][o]
            bt6(&d[0][o], 6, col);
            for (int i = 0; i < 6; ++i) r[i][o] = col[i];
          }
          const i64 t = i64{ty} * TW + tx;
          for (int i = 0; i < 6; ++i) {  // (B^T d) B: rows i
            bt6(r[i], 1, col);
            for (int j = 0; j < 6; ++j) out[(6 * i + j) * es + t] = col[j];
          }
        }
    }
}

/// y[n][m][4ty+a][4tx+b] = (A^T M A)[a][b] from M[e][m][t] at mm[e * es + m * tpad + t].
template <class T>
void transform_output(const T* mm, i64 es, i64 tpad, int M, int H, int W, int count, T* y) {
  const int TH = H / 4, TW = W / 4;
  const i64 tiles = i64{TH} * TW;
  for (int n = 0; n < count; ++n)
    for (int m = 0; m < M; ++m) {
      T* ym = y + (i64{n} * M + m) * H * W;
      const T* base = mm + i64{m} * tpad + n * tiles;
      for (int ty = 0; ty < TH; ++ty)
        for (int tx = 0; tx < TW; ++tx) {
          const T* p = base + i64{ty} * TW + tx;
          T s[4][6], row[4];
          for (int j = 0; j < 6; ++j) {  // A^T M: columns j
            at4(p + j * es, 6 * es, row);
            for (int a = 0; a < 4; ++a) s[a][j] = row[a];
          }
          for (int a = 0; a < 4; ++a) at4(s[a], 1, ym + i64{4 * ty + a} * W + 4 * tx);
        }
    }
}

/// The products' gradient dM[e][m][t] = (A dY A^T)[e] at dm[e * es + m * tpad + t] from the
/// output gradient's 4x4 tile dY of tile t.
template <class T>
void transform_output_grad(const T* dy, int M, int H, int W, int count, T* dm, i64 es, i64 tpad) {
  const int TH = H / 4, TW = W / 4;
  const i64 tiles = i64{TH} * TW;
  for (int n = 0; n < count; ++n)
    for (int m = 0; m < M; ++m) {
      const T* g = dy + (i64{n} * M + m) * H * W;
      T* out = dm + i64{m} * tpad + n * tiles;
      for (int ty = 0; ty < TH; ++ty)
        for (int tx = 0; tx < TW; ++tx) {
          T p[4][6], q[6][4], col[6];
          for (int a = 0; a < 4; ++a) a6(g + i64{4 * ty + a} * W + 4 * tx, 1, p[a]);  // dY A^T: rows a
          for (int j = 0; j < 6; ++j)
            for (int a = 0; a < 4; ++a) q[j][a] = p[a][j];
          const i64 t = i64{ty} * TW + tx;
          for (int j = 0; j < 6; ++j) {  // A (dY A^T): columns j
            a6(q[j], 1, col);
            for (int i = 0; i < 6; ++i) out[(6 * i + j) * es + t] = col[i];
          }
        }
    }
}

#if defined(__AVX2__) && defined(__FMA__)
// The vector transforms (float; AVX-512: 16 tiles at a time, AVX2: 8), flat over the chunk's
// tiles t across images. Their arithmetic is one definition over the vector type V, with the
// few operations it needs overloaded per width.
namespace vec {
inline __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
inline __m256 sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
inline __m256 fmadd(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
inline __m256 fnmadd(__m256 a, __m256 b, __m256 c) { return _mm256_fnmadd_ps(a, b, c); }
template <class V>
V splat(float v);
template <>
inline __m256 splat<__m256>(float v) {
  return _mm256_set1_ps(v);
}
#if defined(__AVX512F__)
inline __m512 add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
inline __m512 sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
inline __m512 fmadd(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
inline __m512 fnmadd(__m512 a, __m512 b, __m512 c) { return _mm512_fnmadd_ps(a, b, c); }
template <>
inline __m512 splat<__m512>(float v) {
  return _mm512_set1_ps(v);
}
#endif
/// bt6, at4 and a6 above, on vectors of tiles.
template <class V>
inline void bt6(const V d[6], V out[6]) {
  const V four = splat<V>(4.f), five = splat<V>(5.f), two = splat<V>(2.f);
  const V s34 = add(d[3], d[4]), s12 = add(d[1], d[2]);
  const V d43 = sub(d[4], d[3]), d12 = sub(d[1], d[2]);
  const V d42 = sub(d[4], d[2]), d31 = sub(d[3], d[1]);
  out[0] = fmadd(four, d[0], fnmadd(five, d[2], d[4]));
  out[1] = fnmadd(four, s12, s34);
  out[2] = fmadd(four, d12, d43);
  out[3] = fmadd(two, d31, d42);
  out[4] = fnmadd(two, d31, d42);
  out[5] = fmadd(four, d[1], fnmadd(five, d[3], d[5]));
}
template <class V>
inline void at4(const V m[6], V out[4]) {
  const V s12 = add(m[1], m[2]), d12 = sub(m[1], m[2]);
  const V s34 = add(m[3], m[4]), d34 = sub(m[3], m[4]);
  out[0] = add(add(m[0], s12), s34);
  out[1] = fmadd(splat<V>(2.f), d34, d12);
  out[2] = fmadd(splat<V>(4.f), s34, s12);
  out[3] = add(fmadd(splat<V>(8.f), d34, d12), m[5]);
}
template <class V>
inline void a6(const V q[4], V out[6]) {
  const V e02 = add(q[0], q[2]), o13 = add(q[1], q[3]);
  const V e = fmadd(splat<V>(4.f), q[2], q[0]);
  const V o = fmadd(splat<V>(8.f), q[3], add(q[1], q[1]));
  out[0] = q[0];
  out[1] = add(e02, o13);
  out[2] = sub(e02, o13);
  out[3] = add(e, o);
  out[4] = sub(e, o);
  out[5] = q[3];
}
/// Walks the chunk's tiles in order t = 0, 1, ...: next() gives the offset of row 0 of each
/// of the next k tiles in a stack of H x W maps `stride` apart (image n at n * stride).
struct tile_walk {
  int TW, TH, W;
  i64 stride;
  i64 image = 0;
  int ty = 0, tx = 0;
  void next(i64* off, i64 k) { next_groups(off, k, 1); }
  /// The same for the next g groups of `size` tiles, size dividing TW (a group lies in one
  /// row of tiles, its tiles side by side): the offset of each group's first tile. The
  /// transforms that store or load whole groups take this: a quarter (AVX-512, groups of 4)
  /// of the scalar work per vector of tiles.
  void next_groups(i64* off, i64 g, int size) {
    for (i64 i = 0; i < g; ++i) {
      off[i] = image + 4 * i64{ty} * W + 4 * tx;
      if ((tx += size) == TW) {
        tx = 0;
        if (++ty == TH) ty = 0, image += stride;
      }
    }
  }
};
/// Asks for the line at p before the access to it (write: for ownership). The output and
/// output-gradient transforms walk a chunk's planes channel by channel; the planes of one
/// channel are a page or more apart, where the hardware prefetchers stop, and the activations
/// come from DRAM in a training step (each was last touched a step before). While they store
/// (load) a run of channel m they ask for the same run of channel m + 1, `plane` further,
/// which they reach one channel's work later. Measured in docs/performance.md ("Prefetching the
/// next channel's run").
inline void ahead(const float* p, bool write) {
  if (write)
    __builtin_prefetch(p, 1, 3);
  else
    __builtin_prefetch(p, 0, 3);
}
/// The float vector of `Lanes` lanes (named through this, not as a template argument, whose
/// alignment attribute GCC would drop with a warning).
template <int Lanes>
struct vector_of;
template <>
struct vector_of<8> {
  using type = __m256;
};
#if defined(__AVX512F__)
template <>
struct vector_of<16> {
  using type = __m512;
};
#endif
/// Channel m's shifted sums for ep's statistics (inactive, `!sums`, when ep takes none) in
/// the lanes of two vectors, moved into ep's double sums after 256 to 271 values per lane
/// (checked once per block of tiles) and at the channel's end, as cpu_bn::shifted_sums does
/// every 256. The shift is the block's slot for the channel; while that is NaN, the first
/// value added (lane 0) becomes it.
template <int Lanes>
struct lane_sums {
  using V = typename vector_of<Lanes>::type;
  static constexpr int lanes = Lanes;
  float* shift = nullptr;
  double *s1 = nullptr, *s2 = nullptr;
  V k{}, a1{}, a2{};
  int vectors = 0;  // added since the last flush
  lane_sums(const conv_epilogue<float>* ep, int m) {
    if (!ep || !ep->s1) return;
    shift = ep->stat_shift + m;
    s1 = ep->s1 + m;
    s2 = ep->s2 + m;
    k = splat<V>(*shift);
  }
  explicit operator bool() const { return s1 != nullptr; }
  /// The shift, taken from z's lane 0 if the slot has none yet.
  V shift_for(V z) {
    if (*shift != *shift) [[unlikely]] {
      std::memcpy(shift, &z, sizeof(float));
      k = splat<V>(*shift);
    }
    return k;
  }
  void add(V z) { put(sub(z, shift_for(z))); }
  void put(V d) {
    a1 = vec::add(a1, d);
    a2 = fmadd(d, d, a2);
    ++vectors;
  }
  void flush_every() {
    if (vectors >= 256) flush();
  }
  void flush() {
    alignas(64) float b1[lanes], b2[lanes];
    std::memcpy(b1, &a1, sizeof a1);
    std::memcpy(b2, &a2, sizeof a2);
    for (int j = 0; j < lanes; ++j) {
      *s1 += b1[j];
      *s2 += b2[j];
    }
    a1 = a2 = V{};
    vectors = 0;
  }
};
}  // namespace vec

/// Images whose tiles transform_input's second stage takes together: at least 16 tiles.
inline int input_group(int H, int W) {
  const int tiles = (H / 4) * (W / 4);
  return std::max(1, (16 + tiles - 1) / tiles);
}
/// Scratch of transform_input: six rows of B^T d for one group of images of one channel.
inline std::size_t input_scratch(int H, int W, int) {
  return static_cast<std::size_t>(6 * (i64{input_group(H, W)} * (H / 4) * W + 80) + 16);
}

#endif

#if defined(__AVX512F__)
// AVX-512: 16 tiles at a time, for widths with vector_transforms(W).
namespace vec {
/// D[b][l] = v[4l + b] for the 64 values v of v[0..4) (b = 0..3).
inline void deinterleave4(const __m512 v[4], __m512 D[4]) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512 e0 = _mm512_permutex2var_ps(v[0], even, v[1]), o0 = _mm512_permutex2var_ps(v[0], odd, v[1]);
  const __m512 e1 = _mm512_permutex2var_ps(v[2], even, v[3]), o1 = _mm512_permutex2var_ps(v[2], odd, v[3]);
  D[0] = _mm512_permutex2var_ps(e0, even, e1);
  D[2] = _mm512_permutex2var_ps(e0, odd, e1);
  D[1] = _mm512_permutex2var_ps(o0, even, o1);
  D[3] = _mm512_permutex2var_ps(o0, odd, o1);
}
/// The inverse: w[q][4k + b] = z[b][4q + k] (w[q] holds tiles 4q..4q+3, 4 values each).
inline void interleave4(const __m512 z[4], __m512 w[4]) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 p0 = _mm512_permutex2var_ps(z[0], lo, z[2]), q0 = _mm512_permutex2var_ps(z[1], lo, z[3]);
  const __m512 p1 = _mm512_permutex2var_ps(z[0], hi, z[2]), q1 = _mm512_permutex2var_ps(z[1], hi, z[3]);
  w[0] = _mm512_permutex2var_ps(p0, lo, q0);
  w[1] = _mm512_permutex2var_ps(p0, hi, q0);
  w[2] = _mm512_permutex2var_ps(p1, lo, q1);
  w[3] = _mm512_permutex2var_ps(p1, hi, q1);
}
/// out[j] = the 128-bit blocks j of a[0..4), in order: a transpose of 4x4 blocks (its own
/// inverse). With a[r] holding row r of 4 tiles of 4 columns, out[j] is tile j's 4 rows, the
/// 16 contiguous values of a 4-wide tile.
inline void transpose_blocks4(const __m512 a[4], __m512 out[4]) {
  const __m512 t01 = _mm512_shuffle_f32x4(a[0], a[1], 0x44), t23 = _mm512_shuffle_f32x4(a[2], a[3], 0x44);
  const __m512 u01 = _mm512_shuffle_f32x4(a[0], a[1], 0xEE), u23 = _mm512_shuffle_f32x4(a[2], a[3], 0xEE);
  out[0] = _mm512_shuffle_f32x4(t01, t23, 0x88);
  out[1] = _mm512_shuffle_f32x4(t01, t23, 0xDD);
  out[2] = _mm512_shuffle_f32x4(u01, u23, 0x88);
  out[3] = _mm512_shuffle_f32x4(u01, u23, 0xDD);
}
}  // namespace vec

/// Tiles side by side that the output transforms store (and the output-gradient transform
/// loads) as one run: 4, 2 or 1, the largest dividing TW (vector_transforms(W): TW divides
/// 16 or is a multiple of 16). One offset per run from the tile walk, one masked access.
inline int tile_group(int TW) { return TW % 4 == 0 ? 4 : TW % 2 == 0 ? 2 : 1; }
/// The 4 gs lanes of run e (of 4 / gs) in a vector holding 4 tiles' rows of 4 values.
inline __mmask16 group_lanes(int gs, int e) {
  return static_cast<__mmask16>(((1u << (4 * gs)) - 1) << (4 * gs * e));
}

inline void transform_input(const float* x, int C, int H, int W, int count, float* v, i64 tpad, i64 ves,
                            float* row) {
  const int TH = H / 4, TW = W / 4, group = input_group(H, W);
  const i64 plane = i64{H} * W, tiles = i64{TH} * TW, rlen = i64{TH} * W, es = ves;
  // R[i] = (B^T d)[i] over one group's tile rows (about 1.5 planes: stays in L1), slack around
  const i64 rs = group * rlen + 80;
  float* R = row + 16;
  std::fill(row, row + input_scratch(H, W, count), 0.f);
  const __mmask16 first = static_cast<__mmask16>(~tile_column_mask(TW, 0, false));
  const __mmask16 last = static_cast<__mmask16>(~tile_column_mask(TW, 0, true));
  const __m512 zero = _mm512_setzero_ps();
  for (int c = 0; c < C; ++c)
    for (int n0 = 0; n0 < count; n0 += group) {
      const int images = std::min(group, count - n0);
      // stage 1, along rows: R[i][n*rlen + ty*W + col] = sum_k B^T[i][k] x[n0+n][c][4ty-1+k][col]
      int n = 0;
      if (W == 4 && H == 4)  // a tile per image, one line each: 4 images per vector (4 lines, not 16 quarters)
        for (; n + 4 <= images; n += 4) {
          const float* xc = x + (i64{n0 + n} * C + c) * plane;
          for (int j = 0; j < 4; ++j) {  // the 4 planes after these (this channel's next images, else the next channel's)
            const i64 at = n0 + n + 4 + j;
            if (at < count) __builtin_prefetch(x + (at * C + c) * plane, 0, 3);
            else if (c + 1 < C) __builtin_prefetch(x + ((at - count) * C + c + 1) * plane, 0, 3);
          }
          __m512 L[4], d[6], o[6];  // d[1 + r]: row r of the 4 images; rows -1 and 4 are padding
          for (int j = 0; j < 4; ++j) L[j] = _mm512_loadu_ps(xc + j * i64{C} * plane);
          vec::transpose_blocks4(L, d + 1);
          d[0] = d[5] = zero;
          vec::bt6(d, o);
          for (int i = 0; i < 6; ++i) _mm512_storeu_ps(R + n * rlen + i * rs, o[i]);
        }
      for (; n < images; ++n) {
        const float* xc = x + (i64{n0 + n} * C + c) * plane;
        // the plane read next (next image of this group, else the next channel's first):
        // planes are pages apart, where the hardware prefetchers stop, so fetch it ahead
        const float* xnext = n0 + n + 1 < count ? x + (i64{n0 + n + 1} * C + c) * plane
                             : c + 1 < C        ? x + i64{c + 1} * plane
                                                : nullptr;
        int ty = 0;
        if (W == 8)  // two tile rows per vector (lanes 0-7: ty, 8-15: ty + 1), else half of each is empty
          for (; ty + 1 < TH; ty += 2) {
            if (xnext)
              for (i64 p = 32 * i64{ty}; p < 32 * i64{ty + 2}; p += 16) __builtin_prefetch(xnext + p, 0, 3);
            // d[k]: input rows 4ty - 1 + k (lanes 0-7) and 4ty + 3 + k (8-15); rows 4ty .. 4ty + 7
            // are the four lines L[0..4), two rows each, so the halves are whole-line shuffles
            const float* r0 = xc + 32 * i64{ty};
            const __m512 L0 = _mm512_loadu_ps(r0), L1 = _mm512_loadu_ps(r0 + 16), L2 = _mm512_loadu_ps(r0 + 32),
                         L3 = _mm512_loadu_ps(r0 + 48);
            const __m512 above = ty > 0 ? _mm512_maskz_loadu_ps(0x00FF, r0 - 8) : zero;            // row 4ty - 1
            const __m512 below = 4 * ty + 8 < H ? _mm512_maskz_loadu_ps(0x00FF, r0 + 64) : zero;  // row 4ty + 8
            __m512 d[6], o[6];
            d[0] = _mm512_shuffle_f32x4(above, L1, 0xE4);
            d[1] = _mm512_shuffle_f32x4(L0, L2, 0x44);
            d[2] = _mm512_shuffle_f32x4(L0, L2, 0xEE);
            d[3] = _mm512_shuffle_f32x4(L1, L3, 0x44);
            d[4] = _mm512_shuffle_f32x4(L1, L3, 0xEE);
            d[5] = _mm512_shuffle_f32x4(L2, below, 0x44);
            vec::bt6(d, o);
            float* dst = R + n * rlen + i64{ty} * 8;
            for (int i = 0; i < 6; ++i) _mm512_storeu_ps(dst + i * rs, o[i]);
          }
        for (; ty < TH; ++ty) {
          const float* r0 = xc + (4 * i64{ty} - 1) * W;
          if (xnext)
            for (i64 p = 4 * i64{ty} * W; p < 4 * i64{ty + 1} * W; p += 16)
              __builtin_prefetch(xnext + p, 0, 3);
          for (int c0 = 0; c0 < W; c0 += 16) {
            const __mmask16 mk = first_lanes(W - c0);
            __m512 d[6], o[6];
            for (int k = 0; k < 6; ++k)
              d[k] = (k == 0 && ty == 0) || (k == 5 && ty == TH - 1) ? zero
                                                                       : _mm512_maskz_loadu_ps(mk, r0 + k * i64{W} + c0);
            vec::bt6(d, o);
            float* dst = R + n * rlen + i64{ty} * W + c0;
            for (int i = 0; i < 6; ++i) _mm512_mask_storeu_ps(dst + i * rs, mk, o[i]);
          }
        }
      }
      // stage 2, along columns: V[6i+j][c][t] = sum_o B^T[j][o] R[i][4t + o - 1]
      const i64 flat = images * tiles;
      float* out = v + i64{c} * tpad + n0 * tiles;
      for (i64 t0 = 0; t0 < flat; t0 += 16) {
        const __mmask16 valid = first_lanes(flat - t0);
        const __mmask16 f = TW < 16 ? first : static_cast<__mmask16>(~tile_column_mask(TW, t0, false));
        const __mmask16 l = TW < 16 ? last : static_cast<__mmask16>(~tile_column_mask(TW, t0, true));
        for (int i = 0; i < 6; ++i) {
          const float* p = R + i * rs + 4 * t0;
          __m512 d[6], o[6];
          const __m512 v4[4] = {_mm512_loadu_ps(p), _mm512_loadu_ps(p + 16), _mm512_loadu_ps(p + 32),
                                _mm512_loadu_ps(p + 48)};
          vec::deinterleave4(v4, d + 1);  // columns 4t .. 4t+3
          // column 4t-1: lane l takes d[4][l-1], lane 0 p[-1]; column 4t+4: d[1][l+1], lane 15 p[64]
          d[0] = _mm512_maskz_mov_ps(f, _mm512_castsi512_ps(_mm512_alignr_epi32(
                                            _mm512_castps_si512(d[4]), _mm512_castps_si512(_mm512_set1_ps(p[-1])), 15)));
          d[5] = _mm512_maskz_mov_ps(l, _mm512_castsi512_ps(_mm512_alignr_epi32(
                                            _mm512_castps_si512(_mm512_set1_ps(p[64])), _mm512_castps_si512(d[1]), 1)));
          vec::bt6(d, o);
          for (int j = 0; j < 6; ++j) _mm512_mask_storeu_ps(out + (6 * i + j) * es + t0, valid, o[j]);
        }
      }
    }
}

/// Adds ep (conv_kernels.hpp; null: nothing) before storing, and takes its statistics of
/// the stored values in the same pass; r is its residual at the chunk's first image.
inline void transform_output(const float* mm, i64 es, i64 tpad, int M, int H, int W, int count, float* y,
                             const conv_epilogue<float>* ep = nullptr, const float* r = nullptr) {
  const int TW = W / 4, gs = tile_group(TW);
  const i64 plane = i64{H} * W, tiles = i64{H / 4} * TW, flat = count * tiles, ystride = i64{M} * plane;
  // W = 8 with an even number of tile rows: a whole vector of 16 tiles is 4 pairs of tile
  // rows, each pair 8 contiguous rows of 8; stored as 4 lines each, not 8 half lines
  const bool pairs = TW == 2 && (H / 4) % 2 == 0;
  for (int m = 0; m < M; ++m) {
    const float* base = mm + i64{m} * tpad;
    float* ym = y + i64{m} * plane;
    const float* rm = r ? r + i64{m} * plane : nullptr;
    const float* sh = ep ? ep->shift : nullptr;
    const bool relu = ep && ep->relu;
    const __m512 shift = _mm512_set1_ps(sh ? sh[m] : 0.f);
    const bool add = sh || rm, next = m + 1 < M;
    vec::lane_sums<16> sums(ep, m);
    // the epilogue and store of 16 outputs at ym + at (a whole run), the next channel's asked for
    const auto put_line = [&](i64 at, __m512 z) {
      if (add) z = _mm512_add_ps(z, shift);
      if (rm) z = _mm512_add_ps(z, _mm512_loadu_ps(rm + at));
      if (relu) z = _mm512_max_ps(z, _mm512_setzero_ps());
      if (sums) sums.add(z);
      if (next) {
        vec::ahead(ym + at + plane, true);
        if (rm) vec::ahead(rm + at + plane, false);
      }
      _mm512_storeu_ps(ym + at, z);
    };
    vec::tile_walk walk{TW, H / 4, W, ystride};
    for (i64 t0 = 0; t0 < flat; t0 += 16) {
      if (sums) sums.flush_every();
      const __mmask16 valid = first_lanes(flat - t0);
      const i64 k = std::min<i64>(16, flat - t0);
      i64 off[16];  // off[g] starts tiles gs*g .. gs*g+gs-1 (k is a multiple of gs)
      walk.next_groups(off, k / gs, gs);
      __m512 s[4][6];  // s[a][j] = (A^T M)[a][j]
      for (int j = 0; j < 6; ++j) {
        __m512 col[6], r[4];
        for (int i = 0; i < 6; ++i) col[i] = _mm512_maskz_loadu_ps(valid, base + (6 * i + j) * es + t0);
        vec::at4(col, r);
        for (int a = 0; a < 4; ++a) s[a][j] = r[a];
      }
      if ((TW == 1 || pairs) && k == 16) {  // W = 4 or 8: whole lines of whole tiles
        __m512 w[4][4];  // w[a][q]: row a of tiles 4q .. 4q+3
        for (int a = 0; a < 4; ++a) {
          __m512 z[4];
          vec::at4(s[a], z);
          vec::interleave4(z, w[a]);
        }
        for (int q = 0; q < 4; ++q)
          if (TW == 1) {  // W = 4: a tile is 4 rows of 4, one line (16 lines, not 64 quarters)
            const __m512 rows[4] = {w[0][q], w[1][q], w[2][q], w[3][q]};
            __m512 line[4];
            vec::transpose_blocks4(rows, line);
            for (int l = 0; l < 4; ++l) put_line(off[4 * q + l], line[l]);
          } else {  // W = 8: tiles 4q .. 4q+3 are a pair of tile rows, 8 contiguous rows of 8:
            // lines of rows 0-1, 2-3 (the first tile row's), 4-5, 6-7 (the second's)
            put_line(off[2 * q], _mm512_shuffle_f32x4(w[0][q], w[1][q], 0x44));
            put_line(off[2 * q] + 16, _mm512_shuffle_f32x4(w[2][q], w[3][q], 0x44));
            put_line(off[2 * q] + 32, _mm512_shuffle_f32x4(w[0][q], w[1][q], 0xEE));
            put_line(off[2 * q] + 48, _mm512_shuffle_f32x4(w[2][q], w[3][q], 0xEE));
          }
        continue;
      }
      for (int a = 0; a < 4; ++a) {
        __m512 z[4], w[4];
        vec::at4(s[a], z);
        vec::interleave4(z, w);
        float* ya = ym + i64{a} * W;
        const float* ra = rm ? rm + i64{a} * W : nullptr;
        if (TW % 4 == 0 && k == 16) {  // the common case, unrolled: w stays in registers
          for (int q = 0; q < 4; ++q) put_line(i64{a} * W + off[q], w[q]);
          continue;
        }
        for (int q = 0; 4 * q < k; ++q) {  // w[q]: tiles 4q .. 4q+3, in 4 / gs groups of 4 gs lanes
          if (add) w[q] = _mm512_add_ps(w[q], shift);
          for (int e = 0; e * gs < 4 && 4 * q + e * gs < k; ++e) {
            const __mmask16 mk = group_lanes(gs, e);
            const i64 at = off[q * (4 / gs) + e] - 4 * gs * e;
            __m512 z = w[q];
            if (ra) z = _mm512_add_ps(z, _mm512_maskz_loadu_ps(mk, ra + at));
            if (relu) z = _mm512_max_ps(z, _mm512_setzero_ps());
            if (sums) sums.put(_mm512_maskz_sub_ps(mk, z, sums.shift_for(z)));  // lane 0 is in mk
            if (next) {
              vec::ahead(ya + at + plane, true);
              if (ra) vec::ahead(ra + at + plane, false);
            }
            _mm512_mask_storeu_ps(ya + at, mk, z);
          }
        }
      }
    }
    if (sums) sums.flush();
  }
}

inline void transform_output_grad(const float* dy, int M, int H, int W, int count, float* dm, i64 es, i64 tpad) {
  const int TW = W / 4, gs = tile_group(TW);
  const i64 plane = i64{H} * W, tiles = i64{H / 4} * TW, flat = count * tiles, ystride = i64{M} * plane;
  const bool pairs = TW == 2 && (H / 4) % 2 == 0;  // as in transform_output
  for (int m = 0; m < M; ++m) {
    const float* g = dy + i64{m} * plane;
    float* out = dm + i64{m} * tpad;
    vec::tile_walk walk{TW, H / 4, W, ystride};
    for (i64 t0 = 0; t0 < flat; t0 += 16) {
      const __mmask16 valid = first_lanes(flat - t0);
      const i64 k = std::min<i64>(16, flat - t0);
      i64 off[16];  // as in transform_output: off[g] starts tiles gs*g .. gs*g+gs-1
      walk.next_groups(off, k / gs, gs);
      __m512 p[4][6];  // p[a][j] = (dY A^T)[a][j]
      if ((TW == 1 || pairs) && k == 16) {  // W = 4 or 8: whole lines, as transform_output stores them
        __m512 w[4][4];  // w[a][q]: row a of tiles 4q .. 4q+3
        for (int q = 0; q < 4; ++q) {
          __m512 line[4], rows[4];
          for (int l = 0; l < 4; ++l) {
            const float* at = g + (TW == 1 ? off[4 * q + l] : off[2 * q] + 16 * l);
            if (m + 1 < M) vec::ahead(at + plane, false);
            line[l] = _mm512_loadu_ps(at);
          }
          if (TW == 1) {
            vec::transpose_blocks4(line, rows);
          } else {
            rows[0] = _mm512_shuffle_f32x4(line[0], line[2], 0x44);
            rows[1] = _mm512_shuffle_f32x4(line[0], line[2], 0xEE);
            rows[2] = _mm512_shuffle_f32x4(line[1], line[3], 0x44);
            rows[3] = _mm512_shuffle_f32x4(line[1], line[3], 0xEE);
          }
          for (int a = 0; a < 4; ++a) w[a][q] = rows[a];
        }
        for (int a = 0; a < 4; ++a) {
          __m512 d[4];
          vec::deinterleave4(w[a], d);
          vec::a6(d, p[a]);
        }
      } else {
        for (int a = 0; a < 4; ++a) {
          const float* ga = g + i64{a} * W;
          __m512 w[4], d[4];  // w[q]: row a of tiles t0+4q .. t0+4q+3 (zero past the chunk)
          if (gs == 4 && k == 16) {  // the common case, as in transform_output: whole lines, no masks
            for (int q = 0; q < 4; ++q) {
              if (m + 1 < M) vec::ahead(ga + off[q] + plane, false);
              w[q] = _mm512_loadu_ps(ga + off[q]);
            }
            vec::deinterleave4(w, d);
            vec::a6(d, p[a]);
            continue;
          }
          for (int q = 0; q < 4; ++q) {
            w[q] = _mm512_setzero_ps();
            if (4 * q >= k) continue;
            for (int e = 0; e * gs < 4 && 4 * q + e * gs < k; ++e) {
              const float* at = ga + off[q * (4 / gs) + e] - 4 * gs * e;
              if (m + 1 < M) vec::ahead(at + plane, false);
              w[q] = _mm512_mask_loadu_ps(w[q], group_lanes(gs, e), at);
            }
          }
          vec::deinterleave4(w, d);
          vec::a6(d, p[a]);
        }
      }
      for (int j = 0; j < 6; ++j) {
        __m512 col[4] = {p[0][j], p[1][j], p[2][j], p[3][j]}, r[6];
        vec::a6(col, r);
        for (int i = 0; i < 6; ++i) _mm512_mask_storeu_ps(out + (6 * i + j) * es + t0, valid, r[i]);
      }
    }
  }
}
#endif

#if defined(__AVX2__) && defined(__FMA__)
// AVX2: 8 tiles at a time, for widths with avx2::vector_transforms(W). Compiled wherever AVX2
// is (also beside AVX-512, where the tests check them against the portable transforms); the
// drivers use them where AVX-512 is absent.
namespace avx2 {
/// Widths these transforms handle: W == 4 (one tile per row of tiles: VGG's 4x4 maps; the
/// *_w4 forms below), or W % 8 == 0 (rows of whole vectors, tiles in pairs) and TW = W / 4
/// dividing 8 or a multiple of 8 (a tile column's lanes are found per vector cheaply).
inline bool vector_transforms(int W) {
  const int tw = W / 4;
  return W == 4 || (W % 8 == 0 && (8 % tw == 0 || tw % 8 == 0));
}
/// Lanes l < n all ones, the others zero (n clamped to 0..8).
inline __m256i first_lanes(i64 n) {
  const int k = static_cast<int>(std::clamp<i64>(n, 0, 8));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/// All ones in the lanes of tiles t0 .. t0+7 (rows of tw tiles) whose column is not 0
/// (`last` false) or not tw - 1, zero in the others: for and-ing out a neighbour column.
inline __m256 keep_columns(int tw, i64 t0, bool last) {
  alignas(32) std::int32_t m[8];
  for (int l = 0; l < 8; ++l) m[l] = (t0 + l) % tw == (last ? tw - 1 : 0) ? 0 : -1;
  return _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(m)));
}
/// Transposes the 4x4 blocks in each 128-bit half: out[b] = [q0[b] q1[b] q2[b] q3[b]] per half.
inline void transpose4(const __m256 q[4], __m256 out[4]) {
  const __m256 t0 = _mm256_unpacklo_ps(q[0], q[1]), t1 = _mm256_unpackhi_ps(q[0], q[1]);
  const __m256 t2 = _mm256_unpacklo_ps(q[2], q[3]), t3 = _mm256_unpackhi_ps(q[2], q[3]);
  out[0] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  out[1] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  out[2] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  out[3] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
}
/// [lo[0..4) | hi[0..4)]
inline __m256 load_halves(const float* lo, const float* hi) {
  return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)), _mm_loadu_ps(hi), 1);
}

/// s[a][j] = (A^T M)[a][j] for the 8 tiles t0 .. t0+7 of M's planes (elements es apart): the
/// output transforms' first stage. Rows are tpad >= round_up(flat, 8) long: reading past the
/// chunk's tiles stays inside.
inline void output_columns(const float* base, i64 es, i64 t0, __m256 (&s)[4][6]) {
  for (int j = 0; j < 6; ++j) {
    __m256 col[6], t[4];
    for (int i = 0; i < 6; ++i) col[i] = _mm256_loadu_ps(base + (6 * i + j) * es + t0);
    vec::at4(col, t);
    for (int a = 0; a < 4; ++a) s[a][j] = t[a];
  }
}

// W == 4 (TW = 1: tile t of the chunk is rows 4ty .. 4ty+3 of image n, t = n * TH + ty, 16
// contiguous values): 8 tiles at a time, each tile's rows loaded whole and the 8 tiles
// transposed into lanes, so VGG's 4x4 maps (256 and 512 channels) take F(4x4) on AVX2 too.

/// transform_input for W == 4.
inline void transform_input_w4(const float* x, int C, int H, int count, float* v, i64 tpad, i64 ves) {
  const int TH = H / 4;
  const i64 plane = 4 * i64{H}, flat = i64{count} * TH;
  const __m256 zero = _mm256_setzero_ps();
  for (int c = 0; c < C; ++c) {
    vec::tile_walk walk{1, TH, 4, i64{C} * plane};
    const float* xc = x + i64{c} * plane;
    float* out = v + i64{c} * tpad;
    for (i64 t0 = 0; t0 < flat; t0 += 8) {
      const i64 k = std::min<i64>(8, flat - t0);
      i64 off[8];
      walk.next(off, k);
      __m256 rows[3][8];  // per tile: input rows -1, 0 | 1, 2 | 3, 4 of the tile (zero outside)
      for (int l = 0; l < 8; ++l) {
        if (l >= k) {
          rows[0][l] = rows[1][l] = rows[2][l] = zero;
          continue;
        }
        const float* p = xc + off[l];
        const i64 ty = (t0 + l) % TH;
        const __m128 above = ty > 0 ? _mm_loadu_ps(p - 4) : _mm_setzero_ps();
        const __m128 below = ty + 1 < TH ? _mm_loadu_ps(p + 16) : _mm_setzero_ps();
        rows[0][l] = _mm256_insertf128_ps(_mm256_castps128_ps256(above), _mm_loadu_ps(p), 1);
        rows[1][l] = _mm256_loadu_ps(p + 4);
        rows[2][l] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + 12)), below, 1);
      }
      __m256 X[24];  // X[4k + o]: the 8 tiles' input row k - 1, column o
      for (int h = 0; h < 3; ++h) transpose8(rows[h], X + 8 * h);
      __m256 R[6][4];  // (B^T d)[i] per column o
      for (int o = 0; o < 4; ++o) {
        const __m256 d[6] = {X[o], X[4 + o], X[8 + o], X[12 + o], X[16 + o], X[20 + o]};
        __m256 r[6];
        vec::bt6(d, r);
        for (int i = 0; i < 6; ++i) R[i][o] = r[i];
      }
      for (int i = 0; i < 6; ++i) {  // columns -1 and 4 are padding: zero
        const __m256 d[6] = {zero, R[i][0], R[i][1], R[i][2], R[i][3], zero};
        __m256 o[6];
        vec::bt6(d, o);
        for (int j = 0; j < 6; ++j) store_first(out + (6 * i + j) * ves + t0, o[j], k);
      }
    }
  }
}

/// transform_output for W == 4, with the epilogue ep fused (null: none; r its residual at the
/// chunk's first image).
inline void transform_output_w4(const float* mm, i64 es, i64 tpad, int M, int H, int count, float* y,
                                const conv_epilogue<float>* ep, const float* r) {
  const int TH = H / 4;
  const i64 plane = 4 * i64{H}, flat = i64{count} * TH, ystride = i64{M} * plane;
  for (int m = 0; m < M; ++m) {
    const float* base = mm + i64{m} * tpad;
    float* ym = y + i64{m} * plane;
    const float* rm = r ? r + i64{m} * plane : nullptr;
    const float* sh = ep ? ep->shift : nullptr;
    const bool relu = ep && ep->relu;
    const __m256 shift = _mm256_set1_ps(sh ? sh[m] : 0.f), zero = _mm256_setzero_ps();
    vec::lane_sums<8> sums(ep, m);
    vec::tile_walk walk{1, TH, 4, ystride};
    for (i64 t0 = 0; t0 < flat; t0 += 8) {
      if (sums) sums.flush_every();
      const i64 k = std::min<i64>(8, flat - t0);
      i64 off[8];
      walk.next(off, k);
      __m256 s[4][6];  // s[a][j] = (A^T M)[a][j]
      output_columns(base, es, t0, s);
      __m256 Y[16], tile[2][8];  // Y[4a + b]: output row a, column b of the 8 tiles
      for (int a = 0; a < 4; ++a) vec::at4(s[a], Y + 4 * a);
      transpose8(Y, tile[0]);      // tile[0][l]: rows 0, 1 of tile l
      transpose8(Y + 8, tile[1]);  // tile[1][l]: rows 2, 3
      for (int l = 0; l < k; ++l)
        for (int h = 0; h < 2; ++h) {
          __m256 o = sh ? _mm256_add_ps(tile[h][l], shift) : tile[h][l];
          if (rm) o = _mm256_add_ps(o, _mm256_loadu_ps(rm + off[l] + 8 * h));
          if (relu) o = _mm256_max_ps(o, zero);
          if (sums) sums.add(o);
          if (m + 1 < M) {
            vec::ahead(ym + off[l] + 8 * h + plane, true);
            if (rm) vec::ahead(rm + off[l] + 8 * h + plane, false);
          }
          _mm256_storeu_ps(ym + off[l] + 8 * h, o);
        }
    }
    if (sums) sums.flush();
  }
}

/// transform_output_grad for W == 4.
inline void transform_output_grad_w4(const float* dy, int M, int H, int count, float* dm, i64 es, i64 tpad) {
  const int TH = H / 4;
  const i64 plane = 4 * i64{H}, flat = i64{count} * TH, ystride = i64{M} * plane;
  const __m256 zero = _mm256_setzero_ps();
  for (int m = 0; m < M; ++m) {
    const float* g = dy + i64{m} * plane;
    float* out = dm + i64{m} * tpad;
    vec::tile_walk walk{1, TH, 4, ystride};
    for (i64 t0 = 0; t0 < flat; t0 += 8) {
      const i64 k = std::min<i64>(8, flat - t0);
      i64 off[8];
      walk.next(off, k);
      __m256 tile[2][8], G[16];  // tile[h][l]: rows 2h, 2h+1 of tile l; G[4a + b]: row a, column b
      for (int l = 0; l < 8; ++l)
        for (int h = 0; h < 2; ++h) {
          if (m + 1 < M && l < k) vec::ahead(g + off[l] + 8 * h + plane, false);
          tile[h][l] = l < k ? _mm256_loadu_ps(g + off[l] + 8 * h) : zero;
        }
      transpose8(tile[0], G);
      transpose8(tile[1], G + 8);
      __m256 p[4][6];  // p[a][j] = (dY A^T)[a][j]
      for (int a = 0; a < 4; ++a) vec::a6(G + 4 * a, p[a]);
      for (int j = 0; j < 6; ++j) {
        const __m256 col[4] = {p[0][j], p[1][j], p[2][j], p[3][j]};
        __m256 o[6];
        vec::a6(col, o);
        for (int i = 0; i < 6; ++i) store_first(out + (6 * i + j) * es + t0, o[i], k);
      }
    }
  }
}

/// As the AVX-512 transform_input: stage 1 along rows per 8 columns, stage 2 along columns
/// per 8 tiles (tile q's 4 columns and tile 4+q's in one vector, transposed in halves).
inline void transform_input(const float* x, int C, int H, int W, int count, float* v, i64 tpad, i64 ves,
                            float* row) {
  if (W == 4) return transform_input_w4(x, C, H, count, v, tpad, ves);
  const int TH = H / 4, TW = W / 4, group = input_group(H, W);
  const i64 plane = i64{H} * W, tiles = i64{TH} * TW, rlen = i64{TH} * W, es = ves;
  const i64 rs = group * rlen + 80;  // R[i]: rows of B^T d with slack around, as above
  float* R = row + 16;
  std::fill(row, row + input_scratch(H, W, count), 0.f);
  const bool fixed = 8 % TW == 0;  // the same column lanes in every vector
  const __m256 keep_first = keep_columns(TW, 0, false), keep_last = keep_columns(TW, 0, true);
  const __m256i from_prev = _mm256_setr_epi32(7, 0, 1, 2, 3, 4, 5, 6);  // lane l takes lane l - 1
  const __m256i from_next = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);  // lane l takes lane l + 1
  const __m256 zero = _mm256_setzero_ps();
  for (int c = 0; c < C; ++c)
    for (int n0 = 0; n0 < count; n0 += group) {
      const int images = std::min(group, count - n0);
      for (int n = 0; n < images; ++n) {  // stage 1, along rows
        const float* xc = x + (i64{n0 + n} * C + c) * plane;
        const float* xnext = n0 + n + 1 < count ? x + (i64{n0 + n + 1} * C + c) * plane
                             : c + 1 < C        ? x + i64{c + 1} * plane
                                                : nullptr;
        for (int ty = 0; ty < TH; ++ty) {
          const float* r0 = xc + (4 * i64{ty} - 1) * W;
          if (xnext)
            for (i64 p = 4 * i64{ty} * W; p < 4 * i64{ty + 1} * W; p += 16) __builtin_prefetch(xnext + p, 0, 3);
          for (int c0 = 0; c0 < W; c0 += 8) {
            __m256 d[6], o[6];
            for (int k = 0; k < 6; ++k)
              d[k] = (k == 0 && ty == 0) || (k == 5 && ty == TH - 1) ? zero : _mm256_loadu_ps(r0 + k * i64{W} + c0);
            vec::bt6(d, o);
            float* dst = R + n * rlen + i64{ty} * W + c0;
            for (int i = 0; i < 6; ++i) _mm256_storeu_ps(dst + i * rs, o[i]);
          }
        }
      }
      // stage 2, along columns: V[6i+j][c][t] = sum_o B^T[j][o] R[i][4t + o - 1]
      const i64 flat = images * tiles;
      float* out = v + i64{c} * tpad + n0 * tiles;
      for (i64 t0 = 0; t0 < flat; t0 += 8) {
        const __m256 kf = fixed ? keep_first : keep_columns(TW, t0, false);
        const __m256 kl = fixed ? keep_last : keep_columns(TW, t0, true);
        const bool full = flat - t0 >= 8;
        const __m256i valid = first_lanes(flat - t0);
        for (int i = 0; i < 6; ++i) {
          const float* p = R + i * rs + 4 * t0;
          __m256 q[4], d[6], o[6];
          for (int b = 0; b < 4; ++b) q[b] = load_halves(p + 4 * b, p + 16 + 4 * b);
          transpose4(q, d + 1);  // d[1 + b]: column 4t + b of tiles t0 .. t0+7
          // column 4t-1: lane l takes d[4][l-1], lane 0 p[-1]; column 4t+4: d[1][l+1], lane 7 p[32]
          d[0] = _mm256_and_ps(kf, _mm256_blend_ps(_mm256_permutevar8x32_ps(d[4], from_prev),
                                                   _mm256_broadcast_ss(p - 1), 0x01));
          d[5] = _mm256_and_ps(kl, _mm256_blend_ps(_mm256_permutevar8x32_ps(d[1], from_next),
                                                   _mm256_broadcast_ss(p + 32), 0x80));
          vec::bt6(d, o);
          float* dst = out + 6 * i * es + t0;
          for (int j = 0; j < 6; ++j)
            if (full)
              _mm256_storeu_ps(dst + j * es, o[j]);
            else
              _mm256_maskstore_ps(dst + j * es, valid, o[j]);
        }
      }
    }
}

/// As the AVX-512 transform_output, with the epilogue ep fused and its statistics taken
/// (null: none; r its residual at the chunk's first image).
inline void transform_output(const float* mm, i64 es, i64 tpad, int M, int H, int W, int count, float* y,
                             const conv_epilogue<float>* ep = nullptr, const float* r = nullptr) {
  if (W == 4) return transform_output_w4(mm, es, tpad, M, H, count, y, ep, r);
  const int TW = W / 4;
  const i64 plane = i64{H} * W, tiles = i64{H / 4} * TW, flat = count * tiles, ystride = i64{M} * plane;
  for (int m = 0; m < M; ++m) {
    const float* base = mm + i64{m} * tpad;
    float* ym = y + i64{m} * plane;
    const float* rm = r ? r + i64{m} * plane : nullptr;
    const float* sh = ep ? ep->shift : nullptr;
    const bool relu = ep && ep->relu, add = sh || rm;
    const __m256 shift = _mm256_set1_ps(sh ? sh[m] : 0.f), zero = _mm256_setzero_ps();
    vec::lane_sums<8> sums(ep, m);
    vec::tile_walk walk{TW, H / 4, W, ystride};
    for (i64 t0 = 0; t0 < flat; t0 += 8) {
      if (sums) sums.flush_every();
      const i64 k = std::min<i64>(8, flat - t0);  // even: TW is
      i64 off[4];  // off[q] starts tiles 2q, 2q+1
      walk.next_groups(off, k / 2, 2);
      __m256 s[4][6];  // s[a][j] = (A^T M)[a][j]
      output_columns(base, es, t0, s);
      for (int a = 0; a < 4; ++a) {
        __m256 z[4], w[4];
        vec::at4(s[a], z);
        transpose4(z, w);  // w[q] = [tile q | tile 4+q], 4 outputs each
        const __m256 pair[4] = {_mm256_permute2f128_ps(w[0], w[1], 0x20), _mm256_permute2f128_ps(w[2], w[3], 0x20),
                                _mm256_permute2f128_ps(w[0], w[1], 0x31), _mm256_permute2f128_ps(w[2], w[3], 0x31)};
        float* ya = ym + i64{a} * W;
        const float* ra = rm ? rm + i64{a} * W : nullptr;
        for (int q = 0; 2 * q < k; ++q) {  // tiles 2q, 2q+1: side by side in one row
          __m256 o = add ? _mm256_add_ps(pair[q], shift) : pair[q];
          if (ra) o = _mm256_add_ps(o, _mm256_loadu_ps(ra + off[q]));
          if (relu) o = _mm256_max_ps(o, zero);
          if (sums) sums.add(o);
          if (m + 1 < M) {
            vec::ahead(ya + off[q] + plane, true);
            if (ra) vec::ahead(ra + off[q] + plane, false);
          }
          _mm256_storeu_ps(ya + off[q], o);
        }
      }
    }
    if (sums) sums.flush();
  }
}

inline void transform_output_grad(const float* dy, int M, int H, int W, int count, float* dm, i64 es, i64 tpad) {
  if (W == 4) return transform_output_grad_w4(dy, M, H, count, dm, es, tpad);
  const int TW = W / 4;
  const i64 plane = i64{H} * W, tiles = i64{H / 4} * TW, flat = count * tiles, ystride = i64{M} * plane;
  for (int m = 0; m < M; ++m) {
    const float* g = dy + i64{m} * plane;
    float* out = dm + i64{m} * tpad;
    vec::tile_walk walk{TW, H / 4, W, ystride};
    for (i64 t0 = 0; t0 < flat; t0 += 8) {
      const i64 k = std::min<i64>(8, flat - t0);
      const __m256i valid = first_lanes(k);
      i64 off[4];  // off[q] starts tiles 2q, 2q+1 (k is even: TW is)
      walk.next_groups(off, k / 2, 2);
      __m256 p[4][6];  // p[a][j] = (dY A^T)[a][j]
      for (int a = 0; a < 4; ++a) {
        const float* ga = g + i64{a} * W;
        __m256 q[4], d[4];  // q[b] = [row a of tile b | of tile 4+b] (zero past the chunk)
        for (int b = 0; b < 4; ++b) {
          const i64 side = 4 * (b % 2);  // tile b is the second of its pair when b is odd
          if (m + 1 < M && b < k) vec::ahead(ga + off[b / 2] + side + plane, false);
          if (m + 1 < M && 4 + b < k) vec::ahead(ga + off[2 + b / 2] + side + plane, false);
          const __m128 lo = b < k ? _mm_loadu_ps(ga + off[b / 2] + side) : _mm_setzero_ps();
          const __m128 hi = 4 + b < k ? _mm_loadu_ps(ga + off[2 + b / 2] + side) : _mm_setzero_ps();
          q[b] = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
        }
        transpose4(q, d);  // d[b]: column b of the 8 tiles
        vec::a6(d, p[a]);
      }
      for (int j = 0; j < 6; ++j) {
        const __m256 col[4] = {p[0][j], p[1][j], p[2][j], p[3][j]};
        __m256 o[6];
        vec::a6(col, o);
        for (int i = 0; i < 6; ++i)
          if (k == 8)
            _mm256_storeu_ps(out + (6 * i + j) * es + t0, o[i]);
          else
            _mm256_maskstore_ps(out + (6 * i + j) * es + t0, valid, o[i]);
      }
    }
  }
}
}  // namespace avx2
#endif

}  // namespace netsplit::detail::cpu_conv::winograd4
