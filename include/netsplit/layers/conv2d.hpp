// netsplit/layers/conv2d.hpp — 2-D convolution without bias (BatchNorm follows it).
// Spec conv2d<OutChannels, Kernel, Stride, Pad> models LayerSpec; conv2d_layer models
// Layer, HasParameters, Initializable and CountsMultAdds. The type fixes the initial
// output width; the object holds the current widths, which splits change.
#pragma once

#include <cmath>
#include <string>

#include "netsplit/layers/layer.hpp"

namespace netsplit {

template <class T, class B, fmap_shape In, int OutChannels, int Kernel, int Stride, int Pad>
class conv2d_layer : public layer_base<T, B, In, (fmap_shape{OutChannels, window_output(In.height, Kernel, Stride, Pad), window_output(In.width, Kernel, Stride, Pad)})> {
 public:
  static constexpr int kernel = Kernel, stride = Stride, pad = Pad;

  conv2d_layer() { set_widths(In.channels, OutChannels); }

  int in_channels() const { return in_c_; }
  int out_channels() const { return out_c_; }

  /// Sets the current widths; weights are reshaped and zeroed (splits fill them in).
  void set_widths(int in, int out) {
    NETSPLIT_EXPECT(in > 0 && out > 0, "conv2d widths must be positive, got in=", in, " out=", out);
    in_c_ = in;
    out_c_ = out;
    weight_.resize({out, in, Kernel, Kernel});
    weight_.fill(T(0));
    grad_.resize(weight_.shape());
    grad_.fill(T(0));
  }

  /// Adopts the widths of the current weight tensor after a split replaced it (weights are
  /// kept; the gradient is reshaped and zeroed).
  void sync_widths() {
    NETSPLIT_EXPECT(weight_.rank() == 4 && weight_.dim(2) == Kernel && weight_.dim(3) == Kernel,
                    "conv2d weight must be [out, in, ", Kernel, ", ", Kernel, "], got ", weight_.shape());
    out_c_ = static_cast<int>(weight_.dim(0));
    in_c_ = static_cast<int>(weight_.dim(1));
    grad_.resize(weight_.shape());
    grad_.fill(T(0));
  }

  /// Width multiplier (layers/layer.hpp): reads `stream` channels, produces round(OutChannels x m).
  void scale_widths(double m, int& stream) {
    set_widths(stream, scaled_width(OutChannels, m));
    stream = out_c_;
  }

  /// dL/dx of the last backward (plus its dx_add; empty if it was not requested).
  const tensor<T, B>& input_grad() const { return dx_; }

  /// He (Kaiming) normal initialisation, fan-in mode: std = sqrt(2 / (in * k * k)).
  void initialize(rng& r) {
    const double std = std::sqrt(2.0 / (double(in_c_) * Kernel * Kernel));
    std::vector<T> w(static_cast<std::size_t>(weight_.numel()));
    for (auto& v : w) v = static_cast<T>(r.normal() * std);
    weight_.from_host(w);
  }

  const tensor<T, B>& forward(typename B::context& ctx, const tensor<T, B>& x, phase) {
    detail::expect_input(x, In, in_c_, "conv2d");
    input_ = &x;
    const auto d = desc(static_cast<int>(x.dim(0)));
    out_.resize({x.dim(0), out_c_, this->output_shape.height, this->output_shape.width});
    B::conv2d_forward(ctx, d, x.data(), weight_.data(), out_.data());
    return out_;
  }

  /// forward, and the shifted sums of the output per output channel, s1[m] = sum(y - shift[m])
  /// and s2[m] = sum((y - shift[m])^2) about shift[m], one of channel m's values (written
  /// here), taken as the output is stored (B::conv2d_forward_sums;
  /// batch_norm_layer::forward_relu_after calls it).
  const tensor<T, B>& forward_summed(typename B::context& ctx, const tensor<T, B>& x, phase, T* shift, double* s1,
                                     double* s2)
    requires ConvWithSums<B, T>
  {
    detail::expect_input(x, In, in_c_, "conv2d");
    input_ = &x;
    const auto d = desc(static_cast<int>(x.dim(0)));
    out_.resize({x.dim(0), out_c_, this->output_shape.height, this->output_shape.width});
    B::conv2d_forward_sums(ctx, d, x.data(), weight_.data(), out_.data(), shift, s1, s2);
    return out_;
  }

  /// Inference through this convolution and the eval-mode batch norm `bn` after it, folded:
  /// out = conv(x, w * scale) + shift (+ *r) (then max(., 0) with relu), one pass over the
  /// output (B::batch_norm_fold, B::conv2d_forward_affine). No backward follows; the layer
  /// forgets its input.
  template <class BatchNorm>
  const tensor<T, B>& forward_folded(typename B::context& ctx, const tensor<T, B>& x, BatchNorm& bn,
                                     const tensor<T, B>* r, bool relu) {
    detail::expect_input(x, In, in_c_, "conv2d");
    NETSPLIT_EXPECT(bn.gamma().numel() == out_c_, "conv2d: the folded batch norm has ", bn.gamma().numel(),
                    " channels, the convolution ", out_c_);
    input_ = nullptr;
    const auto d = desc(static_cast<int>(x.dim(0)));
    out_.resize({x.dim(0), out_c_, this->output_shape.height, this->output_shape.width});
    NETSPLIT_EXPECT(!r || r->shape() == out_.shape(), "conv2d: residual ", r ? r->shape() : out_.shape(),
                    " does not match the output ", out_.shape());
    folded_.resize(weight_.shape());
    shift_.resize({out_c_});
    B::batch_norm_fold(ctx, bn.desc(d.batch), weight_.numel() / out_c_, weight_.data(), bn.gamma().data(),
                       bn.beta().data(), bn.running_mean().data(), bn.running_var().data(), folded_.data(),
                       shift_.data());
    B::conv2d_forward_affine(ctx, d, x.data(), folded_.data(), shift_.data(), r ? r->data() : nullptr, relu,
                             out_.data());
    return out_;
  }

  /// With dx_add (shaped like the input), the returned gradient is dL/dx + dx_add, summed in
  /// the convolution's own pass (a residual block's shortcut gradient); input_grad() too.
  const tensor<T, B>& backward(typename B::context& ctx, const tensor<T, B>& dy, bool input_grad = true,
                               const tensor<T, B>* dx_add = nullptr) {
    detail::has_input(input_, "conv2d");
    detail::expect_grad(dy, out_, "conv2d");
    const auto d = desc(static_cast<int>(dy.dim(0)));
    if (input_grad) dx_.resize(input_->shape());
    NETSPLIT_EXPECT(!dx_add || !input_grad || dx_add->shape() == input_->shape(), "conv2d backward: dx_add has shape ",
                    dx_add->shape(), ", the input ", input_->shape());
    B::conv2d_backward(ctx, d, input_->data(), weight_.data(), dy.data(), input_grad ? dx_.data() : nullptr,
                       grad_.data(), input_grad && dx_add ? dx_add->data() : nullptr);
    if (!input_grad) dx_.resize({});
    return dx_;
  }

  template <class V>
  void visit_parameters(V&& v) {
    v(std::string("weight"), weight_, grad_);
  }

  std::int64_t mult_adds_per_image() const { return desc(1).mult_adds(); }

  conv2d_desc desc(int batch) const {
    return {batch, in_c_, out_c_, In.height, In.width, Kernel, Stride, Pad};
  }

  /// Output of the last forward.
  const tensor<T, B>& output() const { return out_; }
  /// Input of the last training forward (nullptr before one, or after a folded inference).
  const tensor<T, B>* input() const { return input_; }
  tensor<T, B>& weight() { return weight_; }
  const tensor<T, B>& weight() const { return weight_; }
  tensor<T, B>& weight_grad() { return grad_; }

  /// Split role: consumes the open stream's channels (the network input for a first
  /// convolution) and opens a new stream whose filters are this layer's output channels.
  template <class W>
  void describe_sites(W& w, const std::string& prefix) {
    w.consume(prefix + "weight", /*input_ok=*/true);
    w.open_stream(prefix.empty() ? prefix : prefix.substr(0, prefix.size() - 1));
    w.produce_weight(prefix + "weight", [this] { return input_; });
  }
 private:
  int in_c_ = 0, out_c_ = 0;
  tensor<T, B> weight_, grad_, out_, dx_, folded_, shift_;
  const tensor<T, B>* input_ = nullptr;
};

/// Convolution spec: OutChannels filters of Kernel x Kernel, given stride and zero padding.
template <int OutChannels, int Kernel = 3, int Stride = 1, int Pad = (Kernel - 1) / 2>
struct conv2d {
  static_assert(OutChannels > 0 && Kernel > 0 && Stride > 0 && Pad >= 0,
                "netsplit: conv2d needs positive width, kernel and stride and non-negative padding");
  static constexpr const char* kind = "conv2d";
  static constexpr bool accepts(fmap_shape in) {
    return in.channels > 0 && window_output(in.height, Kernel, Stride, Pad) > 0 &&
           window_output(in.width, Kernel, Stride, Pad) > 0;
  }
  static constexpr fmap_shape output_shape(fmap_shape in) {
    return {OutChannels, window_output(in.height, Kernel, Stride, Pad),
            window_output(in.width, Kernel, Stride, Pad)};
  }
  template <class T, class B, fmap_shape In>
  using layer = conv2d_layer<T, B, In, OutChannels, Kernel, Stride, Pad>;
};

template <int OutChannels, int Stride = 1>
using conv3x3 = conv2d<OutChannels, 3, Stride, 1>;
template <int OutChannels, int Stride = 1>
using conv1x1 = conv2d<OutChannels, 1, Stride, 0>;

}  // namespace netsplit
