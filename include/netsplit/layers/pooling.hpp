// netsplit/layers/pooling.hpp — global average pooling: [N, C, H, W] -> [N, C, 1, 1], and
// 2x2 max pooling with stride 2: [N, C, H, W] -> [N, C, H/2, W/2] (H, W even).
// Specs global_avg_pool, max_pool2x2 model LayerSpec; their layers model Layer. Both take
// whatever channel count the layer before them currently has, and pass channels through
// unchanged (their split role).
#pragma once

#include "netsplit/layers/layer.hpp"

namespace netsplit {

template <class T, class B, fmap_shape In>
class global_avg_pool_layer : public layer_base<T, B, In, (fmap_shape{In.channels, 1, 1})> {
 public:

  int in_channels() const { return c_; }
  int out_channels() const { return c_; }

  const tensor<T, B>& forward(typename B::context& ctx, const tensor<T, B>& x, phase) {
    detail::expect_input(x, In, static_cast<int>(x.rank() == 4 ? x.dim(1) : 0), "global_avg_pool");
    c_ = static_cast<int>(x.dim(1));
    in_shape_ = x.shape();
    out_.resize({x.dim(0), x.dim(1), 1, 1});
    B::global_avg_pool_forward(ctx, x.dim(0) * x.dim(1), static_cast<int>(In.spatial()), x.data(),
                               out_.data());
    return out_;
  }
  const tensor<T, B>& backward(typename B::context& ctx, const tensor<T, B>& dy, bool input_grad = true) {
    NETSPLIT_EXPECT(in_shape_.rank() == 4, "global_avg_pool backward called before forward");
    detail::expect_grad(dy, out_, "global_avg_pool");
    if (!input_grad) {
      dx_.resize({});
      return dx_;
    }
    dx_.resize(in_shape_);
    B::global_avg_pool_backward(ctx, dy.numel(), static_cast<int>(In.spatial()), dy.data(), dx_.data());
    return dx_;
  }

  /// Width multiplier (layers/layer.hpp): the stream passes unchanged.
  void scale_widths(double, int& stream) { c_ = stream; }

  /// Split role: passes channels through unchanged.
  template <class W>
  void describe_sites(W&, const std::string&) {}
 private:
  int c_ = In.channels;
  tensor_shape in_shape_{};
  tensor<T, B> out_, dx_;
};

/// Max pooling keeps no index tensor: backward recomputes each window's winner from the
/// input it remembers (max_window_index, backend/descriptors.hpp: of equal values the first
/// in row-major order wins, as in PyTorch), so the input must stay alive until backward,
/// as for every layer.
template <class T, class B, fmap_shape In>
class max_pool2x2_layer : public layer_base<T, B, In, (fmap_shape{In.channels, In.height / 2, In.width / 2})> {
 public:
  int in_channels() const { return c_; }
  int out_channels() const { return c_; }

  const tensor<T, B>& forward(typename B::context& ctx, const tensor<T, B>& x, phase) {
    detail::expect_input(x, In, static_cast<int>(x.rank() == 4 ? x.dim(1) : 0), "max_pool2x2");
    c_ = static_cast<int>(x.dim(1));
    input_ = &x;
    out_.resize({x.dim(0), x.dim(1), In.height / 2, In.width / 2});
    B::max_pool2x2_forward(ctx, x.dim(0) * x.dim(1), In.height, In.width, x.data(), out_.data());
    return out_;
  }
  const tensor<T, B>& backward(typename B::context& ctx, const tensor<T, B>& dy, bool input_grad = true) {
    detail::has_input(input_, "max_pool2x2");
    detail::expect_grad(dy, out_, "max_pool2x2");
    if (!input_grad) {
      dx_.resize({});
      return dx_;
    }
    dx_.resize(input_->shape());
    B::max_pool2x2_backward(ctx, dy.dim(0) * dy.dim(1), In.height, In.width, input_->data(), dy.data(), dx_.data());
    return dx_;
  }
  /// Output of the last forward.
  const tensor<T, B>& output() const { return out_; }

  /// Width multiplier (layers/layer.hpp): the stream passes unchanged.
  void scale_widths(double, int& stream) { c_ = stream; }

  /// Split role: passes channels through unchanged.
  template <class W>
  void describe_sites(W&, const std::string&) {}

 private:
  int c_ = In.channels;
  const tensor<T, B>* input_ = nullptr;
  tensor<T, B> out_, dx_;
};

/// 2x2 max pooling, stride 2; needs even height and width (no partial windows).
struct max_pool2x2 {
  static constexpr const char* kind = "max_pool2x2";
  static constexpr bool accepts(fmap_shape in) {
    return in.channels > 0 && in.height >= 2 && in.width >= 2 && in.height % 2 == 0 && in.width % 2 == 0;
  }
  static constexpr fmap_shape output_shape(fmap_shape in) { return {in.channels, in.height / 2, in.width / 2}; }
  template <class T, class B, fmap_shape In>
  using layer = max_pool2x2_layer<T, B, In>;
};

struct global_avg_pool {
  static constexpr const char* kind = "global_avg_pool";
  static constexpr bool accepts(fmap_shape in) { return in.channels > 0 && in.height > 0 && in.width > 0; }
  static constexpr fmap_shape output_shape(fmap_shape in) { return {in.channels, 1, 1}; }
  template <class T, class B, fmap_shape In>
  using layer = global_avg_pool_layer<T, B, In>;
};

}  // namespace netsplit
