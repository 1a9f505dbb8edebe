// examples/cifar100_resnet20/plot.hpp — dependency-free SVG charts for the study report:
// line charts (loss / accuracy / TPM curves) and bar charts (where the splits went).
#pragma once

#include "run_control.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace cifar_cli {

struct series {
  std::string name;
  std::string color;
  std::vector<std::pair<double, double>> points;
  bool dashed = false;
};

namespace svg {
inline std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}
inline std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}
/// Ticks at round values (1, 2 or 5 x 10^k apart, about `target` of them, at least
/// `min_step`: 1 for iterations) inside [lo, hi], each labelled with the decimals its step
/// needs (values all below 1e-3 in scientific form: 2.0e-05).
inline std::vector<std::pair<double, std::string>> ticks(double lo, double hi, int target = 5, double min_step = 0) {
  std::vector<std::pair<double, std::string>> out;
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return out;
  const double raw = std::max((hi - lo) / target, min_step), mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  const int step_exp = static_cast<int>(std::floor(std::log10(step) + 1e-9));
  const int decimals = std::max(0, -step_exp);
  // values below 1e-3 in fixed point grow long (0.000020): write them as 2.0e-05, with the
  // mantissa digits the step needs
  const double top = std::max(std::abs(lo), std::abs(hi));
  const int top_exp = static_cast<int>(std::floor(std::log10(top) + 1e-9));
  const bool scientific = top < 1e-3;
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k += 1) {
    const double v = std::abs(k * step) < step * 1e-9 ? 0.0 : k * step;
    char b[48];
    if (scientific && v != 0.0) std::snprintf(b, sizeof b, "%.*e", std::max(0, top_exp - step_exp), v);
    else if (scientific) std::snprintf(b, sizeof b, "0");
    else std::snprintf(b, sizeof b, "%.*f", decimals, v);
    out.emplace_back(v, b);
  }
  return out;
}
inline void save(const std::string& path, const std::string& content) {
  if (!run_control::writer) return;  // a data-parallel run's rank 0 writes the files
  std::ofstream f(path, std::ios::trunc);
  f << content;
  if (!f) throw std::runtime_error("cannot write " + path);
}
}  // namespace svg

/// A line chart with axes, ticks and a legend; empty series are skipped.
inline std::string line_chart(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                              const std::vector<series>& all) {
  const double W = 730, H = 420, L = 80, R = 170, T = 40, B = 50;
  double x0 = std::numeric_limits<double>::max(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : all)
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
    }
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
  o << "<text x='" << W / 2 << "' y='22' text-anchor='middle' font-size='15'>" << svg::esc(title) << "</text>\n";
  o << "<line x1='" << L << "' y1='" << H - B << "' x2='" << W - R << "' y2='" << H - B << "' stroke='black'/>\n";
  o << "<line x1='" << L << "' y1='" << T << "' x2='" << L << "' y2='" << H - B << "' stroke='black'/>\n";
  for (const auto& [xv, label] : svg::ticks(x0, x1, 5, 1.0))  // x: iterations
    o << "<text x='" << px(xv) << "' y='" << H - B + 16 << "' text-anchor='middle'>" << label << "</text>\n";
  for (const auto& [yv, label] : svg::ticks(y0, y1)) {
    o << "<text x='" << L - 6 << "' y='" << py(yv) + 4 << "' text-anchor='end'>" << label << "</text>\n";
    o << "<line x1='" << L << "' y1='" << py(yv) << "' x2='" << W - R << "' y2='" << py(yv)
      << "' stroke='#ddd'/>\n";
  }
  o << "<text x='" << (L + W - R) / 2 << "' y='" << H - 12 << "' text-anchor='middle'>" << svg::esc(xlabel)
    << "</text>\n";
  o << "<text transform='translate(16," << (T + H - B) / 2 << ") rotate(-90)' text-anchor='middle'>"
    << svg::esc(ylabel) << "</text>\n";
  int k = 0;
  for (const auto& s : all) {
    if (s.points.empty()) continue;
    o << "<polyline fill='none' stroke='" << s.color << "' stroke-width='1.6'"
      << (s.dashed ? " stroke-dasharray='5,3'" : "") << " points='";
    for (auto [x, y] : s.points)
      if (std::isfinite(y)) o << px(x) << "," << py(y) << " ";
    o << "'/>\n";
    const double ly = T + 14 + 18 * k++;
    o << "<line x1='" << W - R + 10 << "' y1='" << ly << "' x2='" << W - R + 30 << "' y2='" << ly << "' stroke='"
      << s.color << "' stroke-width='2'" << (s.dashed ? " stroke-dasharray='5,3'" : "") << "/>\n";
    o << "<text x='" << W - R + 34 << "' y='" << ly + 4 << "'>" << svg::esc(s.name) << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

/// One bar: its label, height, and a number written under the label (NaN: none).
struct bar {
  std::string label;
  double value = 0;
  double note = std::nan("");
};

/// A vertical bar chart: every bar (zeros too: their value on the axis), the value above
/// each bar, the label and the note below it; the y axis has round ticks.
inline std::string bar_chart(const std::string& title, const std::string& ylabel, const std::vector<bar>& bars) {
  const double W = std::max(720.0, 120.0 + 40.0 * bars.size()), H = 460, L = 100, R = 20, T = 40, B = 150;
  double ymax = 1;
  for (const auto& b : bars) ymax = std::max(ymax, b.value);
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='11'>\n<rect width='100%' height='100%' fill='white'/>\n";
  o << "<text x='" << W / 2 << "' y='22' text-anchor='middle' font-size='15'>" << svg::esc(title) << "</text>\n";
  o << "<text transform='translate(16," << (T + H - B) / 2 << ") rotate(-90)' text-anchor='middle'>"
    << svg::esc(ylabel) << "</text>\n";
  const auto y_ticks = svg::ticks(0, ymax, 4, 1.0);
  if (!y_ticks.empty()) ymax = std::max(ymax, y_ticks.back().first);
  for (const auto& [yv, label] : y_ticks) {
    const double y = H - B - yv / ymax * (H - T - B);
    o << "<text x='" << L - 6 << "' y='" << y + 4 << "' text-anchor='end'>" << label << "</text>\n";
    o << "<line x1='" << L << "' y1='" << y << "' x2='" << W - R << "' y2='" << y << "' stroke='#ddd'/>\n";
  }
  const double slot = bars.empty() ? 1 : (W - L - R) / bars.size();
  for (std::size_t i = 0; i < bars.size(); ++i) {
    const double h = bars[i].value / ymax * (H - T - B), x = L + slot * i;
    o << "<rect x='" << x + slot * 0.15 << "' y='" << H - B - h << "' width='" << slot * 0.7 << "' height='" << h
      << "' fill='#4477aa'/>\n";
    o << "<text x='" << x + slot / 2 << "' y='" << H - B - h - 4 << "' text-anchor='middle'>"
      << svg::num(bars[i].value) << "</text>\n";
    std::string label = bars[i].label;
    if (!std::isnan(bars[i].note)) label += " (" + svg::num(bars[i].note) + ")";
    // rotated to end under the bar, so no label runs past the chart's right edge
    o << "<text transform='translate(" << x + slot / 2 + 3 << "," << H - B + 10
      << ") rotate(-60)' text-anchor='end' font-size='10'>" << svg::esc(label) << "</text>\n";
  }
  o << "<line x1='" << L << "' y1='" << H - B << "' x2='" << W - R << "' y2='" << H - B << "' stroke='black'/>\n";
  o << "</svg>\n";
  return o.str();
}

}  // namespace cifar_cli
