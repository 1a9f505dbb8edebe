// netsplit/split/normalisation.hpp — how per-site scores are made comparable across sites
// before a selector ranks them: the ScoreNormalisation concept, the identity (`none`, the
// default: scores as the metric gives them) and normalised_selector, which applies a
// normalisation and then any Selector. Models, one file each: per_tap.hpp; registry:
// normalisations.hpp. A metric's scale can differ between sites for reasons unrelated to
// the filters' merit (a residual-stream group sums 3-4 taps, an inner site has one;
// docs/metrics.md), and a global top-k then picks sites rather than filters.
#pragma once

#include <concepts>
#include <span>
#include <string>
#include <vector>

#include "netsplit/split/selector.hpp"
#include "netsplit/tpm/scores.hpp"

namespace netsplit {

/// A score normalisation: name(), and apply(scores), which rescales every site's scores in
/// place (it may read all sites, e.g. to rank them). It must keep scores non-negative and
/// not reorder filters within a site unless it says so.
template <class N>
concept ScoreNormalisation = requires(const N& n, std::span<site_scores> s) {
  { n.name() } -> std::convertible_to<std::string>;
  n.apply(s);
};

/// Scores as the metric gives them.
struct no_normalisation {
  std::string name() const { return "none"; }
  void apply(std::span<site_scores>) const {}
};

static_assert(ScoreNormalisation<no_normalisation>);

/// A Selector that normalises the scores it is given, then selects with `selector`. The
/// choices carry the normalised scores (what the selection ranked).
template <ScoreNormalisation N, Selector S>
struct normalised_selector {
  N normalisation;
  S selector;
  std::string name() const { return selector.name() + "+" + normalisation.name(); }
  std::vector<split_choice> select(std::span<const site_scores> scores) const {
    std::vector<site_scores> copy(scores.begin(), scores.end());
    normalisation.apply(copy);
    return selector.select(copy);
  }
};
template <class N, class S>
normalised_selector(N, S) -> normalised_selector<N, S>;

}  // namespace netsplit
