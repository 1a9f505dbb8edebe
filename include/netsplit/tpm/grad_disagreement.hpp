// netsplit/tpm/grad_disagreement.hpp — a TpmMetric: sum over the filter's weights of the
// variance of its mini-batch gradient over the window. It also tracks, by Oja's rule on
// the centred gradients, the direction in which the gradients disagree most (used by the
// gradient_direction split strategy).
#pragma once

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "netsplit/tpm/metric.hpp"

namespace netsplit {

struct grad_disagreement {
  double oja_rate = 0.1;  // step of the direction update, relative to the gradient scale
  std::string name() const { return "grad_disagreement"; }
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
          const double eta = oja_rate / cn;
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

static_assert(TpmMetric<grad_disagreement>);

}  // namespace netsplit
