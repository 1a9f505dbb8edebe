// netsplit/split/normalisations.hpp — the registry of shipped score normalisations:
// any_score_normalisation (one of them, chosen at run time by name; itself a
// ScoreNormalisation), their names, make_score_normalisation. Adding one is its own file
// plus its line in the variant below.
#pragma once

#include <concepts>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "netsplit/core/registry.hpp"
#include "netsplit/split/normalisation.hpp"
#include "netsplit/split/per_site_rank.hpp"
#include "netsplit/split/per_tap.hpp"
#include "netsplit/split/z_score.hpp"
#include "netsplit/tpm/scores.hpp"

namespace netsplit {

class any_score_normalisation {
 public:
  using variant_type = std::variant<no_normalisation, per_tap, per_site_rank, z_score>;
  any_score_normalisation() = default;
  template <ScoreNormalisation N>
    requires std::constructible_from<variant_type, N>
  any_score_normalisation(N n) : v_(std::move(n)) {}
  std::string name() const { return std::visit([](const auto& n) { return std::string(n.name()); }, v_); }
  void apply(std::span<site_scores> s) const {
    std::visit([&](const auto& n) { n.apply(s); }, v_);
  }

 private:
  variant_type v_{no_normalisation{}};
};
static_assert(ScoreNormalisation<any_score_normalisation>);

/// The names accepted by make_score_normalisation, in the variant's order.
inline std::vector<std::string> score_normalisation_names() {
  return detail::alternative_names<any_score_normalisation::variant_type>();
}
/// The normalisation called `name`; contract_violation listing the known names otherwise.
inline any_score_normalisation make_score_normalisation(const std::string& name) {
  return detail::make_alternative<any_score_normalisation::variant_type>(
      name, "score normalisation", [](auto n) { return any_score_normalisation(n); });
}

}  // namespace netsplit
