// Bad requests to the split and TPM layer, the library side of docs/reliability.md (the
// program side is test_reliability.sh): a TPM window the run never reaches, unknown sites,
// impossible filter indices and selections, recorder state of another window or metric.
// Each must be refused with a netsplit error naming the problem, and change nothing.
// Synthetic data (random images), so it runs without the CIFAR files.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "netsplit/netsplit.hpp"

using namespace netsplit;
namespace fs = std::filesystem;

namespace {
using net_t = resnet20<cpu_backend, 10, float, shortcut_a>;

dataset random_set(std::size_t n, std::uint64_t seed) {
  dataset d;
  d.name = "random-" + std::to_string(seed);
  d.classes = 10;
  for (int c = 0; c < 10; ++c) d.class_names.push_back("c" + std::to_string(c));
  rng r(seed);
  d.pixels.resize(n * cifar_geometry::image_bytes);
  for (auto& p : d.pixels) p = static_cast<std::uint8_t>(r.next_u64() & 0xFF);
  for (std::size_t i = 0; i < n; ++i) d.labels.push_back(static_cast<int>(r.next_u64() % 10));
  return d;
}

train_config config() {
  train_config c;
  c.max_iter = 4;
  c.batch_size = 8;
  c.schedule = constant_lr{0.01};
  c.snapshot_final = false;
  c.snapshot_dir = fs::temp_directory_path();
  return c;
}

std::vector<std::vector<float>> parameters_of(net_t& net) {
  std::vector<std::vector<float>> out;
  net.visit_parameters([&](const std::string&, auto& w, auto&) { out.push_back(w.to_host()); });
  return out;
}

struct fixture {
  dataset train = random_set(32, 1), test = random_set(8, 2);
  channel_stats stats = compute_channel_stats(train);
  cpu_context ctx{1};
  net_t net{3};
};
}  // namespace

TEST_CASE("a TPM window the run never reaches records nothing, and a split on it is refused") {
  fixture f;
  trainer<net_t> t(f.ctx, f.net, f.train, f.test, f.stats, config());
  tpm_recorder<net_t> rec(f.net, make_tpm_metric("grad_disagreement"), {100, 200}, 5);
  rec.attach(t);
  split_history<net_t> history;
  history.attach(t);
  t.run();
  CHECK(t.iteration() == 4);
  CHECK(rec.observed() == 0);
  const auto before = parameters_of(f.net);
  // Required: scores of a window that saw no iteration are all zero, so a split would pick
  // filters by index order alone; it must be refused, naming the window.
  CHECK_THROWS_WITH_AS(split_now(t, history, rec, top_k{3}, net2wider{}, 9), doctest::Contains("[100, 200)"),
                       contract_violation);
  CHECK(history.records().empty());
  CHECK(parameters_of(f.net) == before);
}

TEST_CASE("empty, reversed or negative TPM windows are refused when the recorder is made") {
  fixture f;
  CHECK_THROWS_AS(tpm_recorder<net_t>(f.net, make_tpm_metric("taylor"), {5, 5}, 1), contract_violation);
  CHECK_THROWS_AS(tpm_recorder<net_t>(f.net, make_tpm_metric("taylor"), {7, 3}, 1), contract_violation);
  CHECK_THROWS_AS(tpm_recorder<net_t>(f.net, make_tpm_metric("taylor"), {-2, 3}, 1), contract_violation);
  CHECK_THROWS_AS(make_tpm_metric(""), contract_violation);
}

TEST_CASE("split requests for unknown sites, impossible filters or selections are refused, network unchanged") {
  fixture f;
  trainer<net_t> t(f.ctx, f.net, f.train, f.test, f.stats, config());
  tpm_recorder<net_t> rec(f.net, make_tpm_metric("l1_norm"), {0, 4}, 5);
  rec.attach(t);
  split_history<net_t> history;
  history.attach(t);
  t.run();
  const auto before = parameters_of(f.net);
  const auto& sites = rec.sites();
  CHECK_THROWS_WITH_AS(eligible_sites(sites, "stage9"), doctest::Contains("unknown split site 'stage9'"),
                       contract_violation);
  CHECK_THROWS_AS(eligible_sites(sites, ""), contract_violation);
  CHECK_THROWS_AS(eligible_sites(sites, "layer1.0.conv1,"), contract_violation);
  CHECK_THROWS_WITH_AS(split_now(t, history, rec, top_k{3}, net2wider{}, 9, "layer9.9.conv1"), doctest::Contains("sites:"),
                       contract_violation);
  CHECK_THROWS_WITH_AS(split_now(t, history, rec, top_k{100000}, net2wider{}, 9), doctest::Contains("eligible"),
                       contract_violation);
  CHECK_THROWS_AS(split_now(t, history, rec, top_k{0}, net2wider{}, 9), contract_violation);
  const auto& site = sites.front();
  const int width = site_width(f.net, site);
  CHECK_THROWS_WITH_AS(split_filter(f.net, site, width, net2wider{}, 1), doctest::Contains("cannot split filter"),
                       contract_violation);
  CHECK_THROWS_AS(split_filter(f.net, site, -1, net2wider{}, 1), contract_violation);
  // gradient_direction needs recorded directions; l1_norm records none
  CHECK_THROWS_AS(split_now(t, history, rec, top_k{1}, gradient_direction{0.01}, 9), contract_violation);
  CHECK(history.records().empty());
  CHECK(parameters_of(f.net) == before);
}

TEST_CASE("TPM state saved for another window or metric is refused on resume") {
  fixture f;
  trainer<net_t> t(f.ctx, f.net, f.train, f.test, f.stats, config());
  tpm_recorder<net_t> rec(f.net, make_tpm_metric("taylor"), {0, 4}, 5);
  rec.attach(t);
  t.run();
  const auto path = fs::temp_directory_path() / ("netsplit_reliability_" + std::to_string(::getpid()) + ".safetensors");
  t.save(path);
  // (no structured bindings here: doctest's INFO captures them in a lambda, which clang < 16 rejects)
  for (const auto& other_run : std::vector<std::pair<std::string, tpm_window>>{
           {"taylor", {0, 5}}, {"taylor", {1, 4}}, {"weight_motion", {0, 4}}}) {
    const std::string metric = other_run.first;
    const tpm_window window = other_run.second;
    INFO(metric, " [", window.begin, ", ", window.end, ")");
    net_t other(4);
    trainer<net_t> u(f.ctx, other, f.train, f.test, f.stats, config());
    tpm_recorder<net_t> r2(other, make_tpm_metric(metric), window, 5);
    r2.attach(u);
    const auto before = parameters_of(other);
    CHECK_THROWS_WITH_AS(u.load(path), doctest::Contains("holds TPM state"), io_error);
    CHECK(parameters_of(other) == before);
    CHECK(u.iteration() == 0);
  }
  fs::remove(path);
}
