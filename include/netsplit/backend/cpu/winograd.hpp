// netsplit/backend/cpu/winograd.hpp — 3x3 stride-1 "same" convolutions by Winograd's
// minimal filtering: the drivers (forward, input gradient, weight gradient) over a tile
// policy, F(2x2, 3x3) (its transforms here) or F(4x4, 3x3) (winograd_f4.hpp), the choice of
// `fastest` (winograd_fastest; winograd_s2_fastest for the stride-2 tiles of winograd_s2.hpp,
// dispatched here too) and the epilogue of conv2d_forward_affine. Below, F(2x2, 3x3)
// (Lavin & Gray, 2015); F(4x4, 3x3) works the same way with 6x6 input tiles.
// Each 2x2 output tile comes from a 4x4 input tile d: Y = A^T [(G g G^T) . (B^T d B)] A, so
// the 9 multiplies per output of the direct form become 16 / 4 = 4, at the price of three
// linear transforms (the weights', once per call; the input's and the output's, by adds).
// The 16 element-wise products, summed over input channels, are 16 independent matrix
// products  M[e] (out x tiles) = U[e] (out x in) * V[e] (in x tiles), computed by the direct
// engine's register-blocked micro-kernel (conv_kernels.hpp) with "tap offsets" that step
// over the input-channel rows of V[e].
// Used for the forward pass, the input gradient (a 3x3 stride-1 "same" convolution of dy with
// the weights transposed and rotated) and the weight gradient (dU[e] = sum over tiles of
// (A dY A^T)[e] (B^T d B)[e], then dw = G^T dU G, by the direct engine's weight-gradient
// micro-kernel).
// Numerics: the transforms only add, subtract and halve (exact in binary floating point up
// to the rounding of each sum), so results differ from the direct form by a few ulps of the
// sums' magnitudes; summation order depends only on shapes, thread count and the chunk plan
// (reproducible; the plan follows the context's cache sizes: cpu_context::conv_chunk_bytes).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "netsplit/backend/cpu/conv_kernels.hpp"
#include "netsplit/backend/cpu/winograd_f4.hpp"
#include "netsplit/backend/cpu/winograd_s2.hpp"
#include "netsplit/backend/cpu/winograd_weights.hpp"

namespace netsplit::detail::cpu_conv {

/// True for the convolutions this file computes: 3x3, stride 1, padding 1, even sizes.
inline bool winograd_applicable(const conv2d_desc& d) {
  return d.kernel == 3 && d.stride == 1 && d.pad == 1 && d.in_height % 2 == 0 && d.in_width % 2 == 0 &&
         d.in_height >= 2 && d.in_width >= 2;
}

namespace winograd {
/// Widths the vector transforms handle: a vector of 16 consecutive tiles (numbered
/// g = ty*TW + tx within an image) spans 16/TW tile rows (TW dividing 16) or part of one
/// (TW a multiple of 16), and W % 8 == 0 keeps groups of 4 tiles inside a row.
inline bool vector_transforms(int W) {
  const int tw = W / 2;
  return W % 8 == 0 && (16 % tw == 0 || tw % 16 == 0);
}
/// F(2x2, 3x3)'s filter transform, the policy of transform_weights_packed (winograd_weights.hpp):
/// out[4i + j][r] = (G g G^T)[i][j] of the filters of rows r in [r0, r1), in T,
/// G = [[1,0,0], [1/2,1/2,1/2], [1/2,-1/2,1/2], [0,0,1]].
struct g4x3 {
  static constexpr int elems = 16, stage = 32;
  template <class T>
  using acc = T;
  template <int S, class T>
  static void apply(const T (*g)[S], T (*out)[S], int r0, int r1) {
    const T h = T(0.5);
    T gg[4][3][S];
    for (int j = 0; j < 3; ++j)  // G g: rows
      for (int r = r0; r < r1; ++r) {
        gg[0][j][r] = g[j][r];
        gg[1][j][r] = h * (g[j][r] + g[3 + j][r] + g[6 + j][r]);
        gg[2][j][r] = h * (g[j][r] - g[3 + j][r] + g[6 + j][r]);
        gg[3][j][r] = g[6 + j][r];
      }
    for (int i = 0; i < 4; ++i)  // (G g) G^T: columns
      for (int r = r0; r < r1; ++r) {
        out[4 * i][r] = gg[i][0][r];
        out[4 * i + 1][r] = h * (gg[i][0][r] + gg[i][1][r] + gg[i][2][r]);
        out[4 * i + 2][r] = h * (gg[i][0][r] - gg[i][1][r] + gg[i][2][r]);
        out[4 * i + 3][r] = gg[i][2][r];
      }
  }
};

/// Images per chunk of one thread, such that the chunk's `elems` transformed planes of
/// `rows` rows (input channels plus products) of `tiles` tiles per image stay within
/// `budget_bytes` (cpu_context::conv_chunk_bytes: a share of the core's L2) (of those
/// counts down to half as many, the one that wastes the smallest fraction of a row rounded up
/// to `multiple`), and that row length in tiles.
struct chunk_plan {
  int images;
  i64 tpad;
};
inline chunk_plan plan_chunks(const conv2d_desc& d, int threads, std::size_t budget_bytes, int min_blocks, i64 rows,
                              std::size_t elem_bytes, i64 multiple, i64 tiles, int elems) {
  const int per_thread = (d.batch + threads - 1) / threads;
  const i64 per_image = elems * rows * tiles * static_cast<i64>(elem_bytes);
  const i64 fit = std::max(static_cast<i64>(budget_bytes) / per_image, (min_blocks * multiple + tiles - 1) / tiles);
  const int most = static_cast<int>(std::clamp<i64>(fit, 1, std::max(1, per_thread)));
  // among [most/2, most] images, the count whose tiles waste the least of the rounded row
  int images = most;
  for (int k = most; k >= std::max(1, most / 2); --k)
    if ((round_up(k * tiles, multiple) - k * tiles) * images < (round_up(images * tiles, multiple) - images * tiles) * k)
      images = k;
  return {images, round_up(images * tiles, multiple)};
}

/// The stride between the transformed planes of consecutive elements e (V[e], M[e], dM[e]) of
/// `rows` rows of tpad tiles: one cache line more than rows * tpad. Without it the 16 or 36
/// planes a transform writes or reads together often lie a multiple of 4 KB apart (at 64
/// channels always: 64 * tpad floats, tpad a multiple of 16) and compete for the same
/// sets of L1 and L2. Measured in isolation (F(4x4), one core, L2-resident chunks of
/// ResNet20's layers): input transform 0.61-0.77 of the time with AVX-512, 0.36-0.81 with
/// AVX2, output 0.86-0.95, output gradient 0.63-0.87; whole network 1.00-1.04x the img/s
/// (its transforms mostly wait on activations coming from L3).
inline i64 element_stride(i64 rows, i64 tpad) { return rows * tpad + 16; }

/// True where a forward pass or a packed weight gradient should transform the whole batch at
/// once and split its products over (element, row block) rather than over chunks of images:
/// where the transformed weights or their gradient (`weights` values) outnumber the whole
/// batch's transformed planes (`planes`), every chunk reading (or, for the gradient, reading and
/// writing) all of them again costs more than the planes' round trip through memory.
inline bool by_elements(i64 weights, i64 planes) { return weights > planes; }

/// Weights of the input gradient as a forward convolution: w'[c][m][ky][kx] = w[m][c][2-ky][2-kx],
/// for the output channels c in [c_begin, c_end) of w' (the callers split C over the pool).
template <class T>
void transpose_rotate(const T* w, int M, int C, T* wt, int c_begin, int c_end) {
  for (int c = c_begin; c < c_end; ++c)
    for (int m = 0; m < M; ++m)
      for (int k = 0; k < 9; ++k) wt[(i64{c} * M + m) * 9 + k] = w[(i64{m} * C + c) * 9 + (8 - k)];
}

/// V[e][c][t] = (B^T d B)[e] for the 4x4 input tile d of tile t = (n*TH + ty)*TW + tx at rows
/// 2ty-1.., columns 2tx-1.. (zero outside), B^T = [[1,0,-1,0], [0,1,1,0], [0,-1,1,0], [0,1,0,-1]],
/// at v[e * ves + c * tpad + t] (ves: element_stride(C, tpad)).
/// `row` is scratch of 4 * (H + 2) * TW + W + 4 values.
template <class T>
void transform_input(const T* x, int C, int H, int W, int count, T* v, i64 tpad, i64 ves, T* row) {
  const int TH = H / 2, TW = W / 2;
  const i64 tiles = i64{TH} * TW;
  T* a = row;                                // a[j][r][tx], r = padded row 0..H+1
  T* line = row + 4 * i64{H + 2} * TW;       // one input row with a zero on each side
  const i64 jstride = i64{H + 2} * TW;
  for (int j = 0; j < 4; ++j) {
    std::fill(a + j * jstride, a + j * jstride + TW, T(0));                      // row -1
    std::fill(a + j * jstride + i64{H + 1} * TW, a + (j + 1) * jstride, T(0));  // row H
  }
  line[0] = T(0);
  line[W + 1] = line[W + 2] = line[W + 3] = T(0);
  for (int c = 0; c < C; ++c)
    for (int n = 0; n < count; ++n) {
      const T* xc = x + (i64{n} * C + c) * H * W;
      for (int r = 0; r < H; ++r) {  // along columns: d_j = line[2tx + j]
        std::copy(xc + i64{r} * W, xc + i64{r + 1} * W, line + 1);
        T* a0 = a + i64{r + 1} * TW;
        T* a1 = a0 + jstride;
        T* a2 = a1 + jstride;
        T* a3 = a2 + jstride;
        for (int tx = 0; tx < TW; ++tx) {
          const T d0 = line[2 * tx], d1 = line[2 * tx + 1], d2 = line[2 * tx + 2], d3 = line[2 * tx + 3];
          a0[tx] = d0 - d2;
          a1[tx] = d1 + d2;
          a2[tx] = d2 - d1;
          a3[tx] = d1 - d3;
        }
      }
      for (int j = 0; j < 4; ++j)  // along rows: tile row ty reads padded rows 2ty..2ty+3
        for (int ty = 0; ty < TH; ++ty) {
          const T* r0 = a + j * jstride + i64{2 * ty} * TW;
          const T* r1 = r0 + TW;
          const T* r2 = r1 + TW;
          const T* r3 = r2 + TW;
          const i64 es = 4 * ves;  // e = i*4 + j: i steps by 4 elements
          T* __restrict o0 = v + j * ves + i64{c} * tpad + n * tiles + i64{ty} * TW;
          T* __restrict o1 = o0 + es;
          T* __restrict o2 = o1 + es;
          T* __restrict o3 = o2 + es;
          for (int tx = 0; tx < TW; ++tx) {
            o0[tx] = r0[tx] - r2[tx];
            o1[tx] = r1[tx] + r2[tx];
            o2[tx] = r2[tx] - r1[tx];
            o3[tx] = r1[tx] - r3[tx];
          }
        }
    }
}

/// y[n][m][2ty+a][2tx+b] = (A^T M A)[a][b], A^T = [[1,1,1,0], [0,1,-1,-1]], from
/// M[e][m][t] (rows of stride tpad, elements e of stride es).
template <class T>
void transform_output(const T* mm, i64 es, i64 tpad, int M, int H, int W, int count, T* y, T* row) {
  const int TH = H / 2, TW = W / 2;
  const i64 tiles = i64{TH} * TW;
  T* s = row;  // s[a][j][tx]
  for (int n = 0; n < count; ++n)
    for (int m = 0; m < M; ++m) {
      T* ym = y + (i64{n} * M + m) * H * W;
      for (int ty = 0; ty < TH; ++ty) {
        const T* base = mm + i64{m} * tpad + n * tiles + i64{ty} * TW;
        for (int j = 0; j < 4; ++j) {
          const T* m0 = base + j * es;
          const T* m1 = m0 + 4 * es;
          const T* m2 = m1 + 4 * es;
          const T* m3 = m2 + 4 * es;
          T* s0 = s + i64{j} * TW;
          T* s1 = s + i64{4 + j} * TW;
          for (int tx = 0; tx < TW; ++tx) {
            s0[tx] = m0[tx] + m1[tx] + m2[tx];
            s1[tx] = m1[tx] - m2[tx] - m3[tx];
          }
        }
        for (int a = 0; a < 2; ++a) {
          const T* q0 = s + i64{4 * a} * TW;
          const T* q1 = q0 + TW;
          const T* q2 = q1 + TW;
          const T* q3 = q2 + TW;
          T* out = ym + i64{2 * ty + a} * W;
          for (int tx = 0; tx < TW; ++tx) {
            out[2 * tx] = q0[tx] + q1[tx] + q2[tx];
            out[2 * tx + 1] = q1[tx] - q2[tx] - q3[tx];
          }
        }
      }
    }
}

/// The products' gradient dM[e][m][t] = (A dY A^T)[e] from the output gradient's 2x2 tile
/// dY of tile t (rows of stride tpad, elements e of stride es), A = [[1,0], [1,1], [1,-1], [0,-1]].
template <class T>
void transform_output_grad(const T* dy, int M, int H, int W, int count, T* dm, i64 es, i64 tpad) {
  const int TH = H / 2, TW = W / 2;
  const i64 tiles = i64{TH} * TW;
  for (int n = 0; n < count; ++n)
    for (int m = 0; m < M; ++m) {
      const T* g = dy + (i64{n} * M + m) * H * W;
      T* out = dm + i64{m} * tpad + n * tiles;
      for (int ty = 0; ty < TH; ++ty) {
        const T* __restrict r0 = g + i64{2 * ty} * W;
        const T* __restrict r1 = r0 + W;
        T* o[16];
        for (int e = 0; e < 16; ++e) o[e] = out + e * es + i64{ty} * TW;
        // rows a = 0, 1, columns b = 0, 1 of each tile: p_i = (A dY)[i] per column, then A^T
        for (int tx = 0; tx < TW; ++tx) {
          const T a0 = r0[2 * tx], a1 = r0[2 * tx + 1], b0 = r1[2 * tx], b1 = r1[2 * tx + 1];
          const T p0[2] = {a0, a1}, p1[2] = {a0 + b0, a1 + b1}, p2[2] = {a0 - b0, a1 - b1}, p3[2] = {-b0, -b1};
          const T* p[4] = {p0, p1, p2, p3};
          for (int i = 0; i < 4; ++i) {
            o[4 * i][tx] = p[i][0];
            o[4 * i + 1][tx] = p[i][0] + p[i][1];
            o[4 * i + 2][tx] = p[i][0] - p[i][1];
            o[4 * i + 3][tx] = -p[i][1];
          }
        }
      }
    }
}

/// dw[m][c] (3x3) = G^T dU[m][c] G from dU[e][m][c] at du[(e * rows + m) * ld + c].
template <class T>
void weight_grad_from(const T* du, i64 rows, i64 ld, int M, int C, T* dw) {
  const T h = T(0.5);
  for (int m = 0; m < M; ++m)
    for (int c = 0; c < C; ++c) {
      T u[4][4], t[3][4];
      for (int e = 0; e < 16; ++e) u[e / 4][e % 4] = du[(e * rows + m) * ld + c];
      for (int j = 0; j < 4; ++j) {  // G^T dU: G^T = [[1,1/2,1/2,0], [0,1/2,-1/2,0], [0,1/2,1/2,1]]
        t[0][j] = u[0][j] + h * (u[1][j] + u[2][j]);
        t[1][j] = h * (u[1][j] - u[2][j]);
        t[2][j] = h * (u[1][j] + u[2][j]) + u[3][j];
      }
      T* o = dw + (i64{m} * C + c) * 9;
      for (int i = 0; i < 3; ++i) {  // (G^T dU) G
        o[3 * i] = t[i][0] + h * (t[i][1] + t[i][2]);
        o[3 * i + 1] = h * (t[i][1] - t[i][2]);
        o[3 * i + 2] = h * (t[i][1] + t[i][2]) + t[i][3];
      }
    }
}

#if defined(__AVX512F__)
// Float transforms on 16 tiles at a time, for widths with vector_transforms(W).
/// base[start + i] for lanes with 0 <= start + i < n, zero elsewhere.
inline __m512 load_in(const float* base, i64 start, i64 n) {
  const i64 lo = std::max<i64>(0, -start), hi = std::min<i64>(16, n - start);
  if (lo >= hi) return _mm512_setzero_ps();
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>(first_lanes(hi) & ~first_lanes(lo)), base + start);
}

inline void transform_input(const float* x, int C, int H, int W, int count, float* v, i64 tpad, i64 ves,
                            float* row) {
  const int TH = H / 2, TW = W / 2;
  const i64 tiles = i64{TH} * TW, plane = i64{H} * W, flat = i64{H} * TW;
  const i64 jstride = i64{H + 2} * TW + 32;  // padded rows, then room for a 32-wide read
  const i64 es = 4 * ves;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  // stage B gathers tile row ty0 + k from padded row 2(ty0 + k) + i: lane l reads 2l - l % TW
  alignas(64) int gidx[16];
  for (int l = 0; l < 16; ++l) gidx[l] = TW >= 16 ? l : 2 * l - l % TW;
  const __m512i rows_idx = _mm512_load_si512(gidx);
  float* a = row;
  for (int j = 0; j < 4; ++j) {
    std::fill(a + j * jstride, a + j * jstride + TW, 0.f);                      // row -1
    std::fill(a + j * jstride + i64{H + 1} * TW, a + (j + 1) * jstride, 0.f);  // row H and slack
  }
  // column masks: the same for every vector when TW divides 16
  const __mmask16 first_c = static_cast<__mmask16>(~tile_column_mask(TW, 0, false));
  const __mmask16 last_c = static_cast<__mmask16>(~tile_column_mask(TW, 0, true));
  for (int n = 0; n < count; ++n)
    for (int c = 0; c < C; ++c) {  // planes in memory order
      const float* xc = x + (i64{n} * C + c) * plane;
      const float* next = xc + plane;  // the next plane, prefetched while this one is read
      const bool prefetch = n + 1 < count || c + 1 < C;
      // stage A, along columns, flat over f = r*TW + tx: d_j = x[r][2tx + j - 1] = xc[2f + j - 1]
      for (i64 f0 = 0; f0 < flat; f0 += 16) {
        const i64 s = 2 * f0;
        if (prefetch) {
          _mm_prefetch(reinterpret_cast<const char*>(next + s), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(next + s + 16), _MM_HINT_T0);
        }
        const __mmask16 first = TW < 16 ? first_c : static_cast<__mmask16>(~tile_column_mask(TW, f0, false));
        const __mmask16 last = TW < 16 ? last_c : static_cast<__mmask16>(~tile_column_mask(TW, f0, true));
        __m512 p0, p1, c0, c1, n0, n1;
        if (s >= 2 && s + 34 <= plane) {  // interior: plain loads
          p0 = _mm512_loadu_ps(xc + s - 2), p1 = _mm512_loadu_ps(xc + s + 14);
          c0 = _mm512_loadu_ps(xc + s), c1 = _mm512_loadu_ps(xc + s + 16);
          n0 = _mm512_loadu_ps(xc + s + 2), n1 = _mm512_loadu_ps(xc + s + 18);
        } else {
          p0 = load_in(xc, s - 2, plane), p1 = load_in(xc, s + 14, plane);
          c0 = load_in(xc, s, plane), c1 = load_in(xc, s + 16, plane);
          n0 = load_in(xc, s + 2, plane), n1 = load_in(xc, s + 18, plane);
        }
        const __m512 d0 = _mm512_maskz_permutex2var_ps(first, p0, odd, p1);
        const __m512 d1 = _mm512_permutex2var_ps(c0, even, c1);
        const __m512 d2 = _mm512_permutex2var_ps(c0, odd, c1);
        const __m512 d3 = _mm512_maskz_permutex2var_ps(last, n0, even, n1);
        const __mmask16 valid = first_lanes(flat - f0);
        float* dst = a + TW + f0;
        _mm512_mask_storeu_ps(dst, valid, _mm512_sub_ps(d0, d2));
        _mm512_mask_storeu_ps(dst + jstride, valid, _mm512_add_ps(d1, d2));
        _mm512_mask_storeu_ps(dst + 2 * jstride, valid, _mm512_sub_ps(d2, d1));
        _mm512_mask_storeu_ps(dst + 3 * jstride, valid, _mm512_sub_ps(d1, d3));
      }
      // stage B, along rows: tile (ty, tx) reads padded rows 2ty + i
      float* out = v + i64{c} * tpad + n * tiles;
      for (i64 g0 = 0, ty0 = 0, tx0 = 0; g0 < tiles; g0 += 16) {
        const __mmask16 valid = first_lanes(tiles - g0);
        for (int j = 0; j < 4; ++j) {
          __m512 r[4];
          for (int i = 0; i < 4; ++i) {
            const float* src = a + j * jstride + (2 * ty0 + i) * TW + tx0;
            r[i] = TW >= 16 ? _mm512_loadu_ps(src)
                            : _mm512_permutex2var_ps(_mm512_loadu_ps(src), rows_idx, _mm512_loadu_ps(src + 16));
          }
          float* o = out + j * ves + g0;
          _mm512_mask_storeu_ps(o, valid, _mm512_sub_ps(r[0], r[2]));
          _mm512_mask_storeu_ps(o + es, valid, _mm512_add_ps(r[1], r[2]));
          _mm512_mask_storeu_ps(o + 2 * es, valid, _mm512_sub_ps(r[2], r[1]));
          _mm512_mask_storeu_ps(o + 3 * es, valid, _mm512_sub_ps(r[1], r[3]));
        }
        if (TW >= 16) {  // next 16 tiles: further along the row, or the next row
          if ((tx0 += 16) == TW) tx0 = 0, ++ty0;
        } else {
          ty0 += 16 / TW;
        }
      }
    }
}

inline void transform_output(const float* mm, i64 es, i64 tpad, int M, int H, int W, int count, float* y) {
  const int TW = W / 2;
  const i64 tiles = i64{H / 2} * TW;
  const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int n = 0; n < count; ++n)
    for (int m = 0; m < M; ++m) {
      float* ym = y + (i64{n} * M + m) * H * W;
      const float* base = mm + i64{m} * tpad + n * tiles;
      for (i64 g0 = 0, ty0 = 0, tx0 = 0; g0 < tiles; g0 += 16) {
        __m512 s0[4], s1[4];
        for (int j = 0; j < 4; ++j) {
          const float* p = base + j * es + g0;
          const __m512 m0 = _mm512_loadu_ps(p), m1 = _mm512_loadu_ps(p + 4 * es);
          const __m512 m2 = _mm512_loadu_ps(p + 8 * es), m3 = _mm512_loadu_ps(p + 12 * es);
          s0[j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
          s1[j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
        }
        const __m512* s[2] = {s0, s1};
        for (int a = 0; a < 2; ++a) {
          const __m512 y0 = _mm512_add_ps(_mm512_add_ps(s[a][0], s[a][1]), s[a][2]);
          const __m512 y1 = _mm512_sub_ps(_mm512_sub_ps(s[a][1], s[a][2]), s[a][3]);
          const __m512 z[2] = {_mm512_permutex2var_ps(y0, lo_idx, y1), _mm512_permutex2var_ps(y0, hi_idx, y1)};
          // tile (ty, tx) -> row 2ty + a, column 2tx; groups of 8 tiles (16 outputs) lie in one
          // row when TW >= 8, groups of 4 always
          i64 ty = ty0, tx = tx0;
          if (TW >= 8) {
            for (int q = 0; q < 2 && g0 + 8 * q < tiles; ++q) {
              _mm512_mask_storeu_ps(ym + (2 * ty + a) * W + 2 * tx, first_lanes(2 * (tiles - g0 - 8 * q)), z[q]);
              if ((tx += 8) == TW) tx = 0, ++ty;
            }
            continue;
          }
          for (int q = 0; q < 4 && g0 + 4 * q < tiles; ++q) {
            float* dst = ym + (2 * ty + a) * W + 2 * tx;
            if (q & 1)
              _mm512_mask_storeu_ps(dst - 8, __mmask16(0xFF00), z[q >> 1]);
            else
              _mm512_mask_storeu_ps(dst, __mmask16(0x00FF), z[q >> 1]);
            if ((tx += 4) == TW) tx = 0, ++ty;
          }
        }
        if ((tx0 += 16) >= TW) ty0 += tx0 / TW, tx0 %= TW;
      }
    }
}

inline void transform_output_grad(const float* dy, int M, int H, int W, int count, float* dm, i64 es, i64 tpad) {
  const int TW = W / 2;
  const i64 tiles = i64{H / 2} * TW;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int n = 0; n < count; ++n)
    for (int m = 0; m < M; ++m) {
      const float* g = dy + (i64{n} * M + m) * H * W;
      float* out = dm + i64{m} * tpad + n * tiles;
      for (i64 g0 = 0, ty0 = 0, tx0 = 0; g0 < tiles; g0 += 16) {
        // rows a = 0, 1 of 16 tiles: groups of 4 tiles (8 values) lie in one row
        __m512 z[2][2];
        for (int a = 0; a < 2; ++a) {
          z[a][0] = z[a][1] = _mm512_setzero_ps();
          i64 ty = ty0, tx = tx0;
          if (TW >= 8) {  // groups of 8 tiles (16 values) lie in one row
            for (int q = 0; q < 2 && g0 + 8 * q < tiles; ++q) {
              z[a][q] = _mm512_maskz_loadu_ps(first_lanes(2 * (tiles - g0 - 8 * q)), g + (2 * ty + a) * W + 2 * tx);
              if ((tx += 8) == TW) tx = 0, ++ty;
            }
            continue;
          }
          for (int q = 0; q < 4 && g0 + 4 * q < tiles; ++q) {
            const float* src = g + (2 * ty + a) * W + 2 * tx;
            z[a][q >> 1] = (q & 1) ? _mm512_mask_loadu_ps(z[a][q >> 1], __mmask16(0xFF00), src - 8)
                                   : _mm512_mask_loadu_ps(z[a][q >> 1], __mmask16(0x00FF), src);
            if ((tx += 4) == TW) tx = 0, ++ty;
          }
        }
        const __m512 a0 = _mm512_permutex2var_ps(z[0][0], even, z[0][1]), a1 = _mm512_permutex2var_ps(z[0][0], odd, z[0][1]);
        const __m512 b0 = _mm512_permutex2var_ps(z[1][0], even, z[1][1]), b1 = _mm512_permutex2var_ps(z[1][0], odd, z[1][1]);
        const __m512 p[4][2] = {{a0, a1},
                                {_mm512_add_ps(a0, b0), _mm512_add_ps(a1, b1)},
                                {_mm512_sub_ps(a0, b0), _mm512_sub_ps(a1, b1)},
                                {_mm512_sub_ps(_mm512_setzero_ps(), b0), _mm512_sub_ps(_mm512_setzero_ps(), b1)}};
        const __mmask16 valid = first_lanes(tiles - g0);
        for (int i = 0; i < 4; ++i) {
          float* o = out + 4 * i * es + g0;
          _mm512_mask_storeu_ps(o, valid, p[i][0]);
          _mm512_mask_storeu_ps(o + es, valid, _mm512_add_ps(p[i][0], p[i][1]));
          _mm512_mask_storeu_ps(o + 2 * es, valid, _mm512_sub_ps(p[i][0], p[i][1]));
          _mm512_mask_storeu_ps(o + 3 * es, valid, _mm512_sub_ps(_mm512_setzero_ps(), p[i][1]));
        }
        if ((tx0 += 16) >= TW) ty0 += tx0 / TW, tx0 %= TW;
      }
    }
}
#endif

/// Per-thread scratch for the transforms (`row` above), in elements.
inline std::size_t row_scratch(int H, int W) {
  return static_cast<std::size_t>(4 * (i64{H + 2} * (W / 2) + 32) + W + 4 + 8 * (W / 2));
}

// One tile per image (2x2 maps, VGG's last group): the plane with its zero border is the
// whole 4x4 input tile, so the transforms are a few adds per image, in the same order as the
// general ones above (whose row copies and zero rows cost more than the arithmetic there: a
// call to memmove per 2-value row). Tile t is image t.
/// transform_input for H = W = 2.
template <class T>
void transform_input_one(const T* x, int C, int count, T* v, i64 tpad, i64 ves) {
  const T z = T(0);
  for (int c = 0; c < C; ++c) {
    T* out = v + i64{c} * tpad;
    for (int n = 0; n < count; ++n) {
      const T* p = x + (i64{n} * C + c) * 4;
      T a[4][2];  // along columns (0, x[r][0], x[r][1], 0): a[j][r]
      for (int r = 0; r < 2; ++r) {
        const T x0 = p[2 * r], x1 = p[2 * r + 1];
        a[0][r] = z - x1;
        a[1][r] = x0 + x1;
        a[2][r] = x1 - x0;
        a[3][r] = x0 - z;
      }
      for (int j = 0; j < 4; ++j) {  // along rows (0, row 0, row 1, 0): element 4i + j
        out[j * ves + n] = z - a[j][1];
        out[(4 + j) * ves + n] = a[j][0] + a[j][1];
        out[(8 + j) * ves + n] = a[j][1] - a[j][0];
        out[(12 + j) * ves + n] = a[j][0] - z;
      }
    }
  }
}
/// transform_output for H = W = 2.
template <class T>
void transform_output_one(const T* mm, i64 es, i64 tpad, int M, int count, T* y) {
  for (int m = 0; m < M; ++m) {
    const T* base = mm + i64{m} * tpad;
    for (int n = 0; n < count; ++n) {
      T s[2][4];
      for (int j = 0; j < 4; ++j) {
        const T m0 = base[j * es + n], m1 = base[(4 + j) * es + n], m2 = base[(8 + j) * es + n],
                m3 = base[(12 + j) * es + n];
        s[0][j] = m0 + m1 + m2;
        s[1][j] = m1 - m2 - m3;
      }
      T* out = y + (i64{n} * M + m) * 4;
      for (int a = 0; a < 2; ++a) {
        out[2 * a] = s[a][0] + s[a][1] + s[a][2];
        out[2 * a + 1] = s[a][1] - s[a][2] - s[a][3];
      }
    }
  }
}
/// transform_output_grad for H = W = 2.
template <class T>
void transform_output_grad_one(const T* dy, int M, int count, T* dm, i64 es, i64 tpad) {
  for (int m = 0; m < M; ++m) {
    T* out = dm + i64{m} * tpad;
    for (int n = 0; n < count; ++n) {
      const T* g = dy + (i64{n} * M + m) * 4;
      const T a0 = g[0], a1 = g[1], b0 = g[2], b1 = g[3];
      const T p[4][2] = {{a0, a1}, {a0 + b0, a1 + b1}, {a0 - b0, a1 - b1}, {-b0, -b1}};
      for (int i = 0; i < 4; ++i) {
        out[4 * i * es + n] = p[i][0];
        out[(4 * i + 1) * es + n] = p[i][0] + p[i][1];
        out[(4 * i + 2) * es + n] = p[i][0] - p[i][1];
        out[(4 * i + 3) * es + n] = -p[i][1];
      }
    }
  }
}

/// The two tile sizes as policies of the drivers below: output tile m x m, elems = (m+2)^2
/// transformed values per tile, and their transforms.
struct f2x2 {
  static constexpr int m = 2, elems = 16;
  static bool applicable(const conv2d_desc& d) { return d.in_height % 2 == 0 && d.in_width % 2 == 0; }
  /// Widths with vector transforms on this build's ISA (AVX-512 only).
  static bool vector_widths(int W) {
#if defined(__AVX512F__)
    return vector_transforms(W);
#else
    (void)W;
    return false;
#endif
  }
  template <bool Rot, class T>
  static void weights(const T* w, int M, int C, int mr, int mtiles, T* u, int b, int e) {
    transform_weights_packed<g4x3, Rot>(w, M, C, mr, mtiles, u, b, e);
  }
  template <class T>
  static void weight_grad(const T* du, i64 rows, i64 ld, int M, int C, T* dw) {
    weight_grad_from(du, rows, ld, M, C, dw);
  }
  static std::size_t scratch(int H, int W, int) { return row_scratch(H, W); }
  // The transforms for one chunk: the vector ones where `v` (vectorised below), else the
  // portable ones; out adds the epilogue ep (null: none; r its residual at the chunk).
  template <class T>
  static void in(bool v, const T* x, int C, int H, int W, int count, T* out, i64 tpad, i64 ves, T* row) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>)
      if (v) return transform_input(x, C, H, W, count, out, tpad, ves, row);
#endif
    (void)v;
    if (H == 2 && W == 2) return transform_input_one(x, C, count, out, tpad, ves);
    transform_input<T>(x, C, H, W, count, out, tpad, ves, row);
  }
  template <class T>
  static void out(bool v, const T* mm, i64 es, i64 tpad, int M, int H, int W, int count, T* y, T* row,
                  const conv_epilogue<T>* ep, const T* r) {
    bool done = false;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>)
      if (v) transform_output(mm, es, tpad, M, H, W, count, y), done = true;
#endif
    if (!done && H == 2 && W == 2)
      transform_output_one(mm, es, tpad, M, count, y);
    else if (!done)
      transform_output<T>(mm, es, tpad, M, H, W, count, y, row);
    (void)v;
    if (ep) apply_epilogue(*ep, count, M, i64{H} * W, y, r);
  }
  template <class T>
  static void out_grad(bool v, const T* dy, int M, int H, int W, int count, T* dm, i64 es, i64 tpad) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>)
      if (v) return transform_output_grad(dy, M, H, W, count, dm, es, tpad);
#endif
    (void)v;
    if (H == 2 && W == 2) return transform_output_grad_one(dy, M, count, dm, es, tpad);
    transform_output_grad<T>(dy, M, H, W, count, dm, es, tpad);
  }
};

struct f4x4 {
  static constexpr int m = 4, elems = 36;
  static bool applicable(const conv2d_desc& d) { return d.in_height % 4 == 0 && d.in_width % 4 == 0; }
  /// Widths with vector transforms on this build's ISA (AVX-512: 16 tiles, AVX2: 8 at a time).
  static bool vector_widths(int W) {
#if defined(__AVX512F__)
    return winograd4::vector_transforms(W);
#elif defined(__AVX2__) && defined(__FMA__)
    return winograd4::avx2::vector_transforms(W);
#else
    (void)W;
    return false;
#endif
  }
  template <bool Rot, class T>
  static void weights(const T* w, int M, int C, int mr, int mtiles, T* u, int b, int e) {
    transform_weights_packed<winograd4::g6x3, Rot>(w, M, C, mr, mtiles, u, b, e);
  }
  template <class T>
  static void weight_grad(const T* du, i64 rows, i64 ld, int M, int C, T* dw) {
    winograd4::weight_grad_from(du, rows, ld, M, C, dw);
  }
  static std::size_t scratch(int H, int W, int count) {
#if defined(__AVX2__) && defined(__FMA__)
    return winograd4::input_scratch(H, W, count);
#else
    (void)H, (void)W, (void)count;
    return 1;
#endif
  }
  template <class T>
  static void in(bool v, const T* x, int C, int H, int W, int count, T* out, i64 tpad, i64 ves, T* row) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>)
      if (v) return winograd4::transform_input(x, C, H, W, count, out, tpad, ves, row);
#elif defined(__AVX2__) && defined(__FMA__)
    if constexpr (std::is_same_v<T, float>)
      if (v) return winograd4::avx2::transform_input(x, C, H, W, count, out, tpad, ves, row);
#endif
    (void)v, (void)row;
    winograd4::transform_input<T>(x, C, H, W, count, out, tpad, ves);
  }
  template <class T>
  static void out(bool v, const T* mm, i64 es, i64 tpad, int M, int H, int W, int count, T* y, T*,
                  const conv_epilogue<T>* ep, const T* r) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>)
      if (v) return winograd4::transform_output(mm, es, tpad, M, H, W, count, y, ep, r);  // epilogue fused
#elif defined(__AVX2__) && defined(__FMA__)
    if constexpr (std::is_same_v<T, float>)
      if (v) return winograd4::avx2::transform_output(mm, es, tpad, M, H, W, count, y, ep, r);
#endif
    (void)v;
    winograd4::transform_output<T>(mm, es, tpad, M, H, W, count, y);
    if (ep) apply_epilogue(*ep, count, M, i64{H} * W, y, r);
  }
  template <class T>
  static void out_grad(bool v, const T* dy, int M, int H, int W, int count, T* dm, i64 es, i64 tpad) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>)
      if (v) return winograd4::transform_output_grad(dy, M, H, W, count, dm, es, tpad);
#elif defined(__AVX2__) && defined(__FMA__)
    if constexpr (std::is_same_v<T, float>)
      if (v) return winograd4::avx2::transform_output_grad(dy, M, H, W, count, dm, es, tpad);
#endif
    (void)v;
    winograd4::transform_output_grad<T>(dy, M, H, W, count, dm, es, tpad);
  }
};

/// True where tile policy P has vector transforms for d (float, this ISA, suitable widths).
template <class P, class T>
bool vectorised(const conv2d_desc& d) {
  return std::is_same_v<T, float> && P::applicable(d) && P::vector_widths(d.in_width);
}

}  // namespace winograd

/// The Winograd tile a convolution is computed with (none: the direct engine; s2: stride 2,
/// winograd_s2.hpp).
enum class winograd_tile { none, f2x2, f4x4, s2 };
/// The three computations of a convolution; the input gradient is the forward convolution
/// of dy with the transposed, rotated weights (its desc has the channel counts swapped).
enum class conv_pass { forward, backward_data, backward_weights };

/// Where cpu_conv_algorithm::fastest takes Winograd, and which tile, per pass: vector
/// transforms, and at least 16 input channels or at most 16 output channels (below);
/// F(4x4, 3x3) where its transforms are vectorised;
/// F(2x2, 3x3)'s backward passes only on maps of at most 16x16. Measured on ResNet20's
/// shapes, batch 128, 2 threads, AVX-512 (`netsplit_bench --benchmark_filter='conv2d.*s:1'
/// --benchmark_repetitions=5`, fastest of 5, ms, F(4x4) / F(2x2) / direct): forward 3->16
/// 32x32 1.51 / 1.79 / 1.20, 16->16 32x32 2.88 / 4.78 / 3.96, 32->32 16x16 1.95 / 2.80 /
/// 3.89, 64->64 8x8 2.41 / 2.91 / 4.60; backward (weights and input) 16->16 32x32 6.24 /
/// 9.31 / 8.42, 32->32 16x16 5.31 / 6.87 / 8.10. Weight gradients on maps of at most 8x8
/// took F(2x2) until the chunks held at least two tile blocks (cpu_context::
/// winograd_min_blocks; 2x2 tiles of 4x4 per image had made F(4x4)'s chunks short); since,
/// F(4x4) for both backward passes on 8x8 (AMD EPYC AVX-512, 2026-12-04, median of 3, ms,
/// fastest (F(4x4) data, F(2x2) weights) / F(2x2) / F(4x4)): 64->64 3.82 / 4.12 / 3.25,
/// 256->256 59.0 / 59.6 / 53.6; whole ResNet20 training 0.96-1.02x in 5 alternated runs,
/// VGG11 below. With AVX2 only (F(4x4) transforms 8 tiles wide, no vector F(2x2)), F(4x4)
/// everywhere, same machine and flags but `--benchmark_min_time=0.3`, one run, ms, F(4x4) /
/// direct: forward 3->16 1.79 / 1.87 (taken since the thin-layer rule below), 16->16 4.47 /
/// 8.01, 32->32 3.03 / 8.41, 64->64 2.52 / 9.69; backward 12.1 / 20.0, 7.39 / 18.5, 7.18 /
/// 20.0. VGG's 4x4 maps went to the direct engine on AVX2 until F(4x4) had AVX2 transforms
/// for W == 4 (same machine, 2026-12-05, one run, ms, before -> after): forward 256->512 36.9
/// -> 15.6, 512->512 76.4 -> 30.2, 128->128 4.78 -> 2.06; backward 64.9 -> 39.2, 135 -> 81.7,
/// 12.9 -> 4.64 (F(2x2) in every pass: 21.3 / 41.1 forward, 43.7 / 90.7 backward).
/// Fewer than 16 input channels (a stem on RGB; the thin layers of a narrow net, as growth
/// from width 0.25 or 0.5 trains): F(4x4) where the outputs have at most 16 channels, direct
/// with more (AMD EPYC AVX-512, 2026-12-04, median of 3, batch 128, 2 threads, ms, direct ->
/// F(4x4); backward without the stem's input gradient): 3->16 32x32 forward 0.76 -> 0.65,
/// backward 1.28 -> 0.84; 4->4 0.49 -> 0.38, 0.94 -> 0.65; 8->8 0.90 -> 0.60, 2.41 -> 1.38;
/// but VGG's stem 3->64 forward 3.19 -> 4.23, backward 5.48 -> 5.34 (direct kept). Until
/// then every layer of fewer than 16 input channels was direct.
template <class T>
winograd_tile winograd_fastest(const conv2d_desc& d, conv_pass pass) {
  if (!winograd_applicable(d)) return winograd_tile::none;
  if (d.in_channels < 16)
    return d.out_channels <= 16 && winograd::vectorised<winograd::f4x4, T>(d) ? winograd_tile::f4x4 : winograd_tile::none;
  // VGG's last groups: 2x2 maps take F(2x2) even with scalar transforms (widths below 8):
  // the direct engine computes a padded 3x3 block per image for 2x2 outputs (whole VGG11,
  // batch 128, 2 threads, AMD EPYC AVX-512: training 116-118 -> 147-161 img/s). 4x4 maps
  // take F(4x4) in every pass (forward 256->512 18.3 -> 12.7 ms, 512->512 33.7 -> 29.0 against
  // F(2x2), one tile per image); their weight gradients of at least 256 channels took F(2x2)
  // until the whole batch's weight gradient by elements (winograd::by_elements: per layer,
  // backward, ms, F(2x2) -> F(4x4), two alternated runs: 256->512 21.7 / 21.4 -> 15.5 / 15.7,
  // 512->512 39.9 / 39.8 -> 26.4 / 27.1; AMD EPYC AVX-512, 2026-12-07).
  const std::int64_t area = std::int64_t{d.in_height} * d.in_width;
  if (std::is_same_v<T, float> && winograd::f2x2::applicable(d) && area <= 4) return winograd_tile::f2x2;
  const bool f2 = winograd::vectorised<winograd::f2x2, T>(d);
  if (winograd::vectorised<winograd::f4x4, T>(d)) return winograd_tile::f4x4;
  if (f2 && (pass == conv_pass::forward || std::int64_t{d.in_height} * d.in_width <= 256)) return winograd_tile::f2x2;
  return winograd_tile::none;
}

/// Where cpu_conv_algorithm::fastest takes the nested stride-2 tiles (winograd_s2.hpp) for a
/// convolution with winograd_s2_applicable(d): the forward, where kernels<T>::transpose16 is the
/// vector one (float with AVX-512 or AVX2; the tiles' lane layout is transposed in and out; on
/// AVX2 since 2026-12-07, an AMD EPYC Zen 3, `netsplit_bench --benchmark_filter='BM_conv2d_forward/.*s:2/alg:0'
/// --benchmark_repetitions=5`, fastest of 5, three alternated rounds, ms, direct -> nested:
/// 32->64 16x16 2.83-3.04 -> 1.81-2.13, 16->32 32x32 2.62-3.15 -> 2.66-3.21). Measured (AMD
/// EPYC AVX-512, batch 128, 2 threads, 2026-12-07, `netsplit_bench
/// --benchmark_filter='BM_conv2d_(forward|backward)/.*s:2/alg:0' --benchmark_repetitions=3`,
/// medians, ms, direct -> nested): forward 16->32 32x32 1.36 / 1.35 -> 1.33 / 1.27, 32->64 16x16
/// 1.51 / 1.49 -> 1.06 / 1.06; whole ResNet20 training +3-10%, inference +7-12% (three
/// alternated pairs). Its backward passes are slower than the direct engine's one pass over
/// both gradients, so not taken: weights and input gradient nested 3.76 / 5.03 against 2.71 /
/// 3.04 (the weight gradient's products reduce over 16-48 tiles per call, where the direct
/// engine's kernel wants long runs); the input gradient nested with the weights direct 2.93 /
/// 3.25 against 2.76 / 3.02 (the two no longer share their packs). Only where the batch fills
/// the lanes: at least one group of 16 images per thread (fewer groups leave threads idle), and
/// no more than an eighth of the lanes empty (the last group's); at batch 1 every tile costs 16
/// (ResNet20's batch-1 latency, `netsplit_latency --model resnet20`, p50 688-702 us direct,
/// 1056-1088 us nested).
template <class T>
winograd_tile winograd_s2_fastest(const conv2d_desc& d, conv_pass pass, int threads) {
  const int L = winograd_s2::L;
  const bool filled = d.batch >= L * threads && 8 * d.batch >= 7 * round_up(d.batch, L);
  return kernels<T>::vector_transpose && pass == conv_pass::forward && filled ? winograd_tile::s2 : winograd_tile::none;
}

/// y = conv(x, w) for a convolution with winograd_applicable(d) and P::applicable(d), then
/// the epilogue ep where not null. Rot: w holds the weights of transposed(d), whose
/// transposed, rotated filters are d's (weight_tap; the input gradient's convolution).
template <class P, bool Rot = false, class T>
void winograd_forward(cpu_context& ctx, const conv2d_desc& d, const T* x, const T* w, T* y,
                      const conv_epilogue<T>* ep = nullptr) {
  using kern = kernels<T>;
  constexpr int E = P::elems;
  const int M = d.out_channels, C = d.in_channels, H = d.in_height, W = d.in_width;
  const i64 tiles = i64{H / P::m} * (W / P::m);
  const int mtiles = (M + kern::fwd_mr - 1) / kern::fwd_mr;
  const i64 mpad = i64{mtiles} * kern::fwd_mr;
  // (no structured binding: lambdas below capture these, which clang 14 rejects for bindings)
  const auto plan = winograd::plan_chunks(d, ctx.threads(), ctx.conv_chunk_bytes(), ctx.winograd_min_blocks(),
                                          C + mpad, sizeof(T), kern::fwd_qt, tiles, E);
  const int nb = plan.images;
  const i64 tpad = plan.tpad;

  T* u = ctx.scratch<T>(0, slot_weights, static_cast<std::size_t>(E * mpad * C));
  ctx.pool().parallel_for(mpad, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
    P::template weights<Rot>(w, M, C, kern::fwd_mr, mtiles, u, static_cast<int>(b), static_cast<int>(e));
  });
  const i64 in_img = i64{C} * H * W, out_img = i64{M} * H * W;
  const bool vector = winograd::vectorised<P, T>(d);
  const i64 all = d.batch * tiles;
  if (winograd::by_elements(E * mpad * C, E * (C + mpad) * all)) {
    // the whole batch's planes at once, products split over (element, row block): each
    // block of U read once (below, each chunk of images reads all of U again)
    const i64 tall = round_up(all, kern::fwd_step);
    const i64 ves = winograd::element_stride(C, tall), mes = winograd::element_stride(mpad, tall);
    T* v = ctx.scratch<T>(0, slot_src, static_cast<std::size_t>(E * ves));
    T* mm = ctx.scratch<T>(0, slot_grad, static_cast<std::size_t>(E * mes));
    i64* off = ctx.scratch<i64>(0, slot_offsets, static_cast<std::size_t>(C));
    for (int c = 0; c < C; ++c) off[c] = c * tall;
    ctx.pool().parallel_for_dynamic(d.batch, nb, [&](std::ptrdiff_t n0, std::ptrdiff_t n1, int t) {
      T* row = ctx.scratch<T>(t, slot_out, P::scratch(H, W, nb));
      const int count = static_cast<int>(n1 - n0);
      P::in(vector, x + n0 * in_img, C, H, W, count, v + n0 * tiles, tall, ves, row);
      if (n1 == d.batch)  // the planes past the batch's tiles, up to the kernel's step
        for (int el = 0; el < E; ++el)
          for (int c = 0; c < C; ++c) std::fill(v + el * ves + c * tall + all, v + el * ves + c * tall + tall, T(0));
    });
    ctx.pool().parallel_for(i64{E} * mtiles, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
      for (std::ptrdiff_t k = b; k < e; ++k) {
        const i64 el = k / mtiles, mt = k % mtiles;
        run_fwd(v + el * ves, off, C, u + (el * mtiles + mt) * C * kern::fwd_mr, 1,
                mm + el * mes + mt * kern::fwd_mr * tall, tall, tall);
      }
    });
    ctx.pool().parallel_for_dynamic(d.batch, nb, [&](std::ptrdiff_t n0, std::ptrdiff_t n1, int t) {
      T* row = ctx.scratch<T>(t, slot_out, P::scratch(H, W, nb));
      const int count = static_cast<int>(n1 - n0);
      const conv_epilogue<T> ept = ep ? ep->of_block(n0, count, M) : conv_epilogue<T>{};
      P::out(vector, mm + n0 * tiles, mes, tall, M, H, W, count, y + n0 * out_img, row, ep ? &ept : nullptr,
             ep && ep->residual ? ep->residual + n0 * out_img : nullptr);
    });
    return;
  }
  i64* off = ctx.scratch<i64>(0, slot_offsets, static_cast<std::size_t>(C));
  for (int c = 0; c < C; ++c) off[c] = c * tpad;
  const i64 ves = winograd::element_stride(C, tpad), mes = winograd::element_stride(mpad, tpad);
  // blocks of nb images taken in turn (statistics summed per block: the same whichever
  // thread runs it)
  ctx.pool().parallel_for_dynamic(d.batch, nb, [&](std::ptrdiff_t n0, std::ptrdiff_t n1, int t) {
    T* v = ctx.scratch<T>(t, slot_src, static_cast<std::size_t>(E * ves));
    T* mm = ctx.scratch<T>(t, slot_grad, static_cast<std::size_t>(E * mes));
    T* row = ctx.scratch<T>(t, slot_out, P::scratch(H, W, nb));
    const int count = static_cast<int>(n1 - n0);
    const conv_epilogue<T> ept = ep ? ep->of_block(n0, count, M) : conv_epilogue<T>{};
    const i64 used = count * tiles, qr = round_up(used, kern::fwd_step);
    P::in(vector, x + n0 * in_img, C, H, W, count, v, tpad, ves, row);
    for (int el = 0; el < E; ++el) {
      T* ve = v + el * ves;
      for (int c = 0; c < C; ++c) std::fill(ve + c * tpad + used, ve + c * tpad + qr, T(0));
      run_fwd(ve, off, C, u + i64{el} * mtiles * C * kern::fwd_mr, mtiles, mm + el * mes, tpad, qr);
    }
    P::out(vector, mm, mes, tpad, M, H, W, count, y + n0 * out_img, row, ep ? &ept : nullptr,
           ep && ep->residual ? ep->residual + n0 * out_img : nullptr);
  });
}

/// Where winograd_backward_weights takes the packed form below: at least 32 input and output
/// channels where kern::transpose16 transposes in registers (AVX-512: 16 x 16 blocks). With
/// the scalar transposes of before, the threshold was 128, measured (AMD EPYC
/// AVX-512, batch 128, 2 threads, `netsplit_bench --benchmark_filter='conv2d_backward'`, ms,
/// backward (data and weights) with wgrad_tile -> packed): 128->256 8x8 23.7 -> 21.8, 256->256
/// 8x8 44.5 -> 42.7, 256->512 4x4 35.2 -> 30.3, 512->512 4x4 66.5 -> 56.8, 512->512 2x2 30.9 ->
/// 26.2, 128->128 4x4 4.78 -> 4.46; but ResNet's 64->64 8x8 2.85 -> 2.99, 32->32 3.17 -> 3.23,
/// 16->16 3.77 -> 5.17. With the vector transposes (2026-12-06, the same machine kind, two
/// alternated rounds of medians of 3): 64->64 8x8 2.83 / 2.57 -> 2.54 / 2.31, 32->32 16x16
/// 2.53 / 2.40 -> 2.27 / 2.20, VGG's 64->128 16x16 13.2 / 14.4 -> 12.1 / 11.9, but 16->16 32x32
/// 3.13 / 3.04 -> 3.37 / 3.26 (at 16 channels the transposes still cost more than they save).
/// AVX2 transposes in registers too, as four 8 x 8 blocks (until 2026-12-07 it took the scalar
/// loop and the threshold 128); measured on an AMD EPYC with AVX2 only (Zen 3, 512 KiB L2,
/// 2 cores; `netsplit_bench --benchmark_filter='BM_conv2d_backward/cin:(16|32|64).*s:1/alg:0'
/// --benchmark_repetitions=5`, fastest of 5, three alternated rounds, ms, threshold 128 -> 32
/// -> 16): 64->64 8x8 3.42-3.77 -> 3.07-3.19 -> 2.91-3.14, 32->32 16x16 3.68-3.99 -> 3.32-3.36
/// -> 3.44-3.77, 16->16 32x32 4.69-4.81 (128 and 32 alike) -> 4.69-4.99: 32 here too.
/// Where kern::transpose16 is the scalar loop (double), the threshold stays 128.
template <class T>
bool packed_weight_gradient(const conv2d_desc& d) {
  const int least = kernels<T>::vector_transpose ? 32 : 128;
  return d.in_channels >= least && d.out_channels >= least;
}

/// out[r][c] (= or +=, Acc) sum over q < K of a[q][r] * vt[off[q] + c], c < ldp (a multiple of
/// fwd_step): fwd_tile's blocks, then a narrower last one.
template <bool Acc, class T>
void products(const T* vt, const i64* off, i64 K, const T* a, T* out, i64 ldp) {
  using kern = kernels<T>;
  i64 c0 = 0;
  for (; c0 + kern::fwd_qt <= ldp; c0 += kern::fwd_qt) kern::template fwd_tile<Acc>(vt + c0, off, K, a, out + c0, ldp);
  if (c0 < ldp) kern::template fwd_tail<Acc>(vt + c0, off, K, a, out + c0, ldp, ldp - c0);
}

/// The frame of both weight-gradient forms below: rows of dM padded to `rows` (zero past M),
/// the batch in chunks of the plan's images and the chunks in groups (for_weight_gradient_groups),
/// each chunk's V and dM transformed (elements `ves` and `des` apart, rows of plan.tpad), then
/// chunk(t, v, ves, dm, des, K, first, part) on thread t: K the chunk's tiles (the body may
/// overwrite the planes past them), first whether it is its group's first chunk (the body also
/// sets up thread t's own scratch there), part the group's partial dU ([e][rows][ld], in
/// slot_dw of thread 0; not zeroed: the first chunk writes it); then finish_weight_gradient.
template <class P, class T, class Chunk>
void weight_gradient_frame(cpu_context& ctx, const conv2d_desc& d, const T* x, const T* dy, T* dw, i64 rows, i64 ld,
                           const winograd::chunk_plan& plan, Chunk&& chunk) {
  constexpr int E = P::elems;
  const int M = d.out_channels, C = d.in_channels, H = d.in_height, W = d.in_width, nb = plan.images;
  const i64 tiles = i64{H / P::m} * (W / P::m), tpad = plan.tpad;
  const bool vector = winograd::vectorised<P, T>(d);
  const i64 in_img = i64{C} * H * W, out_img = i64{M} * H * W;
  const i64 ves = winograd::element_stride(C, tpad), des = winograd::element_stride(rows, tpad);
  const i64 per = E * rows * ld;
  const auto partials = for_weight_gradient_groups<T>(ctx, d.batch, nb, per, [&](int t, i64 n0, int count, bool first,
                                                                                 T* part) {
    T* v = ctx.scratch<T>(t, slot_src, static_cast<std::size_t>(E * ves));
    T* dm = ctx.scratch<T>(t, slot_grad, static_cast<std::size_t>(E * des));
    T* row = ctx.scratch<T>(t, slot_out, P::scratch(H, W, nb));
    if (first)
      for (int el = 0; el < E; ++el)  // gradient rows past M stay zero
        std::fill(dm + el * des + M * tpad, dm + el * des + rows * tpad, T(0));
    P::in(vector, x + n0 * in_img, C, H, W, count, v, tpad, ves, row);
    P::out_grad(vector, dy + n0 * out_img, M, H, W, count, dm, des, tpad);
    chunk(t, v, ves, dm, des, count * tiles, first, part);
  });
  finish_weight_gradient<P>(ctx, partials.groups, [&](int i) { return partials.parts + i * per; }, rows, ld, M, C,
                            dw);
}

/// winograd_backward_weights_packed (below) where winograd::by_elements: the whole batch's V
/// and dM transformed at once (chunks of nb images), then dU[e] per (element, row block) over
/// all the batch's tiles, written once (per chunk of images, each thread's partial dU was read
/// and written again, and the partials summed at the end). rows, ldp, ldv as the caller's.
template <class P, class T>
void winograd_backward_weights_by_elements(cpu_context& ctx, const conv2d_desc& d, const T* x, const T* dy, T* dw,
                                           int nb, i64 rows, i64 ldp, i64 ldv) {
  using kern = kernels<T>;
  constexpr int E = P::elems, mr = kern::fwd_mr;
  const int M = d.out_channels, C = d.in_channels, H = d.in_height, W = d.in_width;
  const int mtiles = static_cast<int>(rows / mr);
  const i64 tiles = i64{H / P::m} * (W / P::m), all = d.batch * tiles;
  const i64 tall = round_up(all, 16);  // transposed in blocks of 16 tiles
  const bool vector = winograd::vectorised<P, T>(d);
  const i64 in_img = i64{C} * H * W, out_img = i64{M} * H * W;
  const i64 ves = winograd::element_stride(C, tall), des = winograd::element_stride(rows, tall);
  T* v = ctx.scratch<T>(0, slot_src, static_cast<std::size_t>(E * ves));
  T* dm = ctx.scratch<T>(0, slot_grad, static_cast<std::size_t>(E * des));
  ctx.pool().parallel_for_dynamic(d.batch, nb, [&](std::ptrdiff_t n0, std::ptrdiff_t n1, int t) {
    T* row = ctx.scratch<T>(t, slot_out, P::scratch(H, W, nb));
    const int count = static_cast<int>(n1 - n0);
    P::in(vector, x + n0 * in_img, C, H, W, count, v + n0 * tiles, tall, ves, row);
    P::out_grad(vector, dy + n0 * out_img, M, H, W, count, dm + n0 * tiles, des, tall);
    for (int el = 0; el < E; ++el)  // gradient rows past M: zero
      for (i64 m = M; m < rows; ++m) std::fill_n(dm + el * des + m * tall + n0 * tiles, count * tiles, T(0));
  });
  i64* off = ctx.scratch<i64>(0, slot_offsets, static_cast<std::size_t>(tall));
  for (i64 q = 0; q < tall; ++q) off[q] = q * ldv;
  T* du = ctx.scratch<T>(0, slot_dw, static_cast<std::size_t>(E * rows * ldp));
  ctx.pool().parallel_for(i64{E} * mtiles, [&](std::ptrdiff_t b, std::ptrdiff_t e, int t) {
    T* apack = ctx.scratch<T>(t, slot_packed, static_cast<std::size_t>(tall * mr + tall * ldv));
    T* vt = apack + tall * mr;
    for (i64 q = 0; q < tall; ++q) std::fill(vt + q * ldv + C, vt + q * ldv + ldp, T(0));  // columns past C
    for (std::ptrdiff_t k = b; k < e; ++k) {
      const int el = static_cast<int>(k / mtiles), mt = static_cast<int>(k % mtiles);
      if (k == b || mt == 0)  // vt[q][c] = V[e][c][q], once per element
        for (i64 q = 0; q < tall; q += 16)
          for (int c0 = 0; c0 < C; c0 += 16)
            kern::transpose16(v + el * ves + i64{c0} * tall + q, tall, std::min(16, C - c0), vt + q * ldv + c0, ldv);
      for (i64 q = 0; q < tall; q += 16)  // apack[q][r] = dM[e][mt * mr + r][q]
        kern::transpose16(dm + el * des + i64{mt} * mr * tall + q, tall, mr, apack + q * mr, mr);
      products<false>(vt, off, all, apack, du + (el * rows + i64{mt} * mr) * ldp, ldp);
    }
  });
  ctx.pool().parallel_for(M, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
    P::weight_grad(du + b * ldp, rows, ldp, static_cast<int>(e - b), C, dw + b * i64{C} * 9);
  });
}

/// winograd_backward_weights as a forward product: dU[e] (rows m, columns c) = sum over the
/// chunk's tiles t of dM[e][m][t] V[e][c][t], computed by fwd_tile on dM packed per block of
/// fwd_mr rows ([t][r]) and V transposed ([t][c]), accumulated into the thread's partial dU.
/// Its micro-kernel runs at fwd_tile's rate (wgrad_tile's, vectorised along the tiles, runs at
/// about half), for a transpose of both operands per chunk: the better trade for many channels.
template <class P, class T>
void winograd_backward_weights_packed(cpu_context& ctx, const conv2d_desc& d, const T* x, const T* dy, T* dw) {
  using kern = kernels<T>;
  constexpr int E = P::elems, mr = kern::fwd_mr;
  const int M = d.out_channels, C = d.in_channels;
  const i64 tiles = i64{d.in_height / P::m} * (d.in_width / P::m);
  const int mtiles = (M + mr - 1) / mr;
  const i64 rows = i64{mtiles} * mr, ldp = round_up(C, kern::fwd_step);
  const i64 ldv = ldp + 16;  // rows of V^T one line longer than ldp: no 4 KB strides at 512 channels
  const auto plan = winograd::plan_chunks(d, ctx.threads(), ctx.conv_chunk_bytes(), ctx.winograd_min_blocks(),
                                          C + rows, sizeof(T), round_up(std::max<i64>(kern::fwd_qt, 16), 16), tiles, E);
  const i64 all = d.batch * tiles;
  if (winograd::by_elements(E * rows * ldp, E * (C + rows) * all))
    return winograd_backward_weights_by_elements<P>(ctx, d, x, dy, dw, plan.images, rows, ldp, ldv);
  const i64 tpad = plan.tpad;
  i64* off = ctx.scratch<i64>(0, slot_offsets, static_cast<std::size_t>(tpad));
  for (i64 q = 0; q < tpad; ++q) off[q] = q * ldv;
  weight_gradient_frame<P>(ctx, d, x, dy, dw, rows, ldp, plan,
                           [&](int t, const T* v, i64 ves, const T* dm, i64 des, i64 K, bool first, T* part) {
    T* apack = ctx.scratch<T>(t, slot_packed, static_cast<std::size_t>(rows * tpad + tpad * ldv));
    T* vt = apack + rows * tpad;
    if (first)  // columns past C
      for (i64 q = 0; q < tpad; ++q) std::fill(vt + q * ldv + C, vt + q * ldv + ldp, T(0));
    const i64 kq = round_up(K, 16);  // transposed in blocks of 16 tiles (tpad, a multiple of 16, >= kq)
    for (int el = 0; el < E; ++el) {
      const T* ve = v + el * ves;
      const T* ge = dm + el * des;
      for (i64 q = 0; q < kq; q += 16) {
        for (int mt = 0; mt < mtiles; ++mt)  // apack[mt][q][r] = dM[e][mt * mr + r][q]
          kern::transpose16(ge + i64{mt} * mr * tpad + q, tpad, mr, apack + (i64{mt} * kq + q) * mr, mr);
        for (int c0 = 0; c0 < C; c0 += 16)  // vt[q][c] = V[e][c][q]
          kern::transpose16(ve + i64{c0} * tpad + q, tpad, std::min(16, C - c0), vt + q * ldv + c0, ldv);
      }
      T* pe = part + el * rows * ldp;
      for (int mt = 0; mt < mtiles; ++mt) {
        const T* a = apack + i64{mt} * kq * mr;
        T* out = pe + i64{mt} * mr * ldp;
        if (first)
          products<false>(vt, off, K, a, out, ldp);
        else
          products<true>(vt, off, K, a, out, ldp);
      }
    }
  });
}

/// dw = dL/dw (overwritten) of a convolution with winograd_applicable(d) and P::applicable(d):
/// dU[e] = sum over tiles of dM[e] V[e]^T (the direct engine's weight-gradient micro-kernel;
/// the packed form above where packed_weight_gradient<T>(d)), then dw = G^T dU G. The partial
/// sums of weight_gradient_frame's groups are added in group order.
template <class P, class T>
void winograd_backward_weights(cpu_context& ctx, const conv2d_desc& d, const T* x, const T* dy, T* dw) {
  if (packed_weight_gradient<T>(d)) return winograd_backward_weights_packed<P>(ctx, d, x, dy, dw);
  using kern = kernels<T>;
  constexpr int E = P::elems;
  const int M = d.out_channels, C = d.in_channels;
  const i64 tiles = i64{d.in_height / P::m} * (d.in_width / P::m);
  const int mtiles = (M + kern::wg_mr - 1) / kern::wg_mr;
  const i64 rows = i64{mtiles} * kern::wg_mr, cpad = round_up(C, kern::wg_kr);
  const auto plan = winograd::plan_chunks(d, ctx.threads(), ctx.conv_chunk_bytes(), ctx.winograd_min_blocks(),
                                          C + rows, sizeof(T),
                                          std::max<i64>(kern::fwd_qt, kern::wg_step), tiles, E);
  const i64 tpad = plan.tpad;
  i64* off = ctx.scratch<i64>(0, slot_offsets, static_cast<std::size_t>(cpad));
  for (i64 c = 0; c < cpad; ++c) off[c] = (c < C ? c : 0) * tpad;  // padding columns reread row 0
  weight_gradient_frame<P>(ctx, d, x, dy, dw, rows, cpad, plan,
                           [&](int, T* v, i64 ves, T* dm, i64 des, i64 q_used, bool first, T* part) {
    if (first) std::fill(part, part + E * rows * cpad, T(0));
    const i64 qend = round_up(q_used, kern::wg_step);
    for (int el = 0; el < E; ++el) {
      T* ve = v + el * ves;  // its planes past the chunk's tiles, up to the kernel's step: zero
      T* ge = dm + el * des;
      for (int c = 0; c < C; ++c) std::fill(ve + c * tpad + q_used, ve + c * tpad + qend, T(0));
      for (int m = 0; m < M; ++m) std::fill(ge + m * tpad + q_used, ge + m * tpad + qend, T(0));
      for (int mt = 0; mt < mtiles; ++mt)
        for (i64 ct = 0; ct < cpad; ct += kern::wg_kr)
          kern::wgrad_tile(ge + mt * kern::wg_mr * tpad, tpad, ve, off + ct, 0, qend,
                           part + (el * rows + mt * kern::wg_mr) * cpad + ct, cpad);
    }
  });
}

/// y = conv(x, w) computed as `tile` says (none: the direct engine), then the epilogue ep
/// where not null (per chunk or plane, while the outputs are in cache).
template <class T>
void forward_with(winograd_tile tile, cpu_context& ctx, const conv2d_desc& d, const T* x, const T* w, T* y,
                  const conv_epilogue<T>* ep = nullptr) {
  switch (tile) {
    case winograd_tile::f4x4: return winograd_forward<winograd::f4x4>(ctx, d, x, w, y, ep);
    case winograd_tile::f2x2: return winograd_forward<winograd::f2x2>(ctx, d, x, w, y, ep);
    case winograd_tile::s2: return winograd_s2::forward(ctx, d, x, w, y, ep);
    default: forward(ctx, d, x, w, y, ep);
  }
}

/// The input gradient's convolution: d with the channel counts swapped.
inline conv2d_desc transposed(const conv2d_desc& d) {
  conv2d_desc t = d;
  std::swap(t.in_channels, t.out_channels);
  return t;
}

/// dx = dL/dx of a convolution with winograd_applicable(d), from dy: the "same" 3x3
/// convolution of dy with the transposed, rotated weights, computed as `tile` says; then the
/// epilogue ep where not null (a residual: the gradient of a block's shortcut added). The
/// Winograd tiles transform those filters as they read w (weight_tap<true>); the direct
/// engine takes a transposed, rotated copy.
template <class T>
void winograd_backward_data(cpu_context& ctx, const conv2d_desc& d, winograd_tile tile, const T* w, const T* dy, T* dx,
                            const conv_epilogue<T>* ep = nullptr) {
  switch (tile) {
    case winograd_tile::f4x4: return winograd_forward<winograd::f4x4, true>(ctx, transposed(d), dy, w, dx, ep);
    case winograd_tile::f2x2: return winograd_forward<winograd::f2x2, true>(ctx, transposed(d), dy, w, dx, ep);
    case winograd_tile::s2: return winograd_s2::backward_data(ctx, d, w, dy, dx, ep);
    default: break;
  }
  T* wt = ctx.scratch<T>(0, slot_rotated, static_cast<std::size_t>(d.weight_count()));
  ctx.pool().parallel_for(d.in_channels, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
    winograd::transpose_rotate(w, d.out_channels, d.in_channels, wt, static_cast<int>(b), static_cast<int>(e));
  });
  forward(ctx, transposed(d), dy, wt, dx, ep);
}

}  // namespace netsplit::detail::cpu_conv
