// Central-difference gradient checks in double for every layer, for a basic block with
// each shortcut, for the loss, and for a small whole network. Threshold: max relative
// error 1e-6 on inputs and parameters (see gradient_check.hpp for the error measure).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <cstdio>

#include "gradient_check.hpp"

using namespace netsplit;
using namespace netsplit::testing;

namespace {
constexpr double tolerance = 1e-6;

template <class L>
void expect_gradients(const char* what, L& layer, tensor_shape in, phase p, std::uint64_t seed = 11,
                      cpu_conv_algorithm algorithm = cpu_conv_algorithm::fastest) {
  cpu_context ctx(2);
  ctx.set_conv_algorithm(algorithm);
  rng r(seed);
  if constexpr (Initializable<L>) layer.initialize(r);
  // Non-trivial BN parameters so their gradients are exercised away from γ=1, β=0.
  if constexpr (HasParameters<L>)
    layer.visit_parameters([&](const std::string& n, auto& w, auto&) {
      if (n.find("bn") != std::string::npos || n == "weight" || n == "bias")
        if (w.rank() == 1)
          for (std::int64_t i = 0; i < w.numel(); ++i) w.data()[i] += 0.3 * r.normal();
    });
  const auto rep = check_layer_gradients(layer, ctx, random_tensor(in, r), p, seed);
  std::printf("gradcheck %-34s input %.2e  params %.2e  (%zu values, worst at %s)\n", what,
              rep.max_input_error, rep.max_param_error, rep.checked, rep.worst.c_str());
  CHECK(rep.checked > 0);
  CHECK(rep.max_input_error <= tolerance);
  CHECK(rep.max_param_error <= tolerance);
}

using cpu = cpu_backend;
}  // namespace

TEST_CASE("conv2d gradients: 3x3 and 1x1, stride 1 and 2, padding") {
  conv2d_layer<double, cpu, fmap_shape{3, 7, 7}, 4, 3, 1, 1> c3s1;
  expect_gradients("conv2d 3x3 stride 1 pad 1", c3s1, {3, 3, 7, 7}, phase::train);
  conv2d_layer<double, cpu, fmap_shape{3, 8, 8}, 5, 3, 2, 1> c3s2;
  expect_gradients("conv2d 3x3 stride 2 pad 1", c3s2, {2, 3, 8, 8}, phase::train);
  conv2d_layer<double, cpu, fmap_shape{3, 6, 6}, 4, 3, 1, 0> c3p0;
  expect_gradients("conv2d 3x3 stride 1 pad 0", c3p0, {2, 3, 6, 6}, phase::train);
  conv2d_layer<double, cpu, fmap_shape{4, 6, 6}, 3, 1, 1, 0> c1s1;
  expect_gradients("conv2d 1x1 stride 1", c1s1, {3, 4, 6, 6}, phase::train);
  conv2d_layer<double, cpu, fmap_shape{4, 6, 6}, 6, 1, 2, 0> c1s2;
  expect_gradients("conv2d 1x1 stride 2", c1s2, {2, 4, 6, 6}, phase::train);
  // Winograd F(2x2, 3x3): forward, input gradient and weight gradient (even sizes)
  conv2d_layer<double, cpu, fmap_shape{3, 8, 6}, 4, 3, 1, 1> wino;
  expect_gradients("conv2d 3x3 same, Winograd", wino, {3, 3, 8, 6}, phase::train, 11,
                   cpu_conv_algorithm::winograd_2x2);
  // Winograd F(4x4, 3x3) (sizes divisible by 4)
  conv2d_layer<double, cpu, fmap_shape{3, 8, 4}, 4, 3, 1, 1> wino4;
  expect_gradients("conv2d 3x3 same, Winograd 4x4", wino4, {3, 3, 8, 4}, phase::train, 11,
                   cpu_conv_algorithm::winograd_4x4);
}

TEST_CASE("batch_norm gradients in train and eval mode") {
  batch_norm_layer<double, cpu, fmap_shape{3, 4, 4}> bn;
  expect_gradients("batch_norm train (batch statistics)", bn, {4, 3, 4, 4}, phase::train);
  batch_norm_layer<double, cpu, fmap_shape{3, 4, 4}> bn_eval;
  rng r(3);
  for (std::int64_t i = 0; i < 3; ++i) {
    bn_eval.running_mean().data()[i] = r.normal();
    bn_eval.running_var().data()[i] = 0.5 + r.uniform();
  }
  expect_gradients("batch_norm eval (running statistics)", bn_eval, {2, 3, 4, 4}, phase::eval);
}

namespace {
/// batch_norm's fused form y = max(bn(x), 0) seen as a layer (forward_relu / backward_relu).
template <class T, fmap_shape In>
struct bn_relu_view {
  using scalar_type = T;
  using backend_type = cpu;
  using context_type = cpu::context;
  static constexpr fmap_shape input_shape = In;
  static constexpr fmap_shape output_shape = In;
  batch_norm_layer<T, cpu, In> bn;
  int in_channels() const { return bn.in_channels(); }
  int out_channels() const { return bn.out_channels(); }
  const tensor<T, cpu>& forward(context_type& ctx, const tensor<T, cpu>& x, phase p) { return bn.forward_relu(ctx, x, p); }
  const tensor<T, cpu>& backward(context_type& ctx, const tensor<T, cpu>& dy, bool g = true) {
    return bn.backward_relu(ctx, dy, g);
  }
  template <class V>
  void visit_parameters(V&& v) { bn.visit_parameters(v); }
};
}  // namespace

TEST_CASE("fused batch_norm + relu gradients in train and eval mode") {
  // β shifted by the test's noise puts about half of the values on each side of the kink;
  // the central differences stay away from it with overwhelming probability at h = 1e-4.
  bn_relu_view<double, fmap_shape{3, 4, 4}> f;
  expect_gradients("batch_norm+relu train", f, {4, 3, 4, 4}, phase::train);
  bn_relu_view<double, fmap_shape{3, 4, 4}> fe;
  rng r(5);
  for (std::int64_t i = 0; i < 3; ++i) {
    fe.bn.running_mean().data()[i] = 0.2 * r.normal();
    fe.bn.running_var().data()[i] = 0.5 + r.uniform();
  }
  expect_gradients("batch_norm+relu eval", fe, {2, 3, 4, 4}, phase::eval);
}

TEST_CASE("relu, global average pooling and linear gradients") {
  relu_layer<double, cpu, fmap_shape{3, 5, 5}> r;
  expect_gradients("relu", r, {2, 3, 5, 5}, phase::train);
  global_avg_pool_layer<double, cpu, fmap_shape{4, 3, 3}> gap;
  expect_gradients("global_avg_pool", gap, {3, 4, 3, 3}, phase::train);
  linear_layer<double, cpu, fmap_shape{6, 1, 1}, 5> fc;
  expect_gradients("linear", fc, {4, 6, 1, 1}, phase::train);
}

TEST_CASE("2x2 max pooling: gradients, and ties go to the first element in row-major order") {
  max_pool2x2_layer<double, cpu, fmap_shape{3, 6, 4}> pool;
  expect_gradients("max_pool2x2", pool, {2, 3, 6, 4}, phase::train);
  // ties (a central difference straddles them, so they are checked by hand): one plane of
  // 4x4, windows: all equal; top-right = bottom-right max; bottom-left max; a NaN
  max_pool2x2_layer<float, cpu, fmap_shape{1, 4, 4}> p;
  cpu_context ctx(1);
  const float nan = std::nanf("");
  tensor<float, cpu> x({1, 1, 4, 4});
  const std::vector<float> xv{2, 2, 1, 5,
                              2, 2, 0, 5,
                              1, 0, nan, 1,
                              7, 3, 9, 9};
  x.from_host(xv);
  const auto y = p.forward(ctx, x, phase::train).to_host();
  CHECK(y[0] == 2);
  CHECK(y[1] == 5);
  CHECK(y[2] == 7);
  CHECK(std::isnan(y[3]));
  tensor<float, cpu> dy({1, 1, 2, 2});
  const std::vector<float> dyv{10, 20, 30, 40};
  dy.from_host(dyv);
  const auto dx = p.backward(ctx, dy).to_host();
  const std::vector<float> expected{10, 0, 0, 20,
                                    0, 0, 0, 0,
                                    0, 0, 40, 0,
                                    30, 0, 0, 0};
  CHECK(dx == expected);
}

TEST_CASE("2x2 max pooling picks max_window_index's winner for every window of {-1, -0, +0, 1, NaN}") {
  // all 625 windows of those values, in rows of 13 windows (the 8- and 4-window vector paths
  // and the scalar tail); the value and the gradient's place must be max_window_index's, bit
  // for bit (a signed zero, a NaN's payload)
  const float nan = std::nanf(""), vals[5] = {-1.f, -0.f, 0.f, 1.f, nan};
  constexpr int wo = 13, ho = 49, w = 2 * wo, h = 2 * ho;  // 637 windows, the last 12 repeat
  std::vector<float> x(static_cast<std::size_t>(h * w)), g(static_cast<std::size_t>(ho * wo));
  for (int n = 0; n < ho * wo; ++n) {
    const int i = n / wo, j = n % wo, c = n % 625;
    const float v[4] = {vals[c % 5], vals[c / 5 % 5], vals[c / 25 % 5], vals[c / 125]};
    x[static_cast<std::size_t>(2 * i * w + 2 * j)] = v[0];
    x[static_cast<std::size_t>(2 * i * w + 2 * j + 1)] = v[1];
    x[static_cast<std::size_t>((2 * i + 1) * w + 2 * j)] = v[2];
    x[static_cast<std::size_t>((2 * i + 1) * w + 2 * j + 1)] = v[3];
    g[static_cast<std::size_t>(n)] = static_cast<float>(n + 1);
  }
  cpu_context ctx(2);
  for (int planes : {1, 3}) {  // 3 planes: the same plane thrice, split over two threads
    std::vector<float> xs, gs;
    for (int p = 0; p < planes; ++p) {
      xs.insert(xs.end(), x.begin(), x.end());
      gs.insert(gs.end(), g.begin(), g.end());
    }
    std::vector<float> y(gs.size(), -7.f), dx(xs.size(), -7.f);
    cpu::max_pool2x2_forward(ctx, planes, h, w, xs.data(), y.data());
    cpu::max_pool2x2_backward(ctx, planes, h, w, xs.data(), gs.data(), dx.data());
    int bad = 0;
    for (int p = 0; p < planes; ++p)
      for (int n = 0; n < ho * wo; ++n) {
        const int i = n / wo, j = n % wo;
        const std::size_t base = static_cast<std::size_t>(p) * h * w;
        const std::size_t at[4] = {base + 2 * i * w + 2 * j, base + 2 * i * w + 2 * j + 1,
                                   base + (2 * i + 1) * w + 2 * j, base + (2 * i + 1) * w + 2 * j + 1};
        const int k = max_window_index(xs[at[0]], xs[at[1]], xs[at[2]], xs[at[3]]);
        const float want = xs[at[k]], got = y[static_cast<std::size_t>(p) * ho * wo + n];
        if (std::memcmp(&want, &got, sizeof want) != 0) ++bad;
        for (int q = 0; q < 4; ++q)
          if (dx[at[q]] != (q == k ? g[static_cast<std::size_t>(n)] : 0.f)) ++bad;
      }
    CHECK(bad == 0);
  }
}

TEST_CASE("shortcut gradients: option A scatter and option B projection") {
  shortcut_a_layer<double, cpu, fmap_shape{4, 6, 6}, 8, 2> a;
  expect_gradients("shortcut A (subsample + zero pad)", a, {2, 4, 6, 6}, phase::train);
  shortcut_a_layer<double, cpu, fmap_shape{3, 4, 4}, 4, 1> a_map;
  // a split channel (two halves to one target) and a duplicated target
  a_map.set_map(3, 4, {{0, 1, 1.0}, {1, 3, 0.5}, {2, 3, 0.5}, {0, 2, 1.0}});
  expect_gradients("shortcut A (general channel map)", a_map, {2, 3, 4, 4}, phase::train);
  shortcut_b_layer<double, cpu, fmap_shape{4, 6, 6}, 8, 2> b;
  expect_gradients("shortcut B (1x1 conv + BN)", b, {3, 4, 6, 6}, phase::train);
}

TEST_CASE("basic block gradients with each shortcut") {
  basic_block_layer<double, cpu, fmap_shape{4, 6, 6}, 4, 1, shortcut_a> identity;
  expect_gradients("basic_block identity shortcut", identity, {3, 4, 6, 6}, phase::train);
  basic_block_layer<double, cpu, fmap_shape{4, 6, 6}, 4, 1, shortcut_a> identity_winograd;
  expect_gradients("basic_block identity, Winograd", identity_winograd, {3, 4, 6, 6}, phase::train, 11,
                   cpu_conv_algorithm::winograd_2x2);
  basic_block_layer<double, cpu, fmap_shape{4, 8, 8}, 4, 1, shortcut_a> identity_winograd4;
  expect_gradients("basic_block identity, Winograd 4x4", identity_winograd4, {3, 4, 8, 8}, phase::train, 11,
                   cpu_conv_algorithm::winograd_4x4);
  basic_block_layer<double, cpu, fmap_shape{4, 6, 6}, 8, 2, shortcut_a> block_a;
  expect_gradients("basic_block option A, stride 2", block_a, {3, 4, 6, 6}, phase::train);
  basic_block_layer<double, cpu, fmap_shape{4, 6, 6}, 8, 2, shortcut_b> block_b;
  expect_gradients("basic_block option B, stride 2", block_b, {3, 4, 6, 6}, phase::train);
  basic_block_layer<double, cpu, fmap_shape{4, 6, 6}, 8, 2, shortcut_b> block_b_eval;
  expect_gradients("basic_block option B, eval mode", block_b_eval, {2, 4, 6, 6}, phase::eval);
}

TEST_CASE("softmax cross-entropy gradient") {
  cpu_context ctx(1);
  rng r(5);
  auto logits = random_tensor({4, 7}, r, 2.0);
  const std::vector<int> labels{0, 6, 3, 3};
  softmax_cross_entropy<double, cpu> loss;
  loss.forward(ctx, logits, labels);
  const cpu_tensor g = loss.backward();
  double worst = 0;
  for (std::int64_t i = 0; i < logits.numel(); ++i) {
    worst = std::max(worst, rel_error(g.data()[i], numeric_derivative(logits.data()[i], [&] {
                                        return loss.forward(ctx, logits, labels);
                                      })));
  }
  std::printf("gradcheck %-34s logits %.2e\n", "softmax_cross_entropy", worst);
  CHECK(worst <= tolerance);
}

namespace {
/// Central differences of the softmax cross-entropy of a whole network (train-mode BN):
/// 40 input values and 12 values of every parameter tensor. The loss is O(1), so a smaller
/// step (1e-5) keeps perturbations from crossing a ReLU kink.
template <class Net>
void expect_network_gradients(const char* what, Net& net, cpu_tensor x, const std::vector<int>& labels,
                              std::size_t parameter_tensors, rng& r) {
  cpu_context ctx(2);
  softmax_cross_entropy<double, cpu> loss;
  auto eval_loss = [&] { return loss.forward(ctx, net.forward(ctx, x, phase::train), labels); };
  eval_loss();
  const cpu_tensor dx = net.backward(ctx, loss.backward(), true);
  std::vector<cpu_tensor> grads;
  net.visit_parameters([&](const std::string&, auto&, auto& g) { grads.push_back(g); });

  double worst_in = 0, worst_param = 0;
  for (auto i : sample_indices(x.numel(), 40, r)) {
    worst_in = std::max(worst_in, rel_error(dx.data()[i], numeric_derivative(x.data()[i], eval_loss, 1e-5)));
  }
  std::size_t k = 0, tensors = 0;
  std::string worst_at;
  net.visit_parameters([&](const std::string& name, auto& w, auto&) {
    const auto& g = grads[k++];
    ++tensors;
    for (auto i : sample_indices(w.numel(), 12, r)) {
      const double e = rel_error(g.data()[i], numeric_derivative(w.data()[i], eval_loss, 1e-5));
      if (e > worst_param) {
        worst_param = e;
        worst_at = name + "[" + std::to_string(i) + "]";
      }
    }
  });
  std::printf("gradcheck %-34s input %.2e  params %.2e  (%zu parameter tensors, worst at %s)\n", what, worst_in,
              worst_param, tensors, worst_at.c_str());
  CHECK(tensors == parameter_tensors);
  CHECK(worst_in <= tolerance);
  CHECK(worst_param <= tolerance);
}
}  // namespace

TEST_CASE("whole small network gradients through the loss (train-mode BN)") {
  // A miniature ResNet: every layer kind, both shortcut options, stride changes.
  using net_t = sequential_layer<double, cpu, fmap_shape{3, 8, 8}, conv3x3<4>, batch_norm, relu,
                                 basic_block<4, 1, shortcut_a>, basic_block<6, 2, shortcut_a>,
                                 basic_block<8, 2, shortcut_b>, global_avg_pool, linear<5>>;
  net_t net;
  rng r(21);
  net.initialize(r);
  auto x = random_tensor({4, 3, 8, 8}, r);
  expect_network_gradients("small ResNet + softmax loss", net, x, {1, 4, 0, 2}, 26, r);
}

TEST_CASE("a small VGG through the loss (max pooling), at a width multiplier") {
  using net_t = sequential_layer<double, cpu, fmap_shape{3, 8, 8}, conv3x3<8>, batch_norm, relu, max_pool2x2,
                                 conv3x3<8>, batch_norm, relu, conv3x3<12>, batch_norm, relu, max_pool2x2,
                                 global_avg_pool, linear<5>>;
  net_t net;
  int stream = 3;
  net.scale_widths(0.5, stream);  // 4, 4, 6 filters
  CHECK(stream == 5);
  rng r(23);
  net.initialize(r);
  net.visit_parameters([&](const std::string&, auto& w, auto&) {
    if (w.rank() == 1)
      for (std::int64_t i = 0; i < w.numel(); ++i) w.data()[i] += 0.3 * r.normal();
  });
  auto x = random_tensor({4, 3, 8, 8}, r);
  expect_network_gradients("small VGG x0.5 + softmax loss", net, x, {1, 4, 0, 2}, 3 * 3 + 2, r);
}
