// netsplit/tpm/splitting.hpp — the splitting-matrix score of Splitting Steepest Descent
// (Q. Liu, L. Wu, D. Wang, "Splitting Steepest Descent for Growing Neural Architectures",
// NeurIPS 2019, Theorem 2.2 and eq. (6)), for a convolution filter followed by batch norm.
//
// What it approximates. Split neuron θ (here: filter f of a producer convolution, its
// batch-norm channel and what follows per channel) into two copies with halved outgoing
// weights and incoming weights θ + εδ and θ − εδ (‖δ‖ = 1). The first-order change of the
// loss cancels, and
//     L(split) = L + ε²/2 · δᵀ S δ + O(ε³),   S = Σ_{samples, positions} ∂L/∂h · ∇²_θ h(θ),
// the splitting matrix: the curvature of the neuron's own output h(θ), weighted by the
// gradient that reaches it (the network downstream held fixed; the cross terms between the
// two copies cancel). The best split decreases the loss by −ε²/2 · λ_min(S) along the
// eigenvector of λ_min; a neuron with λ_min ≥ 0 cannot gain to second order. The score of a
// filter is max(0, −λ_min(S)), averaged over the window's iterations (a mean of per-batch
// eigenvalues, not the eigenvalue of the mean matrix).
//
// The matrix in closed form. Take h = relu(y + r), y = γ (z − mean z)/sqrt(var z + eps) + β
// the train-mode batch norm of z = θᵀu (u: the filter's input patch, D = in x k x k values;
// r: a residual added before the ReLU, or 0). With Σ the batch covariance of the patches,
// w = Σθ, s² = θᵀΣθ + eps, g = dL/dθ (the mini-batch weight gradient), dγ = dL/dγ:
//     S = −(g wᵀ + w gᵀ)/s² − (γ dγ / s²) (Σ − w wᵀ / s²).
// (From ∇²_θ (a/s) with a = θᵀ(u − ū): −(c wᵀ + w cᵀ)/s³ − aΣ/s³ + 3a wwᵀ/s⁵ summed against
// dL/dy, then Σ dL/dy·c = (s/γ) g + A w/s² and A = Σ dL/dy·a = s·dγ.) So S needs only Σ of
// the producer's input and the gradients every training step computes. In Σ's eigenbasis
// S is a diagonal matrix plus a rank-2 term; λ_min is found by bisection on the count of
// eigenvalues below x (Haynsworth inertia additivity), O(D) per step, exact to rounding.
//
// Coupled groups (a residual stream's channel, one producer per block): a channel's copies
// meet other producers only through sums and ReLUs (piecewise linear), so the cross terms
// between producers vanish almost everywhere and S is block diagonal; λ_min is the least of
// the producers' (split that producer's copies alone to get it).
//
// Where it breaks for ReLU nets. The ReLU's own curvature is a Dirac at 0: the formula
// holds almost everywhere (no pre-activation exactly at 0 on the batch), so S is the
// curvature that batch normalisation gives the neuron, and the kinks are missed; for a
// finite ε the samples whose pre-activation crosses 0 change the loss by O(ε²) too. Without
// batch norm (eval mode, or an affine neuron) S is zero: the score is meaningful only for
// conv + train-mode batch-norm neurons, which every producer in netsplit's models is.
// Max pooling and later ReLUs are piecewise linear and add nothing almost everywhere.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/tpm/metric.hpp"

namespace netsplit {

namespace detail {

/// S of filter f of one producer, in the eigenbasis of Σ: S' = diag(d) + U C Uᵀ with
/// U = [g', w'] (g' = Qᵀg, w' = Λ Qᵀθ), C = [[0, −1/s²], [−1/s², κ/s²]], d = −κΛ, κ = γ dγ/s².
struct splitting_form {
  std::vector<double> d, gq, wq;
  double s2 = 1, kappa = 0;
};

/// theta and grad: the filter's D incoming weights and their gradient (the producer's block).
template <class F>
splitting_form splitting_form_of(const producer_curvature& pc, const F* theta, const F* grad, double gamma,
                                 double dgamma) {
  const auto D = static_cast<std::size_t>(pc.row_length);
  NETSPLIT_EXPECT(pc.eigenvalues.size() == D && pc.eigenvectors.size() == D * D,
                  "splitting: producer curvature of ", pc.eigenvalues.size(), " eigenvalues for a row of ", D);
  splitting_form out;
  out.gq.assign(D, 0.0);
  out.wq.assign(D, 0.0);
  out.d.assign(D, 0.0);
  double s2 = pc.bn_eps;
  for (std::size_t k = 0; k < D; ++k) {
    const double* q = pc.eigenvectors.data() + k * D;
    double tq = 0, gk = 0;
    for (std::size_t i = 0; i < D; ++i) {
      tq += q[i] * double(theta[i]);
      gk += q[i] * double(grad[i]);
    }
    const double lam = std::max(0.0, pc.eigenvalues[k]);  // a covariance: rounding can leave -1e-17
    out.gq[k] = gk;
    out.wq[k] = lam * tq;
    s2 += lam * tq * tq;
  }
  out.s2 = s2;
  out.kappa = gamma * dgamma / s2;
  for (std::size_t k = 0; k < D; ++k) out.d[k] = -out.kappa * std::max(0.0, pc.eigenvalues[k]);
  return out;
}

/// Number of negative eigenvalues of the symmetric 2x2 [[a, b], [b, c]].
inline int negatives_2x2(double a, double b, double c) {
  const double det = a * c - b * b, tr = a + c;
  if (det < 0) return 1;
  if (det > 0) return tr < 0 ? 2 : 0;
  return tr < 0 ? 1 : 0;
}

/// Eigenvalues of S' below x (x equal to no d_i): by Haynsworth's inertia additivity on
/// [[D − x, U], [Uᵀ, −C⁻¹]], neg(S' − x) = neg(D − x) + neg(−C⁻¹ − Uᵀ(D − x)⁻¹U) − neg(−C⁻¹),
/// and −C⁻¹ = [[κs², s²], [s², 0]] has exactly one negative eigenvalue.
inline int splitting_count_below(const splitting_form& f, double x) {
  int below = 0;
  double gg = 0, gw = 0, ww = 0;
  for (std::size_t i = 0; i < f.d.size(); ++i) {
    const double t = f.d[i] - x;
    if (t < 0) ++below;
    gg += f.gq[i] * f.gq[i] / t;
    gw += f.gq[i] * f.wq[i] / t;
    ww += f.wq[i] * f.wq[i] / t;
  }
  return below + negatives_2x2(f.kappa * f.s2 - gg, f.s2 - gw, -ww) - 1;
}

/// λ_min of S' by bisection on splitting_count_below (to the last bits of a double).
inline double splitting_min_eigenvalue(const splitting_form& f) {
  if (f.d.empty()) return 0.0;
  double dmin = f.d.front(), gn = 0, wn = 0;
  for (std::size_t i = 0; i < f.d.size(); ++i) {
    dmin = std::min(dmin, f.d[i]);
    gn += f.gq[i] * f.gq[i];
    wn += f.wq[i] * f.wq[i];
  }
  // Weyl: the rank-2 term moves eigenvalues by at most its spectral norm r.
  const double r = (2 * std::sqrt(gn * wn) + std::abs(f.kappa) * wn) / f.s2;
  double scale = std::abs(dmin) + r;
  for (const double v : f.d) scale = std::max(scale, std::abs(v));
  if (scale == 0) return 0.0;
  double lo = dmin - r - 1e-12 * scale, hi = dmin + r + 1e-12 * scale;
  auto count = [&](double x) {
    // keep x off the poles d_i (a pole is an eigenvalue of D − x: nudge by one ulp of scale)
    for (const double v : f.d)
      if (v == x) x = std::nextafter(x, x + scale);
    return splitting_count_below(f, x);
  };
  for (int it = 0; it < 200 && hi - lo > 4e-16 * scale; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (count(mid) >= 1) hi = mid;
    else lo = mid;
  }
  return 0.5 * (lo + hi);
}

/// The dense D x D splitting matrix of one filter (row-major), for tests and diagnostics.
template <class F>
std::vector<double> splitting_matrix(const producer_curvature& pc, const F* theta, const F* grad, double gamma,
                                     double dgamma) {
  const auto D = static_cast<std::size_t>(pc.row_length);
  // Σ = Q Λ Qᵀ, w = Σθ
  std::vector<double> sigma(D * D, 0.0), w(D, 0.0);
  for (std::size_t k = 0; k < D; ++k) {
    const double* q = pc.eigenvectors.data() + k * D;
    const double lam = std::max(0.0, pc.eigenvalues[k]);
    for (std::size_t i = 0; i < D; ++i)
      for (std::size_t j = 0; j < D; ++j) sigma[i * D + j] += lam * q[i] * q[j];
  }
  double s2 = pc.bn_eps;
  for (std::size_t i = 0; i < D; ++i) {
    for (std::size_t j = 0; j < D; ++j) w[i] += sigma[i * D + j] * double(theta[j]);
    s2 += double(theta[i]) * w[i];
  }
  const double kappa = gamma * dgamma / s2;
  std::vector<double> S(D * D);
  for (std::size_t i = 0; i < D; ++i)
    for (std::size_t j = 0; j < D; ++j)
      S[i * D + j] = -(double(grad[i]) * w[j] + w[i] * double(grad[j])) / s2 - kappa * (sigma[i * D + j] - w[i] * w[j] / s2);
  return S;
}

}  // namespace detail

/// The splitting-matrix score (see the file comment): per filter max(0, −λ_min(S)), the
/// least over the site's producers, averaged over the observed iterations.
struct splitting {
  std::string name() const { return "splitting"; }
  unsigned needs() const { return tpm_signal::weights | tpm_signal::gradients | tpm_signal::curvature; }

  /// Per filter, λ_min of its splitting matrix at this iteration (least over producers).
  static std::vector<double> min_eigenvalues(const site_signals& s) {
    NETSPLIT_EXPECT(!s.curvature.empty(), "the splitting metric needs the producers' curvature signal");
    std::vector<double> out(static_cast<std::size_t>(s.filters), 0.0);
    for (int f = 0; f < s.filters; ++f) {
      double least = 0;
      bool first = true;
      for (const auto& pc : s.curvature) {
        const auto row = static_cast<std::size_t>(f) * static_cast<std::size_t>(s.row_length) +
                         static_cast<std::size_t>(pc.row_offset);
        const auto form = detail::splitting_form_of(pc, s.weights.data() + row, s.gradients.data() + row,
                                                    pc.gamma[static_cast<std::size_t>(f)],
                                                    pc.dgamma[static_cast<std::size_t>(f)]);
        const double lam = detail::splitting_min_eigenvalue(form);
        least = first ? lam : std::min(least, lam);
        first = false;
      }
      out[static_cast<std::size_t>(f)] = least;
    }
    return out;
  }

  double observe(metric_state& st, const site_signals& s) const {
    const auto lam = min_eigenvalues(s);
    auto& sum = st["sum"];
    sum.resize(static_cast<std::size_t>(s.filters), 0.0);
    st["count"].resize(1, 0.0);
    double mean = 0;
    for (std::size_t f = 0; f < lam.size(); ++f) {
      const double gain = std::max(0.0, -lam[f]);
      sum[f] += gain;
      mean += gain;
    }
    st["count"][0] += 1;
    return mean / std::max(1, s.filters);
  }
  std::vector<double> scores(const metric_state& st, const site_signals& s) const {
    return detail::window_mean(st, s.filters);
  }
};

static_assert(TpmMetric<splitting>);

}  // namespace netsplit
