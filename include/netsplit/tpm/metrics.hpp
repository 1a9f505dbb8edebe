// netsplit/tpm/metrics.hpp — the shipped TpmMetric models and any_tpm_metric, a value
// type holding one of them (chosen at run time).
//  * taylor: first-order Taylor saliency (Molchanov et al. 2017): per sample, the absolute
//    spatial mean of activation x gradient of the channel, averaged over the samples the
//    recorder reads (the first 32 of each shuffled mini-batch), then over the window.
//  * weight_motion: ||w_last - w_first|| of the filter's incoming weights over the window
//    (also computable offline from two checkpoints: weight_motion_between).
//  * grad_disagreement: sum over the filter's weights of the variance of its mini-batch
//    gradient over the window; it also tracks, by Oja's rule on the centred gradients, the
//    direction in which the gradients disagree most (used by the gradient_direction split).
//  * l1_norm (control): ||w||_1 of the filter at the last observed iteration.
//  * random_score (control): a uniform score from the seed, the site and the filter.
#pragma once

#include <cmath>
#include <numeric>
#include <string>
#include <variant>
#include <vector>

#include "netsplit/core/random.hpp"
#include "netsplit/tpm/metric.hpp"

namespace netsplit {

struct taylor {
  std::string name() const { return "taylor"; }
  unsigned needs() const { return tpm_signal::taylor; }
  double observe(metric_state& st, const site_signals& s) const {
    auto& sum = st["sum"];
    sum.resize(static_cast<std::size_t>(s.filters), 0.0);
    st["count"].resize(1, 0.0);
    double mean = 0;
    for (int f = 0; f < s.filters; ++f) {
      sum[f] += s.taylor[f];
      mean += s.taylor[f];
    }
    st["count"][0] += 1;
    return mean / s.filters;
  }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    std::vector<double> out(static_cast<std::size_t>(s.filters), 0.0);
    const auto it = st.find("sum");
    const auto c = st.find("count");
    if (it == st.end() || c == st.end() || c->second.empty() || c->second[0] == 0) return out;
    for (int f = 0; f < s.filters && f < static_cast<int>(it->second.size()); ++f) out[f] = it->second[f] / c->second[0];
    return out;
  }
};

struct weight_motion {
  std::string name() const { return "weight_motion"; }
  unsigned needs() const { return tpm_signal::weights; }
  double observe(metric_state& st, const site_signals& s) const {
    auto& first = st["first"];
    auto& last = st["last"];
    if (first.empty()) first.assign(s.weights.begin(), s.weights.end());
    last.assign(s.weights.begin(), s.weights.end());
    const auto sc = scores(st, s);
    return std::accumulate(sc.begin(), sc.end(), 0.0) / s.filters;
  }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    std::vector<double> out(static_cast<std::size_t>(s.filters), 0.0);
    const auto a = st.find("first"), b = st.find("last");
    if (a == st.end() || b == st.end()) return out;
    const std::size_t row = static_cast<std::size_t>(s.row_length);
    for (std::size_t f = 0; f < out.size() && (f + 1) * row <= a->second.size(); ++f) {
      double d = 0;
      for (std::size_t i = f * row; i < (f + 1) * row; ++i) d += (b->second[i] - a->second[i]) * (b->second[i] - a->second[i]);
      out[f] = std::sqrt(d);
    }
    return out;
  }
};

/// Per-filter ||a_f - b_f|| between two weight matrices of `filters` rows (offline form of
/// weight_motion, e.g. from two checkpoints).
inline std::vector<double> weight_motion_between(std::span<const float> a, std::span<const float> b, int filters) {
  std::vector<double> out(static_cast<std::size_t>(filters), 0.0);
  const std::size_t row = filters ? a.size() / static_cast<std::size_t>(filters) : 0;
  for (std::size_t f = 0; f < out.size(); ++f) {
    double d = 0;
    for (std::size_t i = f * row; i < (f + 1) * row; ++i) d += double(a[i] - b[i]) * double(a[i] - b[i]);
    out[f] = std::sqrt(d);
  }
  return out;
}

struct grad_disagreement {
  double oja_rate = 0.1;  // step of the direction update, relative to the gradient scale
  std::string name() const { return "grad_disagreement"; }
  unsigned needs() const { return tpm_signal::gradients; }
  double observe(metric_state& st, const site_signals& s) const {
    const std::size_t n = s.gradients.size(), row = static_cast<std::size_t>(s.row_length);
    auto& sum = st["sum"];
    auto& sq = st["sumsq"];
    auto& dir = st["direction"];
    auto& count = st["count"];
    if (sum.size() != n) {
      sum.assign(n, 0.0);
      sq.assign(n, 0.0);
      dir.assign(n, 0.0);
      count.assign(1, 0.0);
    }
    double inst = 0;
    const double k = count[0];
    for (std::size_t f = 0; f < static_cast<std::size_t>(s.filters); ++f) {
      // centred gradient against the mean so far (zero before the first observation)
      double proj = 0, cn = 0, dn = 0;
      for (std::size_t i = f * row; i < (f + 1) * row; ++i) {
        const double c = k > 0 ? s.gradients[i] - sum[i] / k : 0.0;
        proj += c * dir[i];
        cn += c * c;
        dn += dir[i] * dir[i];
      }
      inst += cn;
      if (cn > 0) {
        if (dn == 0) {  // first non-zero centred gradient initialises the direction
          for (std::size_t i = f * row; i < (f + 1) * row; ++i) dir[i] = s.gradients[i] - sum[i] / k;
        } else {
          const double eta = oja_rate / cn;
          for (std::size_t i = f * row; i < (f + 1) * row; ++i) dir[i] += eta * proj * (s.gradients[i] - sum[i] / k);
        }
        double norm = 0;
        for (std::size_t i = f * row; i < (f + 1) * row; ++i) norm += dir[i] * dir[i];
        norm = std::sqrt(norm);
        if (norm > 0)
          for (std::size_t i = f * row; i < (f + 1) * row; ++i) dir[i] /= norm;
      }
      for (std::size_t i = f * row; i < (f + 1) * row; ++i) {
        sum[i] += s.gradients[i];
        sq[i] += double(s.gradients[i]) * s.gradients[i];
      }
    }
    count[0] += 1;
    return inst / s.filters;
  }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    std::vector<double> out(static_cast<std::size_t>(s.filters), 0.0);
    const auto a = st.find("sum"), b = st.find("sumsq"), c = st.find("count");
    if (a == st.end() || b == st.end() || c == st.end() || c->second.empty() || c->second[0] == 0) return out;
    const double k = c->second[0];
    const std::size_t row = static_cast<std::size_t>(s.row_length);
    for (std::size_t f = 0; f < out.size() && (f + 1) * row <= a->second.size(); ++f) {
      double v = 0;
      for (std::size_t i = f * row; i < (f + 1) * row; ++i) {
        const double m = a->second[i] / k;
        v += std::max(0.0, b->second[i] / k - m * m);
      }
      out[f] = v;
    }
    return out;
  }
};

struct l1_norm {
  std::string name() const { return "l1_norm"; }
  unsigned needs() const { return tpm_signal::weights; }
  double observe(metric_state& st, const site_signals& s) const {
    auto& l1 = st["l1"];
    l1.assign(static_cast<std::size_t>(s.filters), 0.0);
    const std::size_t row = static_cast<std::size_t>(s.row_length);
    double mean = 0;
    for (std::size_t f = 0; f < l1.size(); ++f) {
      for (std::size_t i = f * row; i < (f + 1) * row; ++i) l1[f] += std::abs(double(s.weights[i]));
      mean += l1[f];
    }
    return mean / s.filters;
  }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    const auto it = st.find("l1");
    std::vector<double> out(static_cast<std::size_t>(s.filters), 0.0);
    if (it != st.end())
      for (std::size_t f = 0; f < out.size() && f < it->second.size(); ++f) out[f] = it->second[f];
    return out;
  }
};

struct random_score {
  std::string name() const { return "random"; }
  unsigned needs() const { return 0; }
  double observe(metric_state& st, const site_signals&) const {
    st["count"].resize(1, 0.0);
    st["count"][0] += 1;
    return 0.0;
  }
  std::vector<double> scores(const metric_state&, const site_signals& s) const {
    rng r(s.site_seed);
    std::vector<double> out(static_cast<std::size_t>(s.filters));
    for (auto& v : out) v = r.uniform();
    return out;
  }
};

static_assert(TpmMetric<taylor> && TpmMetric<weight_motion> && TpmMetric<grad_disagreement> &&
              TpmMetric<l1_norm> && TpmMetric<random_score>);

/// Any shipped metric, chosen at run time by name.
class any_tpm_metric {
 public:
  using variant_type = std::variant<taylor, weight_motion, grad_disagreement, l1_norm, random_score>;
  any_tpm_metric() = default;
  template <TpmMetric M>
    requires std::constructible_from<variant_type, M>
  any_tpm_metric(M m) : v_(std::move(m)) {}
  std::string name() const { return std::visit([](const auto& m) { return m.name(); }, v_); }
  unsigned needs() const { return std::visit([](const auto& m) { return m.needs(); }, v_); }
  double observe(metric_state& st, const site_signals& s) const {
    return std::visit([&](const auto& m) { return m.observe(st, s); }, v_);
  }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    return std::visit([&](const auto& m) { return m.scores(st, s); }, v_);
  }

 private:
  variant_type v_{taylor{}};
};
static_assert(TpmMetric<any_tpm_metric>);

/// The names accepted by make_tpm_metric.
inline std::vector<std::string> tpm_metric_names() {
  return {"taylor", "weight_motion", "grad_disagreement", "l1_norm", "random"};
}
/// A metric by name; contract_violation listing the known names otherwise.
inline any_tpm_metric make_tpm_metric(const std::string& name) {
  if (name == "taylor") return taylor{};
  if (name == "weight_motion") return weight_motion{};
  if (name == "grad_disagreement") return grad_disagreement{};
  if (name == "l1_norm") return l1_norm{};
  if (name == "random") return random_score{};
  std::string known;
  for (const auto& n : tpm_metric_names()) known += (known.empty() ? "" : ", ") + n;
  detail::raise<contract_violation>("netsplit: unknown TPM metric '", name, "' (known: ", known, ")");
}

}  // namespace netsplit
