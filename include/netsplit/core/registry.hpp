// netsplit/core/registry.hpp — run-time choice among a closed set of policy types (TPM
// metrics, split strategies, selectors) listed once, as the alternatives of a
// std::variant: their names (each alternative default-constructed and asked name()), and
// the alternative of a given name. Adding a policy to a registry is one line: its type in
// the variant.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "netsplit/core/errors.hpp"

namespace netsplit::detail {

template <class Variant>
std::vector<std::string> alternative_names() {
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::vector<std::string>{std::string(std::variant_alternative_t<I, Variant>{}.name())...};
  }(std::make_index_sequence<std::variant_size_v<Variant>>{});
}

/// make(alternative{}) for the first alternative whose name() is `name`; every call of
/// make must return the same type. contract_violation naming `what` and the known names.
template <class Variant, class Make>
auto make_alternative(const std::string& name, const char* what, Make&& make) {
  using result = decltype(make(std::variant_alternative_t<0, Variant>{}));
  std::vector<result> found;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((found.empty() && std::variant_alternative_t<I, Variant>{}.name() == name
          ? (found.push_back(make(std::variant_alternative_t<I, Variant>{})), 0)
          : 0),
     ...);
  }(std::make_index_sequence<std::variant_size_v<Variant>>{});
  if (found.empty()) {
    std::string known;
    for (const auto& n : alternative_names<Variant>()) known += (known.empty() ? "" : ", ") + n;
    raise<contract_violation>("netsplit: unknown ", what, " '", name, "' (known: ", known, ")");
  }
  return std::move(found.front());
}

}  // namespace netsplit::detail
