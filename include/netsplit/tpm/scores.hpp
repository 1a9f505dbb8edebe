// netsplit/tpm/scores.hpp — what TPM produces: per-site, per-filter scores (the input of
// split selectors).
#pragma once

#include <string>
#include <vector>

namespace netsplit {

struct site_scores {
  std::string site;
  std::vector<double> scores;  // per filter, current width
};

}  // namespace netsplit
