// benchmarks/throughput.cpp — ResNet20 training and inference throughput of netsplit for
// the side-by-side comparison with PyTorch (compare_pytorch.sh), plus a measurement of the
// machine's FP32 FMA peak. Synthetic input, 100 classes, batch 128. Prints one JSON object:
// per-window img/s, medians, achieved GFLOP/s (counted as direct convolution's multiply-adds,
// whichever algorithm ran), peak resident memory. Inference is phase::infer. --conv direct
// turns Winograd off; --conv compare instead interleaves windows of fastest, winograd_4x4,
// winograd_2x2 and direct in one process and prints each one's medians and its ratio to
// direct.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "netsplit/netsplit.hpp"

using namespace netsplit;
using clk = std::chrono::steady_clock;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

/// FP32 FMA peak: each thread runs 12 independent FMA chains on the widest vectors the
/// compiler targets, for about `seconds`.
double fma_peak_gflops(int threads, double seconds) {
#if defined(__AVX512F__)
  constexpr int lanes = 16;
#elif defined(__AVX2__)
  constexpr int lanes = 8;
#else
  constexpr int lanes = 4;
#endif
  typedef float vec __attribute__((vector_size(lanes * 4)));
  std::vector<double> flops(static_cast<std::size_t>(threads), 0.0);
  std::vector<std::thread> pool;
  const auto t0 = clk::now();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      vec acc[12], a, b;
      for (int i = 0; i < lanes; ++i) {
        a[i] = 0.999999f;
        b[i] = 1e-7f;
      }
      for (auto& x : acc) x = a;
      long long iters = 0;
      while (std::chrono::duration<double>(clk::now() - t0).count() < seconds) {
        for (int k = 0; k < 4096; ++k)
          for (auto& x : acc) x = x * a + b;
        iters += 4096;
      }
      float sink = 0;
      for (auto& x : acc) sink += x[0];
      if (sink == 12345.f) std::puts("");  // keep the result alive
      flops[static_cast<std::size_t>(t)] = double(iters) * 12 * lanes * 2;
    });
  for (auto& p : pool) p.join();
  const double secs = std::chrono::duration<double>(clk::now() - t0).count();
  double total = 0;
  for (double f : flops) total += f;
  return total / secs / 1e9;
}
}  // namespace

int main(int argc, char** argv) {
  int threads = 2, batch = 128, windows = 5, steps = 4;
  std::string conv = "fastest";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    const std::string value = argv[i + 1];
    if (a == "--conv" && (value == "fastest" || value == "direct" || value == "compare")) conv = value;
    else if (a == "--threads") threads = v;
    else if (a == "--batch") batch = v;
    else if (a == "--windows") windows = v;
    else if (a == "--steps") steps = v;
    else {
      std::fprintf(stderr,
                   "usage: netsplit_throughput [--threads N] [--batch N] [--windows N] [--steps N] "
                   "[--conv fastest|direct|compare]\n");
      return 2;
    }
  }
  cpu_context ctx(threads);
  ctx.set_conv_algorithm(conv == "direct" ? cpu_conv_algorithm::direct : cpu_conv_algorithm::fastest);
  resnet20<cpu_backend, 100> net(1);
  rng r(7);
  tensor<float, cpu_backend> x({batch, 3, 32, 32});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>(r.normal());
  std::vector<int> labels(static_cast<std::size_t>(batch));
  for (auto& l : labels) l = static_cast<int>(r.uniform_int(100));
  softmax_cross_entropy<float, cpu_backend> loss;
  sgd<float, cpu_backend> opt({0.9, 1e-4, false});
  auto train_step = [&] {
    loss.forward(ctx, net.forward(ctx, x, phase::train), labels);
    net.backward(ctx, loss.backward());
    opt.step(ctx, net, 0.01);
  };
  auto measure = [&](auto&& step) {
    step();  // warm-up: allocations, caches
    step();
    std::vector<double> out;
    for (int w = 0; w < windows; ++w) {
      const auto t0 = clk::now();
      for (int s = 0; s < steps; ++s) step();
      out.push_back(double(batch) * steps / std::chrono::duration<double>(clk::now() - t0).count());
    }
    return out;
  };
  if (conv == "compare") {
    // The convolution algorithms side by side in one process: window w runs each algorithm in
    // turn, so the machine's drifting load falls on all of them alike.
    const cpu_conv_algorithm algorithms[] = {cpu_conv_algorithm::fastest, cpu_conv_algorithm::winograd_4x4,
                                             cpu_conv_algorithm::winograd_2x2, cpu_conv_algorithm::direct};
    constexpr int K = 4;
    std::vector<double> tr[K], inf[K];
    for (auto alg : algorithms) {  // warm-up: each algorithm's scratch sizes
      ctx.set_conv_algorithm(alg);
      train_step();
      net.forward(ctx, x, phase::infer);
    }
    for (int w = 0; w < windows; ++w)
      for (int k = 0; k < K; ++k) {
        ctx.set_conv_algorithm(algorithms[k]);
        auto t0 = clk::now();
        for (int st = 0; st < steps; ++st) train_step();
        auto t1 = clk::now();
        for (int st = 0; st < steps; ++st) net.forward(ctx, x, phase::infer);
        auto t2 = clk::now();
        tr[k].push_back(double(batch) * steps / std::chrono::duration<double>(t1 - t0).count());
        inf[k].push_back(double(batch) * steps / std::chrono::duration<double>(t2 - t1).count());
      }
    std::string out = "{\"framework\":\"netsplit\",\"conv\":\"compare\",\"threads\":" + std::to_string(threads) +
                      ",\"batch\":" + std::to_string(batch) + ",\"windows\":" + std::to_string(windows);
    for (int k = 0; k < K; ++k) {
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    ",\"%s\":{\"train_median\":%.1f,\"infer_median\":%.1f,\"train_vs_direct\":%.3f,"
                    "\"infer_vs_direct\":%.3f}",
                    to_string(algorithms[k]), median(tr[k]), median(inf[k]), median(tr[k]) / median(tr[K - 1]),
                    median(inf[k]) / median(inf[K - 1]));
      out += buf;
    }
    std::printf("%s}\n", out.c_str());
    return 0;
  }
  const auto train = measure(train_step);
  const auto infer = measure([&] { net.forward(ctx, x, phase::infer); });
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double peak = fma_peak_gflops(threads, 1.0);
  const double fwd_gflop = 2.0 * double(net.mult_adds_per_image()) / 1e9;  // conv only
  auto list = [](const std::vector<double>& v) {
    std::string s;
    for (double d : v) s += (s.empty() ? "" : ",") + std::to_string(d);
    return "[" + s + "]";
  };
  std::printf(
      "{\"framework\":\"netsplit\",\"conv\":\"%s\",\"threads\":%d,\"batch\":%d,\"train_img_s\":%s,\"train_median\":%.1f,"
      "\"infer_img_s\":%s,\"infer_median\":%.1f,\"train_gflop_per_image\":%.4f,\"infer_gflop_per_image\":%.4f,"
      "\"fma_peak_gflops\":%.1f,\"peak_rss_mb\":%.1f}\n",
      conv.c_str(), threads, batch, list(train).c_str(), median(train), list(infer).c_str(), median(infer), 3 * fwd_gflop, fwd_gflop,
      peak, ru.ru_maxrss / 1024.0);
  return 0;
}
