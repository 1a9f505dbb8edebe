// Splitting: sites derived from structure, function preservation (every site, every
// coupled group, both shortcut options, eval and train mode, k=9 at once), O(eps^2)
// symmetry breaking, gradients after a split, momentum rule, selectors, TPM metrics on
// hand-computable cases, window boundaries, resume mid-window, grown checkpoints.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "gradient_check.hpp"
#include "netsplit/netsplit.hpp"
#include "split_helpers.hpp"

using namespace netsplit;
namespace fs = std::filesystem;
using cpu = cpu_backend;
using namespace netsplit::testing;

namespace {
using net_a = resnet20<cpu, 10, float, shortcut_a>;
using net_b = resnet20<cpu, 10, float, shortcut_b>;

}  // namespace

TEST_CASE("sites are derived from the structure: 9 inner sites (336 filters) and 3 coupled groups") {
  for (int option = 0; option < 2; ++option) {
    net_a a(1);
    net_b b(1);
    const auto sites = option == 0 ? derive_sites(a) : std::vector<split_site<float, cpu>>{};
    const auto sites_b = derive_sites(b);
    const auto& s = option == 0 ? sites : sites_b;
    REQUIRE(s.size() == 12);
    int inner_filters = 0, inner = 0;
    for (const auto& site : s)
      if (site.kind == site_kind::inner) {
        ++inner;
        inner_filters += option == 0 ? site_width(a, site) : site_width(b, site);
      }
    CHECK(inner == 9);
    CHECK(inner_filters == 336);
    CHECK(s[0].name == "layer1.0.conv1");
    CHECK(s[9].name == "stage1");
    CHECK(s[11].name == "stage3");
    CHECK(s[9].producer_weights.front() == "conv1.weight");
    // stage 1's stream feeds every stage-1 block, the stage-2 opener and nothing else
    CHECK(std::count(s[9].consumer_weights.begin(), s[9].consumer_weights.end(), "layer2.0.conv1.weight") == 1);
    CHECK(s[11].consumer_weights.back() == "linear.weight");
  }
  net_b b(1);
  const auto s = derive_sites(b);
  CHECK(std::count(s[10].producer_weights.begin(), s[10].producer_weights.end(), "layer2.0.shortcut.conv.weight") == 1);
  CHECK(std::count(s[9].consumer_weights.begin(), s[9].consumer_weights.end(), "layer2.0.shortcut.conv.weight") == 1);
}

TEST_CASE("every strategy preserves the function at every site, eval and train mode, both shortcuts") {
  // random_init through option-A shortcuts was not preserved (issue 22: the scatter halved
  // both copies whatever the strategy's factors; 2.6% / 1.2% at stage1 / stage2).
  cpu_context ctx(2);
  for (int option = 0; option < 2; ++option) {
    auto run = [&](auto& proto) {
      warm_up(proto, ctx);
      const auto sites = derive_sites(proto);
      for (const auto& site : sites)
        for (int strategy = 0; strategy < 3; ++strategy) {
          auto net = proto;  // a fresh copy per site and strategy
          const int f = site_width(net, site) / 2 + 1;
          const char* names[] = {"net2wider", "random_init", "gradient_direction"};
          const std::string what =
              std::string(option ? "B " : "A ") + site.name + " filter " + std::to_string(f) + " " + names[strategy];
          INFO(what);
          if (strategy == 0) expect_preserved(what.c_str(), net, ctx, {{site.name, f}});
          if (strategy == 1) expect_preserved(what.c_str(), net, ctx, {{site.name, f}}, 0, random_init{});
          if (strategy == 2) expect_preserved(what.c_str(), net, ctx, {{site.name, f}}, 0, gradient_direction{0.0});
        }
    };
    if (option == 0) {
      net_a a(3);
      run(a);
    } else {
      net_b b(3);
      run(b);
    }
  }
}

TEST_CASE("random_init: the fresh filter's BN statistics are a fresh layer's, net2wider's the original's") {
  cpu_context ctx(1);
  net_a proto(2);
  warm_up(proto, ctx);
  for (const char* site_name : {"layer2.1.conv1", "stage2"}) {
    INFO(site_name);
    auto a = proto, b = proto;
    auto sa = derive_sites(a), sb = derive_sites(b);
    const auto& site = sa[find_site(sa, site_name)];
    const int width = site_width(a, site);
    split_filter(a, site, 3, random_init{}, 1);
    split_filter(b, sb[find_site(sb, site_name)], 3, net2wider{}, 1);
    REQUIRE(site.producer_buffers.size() == site.buffer_fresh.size());
    for (std::size_t k = 0; k < site.producer_buffers.size(); ++k) {
      const auto& n = site.producer_buffers[k];
      const auto ha = tensor_index<net_a>(a).buffer(n).to_host(), hb = tensor_index<net_a>(b).buffer(n).to_host();
      INFO(n);
      CHECK(ha[static_cast<std::size_t>(width)] == static_cast<float>(site.buffer_fresh[k]));
      CHECK(hb[static_cast<std::size_t>(width)] == hb[3]);  // net2wider copies
      CHECK(hb[3] != static_cast<float>(site.buffer_fresh[k]));  // (warm_up moved them off the fresh values)
    }
  }
}

TEST_CASE("nine mixed splits at once (inner and coupled, repeated site, a grown filter) preserve the function") {
  cpu_context ctx(2);
  net_a a(5);
  warm_up(a, ctx);
  expect_preserved("A: 9 mixed splits", a, ctx,
                   {{"layer1.0.conv1", 3}, {"stage1", 5}, {"layer2.1.conv1", 0}, {"stage2", 31}, {"stage3", 2},
                    {"layer3.2.conv1", 63}, {"stage1", 16}, {"layer1.0.conv1", 16}, {"stage2", 7}});
  net_b b(5);
  warm_up(b, ctx);
  expect_preserved("B: 9 mixed splits", b, ctx,
                   {{"layer1.0.conv1", 3}, {"stage1", 5}, {"layer2.1.conv1", 0}, {"stage2", 31}, {"stage3", 2},
                    {"layer3.2.conv1", 63}, {"stage1", 16}, {"layer1.0.conv1", 16}, {"stage2", 7}});
  CHECK(count_parameters(b) > 278324 - 2752 * 0);
}

TEST_CASE("symmetric noise changes the output by O(eps^2), not O(eps)") {
  cpu_context ctx(2);
  net_a proto(7);
  warm_up(proto, ctx);
  const auto x = random_images(4, 9);
  const auto base = proto.forward(ctx, x, phase::eval).to_host();
  auto change = [&](double eps) {
    auto net = proto;
    auto sites = derive_sites(net);
    split_filter(net, sites[find_site(sites, "layer2.0.conv1")], 4, net2wider{eps}, 42);
    split_filter(net, sites[find_site(sites, "stage2")], 9, net2wider{eps}, 43);
    return max_rel_diff(net.forward(ctx, x, phase::eval).to_host(), base);
  };
  const double d1 = change(0.02), d2 = change(0.04);
  std::printf("noise: eps 0.02 -> %.3e, eps 0.04 -> %.3e, ratio %.2f (2 = linear, 4 = quadratic)\n", d1, d2, d2 / d1);
  CHECK(d1 > 0);
  CHECK(d1 < 0.02 * 0.1);  // far below a first-order change
  CHECK(d2 / d1 > 3.0);
  CHECK(d2 / d1 < 5.0);
}

TEST_CASE("random_init control preserves the function; gradient_direction needs recorded directions") {
  cpu_context ctx(1);
  net_a net(2);
  warm_up(net, ctx);
  const auto x = random_images(4, 3);
  const auto before = net.forward(ctx, x, phase::eval).to_host();
  auto sites = derive_sites(net);
  split_filter(net, sites[find_site(sites, "stage3")], 1, random_init{}, 5);
  split_filter(net, sites[find_site(sites, "layer1.1.conv1")], 2, random_init{}, 6);
  CHECK(max_rel_diff(net.forward(ctx, x, phase::eval).to_host(), before) <= 1e-5);
  const auto params = count_parameters(net);
  CHECK_THROWS_WITH_AS(split_filter(net, sites[0], 1, gradient_direction{0.01}, 7),
                       doctest::Contains("needs the gradient-disagreement direction"), contract_violation);
  CHECK(count_parameters(net) == params);  // nothing changed
  CHECK_THROWS_WITH_AS(split_filter(net, sites[0], 16, net2wider{}, 7), doctest::Contains("has 16 filters"),
                       contract_violation);
  CHECK_THROWS_WITH_AS(find_site(sites, "layer9.0.conv1"), doctest::Contains("unknown split site"), contract_violation);
  CHECK(count_parameters(net) == params);
}

TEST_CASE("momentum is carried by the documented rule") {
  cpu_context ctx(1);
  net_a net(2);
  sgd<float, cpu> opt({0.9, 0.0, false});
  softmax_cross_entropy<float, cpu> loss;
  const auto x = random_images(4, 5);
  const std::vector<int> y{1, 2, 3, 4};
  loss.forward(ctx, net.forward(ctx, x, phase::train), y);
  net.backward(ctx, loss.backward());
  opt.step(ctx, net, 0.1);
  const auto m_in = opt.momentum().at("layer1.0.conv1.weight").to_host();
  const auto m_out = opt.momentum().at("layer1.0.conv2.weight").to_host();
  auto sites = derive_sites(net);
  split_filter(net, sites[find_site(sites, "layer1.0.conv1")], 3, net2wider{0.01}, 1, &opt.state());
  const auto& mi = opt.momentum().at("layer1.0.conv1.weight");
  const auto& mo = opt.momentum().at("layer1.0.conv2.weight");
  REQUIRE(mi.shape() == tensor_shape{17, 16, 3, 3});
  REQUIRE(mo.shape() == tensor_shape{16, 17, 3, 3});
  const auto hi = mi.to_host(), ho = mo.to_host();
  for (int i = 0; i < 144; ++i) CHECK(hi[16 * 144 + i] == m_in[3 * 144 + i]);  // copied, no noise
  for (int k = 0; k < 9; ++k) {
    CHECK(ho[(0 * 17 + 3) * 9 + k] == doctest::Approx(0.5 * m_out[(0 * 16 + 3) * 9 + k]));
    CHECK(ho[(0 * 17 + 16) * 9 + k] == doctest::Approx(0.5 * m_out[(0 * 16 + 3) * 9 + k]));
  }
  // the next step runs on the grown network
  loss.forward(ctx, net.forward(ctx, x, phase::train), y);
  net.backward(ctx, loss.backward());
  CHECK_NOTHROW(opt.step(ctx, net, 0.1));
}

TEST_CASE("gradient checks still pass on a grown network (double)") {
  using namespace netsplit::testing;
  using small = sequential_layer<double, cpu, fmap_shape{3, 8, 8}, conv3x3<4>, batch_norm, relu,
                                 basic_block<4, 1, shortcut_a>, basic_block<6, 2, shortcut_a>,
                                 basic_block<8, 2, shortcut_b>, global_avg_pool, linear<5>>;
  small net;
  rng r(3);
  net.initialize(r);
  auto sites = derive_sites(net);
  REQUIRE(sites.size() == 6);
  // a plain sequential is split through the same generic surgery as a model
  split_filter(net, sites[find_site(sites, "stage1")], 1, net2wider{0.05}, 1);
  split_filter(net, sites[find_site(sites, "stage2")], 0, net2wider{0.05}, 2);
  split_filter(net, sites[find_site(sites, "stage3")], 7, net2wider{0.05}, 3);
  split_filter(net, sites[find_site(sites, "3.conv1")], 2, net2wider{0.05}, 4);
  CHECK(net.get<3>().in_channels() == 5);
  CHECK(net.get<5>().out_channels() == 9);
  cpu_context ctx(2);
  const auto rep = check_layer_gradients(net, ctx, random_tensor({3, 3, 8, 8}, r), phase::train, 5, 40);
  std::printf("gradcheck after splits: input %.2e params %.2e\n", rep.max_input_error, rep.max_param_error);
  CHECK(rep.max_input_error <= 1e-6);
  CHECK(rep.max_param_error <= 1e-6);
}

TEST_CASE("selectors: global top-k, per-site caps, thresholds, deterministic ties, impossible requests") {
  const std::vector<site_scores> s{{"a", {0.5, 0.9, 0.1}}, {"b", {0.9, 0.2}}, {"c", {0.7}}};
  const auto t = top_k{3}.select(s);
  REQUIRE(t.size() == 3);
  CHECK(t[0] == split_choice{0, 1, 0.9});  // tie at 0.9: lower site first
  CHECK(t[1] == split_choice{1, 0, 0.9});
  CHECK(t[2] == split_choice{2, 0, 0.7});
  CHECK(top_k{3}.select(s) == t);
  const auto c = capped_top_k{3, 1}.select(s);
  CHECK(c[2] == split_choice{2, 0, 0.7});
  const auto c2 = capped_top_k{4, 1}.select(std::vector<site_scores>{{"a", {1, 2}}, {"b", {3}}, {"c", {0}}, {"d", {5}}});
  CHECK(c2.size() == 4);
  CHECK(threshold{0.6, 10}.select(s).size() == 3);
  CHECK(threshold{0.6, 2}.select(s).size() == 2);
  CHECK_THROWS_WITH_AS(top_k{7}.select(s), doctest::Contains("only 6 are eligible"), contract_violation);
  CHECK_THROWS_AS((top_k{0}.select(s)), contract_violation);
  CHECK_THROWS_AS((capped_top_k{4, 1}.select(s)), contract_violation);
}

TEST_CASE("TPM metrics match hand-computed values") {
  // two filters of row length 2
  site_signals s;
  s.filters = 2;
  s.row_length = 2;
  metric_state st;
  // taylor: mean of per-iteration values
  std::vector<double> t1{1.0, 2.0}, t2{3.0, 0.0};
  s.taylor = t1;
  taylor{}.observe(st, s);
  s.taylor = t2;
  taylor{}.observe(st, s);
  CHECK(taylor{}.scores(st, s) == std::vector<double>{2.0, 1.0});
  // weight motion: distance between first and last observed weights
  metric_state wm;
  std::vector<float> w1{0, 0, 1, 1}, w2{3, 4, 1, 1};
  s.weights = w1;
  weight_motion{}.observe(wm, s);
  s.weights = w2;
  weight_motion{}.observe(wm, s);
  CHECK(weight_motion{}.scores(wm, s) == std::vector<double>{5.0, 0.0});
  CHECK(weight_motion_between(w1, w2, 2) == std::vector<double>{5.0, 0.0});
  // gradient disagreement: summed per-element variance
  metric_state gd;
  std::vector<float> g1{1, 0, 2, 2}, g2{3, 0, 2, 2}, g3{2, 3, 2, 2};
  for (auto* g : {&g1, &g2, &g3}) {
    s.gradients = *g;
    grad_disagreement{}.observe(gd, s);
  }
  // filter 0: element 0 values 1,3,2 -> var 2/3; element 1 values 0,0,3 -> var 2; filter 1 constant
  const auto v = grad_disagreement{}.scores(gd, s);
  CHECK(v[0] == doctest::Approx(2.0 / 3.0 + 2.0));
  CHECK(v[1] == doctest::Approx(0.0));
  CHECK(gd.at("direction").size() == 4);
  // L1 norm of the last weights
  metric_state l1;
  s.weights = w2;
  l1_norm{}.observe(l1, s);
  CHECK(l1_norm{}.scores(l1, s) == std::vector<double>{7.0, 2.0});
  // random: deterministic per seed, different across sites
  s.site_seed = 5;
  const auto r1 = random_score{}.scores(st, s), r2 = random_score{}.scores(st, s);
  CHECK(r1 == r2);
  s.site_seed = 6;
  CHECK(random_score{}.scores(st, s) != r1);
  CHECK_THROWS_AS(make_tpm_metric("entropy"), contract_violation);
  CHECK(make_tpm_metric("grad_disagreement").name() == "grad_disagreement");
}

namespace {
fs::path cifar10_dir() { return fs::path(NETSPLIT_SOURCE_DIR) / ".." / "shared" / "data" / "cifar10-jpeg" / "cifar-10-batches-bin"; }
struct small_cifar {
  dataset train, test;
  channel_stats stats;
  small_cifar() {
    train = load_cifar10(cifar10_dir(), split::train, cifar_geometry::cifar10_records_per_file, 256);
    test = load_cifar10(cifar10_dir(), split::test, cifar_geometry::cifar10_records_per_file, 64);
    stats = compute_channel_stats(train);
  }
};
train_config cfg_for(const fs::path& dir) {
  train_config c;
  c.max_iter = 10;
  c.batch_size = 16;
  c.schedule = constant_lr{0.02};
  c.snapshot_final = false;
  c.snapshot_dir = dir;
  c.seed = 4;
  return c;
}
template <class Net>
std::vector<std::vector<float>> state_of(Net& net) {
  std::vector<std::vector<float>> out;
  net.visit_parameters([&](const std::string&, auto& w, auto&) { out.push_back(w.to_host()); });
  net.visit_buffers([&](const std::string&, auto& b) { out.push_back(b.to_host()); });
  return out;
}
}  // namespace

TEST_CASE("the recorder honours the window exactly and resumes mid-window with identical scores") {
  if (!fs::exists(cifar10_dir())) return;
  small_cifar d;
  const auto dir = fs::temp_directory_path() / ("netsplit_tpm_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  cpu_context ctx(2);
  for (const char* metric : {"taylor", "grad_disagreement", "weight_motion"}) {
    INFO(metric);
    net_a straight(8);
    trainer<net_a> a(ctx, straight, d.train, d.test, d.stats, cfg_for(dir));
    tpm_recorder<net_a> ra(straight, make_tpm_metric(metric), {3, 7}, 11);
    std::vector<std::int64_t> seen;
    ra.on_summary = [&](const tpm_summary& s) { seen.push_back(s.iter); };
    ra.attach(a);
    for (int i = 0; i < 9; ++i) a.step();
    CHECK(seen == std::vector<std::int64_t>{3, 4, 5, 6});
    CHECK(ra.observed() == 4);
    {  // with a summary range, summaries follow its stride only, inside the window too
      net_a sampled(8);
      trainer<net_a> c(ctx, sampled, d.train, d.test, d.stats, cfg_for(dir));
      tpm_recorder<net_a> rc(sampled, make_tpm_metric(metric), {3, 7}, 11);
      rc.set_summary_range({0, 9}, 2);
      std::vector<std::int64_t> at;
      rc.on_summary = [&](const tpm_summary& s) { at.push_back(s.iter); };
      rc.attach(c);
      for (int i = 0; i < 9; ++i) c.step();
      CHECK(at == std::vector<std::int64_t>{0, 2, 4, 6, 8});
      CHECK(rc.observed() == 4);
    }

    net_a first(8);
    trainer<net_a> b(ctx, first, d.train, d.test, d.stats, cfg_for(dir));
    tpm_recorder<net_a> rb(first, make_tpm_metric(metric), {3, 7}, 11);
    rb.attach(b);
    for (int i = 0; i < 5; ++i) b.step();
    b.save(dir / "mid.safetensors");

    net_a resumed(1);
    trainer<net_a> c(ctx, resumed, d.train, d.test, d.stats, cfg_for(dir));
    tpm_recorder<net_a> rc(resumed, make_tpm_metric(metric), {3, 7}, 11);
    rc.attach(c);
    c.load(dir / "mid.safetensors");
    for (int i = 0; i < 4; ++i) c.step();
    const auto sa = ra.scores(), sc = rc.scores();
    REQUIRE(sa.size() == sc.size());
    for (std::size_t s = 0; s < sa.size(); ++s) CHECK(sa[s].scores == sc[s].scores);
  }
  fs::remove_all(dir);
}

TEST_CASE("weight_motion online equals weight_motion_between of the checkpoints at the window's ends") {
  // Issue 22: observed before each update, the online score measured w(end - 1) - w(begin)
  // while two checkpoints give w(end) - w(begin).
  if (!fs::exists(cifar10_dir())) return;
  small_cifar d;
  const auto dir = fs::temp_directory_path() / ("netsplit_motion_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  cpu_context ctx(2);
  net_a net(6);
  auto cfg = cfg_for(dir);
  cfg.max_iter = 9;
  cfg.snapshot_at = {3, 7};
  trainer<net_a> t(ctx, net, d.train, d.test, d.stats, cfg);
  tpm_recorder<net_a> rec(net, make_tpm_metric("weight_motion"), {3, 7}, 1);
  rec.attach(t);
  t.run();
  const auto at3 = io::read_file(t.snapshot_path(3)), at7 = io::read_file(t.snapshot_path(7));
  const auto scores = rec.scores();
  for (std::size_t s = 0; s < rec.sites().size(); ++s) {
    const auto& site = rec.sites()[s];
    INFO(site.name);
    const int filters = site_width(net, site);
    auto rows = [&](const io::safetensors_file& f) {  // the recorder's layout: filter f's row, producer by producer
      std::vector<std::vector<float>> per;
      for (const auto& n : site.producer_weights) per.push_back(f.at("param/" + n).as<float>());
      std::vector<float> out;
      for (int k = 0; k < filters; ++k)
        for (const auto& w : per) {
          const std::size_t len = w.size() / static_cast<std::size_t>(filters);
          out.insert(out.end(), w.begin() + static_cast<std::ptrdiff_t>(k * len),
                     w.begin() + static_cast<std::ptrdiff_t>((k + 1) * len));
        }
      return out;
    };
    const auto offline = weight_motion_between(rows(at3), rows(at7), filters);
    REQUIRE(offline.size() == scores[s].scores.size());
    for (std::size_t f = 0; f < offline.size(); ++f) CHECK(scores[s].scores[f] == doctest::Approx(offline[f]).epsilon(1e-12));
  }
  fs::remove_all(dir);
}

TEST_CASE("split_now grows a training network; grown checkpoints round-trip with their history") {
  if (!fs::exists(cifar10_dir())) return;
  small_cifar d;
  const auto dir = fs::temp_directory_path() / ("netsplit_grow_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  cpu_context ctx(2);
  net_a net(3);
  trainer<net_a> t(ctx, net, d.train, d.test, d.stats, cfg_for(dir));
  tpm_recorder<net_a> rec(net, make_tpm_metric("grad_disagreement"), {0, 4}, 2);
  rec.attach(t);
  split_history<net_a> history;
  history.attach(t);
  for (int i = 0; i < 4; ++i) t.step();
  const auto before = count_parameters(net);
  const auto recs = split_now(t, history, rec, top_k{9}, gradient_direction{0.01}, 99);
  CHECK(recs.size() == 9);
  CHECK(history.records().size() == 9);
  CHECK(count_parameters(net) > before);
  for (int i = 0; i < 2; ++i) t.step();  // trains on
  t.save(dir / "grown.safetensors");

  net_a fresh(77);
  trainer<net_a> u(ctx, fresh, d.train, d.test, d.stats, cfg_for(dir));
  split_history<net_a> history_u;
  history_u.attach(u);
  u.load(dir / "grown.safetensors");
  CHECK(history_u.records() == history.records());
  CHECK(count_parameters(fresh) == count_parameters(net));
  CHECK(state_of(fresh) == state_of(net));
  t.step();
  u.step();
  CHECK(state_of(fresh) == state_of(net));  // and continues identically

  // a corrupt history is an io_error and changes nothing
  auto f = io::read_file(dir / "grown.safetensors");
  f.metadata["netsplit.splits"] = "4\tstage9\t1\t64\t0.5\tnet2wider\t0\t1\n";
  io::write_file_atomic(dir / "bad.safetensors", f);
  net_a other(5);
  trainer<net_a> v(ctx, other, d.train, d.test, d.stats, cfg_for(dir));
  split_history<net_a> history_v;
  history_v.attach(v);
  const auto st = state_of(other);
  CHECK_THROWS_WITH_AS(v.load(dir / "bad.safetensors"), doctest::Contains("unknown site 'stage9'"), io_error);
  f.metadata["netsplit.splits"] = "4\tstage1\tone\t16\t0.5\tnet2wider\t0\t1\n";
  io::write_file_atomic(dir / "bad.safetensors", f);
  CHECK_THROWS_WITH_AS(v.load(dir / "bad.safetensors"), doctest::Contains("bad filter"), io_error);
  CHECK(state_of(other) == st);
  fs::remove_all(dir);
}

TEST_CASE("the README's library example: TPM over a window, 9 splits at its end, training on; resumable") {
  if (!fs::exists(cifar10_dir())) return;
  small_cifar d;
  const auto dir = fs::temp_directory_path() / ("netsplit_readme_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  cpu_context ctx(2);
  // As in README.md, with the study's iterations scaled from 40k/50k/64k to 4/6/8.
  net_a net(1);
  auto cfg = cfg_for(dir);
  cfg.max_iter = 8;
  cfg.snapshot_final = true;
  trainer<decltype(net)> tr(ctx, net, d.train, d.test, d.stats, cfg);
  tpm_recorder rec(net, make_tpm_metric("taylor"), tpm_window{4, 6}, /*seed=*/1, &ctx);
  split_history<decltype(net)> history;
  rec.attach(tr);
  history.attach(tr);
  tr.before_iteration.add([&](std::int64_t it) {
    if (it == 6) split_now(tr, history, rec, top_k{9}, net2wider{0.01}, /*seed=*/1);
  });
  std::vector<double> top1;
  tr.events.on_test = [&](const test_event& e) { top1.push_back(e.top1); };
  const auto before = count_parameters(net);
  tr.run();
  CHECK(rec.observed() == 2);
  REQUIRE(history.records().size() == 9);
  for (const auto& r : history.records()) CHECK(r.iteration == 6);
  CHECK(count_parameters(net) > before);
  CHECK(top1.size() == 1);
  // the final checkpoint carries the splits and the TPM state: a fresh program resumes it
  net_a again(2);
  trainer<net_a> tr2(ctx, again, d.train, d.test, d.stats, cfg);
  tpm_recorder rec2(again, make_tpm_metric("taylor"), tpm_window{4, 6}, 1, &ctx);
  split_history<net_a> history2;
  rec2.attach(tr2);
  history2.attach(tr2);
  tr2.load(tr.snapshot_path(8));
  CHECK(history2.records() == history.records());
  CHECK(rec2.observed() == 2);
  CHECK(state_of(again) == state_of(net));
  fs::remove_all(dir);
}

namespace {
/// Picks fixed (site, filter) pairs in the given order, whatever the scores.
struct fixed_choices {
  std::vector<std::pair<std::string, int>> picks;
  std::string name() const { return "fixed"; }
  std::vector<split_choice> select(std::span<const site_scores> scores) const {
    std::vector<split_choice> out;
    for (const auto& [site, filter] : picks)
      for (std::size_t s = 0; s < scores.size(); ++s)
        if (scores[s].site == site) out.push_back({s, filter, 0.0});
    return out;
  }
};
}  // namespace

TEST_CASE("the recorder's state grows with splits inside its window: no reset, rows aligned, copies for new filters") {
  // Issue 22: after a split, grad_disagreement reset silently (its sums no longer matched
  // the rows) and weight_motion compared rows of the old layout with the new.
  if (!fs::exists(cifar10_dir())) return;
  small_cifar d;
  const auto dir = fs::temp_directory_path() / ("netsplit_grow_state_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  cpu_context ctx(2);
  // stage1 widens layer1.0.conv1's rows (and the other stage-1 consumers'), then that site
  // splits a filter of the widened layout; stage2 splits a filter.
  const fixed_choices picks{{{"stage1", 2}, {"layer1.0.conv1", 5}, {"stage2", 7}}};
  for (const char* metric : {"weight_motion", "grad_disagreement"}) {
    INFO(metric);
    net_a net(3);
    auto cfg = cfg_for(dir);
    const bool still = std::string(metric) == "weight_motion";
    if (still) cfg.schedule = constant_lr{0.0};  // weights never move: the motion must stay 0
    trainer<net_a> t(ctx, net, d.train, d.test, d.stats, cfg);
    tpm_recorder<net_a> rec(net, make_tpm_metric(metric), {0, 8}, 2);
    rec.attach(t);
    split_history<net_a> history;
    history.attach(t);
    for (int i = 0; i < 3; ++i) t.step();
    split_now(t, history, rec, picks, net2wider{0.0}, 7);
    const auto after = rec.scores();
    const auto at = [&](const char* site) { return after[find_site(rec.sites(), site)].scores; };
    // the new filters start with the originals' state
    CHECK(at("layer1.0.conv1")[16] == at("layer1.0.conv1")[5]);
    CHECK(at("stage2")[32] == at("stage2")[7]);
    CHECK(at("stage1")[16] == at("stage1")[2]);
    t.step();  // one observation after the split: a reset state would hold a single sample
    const auto later = rec.scores();
    for (const char* site : {"stage1", "layer1.0.conv1", "layer1.1.conv1", "stage2", "layer2.0.conv1"}) {
      INFO(site);
      const auto& sc = later[find_site(rec.sites(), site)].scores;
      const double largest = *std::max_element(sc.begin(), sc.end());
      if (still) CHECK(largest == 0.0);  // aligned rows: no motion where nothing moved
      else CHECK(largest > 0.0);         // a variance over 4 samples (a reset: over 1, all zero)
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("split_now, gradient_direction: an earlier split that widens a later producer's inputs widens its direction") {
  if (!fs::exists(cifar10_dir())) return;
  small_cifar d;
  const auto dir = fs::temp_directory_path() / ("netsplit_widen_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  cpu_context ctx(2);
  net_a net(3);
  trainer<net_a> t(ctx, net, d.train, d.test, d.stats, cfg_for(dir));
  tpm_recorder<net_a> rec(net, make_tpm_metric("grad_disagreement"), {0, 3}, 2);
  rec.attach(t);
  split_history<net_a> history;
  history.attach(t);
  for (int i = 0; i < 3; ++i) t.step();
  // stage1 (the stem and stage-1 stream) feeds layer1.0.conv1: splitting its channel 2 first
  // appends input channel 16 to layer1.0.conv1 (weights of channel 2 halved into both)
  const auto recs = split_now(t, history, rec, fixed_choices{{{"stage1", 2}, {"layer1.0.conv1", 5}}}, gradient_direction{0.05}, 7);
  REQUIRE(recs.size() == 2);
  tensor_index<net_a> idx(net);
  const auto& w = idx.param("layer1.0.conv1.weight");
  REQUIRE(w.dim(1) == 17);
  const auto h = w.to_host();
  const std::size_t row = 17 * 9;
  // the split filter 5 and its copy (16): the offset along the widened direction treats input
  // channels 2 and 16 alike, as the halved weights do, so their 3x3 slices stay equal
  for (const std::size_t f : {std::size_t{5}, std::size_t{16}}) {
    INFO("filter " << f);
    const float* base = h.data() + f * row;
    CHECK(std::equal(base + 2 * 9, base + 3 * 9, base + 16 * 9));
    CHECK(!std::equal(base, base + row, h.data() + (f == 5 ? 16 : 5) * row));  // the offset separated them
  }
  fs::remove_all(dir);
}
