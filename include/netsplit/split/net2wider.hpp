// netsplit/split/net2wider.hpp — a SplitStrategy (Net2Net's widening): copy the filter
// (weights, BN parameters and statistics), give each copy half of the outgoing weights;
// optional symmetric noise: original += eps*d, copy -= eps*d on the incoming weights, d a
// random direction scaled to the filter's norm. Function-preserving exactly at eps = 0 and
// to first order for eps > 0.
#pragma once

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/random.hpp"
#include "netsplit/split/strategy.hpp"

namespace netsplit {

struct net2wider {
  double eps = 0.0;
  std::string name() const { return "net2wider"; }
  double keep_factor() const { return 0.5; }
  double copy_factor() const { return 0.5; }
  bool copy_momentum() const { return true; }
  double epsilon() const { return eps; }
  template <class T>
  void init_incoming(const split_request&, std::span<T> original, std::span<T> copy, rng& g) const {
    if (eps == 0) return;
    std::vector<double> u(original.size());
    for (auto& v : u) v = g.normal();
    detail::symmetric_offset(original, copy, std::move(u), eps);
  }
};

static_assert(SplitStrategy<net2wider>);

}  // namespace netsplit
