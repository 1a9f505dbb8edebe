// Shared by the split and model tests: random images, a warmed-up network (non-trivial BN
// statistics), eval- and train-mode outputs that leave the running statistics as they
// were, and expect_preserved (splits, then both outputs within 1e-5 relative, or a given
// tolerance for deeper nets, whose float rounding grows with depth).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "netsplit/netsplit.hpp"

namespace netsplit::testing {

inline tensor<float, cpu_backend> random_images(int n, std::uint64_t seed) {
  rng r(seed);
  tensor<float, cpu_backend> x({n, 3, 32, 32});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>(r.normal());
  return x;
}

/// A network with non-trivial BN running statistics and weights (a few train-mode passes).
template <class Net>
void warm_up(Net& net, cpu_context& ctx) {
  for (int i = 0; i < 3; ++i) net.forward(ctx, random_images(8, 100 + i), phase::train);
  rng r(4);
  net.visit_parameters([&](const std::string& n, auto& w, auto&) {
    if (w.rank() == 1 && n.find("bn") != std::string::npos)
      for (std::int64_t i = 0; i < w.numel(); ++i) w.data()[i] += 0.2f * static_cast<float>(r.normal());
  });
}

inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0, m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, double(std::abs(a[i] - b[i])));
    m = std::max(m, double(std::abs(b[i])));
  }
  return d / std::max(m, 1e-12);
}

template <class Net>
std::pair<std::vector<float>, std::vector<float>> outputs(Net& net, cpu_context& ctx, const tensor<float, cpu_backend>& x) {
  auto eval = net.forward(ctx, x, phase::eval).to_host();
  // train mode updates running statistics; keep them as they were
  std::vector<std::vector<float>> saved;
  net.visit_buffers([&](const std::string&, auto& b) { saved.push_back(b.to_host()); });
  auto train = net.forward(ctx, x, phase::train).to_host();
  std::size_t k = 0;
  net.visit_buffers([&](const std::string&, auto& b) { b.from_host(saved[k++]); });
  return {eval, train};
}

template <class Net, class Strategy = net2wider>
void expect_preserved(const char* what, Net& net, cpu_context& ctx, const std::vector<std::pair<std::string, int>>& splits,
                      double eps = 0, const Strategy& strategy = net2wider{}, double tolerance = 1e-5) {
  const auto x = random_images(6, 77);
  const auto [e0, t0] = outputs(net, ctx, x);
  auto sites = derive_sites(net);
  std::uint64_t seed = 1;
  // any direction will do for gradient_direction at eps 0 (it then changes nothing)
  auto ones = [&](const std::string& t, int) {
    auto& w = tensor_index<Net>(net).param(t);
    return std::vector<double>(static_cast<std::size_t>(w.numel() / w.dim(0)), 1.0);
  };
  for (const auto& [site, filter] : splits) {
    if constexpr (std::is_same_v<Strategy, net2wider>)
      split_filter(net, sites[find_site(sites, site)], filter, net2wider{eps}, seed++);
    else
      split_filter(net, sites[find_site(sites, site)], filter, strategy, seed++, nullptr, ones);
  }
  const auto [e1, t1] = outputs(net, ctx, x);
  const double de = max_rel_diff(e1, e0), dt = max_rel_diff(t1, t0);
  std::printf("preservation %-44s eval %.2e  train %.2e\n", what, de, dt);
  CHECK(de <= tolerance);
  CHECK(dt <= tolerance);
}
}  // namespace netsplit::testing
