// netsplit/tpm/grad_disagreement.hpp — two TpmMetrics: sum over the filter's weights of
// the variance of its mini-batch gradient over the window. Both also track, by Oja's rule on
// the centred gradients, the direction in which the gradients disagree most (used by the
// gradient_direction split strategy); they differ only in Oja's step:
//  * grad_disagreement (default): a fixed step, oja_rate = 0.1 relative to the gradient's
//    size. Oja's rule with a fixed step has a steady-state error proportional to the step:
//    the direction keeps moving with the last ~1/(step x eigen-gap) samples instead of
//    settling on the window's principal direction.
//  * grad_disagreement_annealed: the step decays as min(1, sqrt(anneal_scale / k)) at the
//    window's k-th observation (full steps for the first 10, 0.1 at k = 1000, 0.01 at
//    k = 100000), so the error shrinks as the window goes on and the early steps converge
//    fast. Not 1/k, the Robbins-Monro rate: on these normalised updates it converges only
//    when its constant exceeds 1/(2 x eigen-gap), and the gap of high-dimensional,
//    noise-dominated gradients is small, so 1/k froze the direction early in a standalone
//    simulation of this rule on the streams of benchmarks/oja_step.cpp (|cos| 0.14-0.77
//    where the fixed step reached 0.96-0.98; docs/metrics.md).
// The scores (the variances) are the same for both.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "netsplit/tpm/metric.hpp"

namespace netsplit {

enum class oja_step { fixed, annealed };

template <oja_step Step>
struct grad_disagreement_metric {
  double oja_rate = 0.1;       // the fixed step, relative to the gradient scale
  double anneal_scale = 10.0;  // the annealed step at observation k: min(1, sqrt(anneal_scale / k))
  std::string name() const { return Step == oja_step::fixed ? "grad_disagreement" : "grad_disagreement_annealed"; }
  unsigned needs() const { return tpm_signal::gradients; }
  double observe(metric_state& st, const site_signals& s) const {
    const std::size_t n = s.gradients.size(), row = static_cast<std::size_t>(s.row_length);
    auto& sum = st["sum"];
    auto& sq = st["sumsq"];
    auto& dir = st["direction"];
    auto& count = st["count"];
    if (sum.size() != n) {
      sum.assign(n, 0.0);
      sq.assign(n, 0.0);
      dir.assign(n, 0.0);
      count.assign(1, 0.0);
    }
    double inst = 0;
    const double k = count[0];
    for (std::size_t f = 0; f < static_cast<std::size_t>(s.filters); ++f) {
      // centred gradient against the mean so far (zero before the first observation)
      double proj = 0, cn = 0, dn = 0;
      for (std::size_t i = f * row; i < (f + 1) * row; ++i) {
        const double c = k > 0 ? s.gradients[i] - sum[i] / k : 0.0;
        proj += c * dir[i];
        cn += c * c;
        dn += dir[i] * dir[i];
      }
      inst += cn;
      if (cn > 0) {
        if (dn == 0) {  // first non-zero centred gradient initialises the direction
          for (std::size_t i = f * row; i < (f + 1) * row; ++i) dir[i] = s.gradients[i] - sum[i] / k;
        } else {
          // k >= 1 here: the first observation has no centred gradient
          const double step = Step == oja_step::fixed ? oja_rate : std::min(1.0, std::sqrt(anneal_scale / k));
          const double eta = step / cn;
          for (std::size_t i = f * row; i < (f + 1) * row; ++i) dir[i] += eta * proj * (s.gradients[i] - sum[i] / k);
        }
        double norm = 0;
        for (std::size_t i = f * row; i < (f + 1) * row; ++i) norm += dir[i] * dir[i];
        norm = std::sqrt(norm);
        if (norm > 0)
          for (std::size_t i = f * row; i < (f + 1) * row; ++i) dir[i] /= norm;
      }
      for (std::size_t i = f * row; i < (f + 1) * row; ++i) {
        sum[i] += s.gradients[i];
        sq[i] += double(s.gradients[i]) * s.gradients[i];
      }
    }
    count[0] += 1;
    return inst / s.filters;
  }
  /// The direction is applied to weights (gradient_direction's offset): a split scales it as
  /// it scales the weights (as split_now widens a recorded direction); sums are gradient
  /// statistics.
  bool weight_like(const std::string& key) const { return key == "direction"; }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    std::vector<double> out(static_cast<std::size_t>(s.filters), 0.0);
    const auto a = st.find("sum"), b = st.find("sumsq"), c = st.find("count");
    if (a == st.end() || b == st.end() || c == st.end() || c->second.empty() || c->second[0] == 0) return out;
    const double k = c->second[0];
    const std::size_t row = static_cast<std::size_t>(s.row_length);
    for (std::size_t f = 0; f < out.size() && (f + 1) * row <= a->second.size(); ++f) {
      double v = 0;
      for (std::size_t i = f * row; i < (f + 1) * row; ++i) {
        const double m = a->second[i] / k;
        v += std::max(0.0, b->second[i] / k - m * m);
      }
      out[f] = v;
    }
    return out;
  }
};

using grad_disagreement = grad_disagreement_metric<oja_step::fixed>;
using grad_disagreement_annealed = grad_disagreement_metric<oja_step::annealed>;

static_assert(TpmMetric<grad_disagreement>);
static_assert(TpmMetric<grad_disagreement_annealed>);

}  // namespace netsplit
