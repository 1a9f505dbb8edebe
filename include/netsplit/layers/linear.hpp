// netsplit/layers/linear.hpp — fully connected layer with bias on a 1x1 feature map.
// Accepts only a 1x1 spatial input (put global_avg_pool before it): composing it after a
// layer with a larger spatial output fails to compile. Output is [N, Out, 1, 1].
// Spec linear<Out> models LayerSpec; linear_layer models Layer, HasParameters, Initializable.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "netsplit/layers/layer.hpp"

namespace netsplit {

template <class T, class B, fmap_shape In, int Out>
class linear_layer : public layer_base<T, B, In, (fmap_shape{Out, 1, 1})> {
 public:

  linear_layer() { set_in_width(In.channels); }

  int in_channels() const { return in_; }
  int out_channels() const { return Out; }

  /// Sets the current input width; weights are reshaped and zeroed, bias zeroed.
  void set_in_width(int in) {
    NETSPLIT_EXPECT(in > 0, "linear input width must be positive, got ", in);
    in_ = in;
    weight_.resize({Out, in});
    dweight_.resize(weight_.shape());
    bias_.resize({Out});
    dbias_.resize({Out});
    for (auto* t : {&weight_, &dweight_, &bias_, &dbias_}) t->fill(T(0));
  }

  /// Width multiplier (layers/layer.hpp): reads the stream's channels; the classes stay.
  void scale_widths(double, int& stream) {
    set_in_width(stream);
    stream = Out;
  }

  /// Adopts the input width of the current weight after a split replaced it (values kept).
  void sync_widths() {
    NETSPLIT_EXPECT(weight_.rank() == 2 && weight_.dim(0) == Out && bias_.numel() == Out,
                    "linear weight must be [", Out, ", in] with ", Out, " biases, got ", weight_.shape());
    in_ = static_cast<int>(weight_.dim(1));
    dweight_.resize(weight_.shape());
    dweight_.fill(T(0));
    dbias_.fill(T(0));
  }

  /// He normal weights (std = sqrt(2 / in)), zero bias.
  void initialize(rng& r) {
    const double std = std::sqrt(2.0 / in_);
    std::vector<T> w(static_cast<std::size_t>(weight_.numel()));
    for (auto& v : w) v = static_cast<T>(r.normal() * std);
    weight_.from_host(w);
    bias_.fill(T(0));
  }

  const tensor<T, B>& forward(typename B::context& ctx, const tensor<T, B>& x, phase) {
    detail::expect_input(x, In, in_, "linear");
    input_ = &x;
    const int n = static_cast<int>(x.dim(0));
    out_.resize({n, Out, 1, 1});
    B::linear_forward(ctx, n, in_, Out, x.data(), weight_.data(), bias_.data(), out_.data());
    return out_;
  }
  const tensor<T, B>& backward(typename B::context& ctx, const tensor<T, B>& dy, bool input_grad = true) {
    detail::has_input(input_, "linear");
    detail::expect_grad(dy, out_, "linear");
    if (input_grad) dx_.resize(input_->shape());
    B::linear_backward(ctx, static_cast<int>(dy.dim(0)), in_, Out, input_->data(), weight_.data(),
                       dy.data(), input_grad ? dx_.data() : nullptr, dweight_.data(), dbias_.data());
    if (!input_grad) dx_.resize({});
    return dx_;
  }

  template <class V>
  void visit_parameters(V&& v) {
    v(std::string("weight"), weight_, dweight_);
    v(std::string("bias"), bias_, dbias_);
  }

  tensor<T, B>& weight() { return weight_; }
  tensor<T, B>& bias() { return bias_; }

  /// Split role: the classifier consumes the open stream (input feature j is channel j)
  /// and ends it.
  template <class W>
  void describe_sites(W& w, const std::string& prefix) {
    w.consume(prefix + "weight");
    w.close_stream();
  }
 private:
  int in_ = 0;
  tensor<T, B> weight_, dweight_, bias_, dbias_, out_, dx_;
  const tensor<T, B>* input_ = nullptr;
};

template <int Out>
struct linear {
  static_assert(Out > 0, "netsplit: linear needs a positive output count");
  static constexpr const char* kind = "linear";
  /// Only a 1x1 feature map: a linear layer directly after a convolution is a shape error.
  static constexpr bool accepts(fmap_shape in) { return in.channels > 0 && in.height == 1 && in.width == 1; }
  static constexpr fmap_shape output_shape(fmap_shape) { return {Out, 1, 1}; }
  template <class T, class B, fmap_shape In>
  using layer = linear_layer<T, B, In, Out>;
};

}  // namespace netsplit
