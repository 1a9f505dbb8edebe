// tests/gradient_check.hpp — one reusable central-difference gradient checker for any
// Layer (in double): loss L = sum(forward(x) * r) for a fixed random r, analytic gradients
// from backward(r), numeric ones from (L(v + h) - L(v - h)) / 2h for sampled elements of
// the input and of every parameter, by the five-point stencil
// (f(v-2h) - 8f(v-h) + 8f(v+h) - f(v+2h)) / 12h, whose O(h^4) truncation error stays far
// below the 1e-6 threshold (a plain two-point difference loses ~1e-7 to cancellation).
// Relative error is |a - n| / max(|a|, |n|, 1e-3): the floor keeps near-zero gradients
// from dividing by noise.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "netsplit/netsplit.hpp"

namespace netsplit::testing {

using cpu_tensor = tensor<double, cpu_backend>;

struct gradient_report {
  double max_input_error = 0;
  double max_param_error = 0;
  std::string worst;  // where the largest error occurred
  std::size_t checked = 0;
  std::size_t kinks = 0;  // samples whose stencil at h straddled a kink (checked at h / 2 instead)
  double max_error() const { return std::max(max_input_error, max_param_error); }
};

inline cpu_tensor random_tensor(tensor_shape s, rng& r, double scale = 1.0) {
  cpu_tensor t(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = r.normal() * scale;
  return t;
}

/// Five-point central difference of loss() with respect to the scalar v (restored after).
template <class T, class F>
double numeric_derivative(T& v, F&& loss, double h = 1e-4) {
  const T saved = v;
  auto at = [&](double k) {
    v = static_cast<T>(saved + k * h);
    return loss();
  };
  const double d = (at(-2) - 8 * at(-1) + 8 * at(1) - at(2)) / (12 * h);
  v = saved;
  return d;
}

inline double rel_error(double a, double n) {
  return std::abs(a - n) / std::max({std::abs(a), std::abs(n), 1e-3});
}

/// rel_error of the analytic derivative a against the difference quotient of loss() in v at
/// h; where that is above 1e-5, the quotient at h / 2 as well. A ReLU kink within the
/// stencil (v +- 2h) moves the quotient by a step, so the two quotients then disagree: the
/// sample is counted in rep.kinks and judged at h / 2. A wrong analytic value stays wrong at
/// both (the smooth quotients agree to O(h^4)), so it is still reported.
template <class T, class F>
double checked_error(double a, T& v, F&& loss, double h, gradient_report& rep) {
  const double n = numeric_derivative(v, loss, h);
  const double e = rel_error(a, n);
  if (e <= 1e-5) return e;
  const double n2 = numeric_derivative(v, loss, h / 2);
  if (rel_error(n, n2) <= 1e-5) return e;  // smooth: the quotient at h stands
  ++rep.kinks;
  return rel_error(a, n2);
}

/// Indices to check: all when the tensor is small, else a seeded sample of `limit`.
inline std::vector<std::int64_t> sample_indices(std::int64_t numel, std::size_t limit, rng& r) {
  std::vector<std::int64_t> idx;
  if (static_cast<std::size_t>(numel) <= limit) {
    for (std::int64_t i = 0; i < numel; ++i) idx.push_back(i);
  } else {
    for (std::size_t k = 0; k < limit; ++k) idx.push_back(static_cast<std::int64_t>(r.uniform_int(numel)));
  }
  return idx;
}

template <class L>
double projected_loss(L& layer, cpu_context& ctx, const cpu_tensor& x, const cpu_tensor& r, phase p) {
  const auto& y = layer.forward(ctx, x, p);
  double s = 0;
  for (std::int64_t i = 0; i < y.numel(); ++i) s += y.data()[i] * r.data()[i];
  return s;
}

/// Checks dL/dx and dL/dθ of `layer` at input x. Returns the worst relative errors.
template <class L>
gradient_report check_layer_gradients(L& layer, cpu_context& ctx, cpu_tensor x, phase p,
                                      std::uint64_t seed = 7, std::size_t limit = 60, double h = 1e-4) {
  rng r(seed);
  const auto& y0 = layer.forward(ctx, x, p);
  const cpu_tensor proj = random_tensor(y0.shape(), r);
  const cpu_tensor dx = layer.backward(ctx, proj, true);
  std::vector<std::pair<std::string, cpu_tensor>> grads;
  if constexpr (HasParameters<L>)
    layer.visit_parameters([&](const std::string& n, auto&, auto& g) { grads.emplace_back(n, g); });

  gradient_report rep;
  for (auto i : sample_indices(x.numel(), limit, r)) {
    const double e =
        checked_error(dx.data()[i], x.data()[i], [&] { return projected_loss(layer, ctx, x, proj, p); }, h, rep);
    ++rep.checked;
    if (e > rep.max_input_error) {
      rep.max_input_error = e;
      if (e >= rep.max_param_error) rep.worst = "input[" + std::to_string(i) + "]";
    }
  }
  if constexpr (HasParameters<L>) {
    std::size_t k = 0;
    layer.visit_parameters([&](const std::string& n, auto& w, auto&) {
      const cpu_tensor& g = grads[k++].second;
      for (auto i : sample_indices(w.numel(), limit, r)) {
        const double e =
            checked_error(g.data()[i], w.data()[i], [&] { return projected_loss(layer, ctx, x, proj, p); }, h, rep);
        ++rep.checked;
        if (e > rep.max_param_error) {
          rep.max_param_error = e;
          if (e >= rep.max_input_error) rep.worst = n + "[" + std::to_string(i) + "]";
        }
      }
    });
  }
  return rep;
}

}  // namespace netsplit::testing
