// netsplit/split/strategy.hpp — how one filter becomes two. Defines SplitStrategy; models:
//  * net2wider: copy the filter (weights, BN parameters and statistics), give each copy
//    half of the outgoing weights; optional symmetric noise: original += eps*d, copy -=
//    eps*d on the incoming weights, d a random direction scaled to the filter's norm.
//    Function-preserving exactly at eps = 0 and to first order for eps > 0.
//  * gradient_direction: like net2wider, but d is the direction in which the filter's
//    mini-batch gradients disagreed most over the TPM window (from the gradient
//    disagreement metric), scaled to the filter's norm.
//  * random_init (control): the new filter gets fresh He-normal incoming weights and zero
//    outgoing weights, the original keeps all of its outgoing weights: the function is
//    preserved but the new filter starts from scratch.
// Momentum rule (all strategies): the split is a linear re-parametrisation, and momentum
// is transformed the same way — outgoing momentum is scaled by the same keep/copy factors
// as the outgoing weights, incoming momentum is copied (the noise is not applied to it);
// random_init's new filter starts with zero momentum. Nothing is silently reset.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/random.hpp"

namespace netsplit {

/// What a strategy is told about the filter it splits.
struct split_request {
  std::string site;
  std::string tensor;  // the producer weight being split (a site may have several)
  int filter = 0;
  std::span<const double> direction;  // disagreement direction for this filter (may be empty)
};

/// A split strategy: names itself, gives the outgoing-weight factors (keep for the
/// original, copy for the new filter), and sets the incoming weights of both from the
/// original's (`original` holds them on entry; `copy` holds a copy of them on entry).
/// copy_momentum says whether the new filter inherits the incoming momentum.
template <class S>
concept SplitStrategy = requires(const S& s, const split_request& r, std::span<float> a, std::span<float> b,
                                 std::span<double> ad, std::span<double> bd, rng& g) {
  { s.name() } -> std::convertible_to<std::string>;
  { s.keep_factor() } -> std::convertible_to<double>;
  { s.copy_factor() } -> std::convertible_to<double>;
  { s.copy_momentum() } -> std::convertible_to<bool>;
  { s.epsilon() } -> std::convertible_to<double>;
  s.init_incoming(r, a, b, g);
  s.init_incoming(r, ad, bd, g);
};

namespace detail {
template <class T>
double norm(std::span<const T> v) {
  double s = 0;
  for (auto x : v) s += double(x) * double(x);
  return std::sqrt(s);
}
/// original += eps*|w|*u, copy -= eps*|w|*u for a unit vector u.
template <class T>
void symmetric_offset(std::span<T> original, std::span<T> copy, std::vector<double> u, double eps) {
  const double un = norm<double>(u);
  if (eps == 0 || un == 0) return;
  const double scale = eps * norm<T>(original) / un;
  for (std::size_t i = 0; i < original.size(); ++i) {
    original[i] = static_cast<T>(original[i] + scale * u[i]);
    copy[i] = static_cast<T>(copy[i] - scale * u[i]);
  }
}
}  // namespace detail

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
                    "); record --tpm grad_disagreement or use --strategy net2wider");
    (void)g;
    detail::symmetric_offset(original, copy, std::vector<double>(r.direction.begin(), r.direction.end()), eps);
  }
};

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

static_assert(SplitStrategy<net2wider> && SplitStrategy<gradient_direction> && SplitStrategy<random_init>);

}  // namespace netsplit
