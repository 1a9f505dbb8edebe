// tests/cuda/gpu_throughput.cu — throughput of cuda_backend on the GPU for one model:
// training steps (forward, loss, backward, SGD; the loss value comes back to the host every
// step, as in the trainer) and inference (eval-mode forward), on a fixed synthetic batch
// already on the device, so data loading is not measured. 100 classes. Prints one JSON line
// per mode.
// Usage: gpu_throughput [--model resnet20|resnet56|vgg11[x<width>]] [--batch N] [--iters N]
//                       [--warmup N] [--tf32]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../benchmarks/model_choice.hpp"
#include "netsplit/cuda.hpp"

using namespace netsplit;

namespace {

struct options {
  bench::model_choice model;
  int batch = 128, iters = 100, warmup = 15;
  bool tf32 = false;
};

template <class Net>
void run(const options& o) {
  cuda_context ctx(cuda_options{.device = 0, .allow_tf32 = o.tf32});
  Net net(1, width_multiplier{o.model.width});
  rng r(2);
  std::vector<float> host(static_cast<std::size_t>(o.batch) * 3 * 32 * 32);
  for (auto& v : host) v = static_cast<float>(r.normal());
  const auto images = tensor<float, cuda_backend>::from_host({o.batch, 3, 32, 32}, host);
  std::vector<int> labels(static_cast<std::size_t>(o.batch));
  for (auto& l : labels) l = static_cast<int>(r.next_u64() % 100);
  softmax_cross_entropy<float, cuda_backend> loss;
  sgd<float, cuda_backend> opt;
  double last_loss = 0;
  auto train_step = [&] {
    last_loss = loss.forward(ctx, net.forward(ctx, images, phase::train), labels);
    net.backward(ctx, loss.backward());
    opt.step(ctx, net, 0.01);
  };
  auto timed = [&](auto&& step) {
    for (int i = 0; i < o.warmup; ++i) step();
    ctx.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.iters; ++i) step();
    ctx.synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  char head[256];
  std::snprintf(head, sizeof head, "{\"impl\": \"netsplit\", \"model\": \"%s\", \"width\": %g, \"batch\": %d, \"iters\": %d, \"tf32\": %s",
                o.model.name.c_str(), o.model.width, o.batch, o.iters, o.tf32 ? "true" : "false");
  const double train_s = timed(train_step);
  std::printf("%s, \"mode\": \"train\", \"images_per_s\": %.1f, \"ms_per_step\": %.3f, \"last_loss\": %.4f}\n", head,
              o.iters * o.batch / train_s, 1e3 * train_s / o.iters, last_loss);
  const double infer_s = timed([&] { net.forward(ctx, images, phase::eval); });
  std::printf("%s, \"mode\": \"inference\", \"images_per_s\": %.1f, \"ms_per_step\": %.3f}\n", head,
              o.iters * o.batch / infer_s, 1e3 * infer_s / o.iters);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    auto next = [&] { return has_value ? std::atoi(argv[++i]) : 0; };
    if (a == "--batch") o.batch = next();
    else if (a == "--iters") o.iters = next();
    else if (a == "--warmup") o.warmup = next();
    else if (a == "--tf32") o.tf32 = true;
    else if (a == "--model" && has_value && bench::parse_model(argv[i + 1], o.model)) ++i;
    else {
      std::fprintf(stderr, "usage: gpu_throughput [--model resnet20|resnet56|vgg11[x<width>]] [--batch N] [--iters N] [--warmup N] [--tf32]\n");
      return 2;
    }
  }
  if (o.batch <= 0 || o.iters <= 0 || o.warmup < 0) return 2;
  try {
    if (o.model.name == "resnet20") run<resnet20<cuda_backend, 100>>(o);
    else if (o.model.name == "resnet56") run<resnet56<cuda_backend, 100>>(o);
    else run<vgg11<cuda_backend, 100>>(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_throughput: %s\n", e.what());
    return 1;
  }
  return 0;
}
