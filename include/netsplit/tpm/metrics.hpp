// netsplit/tpm/metrics.hpp — the registry of shipped TpmMetric models: any_tpm_metric, a
// value type holding one of them (chosen at run time by name), the names, and
// make_tpm_metric. Each metric is its own file; adding one is that file plus its line in
// any_tpm_metric's variant below (names and make_tpm_metric follow from it).
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/registry.hpp"
#include "netsplit/tpm/bn_gamma.hpp"
#include "netsplit/tpm/grad_disagreement.hpp"
#include "netsplit/tpm/l1_norm.hpp"
#include "netsplit/tpm/metric.hpp"
#include "netsplit/tpm/random_score.hpp"
#include "netsplit/tpm/splitting.hpp"
#include "netsplit/tpm/taylor.hpp"
#include "netsplit/tpm/weight_motion.hpp"

namespace netsplit {

/// Any shipped metric, chosen at run time by name.
class any_tpm_metric {
 public:
  using variant_type = std::variant<taylor, taylor_sum, weight_motion, grad_disagreement, grad_disagreement_annealed, l1_norm, bn_gamma, splitting, random_score>;
  any_tpm_metric() = default;
  template <TpmMetric M>
    requires std::constructible_from<variant_type, M>
  any_tpm_metric(M m) : v_(std::move(m)) {}
  std::string name() const { return std::visit([](const auto& m) { return m.name(); }, v_); }
  unsigned needs() const { return std::visit([](const auto& m) { return m.needs(); }, v_); }
  double observe(metric_state& st, const site_signals& s) const {
    return std::visit([&](const auto& m) { return m.observe(st, s); }, v_);
  }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    return std::visit([&](const auto& m) { return m.scores(st, s); }, v_);
  }
  /// Whether state `key` lives in weight space (grows with a split as the weights do).
  bool weight_like(const std::string& key) const {
    return std::visit([&](const auto& m) {
      if constexpr (requires { { m.weight_like(key) } -> std::convertible_to<bool>; }) return bool(m.weight_like(key));
      else return false;
    }, v_);
  }
  /// Whether the metric reads the weights after the window's last update (close()).
  bool closes() const {
    return std::visit([](const auto& m) { return requires { m.close(std::declval<metric_state&>(), std::declval<const site_signals&>()); }; }, v_);
  }
  void close(metric_state& st, const site_signals& s) const {
    std::visit([&](const auto& m) {
      if constexpr (requires { m.close(st, s); }) m.close(st, s);
    }, v_);
  }

 private:
  variant_type v_{taylor{}};
};
static_assert(TpmMetric<any_tpm_metric>);

/// The names accepted by make_tpm_metric, in the variant's order.
inline std::vector<std::string> tpm_metric_names() { return detail::alternative_names<any_tpm_metric::variant_type>(); }
/// A metric by name; contract_violation listing the known names otherwise.
inline any_tpm_metric make_tpm_metric(const std::string& name) {
  return detail::make_alternative<any_tpm_metric::variant_type>(name, "TPM metric",
                                                                 [](auto m) { return any_tpm_metric(m); });
}

}  // namespace netsplit
