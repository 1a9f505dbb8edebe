// netsplit/layers/layer.hpp — the layer concepts and the shape rules of composition.
// Defines LayerSpec (a type placed in a composition; says which input shapes it accepts
// and what it outputs, at compile time), Layer (a spec bound to scalar, backend and input
// shape: forward/backward on runtime tensors) and the optional capabilities
// HasParameters, HasBuffers, Initializable and CountsMultAdds.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

#include "netsplit/backend/backend.hpp"
#include "netsplit/core/errors.hpp"
#include "netsplit/core/function_ref.hpp"
#include "netsplit/core/random.hpp"
#include "netsplit/core/shape.hpp"
#include "netsplit/core/tensor.hpp"

namespace netsplit {

/// Whether a forward pass trains (batch statistics, caches for backward) or evaluates.
/// `infer` computes what `eval` does, without backward: layers may then fuse (a residual
/// block folds its batch norms into its convolutions and runs each convolution, batch norm,
/// residual sum and ReLU as one pass), and a backward after it throws contract_violation.
/// Results agree with `eval` to rounding (the folded weights round differently).
enum class phase { train, eval, infer };

/// A composition element. Requires constexpr `accepts(fmap_shape)` (can this layer take an
/// input of that shape?), `output_shape(fmap_shape)` (shape it produces) and a member
/// template `layer<T, B, In>` naming the concrete layer for scalar T, backend B, input In.
template <class S>
concept LayerSpec = requires(fmap_shape s) {
  { S::accepts(s) } -> std::same_as<bool>;
  { S::output_shape(s) } -> std::same_as<fmap_shape>;
  { S::kind } -> std::convertible_to<const char*>;
};

/// Archetypes used to check the visitor-taking capabilities.
namespace detail {
template <class T, class B>
struct parameter_visitor_archetype {
  void operator()(const std::string&, tensor<T, B>&, tensor<T, B>&) const {}
};
template <class T, class B>
struct buffer_visitor_archetype {
  void operator()(const std::string&, tensor<T, B>&) const {}
};
}  // namespace detail

/// What composite layers (sequential, residual block, option-B shortcut, classifier) take
/// their visitors as: any callable of the archetype's signature converts to it, and the
/// composite's walk is compiled once per composite type, not once per caller's lambda
/// (core/function_ref.hpp). Leaf layers take the visitor as a template parameter.
template <class T, class B>
using parameter_visitor = function_ref<void(const std::string&, tensor<T, B>&, tensor<T, B>&)>;
template <class T, class B>
using buffer_visitor = function_ref<void(const std::string&, tensor<T, B>&)>;

/// The types and shapes every concrete layer declares for Layer, in one place: a layer
/// derives from layer_base<T, B, In, Out>. Inside a layer, name its own template
/// parameters (T, B, In) and `typename B::context`: members of a dependent base are not
/// found by unqualified lookup.
template <class T, class B, fmap_shape In, fmap_shape Out>
struct layer_base {
  using scalar_type = T;
  using backend_type = B;
  using context_type = typename B::context;
  static constexpr fmap_shape input_shape = In;
  static constexpr fmap_shape output_shape = Out;
};

/// A concrete layer. forward(ctx, x, phase) returns a reference to the layer's own output
/// (valid until the next forward) and remembers x, which must stay alive until backward;
/// backward(ctx, dy, input_grad) returns dL/dx (or an empty tensor when input_grad is false)
/// and overwrites the layer's parameter gradients. Widths are runtime values that start
/// at the static input/output shape's channels.
template <class L>
concept Layer = requires(L& l, const L& cl, typename L::backend_type::context& ctx,
                         const tensor<typename L::scalar_type, typename L::backend_type>& t,
                         phase p) {
  typename L::scalar_type;
  typename L::backend_type;
  requires Backend<typename L::backend_type, typename L::scalar_type>;
  { L::input_shape } -> std::convertible_to<fmap_shape>;
  { L::output_shape } -> std::convertible_to<fmap_shape>;
  { l.forward(ctx, t, p) } -> std::same_as<const tensor<typename L::scalar_type, typename L::backend_type>&>;
  { l.backward(ctx, t, true) } -> std::same_as<const tensor<typename L::scalar_type, typename L::backend_type>&>;
  { cl.in_channels() } -> std::same_as<int>;
  { cl.out_channels() } -> std::same_as<int>;
};

/// Capability: trainable parameters, visited as (name, value, gradient).
template <class L>
concept HasParameters = Layer<L> && requires(L& l) {
  l.visit_parameters(detail::parameter_visitor_archetype<typename L::scalar_type, typename L::backend_type>{});
};

/// Capability: non-trainable state that belongs in checkpoints (BN running statistics).
template <class L>
concept HasBuffers = Layer<L> && requires(L& l) {
  l.visit_buffers(detail::buffer_visitor_archetype<typename L::scalar_type, typename L::backend_type>{});
};

/// A fixed channel map (the generalised option-A shortcut, layers/shortcut.hpp): after
/// subsampling by `stride`, output channel dst[k] += coef[k] * input channel src[k]. Not a
/// parameter: split replay rebuilds it; checkpoints record it for tools outside netsplit.
struct channel_map {
  int in_channels = 0, out_channels = 0, stride = 1;
  std::vector<int> src, dst;
  std::vector<double> coef;
  bool operator==(const channel_map&) const = default;
};

namespace detail {
struct channel_map_visitor_archetype {
  void operator()(const std::string&, const channel_map&) const {}
};
}  // namespace detail

/// Capability: fixed channel maps, visited as (name, map).
template <class L>
concept HasChannelMaps = Layer<L> && requires(L& l) { l.visit_channel_maps(detail::channel_map_visitor_archetype{}); };

/// Capability: (re)initialises its parameters from a seeded generator.
template <class L>
concept Initializable = Layer<L> && requires(L& l, rng& r) { l.initialize(r); };

/// Capability: reports forward multiply-adds per image at its current widths.
template <class L>
concept CountsMultAdds = Layer<L> && requires(const L& l) {
  { l.mult_adds_per_image() } -> std::same_as<std::int64_t>;
};

/// Split roles. A layer that can be split through declares its role to the structure
/// walker of models/structure.hpp (a template parameter: layers do not depend on models):
///   template <class W> void describe_sites(W& w, const std::string& prefix);
/// calling w.consume(weight) (reads the open stream's channels on axis 1),
/// w.open_stream(), w.produce_weight / produce_params / produce_buffers (channel j of the
/// open stream is slice j of these), w.consume_structural / produce_structural (width
/// changes without tensors), w.tap(activation, gradient) (where metrics read the stream),
/// w.inner_site(...) (a site wholly inside a composite) and w.close_stream(). Parameter
/// names are prefix + the names visit_parameters gives.

/// Width multipliers. A model built at multiplier m gives every convolution round(nominal
/// width x m) filters (at least 1; scaled_width) and its classifier the classes it has.
/// Layers whose widths follow take them from the stream through them:
///   void scale_widths(double m, int& stream);
/// `stream` is the current width of the layer's input; on return, that of its output.
/// Parameters are reshaped and reset (initialize() fills them in afterwards).
inline int scaled_width(int nominal, double m) {
  const double w = static_cast<double>(nominal) * m;
  return w < 1.0 ? 1 : static_cast<int>(w + 0.5);
}

/// True when layer spec S can follow a layer producing shape In.
template <class S, fmap_shape In>
concept ComposableWith = LayerSpec<S> && S::accepts(In);

namespace detail {
/// Shared input checks of every layer: rank 4, batch > 0, static spatial size, current width.
template <class T, class B>
void expect_input(const tensor<T, B>& x, fmap_shape in, int channels, const char* layer) {
  NETSPLIT_EXPECT(x.rank() == 4, layer, " expects an NCHW tensor of rank 4, got shape ", x.shape());
  NETSPLIT_EXPECT(x.dim(0) > 0, layer, " got an empty batch (shape ", x.shape(), ")");
  NETSPLIT_EXPECT(x.dim(2) == in.height && x.dim(3) == in.width, layer, " expects spatial size ",
                  in.height, "x", in.width, ", got ", x.dim(2), "x", x.dim(3), " (shape ", x.shape(), ")");
  NETSPLIT_EXPECT(x.dim(1) == channels, layer, " expects ", channels, " input channels, got ",
                  x.dim(1), " (shape ", x.shape(), ")");
}
template <class T, class B>
void expect_grad(const tensor<T, B>& dy, const tensor<T, B>& y, const char* layer) {
  NETSPLIT_EXPECT(dy.shape() == y.shape(), layer, " backward expects a gradient of shape ",
                  y.shape(), " (its forward output), got ", dy.shape());
}
template <class P>
bool has_input(const P* p, const char* layer) {
  NETSPLIT_EXPECT(p != nullptr, layer, " backward called before forward");
  return true;
}
}  // namespace detail

}  // namespace netsplit
