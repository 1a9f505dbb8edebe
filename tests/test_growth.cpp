// Growth in rounds: the splitting-matrix metric against finite differences of actual
// splits, score normalisations and the budget selector on hand-computable cases, growth
// plans (and the typed errors of plans that cannot be met), and a ResNet20 grown from width
// 0.25 to 1.0 in three rounds: every round function-preserving, the grown shapes equal to a
// static width-1.0 network, gradients correct on it, and resume between rounds bit-exact.
#include <doctest/doctest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <tuple>
#include <unistd.h>
#include <vector>

#include "gradient_check.hpp"
#include "netsplit/netsplit.hpp"
#include "split_helpers.hpp"

using namespace netsplit;
using namespace netsplit::testing;
namespace fs = std::filesystem;
using cpu = cpu_backend;

namespace {

// Stem (3 -> 4), an identity block, an option-A block to 6 channels, an option-B block to
// 8: inner sites, a two-producer group (stem + block), a one-producer group and a group
// whose second producer is a 1x1 stride-2 projection.
using tiny = sequential_layer<double, cpu, fmap_shape{3, 8, 8}, conv3x3<4>, batch_norm, relu,
                              basic_block<4, 1, shortcut_a>, basic_block<6, 2, shortcut_a>,
                              basic_block<8, 2, shortcut_b>, global_avg_pool, linear<5>>;

struct probe {
  cpu_tensor x;
  std::vector<int> labels;
};

probe make_probe() {
  rng r(21);
  probe p{random_tensor({12, 3, 8, 8}, r), {}};
  for (int i = 0; i < 12; ++i) p.labels.push_back(i % 5);
  return p;
}

tiny make_tiny() {
  tiny net;
  rng r(3);
  net.initialize(r);
  // non-trivial batch-norm scales and shifts
  net.visit_parameters([&](const std::string& n, auto& w, auto&) {
    if (w.rank() == 1 && n.find("bn") != std::string::npos)
      for (std::int64_t i = 0; i < w.numel(); ++i) w.data()[i] += 0.3 * r.normal();
  });
  return net;
}

/// Train-mode loss of the probe (and, with backward, the gradients), running statistics kept.
double probe_loss(tiny& net, cpu_context& ctx, const probe& p, bool backward) {
  std::vector<std::vector<double>> saved;
  net.visit_buffers([&](const std::string&, auto& b) { saved.push_back(b.to_host()); });
  softmax_cross_entropy<double, cpu> loss;
  const double l = loss.forward(ctx, net.forward(ctx, p.x, phase::train), p.labels);
  if (backward) net.backward(ctx, loss.backward(), false);
  std::size_t k = 0;
  net.visit_buffers([&](const std::string&, auto& b) { b.from_host(saved[k++]); });
  return l;
}

}  // namespace

TEST_CASE("splitting metric: the closed-form splitting matrix predicts the loss change of actual splits") {
  cpu_context ctx(2);
  const auto p = make_probe();
  auto net = make_tiny();
  const double l0 = probe_loss(net, ctx, p, true);
  tpm_recorder<tiny> rec(net, splitting{}, {0, 1}, 1);
  const auto sites = rec.sites();
  // (site, producer, filter): an inner site, both producers of the stem group, the
  // one-producer group, the option-B group's block conv2 and its projection
  const std::vector<std::tuple<std::string, int, int>> cases{
      {"3.conv1", 0, 1}, {"stage1", 0, 2}, {"stage1", 1, 0}, {"stage2", 0, 4}, {"stage3", 0, 3}, {"stage3", 1, 6}};
  for (const auto& c : cases) {
    // (named copies: clang 14 does not let INFO's lambda capture structured bindings)
    const std::string site_name = std::get<0>(c);
    const int producer = std::get<1>(c), filter = std::get<2>(c);
    INFO(site_name, " producer ", producer, " filter ", filter);
    const auto si = find_site(sites, site_name);
    const auto& sig = rec.signals_of(si, 0);
    REQUIRE(static_cast<int>(sig.curvature.size()) == static_cast<int>(sites[si].producer_weights.size()));
    const auto& pc = sig.curvature[static_cast<std::size_t>(producer)];
    const auto D = static_cast<std::size_t>(pc.row_length);
    const std::size_t row = static_cast<std::size_t>(filter) * sig.row_length + pc.row_offset;
    const float* theta = sig.weights.data() + row;
    const float* grad = sig.gradients.data() + row;
    const double gamma = pc.gamma[filter], dgamma = pc.dgamma[filter];
    const auto S = detail::splitting_matrix(pc, theta, grad, gamma, dgamma);
    // λ_min by bisection equals the dense eigenvalue
    Eigen::MatrixXd Sm(D, D);
    for (std::size_t i = 0; i < D; ++i)
      for (std::size_t j = 0; j < D; ++j) Sm(i, j) = S[i * D + j];
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(Sm);
    const double dense_min = es.eigenvalues()(0);
    const double bisect_min =
        detail::splitting_min_eigenvalue(detail::splitting_form_of(pc, theta, grad, gamma, dgamma));
    const double spread = std::max(std::abs(es.eigenvalues()(0)), std::abs(es.eigenvalues()(D - 1)));
    CHECK(std::abs(bisect_min - dense_min) <= 1e-9 * spread);
    // The actual split: copies at θ ± εδ in this producer (the others exact copies), halved
    // outputs; its loss change is ε²/2 δᵀSδ. Directions: the λ_min eigenvector and a random one.
    rng r(7);
    std::vector<std::vector<double>> dirs(2, std::vector<double>(D));
    for (std::size_t i = 0; i < D; ++i) {
      dirs[0][i] = es.eigenvectors()(static_cast<Eigen::Index>(i), 0);
      dirs[1][i] = r.normal();
    }
    for (auto& d : dirs) {
      double n2 = 0;
      for (const double v : d) n2 += v * v;
      for (auto& v : d) v /= std::sqrt(n2);
      double quad = 0;
      for (std::size_t i = 0; i < D; ++i)
        for (std::size_t j = 0; j < D; ++j) quad += d[i] * S[i * D + j] * d[j];
      double theta_norm = 0;
      for (std::size_t i = 0; i < D; ++i) theta_norm += double(theta[i]) * theta[i];
      const double eps = 1e-4 * std::sqrt(theta_norm);
      auto grown = make_tiny();
      auto gsites = derive_sites(grown);
      const auto rec_split = split_filter(grown, gsites[si], filter, net2wider{0.0}, 1);
      auto& w = tensor_index<tiny>(grown).param(sites[si].producer_weights[static_cast<std::size_t>(producer)]);
      for (std::size_t i = 0; i < D; ++i) {
        w.data()[static_cast<std::size_t>(filter) * D + i] += eps * d[i];
        w.data()[static_cast<std::size_t>(rec_split.new_index) * D + i] -= eps * d[i];
      }
      const double dl = probe_loss(grown, ctx, p, false) - l0;
      const double predicted = 0.5 * eps * eps * quad;
      std::printf("splitting %-8s p%d f%d: actual %.6e predicted %.6e\n", site_name.c_str(), producer, filter, dl,
                  predicted);
      CHECK(std::abs(dl - predicted) <= 2e-3 * std::abs(predicted) + 1e-14);
    }
  }
  // the metric's score is max(0, -λ_min), the least over a group's producers
  rec.observe(0);
  const auto scores = rec.scores();
  const auto si = find_site(sites, "stage1");
  const auto lam = splitting::min_eigenvalues(rec.signals_of(si, 0));
  for (std::size_t f = 0; f < lam.size(); ++f) CHECK(scores[si].scores[f] == std::max(0.0, -lam[f]));
}

TEST_CASE("score normalisations on hand-computable cases") {
  std::vector<site_scores> s{{"a", {3, 1, 2}, 1, 10}, {"b", {5, 5}, 3, 100}};
  auto r = s;
  per_site_rank{}.apply(r);
  CHECK(r[0].scores == std::vector<double>{1.0, 1.0 / 3, 2.0 / 3});
  CHECK(r[1].scores == std::vector<double>{0.75, 0.75});
  auto z = s;
  z_score{}.apply(z);
  const double k = std::sqrt(1.5);  // (3 - 2) / sqrt(2/3)
  CHECK(z[0].scores[0] == doctest::Approx(2 * k));
  CHECK(z[0].scores[1] == doctest::Approx(0.0));
  CHECK(z[0].scores[2] == doctest::Approx(k));
  CHECK(z[1].scores[0] == doctest::Approx(k));  // all equal: z 0, shifted by the least z (-k)
  CHECK(make_score_normalisation("z_score").name() == "z_score");
  CHECK(make_score_normalisation("per_site_rank").name() == "per_site_rank");
}

TEST_CASE("budget selector: score per parameter until the budget is spent; impossible budgets are errors") {
  const std::vector<site_scores> s{{"a", {5, 1}, 1, 10}, {"b", {30, 2}, 1, 100}};
  const auto pick = [&](double b, bool per_cost) { return budget{b, per_cost}.select(s); };
  using picks = std::vector<split_choice>;
  // per parameter: a0 (0.5), b0 (0.3), then 5 left < cheapest 10
  CHECK((pick(115, true) == picks{{0, 0, 5}, {1, 0, 30}}));
  // by score: b0, a0, a1 does not fit (5 left)
  CHECK((pick(115, false) == picks{{1, 0, 30}, {0, 0, 5}}));
  CHECK((pick(20, true) == picks{{0, 0, 5}, {0, 1, 1}}));
  CHECK_THROWS_AS(pick(5, true), contract_violation);
  CHECK_THROWS_AS(pick(0, true), contract_violation);
  selector_options o;
  o.budget = 115;
  CHECK(std::get<budget>(make_selector("budget", o)).params == 115);
}

TEST_CASE("growth plans: rounds, budgets, quotas; plans that cannot be met are errors before training") {
  using net = resnet20<cpu, 10, float, shortcut_a>;
  net small(1, width_multiplier{0.5}), full(1, width_multiplier{1.0});
  const auto p0 = count_parameters(small), p1 = count_parameters(full);
  const auto plan = make_budget_plan({100, 200, 300}, 50, p0, p1, 400);
  CHECK(plan.rounds[1].window.begin == 150);
  CHECK(plan.rounds[1].window.end == 200);
  CHECK(plan.round_budget(0, p0) == std::llround(p0 + (p1 - p0) / 3.0) - p0);
  CHECK(plan.round_budget(2, p1 - 10) == 10);
  CHECK(plan.round_for(0) == 0);
  CHECK(plan.round_for(100) == 0);  // a checkpoint at a round's iteration precedes its split
  CHECK(plan.round_for(101) == 1);
  CHECK(plan.round_for(301) == 3);
  CHECK_NOTHROW(check_plan(small, plan));
  CHECK_THROWS_AS(make_budget_plan({100}, 50, p1, p0, 400), contract_violation);      // target below the size
  CHECK_THROWS_AS(make_budget_plan({100, 120}, 50, p0, p1, 400), contract_violation); // overlapping windows
  CHECK_THROWS_AS(make_budget_plan({100, 400}, 50, p0, p1, 400), contract_violation); // past the end
  CHECK_THROWS_AS(make_growth_plan({10}, 20, 3, 400), contract_violation);            // no room for the window
  // a budget below the cheapest split, a round of more filters than the sites have
  CHECK_THROWS_AS(check_plan(small, make_budget_plan({100, 200, 300}, 50, p0, p0 + 30, 400)), contract_violation);
  CHECK_THROWS_AS(check_plan(small, make_growth_plan({100}, 50, 100000, 400)), contract_violation);
  CHECK_THROWS_AS(check_plan(small, make_growth_plan({100}, 50, 9, 400), "layer1.0.conv1"), contract_violation);
  CHECK_NOTHROW(check_plan(small, make_growth_plan({100}, 50, 8, 400), "layer1.0.conv1"));
  // widths: 0.25 -> 1.0 in one round would split a filter 3 times; in three rounds it fits
  net quarter(1, width_multiplier{0.25});
  CHECK_THROWS_AS(check_plan(quarter, make_width_plan({100}, 50, full, 400)), contract_violation);
  CHECK_NOTHROW(check_plan(quarter, make_width_plan({100, 200, 300}, 50, full, 400)));
  CHECK_THROWS_AS(check_plan(full, make_width_plan({100, 200, 300}, 50, quarter, 400)), contract_violation);
  CHECK(plan.quota(0, 4, 16) == 4);
  CHECK(plan.quota(1, 8, 16) == 4);
  CHECK(plan.quota(2, 12, 16) == 4);
  CHECK(plan.quota(2, 16, 16) == 0);
}

namespace {
fs::path cifar10_dir() { return fs::path(NETSPLIT_SOURCE_DIR) / ".." / "shared" / "data" / "cifar10-jpeg" / "cifar-10-batches-bin"; }

template <class Net>
std::vector<std::vector<float>> params_of(Net& net) {
  std::vector<std::vector<float>> out;
  net.visit_parameters([&](const std::string&, auto& w, auto&) { out.push_back(w.to_host()); });
  net.visit_buffers([&](const std::string&, auto& b) { out.push_back(b.to_host()); });
  return out;
}

/// A ResNet20 at width 0.25 grown to the widths of width 1.0 in rounds at 4, 8 and 12 (TPM
/// taylor over the 2 iterations before each, net2wider at eps 0), trained to iteration
/// `stop` (or resumed from `resume` first). `check` runs around every round.
template <class Net>
struct grow_run {
  cpu_context& ctx;
  dataset& train;
  dataset& test;
  channel_stats& stats;
  fs::path dir;
  grow_run(cpu_context& c, dataset& tr, dataset& te, channel_stats& st, fs::path d)
      : ctx(c), train(tr), test(te), stats(st), dir(std::move(d)) {}
  Net net{1, width_multiplier{0.25}};
  Net full{1, width_multiplier{1.0}};
  split_history<Net> history;
  std::vector<double> preservation;

  void run(std::int64_t stop, const fs::path& resume = {}, const fs::path& save = {}) {
    train_config cfg;
    cfg.max_iter = 16;
    cfg.batch_size = 16;
    cfg.schedule = constant_lr{0.02};
    cfg.snapshot_final = false;
    cfg.snapshot_dir = dir;
    cfg.seed = 4;
    trainer<Net> tr(ctx, net, train, test, stats, cfg);
    history.attach(tr);
    const auto plan = make_width_plan({4, 8, 12}, 2, full, cfg.max_iter);
    check_plan(net, plan);
    // the recorder starts on the window of the round the run is in
    std::int64_t start = 0;
    if (!resume.empty()) {
      const auto f = io::read_file(resume);
      start = std::stoll(f.metadata.at("netsplit.iteration"));
    }
    std::size_t round = plan.round_for(start);
    tpm_recorder<Net> rec(net, make_tpm_metric("taylor"), plan.rounds[std::min<std::size_t>(round, 2)].window, 9, &ctx);
    rec.attach(tr);
    if (!resume.empty()) tr.load(resume);
    const auto x = random_images(4, 55);
    std::pair<std::vector<float>, std::vector<float>> before;
    tr.before_iteration.add([&](std::int64_t it) {
      if (round < plan.rounds.size() && it == plan.rounds[round].at) before = outputs(net, ctx, x);
    });
    tr.before_iteration.add([&](std::int64_t it) {
      if (round < plan.rounds.size() && it == plan.rounds[round].at) {
        const auto recs = grow_round(tr, history, rec, plan, round, no_normalisation{}, net2wider{0.0}, 17);
        CHECK(!recs.empty());
        const auto after = outputs(net, ctx, x);
        preservation.push_back(std::max(max_rel_diff(after.first, before.first), max_rel_diff(after.second, before.second)));
        ++round;
      }
    });
    while (tr.iteration() < stop) tr.step();
    if (!save.empty()) tr.save(save);
  }
};
}  // namespace

// Three short training runs per shortcut option and a whole-network gradient check in double:
// about 30 s in release, far beyond the sanitizer step's budget, which compiles it out
// (scripts/ci_sanitize.sh defines NETSPLIT_SANITIZED_BUILD; the release suite runs it).
#ifndef NETSPLIT_SANITIZED_BUILD
TEST_CASE_TEMPLATE("ResNet20 grown from width 0.25 to 1.0 in 3 rounds: preserved, static shapes, gradients, resume",
                   Shortcut, shortcut_a, shortcut_b) {
  using Net = resnet20<cpu, 10, float, Shortcut>;
  REQUIRE(fs::exists(cifar10_dir()));
  dataset train = load_cifar10(cifar10_dir(), split::train, cifar_geometry::cifar10_records_per_file, 256);
  dataset test = load_cifar10(cifar10_dir(), split::test, cifar_geometry::cifar10_records_per_file, 32);
  channel_stats stats = compute_channel_stats(train);
  const auto dir = fs::temp_directory_path() / ("netsplit_growth_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  cpu_context ctx(2);

  grow_run<Net> straight{ctx, train, test, stats, dir};
  straight.run(16);
  REQUIRE(straight.preservation.size() == 3);
  for (const double d : straight.preservation) CHECK(d <= 1e-5);
  // the grown network has exactly the shapes of a static width-1.0 network
  std::vector<tensor_shape> grown_shapes, full_shapes;
  straight.net.visit_parameters([&](const std::string&, auto& w, auto&) { grown_shapes.push_back(w.shape()); });
  straight.full.visit_parameters([&](const std::string&, auto& w, auto&) { full_shapes.push_back(w.shape()); });
  CHECK(grown_shapes == full_shapes);
  CHECK(count_parameters(straight.net) == count_parameters(straight.full));
  // three rounds in the history, one iteration each
  std::vector<std::int64_t> iters;
  for (const auto& r : straight.history.records())
    if (iters.empty() || iters.back() != r.iteration) iters.push_back(r.iteration);
  CHECK(iters == std::vector<std::int64_t>{4, 8, 12});

  // killed between rounds 2 and 3 and resumed in a fresh process: bit-exact
  grow_run<Net> first{ctx, train, test, stats, dir};
  first.run(10, {}, dir / "mid.safetensors");
  grow_run<Net> resumed{ctx, train, test, stats, dir};
  resumed.run(16, dir / "mid.safetensors");
  CHECK(resumed.history.records() == straight.history.records());
  CHECK(params_of(resumed.net) == params_of(straight.net));

  // gradient checks on the grown network (its history replayed in double)
  using dnet = resnet20<cpu, 10, double, Shortcut>;
  dnet d(1, width_multiplier{0.25});
  replay_history(d, straight.history.records(), "the grown run");
  rng r(5);
  d.initialize(r);
  const auto rep = check_layer_gradients(d, ctx, random_tensor({1, 3, 32, 32}, r), phase::train, 3, 3, 1e-6);
  std::printf("gradcheck grown resnet20 0.25->1.0: input %.2e params %.2e (worst: %s), %zu of %zu samples at a kink\n",
              rep.max_input_error, rep.max_param_error, rep.worst.c_str(), rep.kinks, rep.checked);
  // A whole network: h = 1e-6 keeps ReLU-kink crossings rare (a sample whose stencil
  // straddles one is judged at h / 2: check_layer_gradients), and relative errors of
  // gradients near 0 carry the difference quotient's rounding (about 1e-10 absolute).
  CHECK(rep.max_input_error <= 2e-4);
  CHECK(rep.max_param_error <= 2e-4);
  CHECK(rep.kinks * 20 <= rep.checked);
  fs::remove_all(dir);
}
#endif  // NETSPLIT_SANITIZED_BUILD
