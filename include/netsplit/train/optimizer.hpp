// netsplit/train/optimizer.hpp — per-parameter optimizer state behind one interface, and
// the Optimizer concept.
// An optimizer keeps named state slots ("momentum" for SGD; Adam would keep two), each
// holding one tensor per parameter name, of that parameter's shape. Checkpoints store
// slot s of parameter p as "<s>/<p>"; a split grows every slot of every parameter it
// widens (split/apply.hpp) without knowing which optimizer made them.
#pragma once

#include <algorithm>
#include <concepts>
#include <map>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/tensor.hpp"

namespace netsplit {

template <class T, class B>
class optimizer_state {
 public:
  using slot_map = std::map<std::string, tensor<T, B>>;

  explicit optimizer_state(std::vector<std::string> slot_names) : names_(std::move(slot_names)) {
    for (const auto& n : names_) slots_[n];
  }

  const std::vector<std::string>& slot_names() const { return names_; }

  /// The tensors of slot `name` by parameter name; contract_violation for an unknown slot.
  slot_map& slot(const std::string& name) { return slots_.at(checked(name)); }
  const slot_map& slot(const std::string& name) const { return slots_.at(checked(name)); }

  /// Calls f(slot name, tensor) for every state tensor `param` has (none before the
  /// optimizer's first step).
  template <class F>
  void for_each_of(const std::string& param, F&& f) {
    for (const auto& n : names_) {
      auto& m = slots_.at(n);
      if (const auto it = m.find(param); it != m.end()) f(n, it->second);
    }
  }
  /// Calls f(slot name, parameter name, tensor) for every state tensor.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& n : names_)
      for (const auto& [p, t] : slots_.at(n)) f(n, p, t);
  }
  void clear() {
    for (auto& [n, m] : slots_) m.clear();
  }

 private:
  const std::string& checked(const std::string& name) const {
    NETSPLIT_EXPECT(std::find(names_.begin(), names_.end(), name) != names_.end(), "optimizer has no state slot '",
                    name, "'");
    return name;
  }
  std::vector<std::string> names_;
  std::map<std::string, slot_map> slots_;
};

/// Requires: step(ctx, net, lr) applies one update with learning rate lr; state() exposes
/// the per-parameter state (above), which checkpoints save and splits grow.
template <class O, class Net>
concept Optimizer = requires(O& o, typename Net::backend_type::context& ctx, Net& net, double lr) {
  o.step(ctx, net, lr);
  { o.state() } -> std::same_as<optimizer_state<typename Net::scalar_type, typename Net::backend_type>&>;
};

}  // namespace netsplit
