// netsplit/models/resnet.hpp — CIFAR ResNets of depth 6n+2 (20/32/44/56) from one template.
// resnet<Depth, Classes, B, T, Shortcut> is a flat composition: 3x3 stem conv (16) + BN +
// ReLU, three stages of n basic blocks (16/32/64 channels, stride 2 entering stages 2, 3),
// global average pooling and a linear classifier, at any width multiplier (stage widths
// round(16 m), round(32 m), round(64 m)). Parameter names follow the reference PyTorch
// definition (conv1, bn1, layer1.0.conv1, ..., linear) so weights can be exchanged.
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
#include "netsplit/models/classifier.hpp"

namespace netsplit {

namespace detail {
/// stem, 3n blocks (block i: stage i / n, stride 2 when it opens stages 2 and 3), head.
template <int N, int Classes, class Shortcut, std::size_t... I>
auto resnet_specs(std::index_sequence<I...>)
    -> spec_list<conv3x3<16>, batch_norm, relu,
                 basic_block<(16 << (I / N)), ((I % N == 0 && I >= N) ? 2 : 1), Shortcut>...,
                 global_avg_pool, linear<Classes>>;
template <int Depth, int Classes, class B, class T, class Shortcut>
using resnet_body = typename sequential_of_list<
    T, B, fmap_shape{3, 32, 32},
    decltype(resnet_specs<(Depth - 2) / 6, Classes, Shortcut>(std::make_index_sequence<(Depth - 2) / 2>{}))>::type;
}  // namespace detail

template <int Depth, int Classes, class B = cpu_backend, class T = float, ShortcutPolicy Shortcut = shortcut_a>
class resnet : public classifier<detail::resnet_body<Depth, Classes, B, T, Shortcut>> {
  static_assert(Depth >= 8 && (Depth - 2) % 6 == 0, "netsplit: CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, ...)");
  static_assert(Classes >= 2, "netsplit: a classifier needs at least two classes");
  using base = classifier<detail::resnet_body<Depth, Classes, B, T, Shortcut>>;

 public:
  static constexpr int blocks_per_stage = (Depth - 2) / 6;
  static constexpr int depth = Depth;
  static constexpr int classes = Classes;
  using shortcut_policy = Shortcut;
  static constexpr std::size_t block_count = 3 * blocks_per_stage;

  /// The published widths (16/32/64), zero weights until initialize().
  resnet() : resnet(width_multiplier{}) {}
  /// Stage widths round(16 m), round(32 m), round(64 m).
  explicit resnet(width_multiplier m) : base(m) {
    auto& body = this->body_;
    body.set_name(0, "conv1");
    body.set_name(1, "bn1");
    body.set_name(2, "relu");
    for (std::size_t i = 0; i < block_count; ++i)
      body.set_name(3 + i, "layer" + std::to_string(i / blocks_per_stage + 1) + "." +
                               std::to_string(i % blocks_per_stage));
    body.set_name(3 + block_count, "avgpool");
    body.set_name(4 + block_count, "linear");
  }
  /// Constructs and initialises from a seed (He normal convs and classifier; BN γ=1, β=0).
  explicit resnet(std::uint64_t seed, width_multiplier m = {}) : resnet(m) {
    rng r(seed);
    this->initialize(r);
  }

  /// Architecture name stored in checkpoints, e.g. "resnet20 classes=100 shortcut=A scalar=f32"
  /// (and " width=0.5" at a width multiplier).
  std::string architecture() const {
    return "resnet" + std::to_string(Depth) + " classes=" + std::to_string(Classes) + " shortcut=" + Shortcut::name +
           this->architecture_tail();
  }
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
