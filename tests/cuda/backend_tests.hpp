// tests/cuda/backend_tests.hpp — helpers shared by the CUDA backend's test bodies.
// Every body is a template on the backend under test B and compares B with cpu_backend
// (one thread, the reference) on the same inputs. The same sources are compiled for
// thrust's CPP system (g++, CI) and for the GPU (nvcc, label gpu): `backend_under_test`.
//
// Tolerances (max |got - want| / max |want| over a tensor, "relative to the tensor"):
//   exact     element-wise selections (relu, its gradient), memory copies, transfers
//   1e-6      other element-wise arithmetic (FMA contraction may differ)
//   1e-4      convolutions, BN, linear, pooling, loss: sums in another order (cuDNN/cuBLAS
//             pick their own), fp32 throughout (cuda_options::allow_tf32 stays off)
//   1e-3      whole networks after training steps (errors of ~60 layers compound)
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "netsplit/cuda.hpp"

namespace netsplit_test {

using namespace netsplit;
using backend_under_test = cuda_backend;
using cpu = cpu_backend;

/// The CPU backend as the reference: one thread, direct convolution. The direct form sums
/// each output in the same order as a GEMM-lowered convolution; its Winograd form rounds
/// differently, which is harmless per operation (conv tests hold it to 1e-4) but is
/// amplified in the gradients that nearly cancel in these tiny networks (a BN shift's
/// gradient behind a train-mode BN: measured 8% apart between Winograd and direct on the
/// CPU alone, batch 8, 8x8 maps).
struct reference_cpu : cpu_context {
  reference_cpu() : cpu_context(1) { set_conv_algorithm(cpu_conv_algorithm::direct); }
};

inline constexpr double exact = 0.0;
inline constexpr double elementwise_tol = 1e-6;
inline constexpr double op_tol = 1e-4;
inline constexpr double network_tol = 1e-3;

inline std::vector<float> random_values(std::size_t n, std::uint64_t seed, double scale = 1.0, double offset = 0.0) {
  rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(offset + scale * r.normal());
  return v;
}

template <class T, class B>
tensor<T, B> make_tensor(tensor_shape s, const std::vector<T>& values) {
  tensor<T, B> t(s);
  t.from_host(values);
  return t;
}

/// max |got - want| / max |want| (with a floor of 1e-12 on the denominator).
inline double max_rel(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double d = 0, m = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double diff = std::abs(double(got[i]) - double(want[i]));
    d = std::isnan(diff) ? INFINITY : std::max(d, diff);
    m = std::max(m, std::abs(double(want[i])));
  }
  return d / std::max(m, 1e-12);
}

/// max |got - want| / max(max |want|, scale): for results that are small differences of terms of
/// size `scale` (rounding in those terms is what the comparison can resolve).
inline double max_rel_to(const std::vector<float>& got, const std::vector<float>& want, double scale) {
  REQUIRE(got.size() == want.size());
  double d = 0, m = scale;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double diff = std::abs(double(got[i]) - double(want[i]));
    d = std::isnan(diff) ? INFINITY : std::max(d, diff);
    m = std::max(m, std::abs(double(want[i])));
  }
  return d / std::max(m, 1e-12);
}

#define NETSPLIT_CHECK_CLOSE(got, want, tol)               \
  do {                                                     \
    const double rel_ = ::netsplit_test::max_rel(got, want); \
    INFO("relative difference " << rel_ << " (tolerance " << (tol) << ")"); \
    CHECK(rel_ <= (tol));                                  \
  } while (0)

/// Parameters then buffers of a model, in visiting order, as host vectors.
template <class M>
std::vector<std::vector<float>> state_of(M& m) {
  std::vector<std::vector<float>> out;
  if constexpr (requires { m.visit_parameters([](const std::string&, auto&, auto&) {}); })
    m.visit_parameters([&](const std::string&, auto& w, auto&) { out.push_back(w.to_host()); });
  if constexpr (requires { m.visit_buffers([](const std::string&, auto&) {}); })
    m.visit_buffers([&](const std::string&, auto& b) { out.push_back(b.to_host()); });
  return out;
}
/// Parameter gradients of a model, in visiting order.
template <class M>
std::vector<std::vector<float>> grads_of(M& m) {
  std::vector<std::vector<float>> out;
  if constexpr (requires { m.visit_parameters([](const std::string&, auto&, auto&) {}); })
    m.visit_parameters([&](const std::string&, auto&, auto& g) { out.push_back(g.to_host()); });
  return out;
}
/// Copies parameters and buffers of `from` into `to` (any backends, same widths).
template <class A, class B>
void copy_state(A& from, B& to) {
  const auto s = state_of(from);
  std::size_t i = 0;
  if constexpr (requires { to.visit_parameters([](const std::string&, auto&, auto&) {}); })
    to.visit_parameters([&](const std::string&, auto& w, auto&) { w.from_host(s.at(i++)); });
  if constexpr (requires { to.visit_buffers([](const std::string&, auto&) {}); })
    to.visit_buffers([&](const std::string&, auto& b) { b.from_host(s.at(i++)); });
  REQUIRE(i == s.size());
}

inline void check_all_close(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& want,
                            double tol, const char* what) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO(what << " tensor " << i);
    NETSPLIT_CHECK_CLOSE(got[i], want[i], tol);
  }
}

}  // namespace netsplit_test
