// netsplit/layers/residual.hpp — the basic residual block of CIFAR ResNets:
// out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), conv1 3x3 with the stride,
// conv2 3x3 stride 1. The shortcut is the identity when width and spatial size are kept,
// else the policy's (shortcut_a or shortcut_b). Members are named, not numbered.
// Spec basic_block<Out, Stride, Shortcut> models LayerSpec; basic_block_layer models
// Layer, HasParameters, HasBuffers, Initializable and CountsMultAdds.
#pragma once

#include <string>
#include <type_traits>

#include "netsplit/layers/batch_norm.hpp"
#include "netsplit/layers/conv2d.hpp"
#include "netsplit/layers/shortcut.hpp"

namespace netsplit {

template <class T, class B, fmap_shape In, int Out, int Stride, class Shortcut>
class basic_block_layer : public layer_base<T, B, In, conv2d_layer<T, B, In, Out, 3, Stride, 1>::output_shape> {
 public:
  using conv1_type = conv2d_layer<T, B, In, Out, 3, Stride, 1>;
  static constexpr fmap_shape mid_shape = conv1_type::output_shape;
  using bn1_type = batch_norm_layer<T, B, mid_shape>;
  using conv2_type = conv2d_layer<T, B, mid_shape, Out, 3, 1, 1>;
  using bn2_type = batch_norm_layer<T, B, mid_shape>;
  static constexpr bool identity = In.channels == Out && Stride == 1;
  using shortcut_type = std::conditional_t<identity, identity_shortcut_layer<T, B, In>,
                                           typename Shortcut::template layer<T, B, In, Out, Stride>>;
  static_assert(shortcut_type::output_shape == mid_shape, "netsplit: shortcut and main path shapes differ");

  int in_channels() const { return conv1.in_channels(); }
  int out_channels() const { return conv2.out_channels(); }

  // bn1 carries the ReLU after it and bn2 the residual sum and final ReLU (fused passes,
  // two fewer activation tensors per block); the arithmetic is the unfused block's.
  // With phase::infer each convolution takes its batch norm folded in, and the ReLU and the
  // residual sum in the same pass (conv2d_layer::forward_folded); no backward follows.
  const tensor<T, B>& forward(typename B::context& ctx, const tensor<T, B>& x, phase p) {
    inferred_ = p == phase::infer;
    if (inferred_) {
      const auto& h = conv1.forward_folded(ctx, x, bn1, nullptr, true);
      const auto& s = shortcut.forward(ctx, x, p);
      return conv2.forward_folded(ctx, h, bn2, &s, true);
    }
    // each batch norm's statistics taken by the convolution before it, where the backend can
    const auto& h = bn1.forward_relu_after(ctx, conv1, x, p);
    const auto& s = shortcut.forward(ctx, x, p);
    const tensor_shape main_path{x.dim(0), conv2.out_channels(), mid_shape.height, mid_shape.width};
    NETSPLIT_EXPECT(s.shape() == main_path, "residual block: shortcut output ", s.shape(),
                    " does not match the main path ", main_path);
    return bn2.forward_relu_after(ctx, conv2, h, p, &s);
  }

  /// The gradients that die with this backward (of the residual sum, and batch norms' input
  /// gradients) live in the context's workspace, which every block borrows in turn.
  const tensor<T, B>& backward(typename B::context& ctx, const tensor<T, B>& dy, bool input_grad = true) {
    NETSPLIT_EXPECT(!inferred_, "residual block: backward after a phase::infer forward (use phase::eval)");
    detail::expect_grad(dy, bn2.output(), "residual block");
    dy_ = &dy;
    auto& dsum = ctx.workspace().template get<T, B>(workspace_sum);
    auto& dbn = ctx.workspace().template get<T, B>(workspace_bn);
    // bn2 differentiates the final ReLU too, storing the residual sum's gradient in dsum in
    // the pass that takes its sums; then the shortcut: conv1's input gradient adds its
    // gradient in its own pass (no separate sum); dsum lives until then (the identity
    // shortcut returns it), dbn holds bn2's input gradient until conv2 has read it, then bn1's
    const auto& dbn2 = bn2.backward_add_relu(ctx, dy, dsum, true, &dbn);
    const auto& dshort = shortcut.backward(ctx, dsum, input_grad);
    const auto& d2 = conv2.backward(ctx, dbn2);
    return conv1.backward(ctx, bn1.backward_relu(ctx, d2, true, &dbn), input_grad, input_grad ? &dshort : nullptr);
  }
  /// The workspace slots this block borrows during its backward.
  static constexpr int workspace_sum = 0, workspace_bn = 1;

  /// Output of the last forward and the gradient its last backward received (TPM signals).
  const tensor<T, B>& output() const { return inferred_ ? conv2.output() : bn2.output(); }
  const tensor<T, B>* output_grad() const { return dy_; }
  /// The first ReLU's output (fused into bn1) and the gradient it received (TPM signals).
  const tensor<T, B>& inner_output() const { return inferred_ ? conv1.output() : bn1.output(); }
  const tensor<T, B>* inner_output_grad() const { return bn1.output_grad(); }

  /// Adopts widths from the members' tensors after a split replaced them.
  void sync_widths() {
    conv1.sync_widths();
    bn1.sync_widths();
    conv2.sync_widths();
    bn2.sync_widths();
    if constexpr (requires { shortcut.sync_widths(); }) shortcut.sync_widths();
  }

  /// Width multiplier (layers/layer.hpp): both convolutions round(Out x m), the shortcut
  /// from the stream's width to theirs.
  void scale_widths(double m, int& stream) {
    int through_shortcut = stream;
    conv1.scale_widths(m, stream);
    bn1.scale_widths(m, stream);
    conv2.scale_widths(m, stream);
    bn2.scale_widths(m, stream);
    shortcut.scale_widths(m, through_shortcut);
    NETSPLIT_EXPECT(through_shortcut == stream, "residual block: the shortcut gives ", through_shortcut,
                    " channels at width multiplier ", m, ", the main path ", stream);
  }

  void visit_parameters(parameter_visitor<T, B> v) {
    auto prefixed = [&](const char* p) {
      return [&v, p](const std::string& n, tensor<T, B>& w, tensor<T, B>& g) { v(std::string(p) + n, w, g); };
    };
    conv1.visit_parameters(prefixed("conv1."));
    bn1.visit_parameters(prefixed("bn1."));
    conv2.visit_parameters(prefixed("conv2."));
    bn2.visit_parameters(prefixed("bn2."));
    if constexpr (HasParameters<shortcut_type>) shortcut.visit_parameters(prefixed("shortcut."));
  }
  void visit_buffers(buffer_visitor<T, B> v) {
    auto prefixed = [&](const char* p) {
      return [&v, p](const std::string& n, tensor<T, B>& b) { v(std::string(p) + n, b); };
    };
    bn1.visit_buffers(prefixed("bn1."));
    bn2.visit_buffers(prefixed("bn2."));
    if constexpr (HasBuffers<shortcut_type>) shortcut.visit_buffers(prefixed("shortcut."));
  }
  template <class V>
  void visit_channel_maps(V&& v) {
    if constexpr (HasChannelMaps<shortcut_type>)
      shortcut.visit_channel_maps([&v](const std::string& n, const channel_map& m) { v(n.empty() ? std::string("shortcut") : "shortcut." + n, m); });
  }
  void initialize(rng& r) {
    conv1.initialize(r);
    bn1.initialize(r);
    conv2.initialize(r);
    bn2.initialize(r);
    if constexpr (Initializable<shortcut_type>) shortcut.initialize(r);
  }
  std::int64_t mult_adds_per_image() const {
    std::int64_t m = conv1.mult_adds_per_image() + conv2.mult_adds_per_image();
    if constexpr (CountsMultAdds<shortcut_type>) m += shortcut.mult_adds_per_image();
    return m;
  }

  /// Split role: conv1/bn1 -> conv2 is a site of its own (filters of conv1, tapped at the
  /// first ReLU); the block consumes the open stream through conv1 and its shortcut; a
  /// shortcut that changes width or size opens the next stream; conv2/bn2 produce the
  /// stream's channels, tapped at the block's output.
  template <class W>
  void describe_sites(W& w, const std::string& p) {
    w.inner_site(p + "conv1", p + "conv1.weight", {p + "bn1.weight", p + "bn1.bias"},
                 {p + "bn1.running_mean", p + "bn1.running_var"}, {0.0, 1.0}, {p + "conv2.weight"},
                 [this] { return &inner_output(); }, [this] { return inner_output_grad(); },
                 [this] { return conv1.input(); });
    w.consume(p + "conv1.weight");
    shortcut.describe_input(w, p + "shortcut.");
    if constexpr (!identity) {
      w.open_stream();
      shortcut.describe_output(w, p + "shortcut.");
    }
    w.produce_weight(p + "conv2.weight", [this] { return conv2.input(); });
    bn2.describe_sites(w, p + "bn2.");
    w.tap([this] { return &output(); }, [this] { return output_grad(); });
  }

  conv1_type conv1;
  bn1_type bn1;
  conv2_type conv2;
  bn2_type bn2;
  shortcut_type shortcut;

 private:
  const tensor<T, B>* dy_ = nullptr;
  bool inferred_ = false;
};

/// Basic residual block spec: Out channels, first conv with Stride, shortcut policy.
template <int Out, int Stride, ShortcutPolicy Shortcut = shortcut_a>
struct basic_block {
  static_assert(Out > 0 && Stride > 0, "netsplit: basic_block needs positive width and stride");
  static constexpr const char* kind = "basic_block";
  /// Spatial size must divide by the stride; option A also needs Out >= input width.
  static constexpr bool accepts(fmap_shape in) {
    const bool same = in.channels == Out && Stride == 1;
    return in.channels > 0 && in.height % Stride == 0 && in.width % Stride == 0 &&
           in.height >= Stride && (same || Shortcut::accepts(in, Out, Stride));
  }
  static constexpr fmap_shape output_shape(fmap_shape in) {
    return {Out, window_output(in.height, 3, Stride, 1), window_output(in.width, 3, Stride, 1)};
  }
  template <class T, class B, fmap_shape In>
  using layer = basic_block_layer<T, B, In, Out, Stride, Shortcut>;
};

}  // namespace netsplit
