// netsplit/split/per_site_rank.hpp — a ScoreNormalisation: each filter's score replaced by
// its rank within its site, scaled to (0, 1]: (number of the site's scores below it + half
// the others equal to it + 1) / the site's width. The best filter of every site scores 1
// (ties share the mean rank), so a global selection sees every site alike and only the
// order inside a site counts; the metric's scale across sites is discarded entirely.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "netsplit/split/normalisation.hpp"
#include "netsplit/tpm/scores.hpp"

namespace netsplit {

struct per_site_rank {
  std::string name() const { return "per_site_rank"; }
  void apply(std::span<site_scores> scores) const {
    for (auto& s : scores) {
      const auto n = s.scores.size();
      std::vector<double> out(n);
      for (std::size_t i = 0; i < n; ++i) {
        double below = 0, equal = 0;
        for (const double v : s.scores) {
          below += v < s.scores[i];
          equal += v == s.scores[i];
        }
        out[i] = (below + 0.5 * (equal - 1) + 1) / double(n);
      }
      s.scores = std::move(out);
    }
  }
};

static_assert(ScoreNormalisation<per_site_rank>);

}  // namespace netsplit
