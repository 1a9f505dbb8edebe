// netsplit/tpm/recorder.hpp — records a TPM metric for every split site of a network
// inside an iteration window, on any Backend (signals that are not host-resident are
// staged through the backend's transfer). attach(trainer) hooks observe(iter) into the
// trainer's after_backward (the gradients of the iteration are available and the update
// has not happened), the window's closing read of the weights into after_update, and its
// state into the trainer's checkpoints. Outside [begin, end) it does nothing. Its whole
// state (metric state per site, observed count) goes into checkpoints, so a run resumed
// mid-window ends with the same scores.
// In a data-parallel run (follow(trainer.replica()), which attach does) the signals read
// from activations — the Taylor products of the global batch's first samples, the patch
// covariance of the curvature signal — are summed over the processes, so every process
// scores what one process would on the whole batch; gradients and weights are already
// the same everywhere.
#pragma once

#include <algorithm>
#include <span>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <Eigen/Eigenvalues>

#include "netsplit/core/errors.hpp"
#include "netsplit/io/safetensors.hpp"
#include "netsplit/models/network.hpp"
#include "netsplit/models/structure.hpp"
#include "netsplit/tpm/metrics.hpp"
#include "netsplit/tpm/scores.hpp"
#include "netsplit/train/checkpoint.hpp"
#include "netsplit/train/communicator.hpp"

namespace netsplit {

/// One iteration's summary: per site, the mean over filters of the metric's contribution.
struct tpm_summary {
  std::int64_t iter = 0;
  std::string metric;
  std::vector<double> per_site;
};

namespace detail {
/// All of tpm_recorder but its construction from a network and its checkpoint section: it
/// reaches the network only through the network's parameter and buffer walks, so it is
/// compiled once per scalar and backend, not once per network type.
template <class T, class B>
class tpm_recorder_base {
 public:
  /// The network's walks, as tpm_recorder hands them over (the network outlives the recorder).
  using parameter_walk = std::function<void(parameter_visitor<T, B>)>;
  using buffer_walk = std::function<void(buffer_visitor<T, B>)>;

  /// `ctx` (optional) lends its parallel_for to the Taylor signal.
  tpm_recorder_base(std::vector<split_site<T, B>> sites, parameter_walk params, buffer_walk buffers,
                    any_tpm_metric metric, tpm_window window, std::uint64_t seed, typename B::context* ctx)
      : params_(std::move(params)), buffers_(std::move(buffers)), ctx_(ctx), metric_(std::move(metric)),
        window_(window), seed_(seed), sites_(std::move(sites)) {
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

  /// A new window (the next growth round): the accumulated state is dropped, nothing else
  /// changes. Called after the splits that spent the previous window's scores.
  void restart(tpm_window window) {
    NETSPLIT_EXPECT(window.begin >= 0 && window.end > window.begin, "TPM window [", window.begin, ", ", window.end,
                    ") is empty or negative");
    window_ = window;
    for (auto& st : state_) st.clear();
    observed_ = 0;
  }

  /// Accumulate only every `every`-th iteration of the window (from its first): for costly
  /// metrics (splitting). Summaries are unaffected. A run must resume with the same value.
  void set_observe_every(std::int64_t every) {
    NETSPLIT_EXPECT(every >= 1, "TPM observe interval must be at least 1, got ", every);
    every_ = every;
  }

  /// Report summaries every `stride` iterations of `range` (e.g. the whole run, to draw
  /// where learning happens beyond the window) and only then: the window's iterations are
  /// still all accumulated, but a curve sampled at one interval is not denser inside the
  /// window. Without a range, every window iteration is reported.
  void set_summary_range(tpm_window range, std::int64_t stride) {
    NETSPLIT_EXPECT(stride >= 1, "TPM summary stride must be at least 1, got ", stride);
    summary_range_ = range;
    summary_stride_ = stride;
  }

  /// Reads the shard of the batch this process holds, and sums activation signals over the
  /// processes, from a trainer's replica_view (which must outlive the recorder's use).
  void follow(const replica_view& r) { replica_ = &r; }

  /// Hook into the trainer's after_update (attach does): when `completed` iterations close
  /// the window, a metric with close() reads the weights the window ends with.
  void after_update(std::int64_t completed) {
    if (completed != window_.end || observed_ == 0 || !metric_.closes()) return;
    const auto idx = index();
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
    const auto idx = index();
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

  /// Adds iteration `iter` if it lies in the window; reports its summary when the summary
  /// range asks for one (without a range: every window iteration).
  void observe(std::int64_t iter) {
    const bool accumulate = window_.contains(iter) && (iter - window_.begin) % every_ == 0;
    const bool on_stride =
        summary_range_.contains(iter) && (iter - summary_range_.begin) % summary_stride_ == 0;
    const bool summarize = summary_range_.end > summary_range_.begin ? on_stride : accumulate;
    if (!accumulate && !summarize) return;
    tpm_summary summary{iter, metric_.name(), {}};
    const auto idx = index();
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
    const auto idx = index();
    for (std::size_t s = 0; s < sites_.size(); ++s) {
      gather(idx, s, window_.end, 0);
      out.push_back({sites_[s].name, metric_.scores(state_[s], signals_), static_cast<int>(sites_[s].taps.size()),
                     static_cast<double>(split_cost(idx, sites_[s]))});
    }
    return out;
  }

  /// What the metric sees of site `s` now (the signals it needs, gathered as observe would
  /// at iteration `iter`); valid until the next call. For tests and diagnostics.
  const site_signals& signals_of(std::size_t s, std::int64_t iter) {
    NETSPLIT_EXPECT(s < sites_.size(), "site index ", s, " of ", sites_.size());
    gather(index(), s, iter, metric_.needs());
    return signals_;
  }

  /// The disagreement direction of `filter` in producer tensor `tensor` (empty when the
  /// metric does not track one or nothing was observed).
  std::vector<double> direction(const std::string& tensor, int filter) const {
    for (std::size_t s = 0; s < sites_.size(); ++s) {
      const auto& site = sites_[s];
      const auto it = state_[s].find("direction");
      if (it == state_[s].end() || it->second.empty()) continue;
      const auto idx = index();
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

 protected:
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

 private:

  void gather(const tensor_maps<T, B>& idx, std::size_t s, std::int64_t iter, unsigned needs) {
    const auto& site = sites_[s];
    std::map<std::string, tensor<T, B>*> grads;
    if (needs & tpm_signal::gradients)
      params_([&](const std::string& n, tensor<T, B>&, tensor<T, B>& g) { grads[n] = &g; });
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
        // Data parallel: the global batch's first samples, wherever they are; this process
        // holds samples [offset, offset + local) of it.
        const bool shared = replica_ && replica_->size > 1;
        const std::int64_t global_n = std::min<std::int64_t>(shared ? replica_->global_batch : a->dim(0), taylor_samples);
        const std::int64_t offset = shared ? replica_->offset : 0;
        const std::int64_t n = std::clamp<std::int64_t>(global_n - offset, 0, a->dim(0)), plane = a->dim(2) * a->dim(3);
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
            taylor_[c] += std::abs(d / double(plane)) / double(global_n);
            taylor_sum_[c] += std::abs(d) / double(global_n);
          }
      }
      if (replica_ && replica_->size > 1) {
        replica_->sum(taylor_);
        replica_->sum(taylor_sum_);
      }
      signals_.taylor = taylor_;
      signals_.taylor_sum = taylor_sum_;
    }
    if (needs & tpm_signal::curvature) gather_curvature(idx, s, filters, row);
  }

  /// Per producer weight of site s: the batch covariance of its convolution's input patches
  /// (eigen-decomposed) and its batch norm's γ and dL/dγ (tpm_signal::curvature). The
  /// convolutions pad by (k - 1) / 2 and their stride is input size / the taps' size (every
  /// producer of netsplit's models; anything else is a contract_violation).
  void gather_curvature(const tensor_maps<T, B>& idx, std::size_t s, int filters, int row) {
    const auto& site = sites_[s];
    std::map<std::string, tensor<T, B>*> grads;
    params_([&](const std::string& n, tensor<T, B>&, tensor<T, B>& g) { grads[n] = &g; });
    std::vector<std::string> gammas;
    for (const auto& n : site.producer_params)
      if (n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0) gammas.push_back(n);
    NETSPLIT_EXPECT(gammas.size() == site.producer_weights.size() && site.producer_inputs.size() == gammas.size(),
                    "TPM curvature: site '", site.name, "' has ", site.producer_weights.size(), " producer weights, ",
                    gammas.size(), " batch-norm scales and ", site.producer_inputs.size(), " known inputs");
    NETSPLIT_EXPECT(!site.taps.empty() && site.taps.front().activation(), "TPM curvature: site '", site.name,
                    "' has no activation to read its output size from");
    const auto out_h = site.taps.front().activation()->dim(2), out_w = site.taps.front().activation()->dim(3);
    curv_store_.resize(site.producer_weights.size());
    curvature_.assign(site.producer_weights.size(), {});
    int offset = 0;
    for (std::size_t p = 0; p < site.producer_weights.size(); ++p) {
      const auto& w = idx.param(site.producer_weights[p]);
      const tensor<T, B>* x = site.producer_inputs[p] ? site.producer_inputs[p]() : nullptr;
      NETSPLIT_EXPECT(x != nullptr && x->rank() == 4, "TPM curvature: the input of '", site.producer_weights[p],
                      "' is not known (observe must follow a training forward and backward pass)");
      const int k = static_cast<int>(w.dim(2)), cin = static_cast<int>(w.dim(1)), pad = (k - 1) / 2;
      const auto in_h = x->dim(2), in_w = x->dim(3), n = x->dim(0);
      NETSPLIT_EXPECT(x->dim(1) == cin && out_h > 0 && in_h % out_h == 0 && in_w % out_w == 0,
                      "TPM curvature: '", site.producer_weights[p], "' reads ", x->shape(), " and the site's output is ",
                      out_h, "x", out_w);
      const auto stride = in_h / out_h;
      NETSPLIT_EXPECT(window_output(static_cast<int>(in_h), k, static_cast<int>(stride), pad) == out_h,
                      "TPM curvature: '", site.producer_weights[p], "' is not a same-padded convolution");
      const int D = cin * k * k;
      std::vector<T> xh;
      const T* xp = x->data();
      if constexpr (!B::host_memory) {
        xh = x->to_host();
        xp = xh.data();
      }
      // Σ = E[u uᵀ] - ū ūᵀ over the n * out_h * out_w patches, accumulated in chunks.
      using mat_t = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
      const std::int64_t chunk = 1024;
      std::int64_t positions = n * out_h * out_w;
      Eigen::MatrixXd second = Eigen::MatrixXd::Zero(D, D);
      Eigen::VectorXd mean = Eigen::VectorXd::Zero(D);
      mat_t patches(D, chunk);
      for (std::int64_t start = 0; start < positions; start += chunk) {
        const std::int64_t m = std::min(chunk, positions - start);
        for (std::int64_t j = 0; j < m; ++j) {
          const std::int64_t pos = start + j, img = pos / (out_h * out_w), oy = (pos / out_w) % out_h, ox = pos % out_w;
          T* col = patches.data() + j * D;
          for (int c = 0; c < cin; ++c)
            for (int ky = 0; ky < k; ++ky)
              for (int kx = 0; kx < k; ++kx) {
                const std::int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                col[(c * k + ky) * k + kx] = (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w)
                                                 ? T(0)
                                                 : xp[((img * cin + c) * in_h + iy) * in_w + ix];
              }
        }
        const auto block = patches.leftCols(m);
        second += (block * block.transpose()).template cast<double>();
        mean += block.rowwise().sum().template cast<double>();
      }
      if (replica_ && replica_->size > 1) {  // the whole batch's patches, over every process
        replica_->sum(std::span<double>(second.data(), static_cast<std::size_t>(second.size())));
        replica_->sum(std::span<double>(mean.data(), static_cast<std::size_t>(mean.size())));
        double count[1] = {static_cast<double>(positions)};
        replica_->sum(count);
        positions = static_cast<std::int64_t>(std::llround(count[0]));
      }
      mean /= double(positions);
      const Eigen::MatrixXd sigma = second / double(positions) - mean * mean.transpose();
      const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(sigma);
      NETSPLIT_EXPECT(es.info() == Eigen::Success, "TPM curvature: the eigen-decomposition of '",
                      site.producer_weights[p], "''s patch covariance failed");
      auto& store = curv_store_[p];
      store.values.assign(es.eigenvalues().data(), es.eigenvalues().data() + D);
      store.vectors.assign(es.eigenvectors().data(), es.eigenvectors().data() + std::size_t(D) * D);
      const auto gh = idx.param(gammas[p]).to_host();
      const auto dgh = grads.at(gammas[p])->to_host();
      store.gamma.assign(gh.begin(), gh.end());
      store.dgamma.assign(dgh.begin(), dgh.end());
      NETSPLIT_EXPECT(static_cast<int>(store.gamma.size()) == filters, "TPM curvature: '", gammas[p], "' has ",
                      store.gamma.size(), " channels, the site ", filters, " filters");
      auto& pc = curvature_[p];
      pc.row_offset = offset;
      pc.row_length = D;
      pc.eigenvalues = store.values;
      pc.eigenvectors = store.vectors;
      pc.gamma = store.gamma;
      pc.dgamma = store.dgamma;
      pc.bn_eps = 1e-5;  // layers/batch_norm.hpp
      offset += D;
    }
    NETSPLIT_EXPECT(offset == row, "TPM curvature: site '", site.name, "' rows of ", row, " values, producers ", offset);
    signals_.curvature = curvature_;
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

  /// The network's parameters and buffers by name, at its current widths.
  tensor_maps<T, B> index() const { return {params_, buffers_}; }

  parameter_walk params_;
  buffer_walk buffers_;
  typename B::context* ctx_ = nullptr;
  std::vector<double> plane_dot_;
  any_tpm_metric metric_;
  tpm_window window_;
  std::uint64_t seed_;
  std::vector<split_site<T, B>> sites_;
  std::vector<metric_state> state_;
  std::int64_t observed_ = 0;
  std::int64_t every_ = 1;
  tpm_window summary_range_{0, 0};
  std::int64_t summary_stride_ = 1;
  site_signals signals_;
  const replica_view* replica_ = nullptr;
  std::vector<float> weights_, gradients_, bn_scale_;
  std::vector<double> taylor_, taylor_sum_;
  struct curvature_store {
    std::vector<double> values, vectors, gamma, dgamma;
  };
  std::vector<curvature_store> curv_store_;
  std::vector<producer_curvature> curvature_;
};
}  // namespace detail

/// The TPM recorder of a network of type Net (detail::tpm_recorder_base holds its work).
template <class Net>
class tpm_recorder : public detail::tpm_recorder_base<typename Net::scalar_type, typename Net::backend_type> {
 public:
  using T = typename Net::scalar_type;
  using B = typename Net::backend_type;

  /// `ctx` (optional) lends its parallel_for to the Taylor signal. `net` must outlive the recorder.
  tpm_recorder(Net& net, any_tpm_metric metric, tpm_window window, std::uint64_t seed,
               typename B::context* ctx = nullptr)
      : detail::tpm_recorder_base<T, B>(
            derive_sites(net), [&net](parameter_visitor<T, B> v) { net.visit_parameters(v); },
            [&net](buffer_visitor<T, B> v) { net.visit_buffers(v); }, std::move(metric), window, seed, ctx) {}

  /// Observes every iteration of `tr` (its after_backward hook) and saves and restores its
  /// state with tr's checkpoints. The recorder must outlive tr.
  template <class Trainer>
  void attach(Trainer& tr) {
    this->follow(tr.replica());
    tr.after_backward.add([this](std::int64_t it) { this->observe(it); });
    tr.after_update.add([this](std::int64_t completed) { this->after_update(completed); });
    tr.add_section(section());
  }

  /// The recorder's part of a checkpoint (validate stages the state, apply adopts it).
  checkpoint_section<Net> section() {
    auto staged = std::make_shared<typename detail::tpm_recorder_base<T, B>::loaded_state>();
    checkpoint_section<Net> s;
    s.name = "tpm";
    s.save = [this](io::safetensors_file& f) { this->save(f); };
    s.validate = [this, staged](const io::safetensors_file& f, const std::string& where) { *staged = this->parse(f, where); };
    s.apply = [this, staged](const io::safetensors_file&, const std::string&) { this->adopt(std::move(*staged)); };
    return s;
  }
};

}  // namespace netsplit
