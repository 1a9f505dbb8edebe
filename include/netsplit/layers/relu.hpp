// netsplit/layers/relu.hpp — rectified linear unit, y = max(x, 0).
// Spec relu models LayerSpec; relu_layer models Layer. Width-agnostic: it takes whatever
// channel count the layer before it currently has.
#pragma once

#include "netsplit/layers/layer.hpp"

namespace netsplit {

template <class T, class B, fmap_shape In>
class relu_layer : public layer_base<T, B, In, In> {
 public:

  int in_channels() const { return c_; }
  int out_channels() const { return c_; }

  const tensor<T, B>& forward(typename B::context& ctx, const tensor<T, B>& x, phase) {
    detail::expect_input(x, In, static_cast<int>(x.rank() == 4 ? x.dim(1) : 0), "relu");
    c_ = static_cast<int>(x.dim(1));
    out_.resize(x.shape());
    B::relu_forward(ctx, x.numel(), x.data(), out_.data());
    has_output_ = true;
    adopted_ = nullptr;
    return out_;
  }
  /// Width multiplier (layers/layer.hpp): the stream passes unchanged.
  void scale_widths(double, int& stream) { c_ = stream; }
  /// Takes y, computed by the layer before with this ReLU folded in (a phase::infer
  /// forward, e.g. resnet's stem), as its output: output() returns it until the next
  /// forward; no backward follows.
  void adopt_folded(const tensor<T, B>& y) { adopt(y, false); }
  /// Takes y = max(bn(x), 0), computed in training or evaluation by the batch norm before
  /// with this ReLU fused in (sequential_layer: batch_norm_layer::forward_relu), as its
  /// output; the batch norm differentiates through it (backward_relu) after backward_fused
  /// below has recorded the gradient. No tensor of its own is written either way.
  void adopt_fused(const tensor<T, B>& y) { adopt(y, true); }
  /// The gradient dL/dy of a fused forward, differentiated by the batch norm before (which
  /// masks it by y > 0 where it reads it): only recorded here, as backward would (TPM signals).
  void backward_fused(const tensor<T, B>& dy) {
    NETSPLIT_EXPECT(!adopted_ || trainable_, "relu: backward after a phase::infer forward (use phase::eval)");
    NETSPLIT_EXPECT(adopted_, "relu: fused backward without a fused forward (batch norm + ReLU)");
    detail::expect_grad(dy, *adopted_, "relu");
    dy_ = &dy;
  }
  /// After a fused forward (adopt_fused) this computes the same from the adopted output.
  const tensor<T, B>& backward(typename B::context& ctx, const tensor<T, B>& dy, bool input_grad = true) {
    NETSPLIT_EXPECT(!adopted_ || trainable_, "relu: backward after a phase::infer forward (use phase::eval)");
    NETSPLIT_EXPECT(has_output_ || adopted_, "relu backward called before forward");
    const tensor<T, B>& y = output();
    detail::expect_grad(dy, y, "relu");
    dy_ = &dy;
    if (!input_grad) {
      dx_.resize({});
      return dx_;
    }
    dx_.resize(dy.shape());
    B::relu_backward(ctx, dy.numel(), y.data(), dy.data(), dx_.data());
    return dx_;
  }

  /// Output of the last forward and the gradient its last backward received (TPM signals).
  const tensor<T, B>& output() const { return adopted_ ? *adopted_ : out_; }
  const tensor<T, B>* output_grad() const { return dy_; }

  /// Split role: where metrics read the open stream's activations and their gradients.
  template <class W>
  void describe_sites(W& w, const std::string&) {
    w.tap([this] { return &output(); }, [this] { return output_grad(); });
  }
 private:
  void adopt(const tensor<T, B>& y, bool trainable) {
    detail::expect_input(y, In, static_cast<int>(y.rank() == 4 ? y.dim(1) : 0), "relu");
    c_ = static_cast<int>(y.dim(1));
    adopted_ = &y;
    trainable_ = trainable;
    has_output_ = false;
  }
  int c_ = In.channels;
  bool has_output_ = false;
  const tensor<T, B>* adopted_ = nullptr;  // the output of a folded or fused forward
  bool trainable_ = false;                  // adopted_ came from a fused forward (not phase::infer)
  tensor<T, B> out_, dx_;
  const tensor<T, B>* dy_ = nullptr;
};

struct relu {
  static constexpr const char* kind = "relu";
  static constexpr bool accepts(fmap_shape in) { return in.channels > 0 && in.height > 0 && in.width > 0; }
  static constexpr fmap_shape output_shape(fmap_shape in) { return in; }
  template <class T, class B, fmap_shape In>
  using layer = relu_layer<T, B, In>;
};

}  // namespace netsplit
