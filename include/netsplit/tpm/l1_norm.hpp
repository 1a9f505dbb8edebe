// netsplit/tpm/l1_norm.hpp — a control TpmMetric: ||w||_1 of the filter at the last
// observed iteration.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "netsplit/tpm/metric.hpp"

namespace netsplit {

struct l1_norm {
  std::string name() const { return "l1_norm"; }
  unsigned needs() const { return tpm_signal::weights; }
  double observe(metric_state& st, const site_signals& s) const {
    auto& l1 = st["l1"];
    l1.assign(static_cast<std::size_t>(s.filters), 0.0);
    const std::size_t row = static_cast<std::size_t>(s.row_length);
    double mean = 0;
    for (std::size_t f = 0; f < l1.size(); ++f) {
      for (std::size_t i = f * row; i < (f + 1) * row; ++i) l1[f] += std::abs(double(s.weights[i]));
      mean += l1[f];
    }
    return mean / s.filters;
  }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    const auto it = st.find("l1");
    std::vector<double> out(static_cast<std::size_t>(s.filters), 0.0);
    if (it != st.end())
      for (std::size_t f = 0; f < out.size() && f < it->second.size(); ++f) out[f] = it->second[f];
    return out;
  }
};

static_assert(TpmMetric<l1_norm>);

}  // namespace netsplit
