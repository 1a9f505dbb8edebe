// netsplit/train/lr_schedule.hpp — learning-rate schedules as pure functions of the
// iteration. Defines the LrSchedule concept; models: constant_lr, multistep_lr (the
// study's Caffe recipe: 0.1, x0.1 at 32k and 48k), cosine_lr (linear warm-up, then cosine
// to a floor), and lr_schedule, a value type holding any of them (chosen at run time by
// presets and flags) with a text form stored in checkpoints.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "netsplit/core/errors.hpp"

namespace netsplit {

/// A schedule maps an iteration (0-based, the step about to run) to a learning rate.
/// Requires: lr(iter) const, pure (same iteration -> same value, no state), and describe()
/// giving a text form that parse_lr_schedule() reads back.
template <class S>
concept LrSchedule = requires(const S& s, std::int64_t iter) {
  { s.lr(iter) } -> std::convertible_to<double>;
  { s.describe() } -> std::convertible_to<std::string>;
};

struct constant_lr {
  double base = 0.1;
  double lr(std::int64_t) const { return base; }
  std::string describe() const { return "constant " + fmt(base); }
  static std::string fmt(double v) {
    std::ostringstream os;
    os.precision(17);
    os << v;
    return os.str();
  }
};

/// base * gamma^(number of milestones <= iter). Caffe's "multistep" policy.
struct multistep_lr {
  double base = 0.1;
  double gamma = 0.1;
  std::vector<std::int64_t> milestones{32000, 48000};
  double lr(std::int64_t iter) const {
    double v = base;
    for (auto m : milestones)
      if (iter >= m) v *= gamma;
    return v;
  }
  std::string describe() const {
    std::string s = "multistep " + constant_lr::fmt(base) + " " + constant_lr::fmt(gamma);
    for (auto m : milestones) {  // (appended in two steps: GCC 12 warns, wrongly, on " " + string&&)
      s += ' ';
      s += std::to_string(m);
    }
    return s;
  }
};

/// Linear warm-up from base/warmup to base over `warmup` iterations (iteration i uses
/// base*(i+1)/warmup), then cosine from base down to `floor` at iteration `total`.
/// Matches PyTorch's per-iteration LambdaLR warm-up + cosine used for the reference run.
struct cosine_lr {
  double base = 0.1;
  std::int64_t warmup = 0;
  std::int64_t total = 1;
  double floor = 0.0;
  double lr(std::int64_t iter) const {
    if (iter < warmup) return base * static_cast<double>(iter + 1) / static_cast<double>(warmup);
    const double span = static_cast<double>(std::max<std::int64_t>(1, total - warmup));
    const double t = std::min(1.0, static_cast<double>(iter - warmup) / span);
    return floor + (base - floor) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t));
  }
  std::string describe() const {
    return "cosine " + constant_lr::fmt(base) + " " + std::to_string(warmup) + " " + std::to_string(total) +
           " " + constant_lr::fmt(floor);
  }
};

/// Any of the shipped schedules, chosen at run time.
class lr_schedule {
 public:
  using variant_type = std::variant<constant_lr, multistep_lr, cosine_lr>;
  lr_schedule() = default;
  template <LrSchedule S>
    requires std::constructible_from<variant_type, S>
  lr_schedule(S s) : v_(std::move(s)) {}
  double lr(std::int64_t iter) const {
    return std::visit([&](const auto& s) { return s.lr(iter); }, v_);
  }
  std::string describe() const {
    return std::visit([](const auto& s) { return s.describe(); }, v_);
  }
  const variant_type& get() const { return v_; }

 private:
  variant_type v_{constant_lr{}};
};

/// Reads describe()'s text form back; contract_violation naming the text when malformed.
inline lr_schedule parse_lr_schedule(const std::string& text) {
  std::istringstream is(text);
  std::string kind;
  is >> kind;
  auto bad = [&]() -> lr_schedule {
    detail::raise<contract_violation>("netsplit: cannot read learning-rate schedule '", text,
                                      "'; expected 'constant LR', 'multistep LR GAMMA M1 M2 ...' or "
                                      "'cosine LR WARMUP TOTAL FLOOR' with non-negative rates");
  };
  auto at_end = [&] { return (is >> std::ws).eof(); };
  if (kind == "constant") {
    constant_lr s;
    if (!(is >> s.base) || !at_end() || !(s.base >= 0)) return bad();
    return s;
  }
  if (kind == "multistep") {
    multistep_lr s;
    s.milestones.clear();
    if (!(is >> s.base >> s.gamma) || !(s.base >= 0) || !(s.gamma >= 0)) return bad();
    std::int64_t m;
    while (is >> m) s.milestones.push_back(m);
    if (!is.eof()) return bad();
    return s;
  }
  if (kind == "cosine") {
    cosine_lr s;
    if (!(is >> s.base >> s.warmup >> s.total >> s.floor) || !at_end() || s.total <= 0 || s.warmup < 0 ||
        !(s.base >= 0) || !(s.floor >= 0)) return bad();
    return s;
  }
  return bad();
}

static_assert(LrSchedule<constant_lr> && LrSchedule<multistep_lr> && LrSchedule<cosine_lr> &&
              LrSchedule<lr_schedule>);

}  // namespace netsplit
