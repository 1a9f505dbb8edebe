// netsplit/split/random_init.hpp — a control SplitStrategy: the new filter gets fresh
// He-normal incoming weights and zero outgoing weights, the original keeps all of its
// outgoing weights: the function is preserved but the new filter starts from scratch.
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
