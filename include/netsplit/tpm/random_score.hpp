// netsplit/tpm/random_score.hpp — a control TpmMetric: a uniform score from the seed,
// the site and the filter.
#pragma once

#include <string>
#include <vector>

#include "netsplit/core/random.hpp"
#include "netsplit/tpm/metric.hpp"

namespace netsplit {

struct random_score {
  std::string name() const { return "random"; }
  unsigned needs() const { return 0; }
  double observe(metric_state& st, const site_signals&) const {
    st["count"].resize(1, 0.0);
    st["count"][0] += 1;
    return 0.0;
  }
  std::vector<double> scores(const metric_state&, const site_signals& s) const {
    rng r(s.site_seed);
    std::vector<double> out(static_cast<std::size_t>(s.filters));
    for (auto& v : out) v = r.uniform();
    return out;
  }
};

static_assert(TpmMetric<random_score>);

}  // namespace netsplit
