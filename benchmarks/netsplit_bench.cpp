// Benchmarks of the CPU backend, batch 128: every distinct conv2d shape of ResNet20 forward
// and backward (GFLOP/s counter) with each algorithm, VGG11's shapes (64 ... 512 channels on
// 32x32 down to 2x2 maps, full width and x0.25), the F(4x4) transforms alone (one thread),
// batch norm, 2x2 max pooling, element-wise ops, a basic block, and whole networks' training
// step (forward, softmax CE, backward, SGD) and inference in images/s: ResNet20, ResNet56,
// VGG11 with batch norm at full width
// and x0.25 (argument width_pct). Threads: NETSPLIT_THREADS (default 2). Times are
// wall-clock (UseRealTime), because the work runs on the pool's threads, not only on the
// benchmark's. (Each whole model is one more instantiation to compile: VGG11 and ResNet56
// add about a third to this file's build time.)
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "netsplit/netsplit.hpp"

using namespace netsplit;
using cpu = cpu_backend;
using ftensor = tensor<float, cpu>;

namespace {

constexpr int batch = 128;

int thread_count() {
  if (const char* s = std::getenv("NETSPLIT_THREADS"); s && std::atoi(s) > 0) return std::atoi(s);
  return 2;
}

cpu_context& context() {
  static cpu_context ctx(thread_count());
  return ctx;
}

ftensor random_tensor(tensor_shape s, std::uint64_t seed) {
  rng r(seed);
  std::vector<float> v(static_cast<std::size_t>(s.numel()));
  for (auto& x : v) x = static_cast<float>(r.normal());
  return ftensor::from_host(s, v);
}

const char* simd_level() {
#if defined(__AVX512F__)
  return "avx512f";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2+fma";
#else
  return "generic";
#endif
}

// ---- convolution ---------------------------------------------------------------------------
// args: in_channels, out_channels, input size, stride, algorithm (0: the default `fastest`,
// 1: direct, 2: winograd_2x2, 3: winograd_4x4; the Winograd ones on 3x3 stride-1 shapes only)
const cpu_conv_algorithm bench_algorithms[] = {cpu_conv_algorithm::fastest, cpu_conv_algorithm::direct,
                                               cpu_conv_algorithm::winograd_2x2, cpu_conv_algorithm::winograd_4x4};
conv2d_desc conv_desc(const benchmark::State& st) {
  return {batch, static_cast<int>(st.range(0)), static_cast<int>(st.range(1)), static_cast<int>(st.range(2)),
          static_cast<int>(st.range(2)), 3, static_cast<int>(st.range(3)), 1};
}

void conv_label(benchmark::State& st, const conv2d_desc& d) {
  st.SetLabel(std::to_string(d.in_channels) + "->" + std::to_string(d.out_channels) + " " +
              std::to_string(d.in_height) + "x" + std::to_string(d.in_width) + " s" +
              std::to_string(d.stride) + " " + to_string(bench_algorithms[st.range(4)]));
}

/// Sets the shared context's convolution algorithm for one benchmark, then restores it.
struct algorithm_scope {
  cpu_context& ctx;
  cpu_conv_algorithm saved;
  algorithm_scope(cpu_context& c, std::int64_t algorithm) : ctx(c), saved(c.conv_algorithm()) {
    c.set_conv_algorithm(bench_algorithms[algorithm]);
  }
  ~algorithm_scope() { ctx.set_conv_algorithm(saved); }
};

void BM_conv2d_forward(benchmark::State& st) {
  auto& ctx = context();
  const algorithm_scope algorithm(ctx, st.range(4));
  const auto d = conv_desc(st);
  auto x = random_tensor({d.batch, d.in_channels, d.in_height, d.in_width}, 1);
  auto w = random_tensor({d.out_channels, d.in_channels, 3, 3}, 2);
  ftensor y({d.batch, d.out_channels, d.out_height(), d.out_width()});
  for (auto _ : st) {
    cpu::conv2d_forward(ctx, d, x.data(), w.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(d.mult_adds()) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  st.SetItemsProcessed(st.iterations() * d.batch);
  conv_label(st, d);
}

// The stem (3 input channels) does not compute dx in training; every other layer does.
void BM_conv2d_backward(benchmark::State& st) {
  auto& ctx = context();
  const algorithm_scope algorithm(ctx, st.range(4));
  const auto d = conv_desc(st);
  const bool input_grad = d.in_channels != 3;
  auto x = random_tensor({d.batch, d.in_channels, d.in_height, d.in_width}, 1);
  auto w = random_tensor({d.out_channels, d.in_channels, 3, 3}, 2);
  auto dy = random_tensor({d.batch, d.out_channels, d.out_height(), d.out_width()}, 3);
  ftensor dx(x.shape()), dw(w.shape());
  for (auto _ : st) {
    cpu::conv2d_backward(ctx, d, x.data(), w.data(), dy.data(), input_grad ? dx.data() : nullptr, dw.data());
    benchmark::DoNotOptimize(dw.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter((input_grad ? 4.0 : 2.0) * static_cast<double>(d.mult_adds()) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  st.SetItemsProcessed(st.iterations() * d.batch);
  conv_label(st, d);
}

void conv_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cin", "cout", "hw", "s", "alg"});
  for (int algorithm : {0, 1, 2, 3}) {
    b->Args({3, 16, 32, 1, algorithm});
    b->Args({16, 16, 32, 1, algorithm});
    b->Args({32, 32, 16, 1, algorithm});
    b->Args({64, 64, 8, 1, algorithm});
  }
  for (int algorithm : {1, 3}) {  // thin layers of narrow nets (growth from width 0.25 / 0.5)
    b->Args({4, 4, 32, 1, algorithm});
    b->Args({8, 8, 32, 1, algorithm});
  }
  b->Args({16, 32, 32, 2, 0});  // stride 2: direct either way
  b->Args({32, 64, 16, 2, 0});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_conv2d_forward)->Apply(conv_shapes);
BENCHMARK(BM_conv2d_backward)->Apply(conv_shapes);

// VGG11's convolutions that ResNet20 lacks (all 3x3 stride 1): full width from the stem's
// 3->64 at 32x32 to 512->512 at 2x2, every algorithm, and x0.25's on its smallest maps.
// Where `fastest` takes Winograd: vectorised F(4x4) needs W % 4 == 0, so 2x2 maps run on
// the direct engine in every pass (winograd_fastest, backend/cpu/winograd.hpp).
void vgg_conv_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cin", "cout", "hw", "s", "alg"});
  for (int algorithm : {0, 1, 3}) b->Args({3, 64, 32, 1, algorithm});
  for (int algorithm : {0, 1, 2, 3}) {
    b->Args({64, 128, 16, 1, algorithm});
    b->Args({128, 256, 8, 1, algorithm});
    b->Args({256, 256, 8, 1, algorithm});
    b->Args({256, 512, 4, 1, algorithm});
    b->Args({512, 512, 4, 1, algorithm});
    b->Args({512, 512, 2, 1, algorithm});
  }
  for (int algorithm : {0, 1}) {
    b->Args({128, 128, 4, 1, algorithm});  // x0.25
    b->Args({128, 128, 2, 1, algorithm});
  }
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}
void BM_vgg_conv2d_forward(benchmark::State& st) { BM_conv2d_forward(st); }
void BM_vgg_conv2d_backward(benchmark::State& st) { BM_conv2d_backward(st); }
BENCHMARK(BM_vgg_conv2d_forward)->Apply(vgg_conv_shapes);
BENCHMARK(BM_vgg_conv2d_backward)->Apply(vgg_conv_shapes);

// One thread's F(4x4, 3x3) transforms alone, as the engine calls them (winograd::f4x4, this
// build's vector forms): over the whole batch in chunks of `images` (the chunk plan's count
// for that layer on a 1 MiB L2), the 36 transformed planes rows of tpad tiles. Counter: ns per
// 16 tile-channels (one AVX-512 vector of tiles of one channel). args: transform (0 input,
// 1 output, 2 output gradient), channels, map size, images per chunk.
void BM_f4_transform(benchmark::State& st) {
  namespace wg = detail::cpu_conv::winograd;
  const int which = static_cast<int>(st.range(0)), C = static_cast<int>(st.range(1)), H = static_cast<int>(st.range(2));
  const int W = H, images = static_cast<int>(st.range(3));
  const std::int64_t plane = std::int64_t{H} * W, tiles = std::int64_t{H / 4} * (W / 4);
  const std::int64_t tpad = (images * tiles + 15) / 16 * 16, es = wg::element_stride(C, tpad);
  const ftensor x = random_tensor({batch, C, H, W}, 5);
  std::vector<float> act(x.to_host()), planes(static_cast<std::size_t>(36 * es), 0.5f),
      row(wg::f4x4::scratch(H, W, images) + 64);
  bool vec = wg::f4x4::vector_widths(W);
  // opaque to the compiler, as in the engine (else it compiles a copy for null epilogues)
  const detail::cpu_conv::conv_epilogue<float>* ep = nullptr;
  const float* residual = nullptr;
  benchmark::DoNotOptimize(vec);
  benchmark::DoNotOptimize(ep);
  benchmark::DoNotOptimize(residual);
  for (auto _ : st)
    for (int n0 = 0; n0 < batch; n0 += images) {
      const int count = std::min(images, batch - n0);
      float* a = act.data() + n0 * C * plane;
      if (which == 0) wg::f4x4::in(vec, a, C, H, W, count, planes.data(), tpad, es, row.data());
      else if (which == 1)
        wg::f4x4::out<float>(vec, planes.data(), es, tpad, C, H, W, count, a, row.data(), ep, residual);
      else wg::f4x4::out_grad(vec, a, C, H, W, count, planes.data(), es, tpad);
      benchmark::ClobberMemory();
    }
  const double groups = double(batch) * C * tiles / 16;
  st.counters["ns_per_16_tiles"] =
      benchmark::Counter(groups * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  st.SetLabel(std::string(which == 0 ? "input" : which == 1 ? "output" : "output gradient") + " " + simd_level());
}
BENCHMARK(BM_f4_transform)
    ->ArgNames({"t", "c", "hw", "images"})
    ->ArgsProduct({{0, 1, 2}, {16}, {32}, {2}})
    ->ArgsProduct({{0, 1, 2}, {32}, {16}, {4}})
    ->ArgsProduct({{0, 1, 2}, {64}, {8}, {8}})
    ->ArgsProduct({{0, 1, 2}, {512}, {4}, {32}})
    ->Unit(benchmark::kMicrosecond);

// ---- batch norm and element-wise ---------------------------------------------------------------
// args: channels, spatial size
struct bn_state {
  batch_norm_desc d;
  ftensor x, y, dy, dx, gamma, beta, mean, invstd, rmean, rvar, dgamma, dbeta;
  explicit bn_state(const benchmark::State& st)
      : d{batch, static_cast<int>(st.range(0)), static_cast<int>(st.range(1) * st.range(1))},
        x(random_tensor({batch, d.channels, st.range(1), st.range(1)}, 4)),
        y(x.shape()),
        dy(random_tensor(x.shape(), 5)),
        dx(x.shape()),
        gamma({d.channels}, 1.0f), beta({d.channels}, 0.0f), mean({d.channels}), invstd({d.channels}),
        rmean({d.channels}, 0.0f), rvar({d.channels}, 1.0f), dgamma({d.channels}), dbeta({d.channels}) {}
};

void bn_label(benchmark::State& st, const batch_norm_desc& d) {
  st.SetLabel(std::to_string(d.channels) + "ch " + std::to_string(d.spatial) + "px");
  st.SetBytesProcessed(st.iterations() * std::int64_t{d.batch} * d.channels * d.spatial * 4);
}

void BM_batch_norm_forward_train(benchmark::State& st) {
  bn_state s(st);
  for (auto _ : st)
    cpu::batch_norm_forward_train(context(), s.d, s.x.data(), s.gamma.data(), s.beta.data(), s.y.data(),
                                  s.mean.data(), s.invstd.data(), s.rmean.data(), s.rvar.data());
  bn_label(st, s.d);
}
void BM_batch_norm_backward(benchmark::State& st) {
  bn_state s(st);
  cpu::batch_norm_forward_train(context(), s.d, s.x.data(), s.gamma.data(), s.beta.data(), s.y.data(),
                                s.mean.data(), s.invstd.data(), s.rmean.data(), s.rvar.data());
  for (auto _ : st)
    cpu::batch_norm_backward(context(), s.d, true, s.x.data(), s.gamma.data(), s.mean.data(), s.invstd.data(),
                             s.dy.data(), s.dx.data(), s.dgamma.data(), s.dbeta.data());
  bn_label(st, s.d);
}
/// The form a block's first batch norm takes (its ReLU fused: dy masked by the output y > 0).
void BM_batch_norm_relu_backward(benchmark::State& st) {
  bn_state s(st);
  cpu::batch_norm_relu_forward_train(context(), s.d, s.x.data(), s.gamma.data(), s.beta.data(),
                                     static_cast<const float*>(nullptr), s.y.data(), s.mean.data(), s.invstd.data(),
                                     s.rmean.data(), s.rvar.data());
  for (auto _ : st)
    cpu::batch_norm_relu_backward(context(), s.d, true, s.x.data(), s.y.data(), s.gamma.data(), s.mean.data(),
                                  s.invstd.data(), s.dy.data(), s.dx.data(), s.dgamma.data(), s.dbeta.data());
  bn_label(st, s.d);
}
void bn_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"c", "hw"});
  b->Args({16, 32})->Args({32, 16})->Args({64, 8});
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_batch_norm_forward_train)->Apply(bn_shapes);
BENCHMARK(BM_batch_norm_backward)->Apply(bn_shapes);
BENCHMARK(BM_batch_norm_relu_backward)->Apply(bn_shapes);

void BM_relu_backward(benchmark::State& st) {
  bn_state s(st);
  for (auto _ : st) cpu::relu_backward(context(), s.x.numel(), s.x.data(), s.dy.data(), s.dx.data());
  bn_label(st, s.d);
}
void BM_add_relu_forward(benchmark::State& st) {
  bn_state s(st);
  for (auto _ : st) cpu::add_relu_forward(context(), s.x.numel(), s.x.data(), s.dy.data(), s.y.data());
  bn_label(st, s.d);
}
BENCHMARK(BM_relu_backward)->Args({16, 32})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_add_relu_forward)->Args({16, 32})->UseRealTime()->Unit(benchmark::kMicrosecond);

// 2x2 max pooling (VGG's first and last: 64 channels 32x32, 512 channels 4x4); args
// channels, input size. Bytes: the input's.
void BM_max_pool_forward(benchmark::State& st) {
  bn_state s(st);
  ftensor y({batch, s.d.channels, st.range(1) / 2, st.range(1) / 2});
  const int hw = static_cast<int>(st.range(1));
  for (auto _ : st) cpu::max_pool2x2_forward(context(), std::int64_t{batch} * s.d.channels, hw, hw, s.x.data(), y.data());
  bn_label(st, s.d);
}
void BM_max_pool_backward(benchmark::State& st) {
  bn_state s(st);
  const int hw = static_cast<int>(st.range(1));
  auto dy = random_tensor({batch, s.d.channels, hw / 2, hw / 2}, 6);
  for (auto _ : st)
    cpu::max_pool2x2_backward(context(), std::int64_t{batch} * s.d.channels, hw, hw, s.x.data(), dy.data(), s.dx.data());
  bn_label(st, s.d);
}
BENCHMARK(BM_max_pool_forward)->ArgNames({"c", "hw"})->Args({64, 32})->Args({512, 4})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_max_pool_backward)->ArgNames({"c", "hw"})->Args({64, 32})->Args({512, 4})->UseRealTime()->Unit(benchmark::kMicrosecond);

// ---- a convolution and the training-mode batch norm + ReLU after it -----------------------------
// args: channels (in = out), spatial size, whether the batch norm takes its statistics from the
// convolution (batch_norm_layer::forward_relu_after, conv2d_forward_sums) or reads the
// convolution's output for them (conv2d_layer::forward, then forward_relu)
template <int C, int HW>
void conv_bn_relu(benchmark::State& st) {
  auto& ctx = context();
  conv2d_layer<float, cpu, fmap_shape{C, HW, HW}, C, 3, 1, 1> conv;
  batch_norm_layer<float, cpu, fmap_shape{C, HW, HW}> bn;
  rng r(7);
  conv.initialize(r);
  auto x = random_tensor({batch, C, HW, HW}, 8);
  for (auto _ : st) {
    const auto& y = st.range(2) ? bn.forward_relu_after(ctx, conv, x, phase::train)
                                : bn.forward_relu(ctx, conv.forward(ctx, x, phase::train), phase::train);
    benchmark::DoNotOptimize(y.data());
  }
  st.SetLabel(st.range(2) ? "statistics in the convolution" : "statistics pass");
}
void BM_conv_bn_relu_forward_train(benchmark::State& st) {
  switch (st.range(0)) {
    case 16: return conv_bn_relu<16, 32>(st);
    case 32: return conv_bn_relu<32, 16>(st);
    default: return conv_bn_relu<64, 8>(st);
  }
}
BENCHMARK(BM_conv_bn_relu_forward_train)
    ->ArgNames({"c", "hw", "in_conv"})
    ->Args({16, 32, 0})->Args({16, 32, 1})->Args({32, 16, 0})->Args({32, 16, 1})->Args({64, 8, 0})->Args({64, 8, 1})
    ->UseRealTime()->Unit(benchmark::kMicrosecond);

// ---- a basic block (16 channels, 32x32, identity shortcut) -------------------------------------
void BM_basic_block_train(benchmark::State& st) {
  auto& ctx = context();
  basic_block_layer<float, cpu, fmap_shape{16, 32, 32}, 16, 1, shortcut_a> block;
  rng r(7);
  block.initialize(r);
  auto x = random_tensor({batch, 16, 32, 32}, 8);
  auto dy = random_tensor({batch, 16, 32, 32}, 9);
  for (auto _ : st) {
    block.forward(ctx, x, phase::train);
    benchmark::DoNotOptimize(block.backward(ctx, dy, true).data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(6.0 * static_cast<double>(block.mult_adds_per_image()) * batch * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  st.SetItemsProcessed(st.iterations() * batch);
}
BENCHMARK(BM_basic_block_train)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- whole networks (100 classes) ------------------------------------------------------------
/// A network at a width multiplier, a batch, labels and SGD momentum buffers.
template <class Net>
struct model_fixture {
  Net net;
  ftensor x = random_tensor({batch, 3, 32, 32}, 10);
  std::vector<int> labels;
  softmax_cross_entropy<float, cpu> loss;
  std::vector<ftensor> momentum;
  explicit model_fixture(double width = 1.0) : net(42, width_multiplier{width}) {
    rng r(11);
    for (int i = 0; i < batch; ++i) labels.push_back(static_cast<int>(r.uniform_int(100)));
    net.visit_parameters([&](const std::string&, ftensor& p, ftensor&) { momentum.emplace_back(p.shape(), 0.0f); });
  }
  void train_step(cpu_context& ctx) {
    const auto& logits = net.forward(ctx, x, phase::train);
    loss.forward(ctx, logits, labels);
    net.backward(ctx, loss.backward());
    std::size_t i = 0;
    net.visit_parameters([&](const std::string&, ftensor& p, ftensor& g) {
      cpu::sgd_step(ctx, p.numel(), p.data(), g.data(), momentum[i++].data(), 0.01f, 0.9f, 5e-4f, false);
    });
  }
};
using resnet_fixture = model_fixture<resnet20<cpu, 100, float>>;

/// Training step of Net at width multiplier `width`; GFLOP/s counts the convolutions'
/// multiply-adds three times (forward, input and weight gradients).
template <class Net>
void train_step_benchmark(benchmark::State& st, double width) {
  auto& ctx = context();
  model_fixture<Net> f(width);
  f.train_step(ctx);  // warm-up: sizes every tensor and scratch buffer
  for (auto _ : st) f.train_step(ctx);
  st.counters["GFLOP/s"] = benchmark::Counter(6.0 * static_cast<double>(f.net.mult_adds_per_image()) * batch * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  st.SetItemsProcessed(st.iterations() * batch);
  st.SetLabel(f.net.architecture());
}
template <class Net>
void inference_benchmark(benchmark::State& st, double width) {
  auto& ctx = context();
  model_fixture<Net> f(width);
  f.net.forward(ctx, f.x, phase::infer);
  for (auto _ : st) benchmark::DoNotOptimize(f.net.forward(ctx, f.x, phase::infer).data());
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(f.net.mult_adds_per_image()) * batch * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  st.SetItemsProcessed(st.iterations() * batch);
  st.SetLabel(f.net.architecture());
}

void BM_resnet20_train_step(benchmark::State& st) { train_step_benchmark<resnet20<cpu, 100, float>>(st, 1.0); }
BENCHMARK(BM_resnet20_train_step)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(3.0);
void BM_resnet20_inference(benchmark::State& st) { inference_benchmark<resnet20<cpu, 100, float>>(st, 1.0); }
BENCHMARK(BM_resnet20_inference)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);

void BM_resnet56_train_step(benchmark::State& st) { train_step_benchmark<resnet56<cpu, 100, float>>(st, 1.0); }
BENCHMARK(BM_resnet56_train_step)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(3.0);
void BM_resnet56_inference(benchmark::State& st) { inference_benchmark<resnet56<cpu, 100, float>>(st, 1.0); }
BENCHMARK(BM_resnet56_inference)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);

// VGG11 with batch norm; argument: the width multiplier in percent (100: 64 ... 512 channels,
// 25: 16 ... 128).
void BM_vgg11_train_step(benchmark::State& st) { train_step_benchmark<vgg11<cpu, 100, float>>(st, st.range(0) / 100.0); }
BENCHMARK(BM_vgg11_train_step)->ArgName("width_pct")->Arg(100)->Arg(25)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(3.0);
void BM_vgg11_inference(benchmark::State& st) { inference_benchmark<vgg11<cpu, 100, float>>(st, st.range(0) / 100.0); }
BENCHMARK(BM_vgg11_inference)->ArgName("width_pct")->Arg(100)->Arg(25)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);

// ---- growth: TPM recording overhead and the split itself ------------------------------------------
/// A ResNet20 with a TPM recorder (metric by index, window covering every iteration, on
/// the context's pool as the program uses it), after one warm-up step and observe.
struct tpm_fixture {
  resnet_fixture f;
  std::string name;
  tpm_recorder<resnet20<cpu, 100, float>> rec;
  std::int64_t it = 0;
  tpm_fixture(cpu_context& ctx, std::int64_t metric)
      : name(tpm_metric_names()[static_cast<std::size_t>(metric)]),
        rec(f.net, make_tpm_metric(name), {0, 1 << 30}, 1, &ctx) {
    f.train_step(ctx);
    rec.observe(it++);
  }
};

/// A training step with a TPM recorder observing every iteration (compare with
/// BM_resnet20_train_step: the difference is the recording overhead). Arg: metric index.
void BM_resnet20_train_step_tpm(benchmark::State& st) {
  auto& ctx = context();
  tpm_fixture t(ctx, st.range(0));
  for (auto _ : st) {
    t.f.train_step(ctx);
    t.rec.observe(t.it++);
  }
  st.SetLabel(t.name);
  st.SetItemsProcessed(st.iterations() * batch);
}
BENCHMARK(BM_resnet20_train_step_tpm)->DenseRange(0, 3)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(3.0);

/// The recorder's observe alone, after an untimed training step each iteration. Less
/// exposed to a shared machine's drift than the difference of two step benchmarks:
/// overhead = this / BM_resnet20_train_step.
void BM_tpm_observe(benchmark::State& st) {
  auto& ctx = context();
  tpm_fixture t(ctx, st.range(0));
  for (auto _ : st) {
    st.PauseTiming();
    t.f.train_step(ctx);
    st.ResumeTiming();
    t.rec.observe(t.it++);
  }
  st.SetLabel(t.name);
}
BENCHMARK(BM_tpm_observe)->DenseRange(0, 3)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(30);

/// Nine filters split together (global top-9 of Taylor scores over all sites, net2wider
/// with noise), on a freshly trained copy each time; the copy is not timed.
void BM_split_nine(benchmark::State& st) {
  auto& ctx = context();
  resnet_fixture f;
  f.train_step(ctx);
  tpm_recorder<resnet20<cpu, 100, float>> rec(f.net, make_tpm_metric("taylor"), {0, 1}, 1);
  rec.observe(0);
  const auto choices = top_k{9}.select(rec.scores());
  sgd<float, cpu> opt({0.9, 5e-4, false});
  opt.step(ctx, f.net, 0.0);  // momentum buffers exist, as in training
  for (auto _ : st) {
    st.PauseTiming();
    auto net = f.net;
    auto o = opt;
    auto sites = derive_sites(net);
    st.ResumeTiming();
    for (std::size_t k = 0; k < choices.size(); ++k)
      split_filter(net, sites[choices[k].site], choices[k].filter, net2wider{0.01}, k, &o.state());
  }
}
BENCHMARK(BM_split_nine)->Unit(benchmark::kMillisecond)->Iterations(20);

}  // namespace

int main(int argc, char** argv) {
  benchmark::AddCustomContext("netsplit_backend", cpu::name);
  benchmark::AddCustomContext("netsplit_threads", std::to_string(thread_count()));
  benchmark::AddCustomContext("netsplit_build_type", NETSPLIT_BUILD_TYPE);
  benchmark::AddCustomContext("netsplit_simd", simd_level());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
