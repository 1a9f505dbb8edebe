// Layers and models: batch-norm semantics, architecture fidelity (parameter and
// multiply-add counts of the reference ResNet20), compile-time concept checks including
// rejected compositions, parameter naming, and contract errors on bad input.
#include <doctest/doctest.h>

#include <span>

#include <cmath>
#include <string>
#include <vector>

#include "netsplit/netsplit.hpp"

using namespace netsplit;
using cpu = cpu_backend;
using ftensor = tensor<float, cpu>;

// ---- compile-time checks: every shipped spec, layer and model models its concepts -------------
static_assert(LayerSpec<conv3x3<16>> && LayerSpec<conv1x1<8, 2>> && LayerSpec<batch_norm> &&
              LayerSpec<relu> && LayerSpec<global_avg_pool> && LayerSpec<linear<10>> &&
              LayerSpec<basic_block<16, 1>> && LayerSpec<basic_block<32, 2, shortcut_b>> &&
              LayerSpec<sequence<conv3x3<4>, relu>>);
static_assert(Layer<conv2d_layer<float, cpu, fmap_shape{3, 32, 32}, 16, 3, 1, 1>>);
static_assert(HasParameters<conv2d_layer<float, cpu, fmap_shape{3, 32, 32}, 16, 3, 1, 1>>);
static_assert(Initializable<conv2d_layer<float, cpu, fmap_shape{3, 32, 32}, 16, 3, 1, 1>>);
static_assert(CountsMultAdds<conv2d_layer<float, cpu, fmap_shape{3, 32, 32}, 16, 3, 1, 1>>);
static_assert(Layer<batch_norm_layer<float, cpu, fmap_shape{16, 8, 8}>> &&
              HasParameters<batch_norm_layer<float, cpu, fmap_shape{16, 8, 8}>> &&
              HasBuffers<batch_norm_layer<float, cpu, fmap_shape{16, 8, 8}>>);
static_assert(Layer<relu_layer<float, cpu, fmap_shape{16, 8, 8}>> &&
              !HasParameters<relu_layer<float, cpu, fmap_shape{16, 8, 8}>>);
static_assert(Layer<global_avg_pool_layer<double, cpu, fmap_shape{16, 8, 8}>>);
static_assert(Layer<linear_layer<float, cpu, fmap_shape{64, 1, 1}, 100>> &&
              HasParameters<linear_layer<float, cpu, fmap_shape{64, 1, 1}, 100>>);
static_assert(Layer<identity_shortcut_layer<float, cpu, fmap_shape{16, 8, 8}>>);
static_assert(Layer<shortcut_a_layer<float, cpu, fmap_shape{16, 32, 32}, 32, 2>> &&
              !HasParameters<shortcut_a_layer<float, cpu, fmap_shape{16, 32, 32}, 32, 2>>);
static_assert(Layer<shortcut_b_layer<float, cpu, fmap_shape{16, 32, 32}, 32, 2>> &&
              HasBuffers<shortcut_b_layer<float, cpu, fmap_shape{16, 32, 32}, 32, 2>>);
static_assert(Layer<basic_block_layer<float, cpu, fmap_shape{16, 32, 32}, 32, 2, shortcut_a>> &&
              HasParameters<basic_block_layer<float, cpu, fmap_shape{16, 32, 32}, 32, 2, shortcut_b>>);
static_assert(ShortcutPolicy<shortcut_a> && ShortcutPolicy<shortcut_b>);
static_assert(Network<resnet20<>> && Network<resnet20<cpu, 10>> && Network<resnet32<cpu, 100, double>> &&
              Network<resnet20<cpu, 100, float, shortcut_b>>);
static_assert(resnet20<>::output_shape == fmap_shape{100, 1, 1});
static_assert(resnet56<>::block_count == 27);

// ---- ... and broken ones do not -------------------------------------------------------------------
struct spec_without_shape_rule {
  static constexpr const char* kind = "broken";
};
static_assert(!LayerSpec<spec_without_shape_rule>);
struct layer_without_backward {
  using scalar_type = float;
  using backend_type = cpu;
  static constexpr fmap_shape input_shape{1, 1, 1}, output_shape{1, 1, 1};
  const ftensor& forward(cpu_context&, const ftensor& x, phase) { return x; }
  int in_channels() const { return 1; }
  int out_channels() const { return 1; }
};
static_assert(!Layer<layer_without_backward>);
static_assert(!ShortcutPolicy<int>);
static_assert(!Network<conv2d_layer<float, cpu, fmap_shape{3, 32, 32}, 16, 3, 1, 1>>);

// ---- shape rules of composition, tested through the concept -------------------------------------
static_assert(Composable<fmap_shape{3, 32, 32}, conv3x3<16>, batch_norm, relu, global_avg_pool, linear<10>>);
static_assert(!Composable<fmap_shape{3, 32, 32}, conv3x3<16>, linear<10>>,
              "a linear layer needs a 1x1 input: forgot global_avg_pool");
static_assert(!Composable<fmap_shape{16, 7, 7}, basic_block<32, 2>>, "stride 2 on an odd size");
static_assert(!Composable<fmap_shape{32, 8, 8}, basic_block<16, 2, shortcut_a>>,
              "option A cannot shrink the width");
static_assert(Composable<fmap_shape{32, 8, 8}, basic_block<16, 2, shortcut_b>>);
static_assert(!Composable<fmap_shape{3, 2, 2}, conv2d<4, 5, 1, 0>>, "kernel larger than the input");
static_assert(!Composable<fmap_shape{3, 32, 32}, global_avg_pool, conv2d<8, 3, 1, 0>>);
static_assert(ComposableWith<relu, fmap_shape{4, 4, 4}>);

TEST_CASE("ResNet20 matches the reference architecture's counts") {
  resnet20<cpu, 100, float, shortcut_a> a(1);
  resnet20<cpu, 100, float, shortcut_b> b(1);
  CHECK(count_parameters(a) == 275572);
  CHECK(count_parameters(b) == 278324);
  CHECK(a.mult_adds_per_image() == 40550400);
  resnet20<cpu, 10> ten(1);
  CHECK(count_parameters(ten) == 275572 - 90 * 64 - 90);
  resnet56<cpu, 100> deep(1);
  CHECK(deep.body().size() == 3 + 27 + 2);
}

TEST_CASE("parameter and buffer names follow the reference PyTorch definition") {
  resnet20<cpu, 100, float, shortcut_b> net(1);
  std::vector<std::string> names, buffers;
  net.visit_parameters([&](const std::string& n, auto& w, auto& g) {
    names.push_back(n);
    CHECK(w.shape() == g.shape());
  });
  net.visit_buffers([&](const std::string& n, auto&) { buffers.push_back(n); });
  REQUIRE(names.size() == 1 + 2 + 9 * 6 + 2 * 3 + 2);
  CHECK(names.front() == "conv1.weight");
  CHECK(names[1] == "bn1.weight");
  CHECK(names[3] == "layer1.0.conv1.weight");
  CHECK(std::find(names.begin(), names.end(), "layer2.0.shortcut.conv.weight") != names.end());
  CHECK(std::find(names.begin(), names.end(), "layer3.2.bn2.bias") != names.end());
  CHECK(names.back() == "linear.bias");
  CHECK(buffers.front() == "bn1.running_mean");
  CHECK(buffers.size() == 2 * (1 + 9 * 2 + 2));
}

TEST_CASE("He initialisation: conv weights have std sqrt(2/fan_in), BN starts at identity") {
  resnet20<> net(3);
  auto& conv = net.body().get<4>().conv2;  // layer1.1.conv2: fan_in 16*9
  const auto w = conv.weight().to_host();
  double sq = 0;
  for (float v : w) sq += double(v) * v;
  CHECK(std::sqrt(sq / w.size()) == doctest::Approx(std::sqrt(2.0 / 144)).epsilon(0.05));
  const auto gamma = net.body().get<1>().gamma().to_host();
  const auto beta = net.body().get<1>().beta().to_host();
  for (float g : gamma) CHECK(g == 1.0f);
  for (float b : beta) CHECK(b == 0.0f);
  resnet20<> same(3), other(4);
  CHECK(same.body().get<4>().conv2.weight().to_host() == w);
  CHECK(other.body().get<4>().conv2.weight().to_host() != w);
}

TEST_CASE("batch_norm: train uses batch statistics and updates running averages") {
  cpu_context ctx(2);
  batch_norm_layer<double, cpu, fmap_shape{2, 3, 3}> bn;
  rng r(1);
  tensor<double, cpu> x({4, 2, 3, 3});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = 3.0 + 2.0 * r.normal() + (i % 18 >= 9 ? 5 : 0);
  const auto y = bn.forward(ctx, x, phase::train);
  for (int c = 0; c < 2; ++c) {
    double s = 0, sq = 0, xs = 0, xsq = 0;
    for (int n = 0; n < 4; ++n)
      for (int i = 0; i < 9; ++i) {
        const auto k = (n * 2 + c) * 9 + i;
        s += y.data()[k];
        sq += y.data()[k] * y.data()[k];
        xs += x.data()[k];
        xsq += x.data()[k] * x.data()[k];
      }
    CHECK(s / 36 == doctest::Approx(0).epsilon(1e-9).scale(1));
    CHECK(sq / 36 == doctest::Approx(1).epsilon(1e-4));  // eps=1e-5 shrinks it a little
    const double mean = xs / 36, unbiased = (xsq - 36 * mean * mean) / 35;
    CHECK(bn.running_mean().data()[c] == doctest::Approx(0.1 * mean));
    CHECK(bn.running_var().data()[c] == doctest::Approx(0.9 + 0.1 * unbiased));
  }
  // Eval: running statistics, independent of the batch's own statistics.
  const auto rm = bn.running_mean().data()[0], rv = bn.running_var().data()[0];
  const auto ye = bn.forward(ctx, x, phase::eval);
  CHECK(ye.data()[0] == doctest::Approx((x.data()[0] - rm) / std::sqrt(rv + 1e-5)));
  CHECK(bn.running_mean().data()[0] == rm);  // eval leaves them alone
  tensor<double, cpu> first({1, 2, 3, 3});
  std::copy(x.data(), x.data() + 18, first.data());
  const auto y1 = bn.forward(ctx, first, phase::eval);
  CHECK(y1.data()[0] == doctest::Approx(ye.data()[0]));  // per-sample in eval mode
}

TEST_CASE("batch-norm channel sums (cpu_bn): a plain double loop's, over vector bodies, tails, masks and flushes") {
  // The kernels sum in lanes of 64-byte groups (two 32-byte halves where the target has no
  // 64-byte registers), flushed into double; run lengths below, at and past a group, with
  // tails, runs apart by a stride, and enough values per lane to flush more than once.
  auto check = [](auto zero) {
    using T = decltype(zero);
    rng r(11);
    for (const std::int64_t n : {1, 7, 16, 17, 40, 100, 1024})
      for (const std::int64_t runs : {1, 3, 40}) {
        const std::int64_t stride = n + 3, size = runs * stride;
        std::vector<T> dy(size), y(size), x(size), gout(size, T(-7));
        for (std::int64_t i = 0; i < size; ++i) {
          dy[i] = static_cast<T>(r.normal());
          y[i] = static_cast<T>(r.normal());
          x[i] = static_cast<T>(1.5 + r.normal());
        }
        const T shift = T(1.25), mean = T(1.5);
        double e1 = 0, e2 = 0, scale = 0;
        for (std::int64_t k = 0; k < runs; ++k)
          for (std::int64_t i = 0; i < n; ++i) {
            const double v = static_cast<double>(x[k * stride + i] - shift);
            e1 += v;
            e2 += v * v;
            scale += std::abs(v) + v * v;
          }
        double s1 = 0, s2 = 0;
        detail::cpu_bn::shifted_sums(x.data(), runs, stride, n, shift, s1, s2);
        const double tol = (sizeof(T) == 4 ? 2e-5 : 1e-13) * scale;
        CHECK(std::abs(s1 - e1) <= tol);
        CHECK(std::abs(s2 - e2) <= tol);
        for (const bool masked : {false, true}) {
          double g1 = 0, g2 = 0, gscale = 0;
          for (std::int64_t k = 0; k < runs; ++k)
            for (std::int64_t i = 0; i < n; ++i) {
              const std::int64_t j = k * stride + i;
              const T g = !masked || y[j] > T(0) ? dy[j] : T(0);
              g1 += g;
              g2 += static_cast<double>(g) * static_cast<double>(x[j] - mean);
              gscale += std::abs(static_cast<double>(g)) * (1 + std::abs(static_cast<double>(x[j] - mean)));
            }
          double a1 = 0, a2 = 0;
          detail::cpu_bn::gradient_sums(dy.data(), masked ? y.data() : nullptr, x.data(), runs, stride, n, mean, a1, a2,
                                        gout.data());
          const double gtol = (sizeof(T) == 4 ? 2e-5 : 1e-13) * gscale;
          CHECK(std::abs(a1 - g1) <= gtol);
          CHECK(std::abs(a2 - g2) <= gtol);
          bool copied = true;  // the (masked) gradient where runs are; the gaps between them untouched
          for (std::int64_t j = 0; j < size; ++j)
            copied = copied && gout[j] == (j % stride < n ? (!masked || y[j] > T(0) ? dy[j] : T(0)) : T(-7));
          CHECK(copied);
        }
      }
  };
  check(0.0f);
  check(0.0);
}

TEST_CASE("fused batch_norm + relu (+ residual) equals batch_norm, then the residual sum, then relu") {
  // 5 channels of 6x6 = 36 values: vector bodies and scalar tails; both modes; with and
  // without the residual; forward outputs, running statistics and every gradient.
  cpu_context ctx(2);
  rng r(4);
  ftensor x({3, 5, 6, 6}), res({3, 5, 6, 6}), dy({3, 5, 6, 6});
  for (auto* t : {&x, &res, &dy})
    for (std::int64_t i = 0; i < t->numel(); ++i) t->data()[i] = static_cast<float>(r.normal());
  auto close = [](const ftensor& a, const ftensor& b) {
    REQUIRE(a.shape() == b.shape());
    double worst = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i)
      worst = std::max(worst, std::abs(double(a.data()[i]) - b.data()[i]) / std::max(1.0, std::abs(double(b.data()[i]))));
    return worst;
  };
  for (const phase p : {phase::train, phase::eval})
    for (const bool with_residual : {false, true}) {
      CAPTURE(p == phase::train);
      CAPTURE(with_residual);
      using bn_t = batch_norm_layer<float, cpu, fmap_shape{5, 6, 6}>;
      bn_t fused, plain;
      for (bn_t* b : {&fused, &plain})
        for (int c = 0; c < 5; ++c) {  // same non-trivial parameters and statistics in both
          rng q(100 + c);
          b->gamma().data()[c] = static_cast<float>(1 + 0.3 * q.normal());
          b->beta().data()[c] = static_cast<float>(0.3 * q.normal());
          b->running_mean().data()[c] = static_cast<float>(0.2 * q.normal());
          b->running_var().data()[c] = static_cast<float>(0.5 + q.uniform());
        }
      relu_layer<float, cpu, fmap_shape{5, 6, 6}> act;
      const auto& yf = fused.forward_relu(ctx, x, p, with_residual ? &res : nullptr);
      ftensor sum = plain.forward(ctx, x, p);
      if (with_residual) cpu::axpy(ctx, sum.numel(), 1.0f, res.data(), sum.data());
      const auto& yp = act.forward(ctx, sum, p);
      CHECK(close(yf, yp) < 1e-6);
      CHECK(close(fused.running_mean(), plain.running_mean()) == 0);
      CHECK(close(fused.running_var(), plain.running_var()) == 0);
      ftensor dres;  // with the residual: its gradient, dy where the output is positive
      const auto& dxf = with_residual ? fused.backward_add_relu(ctx, dy, dres) : fused.backward_relu(ctx, dy);
      if (!with_residual) CHECK(fused.output_grad() == &dy);
      const auto& dsum = act.backward(ctx, dy);
      const auto& dxp = plain.backward(ctx, dsum);
      CHECK(close(dxf, dxp) < 1e-5);
      if (with_residual) {  // the same sums of the same values: bit for bit
        CHECK(close(dres, dsum) == 0);
        CHECK(close(dxf, dxp) == 0);
      }
      fused.visit_parameters([&](const std::string& n, auto&, auto& gf) {
        plain.visit_parameters([&](const std::string& m, auto&, auto& gp) {
          if (n == m) CHECK(close(gf, gp) < 1e-5);
        });
      });
    }
}

TEST_CASE("sync batch_norm on one process (batch_norm_sum set, nothing to add) equals the fused kernels") {
  // The split operations of sync batch norm (shifted sums, forward from sums, backward sums,
  // backward from sums) against batch_norm(_relu)_forward_train / _backward: outputs,
  // running statistics, dx, dgamma, dbeta; plain and with the fused ReLU (+ residual).
  auto run = [](auto zero) {
    using T = decltype(zero);
    using tt = tensor<T, cpu>;
    cpu_context plain_ctx(2), sync_ctx(2);
    int sums = 0;
    sync_ctx.batch_norm_sum = [&](std::span<double>) { ++sums; };  // one process: the sums are its own
    rng r(9);
    tt x({4, 5, 6, 6}), res({4, 5, 6, 6}), dy({4, 5, 6, 6});
    for (auto* t : {&x, &res, &dy})
      for (std::int64_t i = 0; i < t->numel(); ++i) t->data()[i] = static_cast<T>(0.7 + r.normal());
    auto close = [](const tt& a, const tt& b) {
      REQUIRE(a.shape() == b.shape());
      double worst = 0;
      for (std::int64_t i = 0; i < a.numel(); ++i)
        worst = std::max(worst, std::abs(double(a.data()[i]) - double(b.data()[i])) / std::max(1.0, std::abs(double(b.data()[i]))));
      return worst;
    };
    const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
    for (const int form : {0, 1, 2}) {  // plain, relu, relu + residual
      CAPTURE(form);
      using bn_t = batch_norm_layer<T, cpu, fmap_shape{5, 6, 6}>;
      bn_t a, b;
      for (bn_t* l : {&a, &b})
        for (int c = 0; c < 5; ++c) {
          rng q(200 + c);
          l->gamma().data()[c] = static_cast<T>(1 + 0.3 * q.normal());
          l->beta().data()[c] = static_cast<T>(0.3 * q.normal());
          l->running_mean().data()[c] = static_cast<T>(0.2 * q.normal());
        }
      const tt* rp = form == 2 ? &res : nullptr;
      const auto& ya = form == 0 ? a.forward(plain_ctx, x, phase::train) : a.forward_relu(plain_ctx, x, phase::train, rp);
      const auto& yb = form == 0 ? b.forward(sync_ctx, x, phase::train) : b.forward_relu(sync_ctx, x, phase::train, rp);
      CHECK(close(ya, yb) < tol);
      CHECK(close(a.running_mean(), b.running_mean()) < tol);
      CHECK(close(a.running_var(), b.running_var()) < tol);
      tt dra, drb;  // form 2: the residual's gradient
      const auto& dxa = form == 0 ? a.backward(plain_ctx, dy)
                        : form == 1 ? a.backward_relu(plain_ctx, dy)
                                    : a.backward_add_relu(plain_ctx, dy, dra);
      const auto& dxb = form == 0 ? b.backward(sync_ctx, dy)
                        : form == 1 ? b.backward_relu(sync_ctx, dy)
                                    : b.backward_add_relu(sync_ctx, dy, drb);
      CHECK(close(dxa, dxb) < tol);
      if (form == 2) CHECK(close(dra, drb) == 0);
      a.visit_parameters([&](const std::string& n, auto&, auto& ga) {
        b.visit_parameters([&](const std::string& m, auto&, auto& gb) {
          if (n == m) CHECK(close(ga, gb) < tol);
        });
      });
      // eval mode never sums over processes
      const int before = sums;
      b.forward(sync_ctx, x, phase::eval);
      CHECK(sums == before);
    }
    CHECK(sums == 6);  // a forward and a backward sum per training pass
  };
  run(float{});
  run(double{});
}

static_assert(ConvWithSums<cpu, float> && ConvWithSums<cpu, double>);

TEST_CASE("batch_norm after a convolution takes its statistics from it: equals the two layers run separately") {
  // forward_relu_after against conv.forward then forward_relu: outputs, running statistics,
  // input and parameter gradients; train (statistics from conv2d_forward_sums, shifted by the
  // running mean) and eval (no statistics); a plain context and sync batch norm on one
  // process; F(4x4) vector transforms (16->16 32x32, 8x8), a stride-2 convolution (direct).
  auto run = [](auto zero, auto in_shape, auto out_width, auto stride) {
    using T = decltype(zero);
    using tt = tensor<T, cpu>;
    constexpr fmap_shape In = decltype(in_shape)::value;
    constexpr int Out = decltype(out_width)::value, S = decltype(stride)::value;
    using conv_t = conv2d_layer<T, cpu, In, Out, 3, S, 1>;
    using bn_t = batch_norm_layer<T, cpu, conv_t::output_shape>;
    const double tol = sizeof(T) == 4 ? 2e-5 : 1e-11;
    auto close = [](const tt& a, const tt& b) {  // max |a - b| / max |b|
      REQUIRE(a.shape() == b.shape());
      double worst = 0, scale = 1e-30;
      for (std::int64_t i = 0; i < a.numel(); ++i) {
        worst = std::max(worst, std::abs(double(a.data()[i]) - double(b.data()[i])));
        scale = std::max(scale, std::abs(double(b.data()[i])));
      }
      return worst / scale;
    };
    rng r(21);
    tt x({6, In.channels, In.height, In.width}), res({6, Out, conv_t::output_shape.height, conv_t::output_shape.width});
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<T>(std::max(0.0, r.normal()));
    for (std::int64_t i = 0; i < res.numel(); ++i) res.data()[i] = static_cast<T>(r.normal());
    for (const bool sync : {false, true})
      for (const phase p : {phase::train, phase::eval})
        for (const bool with_residual : {false, true}) {
          CAPTURE(sync);
          CAPTURE(p == phase::train);
          CAPTURE(with_residual);
          cpu_context ctx(2);
          if (sync) ctx.batch_norm_sum = [](std::span<double>) {};
          conv_t ca, cb;
          bn_t ba, bb;
          rng ia(5), ib(5);  // the same weights in both
          ca.initialize(ia);
          cb.initialize(ib);
          for (bn_t* l : {&ba, &bb})
            for (int c = 0; c < Out; ++c) {
              rng q(300 + c);
              l->gamma().data()[c] = static_cast<T>(1 + 0.3 * q.normal());
              l->beta().data()[c] = static_cast<T>(0.3 * q.normal());
              l->running_mean().data()[c] = static_cast<T>(0.5 * q.normal());
              l->running_var().data()[c] = static_cast<T>(0.5 + q.uniform());
            }
          const tt* rp = with_residual ? &res : nullptr;
          const auto& ya = ba.forward_relu_after(ctx, ca, x, p, rp);
          const auto& yb = bb.forward_relu(ctx, cb.forward(ctx, x, p), p, rp);
          CHECK(close(ca.output(), cb.output()) == 0);
          CHECK(close(ya, yb) < tol);
          CHECK(close(ba.running_mean(), bb.running_mean()) < tol);
          CHECK(close(ba.running_var(), bb.running_var()) < tol);
          if (with_residual) continue;  // the block masks the residual form's gradient itself
          tt dy(ya.shape());
          for (std::int64_t i = 0; i < dy.numel(); ++i) dy.data()[i] = static_cast<T>(r.normal());
          CHECK(close(ca.backward(ctx, ba.backward_relu(ctx, dy)), cb.backward(ctx, bb.backward_relu(ctx, dy))) < tol);
          CHECK(close(ca.weight_grad(), cb.weight_grad()) < tol);
          ba.visit_parameters([&](const std::string& n, auto&, auto& ga) {
            bb.visit_parameters([&](const std::string& m, auto&, auto& gb) {
              if (n == m) CHECK(close(ga, gb) < tol);
            });
          });
        }
  };
  run(float{}, std::integral_constant<fmap_shape, fmap_shape{16, 32, 32}>{}, std::integral_constant<int, 16>{},
      std::integral_constant<int, 1>{});
  run(float{}, std::integral_constant<fmap_shape, fmap_shape{64, 8, 8}>{}, std::integral_constant<int, 64>{},
      std::integral_constant<int, 1>{});
  run(float{}, std::integral_constant<fmap_shape, fmap_shape{16, 32, 32}>{}, std::integral_constant<int, 32>{},
      std::integral_constant<int, 2>{});
  run(double{}, std::integral_constant<fmap_shape, fmap_shape{5, 8, 8}>{}, std::integral_constant<int, 7>{},
      std::integral_constant<int, 1>{});
}

TEST_CASE("batch_norm with batch size 1: handled while a channel has >1 value, else rejected") {
  cpu_context ctx(1);
  batch_norm_layer<float, cpu, fmap_shape{3, 4, 4}> spatial;
  ftensor one({1, 3, 4, 4}, 0.f);
  one.data()[0] = 1.f;
  CHECK_NOTHROW(spatial.forward(ctx, one, phase::train));
  batch_norm_layer<float, cpu, fmap_shape{3, 1, 1}> flat;
  ftensor single({1, 3, 1, 1}, 1.f);
  CHECK_THROWS_WITH_AS(flat.forward(ctx, single, phase::train),
                       doctest::Contains("more than one value per channel"), contract_violation);
  CHECK_NOTHROW(flat.forward(ctx, single, phase::eval));
}

TEST_CASE("contract errors: wrong shapes, channel mismatch, bad labels, misuse") {
  cpu_context ctx(1);
  {  // a batch norm whose width no longer matches the convolution before it (a split gone wrong)
    conv2d_layer<float, cpu, fmap_shape{4, 8, 8}, 6, 3, 1, 1> conv;
    batch_norm_layer<float, cpu, fmap_shape{6, 8, 8}> bn;
    bn.set_width(5);
    ftensor x({2, 4, 8, 8}, 1.f);
    const auto before = bn.running_mean().to_host();
    CHECK_THROWS_WITH_AS(bn.forward_relu_after(ctx, conv, x, phase::train),
                         doctest::Contains("5 channels after a convolution of 6"), contract_violation);
    CHECK(bn.running_mean().to_host() == before);  // nothing updated
  }
  resnet20<cpu, 10> net(1);
  ftensor wrong_size({2, 3, 28, 28}, 0.f);
  CHECK_THROWS_WITH_AS(net.forward(ctx, wrong_size, phase::eval),
                       doctest::Contains("expects spatial size 32x32, got 28x28"), contract_violation);
  ftensor wrong_channels({2, 4, 32, 32}, 0.f);
  CHECK_THROWS_WITH_AS(net.forward(ctx, wrong_channels, phase::eval),
                       doctest::Contains("expects 3 input channels, got 4"), contract_violation);
  ftensor flat({2, 3072}, 0.f);
  CHECK_THROWS_WITH_AS(net.forward(ctx, flat, phase::eval), doctest::Contains("rank 4"), contract_violation);
  ftensor empty({0, 3, 32, 32});
  CHECK_THROWS_AS(net.forward(ctx, empty, phase::eval), contract_violation);

  ftensor x({2, 3, 32, 32}, 0.1f);
  const auto& logits = net.forward(ctx, x, phase::train);
  softmax_cross_entropy<float, cpu> loss;
  const std::vector<int> bad{3, 10};
  CHECK_THROWS_WITH_AS(loss.forward(ctx, logits, bad), doctest::Contains("label 10 of sample 1"),
                       contract_violation);
  const std::vector<int> short_labels{1};
  CHECK_THROWS_AS(loss.forward(ctx, logits, short_labels), contract_violation);
  ftensor wrong_grad({2, 7, 1, 1}, 0.f);
  CHECK_THROWS_AS(net.backward(ctx, wrong_grad), contract_violation);

  conv2d_layer<float, cpu, fmap_shape{3, 8, 8}, 4, 3, 1, 1> fresh;
  ftensor g({1, 4, 8, 8}, 0.f);
  CHECK_THROWS_WITH_AS(fresh.backward(ctx, g), doctest::Contains("before forward"), contract_violation);
  shortcut_a_layer<float, cpu, fmap_shape{2, 4, 4}, 4, 2> a;
  CHECK_THROWS_WITH_AS(a.set_map(2, 4, {{0, 0, 1.f}, {1, 4, 1.f}}), doctest::Contains("writes output channel 4"),
                       contract_violation);
}

TEST_CASE("ResNet20 forward agrees for 1 and 2 threads (eval: identical); training step lowers the loss") {
  resnet20<cpu, 10> net1(5), net2(5);
  cpu_context one(1), two(2);
  rng r(2);
  ftensor x({8, 3, 32, 32});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>(r.normal());
  CHECK(net1.forward(one, x, phase::eval).to_host() == net2.forward(two, x, phase::eval).to_host());
  // train: the blocks' batch statistics are summed per thread inside the convolutions
  // (conv2d_forward_sums), so, as every weight gradient, they depend on the thread count in
  // their last bits
  {
    const auto a = net1.forward(one, x, phase::train).to_host(), b = net2.forward(two, x, phase::train).to_host();
    double worst = 0, scale = 1e-30;
    for (std::size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
      scale = std::max(scale, std::abs(double(b[i])));
    }
    CHECK(worst / scale < 1e-5);
  }

  std::vector<int> labels{0, 1, 2, 3, 4, 5, 6, 7};
  softmax_cross_entropy<float, cpu> loss;
  std::vector<ftensor> momentum;
  net2.visit_parameters([&](const std::string&, auto& w, auto&) { momentum.emplace_back(w.shape(), 0.f); });
  const double first = loss.forward(two, net2.forward(two, x, phase::train), labels);
  double last = first;
  for (int step = 0; step < 5; ++step) {
    net2.backward(two, loss.backward());
    std::size_t k = 0;
    net2.visit_parameters([&](const std::string&, auto& w, auto& g) {
      auto& m = momentum[k++];
      cpu::sgd_step(two, w.numel(), w.data(), g.data(), m.data(), 0.05f, 0.9f, 0.f, false);
    });
    last = loss.forward(two, net2.forward(two, x, phase::train), labels);
  }
  CHECK(last < 0.5 * first);
}

namespace {
/// Running statistics and BN parameters away from their initial values, seeded, so folding
/// exercises every term.
template <class Net>
void perturb_batch_norms(Net& net, std::uint64_t seed) {
  rng r(seed);
  auto set = [&](auto& t, double base, double spread, bool positive) {
    auto v = t.to_host();
    for (auto& x : v) {
      const double d = base + spread * r.normal();
      x = static_cast<typename std::decay_t<decltype(v)>::value_type>(positive ? std::abs(d) + 0.2 : d);
    }
    t.from_host(v);
  };
  net.visit_parameters([&](const std::string& name, auto& p, auto&) {
    if (name.find("bn") == std::string::npos) return;
    if (name.ends_with(".weight")) set(p, 1.0, 0.3, false);
    if (name.ends_with(".bias")) set(p, 0.0, 0.2, false);
  });
  net.visit_buffers([&](const std::string& name, auto& b) {
    if (name.ends_with("running_mean")) set(b, 0.0, 0.3, false);
    if (name.ends_with("running_var")) set(b, 1.0, 0.5, true);
  });
}
template <class T>
double max_rel(const std::vector<T>& got, const std::vector<T>& want) {
  double diff = 0, scale = 1e-30;
  for (std::size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::abs(double(got[i]) - double(want[i])));
    scale = std::max(scale, std::abs(double(want[i])));
  }
  return diff / scale;
}
template <class T, class Shortcut>
void infer_matches_eval(double tol) {
  for (auto algorithm : {cpu_conv_algorithm::fastest, cpu_conv_algorithm::direct, cpu_conv_algorithm::winograd_2x2,
                         cpu_conv_algorithm::winograd_4x4}) {
    resnet20<cpu, 10, T, Shortcut> net(3);
    perturb_batch_norms(net, 4);
    cpu_context ctx(2);
    ctx.set_conv_algorithm(algorithm);
    rng r(5);
    tensor<T, cpu> x({6, 3, 32, 32});
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<T>(r.normal());
    auto& block = net.body().template get<5>();  // a residual block: its output is what TPM and users read
    const auto eval = net.forward(ctx, x, phase::eval).to_host();
    auto& stem = net.body().template get<2>();  // the stem's relu: its output is a TPM tap too
    const auto eval_block = block.output().to_host(), eval_inner = block.inner_output().to_host();
    const auto eval_stem = stem.output().to_host();
    const auto infer = net.forward(ctx, x, phase::infer).to_host();
    INFO("scalar bytes ", sizeof(T), ", shortcut ", Shortcut::name, ", algorithm ", to_string(algorithm),
         ": logits differ by ", max_rel(infer, eval));
    CHECK(max_rel(infer, eval) <= tol);
    CHECK(max_rel(block.output().to_host(), eval_block) <= tol);
    CHECK(max_rel(block.inner_output().to_host(), eval_inner) <= tol);
    CHECK(max_rel(stem.output().to_host(), eval_stem) <= tol);
    CHECK_THROWS_WITH_AS(stem.backward(ctx, stem.output()), doctest::Contains("backward after a phase::infer forward"),
                         contract_violation);
    CHECK_THROWS_WITH_AS(net.backward(ctx, net.forward(ctx, x, phase::infer)),
                         doctest::Contains("backward after a phase::infer forward"), contract_violation);
  }
}
}  // namespace

TEST_CASE("phase::infer (batch norms folded into the convolutions) matches phase::eval") {
  infer_matches_eval<float, shortcut_a>(1e-5);
  infer_matches_eval<float, shortcut_b>(1e-5);
  infer_matches_eval<double, shortcut_a>(1e-12);
  infer_matches_eval<double, shortcut_b>(1e-12);
}

TEST_CASE("forward_folded rejects a batch norm or a residual that does not fit, and keeps its weights") {
  conv2d_layer<float, cpu, fmap_shape{4, 8, 8}, 6, 3, 1, 1> conv;
  rng r(9);
  conv.initialize(r);
  const auto weights = conv.weight().to_host();
  batch_norm_layer<float, cpu, fmap_shape{6, 8, 8}> bn;
  batch_norm_layer<float, cpu, fmap_shape{5, 8, 8}> narrow;  // 5 channels for a 6-filter conv
  cpu_context ctx(1);
  ftensor x({2, 4, 8, 8}, 0.5f), good({2, 6, 8, 8}, 0.f), bad({2, 5, 8, 8}, 0.f);
  CHECK_THROWS_WITH_AS(conv.forward_folded(ctx, x, narrow, nullptr, true),
                       doctest::Contains("the folded batch norm has 5 channels, the convolution 6"), contract_violation);
  CHECK_THROWS_WITH_AS(conv.forward_folded(ctx, x, bn, &bad, true), doctest::Contains("does not match the output"),
                       contract_violation);
  CHECK(conv.weight().to_host() == weights);
  CHECK(conv.forward_folded(ctx, x, bn, &good, true).shape() == tensor_shape{2, 6, 8, 8});
}

TEST_CASE("conv2d backward rejects a dx_add that is not shaped like the input, and keeps its weights") {
  conv2d_layer<float, cpu, fmap_shape{4, 8, 8}, 6, 3, 1, 1> conv;
  rng r(9);
  conv.initialize(r);
  const auto weights = conv.weight().to_host();
  cpu_context ctx(1);
  ftensor x({2, 4, 8, 8}, 0.5f), dy({2, 6, 8, 8}, 1.f), bad({2, 6, 8, 8}, 0.f), add({2, 4, 8, 8}, 2.f);
  conv.forward(ctx, x, phase::train);
  CHECK_THROWS_WITH_AS(conv.backward(ctx, dy, true, &bad), doctest::Contains("dx_add has shape"), contract_violation);
  CHECK(conv.weight().to_host() == weights);
  const auto plain = conv.backward(ctx, dy).to_host();
  const auto summed = conv.backward(ctx, dy, true, &add).to_host();
  REQUIRE(plain.size() == summed.size());
  for (std::size_t i = 0; i < plain.size(); ++i) CHECK(summed[i] == plain[i] + 2.f);
}

TEST_CASE("residual blocks borrow the context's workspace: their results and TPM signals outlive the next block's backward") {
  using block = basic_block_layer<float, cpu, fmap_shape{8, 8, 8}, 8, 1, shortcut_a>;
  cpu_context ctx(2);
  rng r(3);
  block a, b;
  a.initialize(r);
  b.initialize(r);
  ftensor x({4, 8, 8, 8}), dy({4, 8, 8, 8});
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    x.data()[i] = static_cast<float>(r.normal());
    dy.data()[i] = static_cast<float>(r.normal());
  }
  const auto& ya = a.forward(ctx, x, phase::train);
  const auto& yb = b.forward(ctx, ya, phase::train);
  const auto& gb = b.backward(ctx, dy);
  const std::vector<float> gb_copy(gb.data(), gb.data() + gb.numel());
  const ftensor* inner_b = b.inner_output_grad();
  REQUIRE(inner_b != nullptr);
  const std::vector<float> inner_copy(inner_b->data(), inner_b->data() + inner_b->numel());
  // the block borrowed slots of the context's workspace, shaped like its gradients
  CHECK(ctx.workspace().get<float, cpu>(block::workspace_sum).shape() == yb.shape());
  CHECK(ctx.workspace().get<float, cpu>(block::workspace_bn).shape() == yb.shape());
  const auto& ga = a.backward(ctx, gb);  // the same workspace slots, overwritten
  CHECK(ga.shape() == x.shape());
  CHECK(std::equal(gb_copy.begin(), gb_copy.end(), gb.data()));  // b's input gradient is b's own
  CHECK(b.inner_output_grad() == inner_b);
  CHECK(std::equal(inner_copy.begin(), inner_copy.end(), inner_b->data()));
  CHECK(a.output_grad() == &gb);
  // whatever the workspace holds before, the same backward gives the same bits
  for (int slot : {block::workspace_sum, block::workspace_bn}) {
    auto& t = ctx.workspace().get<float, cpu>(slot);
    t.resize({3, 5});
    t.fill(std::nanf(""));
  }
  const auto& gb2 = b.backward(ctx, dy);
  CHECK(std::equal(gb_copy.begin(), gb_copy.end(), gb2.data()));
}
