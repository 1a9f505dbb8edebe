// netsplit/train/sgd.hpp — stochastic gradient descent with momentum and weight decay.
// The update follows PyTorch's form, not Caffe's:
//   g' = g + wd * w;  m = mu * m + g';  w -= lr * (nesterov ? g' + mu * m : m)
// (Caffe folds lr into the momentum buffer, m = mu*m + lr*g', w -= m; the two agree while
// lr is constant and differ for one step's worth of history after each lr change.)
// Momentum buffers are the state slot "momentum" (train/optimizer.hpp), keyed by parameter
// name, so a network whose widths grow (a split) has its buffers grown with it; the
// optimizer never resets a buffer silently — a shape mismatch is a contract violation.
#pragma once

#include <map>
#include <string>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/tensor.hpp"
#include "netsplit/layers/layer.hpp"
#include "netsplit/train/optimizer.hpp"

namespace netsplit {

struct sgd_config {
  double momentum = 0.9;
  double weight_decay = 1e-4;
  bool nesterov = false;
};

template <class T, class B>
class sgd {
 public:
  explicit sgd(sgd_config cfg = {}) : cfg_(cfg) {}

  const sgd_config& config() const { return cfg_; }

  /// Applies one update to every parameter of net with learning rate lr.
  template <class Net>
    requires HasParameters<Net>
  void step(typename B::context& ctx, Net& net, double lr) {
    auto& momentum = state_.slot("momentum");
    net.visit_parameters([&](const std::string& name, tensor<T, B>& w, tensor<T, B>& g) {
      auto it = momentum.find(name);
      if (it == momentum.end()) it = momentum.emplace(name, tensor<T, B>(w.shape(), T(0))).first;
      NETSPLIT_EXPECT(it->second.shape() == w.shape(), "momentum buffer of '", name, "' has shape ",
                      it->second.shape(), " but the parameter has ", w.shape(),
                      " (a split must grow the buffer too)");
      B::sgd_step(ctx, w.numel(), w.data(), g.data(), it->second.data(), static_cast<T>(lr),
                  static_cast<T>(cfg_.momentum), static_cast<T>(cfg_.weight_decay), cfg_.nesterov);
    });
  }

  /// Per-parameter state: the one slot "momentum".
  optimizer_state<T, B>& state() { return state_; }
  const optimizer_state<T, B>& state() const { return state_; }
  /// Momentum buffers by parameter name (created at the first step).
  std::map<std::string, tensor<T, B>>& momentum() { return state_.slot("momentum"); }
  const std::map<std::string, tensor<T, B>>& momentum() const { return state_.slot("momentum"); }

 private:
  sgd_config cfg_;
  optimizer_state<T, B> state_{{"momentum"}};
};

}  // namespace netsplit
