// examples/cifar100_resnet20/cli.hpp — command line of the trainer program.
// parse_options() turns argv into options, applying the chosen preset first and then the
// flags that override it; anything unknown or malformed throws cli_error, which main()
// reports with exit code 2. Kept free of I/O so it can be unit-tested and fuzzed.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "netsplit/split/normalisations.hpp"
#include "netsplit/split/selectors.hpp"
#include "netsplit/split/strategies.hpp"
#include "netsplit/tpm/metrics.hpp"
#include "netsplit/train/lr_schedule.hpp"

namespace cifar_cli {

struct cli_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct options {
  // data
  std::string dataset = "auto";  // auto: cifar100 if found, else the shared CIFAR-10
  std::string data_dir;          // empty: the default location for the dataset
  std::int64_t train_limit = 0;  // >0: use only the first N training images
  std::int64_t test_limit = 0;
  std::int64_t holdout = 0;      // >0: evaluate on the last N training images (not on the test set)
  // recipe (set by the preset, overridable)
  std::string preset = "default";
  std::int64_t max_iter = 0;
  int batch_size = 128;
  netsplit::lr_schedule schedule;
  double momentum = 0.9, weight_decay = 1e-4;
  bool nesterov = false;
  std::int64_t test_interval = 0;
  std::string model = "resnet20";  // model_names()
  double width_mult = 1.0;         // every convolution at round(width x this)
  std::string shortcut = "A";
  bool shortcut_given = false;
  // run control
  std::vector<std::int64_t> snapshot_at;
  std::int64_t snapshot_every = 0;
  std::string resume;
  int threads = 0;
  std::string backend = "cpu";  // cpu | cuda (cuda: a build with the CUDA backend, checked by main)
  int device = 0;               // --backend cuda: the CUDA device ordinal
  int concurrent_runs = 1;    // study mode: independent runs trained at once, the threads shared among them
  bool sync_bn = false;       // data-parallel runs: batch norm over the whole batch of every process
  double mpi_timeout = 300;   // data-parallel runs: seconds a process may wait for the others (0: forever)
  std::uint64_t seed = 1;
  std::string out_dir = "runs/default";
  bool help = false;
  bool progress = true;  // a live progress line when stdout is a terminal
  // growing by splits (study and derived runs)
  std::string mode = "train";  // train: one run; study: baseline -> snapshot -> scores -> splits -> derived
  std::string tpm = "taylor";
  std::int64_t tpm_begin = -1, tpm_end = -1;  // -1: from the preset's fractions of max_iter
  double tpm_begin_frac = 0.6, tpm_end_frac = 0.8;
  std::int64_t split_at = -1;  // -1: the window's end (study) / no split (train)
  bool split_at_given = false;
  int splits = 9;
  std::string strategy = "net2wider";
  double split_eps = 0.01;
  std::string select = "top_k";
  int select_cap = 1;
  double select_threshold = 0.0;
  std::string normalise = "none";  // score normalisation before selection (not for the random control)
  std::string split_sites = "all";
  std::string from_snapshot;
  std::vector<std::uint64_t> seeds{1};
  std::vector<std::string> controls{"random"};
  bool tpm_curve = true;  // study baseline: also log the metric's summary over the whole run
  // growing in rounds (netsplit/grow/growth_plan.hpp): enabled by --grow-at / --grow-rounds
  std::vector<std::string> tpms{"taylor"};  // growth study: one grown arm per metric (tpm is the first)
  std::vector<std::int64_t> grow_at;       // resolved round iterations (empty: no rounds)
  int grow_rounds = 0;
  std::int64_t grow_window = 0;  // 0: max_iter / 10, at most the gap to the previous round
  double grow_to = 0;            // target width multiplier (0: --splits filters per round)
  std::string grow_by = "budget";  // budget | widths
  std::int64_t tpm_every = 0;    // 0: 1, or for splitting an eighth of the window (tpm_every_for)
  bool controls_given = false;
  bool growth() const { return !grow_at.empty(); }
};

/// The models the program builds on the CUDA backend (run.hpp, model_unit.cpp units 3-4).
inline bool cuda_model(const std::string& m) { return m == "resnet20" || m == "resnet56" || m == "vgg11"; }

struct preset_info {
  const char* name;
  const char* summary;
};
inline const std::vector<preset_info>& presets() {
  static const std::vector<preset_info> p{
      {"seed", "the study's recipe: 64k iterations, batch 128, lr 0.1 x0.1 at 32k/48k, momentum 0.9, wd 1e-4"},
      {"quick", "10 epochs (3910 iterations), batch 128, Nesterov 0.9, wd 5e-4, 1 warm-up epoch then cosine"},
      {"default", "about 10 minutes on 2 cores: 800 iterations, batch 128, warm-up + cosine, wd 5e-4"},
      {"smoke", "seconds: 30 iterations on 2560 training and 1000 test images (for tests)"},
  };
  return p;
}

inline void apply_preset(options& o, std::string_view name) {
  using namespace netsplit;
  if (name == "seed") {
    o.max_iter = 64000;
    o.batch_size = 128;
    o.schedule = multistep_lr{0.1, 0.1, {32000, 48000}};
    o.momentum = 0.9;
    o.weight_decay = 1e-4;
    o.nesterov = false;
    o.test_interval = 1000;
    o.snapshot_every = 10000;
    o.tpm_begin_frac = 40000.0 / 64000;  // the study: TPM over 40k-50k, split at 50k
    o.tpm_end_frac = 50000.0 / 64000;
  } else if (name == "quick") {
    o.max_iter = 3910;
    o.batch_size = 128;
    o.schedule = cosine_lr{0.1, 391, 3910, 0.0};
    o.momentum = 0.9;
    o.weight_decay = 5e-4;
    o.nesterov = true;
    o.test_interval = 391;
    o.snapshot_every = 1955;
    o.tpm_begin_frac = 0.6;
    o.tpm_end_frac = 0.8;
  } else if (name == "default") {
    o.max_iter = 800;
    o.batch_size = 128;
    o.schedule = cosine_lr{0.1, 80, 800, 0.0};
    o.momentum = 0.9;
    o.weight_decay = 5e-4;
    o.nesterov = true;
    o.test_interval = 160;
    o.snapshot_every = 400;
    o.tpm_begin_frac = 0.6;
    o.tpm_end_frac = 0.8;
  } else if (name == "smoke") {
    o.max_iter = 30;
    o.batch_size = 64;
    o.schedule = cosine_lr{0.05, 5, 30, 0.0};
    o.momentum = 0.9;
    o.weight_decay = 5e-4;
    o.nesterov = true;
    o.test_interval = 15;
    o.snapshot_every = 15;
    o.train_limit = 2560;
    o.test_limit = 1000;
    o.tpm_begin_frac = 1.0 / 3;
    o.tpm_end_frac = 2.0 / 3;
  } else {
    std::string known;
    for (const auto& p : presets()) known += std::string(known.empty() ? "" : ", ") + p.name;
    throw cli_error("unknown preset '" + std::string(name) + "' (known: " + known + ")");
  }
  o.preset = std::string(name);
}

/// "a | b | c" (help) or "a, b or c" (errors) of a registry's names.
inline std::string join_names(const std::vector<std::string>& names, bool prose) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : !prose ? " | " : i + 1 == names.size() ? " or " : ", ") + names[i];
  return out;
}

/// The models the program trains (--model): CIFAR ResNets (option A or B shortcuts) and
/// VGGs with batch norm (netsplit/models/).
inline const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names{"resnet20", "resnet32", "resnet44", "resnet56",
                                              "vgg11",    "vgg13",    "vgg16",    "vgg19"};
  return names;
}

inline std::string usage() {
  std::string s =
      "usage: cifar100_resnet20 [flags]\n"
      "Trains a CIFAR ResNet or VGG (default ResNet20) on CIFAR-100 (or CIFAR-10) with netsplit.\n\n"
      "model:\n"
      "  --model NAME                      " + join_names(model_names(), false) + " (default resnet20)\n"
      "  --width-mult X                    every convolution at round(width x X) filters, X in (0, 16] (default 1)\n"
      "  --shortcut A|B                    residual shortcut option of the ResNets (default A)\n"
      "data:\n"
      "  --dataset cifar100|cifar10|auto   auto: CIFAR-100 if present, else the shared CIFAR-10 (default auto)\n"
      "  --data-dir DIR                    folder with the binary files (cifar-100-binary/ or cifar-10-batches-bin/)\n"
      "  --train-limit N, --test-limit N   use only the first N images (0: all)\n"
      "  --holdout N                       train on all but the last N training images and evaluate on those\n"
      "                                    (for choosing settings without the test set)\n"
      "recipe (a preset sets them; flags after it override):\n"
      "  --preset NAME                     seed | quick | default | smoke (default: default)\n"
      "  --max-iter N                      iterations to train\n"
      "  --batch-size N\n"
      "  --lr-schedule SPEC                'multistep LR GAMMA M1 M2..' | 'cosine LR WARMUP TOTAL FLOOR' | 'constant LR'\n"
      "  --momentum X, --weight-decay X, --nesterov on|off\n"
      "  --test-interval N                 test every N iterations (0: only at the end)\n"
      "run control:\n"
      "  --snapshot-at N[,N..]             write checkpoints at these iterations\n"
      "  --snapshot-every N                and every N iterations (0: off)\n"
      "  --resume FILE|DIR                 continue a run from a checkpoint; in study mode, the study in DIR\n"
      "  --threads N                       worker threads per process (0: the cores, shared by the processes\n"
      "                                    mpirun starts on this machine)\n"
      "  --concurrent-runs N               study mode: train up to N of the study's independent runs at once\n"
      "                                    (seeds; a seed's derived run and controls), --threads shared among\n"
      "                                    them (default 1: one run at a time with all threads); on --backend\n"
      "                                    cuda each run queues on its own stream of the one device\n"
      "  --backend cpu|cuda                where the networks train (default cpu; cuda needs a build with\n"
      "                                    NETSPLIT_ENABLE_CUDA, see README, and trains resnet20, resnet56, vgg11)\n"
      "  --device N                        --backend cuda: the CUDA device (default 0)\n"
      "  --seed N                          initialisation, data order and augmentation seed\n"
      "  --out-dir DIR                     logs, metrics and checkpoints (default runs/<preset>)\n"
      "  --no-progress                     plain lines even on a terminal\n"
      "data-parallel (a build with NETSPLIT_ENABLE_MPI, run as mpirun -np N cifar100_resnet20 ...):\n"
      "  --sync-bn on|off                  batch norm with the statistics of the whole batch over every process\n"
      "                                    (default off: each process's own shard, as PyTorch DDP)\n"
      "  --mpi-timeout S                   a process that waits S seconds for the others stops the run (default 300,\n"
      "                                    0: wait forever)\n"
      "growing (TPM scores, splits):\n"
      "  --mode train|study                study: for each seed, baseline -> snapshot at the split iteration ->\n"
      "                                    TPM scores -> K splits -> derived run, plus controls; writes a report\n"
      "  --tpm METRIC                      " + join_names(netsplit::tpm_metric_names(), false) + " (default taylor)\n"
      "  --tpm-window BEGIN:END            iterations whose signals the score accumulates (default: preset's 60%-80%)\n"
      "  --tpm-curve on|off                study baseline: log the metric's summary over the whole run (default on)\n"
      "  --split-at ITER                   split then (default: the window's end); in train mode enables splitting\n"
      "  --splits K                        filters to split together (default 9)\n"
      "  --strategy S                      " + join_names(netsplit::split_strategy_names(), false) + " (default net2wider)\n"
      "  --split-eps X                     symmetry-breaking noise, relative to the filter norm (default 0.01)\n"
      "  --select S                        " + join_names(netsplit::selector_names(), false) + " (default top_k)\n"
      "  --select-cap N, --select-threshold X   for capped_top_k / threshold\n"
      "  --normalise N                     " + join_names(netsplit::score_normalisation_names(), false) +
      ": scores rescaled per site before selection (default none)\n"
      "  --split-sites all|inner|stream|NAMES   which sites may be split (default all)\n"
      "  --from-snapshot FILE              start a derived run from a baseline snapshot (splits at its iteration)\n"
      "  --seeds N[,N..]                   study seeds (default 1)\n"
      "  --controls LIST|none              study controls: random (random splits), static (a static net of the grown\n"
      "                                    size); growth studies: random (cost-matched random growth), small (static at\n"
      "                                    the starting width), full (static at --grow-to) (default: all of that mode's)\n"
      "growing in rounds (start narrow with --width-mult, grow to --grow-to):\n"
      "  --grow-at ITER[,ITER..]           split rounds before these iterations (train and study modes)\n"
      "  --grow-rounds R                   or R rounds at 60% x r/R of --max-iter (r = 1..R)\n"
      "  --grow-window N                   each round scores the N iterations before it (default max-iter/10)\n"
      "  --grow-to X                       grow to the parameters (budget) or widths (widths) of width multiplier X;\n"
      "                                    without it every round splits --splits filters\n"
      "  --grow-by budget|widths           budget: each round spends its share of the parameters, the scores choose\n"
      "                                    where (per added parameter); widths: every site grows to its width at X\n"
      "  --tpm M1,M2..                     in a growth study: one grown arm per metric\n"
      "  --tpm-every N                     accumulate every N-th window iteration (default 1; splitting: window/8)\n"
      "  --help\n\npresets:\n";
  for (const auto& p : presets()) s += "  " + std::string(p.name) + ": " + p.summary + "\n";
  return s;
}

namespace detail {
template <class I>
I parse_int(std::string_view flag, std::string_view v, I lo, I hi) {
  I out{};
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || out < lo || out > hi)
    throw cli_error(std::string(flag) + " expects an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                    "], got '" + std::string(v) + "'");
  return out;
}
inline double parse_real(std::string_view flag, std::string_view v, double lo, double hi) {
  std::string s(v);
  std::size_t used = 0;
  double out = 0;
  try {
    out = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (s.empty() || used != s.size() || !(out >= lo && out <= hi))
    throw cli_error(std::string(flag) + " expects a number in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                    "], got '" + s + "'");
  return out;
}
/// Splits "a,b,c" into its parts (empty parts included, so "1,,2" is caught by the caller).
inline std::vector<std::string> split_list(const std::string& v) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const auto comma = v.find(',', start);
    parts.push_back(v.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}
/// v when it is one of a registry's names; else cli_error listing them.
inline std::string one_of(std::string_view flag, const std::string& v, const std::vector<std::string>& names) {
  if (std::find(names.begin(), names.end(), v) == names.end())
    throw cli_error(std::string(flag) + " expects " + join_names(names, true) + ", got '" + v + "'");
  return v;
}
inline std::string fmt_real(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
inline bool parse_bool(std::string_view flag, std::string_view v) {
  if (v == "on" || v == "true" || v == "1") return true;
  if (v == "off" || v == "false" || v == "0") return false;
  throw cli_error(std::string(flag) + " expects on or off, got '" + std::string(v) + "'");
}
}  // namespace detail

/// Window iterations a growth arm of `metric` accumulates every (--tpm-every, or by default
/// 1, and an eighth of the window for the costly splitting metric).
inline std::int64_t tpm_every_for(const options& o, const std::string& metric) {
  if (o.tpm_every > 0) return o.tpm_every;
  return metric == "splitting" ? std::max<std::int64_t>(1, o.grow_window / 8) : 1;
}

/// A study's folder: with --resume (study mode) the study's own folder.
inline options finish_study_dir(options o, bool out_dir_given) {
  if (o.mode == "study" && !o.resume.empty()) {
    // In study mode --resume names the study's output folder: finished runs are read back,
    // the interrupted one continues from its latest checkpoint, the rest run.
    if (out_dir_given && o.out_dir != o.resume)
      throw cli_error("--resume " + o.resume + " (a study's folder) and --out-dir " + o.out_dir +
                      " differ: a study resumes in its own folder");
    o.out_dir = o.resume;
  }
  return o;
}

/// Growth rounds: resolves --grow-rounds to iterations, the window, the metrics' arms and
/// the controls, and checks that they fit (cli_error otherwise).
inline void resolve_growth(options& o) {
  if (o.grow_rounds > 0 && !o.grow_at.empty()) throw cli_error("give --grow-at or --grow-rounds, not both");
  if (o.split_at_given || !o.from_snapshot.empty())
    throw cli_error("growth rounds (--grow-at / --grow-rounds) split at their own iterations: drop --split-at / --from-snapshot");
  if (o.grow_rounds > 0)
    for (int r = 1; r <= o.grow_rounds; ++r)
      o.grow_at.push_back(static_cast<std::int64_t>(0.6 * double(o.max_iter) * r / o.grow_rounds));
  for (std::size_t r = 0; r < o.grow_at.size(); ++r) {
    if (o.grow_at[r] >= o.max_iter)
      throw cli_error("growth round " + std::to_string(r + 1) + " at iteration " + std::to_string(o.grow_at[r]) +
                      " is not before --max-iter (" + std::to_string(o.max_iter) + ")");
    if (r > 0 && o.grow_at[r] <= o.grow_at[r - 1]) throw cli_error("--grow-at iterations must increase");
  }
  if (o.grow_window == 0) {
    o.grow_window = std::max<std::int64_t>(1, o.max_iter / 10);
    o.grow_window = std::min(o.grow_window, o.grow_at.front());
    for (std::size_t r = 1; r < o.grow_at.size(); ++r) o.grow_window = std::min(o.grow_window, o.grow_at[r] - o.grow_at[r - 1]);
    if (o.grow_window < 1) throw cli_error("growth round 1 at iteration 0 leaves no room for a TPM window");
  }
  for (std::size_t r = 0; r < o.grow_at.size(); ++r)
    if (o.grow_at[r] - o.grow_window < (r == 0 ? 0 : o.grow_at[r - 1]))
      throw cli_error("--grow-window " + std::to_string(o.grow_window) + " does not fit before growth round " +
                      std::to_string(r + 1) + " at iteration " + std::to_string(o.grow_at[r]) +
                      " (windows start after the previous round)");
  if (o.grow_to > 0 && !(o.grow_to > o.width_mult))
    throw cli_error("--grow-to " + detail::fmt_real(o.grow_to) + " is not above the starting --width-mult " +
                    detail::fmt_real(o.width_mult) + ": nothing to grow");
  if (o.grow_by == "widths" && o.grow_to <= 0) throw cli_error("--grow-by widths needs --grow-to");
  if (o.mode != "study" && o.tpms.size() > 1) throw cli_error("--tpm lists several metrics: only a study runs one arm each");
  if (o.mode == "study" && !o.controls_given) o.controls = {"random", "small", "full"};
  for (const auto& c : o.controls) {
    if (c == "static") throw cli_error("--controls static is the one-split study's; growth studies have small and full");
    if (c == "full" && o.grow_to <= 0) throw cli_error("--controls full needs --grow-to (the full width)");
  }
  o.tpm_begin = o.grow_at.front() - o.grow_window;
  o.tpm_end = o.grow_at.front();
  o.split_at = o.grow_at.front();
}

/// Parses argv[1..argc). The preset is applied before the other flags wherever it appears.
inline options parse_options(int argc, const char* const* argv) {
  options o;
  std::vector<std::pair<std::string, std::string>> flags;
  std::string preset = "default";
  bool out_dir_given = false, device_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i] ? argv[i] : "";
    if (a == "--help" || a == "-h") {
      o.help = true;
      continue;
    }
    if (a == "--no-progress") {
      flags.emplace_back(a, "");
      continue;
    }
    if (a.rfind("--", 0) != 0) throw cli_error("unexpected argument '" + a + "' (flags start with --; see --help)");
    std::string value;
    const auto eq = a.find('=');
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else {
      if (i + 1 >= argc || argv[i + 1] == nullptr) throw cli_error(a + " needs a value");
      value = argv[++i];
    }
    if (a == "--preset") preset = value;
    else flags.emplace_back(a, value);
  }
  apply_preset(o, preset);
  using detail::parse_int;
  constexpr std::int64_t big = std::int64_t{1} << 40;
  for (const auto& [f, v] : flags) {
    if (f == "--dataset") {
      if (v != "cifar100" && v != "cifar10" && v != "auto")
        throw cli_error("--dataset expects cifar100, cifar10 or auto, got '" + v + "'");
      o.dataset = v;
    } else if (f == "--data-dir") {
      if (v.empty()) throw cli_error("--data-dir needs a folder");
      o.data_dir = v;
    } else if (f == "--train-limit") o.train_limit = parse_int<std::int64_t>(f, v, 0, big);
    else if (f == "--test-limit") o.test_limit = parse_int<std::int64_t>(f, v, 0, big);
    else if (f == "--holdout") o.holdout = parse_int<std::int64_t>(f, v, 0, big);
    else if (f == "--max-iter") o.max_iter = parse_int<std::int64_t>(f, v, 0, big);
    else if (f == "--batch-size") o.batch_size = parse_int<int>(f, v, 1, 65536);
    else if (f == "--lr-schedule") {
      try {
        o.schedule = netsplit::parse_lr_schedule(v);
      } catch (const netsplit::error& e) {
        throw cli_error(std::string("--lr-schedule: ") + e.what());
      }
    } else if (f == "--momentum") o.momentum = detail::parse_real(f, v, 0.0, 1.0);
    else if (f == "--weight-decay") o.weight_decay = detail::parse_real(f, v, 0.0, 1.0);
    else if (f == "--nesterov") o.nesterov = detail::parse_bool(f, v);
    else if (f == "--test-interval") o.test_interval = parse_int<std::int64_t>(f, v, 0, big);
    else if (f == "--shortcut") {
      if (v != "A" && v != "B") throw cli_error("--shortcut expects A or B, got '" + v + "'");
      o.shortcut = v;
      o.shortcut_given = true;
    } else if (f == "--model") o.model = detail::one_of(f, v, model_names());
    else if (f == "--width-mult") {
      o.width_mult = detail::parse_real(f, v, 0.0, 16.0);
      if (!(o.width_mult > 0)) throw cli_error("--width-mult must be larger than 0, got '" + v + "'");
    } else if (f == "--snapshot-at") {
      o.snapshot_at.clear();
      for (const auto& part : detail::split_list(v)) o.snapshot_at.push_back(parse_int<std::int64_t>(f, part, 1, big));
    } else if (f == "--snapshot-every") o.snapshot_every = parse_int<std::int64_t>(f, v, 0, big);
    else if (f == "--resume") {
      if (v.empty()) throw cli_error("--resume needs a checkpoint file");
      o.resume = v;
    } else if (f == "--threads") {
      o.threads = parse_int<int>(f, v, 0, 1024);
      const unsigned hw = std::thread::hardware_concurrency();  // 0: unknown
      if (hw > 0 && static_cast<unsigned>(o.threads) > hw)
        throw cli_error("--threads " + v + " is more than this machine's " + std::to_string(hw) +
                        " hardware threads (0 uses all of them)");
    }
    else if (f == "--concurrent-runs") o.concurrent_runs = parse_int<int>(f, v, 1, 64);
    else if (f == "--backend") {
      if (v != "cpu" && v != "cuda") throw cli_error("--backend must be cpu or cuda, not '" + v + "'");
      o.backend = v;
    } else if (f == "--device") {
      o.device = parse_int<int>(f, v, 0, 1023);
      device_given = true;
    }
    else if (f == "--sync-bn") o.sync_bn = detail::parse_bool(f, v);
    else if (f == "--mpi-timeout") o.mpi_timeout = detail::parse_real(f, v, 0.0, 1e7);
    else if (f == "--seed") o.seed = parse_int<std::uint64_t>(f, v, 0, ~std::uint64_t{0});
    else if (f == "--out-dir") {
      if (v.empty()) throw cli_error("--out-dir needs a folder");
      o.out_dir = v;
      out_dir_given = true;
    } else if (f == "--no-progress") o.progress = false;
    else if (f == "--mode") {
      if (v != "train" && v != "study") throw cli_error("--mode expects train or study, got '" + v + "'");
      o.mode = v;
    } else if (f == "--tpm") {
      o.tpms.clear();
      for (const auto& m : detail::split_list(v)) {
        o.tpms.push_back(detail::one_of(f, m, netsplit::tpm_metric_names()));
        if (std::count(o.tpms.begin(), o.tpms.end(), m) > 1) throw cli_error("--tpm lists " + m + " twice");
      }
      o.tpm = o.tpms.front();
    } else if (f == "--grow-at") {
      o.grow_at.clear();
      for (const auto& part : detail::split_list(v)) o.grow_at.push_back(parse_int<std::int64_t>(f, part, 1, big));
    } else if (f == "--grow-rounds") o.grow_rounds = parse_int<int>(f, v, 1, 1000);
    else if (f == "--grow-window") o.grow_window = parse_int<std::int64_t>(f, v, 1, big);
    else if (f == "--grow-to") {
      o.grow_to = detail::parse_real(f, v, 0.0, 16.0);
      if (!(o.grow_to > 0)) throw cli_error("--grow-to must be larger than 0, got '" + v + "'");
    } else if (f == "--grow-by") {
      if (v != "budget" && v != "widths") throw cli_error("--grow-by expects budget or widths, got '" + v + "'");
      o.grow_by = v;
    } else if (f == "--tpm-every") o.tpm_every = parse_int<std::int64_t>(f, v, 1, big); else if (f == "--tpm-window") {
      const auto colon = v.find(':');
      if (colon == std::string::npos) throw cli_error("--tpm-window expects BEGIN:END, got '" + v + "'");
      o.tpm_begin = parse_int<std::int64_t>(f, v.substr(0, colon), 0, big);
      o.tpm_end = parse_int<std::int64_t>(f, v.substr(colon + 1), 0, big);
      if (o.tpm_end <= o.tpm_begin) throw cli_error("--tpm-window " + v + " is empty: END must be larger than BEGIN");
    } else if (f == "--tpm-curve") o.tpm_curve = detail::parse_bool(f, v);
    else if (f == "--split-at") {
      o.split_at = parse_int<std::int64_t>(f, v, 0, big);
      o.split_at_given = true;
    } else if (f == "--splits") o.splits = parse_int<int>(f, v, 1, 100000);
    else if (f == "--strategy") {
      o.strategy = detail::one_of(f, v, netsplit::split_strategy_names());
    } else if (f == "--split-eps") o.split_eps = detail::parse_real(f, v, 0.0, 10.0);
    else if (f == "--select") {
      o.select = detail::one_of(f, v, netsplit::selector_names());
    } else if (f == "--normalise") {
      o.normalise = detail::one_of(f, v, netsplit::score_normalisation_names());
    } else if (f == "--select-cap") o.select_cap = parse_int<int>(f, v, 1, 100000);
    else if (f == "--select-threshold") o.select_threshold = detail::parse_real(f, v, -1e300, 1e300);
    else if (f == "--split-sites") {
      if (v.empty()) throw cli_error("--split-sites needs all, inner, stream or site names");
      o.split_sites = v;
    } else if (f == "--from-snapshot") {
      if (v.empty()) throw cli_error("--from-snapshot needs a checkpoint file");
      o.from_snapshot = v;
    } else if (f == "--seeds") {
      o.seeds.clear();
      for (const auto& part : detail::split_list(v)) {
        const auto seed = parse_int<std::uint64_t>(f, part, 0, ~std::uint64_t{0});
        if (std::find(o.seeds.begin(), o.seeds.end(), seed) != o.seeds.end())
          throw cli_error("--seeds lists seed " + std::to_string(seed) +
                          " twice: the same seed is the same run, and counting it twice would narrow the statistics "
                          "without evidence");
        o.seeds.push_back(seed);
      }
    } else if (f == "--controls") {
      o.controls.clear();
      o.controls_given = true;
      if (v != "none")
        for (const auto& c : detail::split_list(v)) {
          if (c != "random" && c != "static" && c != "small" && c != "full")
            throw cli_error("--controls expects random, static, small, full or none, got '" + c + "'");
          o.controls.push_back(c);
        }
    } else throw cli_error("unknown flag '" + f + "' (see --help)");
  }
  if (o.shortcut_given && o.model.rfind("resnet", 0) != 0)
    throw cli_error("--shortcut applies to the ResNets; " + o.model + " has no residual shortcuts");
  if (!out_dir_given) o.out_dir = "runs/" + o.preset + (o.mode == "study" ? "-study" : "");
  if (o.backend == "cuda" && !cuda_model(o.model))
    throw cli_error("--backend cuda trains resnet20, resnet56 and vgg11; " + o.model + " trains on --backend cpu");
  if (device_given && o.backend != "cuda") throw cli_error("--device chooses a CUDA device: it needs --backend cuda");
  if (o.concurrent_runs > 1 && o.mode != "study")
    throw cli_error("--concurrent-runs " + std::to_string(o.concurrent_runs) +
                    " trains a study's independent runs at once: it needs --mode study");
  // Resolve the TPM window and split iteration, and check they fit in the run.
  if (o.tpm_begin < 0) {
    o.tpm_begin = static_cast<std::int64_t>(o.tpm_begin_frac * static_cast<double>(o.max_iter));
    o.tpm_end = static_cast<std::int64_t>(o.tpm_end_frac * static_cast<double>(o.max_iter));
  }
  if (o.split_at < 0) o.split_at = o.tpm_end;
  if (o.grow_rounds > 0 || !o.grow_at.empty()) {
    resolve_growth(o);
    return finish_study_dir(o, out_dir_given);
  }
  if (o.tpms.size() > 1) throw cli_error("--tpm lists several metrics: only a growth study (--grow-at) runs one arm each");
  if (o.grow_to > 0 || o.grow_window > 0 || o.grow_by != "budget")
    throw cli_error("--grow-to, --grow-window and --grow-by need growth rounds (--grow-at or --grow-rounds)");
  const bool grows = o.mode == "study" || o.split_at_given;
  if (grows) {
    if (o.tpm_end <= o.tpm_begin || o.tpm_end > o.max_iter)
      throw cli_error("TPM window " + std::to_string(o.tpm_begin) + ":" + std::to_string(o.tpm_end) +
                      " does not fit in a run of " + std::to_string(o.max_iter) + " iterations");
    if (o.split_at < o.tpm_end || o.split_at >= o.max_iter)
      throw cli_error("--split-at " + std::to_string(o.split_at) + " must be at or after the TPM window's end (" +
                      std::to_string(o.tpm_end) + ") and before --max-iter (" + std::to_string(o.max_iter) + ")");
  }
  if (o.mode == "study" && !o.from_snapshot.empty())
    throw cli_error("--mode study runs its own baselines; --from-snapshot is for train mode");
  for (const auto& c : o.controls)
    if (c == "small" || c == "full") throw cli_error("--controls " + c + " belongs to growth studies (--grow-at)");
  return finish_study_dir(o, out_dir_given);
}

}  // namespace cifar_cli
