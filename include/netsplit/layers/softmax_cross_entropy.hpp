// netsplit/layers/softmax_cross_entropy.hpp — mean softmax cross-entropy over a batch.
// A loss, not a Layer: it takes logits [N, K, 1, 1] (or [N, K]) and host labels, returns
// the mean loss and keeps dL/dlogits for backward. Labels outside [0, K) are a contract
// violation naming the sample and the label.
#pragma once

#include <cstdint>
#include <span>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/tensor.hpp"

namespace netsplit {

template <class T, class B>
class softmax_cross_entropy {
 public:
  using context_type = typename B::context;

  double forward(context_type& ctx, const tensor<T, B>& logits, std::span<const int> labels) {
    NETSPLIT_EXPECT(logits.rank() >= 2 && logits.dim(0) > 0, "softmax_cross_entropy expects logits [N, K, ...], got shape ",
                    logits.shape());
    const auto n = logits.dim(0);
    const auto k = logits.numel() / n;
    NETSPLIT_EXPECT(static_cast<std::int64_t>(labels.size()) == n, "softmax_cross_entropy got ",
                    labels.size(), " labels for a batch of ", n);
    for (std::size_t i = 0; i < labels.size(); ++i)
      NETSPLIT_EXPECT(labels[i] >= 0 && labels[i] < k, "label ", labels[i], " of sample ", i,
                      " is outside [0, ", k, ")");
    labels_.resize({n});
    labels_.from_host(labels);
    grad_.resize(logits.shape());
    loss_ = B::softmax_cross_entropy(ctx, static_cast<int>(n), static_cast<int>(k), logits.data(),
                                     labels_.data(), grad_.data());
    return loss_;
  }
  /// dL/dlogits of the last forward.
  const tensor<T, B>& backward() const { return grad_; }
  /// Multiplies dL/dlogits by `s` (a data-parallel process's share of the global batch:
  /// its loss is the mean over its own samples, the gradient must be the global mean's).
  void scale_gradient(context_type& ctx, double s) {
    B::axpy(ctx, grad_.numel(), static_cast<T>(s - 1.0), grad_.data(), grad_.data());
  }
  double loss() const { return loss_; }

 private:
  tensor<int, B> labels_;
  tensor<T, B> grad_;
  double loss_ = 0;
};

}  // namespace netsplit
