// netsplit/split/random_init.hpp — a control SplitStrategy: the new filter gets fresh
// He-normal incoming weights and zero outgoing weights (also through an option-A
// shortcut), the original keeps all of its outgoing weights: the function is preserved
// but the new filter starts from scratch. Its batch-norm running statistics are a fresh
// layer's (mean 0, variance 1), not the original's: the true statistics of its fresh
// weights need data, and until its outgoing weights move away from zero they cannot
// change the output; training mode normalises with batch statistics and the running ones
// follow at BN's momentum (0.1 a step). Its BN scale and shift are the original's.
#pragma once

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/random.hpp"
#include "netsplit/split/strategy.hpp"

namespace netsplit {

struct random_init {
  std::string name() const { return "random_init"; }
  double keep_factor() const { return 1.0; }
  double copy_factor() const { return 0.0; }
  bool copy_momentum() const { return false; }
  bool copy_statistics() const { return false; }
  double epsilon() const { return 0.0; }
  template <class T>
  void init_incoming(const split_request&, std::span<T>, std::span<T> copy, rng& g) const {
    // fan-in is the slice length (in * k * k): He normal.
    const double std = std::sqrt(2.0 / static_cast<double>(copy.size()));
    for (auto& v : copy) v = static_cast<T>(g.normal() * std);
  }
};

static_assert(SplitStrategy<random_init>);

}  // namespace netsplit
