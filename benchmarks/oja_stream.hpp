// benchmarks/oja_stream.hpp — the synthetic gradient stream on which grad_disagreement's
// Oja direction is measured (benchmarks/oja_step.cpp for docs/metrics.md's table,
// tests/test_metrics.cpp for the annealed step's test): g_t = mu + a_t u + e_t, a_t ~
// N(0, spread^2) along a fixed unit u, e_t ~ N(0, 1) per element. Synthetic: real gradients
// also drift over a window.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "netsplit/core/random.hpp"
#include "netsplit/tpm/metric.hpp"

namespace netsplit::bench {

/// Feeds metric `m` (one filter, a row of n) `steps` gradients of the stream and returns
/// |cos| between the direction it tracks (state "direction") and u.
template <class M>
double oja_cosine(const M& m, int n, int steps, double spread, std::uint64_t seed) {
  rng r(seed);
  std::vector<double> u(static_cast<std::size_t>(n)), mu(u.size());
  double norm = 0;
  for (auto& v : u) {
    v = r.normal();
    norm += v * v;
  }
  for (auto& v : u) v /= std::sqrt(norm);
  for (auto& v : mu) v = r.normal();
  site_signals s;
  s.filters = 1;
  s.row_length = n;
  std::vector<float> g(u.size());
  metric_state st;
  for (int t = 0; t < steps; ++t) {
    const double a = spread * r.normal();
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = static_cast<float>(mu[i] + a * u[i] + r.normal());
    s.gradients = g;
    m.observe(st, s);
  }
  const auto& d = st.at("direction");
  double dot = 0, dn = 0;
  for (std::size_t i = 0; i < u.size(); ++i) {
    dot += d[i] * u[i];
    dn += d[i] * d[i];
  }
  return std::abs(dot) / std::sqrt(dn);
}

}  // namespace netsplit::bench
