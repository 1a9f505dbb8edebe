// benchmarks/latency.cpp — batch-1 inference latency of netsplit's ResNet20 (or --model
// resnet56|vgg11[x<width>]) on the CPU backend: `--images` (default 1000) distinct single
// images, each one forward under phase::infer (folded conv + BN + ReLU), timed one by one
// after `--warmup` (default 50) untimed ones. Prints one JSON object: p50, p90, p99, mean and
// max in microseconds. compare_latency.sh runs it beside PyTorch's eval() at batch 1.
// Usage: netsplit_latency [--model M] [--threads N] [--images N] [--warmup N]; bad flags exit 2.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "model_choice.hpp"
#include "netsplit/netsplit.hpp"

using namespace netsplit;
using clk = std::chrono::steady_clock;

namespace {

struct options {
  bench::model_choice model;
  int threads = 1, images = 1000, warmup = 50;
};

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(pos);
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

template <class Net>
void run(const options& o) {
  cpu_context ctx(o.threads);
  Net net(1, width_multiplier{o.model.width});
  rng r(3);
  std::vector<tensor<float, cpu_backend>> images;
  for (int i = 0; i < std::min(o.images, 64); ++i) {  // 64 distinct images, reused in turn
    tensor<float, cpu_backend> x({1, 3, 32, 32});
    for (std::int64_t k = 0; k < x.numel(); ++k) x.data()[k] = static_cast<float>(r.normal());
    images.push_back(std::move(x));
  }
  float sink = 0;
  for (int i = 0; i < o.warmup; ++i) sink += net.forward(ctx, images[i % images.size()], phase::infer).data()[0];
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(o.images));
  for (int i = 0; i < o.images; ++i) {
    const auto t0 = clk::now();
    sink += net.forward(ctx, images[i % images.size()], phase::infer).data()[0];
    us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
  }
  double mean = 0;
  for (double v : us) mean += v / static_cast<double>(us.size());
  std::printf("{\"framework\":\"netsplit\",\"model\":\"%s\",\"width\":%g,\"threads\":%d,\"images\":%d,"
              "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,\"max_us\":%.1f,\"checksum\":%g}\n",
              o.model.name.c_str(), o.model.width, o.threads, o.images, quantile(us, 0.5), quantile(us, 0.9), quantile(us, 0.99),
              mean, *std::max_element(us.begin(), us.end()), static_cast<double>(sink));
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has = i + 1 < argc;
    auto count = [&](int& out, int min) {
      char* end = nullptr;
      const long v = has ? std::strtol(argv[i + 1], &end, 10) : 0;
      if (!has || *end != '\0' || v < min || v > 1000000) return false;
      out = static_cast<int>(v);
      ++i;
      return true;
    };
    bool ok = false;
    if (a == "--model") ok = has && bench::parse_model(argv[++i], o.model);
    else if (a == "--threads") ok = count(o.threads, 1);
    else if (a == "--images") ok = count(o.images, 1);
    else if (a == "--warmup") ok = count(o.warmup, 0);
    if (!ok) {
      std::fprintf(stderr, "usage: netsplit_latency [--model resnet20|resnet56|vgg11[x<width>]] [--threads N] "
                           "[--images N] [--warmup N]\n");
      return 2;
    }
  }
  if (o.model.name == "resnet20") run<resnet20<cpu_backend, 100>>(o);
  else if (o.model.name == "resnet56") run<resnet56<cpu_backend, 100>>(o);
  else run<vgg11<cpu_backend, 100>>(o);
  return 0;
}
