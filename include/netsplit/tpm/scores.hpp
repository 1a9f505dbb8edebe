// netsplit/tpm/scores.hpp — what TPM produces: per-site, per-filter scores (the input of
// split selectors and of score normalisations, split/normalisation.hpp).
#pragma once

#include <string>
#include <vector>

namespace netsplit {

struct site_scores {
  std::string site;
  std::vector<double> scores;  // per filter, current width
  /// Signal taps the site has (models/structure.hpp): 1 for an inner site, one per producer
  /// for a residual-stream group. Activation metrics (taylor) sum over them; rows of weight
  /// metrics span the same producers. The per_tap normalisation divides by it.
  int taps = 1;
  /// Parameters that splitting one filter of this site adds at the current widths
  /// (models/structure.hpp split_cost): what a budget selector (split/budget.hpp) spends.
  double cost = 1;
};

}  // namespace netsplit
