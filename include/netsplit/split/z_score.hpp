// netsplit/split/z_score.hpp — a ScoreNormalisation: within each site, (score − the site's
// mean) / the site's standard deviation (population; a site whose scores are all equal gets
// 0 everywhere), then every site shifted by one common constant so the least score of all is
// 0 (selectors and budgets need non-negative scores; a common shift keeps the z values
// comparable across sites). A filter then counts by how far it stands out in its own site,
// whatever the metric's scale there.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <string>

#include "netsplit/split/normalisation.hpp"
#include "netsplit/tpm/scores.hpp"

namespace netsplit {

struct z_score {
  std::string name() const { return "z_score"; }
  void apply(std::span<site_scores> scores) const {
    bool any = false;
    double least = 0;
    for (auto& s : scores) {
      if (s.scores.empty()) continue;
      double mean = 0, var = 0;
      for (const double v : s.scores) mean += v;
      mean /= double(s.scores.size());
      for (const double v : s.scores) var += (v - mean) * (v - mean);
      const double sd = std::sqrt(var / double(s.scores.size()));
      for (auto& v : s.scores) {
        v = sd > 0 ? (v - mean) / sd : 0.0;
        least = any ? std::min(least, v) : v;
        any = true;
      }
    }
    for (auto& s : scores)
      for (auto& v : s.scores) v -= least;
  }
};

static_assert(ScoreNormalisation<z_score>);

}  // namespace netsplit
