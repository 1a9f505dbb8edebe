// netsplit/models/resnet.hpp — CIFAR ResNets of depth 6n+2 (20/32/44/56) from one template.
// resnet<Depth, Classes, B, T, Shortcut> is a flat composition: 3x3 stem conv (16) + BN +
// ReLU, three stages of n basic blocks (16/32/64 channels, stride 2 entering stages 2, 3),
// global average pooling and a linear classifier. Parameter names follow the reference
// PyTorch definition (conv1, bn1, layer1.0.conv1, ..., linear) so weights can be exchanged.
// Models Network (models/network.hpp); its split sites come from its composition.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "netsplit/backend/cpu/cpu_backend.hpp"
#include "netsplit/layers/batch_norm.hpp"
#include "netsplit/layers/conv2d.hpp"
#include "netsplit/layers/linear.hpp"
#include "netsplit/layers/pooling.hpp"
#include "netsplit/layers/relu.hpp"
#include "netsplit/layers/residual.hpp"
#include "netsplit/layers/sequential.hpp"
#include "netsplit/models/network.hpp"

namespace netsplit {

namespace detail {
template <class T, class B, fmap_shape In, class... Specs>
struct sequential_of_list;
template <class... Specs>
struct spec_list {};
template <class T, class B, fmap_shape In, class... Specs>
struct sequential_of_list<T, B, In, spec_list<Specs...>> {
  using type = sequential_layer<T, B, In, Specs...>;
};

/// stem, 3n blocks (block i: stage i / n, stride 2 when it opens stages 2 and 3), head.
template <int N, int Classes, class Shortcut, std::size_t... I>
auto resnet_specs(std::index_sequence<I...>)
    -> spec_list<conv3x3<16>, batch_norm, relu,
                 basic_block<(16 << (I / N)), ((I % N == 0 && I >= N) ? 2 : 1), Shortcut>...,
                 global_avg_pool, linear<Classes>>;
}  // namespace detail

template <int Depth, int Classes, class B = cpu_backend, class T = float, ShortcutPolicy Shortcut = shortcut_a>
class resnet {
  static_assert(Depth >= 8 && (Depth - 2) % 6 == 0, "netsplit: CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, ...)");
  static_assert(Classes >= 2, "netsplit: a classifier needs at least two classes");

 public:
  static constexpr int blocks_per_stage = (Depth - 2) / 6;
  static constexpr int depth = Depth;
  static constexpr int classes = Classes;
  using scalar_type = T;
  using backend_type = B;
  using shortcut_policy = Shortcut;
  using context_type = typename B::context;
  using body_type = typename detail::sequential_of_list<
      T, B, fmap_shape{3, 32, 32},
      decltype(detail::resnet_specs<blocks_per_stage, Classes, Shortcut>(
          std::make_index_sequence<3 * blocks_per_stage>{}))>::type;
  static constexpr fmap_shape input_shape = body_type::input_shape;
  static constexpr fmap_shape output_shape = body_type::output_shape;
  static constexpr std::size_t block_count = 3 * blocks_per_stage;

  resnet() {
    body_.set_name(0, "conv1");
    body_.set_name(1, "bn1");
    body_.set_name(2, "relu");
    for (std::size_t i = 0; i < block_count; ++i)
      body_.set_name(3 + i, "layer" + std::to_string(i / blocks_per_stage + 1) + "." +
                                std::to_string(i % blocks_per_stage));
    body_.set_name(3 + block_count, "avgpool");
    body_.set_name(4 + block_count, "linear");
  }
  /// Constructs and initialises from a seed (He normal convs and classifier; BN γ=1, β=0).
  explicit resnet(std::uint64_t seed) : resnet() {
    rng r(seed);
    initialize(r);
  }

  /// Architecture name stored in checkpoints, e.g. "resnet20 classes=100 shortcut=A scalar=f32".
  static std::string architecture() {
    return "resnet" + std::to_string(Depth) + " classes=" + std::to_string(Classes) + " shortcut=" +
           Shortcut::name + " scalar=" + (sizeof(T) == 4 ? "f32" : "f64");
  }

  int in_channels() const { return body_.in_channels(); }
  int out_channels() const { return body_.out_channels(); }

  /// With phase::infer the stem's batch norm and ReLU are folded into its convolution (one
  /// pass; the relu layer's output() is that result), as the blocks fold theirs.
  const tensor<T, B>& forward(context_type& ctx, const tensor<T, B>& x, phase p) {
    if (p != phase::infer) return body_.forward(ctx, x, p);
    const auto& stem = body_.template get<0>().forward_folded(ctx, x, body_.template get<1>(), nullptr, true);
    body_.template get<2>().adopt_folded(stem);
    return body_.template forward_from<3>(ctx, stem, p);
  }
  const tensor<T, B>& backward(context_type& ctx, const tensor<T, B>& dy, bool input_grad = false) {
    return body_.backward(ctx, dy, input_grad);
  }
  template <class V>
  void visit_parameters(V&& v) { body_.visit_parameters(std::forward<V>(v)); }
  template <class V>
  void visit_buffers(V&& v) { body_.visit_buffers(std::forward<V>(v)); }
  void initialize(rng& r) { body_.initialize(r); }
  /// After a split replaced parameter tensors: every layer adopts its new widths.
  void sync_widths() { body_.sync_widths(); }
  std::int64_t mult_adds_per_image() const { return body_.mult_adds_per_image(); }
  /// Split structure: the body's (models/structure.hpp derives the sites from it).
  template <class W>
  void describe_sites(W& w, const std::string& prefix) { body_.describe_sites(w, prefix); }

  body_type& body() { return body_; }
  const body_type& body() const { return body_; }

 private:
  body_type body_;
};

template <class B = cpu_backend, int Classes = 100, class T = float, ShortcutPolicy Shortcut = shortcut_a>
using resnet20 = resnet<20, Classes, B, T, Shortcut>;
template <class B = cpu_backend, int Classes = 100, class T = float, ShortcutPolicy Shortcut = shortcut_a>
using resnet32 = resnet<32, Classes, B, T, Shortcut>;
template <class B = cpu_backend, int Classes = 100, class T = float, ShortcutPolicy Shortcut = shortcut_a>
using resnet44 = resnet<44, Classes, B, T, Shortcut>;
template <class B = cpu_backend, int Classes = 100, class T = float, ShortcutPolicy Shortcut = shortcut_a>
using resnet56 = resnet<56, Classes, B, T, Shortcut>;

}  // namespace netsplit
