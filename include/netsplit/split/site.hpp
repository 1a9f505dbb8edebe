// netsplit/split/site.hpp — split sites and coupled groups, derived from a network's
// structure (not hand-listed per model).
// A site is a set of producers (conv filters and their BatchNorm channels) plus every
// consumer of those channels. derive_sites() walks a sequential composition:
//  * inner sites: each basic block's conv1/bn1 -> conv2 (ResNet20: 9 sites, 336 filters);
//  * coupled groups: the residual stream of a stage, produced by the stem or the block
//    that opens the stage (its conv2/bn2 and its projection or scatter shortcut) and by
//    every later block's conv2/bn2, consumed by every block's conv1 and shortcut, the
//    next stage's opening block, and the classifier.
// Sites refer to tensors by parameter name, so the same description drives the split of
// parameters, optimizer state and TPM accumulators.
#pragma once

#include <algorithm>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "netsplit/layers/batch_norm.hpp"
#include "netsplit/layers/conv2d.hpp"
#include "netsplit/layers/linear.hpp"
#include "netsplit/layers/pooling.hpp"
#include "netsplit/layers/relu.hpp"
#include "netsplit/layers/residual.hpp"
#include "netsplit/layers/sequential.hpp"
#include "netsplit/layers/shortcut.hpp"

namespace netsplit {

enum class site_kind { inner, stream };

inline const char* to_string(site_kind k) { return k == site_kind::inner ? "inner" : "stream"; }

/// Where a TPM metric reads a site's activations and their gradients: one feature map
/// whose channel c is the site's filter c (a coupled group has one tap per producer).
template <class T, class B>
struct signal_tap {
  std::function<const tensor<T, B>*()> activation;
  std::function<const tensor<T, B>*()> gradient;
};

template <class T, class B>
struct split_site {
  std::string name;  // "layer1.0.conv1" for an inner site, "stage1" for a coupled group
  site_kind kind = site_kind::inner;
  std::vector<std::string> producer_weights;  // conv weights [out, in, k, k]: filter j is slice j of axis 0
  std::vector<std::string> producer_params;   // BatchNorm γ, β: element j
  std::vector<std::string> producer_buffers;  // BatchNorm running mean/var: element j
  std::vector<std::string> consumer_weights;  // conv [out, in, k, k] / linear [out, in]: slice j of axis 1
  std::vector<std::function<void(int)>> structural;  // width changes without tensors (option-A scatter)
  std::vector<signal_tap<T, B>> taps;
};

namespace detail {
template <class L>
struct is_conv_layer : std::false_type {};
template <class T, class B, fmap_shape In, int O, int K, int S, int P>
struct is_conv_layer<conv2d_layer<T, B, In, O, K, S, P>> : std::true_type {};
template <class L>
struct is_bn_layer : std::false_type {};
template <class T, class B, fmap_shape In>
struct is_bn_layer<batch_norm_layer<T, B, In>> : std::true_type {};
template <class L>
struct is_relu_layer : std::false_type {};
template <class T, class B, fmap_shape In>
struct is_relu_layer<relu_layer<T, B, In>> : std::true_type {};
template <class L>
struct is_block_layer : std::false_type {};
template <class T, class B, fmap_shape In, int O, int S, class P>
struct is_block_layer<basic_block_layer<T, B, In, O, S, P>> : std::true_type {};
template <class L>
struct is_linear_layer : std::false_type {};
template <class T, class B, fmap_shape In, int O>
struct is_linear_layer<linear_layer<T, B, In, O>> : std::true_type {};
template <class L>
struct is_pool_layer : std::false_type {};
template <class T, class B, fmap_shape In>
struct is_pool_layer<global_avg_pool_layer<T, B, In>> : std::true_type {};
template <class L>
struct is_shortcut_a : std::false_type {};
template <class T, class B, fmap_shape In, int O, int S>
struct is_shortcut_a<shortcut_a_layer<T, B, In, O, S>> : std::true_type {};
template <class L>
struct is_shortcut_b : std::false_type {};
template <class T, class B, fmap_shape In, int O, int S>
struct is_shortcut_b<shortcut_b_layer<T, B, In, O, S>> : std::true_type {};
}  // namespace detail

/// Derives every split site of a sequential composition (see the file comment). Throws
/// contract_violation for a layer kind it does not know how to split through.
template <class T, class B, fmap_shape In, class... Specs>
std::vector<split_site<T, B>> derive_sites(sequential_layer<T, B, In, Specs...>& body) {
  std::vector<split_site<T, B>> sites;
  split_site<T, B> stream;  // the open coupled group
  bool open = false;
  int stage = 0;
  auto close = [&] {
    if (open && !stream.producer_weights.empty()) sites.push_back(stream);
    stream = {};
    open = false;
  };
  auto start = [&] {
    close();
    stream.name = "stage" + std::to_string(++stage);
    stream.kind = site_kind::stream;
    open = true;
  };
  body.for_each_layer([&](const std::string& name, auto& l) {
    using L = std::decay_t<decltype(l)>;
    const std::string p = name + ".";
    if constexpr (detail::is_conv_layer<L>::value) {
      if (open) stream.consumer_weights.push_back(p + "weight");
      start();
      stream.producer_weights.push_back(p + "weight");
    } else if constexpr (detail::is_bn_layer<L>::value) {
      NETSPLIT_EXPECT(open, "batch_norm '", name, "' does not follow a convolution; cannot derive split sites");
      stream.producer_params.insert(stream.producer_params.end(), {p + "weight", p + "bias"});
      stream.producer_buffers.insert(stream.producer_buffers.end(), {p + "running_mean", p + "running_var"});
    } else if constexpr (detail::is_relu_layer<L>::value) {
      if (open) stream.taps.push_back({[&l] { return &l.output(); }, [&l] { return l.output_grad(); }});
    } else if constexpr (detail::is_block_layer<L>::value) {
      NETSPLIT_EXPECT(open, "block '", name, "' has no producer before it; cannot derive split sites");
      split_site<T, B> inner;
      inner.name = p + "conv1";
      inner.kind = site_kind::inner;
      inner.producer_weights = {p + "conv1.weight"};
      inner.producer_params = {p + "bn1.weight", p + "bn1.bias"};
      inner.producer_buffers = {p + "bn1.running_mean", p + "bn1.running_var"};
      inner.consumer_weights = {p + "conv2.weight"};
      inner.taps.push_back({[&l] { return &l.inner_output(); }, [&l] { return l.inner_output_grad(); }});
      // The block consumes the open stream through conv1 and its shortcut.
      stream.consumer_weights.push_back(p + "conv1.weight");
      using S = std::decay_t<decltype(l.shortcut)>;
      if constexpr (detail::is_shortcut_a<S>::value) {
        stream.structural.push_back([&l](int j) { l.shortcut.duplicate_input(j); });
      } else if constexpr (detail::is_shortcut_b<S>::value) {
        stream.consumer_weights.push_back(p + "shortcut.conv.weight");
      }
      if constexpr (!L::identity) {
        start();  // a projection or scatter opens the next stage's stream
        if constexpr (detail::is_shortcut_a<S>::value) {
          stream.structural.push_back([&l](int j) { l.shortcut.duplicate_output(j); });
        } else if constexpr (detail::is_shortcut_b<S>::value) {
          stream.producer_weights.push_back(p + "shortcut.conv.weight");
          stream.producer_params.insert(stream.producer_params.end(), {p + "shortcut.bn.weight", p + "shortcut.bn.bias"});
          stream.producer_buffers.insert(stream.producer_buffers.end(),
                                         {p + "shortcut.bn.running_mean", p + "shortcut.bn.running_var"});
        }
      }
      stream.producer_weights.push_back(p + "conv2.weight");
      stream.producer_params.insert(stream.producer_params.end(), {p + "bn2.weight", p + "bn2.bias"});
      stream.producer_buffers.insert(stream.producer_buffers.end(), {p + "bn2.running_mean", p + "bn2.running_var"});
      stream.taps.push_back({[&l] { return &l.output(); }, [&l] { return l.output_grad(); }});
      sites.push_back(inner);
    } else if constexpr (detail::is_pool_layer<L>::value) {
      // passes channels through unchanged
    } else if constexpr (detail::is_linear_layer<L>::value) {
      NETSPLIT_EXPECT(open, "linear '", name, "' has no producer before it; cannot derive split sites");
      stream.consumer_weights.push_back(p + "weight");
      close();
    } else {
      NETSPLIT_EXPECT(false, "cannot derive split sites through layer '", name, "'");
    }
  });
  close();
  // Inner sites first (in network order), then the coupled groups (stage order).
  std::stable_partition(sites.begin(), sites.end(), [](const auto& s) { return s.kind == site_kind::inner; });
  return sites;
}

/// Sites of a model that exposes its sequential body (resnet<...>).
template <class Net>
  requires requires(Net& n) { n.body(); }
auto derive_sites(Net& net) {
  return derive_sites(net.body());
}

}  // namespace netsplit
