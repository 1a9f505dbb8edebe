// benchmarks/oja_step.cpp — how well grad_disagreement's Oja direction finds the principal
// direction of a synthetic gradient stream, with the fixed step (grad_disagreement) and the
// annealed one (grad_disagreement_annealed). Stream: g_t = mu + a_t u + e_t, a_t ~ N(0, s^2)
// along a fixed unit u, e_t ~ N(0, 1) per element. Prints |cos(direction, u)| averaged over
// 4 seeds for rows of n elements (ResNet20's rows: 144 for a stage-1 inner site, 576 for a
// stage-3 one or the stage-1 group) and windows of T gradients. The numbers in
// docs/metrics.md come from this program. Synthetic: real gradients also drift over a window.
#include <cmath>
#include <cstdio>
#include <vector>

#include "netsplit/core/random.hpp"
#include "netsplit/tpm/grad_disagreement.hpp"

using namespace netsplit;

namespace {
template <class M>
double cosine(const M& m, int n, int steps, double spread, std::uint64_t seed) {
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
}  // namespace

int main() {
  std::printf("| row n | window T | spread s | fixed step | annealed |\n|---|---|---|---|---|\n");
  for (const int n : {16, 144, 576})
    for (const int steps : {100, 1000, 10000})
      for (const double spread : {1.5, 3.0}) {
        double fixed = 0, annealed = 0;
        for (std::uint64_t seed = 1; seed <= 4; ++seed) {
          fixed += cosine(grad_disagreement{}, n, steps, spread, seed) / 4;
          annealed += cosine(grad_disagreement_annealed{}, n, steps, spread, seed) / 4;
        }
        std::printf("| %d | %d | %.1f | %.3f | %.3f |\n", n, steps, spread, fixed, annealed);
      }
  return 0;
}
