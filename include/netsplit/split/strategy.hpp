// netsplit/split/strategy.hpp — how one filter becomes two: the SplitStrategy concept and
// what strategies share. Models, one file each: net2wider.hpp, gradient_direction.hpp,
// random_init.hpp; registry: strategies.hpp.
// Momentum rule (all strategies): the split is a linear re-parametrisation, and the
// optimizer's per-parameter state is transformed the same way — outgoing state is scaled
// by the same keep/copy factors as the outgoing weights, incoming state is copied (the
// noise is not applied to it) unless copy_momentum() is false (the new filter's starts
// at zero). Nothing is silently reset.
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
/// copy_momentum says whether the new filter inherits the incoming momentum. Optional:
/// copy_statistics() — false when the new filter starts from scratch, so its per-channel
/// statistics (BN running mean/var) are a fresh layer's, not the original's (default true).
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
template <class S>
bool copies_statistics(const S& s) {
  if constexpr (requires { { s.copy_statistics() } -> std::convertible_to<bool>; }) return s.copy_statistics();
  else return true;
}
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

}  // namespace netsplit
