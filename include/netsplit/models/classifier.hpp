// netsplit/models/classifier.hpp — what every model shares: a whole classifier over one flat
// composition (sequential_layer) built at a width multiplier. classifier<Body> forwards
// the Layer operations, parameters, buffers, initialisation, multiply-add counts and split
// structure to its body; a model derives from it, names the body's children and says its
// architecture. Models Network together with the model's `classes` and architecture().
#pragma once

#include <cstdint>
#include <cstddef>
#include <string>
#include <utility>

#include "netsplit/core/random.hpp"
#include "netsplit/layers/sequential.hpp"
#include "netsplit/models/network.hpp"

namespace netsplit {

namespace detail {
template <class T, class B, fmap_shape In, class List>
struct sequential_of_list;
/// A list of layer specs, to build a composition from a computed list.
template <class... Specs>
struct spec_list {};
template <class T, class B, fmap_shape In, class... Specs>
struct sequential_of_list<T, B, In, spec_list<Specs...>> {
  using type = sequential_layer<T, B, In, Specs...>;
};
}  // namespace detail

template <class Body>
class classifier {
 public:
  using body_type = Body;
  using scalar_type = typename Body::scalar_type;
  using backend_type = typename Body::backend_type;
  using context_type = typename Body::context_type;
  static constexpr fmap_shape input_shape = Body::input_shape;
  static constexpr fmap_shape output_shape = Body::output_shape;

  /// The published widths.
  classifier() = default;
  /// Every convolution at round(nominal width x m) filters (layers/layer.hpp), zero weights
  /// until initialize().
  explicit classifier(width_multiplier m) : width_(m) {
    if (m.value == 1.0) return;
    int stream = input_shape.channels;
    body_.scale_widths(m.value, stream);
  }

  width_multiplier width() const { return width_; }
  int in_channels() const { return body_.in_channels(); }
  int out_channels() const { return body_.out_channels(); }

  /// With phase::infer every convolution, its batch norm and ReLU run folded (sequential_layer).
  const tensor<scalar_type, backend_type>& forward(context_type& ctx, const tensor<scalar_type, backend_type>& x,
                                                   phase p) {
    return body_.forward(ctx, x, p);
  }
  const tensor<scalar_type, backend_type>& backward(context_type& ctx, const tensor<scalar_type, backend_type>& dy,
                                                    bool input_grad = false) {
    return body_.backward(ctx, dy, input_grad);
  }
  void visit_parameters(parameter_visitor<scalar_type, backend_type> v) { body_.visit_parameters(v); }
  void visit_buffers(buffer_visitor<scalar_type, backend_type> v) { body_.visit_buffers(v); }
  /// Fixed channel maps (option-A shortcuts), by layer name; none for VGG.
  template <class V>
  void visit_channel_maps(V&& v) {
    if constexpr (HasChannelMaps<Body>) body_.visit_channel_maps(std::forward<V>(v));
  }
  /// He normal convolutions and classifier (at the current widths); BN γ=1, β=0.
  void initialize(rng& r) { body_.initialize(r); }
  /// After a split replaced parameter tensors: every layer adopts its new widths.
  void sync_widths() { body_.sync_widths(); }
  std::int64_t mult_adds_per_image() const { return body_.mult_adds_per_image(); }
  /// Split structure: the body's (models/structure.hpp derives the sites from it).
  template <class W>
  void describe_sites(W& w, const std::string& prefix) { body_.describe_sites(w, prefix); }

  Body& body() { return body_; }
  const Body& body() const { return body_; }

 protected:
  /// Checkpoints' tail of the architecture string: scalar type and width.
  std::string architecture_tail() const {
    return std::string(" scalar=") + (sizeof(scalar_type) == 4 ? "f32" : "f64") + width_.suffix();
  }

  Body body_;
  width_multiplier width_;
};

}  // namespace netsplit
