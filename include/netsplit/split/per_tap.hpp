// netsplit/split/per_tap.hpp — a ScoreNormalisation: each site's scores divided by its
// number of signal taps (site_scores::taps), so a residual-stream group, whose Taylor score
// sums one tap per producer (3 or 4 in ResNet20), is compared with an inner site (one tap)
// per tap. For metrics summed over a row that spans the group's producers (l1_norm,
// grad_disagreement) it is the mean per producer, as each producer has one tap there.
#pragma once

#include <span>
#include <string>

#include "netsplit/core/errors.hpp"
#include "netsplit/split/normalisation.hpp"
#include "netsplit/tpm/scores.hpp"

namespace netsplit {

struct per_tap {
  std::string name() const { return "per_tap"; }
  void apply(std::span<site_scores> scores) const {
    for (auto& s : scores) {
      NETSPLIT_EXPECT(s.taps >= 1, "per_tap normalisation: site '", s.site, "' has ", s.taps,
                      " signal taps; expected at least 1");
      for (auto& v : s.scores) v /= s.taps;
    }
  }
};

static_assert(ScoreNormalisation<per_tap>);

}  // namespace netsplit
