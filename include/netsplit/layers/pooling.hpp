// netsplit/layers/pooling.hpp — global average pooling: [N, C, H, W] -> [N, C, 1, 1].
// Spec global_avg_pool models LayerSpec; global_avg_pool_layer models Layer.
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

  /// Split role: passes channels through unchanged.
  template <class W>
  void describe_sites(W&, const std::string&) {}
 private:
  int c_ = In.channels;
  tensor_shape in_shape_{};
  tensor<T, B> out_, dx_;
};

struct global_avg_pool {
  static constexpr const char* kind = "global_avg_pool";
  static constexpr bool accepts(fmap_shape in) { return in.channels > 0 && in.height > 0 && in.width > 0; }
  static constexpr fmap_shape output_shape(fmap_shape in) { return {in.channels, 1, 1}; }
  template <class T, class B, fmap_shape In>
  using layer = global_avg_pool_layer<T, B, In>;
};

}  // namespace netsplit
