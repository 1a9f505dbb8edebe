// TPM metric options and their biases across sites (issue 22, item 4): taylor's spatial
// mean vs sum, per-tap score normalisation, the |gamma| magnitude control, Oja's step
// annealing in grad_disagreement; and the split-pair divergence diagnostic. Each case is
// hand-computable or checked against an independent computation.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "netsplit/netsplit.hpp"
#include "../benchmarks/oja_stream.hpp"
#include "split_helpers.hpp"

using namespace netsplit;
namespace fs = std::filesystem;
using cpu = cpu_backend;
using namespace netsplit::testing;

namespace {
using net_a = resnet20<cpu, 10, float, shortcut_a>;

/// One training-mode forward and backward pass on random images (activations and gradients
/// of every tap are then readable, as after the trainer's backward).
/// The returned images must outlive the next backward (layers keep pointers to their inputs).
template <class Net>
tensor<float, cpu> forward_backward(Net& net, cpu_context& ctx, int n, std::uint64_t seed) {
  softmax_cross_entropy<float, cpu> loss;
  std::vector<int> labels(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = i % Net::classes;
  auto images = random_images(n, seed);
  loss.forward(ctx, net.forward(ctx, images, phase::train), labels);
  net.backward(ctx, loss.backward());
  return images;
}

int plane_of(const std::string& site) {  // H*W of a ResNet20 site's maps (CIFAR input)
  const bool s3 = site.find("layer3") == 0 || site == "stage3";
  const bool s2 = site.find("layer2") == 0 || site == "stage2";
  return s3 ? 64 : s2 ? 256 : 1024;
}
}  // namespace

TEST_CASE("taylor_sum is the spatial sum of activation x gradient (the first-order loss change): mean x H*W") {
  // Hand case: one filter at two sites, per-sample spatial dot of activation and gradient
  // 512 on a 32x32 map (A) and 64 on an 8x8 map (B). The spatial mean (taylor) is 0.5 at A
  // and 1.0 at B, so B ranks first; the loss change (taylor_sum) is 512 at A and 64 at B.
  site_signals a, b;
  a.filters = b.filters = 1;
  const std::vector<double> mean_a{512.0 / 1024}, mean_b{64.0 / 64}, sum_a{512.0}, sum_b{64.0};
  a.taylor = mean_a;
  a.taylor_sum = sum_a;
  b.taylor = mean_b;
  b.taylor_sum = sum_b;
  auto score = [](const auto& m, const site_signals& s) {
    metric_state st;
    m.observe(st, s);
    return m.scores(st, s);
  };
  CHECK(taylor{}.needs() == tpm_signal::taylor);
  CHECK(taylor_sum{}.needs() == tpm_signal::taylor_sum);
  const std::vector<site_scores> by_mean{{"A", score(taylor{}, a)}, {"B", score(taylor{}, b)}};
  const std::vector<site_scores> by_sum{{"A", score(taylor_sum{}, a)}, {"B", score(taylor_sum{}, b)}};
  CHECK(by_mean[0].scores == std::vector<double>{0.5});
  CHECK(by_sum[0].scores == std::vector<double>{512.0});
  CHECK(top_k{1}.select(by_mean).front().site == 1);
  CHECK(top_k{1}.select(by_sum).front().site == 0);
  // registered under its own name, so --tpm offers it and a checkpoint names it
  CHECK(make_tpm_metric("taylor_sum").name() == "taylor_sum");
  const auto names = tpm_metric_names();
  CHECK(std::find(names.begin(), names.end(), "taylor_sum") != names.end());
}

TEST_CASE("the recorder's taylor_sum equals an independent computation and taylor x H*W at every site") {
  cpu_context ctx(2);
  net_a net(5);
  tpm_recorder<net_a> mean(net, make_tpm_metric("taylor"), {0, 1}, 1, &ctx);
  tpm_recorder<net_a> sum(net, make_tpm_metric("taylor_sum"), {0, 1}, 1);
  const auto images = forward_backward(net, ctx, 40, 9);  // 40 samples: the recorder reads the first 32
  mean.observe(0);
  sum.observe(0);
  const auto sm = mean.scores(), ss = sum.scores();
  REQUIRE(sm.size() == 12);
  for (std::size_t s = 0; s < sm.size(); ++s) {
    const auto& site = sum.sites()[s];
    INFO(site.name);
    // by hand: per sample |sum over the plane of a*g|, mean over the first 32 samples,
    // summed over the site's taps
    std::vector<double> expect(ss[s].scores.size(), 0.0);
    for (const auto& tap : site.taps) {
      const auto a = tap.activation()->to_host(), g = tap.gradient()->to_host();
      const auto& shape = tap.activation()->shape();
      const std::int64_t c = shape[1], plane = shape[2] * shape[3];
      CHECK(plane == plane_of(site.name));
      for (std::int64_t n = 0; n < 32; ++n)
        for (std::int64_t f = 0; f < c; ++f) {
          double dot = 0;
          for (std::int64_t i = 0; i < plane; ++i)
            dot += double(a[static_cast<std::size_t>((n * c + f) * plane + i)]) * g[static_cast<std::size_t>((n * c + f) * plane + i)];
          expect[static_cast<std::size_t>(f)] += std::abs(dot) / 32;
        }
    }
    for (std::size_t f = 0; f < expect.size(); ++f) {
      CHECK(ss[s].scores[f] == doctest::Approx(expect[f]).epsilon(1e-4));
      CHECK(ss[s].scores[f] == doctest::Approx(sm[s].scores[f] * plane_of(site.name)).epsilon(1e-12));
    }
  }
  // Across sites the sum multiplies stage-1 maps (32x32) by 16 relative to stage-3 (8x8):
  // selecting on it is selecting on the mean with every site rescaled by its map size.
  auto rescaled = sm;
  for (auto& s : rescaled) {
    const int p = plane_of(s.site);
    for (auto& v : s.scores) v *= p;
  }
  CHECK(top_k{9}.select(ss) == top_k{9}.select(rescaled));
}

TEST_CASE("score normalisation: none keeps the scores, per_tap divides a site's scores by its taps") {
  // A group's score sums its taps (one per producer: 3 or 4 in ResNet20), an inner site's
  // has one. Hand case: an inner site scoring 3 per tap, a 4-tap group scoring 2 per tap.
  const std::vector<site_scores> s{{"inner", {3.0, 1.0}, 1}, {"group", {8.0, 4.0}, 4}};
  auto apply = [&](const std::string& name) {
    auto out = s;
    make_score_normalisation(name).apply(out);
    return out;
  };
  CHECK(apply("none")[1].scores == std::vector<double>{8.0, 4.0});
  CHECK(apply("per_tap")[0].scores == std::vector<double>{3.0, 1.0});
  CHECK(apply("per_tap")[1].scores == std::vector<double>{2.0, 1.0});
  // as a selector policy: the same selector picks the group's filter raw, the inner one per tap
  CHECK(normalised_selector{make_score_normalisation("none"), top_k{1}}.select(s).front() == split_choice{1, 0, 8.0});
  CHECK(normalised_selector{make_score_normalisation("per_tap"), top_k{1}}.select(s).front() == split_choice{0, 0, 3.0});
  CHECK(normalised_selector{per_tap{}, capped_top_k{2, 1}}.select(s) ==
        std::vector<split_choice>{{0, 0, 3.0}, {1, 0, 2.0}});
  CHECK(score_normalisation_names() == std::vector<std::string>{"none", "per_tap", "per_site_rank", "z_score"});
  CHECK_THROWS_WITH_AS(make_score_normalisation("rank"), doctest::Contains("known: none, per_tap"), contract_violation);
  std::vector<site_scores> no_taps{{"x", {1.0}, 0}};
  CHECK_THROWS_WITH_AS(per_tap{}.apply(no_taps), doctest::Contains("'x'"), contract_violation);
}

TEST_CASE("the recorder reports each site's taps: 1 per inner site, one per producer of a group") {
  net_a net(1);
  tpm_recorder<net_a> rec(net, make_tpm_metric("random"), {0, 1}, 1);
  rec.observe(0);
  for (const auto& s : rec.scores()) {
    INFO(s.site);
    const int expect = s.site == "stage1" ? 4 : s.site == "stage2" || s.site == "stage3" ? 3 : 1;
    CHECK(s.taps == expect);
  }
}

namespace {
bool is_bn_gamma(const std::string& name, std::int64_t rank) {
  return rank == 1 && name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
}
template <class Net>
std::vector<double> site_score(Net& net, const char* metric, const std::string& site) {
  tpm_recorder<Net> rec(net, make_tpm_metric(metric), {0, 1}, 1);
  rec.observe(0);
  return rec.scores()[find_site(rec.sites(), site)].scores;
}
}  // namespace

TEST_CASE("bn_gamma scores a filter by |gamma| of the batch norm after its producer; a group by the mean over producers") {
  net_a net(2);
  // gamma of channel c in the k-th batch norm: (-1)^c (0.1 k + 0.01 c), so |gamma| differs everywhere
  std::map<std::string, std::vector<float>> gamma;
  int k = 0;
  net.visit_parameters([&](const std::string& n, auto& w, auto&) {
    if (!is_bn_gamma(n, w.rank())) return;
    ++k;
    std::vector<float> g(static_cast<std::size_t>(w.numel()));
    for (std::size_t c = 0; c < g.size(); ++c) g[c] = static_cast<float>((c % 2 ? -1 : 1) * (0.1 * k + 0.01 * double(c)));
    w.from_host(g);
    gamma[n] = g;
  });
  REQUIRE(k == 19);  // the stem's and two per block
  tpm_recorder<net_a> rec(net, make_tpm_metric("bn_gamma"), {0, 1}, 1);
  CHECK(rec.metric().needs() == tpm_signal::bn_scale);
  rec.observe(0);
  const auto scores = rec.scores();
  auto at = [&](const char* site) { return scores[find_site(rec.sites(), site)].scores; };
  const auto inner = at("layer2.1.conv1");
  REQUIRE(inner.size() == 32);
  for (std::size_t c = 0; c < inner.size(); ++c) CHECK(inner[c] == doctest::Approx(std::abs(gamma["layer2.1.bn1.weight"][c])));
  const auto group = at("stage1");  // the stem's bn1 and every stage-1 block's bn2
  for (std::size_t c = 0; c < group.size(); ++c) {
    double m = 0;
    for (const char* bn : {"bn1.weight", "layer1.0.bn2.weight", "layer1.1.bn2.weight", "layer1.2.bn2.weight"})
      m += std::abs(gamma[bn][c]) / 4;
    CHECK(group[c] == doctest::Approx(m));
  }
  const auto stage2 = at("stage2");  // option A: the shortcut has no batch norm
  for (std::size_t c = 0; c < stage2.size(); ++c) {
    double m = 0;
    for (const char* bn : {"layer2.0.bn2.weight", "layer2.1.bn2.weight", "layer2.2.bn2.weight"}) m += std::abs(gamma[bn][c]) / 3;
    CHECK(stage2[c] == doctest::Approx(m));
  }
  // the window's closing read (after its last update) sees the gamma the window ends with
  tensor_index<net_a>(net).param("layer2.1.bn1.weight").from_host(std::vector<float>(32, -3.0f));
  rec.after_update(1);
  const auto closed = rec.scores()[find_site(rec.sites(), "layer2.1.conv1")].scores;
  CHECK(closed == std::vector<double>(32, 3.0));
  CHECK(make_tpm_metric("bn_gamma").name() == "bn_gamma");
}

TEST_CASE("a conv feeding batch norm is scale-invariant: l1_norm follows its scale, the function and bn_gamma do not") {
  // The documented reason l1_norm is no magnitude control here (docs/metrics.md).
  cpu_context ctx(2);
  net_a net(3);
  for (int i = 0; i < 3; ++i) net.forward(ctx, random_images(8, 100 + i), phase::train);  // running statistics
  const auto x = random_images(6, 77);
  const auto [eval0, train0] = outputs(net, ctx, x);
  const auto l1_before = site_score(net, "l1_norm", "layer1.0.conv1");
  const auto gamma_before = site_score(net, "bn_gamma", "layer1.0.conv1");
  tensor_index<net_a> idx(net);
  auto scale = [](auto& t, float by) {
    auto h = t.to_host();
    for (auto& v : h) v *= by;
    t.from_host(h);
  };
  scale(idx.param("layer1.0.conv1.weight"), 2.0f);
  // the statistics batch norm would gather from the rescaled conv (eval mode reads them)
  scale(idx.buffer("layer1.0.bn1.running_mean"), 2.0f);
  scale(idx.buffer("layer1.0.bn1.running_var"), 4.0f);
  const auto [eval1, train1] = outputs(net, ctx, x);
  const double de = max_rel_diff(eval1, eval0), dt = max_rel_diff(train1, train0);
  std::printf("conv x2 before batch norm: output change eval %.2e, train %.2e\n", de, dt);
  CHECK(de <= 1e-4);
  CHECK(dt <= 1e-4);
  const auto l1_after = site_score(net, "l1_norm", "layer1.0.conv1");
  const auto gamma_after = site_score(net, "bn_gamma", "layer1.0.conv1");
  for (std::size_t f = 0; f < l1_before.size(); ++f) CHECK(l1_after[f] == doctest::Approx(2 * l1_before[f]));
  CHECK(gamma_after == gamma_before);
}


TEST_CASE("grad_disagreement_annealed: Oja's step decays, so the direction settles on the stream's principal direction") {
  // The fixed step (grad_disagreement, 0.1) keeps a steady-state error that follows the last
  // few dozen samples; the annealed step min(1, sqrt(10 / k)) shrinks it as the window goes on.
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    INFO("seed " << seed);
    const double fixed = bench::oja_cosine(grad_disagreement{}, 32, 20000, 3.0, seed);
    const double annealed = bench::oja_cosine(grad_disagreement_annealed{}, 32, 20000, 3.0, seed);
    std::printf("Oja direction, 32 elements, 20000 gradients (seed %d): |cos| fixed step %.4f, annealed %.4f\n",
                static_cast<int>(seed), fixed, annealed);
    CHECK(annealed > 0.99);
    CHECK(fixed < 0.99);
  }
  // the score (the variance) does not depend on the step; only the direction does
  site_signals s;
  s.filters = 2;
  s.row_length = 2;
  metric_state a, b;
  std::vector<float> g1{1, 0, 2, 2}, g2{3, 0, 2, 2}, g3{2, 3, 2, 2};
  for (auto* g : {&g1, &g2, &g3}) {
    s.gradients = *g;
    grad_disagreement{}.observe(a, s);
    grad_disagreement_annealed{}.observe(b, s);
  }
  CHECK(grad_disagreement_annealed{}.scores(b, s) == grad_disagreement{}.scores(a, s));
  CHECK(make_tpm_metric("grad_disagreement_annealed").name() == "grad_disagreement_annealed");
  CHECK(make_tpm_metric("grad_disagreement_annealed").weight_like("direction"));
}

namespace {
fs::path cifar10_dir() { return fs::path(NETSPLIT_SOURCE_DIR) / ".." / "shared" / "data" / "cifar10-jpeg" / "cifar-10-batches-bin"; }

/// Filter f's incoming weights over every producer of `site` (the row a split pair compares).
template <class Net>
std::vector<double> incoming_row(Net& net, const std::string& site_name, int f) {
  const auto sites = derive_sites(net);
  const auto& site = sites[find_site(sites, site_name)];
  tensor_index<Net> idx(net);
  std::vector<double> row;
  for (const auto& n : site.producer_weights) {
    const auto& w = idx.param(n);
    const auto h = w.to_host();
    const auto len = static_cast<std::size_t>(w.numel() / w.dim(0));
    row.insert(row.end(), h.begin() + static_cast<std::ptrdiff_t>(f * len), h.begin() + static_cast<std::ptrdiff_t>((f + 1) * len));
  }
  return row;
}
}  // namespace

TEST_CASE("split_pair_monitor: cosine and distance of each split pair's incoming weights, as split and as trained") {
  if (!fs::exists(cifar10_dir())) return;
  const auto train = load_cifar10(cifar10_dir(), split::train, cifar_geometry::cifar10_records_per_file, 256);
  const auto test = load_cifar10(cifar10_dir(), split::test, cifar_geometry::cifar10_records_per_file, 64);
  const auto stats = compute_channel_stats(train);
  const auto dir = fs::temp_directory_path() / ("netsplit_pairs_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  cpu_context ctx(2);
  net_a net(3);
  train_config cfg;
  cfg.max_iter = 8;
  cfg.batch_size = 16;
  cfg.schedule = constant_lr{0.05};
  cfg.snapshot_final = false;
  cfg.snapshot_dir = dir;
  trainer<net_a> tr(ctx, net, train, test, stats, cfg);
  split_history<net_a> history;
  history.attach(tr);
  const auto sites = derive_sites(net);
  // at iteration 2: an exact copy (net2wider, eps 0) of an inner filter and of a stage-2
  // channel (rows over its three producers), a noisy one (eps 0.01), a fresh one (random_init)
  tr.before_iteration.add([&](std::int64_t it) {
    if (it != 2) return;
    auto split = [&](const char* site, int f, const auto& strategy, std::uint64_t seed) {
      auto r = split_filter(net, sites[find_site(sites, site)], f, strategy, seed, &tr.optimizer().state());
      r.iteration = it;
      history.add(r);
    };
    split("layer1.0.conv1", 3, net2wider{0.0}, 1);
    split("stage2", 5, net2wider{0.0}, 2);
    split("layer3.1.conv1", 7, net2wider{0.01}, 3);
    split("layer2.2.conv1", 1, random_init{}, 4);
  });
  split_pair_monitor<net_a> monitor(net, history, 3);  // after the splitting hook: also reports as split
  std::vector<split_pair_report> reports;
  monitor.on_report = [&](const split_pair_report& r) { reports.push_back(r); };
  monitor.attach(tr);
  tr.run();
  // reported at the split (before any update), then every 3 completed iterations
  std::vector<std::int64_t> iters;
  for (const auto& r : reports) iters.push_back(r.iter);
  CHECK(iters == std::vector<std::int64_t>{2, 3, 6});
  REQUIRE(reports.front().pairs.size() == 4);
  const auto& at_split = reports.front().pairs;
  CHECK(at_split[0].site == "layer1.0.conv1");
  CHECK(at_split[0].filter == 3);
  CHECK(at_split[0].copy == 16);
  CHECK(at_split[1].copy == 32);
  CHECK(at_split[0].cosine == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(at_split[0].distance == 0.0);
  CHECK(at_split[1].cosine == doctest::Approx(1.0).epsilon(1e-12));
  // +-eps |w| u: ||a - b|| = 2 eps |w|, the mean norm |w| sqrt(1 + eps^2)
  CHECK(at_split[2].distance == doctest::Approx(0.02).epsilon(1e-3));
  CHECK(at_split[2].cosine == doctest::Approx((1 - 1e-4) / (1 + 1e-4)).epsilon(1e-6));
  CHECK(std::abs(at_split[3].cosine) < 0.5);  // a fresh He-normal filter is unrelated to the original
  CHECK(reports.front().min_cosine == std::min({at_split[0].cosine, at_split[1].cosine, at_split[2].cosine, at_split[3].cosine}));
  // after training: exact copies get identical gradients and stay copies (why symmetry must
  // be broken); the noisy pair moved from where it started
  const auto& last = reports.back().pairs;
  CHECK(last[0].cosine > 1 - 1e-6);
  CHECK(last[1].cosine > 1 - 1e-6);
  CHECK(last[2].cosine < 1.0);
  CHECK(last[2].cosine != at_split[2].cosine);
  // the reported values are the rows' cosine and relative distance, computed independently
  // (now, at the end of the run)
  const auto now = monitor.measure(8);
  REQUIRE(now.pairs.size() == 4);
  const auto a = incoming_row(net, "layer3.1.conv1", 7), b = incoming_row(net, "layer3.1.conv1", 64);
  double dot = 0, na = 0, nb = 0, d2 = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
    d2 += (a[i] - b[i]) * (a[i] - b[i]);
  }
  CHECK(now.pairs[2].cosine == doctest::Approx(dot / std::sqrt(na * nb)).epsilon(1e-12));
  CHECK(now.pairs[2].distance == doctest::Approx(std::sqrt(d2) / ((std::sqrt(na) + std::sqrt(nb)) / 2)).epsilon(1e-12));
  CHECK(now.iter == 8);
  fs::remove_all(dir);
}
