// netsplit/split/gradient_direction.hpp — a SplitStrategy: like net2wider, but d is the
// direction in which the filter's mini-batch gradients disagreed most over the TPM window
// (tracked by the grad_disagreement metrics), scaled to the filter's norm.
#pragma once

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/random.hpp"
#include "netsplit/split/strategy.hpp"

namespace netsplit {

struct gradient_direction {
  double eps = 0.01;
  std::string name() const { return "gradient_direction"; }
  double keep_factor() const { return 0.5; }
  double copy_factor() const { return 0.5; }
  bool copy_momentum() const { return true; }
  double epsilon() const { return eps; }
  template <class T>
  void init_incoming(const split_request& r, std::span<T> original, std::span<T> copy, rng& g) const {
    NETSPLIT_EXPECT(r.direction.size() == original.size(), "gradient_direction split of ", r.tensor, " filter ",
                    r.filter, " needs the gradient-disagreement direction recorded over the TPM window (got ",
                    r.direction.size(), " values for a filter of ", original.size(),
                    "); record --tpm grad_disagreement (or grad_disagreement_annealed) or use --strategy net2wider");
    (void)g;
    detail::symmetric_offset(original, copy, std::vector<double>(r.direction.begin(), r.direction.end()), eps);
  }
};

static_assert(SplitStrategy<gradient_direction>);

}  // namespace netsplit
