// netsplit/split/strategies.hpp — the registry of shipped split strategies:
// any_split_strategy (one of them, chosen at run time), their names,
// make_split_strategy. Adding a strategy is its own file plus its line in the variant
// below.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "netsplit/core/registry.hpp"
#include "netsplit/split/gradient_direction.hpp"
#include "netsplit/split/net2wider.hpp"
#include "netsplit/split/random_init.hpp"
#include "netsplit/split/strategy.hpp"

namespace netsplit {

using any_split_strategy = std::variant<net2wider, gradient_direction, random_init>;

/// The names accepted by make_split_strategy, in the variant's order.
inline std::vector<std::string> split_strategy_names() { return detail::alternative_names<any_split_strategy>(); }
/// The strategy called `name`, with symmetry-breaking noise `eps` where it takes one;
/// contract_violation listing the known names otherwise.
inline any_split_strategy make_split_strategy(const std::string& name, double eps) {
  return detail::make_alternative<any_split_strategy>(name, "split strategy", [&](auto s) {
    if constexpr (requires { s.eps; }) s.eps = eps;
    return any_split_strategy(s);
  });
}

}  // namespace netsplit
