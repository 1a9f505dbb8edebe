// netsplit/layers/sequential.hpp — composition of a network from a flat list of specs.
// sequential_layer<T, B, In, Specs...> binds each spec to the shape produced by the one
// before it, computed at compile time by a fold over the list (no nesting, no recursion).
// If a spec cannot take the shape before it, compilation stops at a static_assert that
// says so; the concept Composable<In, Specs...> tests the same rule without failing.
// Spec sequence<Specs...> lets a composition be used as one element of another.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <tuple>
#include <utility>

#include "netsplit/layers/layer.hpp"

namespace netsplit {

namespace detail {
/// shapes[0] = In, shapes[i+1] = output of spec i; {} after the first spec that rejects.
template <fmap_shape In, class... Specs>
constexpr std::array<fmap_shape, sizeof...(Specs) + 1> chain_shapes() {
  std::array<fmap_shape, sizeof...(Specs) + 1> s{};
  s[0] = In;
  std::size_t i = 0;
  bool ok = true;
  ((ok = ok && Specs::accepts(s[i]), s[i + 1] = ok ? Specs::output_shape(s[i]) : fmap_shape{}, ++i),
   ...);
  return s;
}
/// Index of the first spec that rejects its input shape, or sizeof...(Specs) if none.
template <fmap_shape In, class... Specs>
constexpr std::size_t first_rejecting() {
  constexpr auto s = chain_shapes<In, Specs...>();
  std::size_t i = 0, bad = sizeof...(Specs);
  ((bad = (bad == sizeof...(Specs) && !Specs::accepts(s[i])) ? i : bad, ++i), ...);
  return bad;
}
}  // namespace detail

/// True when every spec accepts the shape produced by the specs before it.
template <fmap_shape In, class... Specs>
concept Composable = (LayerSpec<Specs> && ...) &&
                     detail::first_rejecting<In, Specs...>() == sizeof...(Specs);

namespace detail {
/// C, BN, R are a convolution, the batch norm after it and a ReLU: under phase::infer they
/// run as one folded pass (C::forward_folded, R::adopt_folded). Outside the class so that
/// every compiler (nvcc's front end included) checks it only for the layer types given.
template <class C, class BN, class R, class Ctx, class X>
concept folds_conv_bn_relu = requires(C& c, BN& bn, R& r, Ctx& ctx, const X& x) {
  bn.running_mean();
  bn.gamma();
  c.forward_folded(ctx, x, bn, nullptr, true);
  r.adopt_folded(x);
};
/// BN, R are a batch norm and the ReLU after it: under phase::train and phase::eval they run
/// as one pass (BN::forward_relu, R::adopt_fused; backward R::backward_fused, BN::backward_relu).
template <class BN, class R, class Ctx, class X>
concept fuses_bn_relu = requires(BN& bn, R& r, Ctx& ctx, const X& x, phase p) {
  bn.forward_relu(ctx, x, p);
  bn.backward_relu(ctx, x, true);
  r.adopt_fused(x);
  r.backward_fused(x);
};
/// C, BN, R are a convolution, the batch norm after it and a ReLU fused with it, on a backend
/// whose convolution returns the batch norm's statistics (ConvWithSums): in phase::train the
/// batch norm takes them from the convolution (BN::forward_relu_after).
template <class C, class BN, class R, class Ctx, class X, class T>
concept sums_conv_bn_relu = fuses_bn_relu<BN, R, Ctx, X> && requires(C& c, BN& bn, Ctx& ctx, const X& x, phase p,
                                                                     T* k, double* s) {
  c.forward_summed(ctx, x, p, k, s, s);
  bn.forward_relu_after(ctx, c, x, p);
};
}  // namespace detail

/// Reports a composition error: instantiated only for a failing chain, so the compiler's
/// note shows the rejecting spec, its position and the shape it was offered.
template <class Rejecting, std::size_t Position, fmap_shape Offered>
struct shape_mismatch {
  static_assert(Position == std::size_t(-1),
                "netsplit: layer cannot take the shape produced by the layers before it "
                "(see shape_mismatch<Rejecting spec, Position, Offered shape> in this error: "
                "check spatial size, stride, and that linear follows global_avg_pool)");
};

template <class T, class B, fmap_shape In, class... Specs>
class sequential_layer {
  static_assert(sizeof...(Specs) > 0, "netsplit: a sequential needs at least one layer");
  static_assert((LayerSpec<Specs> && ...), "netsplit: every element of a sequential must model LayerSpec");
  static constexpr std::size_t count = sizeof...(Specs);
  static constexpr auto shapes = detail::chain_shapes<In, Specs...>();
  static constexpr std::size_t bad = detail::first_rejecting<In, Specs...>();
  static constexpr bool ok = bad == count;
  // For a failing chain this instantiates shape_mismatch, whose static_assert names the
  // culprit in its template arguments.
  static_assert(sizeof(std::conditional_t<ok, char,
                                          shape_mismatch<std::tuple_element_t<(ok ? 0 : bad), std::tuple<Specs...>>,
                                                         bad, shapes[ok ? 0 : bad]>>) > 0);

  template <std::size_t... I>
  static auto bind(std::index_sequence<I...>)
      -> std::tuple<typename Specs::template layer<T, B, (ok ? shapes[I] : In)>...>;

 public:
  using scalar_type = T;
  using backend_type = B;
  using context_type = typename B::context;
  using layers_type = decltype(bind(std::make_index_sequence<count>{}));
  static constexpr fmap_shape input_shape = In;
  static constexpr fmap_shape output_shape = shapes[count];
  static constexpr std::size_t size() { return count; }

  sequential_layer() {
    for (std::size_t i = 0; i < count; ++i) names_[i] = std::to_string(i);
  }

  template <std::size_t I>
  auto& get() { return std::get<I>(layers_); }
  template <std::size_t I>
  const auto& get() const { return std::get<I>(layers_); }
  layers_type& layers() { return layers_; }

  /// Name of child i in parameter paths (default: its index).
  void set_name(std::size_t i, std::string name) { names_.at(i) = std::move(name); }
  const std::string& name(std::size_t i) const { return names_.at(i); }

  int in_channels() const { return std::get<0>(layers_).in_channels(); }
  int out_channels() const { return std::get<count - 1>(layers_).out_channels(); }

  /// With phase::infer, every convolution followed by its batch norm and a ReLU runs as
  /// one folded pass (conv2d_layer::forward_folded; the ReLU's output() is its result).
  /// Otherwise every batch norm followed by a ReLU runs as one pass (forward_relu: the
  /// ReLU's output() is the batch norm's), and backward differentiates both in one
  /// (backward_relu): the ReLU's own passes over its input and gradient, and its two
  /// tensors, are not needed. The results are the same to the bit, except that in
  /// phase::train a batch norm after a convolution takes its statistics from the convolution
  /// where the backend can (batch_norm_layer::forward_relu_after): the same to rounding.
  const tensor<T, B>& forward(context_type& ctx, const tensor<T, B>& x, phase p) {
    if (p == phase::infer) return forward_infer<0>(ctx, x);
    return forward_fused<0>(ctx, x, p);
  }

  const tensor<T, B>& backward(context_type& ctx, const tensor<T, B>& dy, bool input_grad = true) {
    return backward_from<count>(ctx, dy, input_grad);
  }

  /// Calls f(name, layer) for each child in order.
  template <class F>
  void for_each_layer(F&& f) {
    std::size_t i = 0;
    std::apply([&](auto&... l) { ((f(names_[i++], l)), ...); }, layers_);
  }

  void visit_parameters(parameter_visitor<T, B> v) {
    for_each_layer([&](const std::string& name, auto& l) {
      if constexpr (HasParameters<std::decay_t<decltype(l)>>)
        l.visit_parameters(
            [&](const std::string& n, tensor<T, B>& p, tensor<T, B>& g) { v(name + "." + n, p, g); });
    });
  }
  void visit_buffers(buffer_visitor<T, B> v) {
    for_each_layer([&](const std::string& name, auto& l) {
      if constexpr (HasBuffers<std::decay_t<decltype(l)>>)
        l.visit_buffers([&](const std::string& n, tensor<T, B>& b) { v(name + "." + n, b); });
    });
  }
  template <class V>
  void visit_channel_maps(V&& v) {
    for_each_layer([&](const std::string& name, auto& l) {
      if constexpr (HasChannelMaps<std::decay_t<decltype(l)>>)
        l.visit_channel_maps([&](const std::string& n, const channel_map& m) { v(n.empty() ? name : name + "." + n, m); });
    });
  }
  /// Split role: each child's in order, under "<prefix><child name>."; a child that
  /// declares none stops the walk (contract_violation naming it).
  template <class W>
  void describe_sites(W& w, const std::string& prefix) {
    for_each_layer([&](const std::string& name, auto& l) {
      if constexpr (requires { l.describe_sites(w, prefix); }) l.describe_sites(w, prefix + name + ".");
      else w.unsupported(prefix + name);
    });
  }
  /// Lets every child adopt the widths of its tensors after a split replaced them.
  void sync_widths() {
    for_each_layer([&](const std::string&, auto& l) {
      if constexpr (requires { l.sync_widths(); }) l.sync_widths();
    });
  }

  /// Width multiplier (layers/layer.hpp): each child in order; a child that has no widths
  /// of its own to scale (none declares scale_widths) is a contract_violation naming it.
  void scale_widths(double m, int& stream) {
    for_each_layer([&](const std::string& name, auto& l) {
      if constexpr (requires { l.scale_widths(m, stream); }) l.scale_widths(m, stream);
      else detail::raise<contract_violation>("netsplit: layer '", name, "' cannot take a width multiplier");
    });
  }

  void initialize(rng& r) {
    for_each_layer([&](const std::string&, auto& l) {
      if constexpr (Initializable<std::decay_t<decltype(l)>>) l.initialize(r);
    });
  }
  std::int64_t mult_adds_per_image() const {
    std::int64_t total = 0;
    std::apply([&](const auto&... l) {
      ((total += [&] {
         if constexpr (CountsMultAdds<std::decay_t<decltype(l)>>) return l.mult_adds_per_image();
         else return std::int64_t{0};
       }()), ...);
    }, layers_);
    return total;
  }

 private:
  /// Children I, I+1, I+2 are a convolution, a batch norm and a ReLU (fold with phase::infer).
  template <std::size_t I>
  static constexpr bool folds() {
    if constexpr (I + 2 >= count) {
      return false;
    } else {
      return detail::folds_conv_bn_relu<std::tuple_element_t<I, layers_type>, std::tuple_element_t<I + 1, layers_type>,
                                        std::tuple_element_t<I + 2, layers_type>, context_type, tensor<T, B>>;
    }
  }
  template <std::size_t I>
  const tensor<T, B>& forward_infer(context_type& ctx, const tensor<T, B>& x) {
    if constexpr (I == count) {
      return x;
    } else if constexpr (folds<I>()) {
      const auto& y = std::get<I>(layers_).forward_folded(ctx, x, std::get<I + 1>(layers_), nullptr, true);
      std::get<I + 2>(layers_).adopt_folded(y);
      return forward_infer<I + 3>(ctx, y);
    } else {
      return forward_infer<I + 1>(ctx, std::get<I>(layers_).forward(ctx, x, phase::infer));
    }
  }
  /// Children I, I+1 are a batch norm and a ReLU (one pass in phase::train and phase::eval).
  template <std::size_t I>
  static constexpr bool fuses() {
    if constexpr (I + 1 >= count) {
      return false;
    } else {
      return detail::fuses_bn_relu<std::tuple_element_t<I, layers_type>, std::tuple_element_t<I + 1, layers_type>,
                                   context_type, tensor<T, B>>;
    }
  }
  /// Children I, I+1, I+2 are a convolution, its batch norm and a fused ReLU, the batch norm
  /// taking its training statistics from the convolution.
  template <std::size_t I>
  static constexpr bool sums() {
    if constexpr (I + 2 >= count) {
      return false;
    } else {
      return detail::sums_conv_bn_relu<std::tuple_element_t<I, layers_type>, std::tuple_element_t<I + 1, layers_type>,
                                       std::tuple_element_t<I + 2, layers_type>, context_type, tensor<T, B>, T>;
    }
  }
  template <std::size_t I>
  const tensor<T, B>& forward_fused(context_type& ctx, const tensor<T, B>& x, phase p) {
    if constexpr (I == count) {
      return x;
    } else if constexpr (sums<I>()) {
      const auto& y = std::get<I + 1>(layers_).forward_relu_after(ctx, std::get<I>(layers_), x, p);
      std::get<I + 2>(layers_).adopt_fused(y);
      return forward_fused<I + 3>(ctx, y, p);
    } else if constexpr (fuses<I>()) {
      const auto& y = std::get<I>(layers_).forward_relu(ctx, x, p);
      std::get<I + 1>(layers_).adopt_fused(y);
      return forward_fused<I + 2>(ctx, y, p);
    } else {
      return forward_fused<I + 1>(ctx, std::get<I>(layers_).forward(ctx, x, p), p);
    }
  }
  /// Children J-2, J-1 are a fused pair (fuses<J-2> is only formed for J >= 2).
  template <std::size_t J>
  static constexpr bool fused_pair_ends_at() {
    if constexpr (J < 2) return false;
    else return fuses<J - 2>();
  }
  /// Differentiates children [0, J) from the last: a ReLU fused with the batch norm before it
  /// records its gradient and the batch norm differentiates both. The first child computes
  /// its input gradient only when input_grad.
  template <std::size_t J>
  const tensor<T, B>& backward_from(context_type& ctx, const tensor<T, B>& dy, bool input_grad) {
    if constexpr (J == 0) {
      return dy;
    } else if constexpr (fused_pair_ends_at<J>()) {
      std::get<J - 1>(layers_).backward_fused(dy);
      return backward_from<J - 2>(ctx, std::get<J - 2>(layers_).backward_relu(ctx, dy, J > 2 || input_grad), input_grad);
    } else {
      return backward_from<J - 1>(ctx, std::get<J - 1>(layers_).backward(ctx, dy, J > 1 || input_grad), input_grad);
    }
  }

  layers_type layers_;
  std::array<std::string, count> names_;
};

/// A composition usable as one spec inside another.
template <class... Specs>
struct sequence {
  static constexpr const char* kind = "sequence";
  static constexpr bool accepts(fmap_shape in) {
    auto s = in;
    bool ok = true;
    ((ok = ok && Specs::accepts(s), s = ok ? Specs::output_shape(s) : s), ...);
    return ok;
  }
  static constexpr fmap_shape output_shape(fmap_shape in) {
    ((in = Specs::output_shape(in)), ...);
    return in;
  }
  template <class T, class B, fmap_shape In>
  using layer = sequential_layer<T, B, In, Specs...>;
};

}  // namespace netsplit
