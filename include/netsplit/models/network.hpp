// netsplit/models/network.hpp — the Network concept (a whole classifier) and what every
// model offers through it: parameter counts and an index of its tensors by name.
// A model is a type in models/ that models Network; the split structure of its
// composition comes from models/structure.hpp (no model lists its sites by hand).
#pragma once

#include <concepts>
#include <cstdint>
#include <map>
#include <string>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/tensor.hpp"
#include "netsplit/layers/layer.hpp"

namespace netsplit {

/// A whole classifier: a default-constructible Layer with parameters, buffers and
/// initialisation, whose output is [N, classes, 1, 1] logits, and an architecture string
/// that checkpoints record (loading a checkpoint of another architecture is an error).
template <class N>
concept Network = Layer<N> && HasParameters<N> && HasBuffers<N> && Initializable<N> &&
                  CountsMultAdds<N> && std::default_initializable<N> && requires {
                    { N::classes } -> std::convertible_to<int>;
                    { N::architecture() } -> std::convertible_to<std::string>;
                  };

/// Number of trainable scalars at the network's current widths.
template <class N>
  requires HasParameters<N>
std::int64_t count_parameters(N& net) {
  std::int64_t total = 0;
  net.visit_parameters([&](const std::string&, auto& p, auto&) { total += p.numel(); });
  return total;
}

/// A network's parameters and buffers by name (the names checkpoints and split sites use).
/// Pointers stay valid until the network's tensors are replaced (a split).
template <class Net>
struct tensor_index {
  using T = typename Net::scalar_type;
  using B = typename Net::backend_type;
  std::map<std::string, tensor<T, B>*> params, buffers;
  explicit tensor_index(Net& net) {
    net.visit_parameters([&](const std::string& n, tensor<T, B>& w, tensor<T, B>&) { params[n] = &w; });
    net.visit_buffers([&](const std::string& n, tensor<T, B>& b) { buffers[n] = &b; });
  }
  /// contract_violation naming the parameter when the network has none of that name.
  tensor<T, B>& param(const std::string& n) const {
    const auto it = params.find(n);
    NETSPLIT_EXPECT(it != params.end(), "network has no parameter '", n, "'");
    return *it->second;
  }
  tensor<T, B>& buffer(const std::string& n) const {
    const auto it = buffers.find(n);
    NETSPLIT_EXPECT(it != buffers.end(), "network has no buffer '", n, "'");
    return *it->second;
  }
};

}  // namespace netsplit
