// netsplit/tpm/recorder.hpp — records a TPM metric for every split site of a network
// inside an iteration window, on any Backend (signals that are not host-resident are
// staged through the backend's transfer). attach(trainer) hooks observe(iter) into the
// trainer's after_backward (the gradients of the iteration are available and the update
// has not happened), the window's closing read of the weights into after_update, and its
// state into the trainer's checkpoints. Outside [begin, end) it does nothing. Its whole
// state (metric state per site, observed count) goes into checkpoints, so a run resumed
// mid-window ends with the same scores.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/io/safetensors.hpp"
#include "netsplit/models/network.hpp"
#include "netsplit/models/structure.hpp"
#include "netsplit/tpm/metrics.hpp"
#include "netsplit/tpm/scores.hpp"
#include "netsplit/train/checkpoint.hpp"

namespace netsplit {

/// One iteration's summary: per site, the mean over filters of the metric's contribution.
struct tpm_summary {
  std::int64_t iter = 0;
  std::string metric;
  std::vector<double> per_site;
};

template <class Net>
class tpm_recorder {
 public:
  using T = typename Net::scalar_type;
  using B = typename Net::backend_type;

  /// `ctx` (optional) lends its parallel_for to the Taylor signal.
  tpm_recorder(Net& net, any_tpm_metric metric, tpm_window window, std::uint64_t seed,
               typename B::context* ctx = nullptr)
      : net_(net), ctx_(ctx), metric_(std::move(metric)), window_(window), seed_(seed), sites_(derive_sites(net)) {
    NETSPLIT_EXPECT(window.begin >= 0 && window.end > window.begin, "TPM window [", window.begin, ", ", window.end,
                    ") is empty or negative");
    state_.resize(sites_.size());
  }

  std::function<void(const tpm_summary&)> on_summary;

  /// Samples of each mini-batch the Taylor signal reads (see gather()).
  static constexpr std::int64_t taylor_samples = 32;

  const tpm_window& window() const { return window_; }
  const any_tpm_metric& metric() const { return metric_; }
  std::int64_t observed() const { return observed_; }
  const std::vector<split_site<T, B>>& sites() const { return sites_; }

  /// Report summaries every `stride` iterations of `range` (e.g. the whole run, to draw
  /// where learning happens beyond the window) and only then: the window's iterations are
  /// still all accumulated, but a curve sampled at one interval is not denser inside the
  /// window. Without a range, every window iteration is reported.
  void set_summary_range(tpm_window range, std::int64_t stride) {
    NETSPLIT_EXPECT(stride >= 1, "TPM summary stride must be at least 1, got ", stride);
    summary_range_ = range;
    summary_stride_ = stride;
  }

  /// Observes every iteration of `tr` (its after_backward hook) and saves and restores its
  /// state with tr's checkpoints. The recorder must outlive tr.
  template <class Trainer>
  void attach(Trainer& tr) {
    tr.after_backward.add([this](std::int64_t it) { observe(it); });
    tr.after_update.add([this](std::int64_t completed) { after_update(completed); });
    tr.add_section(section());
  }

  /// Hook into the trainer's after_update (attach does): when `completed` iterations close
  /// the window, a metric with close() reads the weights the window ends with.
  void after_update(std::int64_t completed) {
    if (completed != window_.end || observed_ == 0 || !metric_.closes()) return;
    const tensor_index<Net> idx(net_);
    for (std::size_t s = 0; s < sites_.size(); ++s) {
      gather(idx, s, completed, metric_.needs() & (tpm_signal::weights | tpm_signal::bn_scale));
      metric_.close(state_[s], signals_);
    }
  }

  /// Keeps the per-filter state aligned with a split (pass it to split_filter as its
  /// split_state_hook; split_now does). Axis 0 on a site's first producer weight: filter
  /// `filter` was duplicated, and its state (per-filter values and rows) is copied for the
  /// new filter. Axis 1 on a producer weight of a site: input channel `filter` of that
  /// weight was duplicated, and every row of the site widens the same way — state the
  /// metric marks weight_like scaled as the weights are (keep for the original block, copy
  /// for the new one); other state (gradient statistics) keeps the original's block and
  /// gives the copy the same history (the copy carries the same activation), or none when
  /// the copy starts from scratch (copy factor 0). Without this a split inside the window
  /// reset grad_disagreement and misaligned weight_motion's rows.
  void grow(const std::string& param, int axis, int filter, double keep, double copy) {
    const tensor_index<Net> idx(net_);
    for (std::size_t s = 0; s < sites_.size(); ++s) {
      const auto& producers = sites_[s].producer_weights;
      const auto pos = std::find(producers.begin(), producers.end(), param);
      if (pos == producers.end()) continue;
      const auto& w = idx.param(param);
      const auto filters = static_cast<std::size_t>(w.dim(0));
      const auto j = static_cast<std::size_t>(filter);
      if (axis == 0) {
        if (pos != producers.begin()) continue;  // one copy per split, for the whole row
        const std::size_t old_filters = filters - 1;
        for (auto& [key, v] : state_[s]) {
          if (v.size() == old_filters) {
            v.push_back(v[j]);
          } else if (old_filters > 0 && v.size() % old_filters == 0 && v.size() > old_filters) {
            const std::size_t row = v.size() / old_filters;
            v.insert(v.end(), v.begin() + static_cast<std::ptrdiff_t>(j * row),
                     v.begin() + static_cast<std::ptrdiff_t>((j + 1) * row));
          }
        }
        continue;
      }
      const std::size_t kk = static_cast<std::size_t>(w.numel() / (w.dim(0) * w.dim(1)));
      const std::size_t old_segment = static_cast<std::size_t>(w.dim(1) - 1) * kk;
      std::size_t offset = 0, row = 0;
      for (auto it = producers.begin(); it != producers.end(); ++it) {
        const auto& t = idx.param(*it);
        const auto len = static_cast<std::size_t>(t.numel() / t.dim(0));
        if (it < pos) offset += len;
        row += len;
      }
      const std::size_t old_row = row - kk;
      for (auto& [key, v] : state_[s]) {
        if (old_row <= 1 || v.size() != filters * old_row) continue;  // per-filter or scalar state
        const bool weights = metric_.weight_like(key);
        std::vector<double> out;
        out.reserve(filters * row);
        for (std::size_t f = 0; f < filters; ++f) {
          const double* r = v.data() + f * old_row;
          const double* block = r + offset + j * kk;
          const std::size_t start = out.size();
          out.insert(out.end(), r, r + offset + old_segment);
          for (std::size_t i = 0; i < kk; ++i) out.push_back(weights ? block[i] * copy : (copy != 0 ? block[i] : 0.0));
          out.insert(out.end(), r + offset + old_segment, r + old_row);
          if (weights)
            for (std::size_t i = 0; i < kk; ++i) out[start + offset + j * kk + i] *= keep;
        }
        v = std::move(out);
      }
    }
  }

  /// The recorder's part of a checkpoint (validate stages the state, apply adopts it).
  checkpoint_section<Net> section() {
    auto staged = std::make_shared<loaded_state>();
    checkpoint_section<Net> s;
    s.name = "tpm";
    s.save = [this](io::safetensors_file& f) { save(f); };
    s.validate = [this, staged](const io::safetensors_file& f, const std::string& where) { *staged = parse(f, where); };
    s.apply = [this, staged](const io::safetensors_file&, const std::string&) { adopt(std::move(*staged)); };
    return s;
  }

  /// Adds iteration `iter` if it lies in the window; reports its summary when the summary
  /// range asks for one (without a range: every window iteration).
  void observe(std::int64_t iter) {
    const bool accumulate = window_.contains(iter);
    const bool on_stride =
        summary_range_.contains(iter) && (iter - summary_range_.begin) % summary_stride_ == 0;
    const bool summarize = summary_range_.end > summary_range_.begin ? on_stride : accumulate;
    if (!accumulate && !summarize) return;
    tpm_summary summary{iter, metric_.name(), {}};
    const tensor_index<Net> idx(net_);
    for (std::size_t s = 0; s < sites_.size(); ++s) {
      gather(idx, s, iter, metric_.needs());
      if (accumulate) {
        summary.per_site.push_back(metric_.observe(state_[s], signals_));
      } else {
        metric_state scratch;
        summary.per_site.push_back(metric_.observe(scratch, signals_));
      }
    }
    if (accumulate) ++observed_;
    if (on_summary && summarize) on_summary(summary);
  }

  /// Per-site scores at the network's current widths.
  std::vector<site_scores> scores() {
    std::vector<site_scores> out;
    const tensor_index<Net> idx(net_);
    for (std::size_t s = 0; s < sites_.size(); ++s) {
      gather(idx, s, window_.end, 0);
      out.push_back({sites_[s].name, metric_.scores(state_[s], signals_), static_cast<int>(sites_[s].taps.size())});
    }
    return out;
  }

  /// The disagreement direction of `filter` in producer tensor `tensor` (empty when the
  /// metric does not track one or nothing was observed).
  std::vector<double> direction(const std::string& tensor, int filter) const {
    for (std::size_t s = 0; s < sites_.size(); ++s) {
      const auto& site = sites_[s];
      const auto it = state_[s].find("direction");
      if (it == state_[s].end() || it->second.empty()) continue;
      tensor_index<Net> idx(net_);
      const int filters = static_cast<int>(idx.param(site.producer_weights.front()).dim(0));
      std::size_t offset = 0, row = 0;
      for (const auto& n : site.producer_weights) row += static_cast<std::size_t>(idx.param(n).numel() / filters);
      for (const auto& n : site.producer_weights) {
        const auto len = static_cast<std::size_t>(idx.param(n).numel() / filters);
        if (n == tensor) {
          if (static_cast<std::size_t>(filter + 1) * row > it->second.size()) return {};
          const auto* base = it->second.data() + static_cast<std::size_t>(filter) * row + offset;
          return {base, base + len};
        }
        offset += len;
      }
    }
    return {};
  }

  /// Stores the recorder's state as tensors "tpm/<site>/<key>" and a metadata entry.
  void save(io::safetensors_file& f) const {
    f.metadata["netsplit.tpm"] = "metric=" + metric_.name() + ";begin=" + std::to_string(window_.begin) +
                                 ";end=" + std::to_string(window_.end) + ";observed=" + std::to_string(observed_) +
                                 ";seed=" + std::to_string(seed_);
    for (std::size_t s = 0; s < sites_.size(); ++s)
      for (const auto& [key, v] : state_[s])
        f.tensors["tpm/" + sites_[s].name + "/" + key] =
            io::tensor_record::from<double>({static_cast<std::int64_t>(v.size())}, std::span<const double>(v));
  }

  /// Restores state saved by save() with the same metric and window; io_error otherwise
  /// (and then nothing changes).
  void load(const io::safetensors_file& f, const std::string& where) { adopt(parse(f, where)); }

 private:
  /// State read from a checkpoint, not yet adopted; `present` is false for a file without
  /// TPM state that may be continued (written before the window).
  struct loaded_state {
    bool present = false;
    std::vector<metric_state> state;
    std::int64_t observed = 0;
  };

  loaded_state parse(const io::safetensors_file& f, const std::string& where) const {
    const auto it = f.metadata.find("netsplit.tpm");
    if (it == f.metadata.end()) {
      // Without TPM state, only a checkpoint from before the window can be continued:
      // resuming inside or after it would score the window from part of its iterations.
      const auto iter_it = f.metadata.find("netsplit.iteration");
      std::int64_t iter = 0;
      try {
        iter = iter_it == f.metadata.end() ? 0 : std::stoll(iter_it->second);
      } catch (const std::exception&) {
        detail::raise<io_error>("netsplit: checkpoint ", where, " has a bad iteration '", iter_it->second, "'");
      }
      if (observed_ == 0 && iter <= window_.begin) return {};
      detail::raise<io_error>("netsplit: checkpoint ", where, " at iteration ", iter, " has no TPM state, but the ",
                              metric_.name(), " window [", window_.begin, ", ", window_.end,
                              ") starts before it: its scores would miss iterations (resume from a checkpoint "
                              "written by a run that recorded this window, or from one before it)");
    }
    const std::string expect_prefix = "metric=" + metric_.name() + ";begin=" + std::to_string(window_.begin) +
                                      ";end=" + std::to_string(window_.end) + ";observed=";
    if (it->second.rfind(expect_prefix, 0) != 0)
      detail::raise<io_error>("netsplit: checkpoint ", where, " holds TPM state '", it->second,
                              "' but this run records ", metric_.name(), " over [", window_.begin, ", ", window_.end, ")");
    const auto rest = it->second.substr(expect_prefix.size());
    std::int64_t observed = 0;
    const auto semi = rest.find(';');
    try {
      observed = std::stoll(rest.substr(0, semi));
    } catch (const std::exception&) {
      detail::raise<io_error>("netsplit: checkpoint ", where, " has a bad TPM observed count in '", it->second, "'");
    }
    std::vector<metric_state> state(sites_.size());
    for (const auto& [name, rec] : f.tensors) {
      if (name.rfind("tpm/", 0) != 0) continue;
      const auto slash = name.find('/', 4);
      if (slash == std::string::npos)
        detail::raise<io_error>("netsplit: checkpoint ", where, " has a malformed TPM tensor name '", name, "'");
      const auto site = name.substr(4, slash - 4);
      std::size_t s = sites_.size();
      for (std::size_t k = 0; k < sites_.size(); ++k)
        if (sites_[k].name == site) s = k;
      if (s == sites_.size())
        detail::raise<io_error>("netsplit: checkpoint ", where, " has TPM state for unknown site '", site, "'");
      state[s][name.substr(slash + 1)] = rec.template as<double>();
    }
    return {true, std::move(state), observed};
  }
  void adopt(loaded_state l) {
    if (!l.present) return;
    state_ = std::move(l.state);
    observed_ = l.observed;
  }

  void gather(const tensor_index<Net>& idx, std::size_t s, std::int64_t iter, unsigned needs) {
    const auto& site = sites_[s];
    std::map<std::string, tensor<T, B>*> grads;
    if (needs & tpm_signal::gradients)
      net_.visit_parameters([&](const std::string& n, tensor<T, B>&, tensor<T, B>& g) { grads[n] = &g; });
    const int filters = static_cast<int>(idx.param(site.producer_weights.front()).dim(0));
    int row = 0;
    for (const auto& n : site.producer_weights) row += static_cast<int>(idx.param(n).numel() / filters);
    signals_ = {};
    signals_.iter = iter;
    signals_.filters = filters;
    signals_.row_length = row;
    signals_.site_seed = rng::derive(seed_, 1000 + s).next_u64();
    auto assemble = [&](std::vector<float>& out, auto get) {
      out.assign(static_cast<std::size_t>(filters) * row, 0.f);
      std::size_t offset = 0;
      for (const auto& n : site.producer_weights) {
        const auto host = get(n).to_host();
        const std::size_t len = host.size() / static_cast<std::size_t>(filters);
        for (std::size_t f = 0; f < static_cast<std::size_t>(filters); ++f)
          for (std::size_t i = 0; i < len; ++i) out[f * row + offset + i] = static_cast<float>(host[f * len + i]);
        offset += len;
      }
    };
    if (needs & tpm_signal::weights) {
      assemble(weights_, [&](const std::string& n) -> tensor<T, B>& { return idx.param(n); });
      signals_.weights = weights_;
    }
    if (needs & tpm_signal::gradients) {
      assemble(gradients_, [&](const std::string& n) -> tensor<T, B>& { return *grads.at(n); });
      signals_.gradients = gradients_;
    }
    if (needs & tpm_signal::bn_scale) {
      // The producers' per-channel scales: batch norm's γ is its "weight" (β its "bias").
      std::vector<std::vector<float>> scales;
      for (const auto& n : site.producer_params)
        if (n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0) {
          const auto h = idx.param(n).to_host();
          scales.emplace_back(h.begin(), h.end());
        }
      const auto count = scales.size();
      bn_scale_.assign(static_cast<std::size_t>(filters) * count, 0.f);
      for (std::size_t k = 0; k < count; ++k)
        for (std::size_t f = 0; f < static_cast<std::size_t>(filters) && f < scales[k].size(); ++f)
          bn_scale_[f * count + k] = scales[k][f];
      signals_.bn_scale = bn_scale_;
      signals_.bn_count = static_cast<int>(count);
    }
    if (needs & (tpm_signal::taylor | tpm_signal::taylor_sum)) {
      taylor_.assign(static_cast<std::size_t>(filters), 0.0);
      taylor_sum_.assign(static_cast<std::size_t>(filters), 0.0);
      for (const auto& tap : site.taps) {
        const auto* a = tap.activation();
        const auto* g = tap.gradient();
        NETSPLIT_EXPECT(a && g && a->shape() == g->shape() && a->dim(1) == filters,
                        "TPM: site '", site.name, "' has no activation/gradient of ", filters,
                        " channels to read (observe must follow a training backward pass)");
        // Host backends are read in place; others are copied once.
        std::vector<T> ah, gh;
        const T* ap = a->data();
        const T* gp = g->data();
        if constexpr (!B::host_memory) {
          ah = a->to_host();
          gh = g->to_host();
          ap = ah.data();
          gp = gh.data();
        }
        // The first taylor_samples samples of the mini-batch (batches are shuffled, so an
        // unbiased subsample): reading every activation and gradient of the network costs
        // more memory bandwidth than it is worth for a score averaged over a window.
        const std::int64_t n = std::min<std::int64_t>(a->dim(0), taylor_samples), plane = a->dim(2) * a->dim(3);
        // One value per (sample, channel) plane, computed in parallel (independent
        // planes: the result does not depend on the thread count), summed in order.
        plane_dot_.assign(static_cast<std::size_t>(n * filters), 0.0);
        auto planes = [&](std::int64_t lo, std::int64_t hi) {
          for (std::int64_t p = lo; p < hi; ++p) plane_dot_[static_cast<std::size_t>(p)] = dot(ap + p * plane, gp + p * plane, plane);
        };
        if (ctx_) ctx_->parallel_for(n * filters, [&](std::ptrdiff_t lo, std::ptrdiff_t hi, int) { planes(lo, hi); });
        else planes(0, n * filters);
        // Spatial mean (taylor) and sum (taylor_sum, the first-order loss change) per sample.
        for (std::int64_t b = 0; b < n; ++b)
          for (int c = 0; c < filters; ++c) {
            const double d = plane_dot_[static_cast<std::size_t>(b * filters + c)];
            taylor_[c] += std::abs(d / double(plane)) / double(n);
            taylor_sum_[c] += std::abs(d) / double(n);
          }
      }
      signals_.taylor = taylor_;
      signals_.taylor_sum = taylor_sum_;
    }
  }

  /// Dot product of two planes with 16 independent partial sums (vectorisable without
  /// reassociation flags); planes hold at most a few thousand values.
  static double dot(const T* a, const T* g, std::int64_t len) {
    T acc[16] = {};
    std::int64_t i = 0;
    for (; i + 16 <= len; i += 16)
      for (int k = 0; k < 16; ++k) acc[k] += a[i + k] * g[i + k];
    double s = 0;
    for (; i < len; ++i) s += double(a[i]) * double(g[i]);
    for (int k = 0; k < 16; ++k) s += double(acc[k]);
    return s;
  }

  Net& net_;
  typename B::context* ctx_ = nullptr;
  std::vector<double> plane_dot_;
  any_tpm_metric metric_;
  tpm_window window_;
  std::uint64_t seed_;
  std::vector<split_site<T, B>> sites_;
  std::vector<metric_state> state_;
  std::int64_t observed_ = 0;
  tpm_window summary_range_{0, 0};
  std::int64_t summary_stride_ = 1;
  site_signals signals_;
  std::vector<float> weights_, gradients_, bn_scale_;
  std::vector<double> taylor_, taylor_sum_;
};

}  // namespace netsplit
