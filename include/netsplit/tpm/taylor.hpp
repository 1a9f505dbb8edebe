// netsplit/tpm/taylor.hpp — first-order Taylor saliency (Molchanov et al. 2017), a
// TpmMetric: per sample, the absolute spatial mean of activation x gradient of the
// channel, averaged over the samples the recorder reads (the first 32 of each shuffled
// mini-batch), then over the window.
#pragma once

#include <string>
#include <vector>

#include "netsplit/tpm/metric.hpp"

namespace netsplit {

struct taylor {
  std::string name() const { return "taylor"; }
  unsigned needs() const { return tpm_signal::taylor; }
  double observe(metric_state& st, const site_signals& s) const {
    auto& sum = st["sum"];
    sum.resize(static_cast<std::size_t>(s.filters), 0.0);
    st["count"].resize(1, 0.0);
    double mean = 0;
    for (int f = 0; f < s.filters; ++f) {
      sum[f] += s.taylor[f];
      mean += s.taylor[f];
    }
    st["count"][0] += 1;
    return mean / s.filters;
  }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    std::vector<double> out(static_cast<std::size_t>(s.filters), 0.0);
    const auto it = st.find("sum");
    const auto c = st.find("count");
    if (it == st.end() || c == st.end() || c->second.empty() || c->second[0] == 0) return out;
    for (int f = 0; f < s.filters && f < static_cast<int>(it->second.size()); ++f) out[f] = it->second[f] / c->second[0];
    return out;
  }
};

static_assert(TpmMetric<taylor>);

}  // namespace netsplit
