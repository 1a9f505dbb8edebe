// netsplit/split/apply.hpp — performing a split on a network (at a site of
// models/structure.hpp), its optimizer state (whatever slots train/optimizer.hpp holds)
// and any other per-parameter state, and replaying a recorded history on a fresh network.
// A split of filter j at a site appends one filter (index = old width) to every producer,
// and one input slice to every consumer; see strategy.hpp for the values and the momentum
// rule. Requests that cannot be met (unknown site, filter out of range) are
// contract_violations raised before anything is changed.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <span>
#include <variant>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/random.hpp"
#include "netsplit/models/network.hpp"
#include "netsplit/models/structure.hpp"
#include "netsplit/split/history.hpp"
#include "netsplit/split/net2wider.hpp"
#include "netsplit/split/strategies.hpp"
#include "netsplit/split/strategy.hpp"
#include "netsplit/train/optimizer.hpp"

namespace netsplit {

namespace detail {
/// Appends to axis 0 of t a copy of slice j, letting `edit(original, copy)` adjust both.
template <class T, class B, class F>
void grow_axis0(tensor<T, B>& t, int j, F&& edit) {
  auto host = t.to_host();
  const std::int64_t rows = t.dim(0), row = rows ? t.numel() / rows : 0;
  host.resize(static_cast<std::size_t>((rows + 1) * row));
  std::copy_n(host.begin() + j * row, row, host.begin() + rows * row);
  edit(std::span<T>(host.data() + j * row, static_cast<std::size_t>(row)),
       std::span<T>(host.data() + rows * row, static_cast<std::size_t>(row)));
  tensor_shape s = t.shape();
  s[0] = rows + 1;
  t.resize(s);
  t.from_host(host);
}
/// Appends to axis 1 of t (shape [d0, d1, rest...]) a copy of slice j scaled by `copy`,
/// and scales slice j by `keep`.
template <class T, class B>
void grow_axis1(tensor<T, B>& t, int j, double keep, double copy) {
  const auto old = t.to_host();
  const std::int64_t d0 = t.dim(0), d1 = t.dim(1), inner = t.numel() / (d0 * d1);
  std::vector<T> out(static_cast<std::size_t>(d0 * (d1 + 1) * inner));
  for (std::int64_t a = 0; a < d0; ++a) {
    const T* src = old.data() + a * d1 * inner;
    T* dst = out.data() + a * (d1 + 1) * inner;
    std::copy_n(src, d1 * inner, dst);
    for (std::int64_t i = 0; i < inner; ++i) {
      dst[d1 * inner + i] = static_cast<T>(src[j * inner + i] * copy);
      dst[j * inner + i] = static_cast<T>(src[j * inner + i] * keep);
    }
  }
  tensor_shape s = t.shape();
  s[1] = d1 + 1;
  t.resize(s);
  t.from_host(out);
}

}  // namespace detail

/// Extra per-parameter state to keep consistent with a split (e.g. TPM accumulators):
/// called with the parameter name, whether the tensor is split along the filter axis (0)
/// or the input axis (1), the filter, and the keep/copy factors for axis 1.
using split_state_hook = std::function<void(const std::string& param, int axis, int filter, double keep, double copy)>;

namespace detail {
/// split_filter's work on the network's named tensors (everything but the layers' adoption
/// of their new widths): compiled once per scalar, backend and strategy, not per network.
template <class T, class B, SplitStrategy S>
split_record split_filter_tensors(const tensor_maps<T, B>& idx, const split_site<T, B>& site, int filter,
                                  const S& strategy, std::uint64_t seed, optimizer_state<T, B>* opt,
                                  const std::function<std::vector<double>(const std::string&, int)>& direction,
                                  const split_state_hook& hook) {
  const int width = static_cast<int>(idx.param(site.producer_weights.front()).dim(0));
  NETSPLIT_EXPECT(filter >= 0 && filter < width, "site '", site.name, "' has ", width, " filters; cannot split filter ",
                  filter);
  // Resolve every name before changing anything.
  for (const auto& n : site.producer_weights) idx.param(n);
  for (const auto& n : site.producer_params) idx.param(n);
  for (const auto& n : site.consumer_weights) idx.param(n);
  for (const auto& n : site.producer_buffers) idx.buffer(n);
  // Direction requests are validated by the strategy before any tensor is touched.
  std::vector<std::vector<double>> dirs;
  for (const auto& n : site.producer_weights) dirs.push_back(direction ? direction(n, filter) : std::vector<double>{});
  {
    rng probe(seed);
    for (std::size_t k = 0; k < site.producer_weights.size(); ++k) {
      auto& w = idx.param(site.producer_weights[k]);
      const auto row = static_cast<std::size_t>(w.numel() / w.dim(0));
      std::vector<T> a(row), b(row);
      strategy.init_incoming(split_request{site.name, site.producer_weights[k], filter, dirs[k]}, std::span<T>(a),
                             std::span<T>(b), probe);
    }
  }

  rng g(seed);
  using state_tensor = tensor<T, B>;
  auto for_each_state = [&](const std::string& n, auto&& f) {
    if (opt) opt->for_each_of(n, [&](const std::string&, state_tensor& m) { f(m); });
  };
  auto grow_producer_state = [&](const std::string& n) {
    for_each_state(n, [&](state_tensor& m) {
      detail::grow_axis0(m, filter, [&](std::span<T>, std::span<T> copy) {
        if (!strategy.copy_momentum()) std::fill(copy.begin(), copy.end(), T(0));
      });
    });
    if (hook) hook(n, 0, filter, 1.0, 1.0);
  };
  for (std::size_t k = 0; k < site.producer_weights.size(); ++k) {
    const auto& n = site.producer_weights[k];
    const split_request req{site.name, n, filter, dirs[k]};
    detail::grow_axis0(idx.param(n), filter, [&](std::span<T> a, std::span<T> b) { strategy.init_incoming(req, a, b, g); });
    grow_producer_state(n);
  }
  for (const auto& n : site.producer_params) {
    detail::grow_axis0(idx.param(n), filter, [](std::span<T>, std::span<T>) {});
    grow_producer_state(n);
  }
  const bool copy_statistics = detail::copies_statistics(strategy);
  NETSPLIT_EXPECT(copy_statistics || site.buffer_fresh.size() == site.producer_buffers.size(), "site '", site.name,
                  "' gives no fresh values for its buffers");
  for (std::size_t k = 0; k < site.producer_buffers.size(); ++k) {
    const auto& n = site.producer_buffers[k];
    detail::grow_axis0(idx.buffer(n), filter, [&](std::span<T>, std::span<T> copy) {
      if (!copy_statistics) std::fill(copy.begin(), copy.end(), static_cast<T>(site.buffer_fresh[k]));
    });
    if (hook) hook(n, 0, filter, 1.0, 1.0);
  }
  for (const auto& n : site.consumer_weights) {
    detail::grow_axis1(idx.param(n), filter, strategy.keep_factor(), strategy.copy_factor());
    for_each_state(n, [&](state_tensor& m) {
      detail::grow_axis1(m, filter, strategy.keep_factor(), strategy.copy_factor());
    });
    if (hook) hook(n, 1, filter, strategy.keep_factor(), strategy.copy_factor());
  }
  for (const auto& s : site.structural) s(filter, strategy.keep_factor(), strategy.copy_factor());
  split_record r;
  r.site = site.name;
  r.filter = filter;
  r.new_index = width;
  r.strategy = strategy.name();
  r.eps = strategy.epsilon();
  r.seed = seed;
  return r;
}
}  // namespace detail

/// Splits filter `filter` of `site` with `strategy`. `opt` (optional) has every slot of its
/// per-parameter state transformed; `direction(tensor, filter)` supplies disagreement
/// directions (optional).
/// Returns the record (iteration and score are the caller's to fill in).
template <class Net, SplitStrategy S>
split_record split_filter(Net& net, const split_site<typename Net::scalar_type, typename Net::backend_type>& site,
                          int filter, const S& strategy, std::uint64_t seed,
                          optimizer_state<typename Net::scalar_type, typename Net::backend_type>* opt = nullptr,
                          const std::function<std::vector<double>(const std::string&, int)>& direction = {},
                          const split_state_hook& hook = {}) {
  auto r = detail::split_filter_tensors(tensor_index<Net>(net), site, filter, strategy, seed, opt, direction, hook);
  net.sync_widths();
  return r;
}

namespace detail {
/// The strategy a replay applies for a recorded split: net2wider's values (the checkpoint's
/// tensors replace them) with the recorded strategy's keep/copy factors, which also set the
/// coefficients of option-A shortcut maps -- not tensors, so the replay must rebuild them.
struct replay_strategy : net2wider {
  std::string recorded;
  double keep = 0.5, copy = 0.5;
  std::string name() const { return recorded; }
  double keep_factor() const { return keep; }
  double copy_factor() const { return copy; }
};
}  // namespace detail

/// Rebuilds the widths of a grown network on a fresh one of the same type by replaying
/// its history (values are whatever the replay makes; load a checkpoint afterwards);
/// channel maps (option-A shortcuts) get the recorded strategies' coefficients.
/// io_error naming `where` when the history does not fit the network.
template <class Net>
void replay_history(Net& net, const std::vector<split_record>& history, const std::string& where) {
  auto sites = derive_sites(net);
  for (std::size_t i = 0; i < history.size(); ++i) {
    const auto& r = history[i];
    std::size_t s = sites.size();
    for (std::size_t k = 0; k < sites.size(); ++k)
      if (sites[k].name == r.site) s = k;
    if (s == sites.size())
      detail::raise<io_error>("netsplit: split history in ", where, " entry ", i + 1, " names unknown site '", r.site, "'");
    const int width = site_width(net, sites[s]);
    if (r.filter >= width || r.new_index != width)
      detail::raise<io_error>("netsplit: split history in ", where, " entry ", i + 1, " splits filter ", r.filter,
                              " into ", r.new_index, " but site '", r.site, "' has ", width, " filters at that point");
    detail::replay_strategy replay;
    replay.recorded = r.strategy;
    try {
      std::visit([&](const auto& recorded) {
        replay.keep = recorded.keep_factor();
        replay.copy = recorded.copy_factor();
      }, make_split_strategy(r.strategy, 0.0));
    } catch (const contract_violation& e) {
      detail::raise<io_error>("netsplit: split history in ", where, " entry ", i + 1, ": ", e.what());
    }
    split_filter(net, sites[s], r.filter, replay, r.seed);
  }
}

}  // namespace netsplit
