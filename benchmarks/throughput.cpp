// benchmarks/throughput.cpp — training and inference throughput of one netsplit model for
// the side-by-side comparison with PyTorch (compare_pytorch.sh), plus a measurement of the
// machine's FP32 FMA peak. --model resnet20 (default), resnet56 or vgg11 (VGG11 with batch
// norm), each optionally at a width multiplier written after an x: vgg11x0.25 (the
// spelling compare_pytorch.sh's MODELS and pytorch_throughput.py share; ResNets take option-A
// shortcuts). Synthetic input, 100 classes, batch 128. Prints one JSON object: the model,
// per-window img/s, medians, achieved GFLOP/s (counted as direct convolution's
// multiply-adds, whichever algorithm ran; the classifier is not counted), peak resident
// memory. Inference is phase::infer. --conv direct turns Winograd off; --conv compare
// instead interleaves windows of fastest, winograd_4x4, winograd_2x2 and direct in one
// process and prints each one's medians and its ratio to direct. --chunk-kb sets the convolutions'
// chunk budget per thread in KiB (default: from the L2 the machine reports); a comma list
// (--chunk-kb 512,768,1024,1536) interleaves windows of each budget in one process and prints
// each one's medians and its ratio to the first; --min-blocks likewise for the least number of
// micro-kernel tile blocks per chunk (lists of both: every pair). A bad flag or model: usage on stderr, exit 2.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "model_choice.hpp"
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
struct run_options {
  int threads = 2, batch = 128, windows = 5, steps = 4;
  std::string conv = "fastest";
  std::string model = "resnet20";
  double width = 1.0;
  std::vector<std::size_t> chunk_kb;  // empty: the context's default
  std::vector<std::size_t> min_blocks;  // empty: the context's default
};

/// "512,768" -> {512, 768}; false for anything else (zero only where `zero` allows it).
bool parse_list(const std::string& s, std::vector<std::size_t>& out, bool zero = false) {
  out.clear();
  std::size_t at = 0;
  while (at <= s.size()) {
    const std::size_t end = std::min(s.find(',', at), s.size());
    const std::string part = s.substr(at, end - at);
    if (part.empty() || part.size() > 7 || part.find_first_not_of("0123456789") != std::string::npos) return false;
    const std::size_t v = std::stoul(part);
    if (v == 0 && !zero) return false;
    out.push_back(v);
    at = end + 1;
  }
  return !out.empty();
}

template <class Net>
int run(const run_options& o) {
  const int threads = o.threads, batch = o.batch, windows = o.windows, steps = o.steps;
  const std::string& conv = o.conv;
  cpu_context ctx(threads);
  ctx.set_conv_algorithm(conv == "direct" ? cpu_conv_algorithm::direct : cpu_conv_algorithm::fastest);
  Net net(1, width_multiplier{o.width});
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
  // K settings side by side in one process: use(k) selects setting k; after a warm-up step of
  // each (its scratch sizes), window w runs each in turn, so the machine's drifting load
  // falls on all of them alike. Returns each setting's training and inference img/s.
  struct interleaved {
    std::vector<std::vector<double>> train, infer;
  };
  auto interleave = [&](std::size_t K, auto&& use) {
    interleaved r{std::vector<std::vector<double>>(K), std::vector<std::vector<double>>(K)};
    for (std::size_t k = 0; k < K; ++k) {
      use(k);
      train_step();
      net.forward(ctx, x, phase::infer);
    }
    for (int w = 0; w < windows; ++w)
      for (std::size_t k = 0; k < K; ++k) {
        use(k);
        const auto t0 = clk::now();
        for (int st = 0; st < steps; ++st) train_step();
        const auto t1 = clk::now();
        for (int st = 0; st < steps; ++st) net.forward(ctx, x, phase::infer);
        const auto t2 = clk::now();
        r.train[k].push_back(double(batch) * steps / std::chrono::duration<double>(t1 - t0).count());
        r.infer[k].push_back(double(batch) * steps / std::chrono::duration<double>(t2 - t1).count());
      }
    return r;
  };
  if (o.chunk_kb.size() == 1) ctx.set_conv_chunk_bytes(o.chunk_kb[0] << 10);
  if (o.min_blocks.size() == 1) ctx.set_winograd_min_blocks(static_cast<int>(o.min_blocks[0]));
  char model_json[160];
  std::snprintf(model_json, sizeof model_json, "\"model\":\"%s\",\"width\":%g,\"architecture\":\"%s\"", o.model.c_str(),
                o.width, net.architecture().c_str());
  if (o.chunk_kb.size() > 1 || o.min_blocks.size() > 1) {
    // chunk plans (budget x Winograd's minimum blocks) side by side in one process.
    struct variant {
      std::size_t kb, blocks;
    };
    std::vector<variant> vs;
    for (std::size_t kb : o.chunk_kb.empty() ? std::vector<std::size_t>{ctx.conv_chunk_bytes() >> 10} : o.chunk_kb)
      for (std::size_t bl : o.min_blocks.empty()
                                ? std::vector<std::size_t>{static_cast<std::size_t>(ctx.winograd_min_blocks())}
                                : o.min_blocks)
        vs.push_back({kb, bl});
    const std::size_t K = vs.size();
    const auto r = interleave(K, [&](std::size_t k) {
      ctx.set_conv_chunk_bytes(vs[k].kb << 10);
      ctx.set_winograd_min_blocks(static_cast<int>(vs[k].blocks));
    });
    const auto &tr = r.train, &inf = r.infer;
    const auto& c = ctx.caches();
    std::string out = "{\"framework\":\"netsplit\"," + std::string(model_json) + ",\"conv\":\"" + conv +
                      "\",\"threads\":" + std::to_string(threads) + ",\"batch\":" + std::to_string(batch) +
                      ",\"windows\":" + std::to_string(windows) + ",\"l2_kb\":" + std::to_string(c.l2 >> 10) +
                      ",\"plans\":[";
    for (std::size_t k = 0; k < K; ++k) {
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "%s{\"chunk_kb\":%zu,\"min_blocks\":%zu,\"train_median\":%.1f,\"infer_median\":%.1f,"
                    "\"train_vs_first\":%.3f,\"infer_vs_first\":%.3f}",
                    k ? "," : "", vs[k].kb, vs[k].blocks, median(tr[k]), median(inf[k]), median(tr[k]) / median(tr[0]),
                    median(inf[k]) / median(inf[0]));
      out += buf;
    }
    std::printf("%s]}\n", out.c_str());
    return 0;
  }
  if (conv == "compare") {
    // The convolution algorithms side by side in one process.
    const cpu_conv_algorithm algorithms[] = {cpu_conv_algorithm::fastest, cpu_conv_algorithm::winograd_4x4,
                                             cpu_conv_algorithm::winograd_2x2, cpu_conv_algorithm::direct};
    constexpr int K = 4;
    const auto r = interleave(K, [&](std::size_t k) { ctx.set_conv_algorithm(algorithms[k]); });
    const auto &tr = r.train, &inf = r.infer;
    std::string out = "{\"framework\":\"netsplit\"," + std::string(model_json) + ",\"conv\":\"compare\",\"threads\":" +
                      std::to_string(threads) + ",\"batch\":" + std::to_string(batch) +
                      ",\"windows\":" + std::to_string(windows);
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
    for (double d : v) {
      if (!s.empty()) s += ',';
      s += std::to_string(d);
    }
    return "[" + s + "]";
  };
  std::printf(
      "{\"framework\":\"netsplit\",%s,\"conv\":\"%s\",\"threads\":%d,\"batch\":%d,\"train_img_s\":%s,\"train_median\":%.1f,"
      "\"infer_img_s\":%s,\"infer_median\":%.1f,\"train_gflop_per_image\":%.4f,\"infer_gflop_per_image\":%.4f,"
      "\"fma_peak_gflops\":%.1f,\"peak_rss_mb\":%.1f,\"l2_kb\":%zu,\"chunk_kb\":%zu,\"min_blocks\":%d}\n",
      model_json, conv.c_str(), threads, batch, list(train).c_str(), median(train), list(infer).c_str(), median(infer),
      3 * fwd_gflop, fwd_gflop, peak, ru.ru_maxrss / 1024.0, ctx.caches().l2 >> 10, ctx.conv_chunk_bytes() >> 10,
      ctx.winograd_min_blocks());
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  run_options o;
  auto usage = [] {
    std::fprintf(stderr,
                 "usage: netsplit_throughput [--model resnet20|resnet56|vgg11[x<width>]] [--threads N] [--batch N]\n"
                 "                           [--windows N] [--steps N] [--conv fastest|direct|compare]\n"
                 "                           [--chunk-kb N[,N...]] [--min-blocks N[,N...]]\n");
    return 2;
  };
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const std::string value = argv[i + 1];
    const int v = std::atoi(value.c_str());
    bench::model_choice m;
    if (a == "--conv" && (value == "fastest" || value == "direct" || value == "compare")) o.conv = value;
    else if (a == "--model" && bench::parse_model(value, m)) {
      o.model = value;
      o.width = m.width;
    } else if (a == "--threads" && v > 0) o.threads = v;
    else if (a == "--batch" && v > 0) o.batch = v;
    else if (a == "--windows" && v > 0) o.windows = v;
    else if (a == "--steps" && v > 0) o.steps = v;
    else if (a == "--chunk-kb" && parse_list(value, o.chunk_kb)) {
    } else if (a == "--min-blocks" && parse_list(value, o.min_blocks, true)) {
    } else return usage();
  }
  bench::model_choice m;
  bench::parse_model(o.model, m);
  if (m.name == "resnet56") return run<resnet56<cpu_backend, 100>>(o);
  if (m.name == "vgg11") return run<vgg11<cpu_backend, 100>>(o);
  return run<resnet20<cpu_backend, 100>>(o);
}
