// examples/cifar100_resnet20/stats.hpp — the study report's statistics over seeds: mean,
// sample standard deviation, and the 95% confidence interval of a mean (Student's t), used
// for paired differences between runs of the same seed.
#pragma once

#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

namespace cifar_cli {

inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

struct mean_std {
  double mean = 0, std = 0;
  std::size_t n = 0;
};
inline mean_std stats_of(const std::vector<double>& v) {
  mean_std m;
  m.n = v.size();
  if (v.empty()) return m;
  m.mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  if (v.size() > 1) {
    double s = 0;
    for (double x : v) s += (x - m.mean) * (x - m.mean);
    m.std = std::sqrt(s / (v.size() - 1));  // sample standard deviation
  }
  return m;
}
/// Two-sided 97.5% quantile of Student's t with `dof` degrees of freedom (dof >= 1):
/// tabulated to 30, then 1.96 + 2.4/dof (within 0.003 of the exact value).
inline double t_quantile_975(std::size_t dof) {
  static constexpr double table[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                     2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                     2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  if (dof == 0) return NAN;
  return dof <= 30 ? table[dof - 1] : 1.96 + 2.4 / static_cast<double>(dof);
}
/// 95% confidence interval of the mean of m's samples, [lo, hi]; needs n >= 2.
struct interval {
  double lo = NAN, hi = NAN;
};
inline interval ci95(const mean_std& m) {
  if (m.n < 2) return {};
  const double h = t_quantile_975(m.n - 1) * m.std / std::sqrt(static_cast<double>(m.n));
  return {m.mean - h, m.mean + h};
}
/// "[lo, hi]" scaled (points), or "—" with fewer than two samples.
inline std::string ci_text(const mean_std& m, double scale = 100) {
  const auto c = ci95(m);
  if (m.n < 2) return "—";
  return "[" + fmt("%+.2f", c.lo * scale) + ", " + fmt("%+.2f", c.hi * scale) + "]";
}
inline std::string pm(const mean_std& m, double scale = 100) {
  return fmt("%.2f", m.mean * scale) + (m.n > 1 ? " ± " + fmt("%.2f", m.std * scale) : "") + " (n=" + std::to_string(m.n) + ")";
}

}  // namespace cifar_cli
