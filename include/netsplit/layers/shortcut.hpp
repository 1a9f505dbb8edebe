// netsplit/layers/shortcut.hpp — the shortcut policies of a residual block.
// identity_shortcut: same width and stride 1. shortcut_a (He et al. option A): parameter
// free; subsample by the stride and place the input channels among zero channels. It is
// stored as a general channel scatter (output channel target[c] += coef[c] * input c), so
// that a split of the earlier stage (two copies of a channel, each carrying its value)
// can map both copies to one output channel with coefficient 1/2 and keep the function.
// shortcut_b (option B): 1x1 convolution with the stride, then batch norm.
// Each policy P provides P::accepts(in, out, stride) and P::layer<T, B, In, Out, Stride>.
#pragma once

#include <string>
#include <vector>

#include "netsplit/layers/batch_norm.hpp"
#include "netsplit/layers/conv2d.hpp"
#include "netsplit/layers/layer.hpp"

namespace netsplit {

template <class T, class B, fmap_shape In>
class identity_shortcut_layer : public layer_base<T, B, In, In> {
 public:
  int in_channels() const { return c_; }
  int out_channels() const { return c_; }
  const tensor<T, B>& forward(typename B::context&, const tensor<T, B>& x, phase) {
    detail::expect_input(x, In, static_cast<int>(x.rank() == 4 ? x.dim(1) : 0), "identity shortcut");
    c_ = static_cast<int>(x.dim(1));
    return x;
  }
  const tensor<T, B>& backward(typename B::context&, const tensor<T, B>& dy, bool = true) { return dy; }
  /// Width multiplier (layers/layer.hpp): the stream passes unchanged.
  void scale_widths(double, int& stream) { c_ = stream; }

  /// Split role inside a residual block: nothing to widen on either side.
  template <class W>
  void describe_input(W&, const std::string&) {}
  template <class W>
  void describe_output(W&, const std::string&) {}
 private:
  int c_ = In.channels;
};

/// One term of the generalised option-A shortcut: output channel dst += coef * input src.
template <class T>
struct scatter_entry {
  int src = 0, dst = 0;
  T coef = T(1);
  bool operator==(const scatter_entry&) const = default;
};

template <class T, class B, fmap_shape In, int Out, int Stride>
class shortcut_a_layer : public layer_base<T, B, In, (fmap_shape{Out, (In.height - 1) / Stride + 1, (In.width - 1) / Stride + 1})> {
 public:

  /// Initial map: input channel c goes to output channel c + (Out - In)/2 (PyTorch's
  /// reference pads (Out - In)/2 zero channels on each side), coefficient 1.
  shortcut_a_layer() { set_padding_map(In.channels, Out); }

  /// Width multiplier (layers/layer.hpp): the padding map from the stream's width to
  /// round(Out x m) channels.
  void scale_widths(double m, int& stream) {
    set_padding_map(stream, scaled_width(Out, m));
    stream = out_c_;
  }

  int in_channels() const { return in_c_; }
  int out_channels() const { return out_c_; }
  const std::vector<scatter_entry<T>>& entries() const { return entries_; }

  /// Replaces the map; every src must lie in [0, in_channels), every dst in [0, out_channels).
  void set_map(int in_channels, int out_channels, const std::vector<scatter_entry<T>>& entries) {
    NETSPLIT_EXPECT(in_channels > 0 && out_channels > 0, "shortcut_a widths must be positive, got ", in_channels,
                    " -> ", out_channels);
    std::vector<int> src, dst;
    std::vector<T> coef;
    for (std::size_t k = 0; k < entries.size(); ++k) {
      const auto& e = entries[k];
      NETSPLIT_EXPECT(e.src >= 0 && e.src < in_channels, "shortcut_a entry ", k, " reads input channel ", e.src,
                      ", outside [0, ", in_channels, ")");
      NETSPLIT_EXPECT(e.dst >= 0 && e.dst < out_channels, "shortcut_a entry ", k, " writes output channel ", e.dst,
                      ", outside [0, ", out_channels, ")");
      src.push_back(e.src);
      dst.push_back(e.dst);
      coef.push_back(e.coef);
    }
    in_c_ = in_channels;
    out_c_ = out_channels;
    entries_ = entries;
    const auto n = static_cast<std::int64_t>(entries.size());
    src_.resize({n});
    dst_.resize({n});
    coef_.resize({n});
    if (n > 0) {
      src_.from_host(src);
      dst_.from_host(dst);
      coef_.from_host(coef);
    }
  }

  /// The unsplit map: input channel c to output channel c + (out - in) / 2, coefficient 1.
  void set_padding_map(int in, int out) {
    NETSPLIT_EXPECT(out >= in, "shortcut_a cannot map ", in, " channels onto ", out);
    std::vector<scatter_entry<T>> e;
    for (int c = 0; c < in; ++c) e.push_back({c, c + (out - in) / 2, T(1)});
    set_map(in, out, e);
  }

  /// Split support: input channel j gets a copy (new last channel); each entry reading j
  /// keeps `keep` of its coefficient and a new entry reads `copy` of it from the copy, as a
  /// convolution consuming the channel scales its weights (net2wider: 1/2 and 1/2;
  /// random_init: 1 and 0, so a fresh channel adds nothing).
  void duplicate_input(int j, double keep, double copy) {
    NETSPLIT_EXPECT(j >= 0 && j < in_c_, "shortcut_a has no input channel ", j);
    auto e = entries_;
    for (std::size_t k = 0, n = e.size(); k < n; ++k)
      if (e[k].src == j) {
        const T c = e[k].coef;
        e[k].coef = static_cast<T>(c * keep);
        e.push_back({in_c_, e[k].dst, static_cast<T>(c * copy)});
      }
    set_map(in_c_ + 1, out_c_, e);
  }
  /// Split support: output channel j gets a copy (new last channel) with the same sources.
  void duplicate_output(int j) {
    NETSPLIT_EXPECT(j >= 0 && j < out_c_, "shortcut_a has no output channel ", j);
    auto e = entries_;
    for (std::size_t k = 0, n = e.size(); k < n; ++k)
      if (e[k].dst == j) e.push_back({e[k].src, out_c_, e[k].coef});
    set_map(in_c_, out_c_ + 1, e);
  }

  /// The map as a channel_map (checkpoints record it; tools outside netsplit rebuild the
  /// layer from it).
  template <class V>
  void visit_channel_maps(V&& v) {
    channel_map m{in_c_, out_c_, Stride, {}, {}, {}};
    for (const auto& e : entries_) {
      m.src.push_back(e.src);
      m.dst.push_back(e.dst);
      m.coef.push_back(static_cast<double>(e.coef));
    }
    v(std::string{}, m);
  }

  const tensor<T, B>& forward(typename B::context& ctx, const tensor<T, B>& x, phase) {
    detail::expect_input(x, In, in_c_, "shortcut_a");
    const auto d = desc(static_cast<int>(x.dim(0)));
    out_.resize({x.dim(0), out_c_, this->output_shape.height, this->output_shape.width});
    B::channel_scatter_forward(ctx, d, x.data(), src_.data(), dst_.data(), coef_.data(), out_.data());
    return out_;
  }
  const tensor<T, B>& backward(typename B::context& ctx, const tensor<T, B>& dy, bool input_grad = true) {
    detail::expect_grad(dy, out_, "shortcut_a");
    if (!input_grad) {
      dx_.resize({});
      return dx_;
    }
    const auto d = desc(static_cast<int>(dy.dim(0)));
    dx_.resize({dy.dim(0), in_c_, In.height, In.width});
    B::channel_scatter_backward(ctx, d, dy.data(), src_.data(), dst_.data(), coef_.data(), dx_.data());
    return dx_;
  }

  /// Split role inside a residual block: a structural consumer of the input stream and a
  /// structural producer of the output stream (the scatter's channel map widens).
  template <class W>
  void describe_input(W& w, const std::string&) {
    w.consume_structural([this](int j, double keep, double copy) { duplicate_input(j, keep, copy); });
  }
  template <class W>
  void describe_output(W& w, const std::string&) {
    w.produce_structural([this](int j, double, double) { duplicate_output(j); });
  }
 private:
  channel_scatter_desc desc(int batch) const {
    return {batch, in_c_, out_c_, In.height, In.width, Stride, static_cast<int>(entries_.size())};
  }
  int in_c_ = In.channels, out_c_ = Out;
  std::vector<scatter_entry<T>> entries_;
  tensor<int, B> src_, dst_;
  tensor<T, B> coef_, out_, dx_;
};

template <class T, class B, fmap_shape In, int Out, int Stride>
class shortcut_b_layer : public layer_base<T, B, In, conv2d_layer<T, B, In, Out, 1, Stride, 0>::output_shape> {
 public:
  using conv_type = conv2d_layer<T, B, In, Out, 1, Stride, 0>;
  using bn_type = batch_norm_layer<T, B, conv_type::output_shape>;

  int in_channels() const { return conv.in_channels(); }
  int out_channels() const { return conv.out_channels(); }

  const tensor<T, B>& forward(typename B::context& ctx, const tensor<T, B>& x, phase p) {
    return bn.forward(ctx, conv.forward(ctx, x, p), p);
  }
  const tensor<T, B>& backward(typename B::context& ctx, const tensor<T, B>& dy, bool input_grad = true) {
    return conv.backward(ctx, bn.backward(ctx, dy), input_grad);
  }
  void visit_parameters(parameter_visitor<T, B> v) {
    conv.visit_parameters([&](const std::string& n, tensor<T, B>& p, tensor<T, B>& g) { v("conv." + n, p, g); });
    bn.visit_parameters([&](const std::string& n, tensor<T, B>& p, tensor<T, B>& g) { v("bn." + n, p, g); });
  }
  void visit_buffers(buffer_visitor<T, B> v) {
    bn.visit_buffers([&](const std::string& n, tensor<T, B>& b) { v("bn." + n, b); });
  }
  void initialize(rng& r) {
    conv.initialize(r);
    bn.initialize(r);
  }
  std::int64_t mult_adds_per_image() const { return conv.mult_adds_per_image(); }
  void sync_widths() {
    conv.sync_widths();
    bn.sync_widths();
  }
  /// Width multiplier (layers/layer.hpp): the projection and its batch norm.
  void scale_widths(double m, int& stream) {
    conv.scale_widths(m, stream);
    bn.scale_widths(m, stream);
  }
  /// Split role inside a residual block: the projection consumes the input stream and,
  /// with its batch norm, produces the output stream's channels.
  template <class W>
  void describe_input(W& w, const std::string& prefix) {
    w.consume(prefix + "conv.weight");
  }
  template <class W>
  void describe_output(W& w, const std::string& prefix) {
    w.produce_weight(prefix + "conv.weight", [this] { return conv.input(); });
    bn.describe_sites(w, prefix + "bn.");
  }

  conv_type conv;
  bn_type bn;
};

/// Option A: parameter-free subsampling plus zero channels; needs Out >= In.
struct shortcut_a {
  static constexpr const char* name = "A";
  static constexpr bool accepts(fmap_shape in, int out, int) { return out >= in.channels; }
  template <class T, class B, fmap_shape In, int Out, int Stride>
  using layer = shortcut_a_layer<T, B, In, Out, Stride>;
};

/// Option B: 1x1 convolution with stride, then batch norm.
struct shortcut_b {
  static constexpr const char* name = "B";
  static constexpr bool accepts(fmap_shape, int, int) { return true; }
  template <class T, class B, fmap_shape In, int Out, int Stride>
  using layer = shortcut_b_layer<T, B, In, Out, Stride>;
};

/// A shortcut policy: names itself, says which (input, output width, stride) it can join,
/// and binds to a layer.
template <class P>
concept ShortcutPolicy = requires(fmap_shape s) {
  { P::name } -> std::convertible_to<const char*>;
  { P::accepts(s, 1, 1) } -> std::same_as<bool>;
};

}  // namespace netsplit
