// netsplit/models/structure.hpp — the structure a split needs, derived from a network's
// composition: split sites (producers of a set of channels and every consumer of them)
// and the coupled groups of residual streams. No model lists its sites by hand.
// derive_sites(net) walks the composition with a structure_walker: every layer describes
// its role through describe_sites(walker, prefix) (layers/layer.hpp lists the roles):
//  * a convolution consumes the open stream's channels and opens a new stream it produces
//    (a stream only it produces is that convolution's site, named after it: VGG's sites);
//  * batch norm joins the producers of the open stream (per-channel parameters, buffers);
//  * a ReLU is where metrics read the stream's activations (a tap);
//  * pooling passes channels through; a linear classifier consumes and closes the stream;
//  * a composite (the residual block) describes its own members: a site inside it
//    (conv1/bn1 -> conv2), its consumption of the stream through conv1 and the shortcut,
//    and, when its shortcut changes width or size, the next stream it opens.
// ResNet20: 9 inner sites (336 filters) and 3 coupled groups (stage1..3); VGG11: 8 sites
// (features.0, features.4, ...), one per convolution. Sites refer to
// tensors by parameter name, so one description drives the split of parameters,
// optimizer state and TPM accumulators.
#pragma once

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/tensor.hpp"
#include "netsplit/models/network.hpp"

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
  /// Per producer weight: the input its convolution read in the last forward (empty
  /// function: not known). Curvature metrics (tpm/splitting.hpp) form patch statistics from it.
  std::vector<std::function<const tensor<T, B>*()>> producer_inputs;
  std::vector<std::string> producer_params;   // BatchNorm γ, β: element j
  std::vector<std::string> producer_buffers;  // BatchNorm running mean/var: element j
  std::vector<double> buffer_fresh;           // per producer buffer: a fresh channel's value (mean 0, var 1)
  std::vector<std::string> consumer_weights;  // conv [out, in, k, k] / linear [out, in]: slice j of axis 1
  /// Width changes without tensors (option-A scatter), called with the filter and the
  /// strategy's keep/copy factors for what consumes it (producers ignore the factors).
  std::vector<std::function<void(int filter, double keep, double copy)>> structural;
  std::vector<signal_tap<T, B>> taps;
};

/// What layers describe their split role to (see the file comment). Streams are named
/// stage1, stage2, ... in the order they open. Compositions the walker cannot split
/// through are contract_violations naming the layer.
template <class T, class B>
class structure_walker {
 public:
  using names = std::initializer_list<std::string>;

  /// The open stream's channels are read by `weight` (axis 1). Without an open stream
  /// (the network's input) this is allowed only where `input_ok` (a first convolution).
  void consume(const std::string& weight, bool input_ok = false) {
    if (!open_) {
      NETSPLIT_EXPECT(input_ok, "'", weight, "' has no producer before it; cannot derive split sites");
      return;
    }
    stream_.consumer_weights.push_back(weight);
  }
  /// A consumer without tensors: called with the filter when it is split.
  void consume_structural(std::function<void(int, double, double)> widen) {
    NETSPLIT_EXPECT(open_, "a structural consumer has no producer before it; cannot derive split sites");
    stream_.structural.push_back(std::move(widen));
  }
  /// Closes the open stream and opens the next one (stageN). `layer`: the layer that opens
  /// it, whose name the site takes if it stays that layer's alone (see close_stream).
  void open_stream(const std::string& layer = {}) {
    close_stream();
    stream_.name = "stage" + std::to_string(++streams_);
    stream_.kind = site_kind::stream;
    opener_ = layer;
    open_ = true;
  }
  /// Producers of the open stream: conv weights (axis 0), per-channel parameters and
  /// buffers (element j), width changes without tensors.
  /// `input`: the convolution's input in the last forward (for curvature metrics).
  void produce_weight(const std::string& weight, std::function<const tensor<T, B>*()> input = {}) {
    auto& s = producers(weight);
    s.producer_weights.push_back(weight);
    s.producer_inputs.push_back(std::move(input));
  }
  void produce_params(names params) {
    for (const auto& n : params) producers(n).producer_params.push_back(n);
  }
  /// `fresh`: each buffer's value for a channel that starts from scratch (random_init).
  void produce_buffers(names buffers, std::initializer_list<double> fresh) {
    NETSPLIT_EXPECT(buffers.size() == fresh.size(), "produce_buffers needs one fresh value per buffer");
    for (const auto& n : buffers) producers(n).producer_buffers.push_back(n);
    stream_.buffer_fresh.insert(stream_.buffer_fresh.end(), fresh);
  }
  void produce_structural(std::function<void(int, double, double)> widen) {
    NETSPLIT_EXPECT(open_, "a structural producer has no stream to produce; cannot derive split sites");
    stream_.structural.push_back(std::move(widen));
  }
  /// Where the open stream's activations and their gradients can be read (no stream: none).
  void tap(std::function<const tensor<T, B>*()> activation, std::function<const tensor<T, B>*()> gradient) {
    if (open_) stream_.taps.push_back({std::move(activation), std::move(gradient)});
  }
  /// A site wholly inside a composite: producer weight, its batch norm (buffers with their
  /// fresh values), its consumers.
  void inner_site(std::string name, const std::string& weight, names params, names buffers,
                  std::initializer_list<double> fresh, names consumers,
                  std::function<const tensor<T, B>*()> activation, std::function<const tensor<T, B>*()> gradient,
                  std::function<const tensor<T, B>*()> input = {}) {
    NETSPLIT_EXPECT(buffers.size() == fresh.size(), "inner_site needs one fresh value per buffer");
    split_site<T, B> s;
    s.name = std::move(name);
    s.kind = site_kind::inner;
    s.producer_weights = {weight};
    s.producer_inputs = {std::move(input)};
    s.producer_params = params;
    s.producer_buffers = buffers;
    s.buffer_fresh = fresh;
    s.consumer_weights = consumers;
    s.taps.push_back({std::move(activation), std::move(gradient)});
    inner_.push_back(std::move(s));
  }
  /// The open stream ends (at the next stream, or its last consumer was the classifier).
  /// A stream with one producer convolution and no structural part (a plain convolution
  /// feeding the next, as in VGG) is a site of that convolution alone: kind inner, named
  /// after the layer that opened it; a coupled group (residual stream) keeps stageN.
  void close_stream() {
    if (open_ && !stream_.producer_weights.empty()) {
      if (stream_.producer_weights.size() == 1 && stream_.structural.empty() && !opener_.empty()) {
        stream_.name = opener_;
        stream_.kind = site_kind::inner;
        inner_.push_back(std::move(stream_));
      } else {
        streams_done_.push_back(std::move(stream_));
      }
    }
    stream_ = {};
    opener_.clear();
    open_ = false;
  }
  /// A layer that declares no split role.
  [[noreturn]] void unsupported(const std::string& layer) {
    detail::raise<contract_violation>("netsplit: cannot derive split sites through layer '", layer, "'");
  }

  /// Inner sites first (network order), then the coupled groups (stream order).
  std::vector<split_site<T, B>> finish() {
    close_stream();
    std::vector<split_site<T, B>> out = std::move(inner_);
    for (auto& s : streams_done_) out.push_back(std::move(s));
    inner_.clear();
    streams_done_.clear();
    return out;
  }

 private:
  split_site<T, B>& producers(const std::string& name) {
    NETSPLIT_EXPECT(open_, "'", name, "' produces channels with no convolution before it; cannot derive split sites");
    return stream_;
  }

  split_site<T, B> stream_;
  std::string opener_;
  bool open_ = false;
  int streams_ = 0;
  std::vector<split_site<T, B>> inner_, streams_done_;
};

/// A network (or any composition) whose layers describe their split roles.
template <class N>
concept DescribesSites = requires(N& n, structure_walker<typename N::scalar_type, typename N::backend_type>& w,
                                  const std::string& prefix) { n.describe_sites(w, prefix); };

/// Every split site of a network (see the file comment).
template <DescribesSites Net>
std::vector<split_site<typename Net::scalar_type, typename Net::backend_type>> derive_sites(Net& net) {
  structure_walker<typename Net::scalar_type, typename Net::backend_type> w;
  net.describe_sites(w, "");
  return w.finish();
}

/// Current number of filters of a site.
template <class Net>
int site_width(Net& net, const split_site<typename Net::scalar_type, typename Net::backend_type>& site) {
  return static_cast<int>(tensor_index<Net>(net).param(site.producer_weights.front()).dim(0));
}

/// Parameters that one split of a filter of `site` adds at the network's current widths:
/// the filter's incoming row in every producer weight, one value per per-channel producer
/// parameter (batch norm γ, β), one column (axis 1) of every consumer weight. Structural
/// parts (option-A shortcut maps) hold no parameters. A later split in the same batch can
/// widen a row or column counted here by one channel (k x k values).
template <class T, class B>
std::int64_t split_cost(const tensor_maps<T, B>& idx, const split_site<T, B>& site) {
  std::int64_t cost = 0;
  for (const auto& n : site.producer_weights) {
    const auto& w = idx.param(n);
    cost += w.numel() / w.dim(0);
  }
  cost += static_cast<std::int64_t>(site.producer_params.size());
  for (const auto& n : site.consumer_weights) {
    const auto& w = idx.param(n);
    cost += w.numel() / w.dim(1);
  }
  return cost;
}
template <class Net>
std::int64_t split_cost(Net& net, const split_site<typename Net::scalar_type, typename Net::backend_type>& site) {
  return split_cost<typename Net::scalar_type, typename Net::backend_type>(tensor_index<Net>(net), site);
}

/// Index of the site called `name`; contract_violation listing the known names if none.
template <class T, class B>
std::size_t find_site(const std::vector<split_site<T, B>>& sites, const std::string& name) {
  for (std::size_t i = 0; i < sites.size(); ++i)
    if (sites[i].name == name) return i;
  std::string known;
  for (const auto& s : sites) known += (known.empty() ? "" : ", ") + s.name;
  detail::raise<contract_violation>("netsplit: unknown split site '", name, "' (sites: ", known, ")");
}

}  // namespace netsplit
