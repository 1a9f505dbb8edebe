// netsplit/split/top_k.hpp — a Selector: the k best filters across all eligible sites
// (the study's "9 together").
#pragma once

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/split/selector.hpp"

namespace netsplit {

struct top_k {
  int k = 9;
  static top_k configured(const selector_options& o) { return {o.count}; }
  std::string name() const { return "top_k"; }
  std::vector<split_choice> select(std::span<const site_scores> scores) const {
    NETSPLIT_EXPECT(k >= 1, "top_k needs k >= 1, got ", k);
    auto all = detail::ranked(scores);
    NETSPLIT_EXPECT(static_cast<std::size_t>(k) <= all.size(), "cannot select ", k, " filters: only ", all.size(),
                    " are eligible across ", scores.size(), " sites");
    all.resize(static_cast<std::size_t>(k));
    return all;
  }
};

static_assert(Selector<top_k>);

}  // namespace netsplit
