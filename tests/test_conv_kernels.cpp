// The CPU backend's convolution engine against the original simple implementation (per-image
// im2col + Eigen GEMM, kept here as the reference) over every ResNet20 shape and odd ones:
// 7x7, 5x5, pad 0, pad larger than the kernel needs, stride 2 and 3 on even and odd sizes,
// 1x1 stride 2, non-square images, channel counts that are not tile multiples, batch 1 and 3
// on two threads, and the shapes that exercise the Winograd path's vector and scalar
// transforms (widths 2-64, tile counts that are not multiples of 16, non-square). Every case
// runs with each of the context's algorithms: `fastest` (Winograd with vector transforms
// where they exist), `direct`, `winograd_2x2` and `winograd_4x4` (Winograd F(2x2, 3x3) or
// F(4x4, 3x3) wherever it applies, including the portable transforms and double). Float
// results must match the double reference within 1e-4 of the largest reference magnitude
// (measured: direct and F(2x2, 3x3) about 1e-7 to 6e-7, F(4x4, 3x3) 1e-6 to 8e-6, largest
// on 64->64 8x8); double within 1e-10. Results must be bit-identical between runs.
#include <doctest/doctest.h>
#include <unistd.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "netsplit/netsplit.hpp"

using namespace netsplit;

namespace reference {
// The implementation the engine replaced: per image, im2col then one GEMM; single-threaded.
template <class T>
using MapM = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
template <class T>
using MapC = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

template <class T>
void im2col(const conv2d_desc& d, const T* x, T* col) {
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
template <class T>
void col2im(const conv2d_desc& d, const T* col, T* dx) {
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
template <class T>
void conv2d_forward(const conv2d_desc& d, const T* x, const T* w, T* y) {
  const std::int64_t hw = std::int64_t{d.out_height()} * d.out_width();
  const std::int64_t in_img = std::int64_t{d.in_channels} * d.in_height * d.in_width;
  const std::int64_t rows = std::int64_t{d.in_channels} * d.kernel * d.kernel;
  std::vector<T> col(static_cast<std::size_t>(rows * hw));
  const MapC<T> W(w, d.out_channels, rows);
  for (int n = 0; n < d.batch; ++n) {
    im2col(d, x + n * in_img, col.data());
    MapM<T>(y + n * d.out_channels * hw, d.out_channels, hw).noalias() = W * MapC<T>(col.data(), rows, hw);
  }
}
template <class T>
void conv2d_backward(const conv2d_desc& d, const T* x, const T* w, const T* dy, T* dx, T* dw) {
  const std::int64_t hw = std::int64_t{d.out_height()} * d.out_width();
  const std::int64_t in_img = std::int64_t{d.in_channels} * d.in_height * d.in_width;
  const std::int64_t rows = std::int64_t{d.in_channels} * d.kernel * d.kernel;
  std::vector<T> col(static_cast<std::size_t>(rows * hw)), dcol(col.size());
  const MapC<T> W(w, d.out_channels, rows);
  MapM<T> dW(dw, d.out_channels, rows);
  dW.setZero();
  for (int n = 0; n < d.batch; ++n) {
    const MapC<T> dY(dy + n * d.out_channels * hw, d.out_channels, hw);
    im2col(d, x + n * in_img, col.data());
    dW.noalias() += dY * MapC<T>(col.data(), rows, hw).transpose();
    MapM<T>(dcol.data(), rows, hw).noalias() = W.transpose() * dY;
    col2im(d, dcol.data(), dx + n * in_img);
  }
}
}  // namespace reference

namespace {

struct conv_case {
  conv2d_desc d;
  const char* what;
};

std::string describe(const conv2d_desc& d) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "batch %d, %d->%d, %dx%d, k%d s%d p%d", d.batch, d.in_channels,
                d.out_channels, d.in_height, d.in_width, d.kernel, d.stride, d.pad);
  return buf;
}

std::vector<double> random_values(std::int64_t n, std::uint64_t seed) {
  rng r(seed);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = r.normal();
  return v;
}

/// max |a - ref| / max |ref|
template <class T>
double relative_error(const std::vector<T>& a, const std::vector<double>& ref) {
  double err = 0, scale = 1e-30;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    err = std::max(err, std::abs(static_cast<double>(a[i]) - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return err / scale;
}

template <class T>
struct conv_run {
  std::vector<T> y, dx, dw, dw_only, add, dx_plus, dw_plus;  // *_plus: backward with dx_add = add
};

template <class T>
conv_run<T> run_engine(cpu_context& ctx, const conv2d_desc& d, const std::vector<T>& x, const std::vector<T>& w,
                       const std::vector<T>& dy) {
  conv_run<T> r;
  r.y.assign(static_cast<std::size_t>(std::int64_t{d.batch} * d.out_channels * d.out_height() * d.out_width()), T(-7));
  r.dx.assign(x.size(), T(-7));
  r.dw.assign(w.size(), T(-7));
  r.dw_only.assign(w.size(), T(-7));
  cpu_backend::conv2d_forward(ctx, d, x.data(), w.data(), r.y.data());
  cpu_backend::conv2d_backward(ctx, d, x.data(), w.data(), dy.data(), r.dx.data(), r.dw.data());
  cpu_backend::conv2d_backward(ctx, d, x.data(), w.data(), dy.data(), static_cast<T*>(nullptr), r.dw_only.data());
  const auto adds = random_values(static_cast<std::int64_t>(x.size()), 4);
  r.add.assign(adds.begin(), adds.end());
  r.dx_plus.assign(x.size(), T(-7));
  r.dw_plus.assign(w.size(), T(-7));
  cpu_backend::conv2d_backward(ctx, d, x.data(), w.data(), dy.data(), r.dx_plus.data(), r.dw_plus.data(), r.add.data());
  return r;
}

template <class T>
void check_case(const conv2d_desc& d, const char* what, double tolerance, cpu_conv_algorithm algorithm) {
  const auto xs = random_values(std::int64_t{d.batch} * d.in_channels * d.in_height * d.in_width, 1);
  const auto ws = random_values(d.weight_count(), 2);
  const auto dys = random_values(std::int64_t{d.batch} * d.out_channels * d.out_height() * d.out_width(), 3);
  // inputs rounded to T, so the double reference sees exactly what the engine sees
  std::vector<T> x(xs.begin(), xs.end()), w(ws.begin(), ws.end()), dy(dys.begin(), dys.end());
  std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end()), dyd(dy.begin(), dy.end());
  std::vector<double> y_ref(dys.size()), dx_ref(xs.size()), dw_ref(ws.size());
  reference::conv2d_forward(d, xd.data(), wd.data(), y_ref.data());
  reference::conv2d_backward(d, xd.data(), wd.data(), dyd.data(), dx_ref.data(), dw_ref.data());

  cpu_context ctx(2);
  ctx.set_conv_algorithm(algorithm);
  const auto a = run_engine(ctx, d, x, w, dy);
  const double ey = relative_error(a.y, y_ref), edx = relative_error(a.dx, dx_ref),
               edw = relative_error(a.dw, dw_ref), edw2 = relative_error(a.dw_only, dw_ref);
  INFO(what, ": ", describe(d), "  errors y ", ey, " dx ", edx, " dw ", edw, " dw(no dx) ", edw2);
  CHECK(ey <= tolerance);
  CHECK(edx <= tolerance);
  CHECK(edw <= tolerance);
  CHECK(edw2 <= tolerance);
  // dx_add: the same gradients, dx + add rounded once (what a separate add would give)
  std::vector<T> sum(a.dx.size());
  for (std::size_t i = 0; i < sum.size(); ++i) sum[i] = a.dx[i] + a.add[i];
  CHECK(std::memcmp(sum.data(), a.dx_plus.data(), sum.size() * sizeof(T)) == 0);
  CHECK(std::memcmp(a.dw.data(), a.dw_plus.data(), a.dw.size() * sizeof(T)) == 0);

  // bit-identical on a second run with the same context and with a fresh one (same threads)
  const auto b = run_engine(ctx, d, x, w, dy);
  cpu_context ctx2(2);
  ctx2.set_conv_algorithm(algorithm);
  const auto c = run_engine(ctx2, d, x, w, dy);
  for (const auto* o : {&b, &c}) {
    CHECK(std::memcmp(a.y.data(), o->y.data(), a.y.size() * sizeof(T)) == 0);
    CHECK(std::memcmp(a.dx.data(), o->dx.data(), a.dx.size() * sizeof(T)) == 0);
    CHECK(std::memcmp(a.dw.data(), o->dw.data(), a.dw.size() * sizeof(T)) == 0);
  }
}

template <class T>
void check_case(const conv2d_desc& d, const char* what, double tolerance) {
  for (auto algorithm : {cpu_conv_algorithm::fastest, cpu_conv_algorithm::direct, cpu_conv_algorithm::winograd_2x2,
                         cpu_conv_algorithm::winograd_4x4}) {
    INFO(to_string(algorithm));
    check_case<T>(d, what, tolerance, algorithm);
  }
}

// {batch, in_channels, out_channels, in_height, in_width, kernel, stride, pad}
const conv_case resnet20_cases[] = {
    {{8, 3, 16, 32, 32, 3, 1, 1}, "stem 3->16 32x32"},
    {{8, 16, 16, 32, 32, 3, 1, 1}, "stage 1 16->16 32x32"},
    {{8, 16, 32, 32, 32, 3, 2, 1}, "stage 2 entry 16->32 s2"},
    {{8, 32, 32, 16, 16, 3, 1, 1}, "stage 2 32->32 16x16"},
    {{8, 32, 64, 16, 16, 3, 2, 1}, "stage 3 entry 32->64 s2"},
    {{8, 64, 64, 8, 8, 3, 1, 1}, "stage 3 64->64 8x8"},
    {{37, 64, 64, 8, 8, 3, 1, 1}, "64->64 8x8, several chunks per thread"},
    {{21, 16, 16, 32, 32, 3, 1, 1}, "16->16 32x32, several chunks per thread"},
    // the direct engine's packs write only data after a thread's first chunk: a shorter last
    // chunk must clear what the chunk before it left past its images
    {{21, 16, 32, 32, 32, 3, 2, 1}, "16->32 s2, several chunks per thread and a shorter last one"},
    {{4, 16, 32, 32, 32, 1, 2, 0}, "option-B shortcut 1x1 s2"},
};

const conv_case odd_cases[] = {
    {{3, 3, 5, 16, 16, 7, 2, 3}, "7x7 s2 p3 even size"},
    {{3, 3, 5, 15, 15, 7, 2, 3}, "7x7 s2 p3 odd size"},
    {{2, 4, 6, 11, 11, 7, 1, 0}, "7x7 pad 0"},
    {{3, 5, 7, 9, 9, 3, 1, 0}, "3x3 pad 0"},
    {{3, 5, 7, 15, 15, 3, 2, 1}, "3x3 s2 odd size"},
    {{3, 5, 7, 8, 8, 3, 2, 0}, "3x3 s2 pad 0 even size"},
    {{3, 6, 9, 7, 7, 1, 2, 0}, "1x1 s2 odd size"},
    {{3, 6, 9, 8, 8, 1, 2, 0}, "1x1 s2 even size"},
    {{3, 6, 9, 5, 7, 1, 1, 0}, "1x1 s1 non-square"},
    {{3, 4, 5, 6, 6, 1, 1, 1}, "1x1 with padding"},
    {{3, 5, 3, 10, 13, 5, 1, 2}, "5x5 same padding, non-square"},
    {{3, 5, 3, 10, 10, 5, 1, 1}, "5x5 pad 1"},
    {{3, 4, 4, 10, 11, 3, 3, 1}, "3x3 stride 3"},
    {{3, 4, 4, 9, 9, 2, 2, 0}, "2x2 stride 2"},
    {{3, 17, 19, 6, 6, 3, 1, 1}, "17->19 channels (tile remainders)"},
    {{1, 16, 16, 32, 32, 3, 1, 1}, "batch 1 on two threads"},
    {{3, 16, 32, 32, 32, 3, 2, 1}, "batch 3 on two threads"},
    {{1, 1, 1, 1, 1, 3, 1, 1}, "single pixel"},
    {{2, 2, 3, 3, 2, 3, 2, 1}, "tiny 3x2 s2"},
    // 3x3 stride-1 same: the Winograd path (tile widths TW = W/2)
    {{2, 3, 9, 6, 64, 3, 1, 1}, "Winograd TW 32 (vector, part of a row per vector)"},
    {{3, 5, 7, 8, 16, 3, 1, 1}, "Winograd non-square 8x16"},
    {{3, 5, 7, 6, 8, 3, 1, 1}, "Winograd 12 tiles per image (masked tail)"},
    {{3, 5, 7, 4, 8, 3, 1, 1}, "Winograd 8 tiles per image"},
    {{3, 5, 7, 6, 16, 3, 1, 1}, "Winograd TW 8, 24 tiles per image (masked tail)"},
    {{2, 3, 9, 10, 24, 3, 1, 1}, "Winograd TW 12 (scalar transforms)"},
    {{2, 3, 9, 6, 4, 3, 1, 1}, "Winograd TW 2 (scalar transforms)"},
    {{2, 3, 9, 2, 2, 3, 1, 1}, "Winograd one tile"},
    {{3, 5, 7, 7, 8, 3, 1, 1}, "3x3 same, odd height (direct)"},
    // F(4x4, 3x3) (tile widths TW = W/4; the sizes above divisible by 4 run it too)
    {{2, 3, 9, 4, 128, 3, 1, 1}, "Winograd 4x4: TW 32"},
    {{3, 5, 7, 8, 64, 3, 1, 1}, "Winograd 4x4: TW 16"},
    {{3, 5, 7, 12, 16, 3, 1, 1}, "Winograd 4x4: TW 4, 12 tiles per image (across images)"},
    {{3, 5, 7, 20, 8, 3, 1, 1}, "Winograd 4x4: TW 2, 10 tiles per image"},
    {{3, 5, 7, 16, 8, 3, 1, 1}, "Winograd 4x4: TW 2, 4 tile rows (two pairs of whole lines per image)"},
    {{5, 5, 7, 4, 4, 3, 1, 1}, "Winograd 4x4: one tile per image"},
    {{37, 5, 7, 4, 4, 3, 1, 1}, "Winograd 4x4: W 4, 37 images (vectors of 16 whole-line tiles, then a tail)"},
    {{19, 5, 7, 8, 4, 3, 1, 1}, "Winograd 4x4: W 4, two tiles per image (vectors of 16 whole-line tiles, a tail)"},
    {{3, 5, 7, 8, 12, 3, 1, 1}, "Winograd 4x4: TW 3 (scalar transforms)"},
    {{2, 3, 9, 10, 12, 3, 1, 1}, "Winograd 4x4 not applicable: height 10 (2x2 or direct)"},
    // at least 32 channels each way (AVX-512; 128 elsewhere): the packed weight gradient (winograd.hpp)
    {{3, 33, 37, 8, 8, 3, 1, 1}, "packed weight gradient: 33 columns (a one-row last transpose), 37 rows"},
    {{5, 40, 32, 12, 16, 3, 1, 1}, "packed weight gradient: 12 tiles per image (chunks of 36 and 24 tiles)"},
    {{3, 128, 130, 4, 4, 3, 1, 1}, "packed weight gradient: 128 columns (a 32-wide last block), 130 rows"},
    {{2, 150, 128, 8, 8, 3, 1, 1}, "packed weight gradient: 150 columns (padded, a 16-wide last block)"},
    {{3, 128, 128, 2, 2, 3, 1, 1}, "packed weight gradient: 2x2 maps"},
    // 3x3 stride 2 on sides that are multiples of 8: nested Winograd (winograd_s2.hpp) under
    // `fastest` where the transposes are vector ones (AVX-512 float) and the batch fills the
    // lanes (at least 16 images per thread, at most an eighth of the lanes empty)
    {{32, 8, 12, 8, 8, 3, 2, 1}, "stride-2 Winograd: 8x8 (rows narrower than a transpose), 12 outputs"},
    {{32, 4, 5, 24, 16, 3, 2, 1}, "stride-2 Winograd: 24x16, three tile rows"},
    {{32, 3, 5, 16, 24, 3, 2, 1}, "stride-2 Winograd: 16x24 (a 16-wide and an 8-wide part per row)"},
    {{46, 5, 9, 16, 16, 3, 2, 1}, "stride-2 Winograd: 46 images (two groups of 16 and one of 14)"},
    {{33, 5, 9, 16, 16, 3, 2, 1}, "stride-2, 33 images: a third of the lanes empty (direct)"},
};

}  // namespace

TEST_CASE("conv engine matches the im2col reference on ResNet20 shapes (float and double)") {
  for (const auto& c : resnet20_cases) {
    check_case<float>(c.d, c.what, 1e-4);
    check_case<double>(c.d, c.what, 1e-10);
  }
}

TEST_CASE("conv engine matches the im2col reference on odd shapes (float and double)") {
  for (const auto& c : odd_cases) {
    check_case<float>(c.d, c.what, 1e-4);
    check_case<double>(c.d, c.what, 1e-10);
  }
}

TEST_CASE("transpose16: a 16-column block of up to 16 rows, transposed, nothing written past its rows") {
  using detail::cpu_conv::kernels;
  constexpr std::int64_t ls = 21, ld = 19;
  std::vector<float> src(16 * ls);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i) + 0.5f;
  for (int rows = 1; rows <= 16; ++rows) {
    INFO("rows ", rows);
    std::vector<float> dst(16 * ld, -7.0f);
    kernels<float>::transpose16(src.data() + 2, ls, rows, dst.data(), ld);
    int wrong = 0;
    for (int q = 0; q < 16; ++q)
      for (int r = 0; r < ld; ++r) wrong += dst[q * ld + r] != (r < rows ? src[r * ls + 2 + q] : -7.0f);
    CHECK(wrong == 0);
  }
}

namespace {
// The nested stride-2 tiles called directly, float and double (`fastest` takes them only for
// float on AVX-512 or AVX2): forward with an epilogue (shift, residual, ReLU), input gradient with a
// residual added, weight gradient, against the double reference. Groups of 16 images with a
// partial last one, widths narrower than a transpose and with an 8-wide part, output channels
// that are not multiples of the row blocks, 1 and 2 threads (the weight gradient's partials).
template <class T>
void check_s2(const conv2d_desc& d, int threads, double tol) {
  namespace s2 = detail::cpu_conv::winograd_s2;
  const std::int64_t nx = std::int64_t{d.batch} * d.in_channels * d.in_height * d.in_width;
  const std::int64_t plane = std::int64_t{d.out_height()} * d.out_width(), ny = std::int64_t{d.batch} * d.out_channels * plane;
  const auto xs = random_values(nx, 21), ws = random_values(d.weight_count(), 22), dys = random_values(ny, 23);
  const auto rs = random_values(ny, 24), ss = random_values(d.out_channels, 25), adds = random_values(nx, 26);
  std::vector<T> x(xs.begin(), xs.end()), w(ws.begin(), ws.end()), dy(dys.begin(), dys.end()), r(rs.begin(), rs.end()),
      shift(ss.begin(), ss.end()), add(adds.begin(), adds.end());
  std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end()), dyd(dy.begin(), dy.end());
  std::vector<double> y_ref(static_cast<std::size_t>(ny)), dx_ref(static_cast<std::size_t>(nx)), dw_ref(w.size());
  reference::conv2d_forward(d, xd.data(), wd.data(), y_ref.data());
  reference::conv2d_backward(d, xd.data(), wd.data(), dyd.data(), dx_ref.data(), dw_ref.data());
  for (std::int64_t i = 0; i < ny; ++i) {
    const auto k = static_cast<std::size_t>(i);
    y_ref[k] = std::max(y_ref[k] + double(shift[static_cast<std::size_t>((i / plane) % d.out_channels)]) + double(r[k]), 0.0);
  }
  for (std::int64_t i = 0; i < nx; ++i) dx_ref[static_cast<std::size_t>(i)] += double(add[static_cast<std::size_t>(i)]);
  cpu_context ctx(threads);
  std::vector<T> y(static_cast<std::size_t>(ny), T(-7)), dx(x.size(), T(-7)), dw(w.size(), T(-7));
  const detail::cpu_conv::conv_epilogue<T> ep{shift.data(), r.data(), true};
  s2::forward(ctx, d, x.data(), w.data(), y.data(), &ep);
  const detail::cpu_conv::conv_epilogue<T> dep{nullptr, add.data(), false};
  s2::backward_data(ctx, d, w.data(), dy.data(), dx.data(), &dep);
  s2::backward_weights(ctx, d, x.data(), dy.data(), dw.data());
  const double ey = relative_error(y, y_ref), edx = relative_error(dx, dx_ref), edw = relative_error(dw, dw_ref);
  INFO(describe(d), ", ", threads, " threads: errors y ", ey, " dx ", edx, " dw ", edw);
  CHECK(ey <= tol);
  CHECK(edx <= tol);
  CHECK(edw <= tol);
}
}  // namespace

TEST_CASE("stride-2 nested Winograd (winograd_s2) matches the im2col reference, float and double") {
  const conv2d_desc shapes[] = {
      {8, 16, 32, 32, 32, 3, 2, 1},  {21, 16, 32, 32, 32, 3, 2, 1}, {8, 32, 64, 16, 16, 3, 2, 1},
      {5, 8, 12, 8, 8, 3, 2, 1},     {3, 4, 5, 24, 16, 3, 2, 1},    {2, 3, 5, 16, 24, 3, 2, 1},
      {33, 5, 9, 16, 16, 3, 2, 1},   {17, 40, 36, 8, 16, 3, 2, 1},
  };
  for (const auto& d : shapes)
    for (int threads : {1, 2}) {
      check_s2<float>(d, threads, 1e-4);
      check_s2<double>(d, threads, 1e-10);
    }
  CHECK(!detail::cpu_conv::winograd_s2_applicable({4, 3, 5, 12, 16, 3, 2, 1}));  // a side not a multiple of 8
  CHECK(!detail::cpu_conv::winograd_s2_applicable({4, 3, 5, 16, 16, 3, 1, 1}));  // stride 1
  CHECK(!detail::cpu_conv::winograd_s2_applicable({4, 3, 5, 16, 16, 3, 2, 0}));  // padding 0
  // `fastest`: the forward, on vector transposes, where the batch fills the lanes
  using detail::cpu_conv::winograd_s2_fastest, detail::cpu_conv::winograd_tile, detail::cpu_conv::conv_pass;
  const auto s2 = detail::cpu_conv::kernels<float>::vector_transpose ? winograd_tile::s2 : winograd_tile::none;
  CHECK(winograd_s2_fastest<float>({128, 16, 32, 32, 32, 3, 2, 1}, conv_pass::forward, 2) == s2);
  CHECK(winograd_s2_fastest<float>({112, 16, 32, 32, 32, 3, 2, 1}, conv_pass::forward, 2) == s2);  // 7 x 16
  CHECK(winograd_s2_fastest<float>({16, 16, 32, 32, 32, 3, 2, 1}, conv_pass::forward, 1) == s2);
  CHECK(winograd_s2_fastest<float>({16, 16, 32, 32, 32, 3, 2, 1}, conv_pass::forward, 2) == winograd_tile::none);
  CHECK(winograd_s2_fastest<float>({1, 16, 32, 32, 32, 3, 2, 1}, conv_pass::forward, 1) == winograd_tile::none);
  CHECK(winograd_s2_fastest<float>({40, 16, 32, 32, 32, 3, 2, 1}, conv_pass::forward, 2) == winograd_tile::none);  // 8 of 48 empty
  CHECK(winograd_s2_fastest<float>({128, 16, 32, 32, 32, 3, 2, 1}, conv_pass::backward_data, 2) == winograd_tile::none);
  CHECK(winograd_s2_fastest<double>({128, 16, 32, 32, 32, 3, 2, 1}, conv_pass::forward, 2) == winograd_tile::none);
}

TEST_CASE("F(4x4) weight gradient from dU: G^T dU G per channel pair, blocks of 16 input channels and a tail") {
  // G of F(4x4, 3x3) (winograd_f4.hpp): dw[m][c] = G^T dU[m][c] G, dU[e] at (e * rows + m) * ld + c
  const double G[6][3] = {{1. / 4, 0, 0},          {-1. / 6, -1. / 6, -1. / 6}, {-1. / 6, 1. / 6, -1. / 6},
                          {1. / 24, 1. / 12, 1. / 6}, {1. / 24, -1. / 12, 1. / 6}, {0, 0, 1}};
  for (int C : {1, 16, 37}) {
    const int M = 3;
    const std::int64_t rows = 5, ld = C + 3;
    std::vector<float> du(36 * rows * ld);
    for (std::size_t i = 0; i < du.size(); ++i) du[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
    std::vector<float> dw(std::size_t(M) * C * 9, -7.0f);
    detail::cpu_conv::winograd4::weight_grad_from(du.data(), rows, ld, M, C, dw.data());
    int wrong = 0;
    for (int m = 0; m < M; ++m)
      for (int c = 0; c < C; ++c)
        for (int i = 0; i < 3; ++i)
          for (int k = 0; k < 3; ++k) {
            double want = 0;
            for (int a = 0; a < 6; ++a)
              for (int b = 0; b < 6; ++b) want += G[a][i] * du[(std::int64_t(6 * a + b) * rows + m) * ld + c] * G[b][k];
            wrong += std::abs(dw[(std::size_t(m) * C + c) * 9 + 3 * i + k] - want) > 1e-6 * (1 + std::abs(want));
          }
    INFO("C ", C);
    CHECK(wrong == 0);
  }
}

namespace {
// Both tile sizes' weight transforms, packed rows m in [b, e): (float and double, Rot as asked)
template <bool Rot, class T>
void transform_rows(int elems, const T* w, int M, int C, int mr, int mtiles, T* u, int b, int e) {
  namespace cc = detail::cpu_conv;
  if (elems == 16)
    cc::transform_weights_packed<cc::winograd::g4x3, Rot>(w, M, C, mr, mtiles, u, b, e);
  else
    cc::transform_weights_packed<cc::winograd4::g6x3, Rot>(w, M, C, mr, mtiles, u, b, e);
}

template <class T>
void check_weight_transforms(int elems) {
  // {M, C}: whole row blocks, a tail block (M % mr), input channels past a staged block of 32
  for (const auto& shape : {std::pair{16, 40}, std::pair{19, 17}, std::pair{37, 5}, std::pair{8, 70}}) {
    const int M = shape.first, C = shape.second;  // (no structured binding: clang 14 rejects INFO's capture)
    for (int mr : {4, 8, 3, 16}) {
      const int mtiles = (M + mr - 1) / mr, mpad = mtiles * mr;
      // the input gradient's filters: stored as the forward's, [C][M][3][3] (out C, in M)
      std::vector<T> w(std::size_t(M) * C * 9);
      for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<T>(std::sin(0.731 * static_cast<double>(i) + 0.2));
      std::vector<T> wt(w.size());  // the transposed, rotated copy the direct engine takes: [M][C][3][3]
      detail::cpu_conv::winograd::transpose_rotate(w.data(), C, M, wt.data(), 0, M);
      const std::size_t n = std::size_t(elems) * mpad * C;
      std::vector<T> copy(n, T(-7)), in_place(n, T(-7)), by_row(n, T(-7)), split(n, T(-7));
      transform_rows<false>(elems, wt.data(), M, C, mr, mtiles, copy.data(), 0, mpad);
      transform_rows<true>(elems, w.data(), M, C, mr, mtiles, in_place.data(), 0, mpad);
      // one row per call: every block through the unstaged path; and two calls split inside a block
      for (int m = 0; m < mpad; ++m) transform_rows<true>(elems, w.data(), M, C, mr, mtiles, by_row.data(), m, m + 1);
      const int cut = std::min(mpad, 5);
      transform_rows<false>(elems, wt.data(), M, C, mr, mtiles, split.data(), 0, cut);
      transform_rows<false>(elems, wt.data(), M, C, mr, mtiles, split.data(), cut, mpad);
      INFO("elems ", elems, " M ", M, " C ", C, " mr ", mr);
      CHECK(std::memcmp(copy.data(), in_place.data(), n * sizeof(T)) == 0);
      CHECK(std::memcmp(copy.data(), by_row.data(), n * sizeof(T)) == 0);
      CHECK(std::memcmp(copy.data(), split.data(), n * sizeof(T)) == 0);
      // rows past M are zero; element 0 of each filter is tap (0, 0) of F(2x2)'s G g G^T (g00)
      // and g00 / 16 of F(4x4)'s (G's first row is (1/4, 0, 0))
      int wrong = 0;
      for (int m = 0; m < mpad; ++m)
        for (int c = 0; c < C; ++c) {
          const T got = copy[(std::size_t(m / mr) * C + c) * mr + m % mr];
          const T want = m < M ? wt[(std::size_t(m) * C + c) * 9] / T(elems == 16 ? 1 : 16) : T(0);
          wrong += got != want;
        }
      CHECK(wrong == 0);
    }
  }
}
}  // namespace

TEST_CASE("weight transforms: the input gradient's filters read in place equal a transposed, rotated copy's; "
          "staged blocks equal row by row") {
  for (int elems : {16, 36}) {
    check_weight_transforms<float>(elems);
    check_weight_transforms<double>(elems);
  }
}

TEST_CASE("conv engine results agree across thread counts") {
  for (const conv2d_desc d : {conv2d_desc{13, 16, 32, 32, 32, 3, 2, 1}, conv2d_desc{13, 16, 16, 16, 16, 3, 1, 1}}) {
    INFO(describe(d));
    const auto xs = random_values(std::int64_t{d.batch} * d.in_channels * d.in_height * d.in_width, 4);
    const auto ws = random_values(d.weight_count(), 5);
    const auto dys = random_values(std::int64_t{d.batch} * d.out_channels * d.out_height() * d.out_width(), 6);
    std::vector<float> x(xs.begin(), xs.end()), w(ws.begin(), ws.end()), dy(dys.begin(), dys.end());
    cpu_context one(1), three(3);
   for (auto alg : {cpu_conv_algorithm::winograd_2x2, cpu_conv_algorithm::winograd_4x4}) {
    INFO(to_string(alg));
    one.set_conv_algorithm(alg);
    three.set_conv_algorithm(alg);
    const auto a = run_engine(one, d, x, w, dy);
    const auto b = run_engine(three, d, x, w, dy);
    // forward and input gradient do not reduce across threads: identical
    CHECK(std::memcmp(a.y.data(), b.y.data(), a.y.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(a.dx.data(), b.dx.data(), a.dx.size() * sizeof(float)) == 0);
    std::vector<double> dw1(a.dw.begin(), a.dw.end());
    CHECK(relative_error(b.dw, dw1) <= 1e-5);
   }
  }
}

namespace {
template <class T>
void check_affine(const conv2d_desc& d, cpu_conv_algorithm algorithm, double tol) {
  const auto xs = random_values(std::int64_t{d.batch} * d.in_channels * d.in_height * d.in_width, 7);
  const auto ws = random_values(d.weight_count(), 8);
  const std::int64_t ny = std::int64_t{d.batch} * d.out_channels * d.out_height() * d.out_width();
  const auto rs = random_values(ny, 9), ss = random_values(d.out_channels, 10);
  std::vector<T> x(xs.begin(), xs.end()), w(ws.begin(), ws.end()), r(rs.begin(), rs.end()), shift(ss.begin(), ss.end());
  cpu_context ctx(2);
  ctx.set_conv_algorithm(algorithm);
  std::vector<T> plain(static_cast<std::size_t>(ny));
  cpu_backend::conv2d_forward(ctx, d, x.data(), w.data(), plain.data());
  const std::int64_t plane = std::int64_t{d.out_height()} * d.out_width();
  for (int variant = 0; variant < 4; ++variant) {  // shift; shift + relu; shift + residual + relu; residual
    const T* sp = variant == 3 ? nullptr : shift.data();
    const T* rp = variant >= 2 ? r.data() : nullptr;
    const bool relu = variant == 1 || variant == 2;
    std::vector<T> got(static_cast<std::size_t>(ny));
    std::vector<double> want(got.size());
    cpu_backend::conv2d_forward_affine(ctx, d, x.data(), w.data(), sp, rp, relu, got.data());
    for (std::int64_t i = 0; i < ny; ++i) {
      double v = double(plain[static_cast<std::size_t>(i)]) + (sp ? double(sp[(i / plane) % d.out_channels]) : 0.0) +
                 (rp ? double(rp[i]) : 0.0);
      want[static_cast<std::size_t>(i)] = relu ? std::max(v, 0.0) : v;
    }
    INFO(to_string(algorithm), " ", describe(d), " variant ", variant);
    CHECK(relative_error(got, want) <= tol);
  }
}
}  // namespace

// The epilogues' shapes: ResNet's (F(4x4) vector transforms, all 16 lanes stored), masked
// groups (widths 8 and 12, 20 rows), the scalar F(4x4) and F(2x2) paths (W = 4), the direct
// engine (stride 2, 1x1)
const conv2d_desc epilogue_shapes[] = {
    {8, 16, 16, 32, 32, 3, 1, 1}, {8, 32, 32, 16, 16, 3, 1, 1}, {9, 64, 64, 8, 8, 3, 1, 1},
    {3, 5, 7, 8, 64, 3, 1, 1},    {3, 5, 7, 8, 12, 3, 1, 1},    {5, 5, 7, 4, 4, 3, 1, 1},
    {3, 5, 7, 20, 8, 3, 1, 1},    {3, 16, 32, 16, 16, 3, 2, 1}, {3, 6, 9, 8, 8, 1, 2, 0},
    {37, 5, 7, 4, 4, 3, 1, 1},    {19, 5, 7, 8, 4, 3, 1, 1},  // W 4: vectors of 16 whole-line tiles
    // weights outnumbering the batch's planes (winograd::by_elements): F(4x4) on 4x4, F(2x2) on 2x2
    {6, 64, 48, 4, 4, 3, 1, 1},   {5, 40, 20, 2, 2, 3, 1, 1},
    {32, 8, 12, 16, 16, 3, 2, 1},  // stride 2, two groups of 16 images: the nested forward
};

TEST_CASE("conv2d_forward_affine equals the convolution, then + shift + residual, then relu") {
  for (const auto& d : epilogue_shapes)
    for (auto algorithm : {cpu_conv_algorithm::fastest, cpu_conv_algorithm::direct, cpu_conv_algorithm::winograd_2x2,
                           cpu_conv_algorithm::winograd_4x4}) {
      check_affine<float>(d, algorithm, 1e-6);
      check_affine<double>(d, algorithm, 1e-14);
    }
}

namespace {
// conv2d_forward_sums: the output bit for bit conv2d_forward's; the shift a value of its
// channel (the first image's first); the sums those of the output about the shift, summed in
// double (float: within 1e-5 of the sum of magnitudes, the lane partials being float; double:
// 1e-12).
template <class T>
void check_sums(const conv2d_desc& d, cpu_conv_algorithm algorithm, int threads, double tol) {
  const auto xs = random_values(std::int64_t{d.batch} * d.in_channels * d.in_height * d.in_width, 11);
  const auto ws = random_values(d.weight_count(), 12);
  std::vector<T> x(xs.begin(), xs.end()), w(ws.begin(), ws.end()), shift(static_cast<std::size_t>(d.out_channels));
  const std::int64_t plane = std::int64_t{d.out_height()} * d.out_width(), ny = std::int64_t{d.batch} * d.out_channels * plane;
  cpu_context ctx(threads);
  ctx.set_conv_algorithm(algorithm);
  std::vector<T> plain(static_cast<std::size_t>(ny)), got(static_cast<std::size_t>(ny), T(-7));
  cpu_backend::conv2d_forward(ctx, d, x.data(), w.data(), plain.data());
  std::vector<double> s1(static_cast<std::size_t>(d.out_channels), -7), s2 = s1;
  cpu_backend::conv2d_forward_sums(ctx, d, x.data(), w.data(), got.data(), shift.data(), s1.data(), s2.data());
  INFO(to_string(algorithm), " ", describe(d), ", ", threads, " threads");
  CHECK(std::memcmp(got.data(), plain.data(), got.size() * sizeof(T)) == 0);
  for (int m = 0; m < d.out_channels; ++m) {
    CHECK(shift[static_cast<std::size_t>(m)] == plain[static_cast<std::size_t>(m * plane)]);
    double r1 = 0, r2 = 0, a1 = 0;
    for (int n = 0; n < d.batch; ++n)
      for (std::int64_t i = 0; i < plane; ++i) {
        const double v = double(plain[static_cast<std::size_t>((std::int64_t{n} * d.out_channels + m) * plane + i)]) -
                         double(shift[static_cast<std::size_t>(m)]);
        r1 += v;
        r2 += v * v;
        a1 += std::abs(v);
      }
    INFO("channel ", m);
    CHECK(std::abs(s1[static_cast<std::size_t>(m)] - r1) <= tol * a1);
    CHECK(std::abs(s2[static_cast<std::size_t>(m)] - r2) <= tol * r2);
  }
  // the same call again gives the same bits (each thread's sums start from zero)
  std::vector<double> t1(s1.size()), t2(s2.size());
  std::vector<T> k2(shift.size());
  cpu_backend::conv2d_forward_sums(ctx, d, x.data(), w.data(), got.data(), k2.data(), t1.data(), t2.data());
  CHECK(t1 == s1);
  CHECK(t2 == s2);
  CHECK(k2 == shift);
}
}  // namespace

TEST_CASE("conv2d_forward_sums: the convolution's output, and its shifted sums per channel") {
  // the epilogues' shapes, and batch 1 on two threads (one thread idle), 37 images (chunks of
  // several images with a shorter last)
  std::vector<conv2d_desc> shapes(std::begin(epilogue_shapes), std::end(epilogue_shapes));
  shapes.push_back({1, 16, 16, 32, 32, 3, 1, 1});
  shapes.push_back({37, 16, 16, 32, 32, 3, 1, 1});
  for (const auto& d : shapes)
    for (auto algorithm : {cpu_conv_algorithm::fastest, cpu_conv_algorithm::direct, cpu_conv_algorithm::winograd_2x2,
                           cpu_conv_algorithm::winograd_4x4})
      for (int threads : {1, 2}) {
        check_sums<float>(d, algorithm, threads, 1e-5);
        check_sums<double>(d, algorithm, threads, 1e-12);
      }
}

#if defined(__AVX2__) && defined(__FMA__)
// The AVX2 F(4x4, 3x3) transforms (8 tiles per vector) against the portable ones, directly:
// they are what `fastest` runs on AVX2-only machines, and an AVX-512 build (this machine's,
// CI's) would otherwise never execute them. Tile counts that are not multiples of 8 (masked
// tails), chunks of several images, every width they accept (W == 4 by its own code), and
// the fused epilogue. Lanes
// past the chunk's tiles must stay untouched (NaN sentinels).
TEST_CASE("AVX2 F(4x4, 3x3) transforms equal the portable ones") {
  namespace w4 = detail::cpu_conv::winograd4;
  using i64 = std::int64_t;
  struct shape {
    int C, M, H, W, count;
  };
  const shape shapes[] = {{3, 5, 32, 32, 2}, {4, 3, 16, 16, 3}, {2, 3, 8, 8, 5}, {2, 2, 4, 8, 3},
                          {3, 2, 12, 8, 1},  {2, 3, 8, 64, 2},  {2, 2, 8, 96, 1}, {3, 4, 20, 16, 2},
                          // W == 4 (one tile per tile row): 9 and 17 images (masked tails),
                          // several tiles per image (rows shared between a tile and the next)
                          {3, 5, 4, 4, 9},   {2, 3, 4, 4, 17},  {4, 3, 8, 4, 3},  {2, 2, 12, 4, 5}};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // planes p (portable) and v (AVX2) of 36 elements, `rows` rows of tpad each, element
  // stride es: equal within 1e-6 of p's largest value on the chunk's `flat` tiles, NaN
  // (untouched) past them and in the padding between element planes
  const auto check_planes = [](const std::vector<float>& p, const std::vector<float>& v, i64 es, i64 rows, i64 tpad,
                               i64 flat) {
    double err = 0, scale = 0;
    bool untouched = true;
    for (i64 i = 0; i < 36 * es; ++i) {
      const i64 r = i % es / tpad, t = i % es % tpad;
      if (r >= rows || t >= flat) untouched = untouched && std::isnan(v[i]);
      else err = std::max(err, double(std::abs(p[i] - v[i]))), scale = std::max(scale, double(std::abs(p[i])));
    }
    CHECK(untouched);
    CHECK(err <= 1e-6 * scale);
  };
  for (const auto& s : shapes) {
    INFO("C ", s.C, " M ", s.M, " ", s.H, "x", s.W, " images ", s.count);
    REQUIRE(w4::avx2::vector_transforms(s.W));
    const i64 tiles = i64{s.H / 4} * (s.W / 4), flat = s.count * tiles, tpad = (flat + 7) / 8 * 8 + 8;
    const i64 plane = i64{s.H} * s.W;
    const auto xs = random_values(s.count * s.C * plane, 11);
    const std::vector<float> x(xs.begin(), xs.end());
    // input transform: V[e][c][t] at e * ves + c * tpad + t (the drivers' padded element stride)
    const i64 ves = detail::cpu_conv::winograd::element_stride(s.C, tpad);
    std::vector<float> vp(static_cast<std::size_t>(36 * ves), nan), vv(vp);
    std::vector<float> row(w4::input_scratch(s.H, s.W, s.count));
    w4::transform_input<float>(x.data(), s.C, s.H, s.W, s.count, vp.data(), tpad, ves);
    w4::avx2::transform_input(x.data(), s.C, s.H, s.W, s.count, vv.data(), tpad, ves, row.data());
    check_planes(vp, vv, ves, s.C, tpad, flat);
    // output transform, plain and with each epilogue: y from M[e][m][t] (padded element stride es)
    const i64 es = detail::cpu_conv::winograd::element_stride(s.M, tpad);
    const auto ms = random_values(36 * es, 12);
    const std::vector<float> mm(ms.begin(), ms.end());
    const auto rs = random_values(s.count * s.M * plane, 13), ss = random_values(s.M, 14);
    const std::vector<float> res(rs.begin(), rs.end()), shift(ss.begin(), ss.end());
    for (int variant = 0; variant < 4; ++variant) {  // none; shift; shift + residual + relu; residual
      INFO("epilogue variant ", variant);
      detail::cpu_conv::conv_epilogue<float> ep{};
      ep.shift = variant == 1 || variant == 2 ? shift.data() : nullptr;
      ep.residual = variant >= 2 ? res.data() : nullptr;
      ep.relu = variant == 2;
      std::vector<float> yp(static_cast<std::size_t>(s.count * s.M * plane)), yv(yp.size(), nan);
      w4::transform_output<float>(mm.data(), es, tpad, s.M, s.H, s.W, s.count, yp.data());
      if (variant > 0) detail::cpu_conv::apply_epilogue(ep, s.count, s.M, plane, yp.data(), ep.residual);
      w4::avx2::transform_output(mm.data(), es, tpad, s.M, s.H, s.W, s.count, yv.data(), variant > 0 ? &ep : nullptr,
                                 ep.residual);
      std::vector<double> want(yp.begin(), yp.end());
      CHECK(relative_error(yv, want) <= 1e-6);  // NaN (a missed store) fails too
      CHECK(std::none_of(yv.begin(), yv.end(), [](float v) { return std::isnan(v); }));
    }
    // output-gradient transform: dM[e][m][t] from dy
    const auto gs = random_values(s.count * s.M * plane, 15);
    const std::vector<float> dy(gs.begin(), gs.end());
    std::vector<float> dp(static_cast<std::size_t>(36 * es), nan), dv(dp);
    w4::transform_output_grad<float>(dy.data(), s.M, s.H, s.W, s.count, dp.data(), es, tpad);
    w4::avx2::transform_output_grad(dy.data(), s.M, s.H, s.W, s.count, dv.data(), es, tpad);
    check_planes(dp, dv, es, s.M, tpad, flat);
  }
}
#endif

TEST_CASE("cache sizes: sysfs spellings, a sysfs layout, the machine's") {
  using detail::parse_cache_size;
  CHECK(parse_cache_size("32K\n") == std::size_t{32} << 10);
  CHECK(parse_cache_size("1024K") == std::size_t{1} << 20);
  CHECK(parse_cache_size("32M") == std::size_t{32} << 20);
  CHECK(parse_cache_size("512") == std::size_t{512});
  for (const char* bad : {"", "K", "0K", "12Q", "-1K", "1.5M", "99999999999999K"}) {
    INFO(bad);
    CHECK_FALSE(parse_cache_size(bad).has_value());
  }
  // a sysfs-like folder: L1 data and instruction, L2, L3 (the instruction cache is skipped)
  namespace fs = std::filesystem;
  const std::string dir = (fs::temp_directory_path() / ("netsplit_caches_" + std::to_string(::getpid()))).string();
  const char* entries[][3] = {{"1", "Data", "48K"}, {"1", "Instruction", "64K"}, {"2", "Unified", "2048K"},
                              {"3", "Unified", "105M"}};
  for (int i = 0; i < 4; ++i) {
    const std::string idx = dir + "/index" + std::to_string(i);
    fs::create_directories(idx);
    const char* names[] = {"level", "type", "size"};
    for (int k = 0; k < 3; ++k) {
      std::FILE* f = std::fopen((idx + "/" + names[k]).c_str(), "w");
      REQUIRE(f);
      std::fprintf(f, "%s\n", entries[i][k]);
      std::fclose(f);
    }
  }
  const auto c = detail::caches_from_sysfs(dir);
  REQUIRE(c.has_value());
  CHECK(c->l1d == std::size_t{48} << 10);
  CHECK(c->l2 == std::size_t{2} << 20);
  CHECK(c->l3 == std::size_t{105} << 20);
  CHECK_FALSE(detail::caches_from_sysfs(dir + "/missing").has_value());
  fs::remove_all(dir);

  const auto& m = machine_caches();
  INFO("machine caches from ", m.source, ": L1d ", m.l1d, " L2 ", m.l2, " L3 ", m.l3);
  CHECK(m.l1d >= 4096);
  CHECK(m.l2 >= m.l1d);
  cpu_context ctx(1);
  CHECK(ctx.conv_chunk_bytes() == m.l2 / 4 * 3);
  ctx.set_caches({48 << 10, 2 << 20, 32 << 20});
  CHECK(std::string(ctx.caches().source) == "set");
  CHECK(ctx.conv_chunk_bytes() == std::size_t{1536} << 10);
  ctx.set_conv_chunk_bytes(100000);
  CHECK(ctx.conv_chunk_bytes() == 100000);
  ctx.set_conv_chunk_bytes(0);
  CHECK(ctx.conv_chunk_bytes() == std::size_t{1536} << 10);
}

TEST_CASE("the direct engine's chunks follow the context's budget, not a constant") {
  // ResNet's 16->32 stride-2 backward on 32x32 maps: per image, the input's 4 phase planes, the
  // gradient rows and the input gradient's 4 phase buffers, each of g.block positions
  const conv2d_desc d{128, 16, 32, 32, 32, 3, 2, 1};
  const detail::cpu_conv::geometry g(d);
  const std::int64_t values = 16 * 4 + 32 + 16 * 4;
  const std::int64_t per_image = g.block * values * 4;
  for (std::size_t budget : {std::size_t{768} << 10, std::size_t{1536} << 10, std::size_t{384} << 10}) {
    INFO(budget);
    const int nb = detail::cpu_conv::chunk_images(g, values, sizeof(float), 64, budget);
    CHECK(nb == std::min<std::int64_t>(64, static_cast<std::int64_t>(budget) / per_image));
    CHECK(nb * per_image <= static_cast<std::int64_t>(budget));
    CHECK((nb + 1) * per_image > static_cast<std::int64_t>(budget));
    // doubles take twice the bytes: half the images
    CHECK(detail::cpu_conv::chunk_images(g, values, sizeof(double), 64, budget) == std::max(1, nb / 2));
  }
  // at least one image, at most the thread's share
  CHECK(detail::cpu_conv::chunk_images(g, values, sizeof(float), 64, 1) == 1);
  CHECK(detail::cpu_conv::chunk_images(g, values, sizeof(float), 3, std::size_t{1} << 30) == 3);
  // the context's budget is three quarters of the L2 it was given
  cpu_context ctx(1);
  ctx.set_caches({32 << 10, 512 << 10, 8 << 20});
  CHECK(ctx.conv_chunk_bytes() == std::size_t{384} << 10);
}

TEST_CASE("Winograd chunk plans: within the budget, at least the blocks asked, results independent of the plan") {
  // {batch, in, out, h, w, k, s, p}: plan_chunks only reads the batch
  const conv2d_desc d{128, 512, 512, 2, 2, 3, 1, 1};
  // F(2x2) on 2x2 maps: 1 tile per image; 16 elements x (512 + 512) rows x 4 bytes = 64 KiB per image
  const auto small = detail::cpu_conv::winograd::plan_chunks(d, 2, 768 << 10, 0, 1024, 4, 48, 1, 16);
  CHECK(small.images == 12);  // the budget alone: 12 images, 12 tiles in a row of 48
  CHECK(small.tpad == 48);
  const auto blocks = detail::cpu_conv::winograd::plan_chunks(d, 1, 768 << 10, 2, 1024, 4, 48, 1, 16);
  CHECK(blocks.images == 96);  // two blocks of 48 tiles (one thread: all 128 images are its share)
  CHECK(blocks.tpad == 96);
  // eight blocks asked, but a thread's share is 64 images; of 32..64, 48 fill whole blocks
  CHECK(detail::cpu_conv::winograd::plan_chunks(d, 2, 768 << 10, 8, 1024, 4, 48, 1, 16).images == 48);
  // 16->16 32x32 F(4x4): 64 tiles, 36 x 32 rows x 64 x 4 bytes = 288 KiB per image: the budget rules
  const conv2d_desc r{128, 16, 16, 32, 32, 3, 1, 1};
  const auto rp = detail::cpu_conv::winograd::plan_chunks(r, 2, 768 << 10, 2, 32, 4, 48, 64, 36);
  CHECK(rp.images == 2);
  CHECK(rp.images * 36 * 32 * 64 * 4 <= 768 << 10);

  // forward and input gradient compute each tile alone: bit-identical under any plan; the
  // weight gradient sums over chunks, so it only rounds differently
  // (the direct engine's chunks follow the same budget: its stride-2 shape below, every algorithm
  // falling back to it there, and the direct algorithm on all)
  for (const conv2d_desc c : {conv2d_desc{24, 64, 64, 4, 4, 3, 1, 1}, conv2d_desc{24, 32, 48, 2, 2, 3, 1, 1},
                              conv2d_desc{24, 32, 32, 8, 8, 3, 1, 1}, conv2d_desc{9, 16, 16, 32, 32, 3, 1, 1},
                              conv2d_desc{24, 16, 32, 16, 16, 3, 2, 1}}) {
    INFO(describe(c));
    const auto xs = random_values(std::int64_t{c.batch} * c.in_channels * c.in_height * c.in_width, 7);
    const auto ws = random_values(c.weight_count(), 8);
    const auto dys = random_values(std::int64_t{c.batch} * c.out_channels * c.out_height() * c.out_width(), 9);
    std::vector<float> x(xs.begin(), xs.end()), w(ws.begin(), ws.end()), dy(dys.begin(), dys.end());
    for (auto alg : {cpu_conv_algorithm::fastest, cpu_conv_algorithm::winograd_2x2, cpu_conv_algorithm::winograd_4x4,
                     cpu_conv_algorithm::direct}) {
      INFO(to_string(alg));
      cpu_context tight(2), wide(2);
      tight.set_conv_algorithm(alg);
      wide.set_conv_algorithm(alg);
      tight.set_conv_chunk_bytes(16 << 10);
      tight.set_winograd_min_blocks(0);
      wide.set_conv_chunk_bytes(8 << 20);
      wide.set_winograd_min_blocks(4);
      const auto a = run_engine(tight, c, x, w, dy);
      const auto b = run_engine(wide, c, x, w, dy);
      CHECK(std::memcmp(a.y.data(), b.y.data(), a.y.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(a.dx.data(), b.dx.data(), a.dx.size() * sizeof(float)) == 0);
      std::vector<double> dw1(a.dw.begin(), a.dw.end());
      CHECK(relative_error(b.dw, dw1) <= 1e-5);
    }
  }
}
