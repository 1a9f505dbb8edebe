// netsplit/split/selectors.hpp — the registry of shipped selectors: any_selector (one of
// them, chosen at run time), their names, make_selector. Adding a selector is its own file
// plus its line in the variant below.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "netsplit/core/registry.hpp"
#include "netsplit/split/budget.hpp"
#include "netsplit/split/capped_top_k.hpp"
#include "netsplit/split/selector.hpp"
#include "netsplit/split/threshold.hpp"
#include "netsplit/split/top_k.hpp"

namespace netsplit {

using any_selector = std::variant<top_k, capped_top_k, threshold, budget>;

/// The names accepted by make_selector, in the variant's order.
inline std::vector<std::string> selector_names() { return detail::alternative_names<any_selector>(); }
/// The selector called `name`, configured from `o`; contract_violation listing the known
/// names otherwise.
inline any_selector make_selector(const std::string& name, const selector_options& o) {
  return detail::make_alternative<any_selector>(name, "selector",
                                                [&](auto s) { return any_selector(decltype(s)::configured(o)); });
}

}  // namespace netsplit
