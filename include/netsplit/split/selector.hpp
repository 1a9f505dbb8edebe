// netsplit/split/selector.hpp — which filters to split, from per-site scores.
// Defines Selector; models: top_k (global top-k across all sites: the study's "9
// together"), capped_top_k (top-k with at most `cap` per site), threshold (every filter
// scoring at least `min_score`, at most `max_count`). Ties go to the lower site index,
// then the lower filter index, so selection is deterministic. Impossible requests (k
// larger than the eligible filters, k < 1) are contract_violations.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"

namespace netsplit {

struct site_scores {
  std::string site;
  std::vector<double> scores;  // per filter, current width
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

struct top_k {
  int k = 9;
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

struct capped_top_k {
  int k = 9;
  int cap = 1;
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

struct threshold {
  double min_score = 0;
  int max_count = 9;
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

static_assert(Selector<top_k> && Selector<capped_top_k> && Selector<threshold>);

}  // namespace netsplit
