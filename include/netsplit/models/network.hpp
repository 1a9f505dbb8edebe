// netsplit/models/network.hpp — the Network concept (a whole classifier) and what every
// model offers through it: parameter counts and an index of its tensors by name.
// A model is a type in models/ that models Network; the split structure of its
// composition comes from models/structure.hpp (no model lists its sites by hand).
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/tensor.hpp"
#include "netsplit/layers/layer.hpp"

namespace netsplit {

/// A model's width multiplier: every convolution gets round(nominal width x value) filters
/// (at least 1; layers/layer.hpp), the classifier keeps its classes. 1 is the published net.
struct width_multiplier {
  double value = 1.0;
  width_multiplier() = default;
  /// contract_violation unless 0 < value <= 16 (finite).
  explicit width_multiplier(double v) : value(v) {
    NETSPLIT_EXPECT(std::isfinite(v) && v > 0 && v <= 16, "width multiplier must be in (0, 16], got ", v);
  }
  /// As checkpoints' architecture strings write it: "" at 1, else " width=<%g>".
  std::string suffix() const {
    if (value == 1.0) return "";
    char buf[32];
    std::snprintf(buf, sizeof buf, " width=%g", value);
    return buf;
  }
  bool operator==(const width_multiplier&) const = default;
};

/// A whole classifier: a Layer with parameters, buffers and initialisation, whose output is
/// [N, classes, 1, 1] logits; constructible at the published widths (default) or at a
/// width multiplier, which it reports (width()); and an architecture string naming the
/// model and its widths, which checkpoints record (loading a checkpoint of another
/// architecture is an error).
template <class N>
concept Network = Layer<N> && HasParameters<N> && HasBuffers<N> && Initializable<N> &&
                  CountsMultAdds<N> && std::default_initializable<N> &&
                  std::constructible_from<N, width_multiplier> && requires(const N& n) {
                    { N::classes } -> std::convertible_to<int>;
                    { n.width() } -> std::convertible_to<width_multiplier>;
                    { n.architecture() } -> std::convertible_to<std::string>;
                  };

/// Number of trainable scalars at the network's current widths.
template <class N>
  requires HasParameters<N>
std::int64_t count_parameters(N& net) {
  std::int64_t total = 0;
  net.visit_parameters([&](const std::string&, auto& p, auto&) { total += p.numel(); });
  return total;
}

/// Parameters and buffers by name, of any network of scalar T on backend B: what code that
/// works on named tensors takes, so it is compiled once per scalar and backend rather than
/// once per network type (split/apply.hpp). tensor_index fills it from a network.
template <class T, class B>
struct tensor_maps {
  std::map<std::string, tensor<T, B>*> params, buffers;
  /// Filled by a network's walks: calls that pass a visitor to its visit_parameters and
  /// visit_buffers.
  tensor_maps(function_ref<void(parameter_visitor<T, B>)> visit_parameters,
              function_ref<void(buffer_visitor<T, B>)> visit_buffers) {
    visit_parameters([&](const std::string& n, tensor<T, B>& w, tensor<T, B>&) { params[n] = &w; });
    visit_buffers([&](const std::string& n, tensor<T, B>& b) { buffers[n] = &b; });
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

/// A network's parameters and buffers by name (the names checkpoints and split sites use).
/// Pointers stay valid until the network's tensors are replaced (a split).
template <class Net>
struct tensor_index : tensor_maps<typename Net::scalar_type, typename Net::backend_type> {
  using T = typename Net::scalar_type;
  using B = typename Net::backend_type;
  explicit tensor_index(Net& net)
      : tensor_maps<T, B>([&net](parameter_visitor<T, B> v) { net.visit_parameters(v); },
                          [&net](buffer_visitor<T, B> v) { net.visit_buffers(v); }) {}
};

}  // namespace netsplit
