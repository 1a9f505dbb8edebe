// tests/cuda/gpu_throughput.cu — ResNet20 throughput of cuda_backend on the GPU:
// training steps (forward, loss, backward, SGD; the loss value comes back to the host every
// step, as in the trainer) and inference (eval-mode forward), on a fixed synthetic batch
// already on the device, so data loading is not measured. Prints one JSON line per mode.
// Usage: gpu_throughput [--classes-100] [--batch N] [--iters N] [--warmup N] [--tf32]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "netsplit/cuda.hpp"

using namespace netsplit;

int main(int argc, char** argv) {
  int batch = 128, iters = 100, warmup = 15;
  bool tf32 = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (a == "--batch") batch = next();
    else if (a == "--iters") iters = next();
    else if (a == "--warmup") warmup = next();
    else if (a == "--tf32") tf32 = true;
    else {
      std::fprintf(stderr, "usage: gpu_throughput [--batch N] [--iters N] [--warmup N] [--tf32]\n");
      return 2;
    }
  }
  if (batch <= 0 || iters <= 0 || warmup < 0) return 2;
  try {
    cuda_context ctx(cuda_options{.device = 0, .allow_tf32 = tf32});
    resnet20<cuda_backend, 100> net(1);
    rng r(2);
    std::vector<float> host(static_cast<std::size_t>(batch) * 3 * 32 * 32);
    for (auto& v : host) v = static_cast<float>(r.normal());
    const auto images = tensor<float, cuda_backend>::from_host({batch, 3, 32, 32}, host);
    std::vector<int> labels(static_cast<std::size_t>(batch));
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
      for (int i = 0; i < warmup; ++i) step();
      ctx.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) step();
      ctx.synchronize();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    const double train_s = timed(train_step);
    std::printf("{\"impl\": \"netsplit\", \"mode\": \"train\", \"batch\": %d, \"iters\": %d, \"tf32\": %s, "
                "\"images_per_s\": %.1f, \"ms_per_step\": %.3f, \"last_loss\": %.4f}\n",
                batch, iters, tf32 ? "true" : "false", iters * batch / train_s, 1e3 * train_s / iters, last_loss);
    const double infer_s = timed([&] { net.forward(ctx, images, phase::eval); });
    std::printf("{\"impl\": \"netsplit\", \"mode\": \"inference\", \"batch\": %d, \"iters\": %d, \"tf32\": %s, "
                "\"images_per_s\": %.1f, \"ms_per_step\": %.3f}\n",
                batch, iters, tf32 ? "true" : "false", iters * batch / infer_s, 1e3 * infer_s / iters);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_throughput: %s\n", e.what());
    return 1;
  }
  return 0;
}
