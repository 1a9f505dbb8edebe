// netsplit/tpm/weight_motion.hpp — a TpmMetric: ||w(end) - w(begin)|| of the filter's
// incoming weights over the window [begin, end): w(begin) as observed at iteration begin
// (before its update), w(end) after the update of iteration end - 1 (close()), so it
// equals weight_motion_between of checkpoints written at iterations begin and end. Inside
// the window the score is the motion so far.
#pragma once

#include <cmath>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "netsplit/tpm/metric.hpp"

namespace netsplit {

struct weight_motion {
  std::string name() const { return "weight_motion"; }
  unsigned needs() const { return tpm_signal::weights; }
  double observe(metric_state& st, const site_signals& s) const {
    auto& first = st["first"];
    auto& last = st["last"];
    if (first.empty()) first.assign(s.weights.begin(), s.weights.end());
    last.assign(s.weights.begin(), s.weights.end());
    const auto sc = scores(st, s);
    return std::accumulate(sc.begin(), sc.end(), 0.0) / s.filters;
  }
  /// first/last are weights: a split scales them as it scales the weights.
  bool weight_like(const std::string& key) const { return key == "first" || key == "last"; }
  /// After the window's last update: the weights it ends with.
  void close(metric_state& st, const site_signals& s) const { st["last"].assign(s.weights.begin(), s.weights.end()); }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    std::vector<double> out(static_cast<std::size_t>(s.filters), 0.0);
    const auto a = st.find("first"), b = st.find("last");
    if (a == st.end() || b == st.end()) return out;
    const std::size_t row = static_cast<std::size_t>(s.row_length);
    for (std::size_t f = 0; f < out.size() && (f + 1) * row <= a->second.size(); ++f) {
      double d = 0;
      for (std::size_t i = f * row; i < (f + 1) * row; ++i) d += (b->second[i] - a->second[i]) * (b->second[i] - a->second[i]);
      out[f] = std::sqrt(d);
    }
    return out;
  }
};

/// Per-filter ||a_f - b_f|| between two weight matrices of `filters` rows (offline form of
/// weight_motion, e.g. from two checkpoints).
inline std::vector<double> weight_motion_between(std::span<const float> a, std::span<const float> b, int filters) {
  std::vector<double> out(static_cast<std::size_t>(filters), 0.0);
  const std::size_t row = filters ? a.size() / static_cast<std::size_t>(filters) : 0;
  for (std::size_t f = 0; f < out.size(); ++f) {
    double d = 0;
    for (std::size_t i = f * row; i < (f + 1) * row; ++i) {
      const double e = double(a[i]) - double(b[i]);  // in double, as the online form
      d += e * e;
    }
    out[f] = std::sqrt(d);
  }
  return out;
}

static_assert(TpmMetric<weight_motion>);

}  // namespace netsplit
