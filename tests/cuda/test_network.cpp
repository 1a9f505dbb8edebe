// tests/cuda/test_network.cpp — whole-network behaviour of cuda_backend against the CPU
// backend: ResNet20 training steps (loss, gradients, parameters), the trainer with a TPM
// recorder, function preservation of splits on the backend, and checkpoints written on
// one backend and loaded on the other (bit-exact). Tolerances: see backend_tests.hpp.
#include "backend_tests.hpp"

#include <filesystem>
#include <unistd.h>

namespace netsplit_test {
namespace {

namespace fs = std::filesystem;
template <class B>
using net = resnet20<B, 10, float, shortcut_a>;

tensor<float, cpu> random_images(int n, std::uint64_t seed) {
  return make_tensor<float, cpu>({n, 3, 32, 32}, random_values(static_cast<std::size_t>(n) * 3 * 32 * 32, seed));
}

dataset synthetic(int n, std::uint64_t seed, const std::string& name) {
  dataset d;
  d.name = name;
  d.classes = 10;
  rng r(seed);
  d.pixels.resize(static_cast<std::size_t>(n) * cifar_geometry::image_bytes);
  for (auto& p : d.pixels) p = static_cast<std::uint8_t>(r.next_u64() & 255);
  for (int i = 0; i < n; ++i) d.labels.push_back(static_cast<int>(r.next_u64() % 10));
  for (int c = 0; c < 10; ++c) d.class_names.push_back("class" + std::to_string(c));
  return d;
}

fs::path temp_dir(const char* tag) {
  const auto dir = fs::temp_directory_path() / (std::string("netsplit_cuda_") + tag + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

double rel_diff(double got, double want) { return std::abs(got - want) / std::max(std::abs(want), 1e-12); }

/// Two SGD steps of ResNet20 by hand on both backends: loss, gradients, parameters, logits.
template <class B>
void training_step() {
  typename B::context ctx;
  reference_cpu ref;
  net<cpu> c(7);
  net<B> g(7);
  check_all_close(state_of(g), state_of(c), exact, "initial state");
  softmax_cross_entropy<float, cpu> loss_c;
  softmax_cross_entropy<float, B> loss_g;
  sgd<float, cpu> opt_c;
  sgd<float, B> opt_g;
  const std::vector<int> labels{1, 7, 3, 3};
  for (int step = 0; step < 2; ++step) {
    INFO("step " << step);
    const auto xc = random_images(4, 50 + step);
    const auto xg = to<B>(xc, ctx);
    const double lc = loss_c.forward(ref, c.forward(ref, xc, phase::train), labels);
    const double lg = loss_g.forward(ctx, g.forward(ctx, xg, phase::train), labels);
    CHECK(rel_diff(lg, lc) <= op_tol);
    c.backward(ref, loss_c.backward());
    g.backward(ctx, loss_g.backward());
    check_all_close(grads_of(g), grads_of(c), network_tol, "gradient");
    opt_c.step(ref, c, 0.1);
    opt_g.step(ctx, g, 0.1);
  }
  check_all_close(state_of(g), state_of(c), network_tol, "state after two steps");
  const auto x = random_images(3, 60);
  NETSPLIT_CHECK_CLOSE(g.forward(ctx, to<B>(x, ctx), phase::eval).to_host(), c.forward(ref, x, phase::eval).to_host(),
                       network_tol);
}

train_config config_for(const fs::path& dir) {
  train_config cfg;
  cfg.max_iter = 4;
  cfg.batch_size = 8;
  cfg.schedule = constant_lr{0.05};
  cfg.snapshot_final = false;
  cfg.snapshot_dir = dir;
  cfg.seed = 3;
  return cfg;
}

/// The trainer (host-staged batches), a TPM recorder on its after_backward hook, and
/// checkpoints CPU -> B -> CPU, which must restore bit-exactly.
template <class B>
void trainer_recorder_and_checkpoints() {
  typename B::context ctx;
  reference_cpu ref;
  const auto train = synthetic(48, 1, "synthetic-train"), test = synthetic(16, 2, "synthetic-test");
  const auto stats = compute_channel_stats(train);
  const auto dir = temp_dir("trainer");
  net<cpu> c(5);
  net<B> g(5);
  trainer<net<cpu>> tc(ref, c, train, test, stats, config_for(dir));
  trainer<net<B>> tg(ctx, g, train, test, stats, config_for(dir));
  tpm_recorder<net<cpu>> rc(c, make_tpm_metric("taylor"), {0, 2}, 9);
  tpm_recorder<net<B>> rg(g, make_tpm_metric("taylor"), {0, 2}, 9);
  rc.attach(tc);
  rg.attach(tg);
  // Every metric that reads signals (activations and gradients, weights, weight gradients:
  // staged from the backend's memory): taylor and l1_norm over the first step alone, at
  // the first step's tolerance; the two that need two observations over both steps, at
  // the second step's (below).
  using recorder_pair = std::pair<tpm_recorder<net<cpu>>, tpm_recorder<net<B>>>;
  std::vector<recorder_pair> tpm;
  tpm.reserve(4);
  for (const auto& [m, end] : std::vector<std::pair<const char*, std::int64_t>>{
           {"taylor", 1}, {"l1_norm", 1}, {"weight_motion", 2}, {"grad_disagreement", 2}}) {
    tpm.emplace_back(tpm_recorder<net<cpu>>(c, make_tpm_metric(m), {0, end}, 9),
                     tpm_recorder<net<B>>(g, make_tpm_metric(m), {0, end}, 9, &ctx));
    tc.after_backward.add([&r = tpm.back().first](std::int64_t it) { r.observe(it); });
    tg.after_backward.add([&r = tpm.back().second](std::int64_t it) { r.observe(it); });
  }
  auto check_scores = [](auto& rc_, auto& rg_, double tol) {
    const auto sc = rc_.scores(), sg = rg_.scores();
    REQUIRE(sc.size() == sg.size());
    double largest = 0;
    for (std::size_t s = 0; s < sc.size(); ++s) {
      INFO("TPM " << rc_.metric().name() << " site " << sc[s].site);
      CHECK(sg[s].site == sc[s].site);
      std::vector<float> a(sg[s].scores.begin(), sg[s].scores.end()), b(sc[s].scores.begin(), sc[s].scores.end());
      for (float v : b) largest = std::max(largest, double(std::abs(v)));
      NETSPLIT_CHECK_CLOSE(a, b, tol);
    }
    CHECK(largest > 0);  // scores that are all zero would compare equal without testing anything
  };
  tc.step();
  tg.step();
  check_all_close(state_of(g), state_of(c), network_tol, "trainer state after one step");
  for (std::size_t k = 0; k < 2; ++k) check_scores(tpm[k].first, tpm[k].second, network_tol);
  // After a second step (batch 8, lr 0.05) agreement depends on ReLU decisions that the
  // first step's rounding-level differences can flip: the CPU backend alone, direct
  // convolution on 1 vs 2 threads, differs by 7e-4 (relative to the largest value) in a BN
  // shift here, and cuDNN under compute-sanitizer (other algorithms) differed by 1.8%. The
  // second step and the TPM scores it completes are checked at that looser level.
  constexpr double two_step_tol = 0.05;
  tc.step();
  tg.step();
  CHECK(tg.iteration() == 2);
  CHECK(rg.observed() == 2);
  check_all_close(state_of(g), state_of(c), two_step_tol, "trainer state after two steps");
  check_scores(rc, rg, two_step_tol);
  for (std::size_t k = 2; k < tpm.size(); ++k) {
    CHECK(tpm[k].second.observed() == 2);
    check_scores(tpm[k].first, tpm[k].second, two_step_tol);
  }

  // CPU checkpoint -> a fresh network on B: parameters, buffers, momentum bit-exact
  const auto from_cpu = tc.snapshot();
  net<B> g2(99);
  trainer<net<B>> tg2(ctx, g2, train, test, stats, config_for(dir));
  tg2.load(from_cpu);
  CHECK(tg2.iteration() == 2);
  check_all_close(state_of(g2), state_of(c), exact, "CPU checkpoint loaded on the backend");
  REQUIRE(tg2.optimizer().momentum().size() == tc.optimizer().momentum().size());
  for (const auto& [name, m] : tc.optimizer().momentum()) {
    INFO("momentum " << name);
    CHECK(tg2.optimizer().momentum().at(name).to_host() == m.to_host());
  }
  // ... and back: B checkpoint -> a fresh CPU network
  const auto from_b = dir / "from_backend.safetensors";
  tg2.save(from_b);
  net<cpu> c2(98);
  trainer<net<cpu>> tc2(ref, c2, train, test, stats, config_for(dir));
  tc2.load(from_b);
  check_all_close(state_of(c2), state_of(g2), exact, "backend checkpoint loaded on the CPU");
  // both resumed runs continue alike
  tc2.step();
  tg2.step();
  check_all_close(state_of(g2), state_of(c2), network_tol, "state one step after resuming");
  fs::remove_all(dir);
}

/// Splits at inner sites and coupled groups keep the function of a network on B (eval and
/// train mode), agree with the same splits on the CPU, and training continues after them.
template <class B>
void split_preserves_function() {
  typename B::context ctx;
  reference_cpu ref;
  net<cpu> c(3);
  for (int i = 0; i < 2; ++i) c.forward(ref, random_images(4, 70 + i), phase::train);  // running statistics
  rng r(4);
  c.visit_parameters([&](const std::string& n, auto& w, auto&) {
    if (w.rank() == 1 && n.find("bn") != std::string::npos) {
      auto v = w.to_host();
      for (auto& x : v) x += 0.2f * static_cast<float>(r.normal());
      w.from_host(v);
    }
  });
  net<B> g;
  copy_state(c, g);
  const auto x = random_images(4, 77);
  const auto xg = to<B>(x, ctx);
  auto outputs = [&](auto& n, auto& cx, const auto& in) {
    auto eval = n.forward(cx, in, phase::eval).to_host();
    std::vector<std::vector<float>> saved;
    n.visit_buffers([&](const std::string&, auto& b) { saved.push_back(b.to_host()); });
    auto train = n.forward(cx, in, phase::train).to_host();
    std::size_t k = 0;
    n.visit_buffers([&](const std::string&, auto& b) { b.from_host(saved[k++]); });
    return std::pair{eval, train};
  };
  const auto before = outputs(g, ctx, xg);
  sgd<float, B> opt_g;
  sgd<float, cpu> opt_c;
  auto sites_g = derive_sites(g);
  auto sites_c = derive_sites(c);
  const std::vector<std::pair<std::string, int>> splits{{"layer1.0.conv1", 2}, {"stage1", 5}, {"layer2.1.conv1", 0},
                                                        {"stage2", 9},         {"stage3", 1}, {"layer3.2.conv1", 63}};
  std::uint64_t seed = 1;
  for (const auto& [site, filter] : splits) {
    split_filter(g, sites_g[find_site(sites_g, site)], filter, net2wider{0.0}, seed, &opt_g.state());
    split_filter(c, sites_c[find_site(sites_c, site)], filter, net2wider{0.0}, seed, &opt_c.state());
    ++seed;
  }
  CHECK(count_parameters(g) == count_parameters(c));
  const auto after = outputs(g, ctx, xg);
  NETSPLIT_CHECK_CLOSE(after.first, before.first, op_tol);
  NETSPLIT_CHECK_CLOSE(after.second, before.second, op_tol);
  const auto after_c = outputs(c, ref, x);
  NETSPLIT_CHECK_CLOSE(after.first, after_c.first, network_tol);
  // a training step on the grown network (new widths: new convolution plans and scratch)
  softmax_cross_entropy<float, B> loss_g;
  const std::vector<int> labels{0, 1, 2, 3};
  const double l = loss_g.forward(ctx, g.forward(ctx, xg, phase::train), labels);
  CHECK(std::isfinite(l));
  g.backward(ctx, loss_g.backward());
  opt_g.step(ctx, g, 0.05);
  g.visit_parameters([&](const std::string& name, auto& w, auto&) {
    INFO(name);
    CHECK(B::all_finite(ctx, w.numel(), w.data()));
  });
}

}  // namespace
}  // namespace netsplit_test

using namespace netsplit_test;

TEST_CASE("cuda backend: ResNet20 training steps match the CPU backend") { training_step<backend_under_test>(); }
TEST_CASE("cuda backend: trainer, TPM recorder and CPU<->backend checkpoints") {
  trainer_recorder_and_checkpoints<backend_under_test>();
}
TEST_CASE("cuda backend: splits preserve the function on the backend") {
  split_preserves_function<backend_under_test>();
}
