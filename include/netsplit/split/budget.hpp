// netsplit/split/budget.hpp — a Selector that spends a parameter budget: filters in order
// of score per added parameter (site_scores::cost; or of score alone, per_cost = false),
// each taken if its cost fits in what is left, until nothing more fits. Growth rounds use
// it to match arms in cost (the random control ranks random scores by score alone, so its
// picks are uniform over filters, and spends the same budget). A budget below the cheapest
// eligible split is a contract_violation naming both.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/split/selector.hpp"

namespace netsplit {

struct budget {
  double params = 0;
  bool per_cost = true;
  static budget configured(const selector_options& o) { return {o.budget, o.per_cost}; }
  std::string name() const { return "budget"; }
  std::vector<split_choice> select(std::span<const site_scores> scores) const {
    NETSPLIT_EXPECT(params > 0, "the budget selector needs a positive parameter budget, got ", params);
    struct cand {
      split_choice c;
      double cost, key;
    };
    std::vector<cand> all;
    double cheapest = -1;
    std::string cheapest_site;
    for (std::size_t s = 0; s < scores.size(); ++s) {
      NETSPLIT_EXPECT(scores[s].cost > 0, "site '", scores[s].site, "' has split cost ", scores[s].cost);
      for (std::size_t f = 0; f < scores[s].scores.size(); ++f) {
        const double v = scores[s].scores[f];
        NETSPLIT_EXPECT(!std::isnan(v), "score of site '", scores[s].site, "' filter ", f, " is NaN");
        all.push_back({{s, static_cast<int>(f), v}, scores[s].cost, per_cost ? v / scores[s].cost : v});
      }
      if (!scores[s].scores.empty() && (cheapest < 0 || scores[s].cost < cheapest)) {
        cheapest = scores[s].cost;
        cheapest_site = scores[s].site;
      }
    }
    NETSPLIT_EXPECT(!all.empty(), "the budget selector has no eligible filter");
    NETSPLIT_EXPECT(cheapest <= params, "a budget of ", params, " parameters is below the cheapest eligible split (",
                    cheapest, " parameters at site '", cheapest_site, "')");
    std::stable_sort(all.begin(), all.end(), [](const cand& a, const cand& b) {
      if (a.key != b.key) return a.key > b.key;
      if (a.c.site != b.c.site) return a.c.site < b.c.site;
      return a.c.filter < b.c.filter;
    });
    std::vector<split_choice> out;
    double left = params;
    for (const auto& a : all) {
      if (left < cheapest) break;
      if (a.cost <= left) {
        out.push_back(a.c);
        left -= a.cost;
      }
    }
    return out;
  }
};

static_assert(Selector<budget>);

}  // namespace netsplit
