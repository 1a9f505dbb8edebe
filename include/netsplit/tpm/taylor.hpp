// netsplit/tpm/taylor.hpp — first-order Taylor saliency (Molchanov et al. 2017), two
// TpmMetrics that differ in the spatial normalisation: per sample, |Σ over the H·W
// positions of activation × gradient| of the channel, divided by H·W (`taylor`, the spatial
// mean, Molchanov's form and the default) or not (`taylor_sum`, the spatial sum: the
// first-order change of the loss when the channel is removed); averaged over the samples
// the recorder reads (the first 32 of each shuffled mini-batch), summed over the site's
// taps, then averaged over the window.
// Across sites of different map sizes the two rank differently: relative to the loss
// change, the mean weighs an 8x8 map (ResNet20's stage 3) 16x more than a 32x32 map
// (stage 1). taylor_sum = taylor x H·W at every site (all taps of a site share a map size).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "netsplit/tpm/metric.hpp"

namespace netsplit {

enum class taylor_spatial { mean, sum };

template <taylor_spatial Spatial>
struct taylor_saliency {
  std::string name() const { return Spatial == taylor_spatial::mean ? "taylor" : "taylor_sum"; }
  unsigned needs() const { return Spatial == taylor_spatial::mean ? tpm_signal::taylor : tpm_signal::taylor_sum; }
  double observe(metric_state& st, const site_signals& s) const {
    const std::span<const double> signal = Spatial == taylor_spatial::mean ? s.taylor : s.taylor_sum;
    auto& sum = st["sum"];
    sum.resize(static_cast<std::size_t>(s.filters), 0.0);
    st["count"].resize(1, 0.0);
    double mean = 0;
    for (std::size_t f = 0; f < static_cast<std::size_t>(s.filters); ++f) {
      sum[f] += signal[f];
      mean += signal[f];
    }
    st["count"][0] += 1;
    return mean / s.filters;
  }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    return detail::window_mean(st, s.filters);
  }
};

using taylor = taylor_saliency<taylor_spatial::mean>;
using taylor_sum = taylor_saliency<taylor_spatial::sum>;

static_assert(TpmMetric<taylor>);
static_assert(TpmMetric<taylor_sum>);

}  // namespace netsplit
