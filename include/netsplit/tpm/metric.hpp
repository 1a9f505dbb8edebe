// netsplit/tpm/metric.hpp — the TpmMetric concept: a per-filter split score accumulated
// over an iteration window [begin, end).
// A metric declares the signals it needs (weights, weight gradients, activation x
// gradient), so the recorder gathers only those; it keeps all its state in a
// metric_state (named vectors of doubles) owned by the recorder, so state is saved in
// checkpoints generically and a run resumed mid-window gives the same scores.
#pragma once

#include <concepts>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace netsplit {

/// The iteration window [begin, end) in which a metric accumulates.
struct tpm_window {
  std::int64_t begin = 0, end = 0;
  bool contains(std::int64_t iter) const { return iter >= begin && iter < end; }
  std::int64_t length() const { return end - begin; }
};

namespace tpm_signal {
inline constexpr unsigned weights = 1u;         // producer conv weights
inline constexpr unsigned gradients = 2u;       // their mini-batch gradients
inline constexpr unsigned taylor = 4u;          // per-channel |activation x gradient| of the site's output, spatial mean
inline constexpr unsigned taylor_sum = 8u;      // the same, spatial sum (the first-order change of the loss)
inline constexpr unsigned bn_scale = 16u;       // per-channel scales (BatchNorm γ) of the site's producers
inline constexpr unsigned curvature = 32u;      // per producer: input-patch covariance (eigen), BN γ and dL/dγ
}  // namespace tpm_signal

/// One producer convolution of a site (followed by its batch norm), as a curvature metric
/// sees it at one iteration: the batch covariance Σ of the convolution's input patches
/// (every output position of every sample; D = row_length = in_channels x k x k values,
/// zero padding included), as its eigen-decomposition, and per filter the batch norm's
/// scale γ and the mini-batch gradient dL/dγ.
struct producer_curvature {
  int row_offset = 0, row_length = 0;    // the producer's block within a filter's row
  std::span<const double> eigenvalues;   // D, ascending
  std::span<const double> eigenvectors;  // D x D, column-major: column k is eigenvector k
  std::span<const double> gamma, dgamma;  // per filter
  double bn_eps = 1e-5;
};

/// What a metric sees of one site at one iteration. Rows are per filter: filter f's row is
/// the concatenation of its incoming weights in every producer of the site (row_length
/// values), so a coupled group's filter is scored as one unit.
struct site_signals {
  std::int64_t iter = 0;
  int filters = 0;
  int row_length = 0;
  std::span<const float> weights;  // filters * row_length, when requested
  std::span<const float> gradients;
  std::span<const double> taylor;      // filters, when requested: per sample |mean over H*W of a*g|
  std::span<const double> taylor_sum;  // filters, when requested: per sample |sum over H*W of a*g|
  /// filters * bn_count, when requested: filter f's scale (γ) in each of the site's batch
  /// norms (its producer parameters named "*.weight"), filter by filter.
  std::span<const float> bn_scale;
  int bn_count = 0;
  /// When requested: one entry per producer weight of the site, in the row's order.
  std::span<const producer_curvature> curvature;
  std::uint64_t site_seed = 0;     // for the random control: derived from seed and site
};

using metric_state = std::map<std::string, std::vector<double>>;

namespace detail {
/// Per filter, state "sum" divided by state "count" (zeros where nothing was observed): the
/// window mean of a metric that adds one value per filter and observed iteration.
inline std::vector<double> window_mean(const metric_state& st, int filters) {
  std::vector<double> out(static_cast<std::size_t>(filters), 0.0);
  const auto it = st.find("sum");
  const auto c = st.find("count");
  if (it == st.end() || c == st.end() || c->second.empty() || c->second[0] == 0) return out;
  for (int f = 0; f < filters && f < static_cast<int>(it->second.size()); ++f) out[f] = it->second[f] / c->second[0];
  return out;
}
}  // namespace detail

/// Requires: name(); needs() (a mask of tpm_signal bits); observe(state, signals) adds one
/// iteration and returns a summary of this iteration (mean over filters of its
/// instantaneous contribution) for the "where learning happens" curve; scores(state,
/// signals) gives the per-filter scores from the accumulated state (non-negative; larger
/// means split first). observe must be deterministic. Optional: close(state, signals),
/// called once after the update of the window's last iteration, with the weights the
/// window ends with (a metric of how weights moved reads w(end), as two checkpoints at
/// begin and end would show). Optional: weight_like(key), true for state that lives in
/// weight space (grows with a split as the weights do: tpm_recorder::grow); other row state
/// is treated as gradient statistics.
template <class M>
concept TpmMetric = requires(const M& m, metric_state& st, const metric_state& cst, const site_signals& s) {
  { m.name() } -> std::convertible_to<std::string>;
  { m.needs() } -> std::convertible_to<unsigned>;
  { m.observe(st, s) } -> std::convertible_to<double>;
  { m.scores(cst, s) } -> std::same_as<std::vector<double>>;
};

}  // namespace netsplit
