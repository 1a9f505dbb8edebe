// netsplit/split/threshold.hpp — a Selector: every filter scoring at least `min_score`,
// best first, at most `max_count`.
#pragma once

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/split/selector.hpp"

namespace netsplit {

struct threshold {
  double min_score = 0;
  int max_count = 9;
  static threshold configured(const selector_options& o) { return {o.min_score, o.count}; }
  std::string name() const { return "threshold"; }
  std::vector<split_choice> select(std::span<const site_scores> scores) const {
    NETSPLIT_EXPECT(max_count >= 1, "threshold needs max_count >= 1, got ", max_count);
    std::vector<split_choice> out;
    for (const auto& c : detail::ranked(scores)) {
      if (c.score < min_score || static_cast<int>(out.size()) == max_count) break;
      out.push_back(c);
    }
    return out;
  }
};

static_assert(Selector<threshold>);

}  // namespace netsplit
