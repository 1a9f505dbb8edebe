// netsplit/core/workspace.hpp — tensors that live for part of one backward pass.
// A residual block's backward produces three gradients that are dead once the block is done
// (the gradient of its residual sum and its two batch norms' input gradients). Kept as
// members of every block they made gradient memory grow with depth (ResNet56 used more memory
// than PyTorch); a backend context owns one tensor_workspace, and blocks borrow its few
// tensors in turn, so the memory is that of one block whatever the depth.
// Not thread-safe, like the contexts that own it.
#pragma once

#include <map>
#include <memory>
#include <typeindex>
#include <utility>

#include "netsplit/core/tensor.hpp"

namespace netsplit {

class tensor_workspace {
 public:
  /// Tensor `slot` of element type T on backend B: the same object on every call with the
  /// same T, B and slot (its contents are whatever the last borrower left; resize it).
  template <class T, class B>
  tensor<T, B>& get(int slot) {
    auto& h = held_[{std::type_index(typeid(tensor<T, B>)), slot}];
    if (!h) h = std::make_unique<holder<tensor<T, B>>>();
    return static_cast<holder<tensor<T, B>>&>(*h).value;
  }
  /// Frees every tensor (the next get starts from an empty one).
  void clear() { held_.clear(); }

 private:
  struct holder_base {
    virtual ~holder_base() = default;
  };
  template <class V>
  struct holder final : holder_base {
    V value;
  };
  std::map<std::pair<std::type_index, int>, std::unique_ptr<holder_base>> held_;
};

}  // namespace netsplit
