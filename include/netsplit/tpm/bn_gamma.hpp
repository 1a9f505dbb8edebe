// netsplit/tpm/bn_gamma.hpp — a control TpmMetric: |γ| of the batch norm that follows the
// filter's producer conv, at the window's end (read after its last update; inside the
// window, at the last observed iteration). For a residual-stream group the filter's channel
// has one batch norm per producer (the stem's or a block's second), and the score is the
// mean of |γ| over them, so groups and inner sites are compared on the same scale.
// Why not l1_norm: a conv that feeds batch norm is scale-invariant (the normalised output
// does not change when its weights are multiplied by a constant), so ||w|| measures the
// history of weight decay and learning rate, not what the channel contributes; the scale
// of the channel's output is |γ|.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/tpm/metric.hpp"

namespace netsplit {

struct bn_gamma {
  std::string name() const { return "bn_gamma"; }
  unsigned needs() const { return tpm_signal::bn_scale; }
  double observe(metric_state& st, const site_signals& s) const {
    NETSPLIT_EXPECT(s.bn_count > 0, "bn_gamma: the site has no batch norm after its producers (no per-channel scale "
                                    "named *.weight) to read");
    auto& g = st["gamma"];
    g.assign(static_cast<std::size_t>(s.filters), 0.0);
    const auto count = static_cast<std::size_t>(s.bn_count);
    double mean = 0;
    for (std::size_t f = 0; f < g.size(); ++f) {
      for (std::size_t k = 0; k < count; ++k) g[f] += std::abs(double(s.bn_scale[f * count + k]));
      g[f] /= double(count);
      mean += g[f];
    }
    return mean / s.filters;
  }
  /// After the window's last update: the γ it ends with.
  void close(metric_state& st, const site_signals& s) const { (void)observe(st, s); }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    const auto it = st.find("gamma");
    std::vector<double> out(static_cast<std::size_t>(s.filters), 0.0);
    if (it != st.end())
      for (std::size_t f = 0; f < out.size() && f < it->second.size(); ++f) out[f] = it->second[f];
    return out;
  }
};

static_assert(TpmMetric<bn_gamma>);

}  // namespace netsplit
