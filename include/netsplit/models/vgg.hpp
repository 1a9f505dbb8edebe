// netsplit/models/vgg.hpp — VGG with batch norm for 32x32 inputs (the CIFAR variant),
// configurations 11/13/16/19 from one template.
// vgg<Config, Classes, B, T> is a flat composition: the configuration's 3x3 convolutions
// (each followed by batch norm and ReLU) with a 2x2 max pooling after each of its five
// groups (the standard channel lists of Simonyan & Zisserman 2015, table 1, columns A, B,
// D, E: 64 ... 512), then global average pooling and one linear classifier.
// The head: after five poolings a 32x32 input is 1x1, so flattening and global average
// pooling are the same operation; the library uses global_avg_pool + linear, the head of
// its ResNets (one classifier kind for both families, whose input width is the last
// convolution's, so a split there widens the classifier like any consumer). The CIFAR
// VGGs in common use (e.g. kuangliu/pytorch-cifar) have the same single Linear(512, classes)
// head; ImageNet's three fully connected layers are not used at 32x32.
// Convolutions have no bias (batch norm follows each). Parameter names follow a PyTorch
// nn.Sequential of the same layers: features.<i> (conv, bn, relu, pool in order, as
// torchvision numbers them), classifier. At a width multiplier m every convolution has
// round(width x m) filters. Split sites: every convolution (its filters feed the next
// convolution or the classifier through batch norm, ReLU and pooling), derived from the
// composition by models/structure.hpp and named after the convolution (features.0, ...).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>

#include "netsplit/backend/cpu/cpu_backend.hpp"
#include "netsplit/layers/batch_norm.hpp"
#include "netsplit/layers/conv2d.hpp"
#include "netsplit/layers/linear.hpp"
#include "netsplit/layers/pooling.hpp"
#include "netsplit/layers/relu.hpp"
#include "netsplit/layers/sequential.hpp"
#include "netsplit/models/classifier.hpp"

namespace netsplit {

/// The channel lists of VGG 11/13/16/19; 0 is a 2x2 max pooling.
template <int Config>
struct vgg_config;
template <>
struct vgg_config<11> {
  static constexpr std::array<int, 13> layers{64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
};
template <>
struct vgg_config<13> {
  static constexpr std::array<int, 15> layers{64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
};
template <>
struct vgg_config<16> {
  static constexpr std::array<int, 18> layers{64,  64,  0,   128, 128, 0,   256, 256, 256,
                                              0,   512, 512, 512, 0,   512, 512, 512, 0};
};
template <>
struct vgg_config<19> {
  static constexpr std::array<int, 21> layers{64,  64,  0,   128, 128, 0,   256, 256, 256, 256, 0,
                                              512, 512, 512, 512, 0,   512, 512, 512, 512, 0};
};

namespace detail {
template <int Width>
struct vgg_item {
  using type = spec_list<conv3x3<Width>, batch_norm, relu>;
};
template <>
struct vgg_item<0> {
  using type = spec_list<max_pool2x2>;
};
template <class... Lists>
struct concat_specs;
template <class... A>
struct concat_specs<spec_list<A...>> {
  using type = spec_list<A...>;
};
template <class... A, class... Bs, class... Rest>
struct concat_specs<spec_list<A...>, spec_list<Bs...>, Rest...> {
  using type = typename concat_specs<spec_list<A..., Bs...>, Rest...>::type;
};
template <int Config, int Classes, std::size_t... I>
auto vgg_specs(std::index_sequence<I...>) ->
    typename concat_specs<typename vgg_item<vgg_config<Config>::layers[I]>::type...,
                          spec_list<global_avg_pool, linear<Classes>>>::type;
template <int Config, int Classes, class B, class T>
using vgg_body = typename sequential_of_list<
    T, B, fmap_shape{3, 32, 32},
    decltype(vgg_specs<Config, Classes>(std::make_index_sequence<vgg_config<Config>::layers.size()>{}))>::type;
}  // namespace detail

template <int Config, int Classes, class B = cpu_backend, class T = float>
class vgg : public classifier<detail::vgg_body<Config, Classes, B, T>> {
  static_assert(Classes >= 2, "netsplit: a classifier needs at least two classes");
  using base = classifier<detail::vgg_body<Config, Classes, B, T>>;

 public:
  static constexpr int config = Config;
  static constexpr int classes = Classes;
  /// Children of the body before the head (the `features` of the PyTorch definition).
  static constexpr std::size_t feature_count = base::body_type::size() - 2;

  /// The published widths, zero weights until initialize().
  vgg() : vgg(width_multiplier{}) {}
  /// Every convolution at round(width x m) filters.
  explicit vgg(width_multiplier m) : base(m) {
    for (std::size_t i = 0; i < feature_count; ++i) this->body_.set_name(i, "features." + std::to_string(i));
    this->body_.set_name(feature_count, "avgpool");
    this->body_.set_name(feature_count + 1, "classifier");
  }
  /// Constructs and initialises from a seed (He normal convs and classifier; BN γ=1, β=0).
  explicit vgg(std::uint64_t seed, width_multiplier m = {}) : vgg(m) {
    rng r(seed);
    this->initialize(r);
  }

  /// Architecture name stored in checkpoints, e.g. "vgg11 classes=10 scalar=f32 width=0.25".
  std::string architecture() const {
    return "vgg" + std::to_string(Config) + " classes=" + std::to_string(Classes) + this->architecture_tail();
  }
};

template <class B = cpu_backend, int Classes = 100, class T = float>
using vgg11 = vgg<11, Classes, B, T>;
template <class B = cpu_backend, int Classes = 100, class T = float>
using vgg13 = vgg<13, Classes, B, T>;
template <class B = cpu_backend, int Classes = 100, class T = float>
using vgg16 = vgg<16, Classes, B, T>;
template <class B = cpu_backend, int Classes = 100, class T = float>
using vgg19 = vgg<19, Classes, B, T>;

}  // namespace netsplit
