// netsplit/split/capped_top_k.hpp — a Selector: the k best filters with at most `cap`
// from any one site.
#pragma once

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/split/selector.hpp"

namespace netsplit {

struct capped_top_k {
  int k = 9;
  int cap = 1;
  static capped_top_k configured(const selector_options& o) { return {o.count, o.cap}; }
  std::string name() const { return "capped_top_k"; }
  std::vector<split_choice> select(std::span<const site_scores> scores) const {
    NETSPLIT_EXPECT(k >= 1 && cap >= 1, "capped_top_k needs k >= 1 and cap >= 1, got k=", k, " cap=", cap);
    std::vector<int> taken(scores.size(), 0);
    std::vector<split_choice> out;
    std::size_t eligible = 0;
    for (const auto& s : scores) eligible += std::min<std::size_t>(s.scores.size(), static_cast<std::size_t>(cap));
    NETSPLIT_EXPECT(static_cast<std::size_t>(k) <= eligible, "cannot select ", k, " filters with at most ", cap,
                    " per site: only ", eligible, " are eligible");
    for (const auto& c : detail::ranked(scores)) {
      if (taken[c.site] >= cap) continue;
      ++taken[c.site];
      out.push_back(c);
      if (static_cast<int>(out.size()) == k) break;
    }
    return out;
  }
};

static_assert(Selector<capped_top_k>);

}  // namespace netsplit
