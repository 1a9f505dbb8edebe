// netsplit/split/selector.hpp — which filters to split, from tpm's per-site scores.
// Defines the Selector concept and selector_options (what a run asks of any selector);
// models, one file each: top_k.hpp, capped_top_k.hpp, threshold.hpp; registry:
// selectors.hpp. Ties go to the lower site index, then the lower filter index, so
// selection is deterministic. Impossible requests (k larger than the eligible filters,
// k < 1) are contract_violations.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/tpm/scores.hpp"

namespace netsplit {

/// What a run asks of a selector, whichever it is: how many filters (at most), how many
/// per site at most, the least score. Each selector reads the fields it uses
/// (configured(options)).
struct selector_options {
  int count = 9;
  int cap = 1;
  double min_score = 0;
  double budget = 0;     // parameters a budget selector may add (split/budget.hpp)
  bool per_cost = true;  // budget: rank by score per parameter (false: by score alone)
};

struct split_choice {
  std::size_t site = 0;  // index into the scores given to select()
  int filter = 0;
  double score = 0;
  bool operator==(const split_choice&) const = default;
};

template <class S>
concept Selector = requires(const S& s, std::span<const site_scores> scores) {
  { s.name() } -> std::convertible_to<std::string>;
  { s.select(scores) } -> std::same_as<std::vector<split_choice>>;
};

namespace detail {
inline std::vector<split_choice> ranked(std::span<const site_scores> scores) {
  std::vector<split_choice> all;
  for (std::size_t s = 0; s < scores.size(); ++s)
    for (std::size_t f = 0; f < scores[s].scores.size(); ++f) {
      const double v = scores[s].scores[f];
      NETSPLIT_EXPECT(!std::isnan(v), "score of site '", scores[s].site, "' filter ", f, " is NaN");
      all.push_back({s, static_cast<int>(f), v});
    }
  std::stable_sort(all.begin(), all.end(), [](const split_choice& a, const split_choice& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.site != b.site) return a.site < b.site;
    return a.filter < b.filter;
  });
  return all;
}
}  // namespace detail

}  // namespace netsplit
