// netsplit/backend/cpu/winograd_s2.hpp — 3x3 convolutions of stride 2 (padding 1) by nested
// Winograd, 16 images side by side.
// Along one dimension, output i of a stride-2 3-tap filter reads x[2i-1], x[2i], x[2i+1]: the
// odd-offset taps w0, w2 make a 2-tap correlation of the odd input columns, the middle tap w1
// a 1-tap one of the even columns. Four outputs at a time: the 2-tap part by F(4,2) (5
// products for 8 multiply-adds), the 1-tap part as it is (4): 9 transformed values per
// dimension instead of 12 products, 81 per 4x4 output tile instead of 144 (0.56 of the
// direct form's multiply-adds). Per dimension (window u[0..8] = x[8t-1 .. 8t+7]):
//   V = [B^T (u0, u2, u4, u6, u8), u1, u3, u5, u7],  U = [G (w0, w2), w1, w1, w1, w1],
//   y[4t+i] = (A^T (U V)[0..4])[i] + (U V)[5+i],
// with F(4,2) on the points 0, 1, -1, 1/2, inf (B^T's rows scaled to integers, G's by the
// inverse): B^T = [[1,-2,-1,2,0], [0,-1,1,2,0], [0,1,-3,2,0], [0,-1,0,1,0], [0,1,-2,-1,2]],
// G = [[1,0], [1/2,1/2], [-1/6,1/6], [-8/3,-4/3], [0,1/2]],
// A^T = [[1,1,1,1,0], [0,1,-1,1/2,0], [0,1,1,1/4,0], [0,1,-1,1/8,1]].
// In two dimensions the element e = 9a + k is row value a, column value k. The input gradient
// is the same scheme on dy with the filters rotated (weight_tap<true>): from dy[4t .. 4t+4]
// (5 values; the 1-tap part reads the first 4), dx[8t+2i+1] = (A^T (U V)[0..4])[i] and
// dx[8t+2i] = (U V)[5+i]. The weight gradient is dU[e] = sum over tiles of dM[e] V[e] with
// dM = [A dy, dy] per dimension (the output transform's adjoint), then dw = T^T dU T with T
// the filter transform above (T: 9 x 3).
// Layout: the tiles of one transformed plane are (tile position, image) with the 16 images of
// a group in the lanes of one vector, so every transform is whole-vector arithmetic with no
// shuffles, at any map width; the input rows a tile row reads are transposed to that layout
// once per group (kernels<T>::transpose16) and the outputs transposed back. Chunks of up to
// three tile positions (48 columns: the product micro-kernel's width) keep the transformed
// planes in L2 (cpu_context::conv_chunk_bytes).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "netsplit/backend/cpu/conv_kernels.hpp"
#include "netsplit/backend/cpu/winograd_weights.hpp"

namespace netsplit::detail::cpu_conv {

/// True for the convolutions this file computes: 3x3, stride 2, padding 1, input sides
/// multiples of 8 (output sides multiples of 4).
inline bool winograd_s2_applicable(const conv2d_desc& d) {
  return d.kernel == 3 && d.stride == 2 && d.pad == 1 && d.in_height % 8 == 0 && d.in_width % 8 == 0 &&
         d.in_height >= 8 && d.in_width >= 8;
}

namespace winograd_s2 {

constexpr int L = 16;  // images side by side
constexpr int E = 81;  // transformed values per tile

template <class T>
struct lanes_of;
template <>
struct lanes_of<float> {
  typedef float type __attribute__((vector_size(L * sizeof(float))));
};
template <>
struct lanes_of<double> {
  typedef double type __attribute__((vector_size(L * sizeof(double))));
};
/// One value of 16 images.
template <class T>
using vec = typename lanes_of<T>::type;

// load fills a reference rather than returning: a returned 64-byte vector changes the ABI
// where AVX-512 is not enabled (GCC's -Wpsabi in the AVX2 build).
template <class T>
inline void load(vec<T>& v, const T* p) {
  std::memcpy(&v, p, sizeof v);
}
template <class T>
inline void store(T* p, const vec<T>& v) {
  std::memcpy(p, &v, sizeof v);
}

/// t = B^T (d0, d1, d2, d3, d4) (B^T in the file comment).
template <class V>
inline void bt5(const V& d0, const V& d1, const V& d2, const V& d3, const V& d4, V* t) {
  t[0] = (d0 - d2) + (d3 - d1) * 2;
  t[1] = (d2 - d1) + d3 * 2;
  t[2] = (d1 - d2) + (d3 - d2) * 2;
  t[3] = d3 - d1;
  t[4] = (d1 - d3) + (d4 - d2) * 2;
}
/// y = A^T (m0, .., m4).
template <class V>
inline void at5(const V& m0, const V& m1, const V& m2, const V& m3, const V& m4, V* y) {
  const V p = m1 + m2, q = m1 - m2;
  y[0] = m0 + p + m3;
  y[1] = q + m3 * 0.5;
  y[2] = p + m3 * 0.25;
  y[3] = q + m3 * 0.125 + m4;
}
/// s = A (g0, .., g3), A = (A^T)^T: the gradient of at5's inputs from its outputs' (F(4,2)'s dM).
template <class V>
inline void a4(const V& g0, const V& g1, const V& g2, const V& g3, V* s) {
  s[0] = g0;
  s[1] = (g0 + g2) + (g1 + g3);
  s[2] = (g0 + g2) - (g1 + g3);
  s[3] = g0 + g1 * 0.5 + g2 * 0.25 + g3 * 0.125;
  s[4] = g3;
}

/// The filter transform T (9 x 3) in double: T[s][0], T[s][2] = G's rows for s < 5, T[5+i][1] = 1.
inline constexpr double tf[9][3] = {{1, 0, 0},           {0.5, 0, 0.5},   {-1.0 / 6, 0, 1.0 / 6},
                                    {-8.0 / 3, 0, -4.0 / 3}, {0, 0, 0.5}, {0, 1, 0},
                                    {0, 1, 0},           {0, 1, 0},       {0, 1, 0}};

/// The filter transform as transform_weights_packed's policy (winograd_weights.hpp):
/// out[9a + k][r] = (T g T^T)[a][k] for the filters of rows r in [r0, r1), in double.
struct g9x3 {
  static constexpr int elems = E, stage = 16;
  template <class T>
  using acc = double;
  template <int S>
  static void apply(const double (*g)[S], double (*out)[S], int r0, int r1) {
    double h[3][9][S];  // h[ky][k] = (g T^T)[ky][k]
    for (int ky = 0; ky < 3; ++ky)
      for (int k = 0; k < 9; ++k)
        for (int r = r0; r < r1; ++r)
          h[ky][k][r] = tf[k][0] * g[3 * ky][r] + tf[k][1] * g[3 * ky + 1][r] + tf[k][2] * g[3 * ky + 2][r];
    for (int a = 0; a < 9; ++a)
      for (int k = 0; k < 9; ++k)
        for (int r = r0; r < r1; ++r) out[9 * a + k][r] = tf[a][0] * h[0][k][r] + tf[a][1] * h[1][k][r] + tf[a][2] * h[2][k][r];
  }
};

/// dw[m][c] = T^T dU[m][c] T (3x3) from dU[e][m][c] at du[(e * rows + m) * ld + c], in double;
/// per output channel, 16 input channels at a time (loops over them, which the compiler vectorises).
template <class T>
void weight_grad_from(const T* du, i64 rows, i64 ld, int M, int C, T* dw) {
  constexpr int B = 16;
  for (int m = 0; m < M; ++m)
    for (int c0 = 0; c0 < C; c0 += B) {
      const int n = std::min(B, C - c0);
      double t[3][9][B] = {};  // (T^T dU)[ky][k]
      for (int a = 0; a < 9; ++a)
        for (int k = 0; k < 9; ++k) {
          const T* src = du + ((9 * a + k) * rows + m) * ld + c0;
          for (int ky = 0; ky < 3; ++ky) {
            const double f = tf[a][ky];
            if (f != 0)
              for (int j = 0; j < n; ++j) t[ky][k][j] += f * static_cast<double>(src[j]);
          }
        }
      for (int ky = 0; ky < 3; ++ky)
        for (int kx = 0; kx < 3; ++kx) {
          double o[B] = {};
          for (int k = 0; k < 9; ++k) {
            const double f = tf[k][kx];
            if (f != 0)
              for (int j = 0; j < n; ++j) o[j] += f * t[ky][k][j];
          }
          for (int j = 0; j < n; ++j) dw[(i64{m} * C + c0 + j) * 9 + 3 * ky + kx] = static_cast<T>(o[j]);
        }
    }
}

/// Rows and tiles of one pass over a group of images: `rows_in` input rows per tile row,
/// `step_in` apart, the first at `off_in` (zero outside the map); `rows_out` output rows per
/// tile row. Lane rows hold a zero column on each side: width wl = in_w + 2.
struct pass {
  int in_h, in_w, out_h, out_w, th, tw, rows_in, step_in, off_in, rows_out;
  i64 wl;
};
/// The forward: tile row ty reads input rows 8ty-1 .. 8ty+7 and writes output rows 4ty .. 4ty+3.
inline pass forward_pass(const conv2d_desc& d) {
  const int H = d.in_height, W = d.in_width;
  return {H, W, H / 2, W / 2, H / 8, W / 8, 9, 8, -1, 4, i64{W} + 2};
}
/// The input gradient: tile row ty reads dy rows 4ty .. 4ty+4 and writes dx rows 8ty .. 8ty+7.
inline pass data_pass(const conv2d_desc& d) {
  const int H = d.in_height, W = d.in_width;
  return {H / 2, W / 2, H, W, H / 8, W / 8, 5, 4, 0, 8, i64{W / 2} + 2};
}
/// The weight gradient's output-gradient tiles: dy rows 4ty .. 4ty+3.
inline pass gradient_pass(const conv2d_desc& d) {
  const int H = d.in_height, W = d.in_width;
  return {H / 2, W / 2, H / 2, W / 2, H / 8, W / 8, 4, 4, 0, 4, i64{W / 2} + 2};
}

/// lr[((c * rows_in + i) * wl + 1 + col) * L + l] = src[l * img + (c * in_h + row) * in_w + col]
/// with row = off_in + ty * step_in + i: the rows tile row ty reads, of C channels of n images
/// (lanes l >= n, rows outside the map and the side columns zero). tmp: 2 * L * L values.
template <class T>
void gather_rows(const pass& p, int C, int n, const T* src, i64 img, int ty, T* lr, T* tmp) {
  using kern = kernels<T>;
  for (int c = 0; c < C; ++c)
    for (int i = 0; i < p.rows_in; ++i) {
      T* dst = lr + (i64{c} * p.rows_in + i) * p.wl * L;
      const int row = p.off_in + ty * p.step_in + i;
      if (row < 0 || row >= p.in_h || n < L) std::fill(dst, dst + p.wl * L, T(0));
      else {
        std::fill(dst, dst + L, T(0));
        std::fill(dst + (p.wl - 1) * L, dst + p.wl * L, T(0));
      }
      if (row < 0 || row >= p.in_h) continue;
      const T* s = src + (i64{c} * p.in_h + row) * p.in_w;
      for (int col0 = 0; col0 < p.in_w; col0 += 16) {
        const int cnt = std::min(16, p.in_w - col0);
        if (cnt == 16) {
          kern::transpose16(s + col0, img, n, dst + (1 + col0) * L, L);
          continue;
        }
        T* rows = tmp;  // n rows of 16, the columns past cnt zero
        for (int l = 0; l < n; ++l) {
          std::copy(s + l * img + col0, s + l * img + col0 + cnt, rows + l * 16);
          std::fill(rows + l * 16 + cnt, rows + l * 16 + 16, T(0));
        }
        T* lanes = tmp + L * L;  // transpose16 writes lanes [0, n) only: the rest zero
        if (n < L) std::fill(lanes, lanes + L * L, T(0));
        kern::transpose16(rows, 16, n, lanes, L);
        std::copy(lanes, lanes + cnt * L, dst + (1 + col0) * L);
      }
    }
}

/// dst[l * img + q] = ob[q * L + l] for q < count, l < n (the images' outputs back to their
/// planes). tmp: L * L values.
template <class T>
void scatter_rows(const T* ob, i64 count, int n, T* dst, i64 img, T* tmp) {
  using kern = kernels<T>;
  for (i64 q0 = 0; q0 < count; q0 += 16) {
    const int cnt = static_cast<int>(std::min<i64>(16, count - q0));
    if (n == L && cnt == 16) {
      kern::transpose16(ob + q0 * L, L, 16, dst + q0, img);
      continue;
    }
    kern::transpose16(ob + q0 * L, L, cnt, tmp, 16);
    for (int l = 0; l < n; ++l) std::copy(tmp + l * 16, tmp + l * 16 + cnt, dst + l * img + q0);
  }
}

// ---- the transforms of one tile position (tx) of one channel, on 16 images ----------------
/// Forward input: V[e] at v + e * ves from the channel's 9 lane rows.
template <class T>
void input_forward(const T* lr, i64 wl, int tx, T* v, i64 ves) {
  using V = vec<T>;
  V r[9][9];
  for (int i = 0; i < 9; ++i) {
    const T* row = lr + (i * wl + 8 * tx) * L;  // window column j at lane column 8tx + j
    V d[9];
    for (int j = 0; j < 9; ++j) load(d[j], row + j * L);
    bt5(d[0], d[2], d[4], d[6], d[8], r[i]);
    for (int j = 0; j < 4; ++j) r[i][5 + j] = d[2 * j + 1];
  }
  for (int k = 0; k < 9; ++k) {
    V e[5];
    bt5(r[0][k], r[2][k], r[4][k], r[6][k], r[8][k], e);
    for (int a = 0; a < 5; ++a) store(v + (9 * a + k) * ves, e[a]);
    for (int a = 0; a < 4; ++a) store(v + (9 * (5 + a) + k) * ves, r[2 * a + 1][k]);
  }
}
/// The transforms of dy's tiles, whose windows are R consecutive values in each dimension from
/// column 4tx (lane rows from the channel's first, each with its zero column in front): per
/// dimension f(d, t) gives the first 5 values from the R values, the last 4 are d[0..3];
/// out[e] at out + e * es.
template <int R, class T, class F>
void transform_dy(const T* lr, i64 wl, int tx, T* out, i64 es, F f) {
  using V = vec<T>;
  V r[R][9];
  for (int i = 0; i < R; ++i) {
    const T* row = lr + (i * wl + 4 * tx + 1) * L;
    V d[R];
    for (int j = 0; j < R; ++j) load(d[j], row + j * L);
    f(d, r[i]);
    for (int j = 0; j < 4; ++j) r[i][5 + j] = d[j];
  }
  for (int k = 0; k < 9; ++k) {
    V d[R], e[5];
    for (int i = 0; i < R; ++i) d[i] = r[i][k];
    f(d, e);
    for (int a = 0; a < 5; ++a) store(out + (9 * a + k) * es, e[a]);
    for (int a = 0; a < 4; ++a) store(out + (9 * (5 + a) + k) * es, r[a][k]);
  }
}
/// Input gradient's input: V[e] from the channel's 5 lane rows of dy (B^T on 5 values).
template <class T>
void input_data(const T* lr, i64 wl, int tx, T* v, i64 ves) {
  transform_dy<5>(lr, wl, tx, v, ves, [](const vec<T>* d, vec<T>* t) { bt5(d[0], d[1], d[2], d[3], d[4], t); });
}
/// Output gradient: dM[e] at dm + e * des from the channel's 4 lane rows of dy (A on 4 values).
template <class T>
void output_gradient(const T* lr, i64 wl, int tx, T* dm, i64 des) {
  transform_dy<4>(lr, wl, tx, dm, des, [](const vec<T>* d, vec<T>* t) { a4(d[0], d[1], d[2], d[3], t); });
}
/// Forward output: the 4x4 tile at output columns 4tx.. of the channel's 4 output lane rows
/// (ob, rows of out_w) from M[e] at mm + e * mes.
template <class T>
void output_forward(const T* mm, i64 mes, int tx, T* ob, int out_w) {
  using V = vec<T>;
  V s[9][4];
  for (int a = 0; a < 9; ++a) {
    V m[9];
    for (int k = 0; k < 9; ++k) load(m[k], mm + (9 * a + k) * mes);
    at5(m[0], m[1], m[2], m[3], m[4], s[a]);
    for (int j = 0; j < 4; ++j) s[a][j] += m[5 + j];
  }
  for (int j = 0; j < 4; ++j) {
    V y[4];
    at5(s[0][j], s[1][j], s[2][j], s[3][j], s[4][j], y);
    for (int i = 0; i < 4; ++i) store(ob + (i64{i} * out_w + 4 * tx + j) * L, y[i] + s[5 + i][j]);
  }
}
/// Input gradient's output: the 8x8 tile at dx columns 8tx.. of the channel's 8 lane rows.
template <class T>
void output_data(const T* mm, i64 mes, int tx, T* ob, int out_w) {
  using V = vec<T>;
  V s[9][8];
  for (int a = 0; a < 9; ++a) {
    V m[9], f[4];
    for (int k = 0; k < 9; ++k) load(m[k], mm + (9 * a + k) * mes);
    at5(m[0], m[1], m[2], m[3], m[4], f);
    for (int j = 0; j < 4; ++j) {
      s[a][2 * j] = m[5 + j];
      s[a][2 * j + 1] = f[j];
    }
  }
  for (int j = 0; j < 8; ++j) {
    V f[4];
    at5(s[0][j], s[1][j], s[2][j], s[3][j], s[4][j], f);
    for (int i = 0; i < 4; ++i) {
      store(ob + (i64{2 * i} * out_w + 8 * tx + j) * L, s[5 + i][j]);
      store(ob + (i64{2 * i + 1} * out_w + 8 * tx + j) * L, f[i]);
    }
  }
}

/// Tile positions per chunk: up to 3 (48 columns), fewer where the chunk's planes of `rows`
/// rows would not fit `budget` bytes; at most a tile row.
inline int positions_per_chunk(std::size_t budget, i64 rows, std::size_t elem_bytes, int tw) {
  const i64 per_position = E * rows * L * static_cast<i64>(elem_bytes);
  return static_cast<int>(std::clamp<i64>(static_cast<i64>(budget) / per_position, 1, std::min(3, tw)));
}

/// The forward and the input gradient: out = the pass's convolution of `in` (C channels) with
/// the transformed weights u (M rows, packed per element as transform_weights_packed writes
/// them), then the epilogue ep per group of images. In: input_forward or input_data; Out:
/// output_forward or output_data.
template <class T, class In, class Out>
void tile_pass(cpu_context& ctx, const pass& p, int batch, int C, int M, const T* in, const T* u, T* out,
               const conv_epilogue<T>* ep, In transform_in, Out transform_out) {
  using kern = kernels<T>;
  const int mtiles = (M + kern::fwd_mr - 1) / kern::fwd_mr;
  const i64 mpad = i64{mtiles} * kern::fwd_mr;
  const int np = positions_per_chunk(ctx.conv_chunk_bytes(), C + mpad, sizeof(T), p.tw);
  const i64 N = i64{np} * L;
  const i64 ves = C * N + 16, mes = mpad * N + 16;
  const i64 lr_size = i64{C} * p.rows_in * p.wl * L, ob_plane = i64{p.rows_out} * p.out_w * L;
  const i64 in_img = i64{C} * p.in_h * p.in_w, oplane = i64{p.out_h} * p.out_w, out_img = M * oplane;
  i64* off = ctx.scratch<i64>(0, slot_offsets, static_cast<std::size_t>(C));
  for (int c = 0; c < C; ++c) off[c] = c * N;
  const std::size_t scratch = static_cast<std::size_t>(lr_size + E * ves + E * mes + M * ob_plane + 2 * L * L);
  ctx.pool().parallel_for_dynamic(batch, L, [&](std::ptrdiff_t n0, std::ptrdiff_t n1, int t) {
    T* lr = ctx.scratch<T>(t, slot_src, scratch);
    T* v = lr + lr_size;
    T* mm = v + E * ves;
    T* ob = mm + E * mes;
    T* tmp = ob + M * ob_plane;
    const int n = static_cast<int>(n1 - n0);
    for (int ty = 0; ty < p.th; ++ty) {
      gather_rows(p, C, n, in + n0 * in_img, in_img, ty, lr, tmp);
      for (int tx0 = 0; tx0 < p.tw; tx0 += np) {
        const int k = std::min(np, p.tw - tx0);
        for (int pi = 0; pi < k; ++pi)
          for (int c = 0; c < C; ++c)
            transform_in(lr + i64{c} * p.rows_in * p.wl * L, p.wl, tx0 + pi, v + c * N + pi * L, ves);
        for (int e = 0; e < E; ++e)
          run_fwd(v + e * ves, off, C, u + i64{e} * mtiles * C * kern::fwd_mr, mtiles, mm + e * mes, N, k * L);
        for (int pi = 0; pi < k; ++pi)
          for (int m = 0; m < M; ++m) transform_out(mm + m * N + pi * L, mes, tx0 + pi, ob + m * ob_plane, p.out_w);
      }
      for (int m = 0; m < M; ++m)
        scatter_rows(ob + m * ob_plane, i64{p.rows_out} * p.out_w, n,
                     out + (n0 * M + m) * oplane + i64{ty} * p.rows_out * p.out_w, out_img, tmp);
    }
    if (ep) {
      const conv_epilogue<T> ept = ep->of_block(n0, n, M);
      apply_epilogue(ept, n, M, oplane, out + n0 * out_img, ep->residual ? ep->residual + n0 * out_img : nullptr);
    }
  });
}

/// y = conv(x, w) for a convolution with winograd_s2_applicable(d), then the epilogue ep where
/// not null (per group of 16 images).
template <class T>
void forward(cpu_context& ctx, const conv2d_desc& d, const T* x, const T* w, T* y, const conv_epilogue<T>* ep = nullptr) {
  using kern = kernels<T>;
  const int M = d.out_channels, C = d.in_channels;
  const int mtiles = (M + kern::fwd_mr - 1) / kern::fwd_mr;
  T* u = ctx.scratch<T>(0, slot_weights, static_cast<std::size_t>(E * i64{mtiles} * kern::fwd_mr * C));
  ctx.pool().parallel_for(i64{mtiles} * kern::fwd_mr, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
    transform_weights_packed<g9x3, false>(w, M, C, kern::fwd_mr, mtiles, u, static_cast<int>(b), static_cast<int>(e));
  });
  tile_pass(ctx, forward_pass(d), d.batch, C, M, x, u, y, ep, input_forward<T>, output_forward<T>);
}

/// dx = dL/dx from dy for a convolution with winograd_s2_applicable(d), then the epilogue ep
/// where not null (a residual: the gradient of a block's shortcut added).
template <class T>
void backward_data(cpu_context& ctx, const conv2d_desc& d, const T* w, const T* dy, T* dx,
                   const conv_epilogue<T>* ep = nullptr) {
  using kern = kernels<T>;
  const int M = d.in_channels, C = d.out_channels;  // the pass's outputs: dx's channels
  const int mtiles = (M + kern::fwd_mr - 1) / kern::fwd_mr;
  T* u = ctx.scratch<T>(0, slot_weights, static_cast<std::size_t>(E * i64{mtiles} * kern::fwd_mr * C));
  ctx.pool().parallel_for(i64{mtiles} * kern::fwd_mr, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
    transform_weights_packed<g9x3, true>(w, M, C, kern::fwd_mr, mtiles, u, static_cast<int>(b), static_cast<int>(e));
  });
  tile_pass(ctx, data_pass(d), d.batch, C, M, dy, u, dx, ep, input_data<T>, output_data<T>);
}

/// finish_weight_gradient's policy (winograd_weights.hpp): elements and dw from dU.
struct tile {
  static constexpr int elems = E;
  template <class T>
  static void weight_grad(const T* du, i64 rows, i64 ld, int M, int C, T* dw) {
    weight_grad_from(du, rows, ld, M, C, dw);
  }
};

/// dw = dL/dw (overwritten) of a convolution with winograd_s2_applicable(d): per thread, over
/// its images (parallel_for's fixed share) in groups of 16, dU[e] += dM[e] V[e]^T
/// (kernels<T>::wgrad_tile) for each chunk of tile positions; the partials summed in thread
/// order, then dw = T^T dU T (finish_weight_gradient).
template <class T>
void backward_weights(cpu_context& ctx, const conv2d_desc& d, const T* x, const T* dy, T* dw) {
  using kern = kernels<T>;
  const int M = d.out_channels, C = d.in_channels;
  const pass px = forward_pass(d), pg = gradient_pass(d);
  const int mtiles = (M + kern::wg_mr - 1) / kern::wg_mr;
  const i64 rows = i64{mtiles} * kern::wg_mr, cpad = round_up(C, kern::wg_kr);
  const int np = positions_per_chunk(ctx.conv_chunk_bytes(), C + rows, sizeof(T), px.tw);
  const i64 N = i64{np} * L;
  const i64 ves = C * N + 16, des = rows * N + 16;
  const i64 lx = i64{C} * px.rows_in * px.wl * L, lg = i64{M} * pg.rows_in * pg.wl * L;
  const i64 in_img = i64{C} * px.in_h * px.in_w, out_img = i64{M} * pg.in_h * pg.in_w;
  i64* off = ctx.scratch<i64>(0, slot_offsets, static_cast<std::size_t>(cpad));
  for (i64 c = 0; c < cpad; ++c) off[c] = (c < C ? c : 0) * N;  // padding columns reread row 0
  const std::size_t scratch = static_cast<std::size_t>(lx + lg + E * ves + E * des + 2 * L * L);
  const int used = std::min(d.batch, ctx.threads());
  ctx.pool().parallel_for(d.batch, [&](std::ptrdiff_t b, std::ptrdiff_t e, int t) {
    T* lrx = ctx.scratch<T>(t, slot_src, scratch);
    T* lrg = lrx + lx;
    T* v = lrg + lg;
    T* dm = v + E * ves;
    T* tmp = dm + E * des;
    T* part = ctx.scratch<T>(t, slot_dw, static_cast<std::size_t>(E * rows * cpad));
    std::fill(part, part + E * rows * cpad, T(0));
    for (int el = 0; el < E; ++el) std::fill(dm + el * des + M * N, dm + el * des + rows * N, T(0));  // rows past M
    for (std::ptrdiff_t n0 = b; n0 < e; n0 += L) {
      const int n = static_cast<int>(std::min<std::ptrdiff_t>(L, e - n0));
      for (int ty = 0; ty < px.th; ++ty) {
        gather_rows(px, C, n, x + n0 * in_img, in_img, ty, lrx, tmp);
        gather_rows(pg, M, n, dy + n0 * out_img, out_img, ty, lrg, tmp);
        for (int tx0 = 0; tx0 < px.tw; tx0 += np) {
          const int k = std::min(np, px.tw - tx0);
          for (int pi = 0; pi < k; ++pi) {
            for (int c = 0; c < C; ++c)
              input_forward(lrx + i64{c} * px.rows_in * px.wl * L, px.wl, tx0 + pi, v + c * N + pi * L, ves);
            for (int m = 0; m < M; ++m)
              output_gradient(lrg + i64{m} * pg.rows_in * pg.wl * L, pg.wl, tx0 + pi, dm + m * N + pi * L, des);
          }
          for (int el = 0; el < E; ++el)
            for (int mt = 0; mt < mtiles; ++mt)
              for (i64 ct = 0; ct < cpad; ct += kern::wg_kr)
                kern::wgrad_tile(dm + el * des + mt * kern::wg_mr * N, N, v + el * ves, off + ct, 0, k * L,
                                 part + (el * rows + mt * kern::wg_mr) * cpad + ct, cpad);
        }
      }
    }
  });
  finish_weight_gradient<tile>(ctx, used, [&](int t) { return ctx.scratch<T>(t, slot_dw, 0); }, rows, cpad, M, C, dw);
}

}  // namespace winograd_s2
}  // namespace netsplit::detail::cpu_conv
