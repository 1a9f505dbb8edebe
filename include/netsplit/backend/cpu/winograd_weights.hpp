// netsplit/backend/cpu/winograd_weights.hpp — the weight transform of the Winograd tiles
// (winograd.hpp's F(2x2, 3x3), winograd_f4.hpp's F(4x4, 3x3), winograd_s2.hpp's nested stride-2
// tiles), and the last step of their weight gradients (finish_weight_gradient): U[e][m][c] = (G g[m][c] G^T)[e]
// for every filter, packed per element e in the row blocks the micro-kernel reads. A tile size
// brings its filter transform as a policy Tf:
//   Tf::elems        transformed values per filter (16, 36, 81);
//   Tf::stage        input channels staged per block (below);
//   Tf::acc<T>       the type the transform computes in (T, or double);
//   Tf::apply<S>(g, out, r0, r1)   out[e][r] = (G g G^T)[e] of the filters of rows r in
//                    [r0, r1), side by side (r vectorised); g[k][r] tap k of row r.
#pragma once

#include <algorithm>
#include <cstdint>

#include "netsplit/backend/cpu/conv_kernels.hpp"

namespace netsplit::detail::cpu_conv {

/// Tap k of filter (m, c) of the M x C filters a weight transform reads: w as stored
/// ([M][C][3][3]), or (Rot) the input gradient's transposed, rotated filters
/// w'[m][c][k] = w[c][m][8 - k] read from the forward's weights, stored [C][M][3][3] (no copy
/// of them: at 512 x 512 channels 9.4 MB written and read again per backward pass).
template <bool Rot, class T>
inline T weight_tap(const T* w, int M, int C, int m, int c, int k) {
  if constexpr (Rot)
    return w[(i64{c} * M + m) * 9 + (8 - k)];
  else
    return w[(i64{m} * C + c) * 9 + k];
}

/// transform_weights_packed (below) for the R rows of block mt, all of them real output
/// channels: the row count fixed, and the results of Tf::stage input channels at a time staged,
/// so each element's packed run (stage * R values) is written contiguously. (Written per
/// channel: 36 streams of R values stalled on stores, 18% of a 512->512 4x4 layer's forward;
/// 16 runs per channel, each a library call, 37% of a 512->512 2x2 layer's; AMD EPYC.)
template <class Tf, bool Rot, int R, class T>
void transform_weights_block(const T* w, int M, int C, int mtiles, int mt, T* u) {
  constexpr int E = Tf::elems, cb = Tf::stage;
  using A = typename Tf::template acc<T>;
  alignas(64) T staged[E][cb * R];
  for (int c0 = 0; c0 < C; c0 += cb) {
    const int cn = std::min(cb, C - c0);
    for (int cc = 0; cc < cn; ++cc) {
      if constexpr (Rot)  // rows M * 9 values apart, too far for the hardware prefetchers
        if (c0 + cc + 4 < C) {
          const char* next = reinterpret_cast<const char*>(w + (i64{c0 + cc + 4} * M + i64{mt} * R) * 9);
          for (int b = 0; b < R * 9 * int(sizeof(T)); b += 64) __builtin_prefetch(next + b);
          __builtin_prefetch(next + R * 9 * sizeof(T) - 1);
        }
      A g[9][R], out[E][R];
      for (int r = 0; r < R; ++r)
        for (int k = 0; k < 9; ++k) g[k][r] = A(weight_tap<Rot>(w, M, C, mt * R + r, c0 + cc, k));
      Tf::template apply<R>(g, out, 0, R);
      for (int e = 0; e < E; ++e)
        for (int r = 0; r < R; ++r) staged[e][cc * R + r] = static_cast<T>(out[e][r]);
    }
    for (int e = 0; e < E; ++e) std::copy(staged[e], staged[e] + cn * R, u + ((i64{e} * mtiles + mt) * C + c0) * R);
  }
}

/// U[e][m][c] = (G g[m][c] G^T)[e] (Tf) of the M x C filters that weight_tap<Rot> reads (Rot:
/// the input gradient's, from the forward's weights), computed in Tf::acc<T> and rounded
/// once, packed per element e for the micro-kernel: u[((e * mtiles + mt) * C + c) * mr + r],
/// m = mt*mr + r; this call fills rows m in [m_begin, m_end) of [0, mtiles * mr) (rows m >= M
/// are zero).
template <class Tf, bool Rot, class T>
void transform_weights_packed(const T* w, int M, int C, int mr, int mtiles, T* u, int m_begin, int m_end) {
  constexpr int most = 16, E = Tf::elems;  // widest micro-kernel row block
  using A = typename Tf::template acc<T>;
  NETSPLIT_EXPECT(mr <= most, "transform_weights_packed: row block wider than 16");
  for (int mt = m_begin / mr; mt * mr < m_end; ++mt) {
    const int r0 = std::max(m_begin - mt * mr, 0), r1 = std::min(m_end - mt * mr, mr);
    if (r0 == 0 && r1 == mr && (mt + 1) * mr <= M && (mr == 8 || mr == 4)) {  // whole blocks: staged
      if (mr == 8)
        transform_weights_block<Tf, Rot, 8>(w, M, C, mtiles, mt, u);
      else
        transform_weights_block<Tf, Rot, 4>(w, M, C, mtiles, mt, u);
      continue;
    }
    // a block in part (a thread's range ends inside it) or past M: per input channel, the
    // rows' values side by side as above, one run of rows per element
    for (int c = 0; c < C; ++c) {
      A g[9][most] = {}, out[E][most];
      for (int r = r0; r < r1; ++r) {
        const int m = mt * mr + r;
        if (m < M)  // rows m >= M stay zero
          for (int k = 0; k < 9; ++k) g[k][r] = A(weight_tap<Rot>(w, M, C, m, c, k));
      }
      Tf::template apply<most>(g, out, r0, r1);
      for (int e = 0; e < E; ++e) {
        T* dst = u + ((i64{e} * mtiles + mt) * C + c) * mr;
        for (int r = r0; r < r1; ++r) dst[r] = static_cast<T>(out[e][r]);
      }
    }
  }
}

/// dw from `count` partial dU ([e][rows][ld]; part(i) the i-th, part(0) overwritten with their
/// total): the partials summed in order, then dw = G^T dU G; both per block of output channels
/// on the pool (one thread did them: 11% of a 512->512 2x2 layer's backward, AMD EPYC).
/// P: the tile's policy (P::elems, P::weight_grad: dw from dU).
template <class P, class T, class Part>
void finish_weight_gradient(cpu_context& ctx, int count, Part&& part, i64 rows, i64 ld, int M, int C, T* dw) {
  T* total = part(0);
  ctx.pool().parallel_for(M, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
    for (int i = 1; i < count; ++i) {
      const T* p = part(i);
      for (int el = 0; el < P::elems; ++el)
        for (i64 j = (el * rows + b) * ld, end = (el * rows + e) * ld; j < end; ++j) total[j] += p[j];
    }
    P::weight_grad(total + b * ld, rows, ld, static_cast<int>(e - b), C, dw + b * i64{C} * 9);
  });
}

}  // namespace netsplit::detail::cpu_conv
