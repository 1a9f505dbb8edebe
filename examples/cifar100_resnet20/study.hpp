// examples/cifar100_resnet20/study.hpp — one training run of any kind (plain, baseline,
// derived from a snapshot, random-split control, static grown-size control), and the
// study report (markdown + CSV table, SVG plots).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "cli.hpp"
#include "netsplit/netsplit.hpp"
#include "plot.hpp"
#include "report.hpp"
#include "run_control.hpp"
#include "world.hpp"
#include "stats.hpp"

namespace cifar_cli {

namespace fs = std::filesystem;

struct data_env {
  netsplit::dataset train, test;
  netsplit::channel_stats stats;
  std::string source;  // folder, for the log
};

/// What to run. kind: train | baseline | derived | random | static; growth studies: small
/// (static at the starting width; the trunk), grow-<metric>, grow-random, full.
struct run_spec {
  std::string kind = "train";
  double width = 0;    // width multiplier (0: --width-mult)
  std::string metric;  // grow arms: the TPM metric (empty: --tpm)
  std::uint64_t seed = 1;
  fs::path dir;
  std::string snapshot;  // derived / random: start here
  std::string resume;    // a study resumed: this run's own latest checkpoint (wins over snapshot)
  std::vector<netsplit::split_record> grown;  // static: widths to build
};

struct run_result {
  std::string kind;
  std::uint64_t seed = 0;
  double final_top1 = 0, final_top5 = 0, best_top1 = -1;
  std::int64_t best_iter = 0, final_iter = 0;
  std::int64_t params = 0, macs = 0;
  double seconds = 0;
  std::vector<std::pair<double, double>> loss, top1, tpm;
  std::vector<std::pair<double, double>> pair_min_cos, pair_mean_cos;  // split pairs' incoming weights
  std::vector<netsplit::split_record> splits;
  // every site's best filter score at the split (after the run's normalisation), in network
  // order: the report's split map shows all sites, zeros included
  std::vector<std::string> sites;
  std::vector<double> site_best;
  /// Growth runs: the network after every round (iteration, parameters, MACs per image,
  /// filters split, every site's width in `sites` order).
  struct round_info {
    std::int64_t iter = 0;
    std::int64_t params = 0, macs = 0;
    int splits = 0;
    std::vector<double> widths;
  };
  std::vector<round_info> rounds;
  fs::path split_snapshot;  // baseline: the snapshot derived runs start from
  int exit_code = 0;        // 3: diverged; 128 + signal: stopped by that signal (checkpoint written)

  /// Adds a training iteration's loss to the curve (the mean per display interval; `closes`
  /// ends an interval). Live events and a log read back both go through here.
  void add_loss(std::int64_t iter, double l, bool closes) {
    loss_sum_ += l;
    ++loss_n_;
    if (closes) {
      loss.emplace_back(double(iter), loss_sum_ / loss_n_);
      loss_sum_ = 0;
      loss_n_ = 0;
    }
  }
  /// Closes a loss interval left open (a run read back at its last iteration).
  void close_loss(std::int64_t iter) {
    if (loss_n_ == 0) return;
    loss.emplace_back(double(iter), loss_sum_ / loss_n_);
    loss_sum_ = 0;
    loss_n_ = 0;
  }
  void add_test(std::int64_t iter, double t1, double t5) {
    top1.emplace_back(double(iter), t1);
    if (t1 > best_top1) {
      best_top1 = t1;
      best_iter = iter;
    }
    final_top1 = t1;
    final_top5 = t5;
    final_iter = iter;
  }

 private:
  double loss_sum_ = 0;
  int loss_n_ = 0;
};

inline netsplit::any_split_strategy make_strategy(const options& o) {
  return netsplit::make_split_strategy(o.strategy, o.split_eps);
}
inline netsplit::any_selector make_selector(const options& o) {
  return netsplit::make_selector(o.select, {o.splits, o.select_cap, o.select_threshold});
}

/// Iterations per progress line and per point of the loss curve.
inline std::int64_t display_interval(const options& o) {
  return std::max<std::int64_t>(1, std::min<std::int64_t>(100, o.max_iter / 20));
}

/// Iterations between points of the baseline's whole-run TPM curve (one interval across the
/// run, the window included).
inline std::int64_t tpm_curve_stride(const options& o) {
  return std::max<std::int64_t>(1, std::min<std::int64_t>(100, o.max_iter / 40));
}

namespace detail {
/// The number after "\"key\":" in one of our own JSON lines, or NaN.
inline double json_number(const std::string& line, const std::string& key) {
  const auto at = line.find("\"" + key + "\":");
  if (at == std::string::npos) return std::nan("");
  return std::strtod(line.c_str() + at + key.size() + 3, nullptr);
}
inline bool json_type(const std::string& line, const char* type) {
  return line.rfind(std::string("{\"type\":\"") + type + "\"", 0) == 0;
}
/// The items of the flat list after "\"key\":[" in one of our own JSON lines (strings
/// without their quotes; our lists hold no commas inside items).
inline std::vector<std::string> json_list(const std::string& line, const std::string& key) {
  std::vector<std::string> out;
  const auto at = line.find("\"" + key + "\":[");
  if (at == std::string::npos) return out;
  const auto begin = at + key.size() + 4, end = line.find(']', begin);
  if (end == std::string::npos || end == begin) return out;
  std::istringstream items(line.substr(begin, end - begin));
  for (std::string item; std::getline(items, item, ',');) {
    if (item.size() >= 2 && item.front() == '"' && item.back() == '"') item = item.substr(1, item.size() - 2);
    out.push_back(item);
  }
  return out;
}
}  // namespace detail

/// Fills a resumed run's result (loss, top-1 and TPM curves, best and final test results)
/// with what its metrics log recorded up to iteration `upto`, and the loss interval in
/// progress. An earlier attempt may have logged iterations past its last checkpoint, and a
/// run resumed twice logs some twice: each iteration counts once (the last line wins; the
/// run is deterministic, so all agree).
inline void restore_progress(const fs::path& metrics, std::int64_t upto, std::int64_t display, std::int64_t tpm_stride,
                             run_result& res) {
  std::ifstream in(metrics);
  std::map<std::int64_t, double> loss, tpm;
  std::map<std::int64_t, std::pair<double, double>> pairs;  // min, mean cosine
  std::map<std::int64_t, std::pair<double, double>> test;  // top-1, top-5
  std::map<std::int64_t, run_result::round_info> rounds;
  for (std::string line; std::getline(in, line);) {
    const double it = detail::json_number(line, "iter");
    if (std::isnan(it)) continue;
    const auto i = static_cast<std::int64_t>(it);
    if (detail::json_type(line, "train") && i <= upto) loss[i] = detail::json_number(line, "loss");
    if (detail::json_type(line, "test") && i <= upto)
      test[i] = {detail::json_number(line, "top1"), detail::json_number(line, "top5")};
    // (logs written before the curve was sampled at one interval hold every window iteration)
    if (detail::json_type(line, "tpm") && i < upto && i % tpm_stride == 0) tpm[i] = detail::json_number(line, "mean");
    if (detail::json_type(line, "split_pairs") && i <= upto)
      pairs[i] = {detail::json_number(line, "min_cos"), detail::json_number(line, "mean_cos")};
    if (detail::json_type(line, "round") && i <= upto) {
      run_result::round_info ri;
      ri.iter = i;
      ri.params = static_cast<std::int64_t>(detail::json_number(line, "params"));
      ri.macs = static_cast<std::int64_t>(detail::json_number(line, "macs"));
      ri.splits = static_cast<int>(detail::json_number(line, "splits"));
      for (const auto& v : detail::json_list(line, "width")) ri.widths.push_back(std::strtod(v.c_str(), nullptr));
      res.sites = detail::json_list(line, "site");
      rounds[i] = ri;
    }
    if (detail::json_type(line, "site_scores") && i <= upto) {
      res.sites = detail::json_list(line, "site");
      res.site_best.clear();
      for (const auto& v : detail::json_list(line, "best")) res.site_best.push_back(std::strtod(v.c_str(), nullptr));
    }
  }
  for (const auto& [i, l] : loss) res.add_loss(i, l, i % display == 0);
  for (const auto& [i, t] : test) res.add_test(i, t.first, t.second);
  for (const auto& [i, m] : tpm) res.tpm.emplace_back(double(i), m);
  res.rounds.clear();
  for (const auto& [i, ri] : rounds) res.rounds.push_back(ri);
  for (const auto& [i, p] : pairs) {
    res.pair_min_cos.emplace_back(double(i), p.first);
    res.pair_mean_cos.emplace_back(double(i), p.second);
  }
}

/// The checkpoint of the highest iteration in a run's folder (empty if none).
inline fs::path latest_checkpoint(const fs::path& dir, const std::string& model) {
  fs::path best;
  std::int64_t best_iter = -1;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto name = e.path().filename().string();
    const std::string head = model + "_iter_", tail = ".safetensors";
    if (name.size() <= head.size() + tail.size() || name.rfind(head, 0) != 0 ||
        name.compare(name.size() - tail.size(), tail.size(), tail) != 0)
      continue;
    const auto digits = name.substr(head.size(), name.size() - head.size() - tail.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto it = std::stoll(digits);
    if (it > best_iter) {
      best_iter = it;
      best = e.path();
    }
  }
  return best;
}

/// The iteration of the snapshot other runs start from: the baseline's split iteration; in
/// a growth study the small run's, at the first round's window (0: the grown arms start
/// from scratch).
inline std::int64_t trunk_iteration(const options& o, const std::string& kind) {
  return kind == "small" ? o.tpm_begin : o.split_at;
}

/// The growth plan of --grow-at / --grow-rounds, --grow-window, --grow-to, --grow-by.
template <class Net>
netsplit::growth_plan growth_plan_of(const options& o) {
  using namespace netsplit;
  if (o.grow_to > 0) {
    Net target(1, width_multiplier{o.grow_to});
    if (o.grow_by == "widths") return make_width_plan(o.grow_at, o.grow_window, target, o.max_iter);
    Net start(1, width_multiplier{o.width_mult});
    return make_budget_plan(o.grow_at, o.grow_window, count_parameters(start), count_parameters(target), o.max_iter);
  }
  return make_growth_plan(o.grow_at, o.grow_window, o.splits, o.max_iter);
}

/// A run of a resumed study that finished before (its metrics log has a summary line):
/// its result, read back from its folder; nullopt when it did not finish.
inline std::optional<run_result> finished_run(const options& o, const run_spec& spec) {
  std::ifstream in(spec.dir / "metrics.jsonl");
  std::string summary;
  for (std::string line; std::getline(in, line);)
    if (detail::json_type(line, "summary")) summary = line;
  if (summary.empty()) return std::nullopt;
  run_result r;
  r.kind = spec.kind;
  r.seed = spec.seed;
  const auto iter = static_cast<std::int64_t>(detail::json_number(summary, "iter"));
  restore_progress(spec.dir / "metrics.jsonl", iter, display_interval(o), tpm_curve_stride(o), r);
  r.close_loss(iter);
  r.final_top1 = detail::json_number(summary, "final_top1");
  r.final_top5 = detail::json_number(summary, "final_top5");
  r.best_top1 = detail::json_number(summary, "best_top1");
  r.best_iter = static_cast<std::int64_t>(detail::json_number(summary, "best_iter"));
  r.params = static_cast<std::int64_t>(detail::json_number(summary, "params"));
  r.macs = static_cast<std::int64_t>(detail::json_number(summary, "macs"));
  r.seconds = detail::json_number(summary, "seconds");
  const auto final_ckpt = spec.dir / (o.model + "_iter_" + std::to_string(iter) + ".safetensors");
  if (fs::exists(final_ckpt)) {
    const auto f = netsplit::io::read_file(final_ckpt, netsplit::io::read_options{.require_checksum = true});
    if (const auto h = f.metadata.find("netsplit.splits"); h != f.metadata.end())
      r.splits = netsplit::parse_history(h->second, final_ckpt.string());
  } else if (spec.kind == "derived" || spec.kind == "random" || spec.kind.rfind("grow-", 0) == 0) {
    netsplit::detail::raise<netsplit::io_error>("netsplit: the finished ", spec.kind, " run in ", spec.dir.string(),
                                                " has no final checkpoint ", final_ckpt.string(),
                                                " to read its splits from");
  }
  if (spec.kind == "baseline" || (spec.kind == "small" && o.growth()))
    r.split_snapshot = spec.dir / (o.model + "_iter_" + std::to_string(trunk_iteration(o, spec.kind)) + ".safetensors");
  return r;
}

/// Derived runs that logged every site's score at their split (at least 1).
inline int derived_runs_with_scores(const std::vector<run_result>& runs) {
  return std::max<int>(1, static_cast<int>(std::count_if(runs.begin(), runs.end(), [](const run_result& r) {
                            return r.kind == "derived" && !r.sites.empty();
                          })));
}

/// Runs one training run as `spec` says; reports through `log`. Throws netsplit errors.
template <class Net>
run_result execute(const options& o, const run_spec& spec, const data_env& data, run_log& log) {
  using namespace netsplit;
  run_result res;
  res.kind = spec.kind;
  res.seed = spec.seed;
  using backend = run_backend<typename Net::backend_type>;
  auto ctx = backend::open(o.threads, o.concurrent_runs, o.device);
  Net net(rng::derive(spec.seed, 0).next_u64(), width_multiplier{spec.width > 0 ? spec.width : o.width_mult});
  train_config cfg;
  cfg.max_iter = o.max_iter;
  cfg.batch_size = o.batch_size;
  cfg.schedule = o.schedule;
  cfg.optimizer = {o.momentum, o.weight_decay, o.nesterov};
  cfg.test_interval = o.test_interval;
  cfg.snapshot_every = o.snapshot_every;
  cfg.snapshot_at = o.snapshot_at;
  cfg.snapshot_dir = spec.dir;
  cfg.snapshot_prefix = o.model;
  cfg.seed = spec.seed;
  cfg.sync_batch_norm = o.sync_bn;
  const bool grows = spec.kind == "derived" || spec.kind == "random" ||
                     (spec.kind == "train" && (o.split_at_given || !o.from_snapshot.empty()));
  const bool records = spec.kind == "baseline" || (spec.kind == "train" && grows);
  if (spec.kind == "baseline") cfg.snapshot_at.push_back(o.split_at);
  // a growth study's small run is the trunk the grown arms start from
  const bool trunk = spec.kind == "baseline" || (spec.kind == "small" && o.growth() && o.tpm_begin > 0);
  const std::int64_t trunk_at = trunk_iteration(o, spec.kind);
  if (spec.kind == "small" && trunk) cfg.snapshot_at.push_back(trunk_at);
  const bool growth = o.growth() && (spec.kind == "train" || spec.kind.rfind("grow-", 0) == 0);
  trainer<Net, world_type> tr(ctx, net, data.train, data.test, data.stats, cfg, world());
  split_history<Net> history;  // every run's checkpoints carry it (empty until a split)
  history.attach(tr);

  if (spec.kind == "static") {
    // A static network of the grown size: the same widths, trained from scratch.
    replay_history(net, spec.grown, "the derived run");
    rng r(rng::derive(spec.seed, 7).next_u64());
    net.initialize(r);
  }

  fs::path last_snapshot_start;  // a resumed run's last good checkpoint is where it started
  const std::string start = !spec.resume.empty()      ? spec.resume
                            : !spec.snapshot.empty()    ? spec.snapshot
                            : !o.from_snapshot.empty() ? o.from_snapshot
                            : o.mode == "study"        ? std::string()  // there --resume names the study's folder
                                                       : o.resume;

  // Growth in rounds: the plan, checked before training; the recorder of the arm's metric
  // starts on the window of the round the run is in (from the checkpoint it starts from).
  std::optional<growth_plan> plan;
  std::optional<tpm_recorder<Net>> grec;
  std::size_t round = 0;
  const std::string grow_metric = spec.kind == "grow-random" ? "random" : spec.metric.empty() ? o.tpm : spec.metric;
  if (growth) {
    plan = growth_plan_of<Net>(o);
    {
      Net start_net(1, width_multiplier{o.width_mult});
      check_plan(start_net, *plan, o.split_sites);
    }
    std::int64_t start_iter = 0;
    if (!start.empty()) {
      const auto f = io::read_file(start);
      if (const auto it = f.metadata.find("netsplit.iteration"); it != f.metadata.end())
        start_iter = checkpoint::parse_int(it->second, "iteration", start);
    }
    round = plan->round_for(start_iter);
    grec.emplace(net, make_tpm_metric(grow_metric), plan->rounds[std::min(round, plan->rounds.size() - 1)].window,
                 spec.seed, &ctx);
    grec->set_observe_every(tpm_every_for(o, grow_metric));
    grec->attach(tr);
  }

  // TPM: the score recorder (window) and, for a baseline, a whole-run summary curve. The
  // random control selects with random scores but keeps the recorded state, so a strategy
  // that needs it (gradient_direction) works the same way as in the derived run.
  const std::string metric = spec.kind == "random" ? "random" : o.tpm;
  // Recorders exist only in runs that record or split: a plain run has no window to check.
  std::optional<tpm_recorder<Net>> rec, random_scores;
  const bool uses_tpm = records || grows;
  if (uses_tpm) rec.emplace(net, make_tpm_metric(o.tpm), tpm_window{o.tpm_begin, o.tpm_end}, spec.seed, &ctx);
  if (spec.kind == "random") random_scores.emplace(net, make_tpm_metric("random"), tpm_window{o.tpm_begin, o.tpm_end}, spec.seed);
  if (rec) rec->follow(tr.replica());  // a data-parallel run scores the whole batch
  if (random_scores) random_scores->follow(tr.replica());
  // A baseline also reports the metric's summary over the whole run at one interval
  // (tpm_curve_stride; the window is not sampled more densely), for the "where
  // learning happens" curve; summaries outside the window do not touch the scores.
  if (spec.kind == "baseline" && o.tpm_curve)
    rec->set_summary_range({0, o.max_iter}, tpm_curve_stride(o));
  auto on_summary = [&](const tpm_summary& s) {
    const double mean = std::accumulate(s.per_site.begin(), s.per_site.end(), 0.0) / std::max<std::size_t>(1, s.per_site.size());
    std::ostringstream js;
    js.precision(7);
    js << "{\"type\":\"tpm\",\"iter\":" << s.iter << ",\"metric\":\"" << s.metric << "\",\"mean\":" << mean
       << ",\"per_site\":[";
    for (std::size_t i = 0; i < s.per_site.size(); ++i) js << (i ? "," : "") << s.per_site[i];
    js << "]}";
    log.json(js.str());
    res.tpm.emplace_back(double(s.iter), mean);
  };
  if (rec) rec->on_summary = on_summary;
  if (records) {
    tr.after_backward.add([&](std::int64_t it) { rec->observe(it); });
    tr.after_update.add([&](std::int64_t completed) { rec->after_update(completed); });
  }
  if (uses_tpm) {
    // A recording run saves the TPM state and reads it back on resume; a growing run reads
    // it (it splits on the recorded scores) and refuses a split iteration before the
    // checkpoint's. Once the checkpoint holds the splits, the scores are spent: not read.
    auto tpm = rec->section();
    if (!records) tpm.save = nullptr;
    tpm.validate = [&, read = tpm.validate](const io::safetensors_file& f, const std::string& where) {
      if (const auto h = f.metadata.find(split_history<Net>::key); h != f.metadata.end() && !h->second.empty()) return;
      const auto it = f.metadata.find("netsplit.iteration");
      const auto start_iter = it == f.metadata.end() ? 0 : checkpoint::parse_int(it->second, "iteration", where);
      NETSPLIT_EXPECT(!grows || !o.split_at_given || o.split_at >= start_iter, "the split iteration ", o.split_at,
                      " is before the run's start (iteration ", start_iter, ")");
      read(f, where);
    };
    tr.add_section(std::move(tpm));
  }

  const bool resumed = !spec.resume.empty() || (start == o.resume && !start.empty());
  if (!start.empty()) {
    run_control::set_activity("loading checkpoint " + start);
    tr.load(start);
    last_snapshot_start = start;
    log.line((resumed ? "resumed from " : "started from snapshot ") + start + " at iteration " +
             std::to_string(tr.iteration()));
  }
  std::int64_t split_at = o.split_at;
  if (!o.split_at_given && (spec.kind == "derived" || spec.kind == "random" || !o.from_snapshot.empty()))
    split_at = tr.iteration();
  // Every site's best filter score at a split (after `normalise`), in network order: a
  // site_scores JSON line, and the result's site map (the report shows all sites).
  auto log_site_scores = [&](std::int64_t it, const std::string& metric_name, const std::string& normalise,
                             std::vector<site_scores> all) {
    make_score_normalisation(normalise).apply(all);
    std::ostringstream js;
    js.precision(7);
    js << "{\"type\":\"site_scores\",\"iter\":" << it << ",\"metric\":\"" << metric_name
       << "\",\"normalise\":\"" << normalise << "\",\"site\":[";
    res.sites.clear();
    res.site_best.clear();
    for (const auto& a : all) {
      res.sites.push_back(a.site);
      res.site_best.push_back(a.scores.empty() ? 0.0 : *std::max_element(a.scores.begin(), a.scores.end()));
      js << (res.sites.size() > 1 ? "," : "") << "\"" << a.site << "\"";
    }
    js << "],\"best\":[";
    for (std::size_t i = 0; i < res.site_best.size(); ++i) js << (i ? "," : "") << res.site_best[i];
    js << "]}";
    log.json(js.str());
  };
  auto log_split = [&](const split_event& e) {
    // (reported from inside split_now, before res.splits holds its result: count the lines)
    std::istringstream lines(e.description);
    std::string l;
    std::size_t count = 0;
    while (std::getline(lines, l)) {
      log.line("  " + l);
      ++count;
    }
    std::ostringstream js;
    js << "{\"type\":\"split\",\"iter\":" << e.iter << ",\"count\":" << count << "}";
    log.json(js.str());
  };
  // Once the network holds its splits (a resumed growing run), nothing is left to split.
  if (grows && history.records().empty()) {
    // Impossible requests fail now, not at the split iteration: unknown sites, too many filters.
    {
      const auto ok = eligible_sites(rec->sites(), o.split_sites);
      std::vector<site_scores> zeros;
      for (std::size_t s = 0; s < ok.size(); ++s)
        if (ok[s]) zeros.push_back({rec->sites()[s].name, std::vector<double>(static_cast<std::size_t>(site_width(net, rec->sites()[s])), 0.0)});
      std::visit([&](const auto& sel) { (void)sel.select(zeros); }, make_selector(o));
    }
    NETSPLIT_EXPECT(split_at >= tr.iteration(), "the split iteration ", split_at, " is before the run's start (iteration ",
                    tr.iteration(), ")");
    tr.before_iteration.add([&, split_at](std::int64_t it) {
      if (it != split_at) return;
      const auto before = count_parameters(net);
      std::visit(
          [&](const auto& sel) {
            std::visit(
                [&](const auto& st) {
                  const auto rs = random_scores ? random_scores->scores() : std::vector<site_scores>{};
                  // the random control's picks stay uniform: no normalisation of its scores
                  const normalised_selector picker{make_score_normalisation(spec.kind == "random" ? "none" : o.normalise), sel};
                  // every site's best filter score (the TPM's, normalised as the run selects)
                  log_site_scores(it, o.tpm, o.normalise, rec->scores());
                  res.splits = split_now(tr, history, *rec, picker, st, rng::derive(spec.seed, 3).next_u64(), o.split_sites,
                                         spec.kind == "random" ? &rs : nullptr);
                },
                make_strategy(o));
          },
          make_selector(o));
      log.line("Iteration " + std::to_string(it) + ": split " + std::to_string(res.splits.size()) + " filters (" +
               metric + " scores, " + (spec.kind != "random" && o.normalise != "none" ? o.normalise + ", " : "") +
               o.select + ", " + o.strategy + "); parameters " + std::to_string(before) +
               " -> " + std::to_string(count_parameters(net)));
    });
    tr.events.on_split = log_split;
  }
  if (growth) {
    tr.events.on_split = log_split;
    const auto normalise = spec.kind == "grow-random" ? std::string("none") : o.normalise;
    tr.before_iteration.add([&, normalise](std::int64_t it) {
      if (round >= plan->rounds.size() || it != plan->rounds[round].at) return;
      const auto before = count_parameters(net);
      const auto norm = make_score_normalisation(normalise);
      // every site's best filter score this round (normalised as the arm selects)
      log_site_scores(it, grow_metric, normalise, grec->scores());
      // random growth: fresh uniform scores every round (a recorder's random scores depend
      // on its seed and the site only, so one recorder would rank the same filters first
      // in every round)
      std::vector<site_scores> fresh;
      if (spec.kind == "grow-random")
        fresh = tpm_recorder<Net>(net, make_tpm_metric("random"), plan->rounds[round].window,
                                  rng::derive(spec.seed, 4000 + round).next_u64())
                    .scores();
      const auto made = std::visit(
          [&](const auto& st) {
            return grow_round(tr, history, *grec, *plan, round, norm, st, rng::derive(spec.seed, 3 + 100 * round).next_u64(),
                              o.split_sites, spec.kind == "grow-random" ? &fresh : nullptr, spec.kind != "grow-random");
          },
          make_strategy(o));
      // the network after the round: size and every site's width
      run_result::round_info ri;
      ri.iter = it;
      ri.params = count_parameters(net);
      ri.macs = net.mult_adds_per_image();
      ri.splits = static_cast<int>(made.size());
      std::ostringstream js;
      js << "{\"type\":\"round\",\"iter\":" << it << ",\"round\":" << round + 1 << ",\"splits\":" << made.size()
         << ",\"params\":" << ri.params << ",\"macs\":" << ri.macs << ",\"site\":[";
      const auto sites = derive_sites(net);
      for (std::size_t i = 0; i < sites.size(); ++i) js << (i ? "," : "") << "\"" << sites[i].name << "\"";
      js << "],\"width\":[";
      res.sites.clear();
      for (std::size_t i = 0; i < sites.size(); ++i) {
        ri.widths.push_back(site_width(net, sites[i]));
        res.sites.push_back(sites[i].name);
        js << (i ? "," : "") << ri.widths.back();
      }
      js << "]}";
      log.json(js.str());
      res.rounds.push_back(ri);
      log.line("Iteration " + std::to_string(it) + ": growth round " + std::to_string(round + 1) + " of " +
               std::to_string(plan->rounds.size()) + ": split " + std::to_string(made.size()) + " filters (" +
               grow_metric + " scores" + (normalise != "none" ? ", " + normalise : std::string()) + ", " +
               (plan->mode == growth_mode::widths ? "to the target widths"
                : plan->budget_mode()             ? "parameter budget"
                                                  : std::to_string(o.splits) + " per round") +
               ", " + o.strategy + "); parameters " + std::to_string(before) + " -> " + std::to_string(ri.params) +
               ", conv MACs/image " + fmt("%.2f", ri.macs / 1e6) + " M");
      ++round;
    });
  }

  // Whether the split copies diverge: every pair's incoming weights, at the split and every
  // display interval after it (a JSON line each; the report plots min and mean cosine).
  std::optional<split_pair_monitor<Net>> pairs;
  if (grows || growth) {
    pairs.emplace(net, history, display_interval(o));
    pairs->on_report = [&](const split_pair_report& r) {
      std::ostringstream js;
      js.precision(9);
      js << "{\"type\":\"split_pairs\",\"iter\":" << r.iter << ",\"min_cos\":" << r.min_cosine
         << ",\"mean_cos\":" << r.mean_cosine;
      const auto list = [&](const char* key, auto get) {
        js << ",\"" << key << "\":[";
        for (std::size_t i = 0; i < r.pairs.size(); ++i) js << (i ? "," : "") << get(r.pairs[i]);
        js << "]";
      };
      list("site", [](const split_pair_state& p) { return "\"" + p.site + "\""; });
      list("filter", [](const split_pair_state& p) { return p.filter; });
      list("copy", [](const split_pair_state& p) { return p.copy; });
      list("cos", [](const split_pair_state& p) { return p.cosine; });
      list("rel_dist", [](const split_pair_state& p) { return p.distance; });
      js << "}";
      log.json(js.str());
      res.pair_min_cos.emplace_back(double(r.iter), r.min_cosine);
      res.pair_mean_cos.emplace_back(double(r.iter), r.mean_cosine);
    };
    pairs->attach(tr);  // after the split hook above
  }

  log.line("netsplit " + net.architecture() + " (" + spec.kind + ", seed " + std::to_string(spec.seed) + "): " +
           std::to_string(count_parameters(net)) + " parameters, " + fmt("%.2f", net.mult_adds_per_image() / 1e6) +
           " M conv multiply-adds per image");
  log.file_line(backend::describe(ctx));
  const std::int64_t display = display_interval(o);
  // A resumed run's curves and test results so far come from its own metrics log.
  if (resumed) restore_progress(spec.dir / "metrics.jsonl", tr.iteration(), display, tpm_curve_stride(o), res);
  // A baseline resumed past its split iteration wrote the derived runs' snapshot before.
  if (trunk && tr.iteration() >= trunk_at && fs::exists(tr.snapshot_path(trunk_at)))
    res.split_snapshot = tr.snapshot_path(trunk_at);
  tr.events.on_iteration = [&](const iteration_event& e) {
    run_control::set_iteration(e.iter);
    log.on_iteration(e, display);
    res.add_loss(e.iter, e.loss, e.iter % display == 0 || e.iter == e.max_iter);
  };
  tr.events.on_test = [&](const test_event& e) {
    log.on_test(e);
    res.add_test(e.iter, e.top1, e.top5);
  };
  fs::path last_snapshot = last_snapshot_start;
  tr.events.on_snapshot = [&](const snapshot_event& e) {
    last_snapshot = e.path;
    if (trunk && e.iter == trunk_at) res.split_snapshot = e.path;
    log.line("Snapshotting to " + e.path.string());
  };
  const double t0 = log.elapsed();
  const auto first_iter = tr.iteration();
  tr.stop_requested = run_control::stop_requested;
  run_control::set_activity(spec.kind == "train" ? "training" : "training the " + spec.kind + " run");
  run_control::set_iteration(tr.iteration());
  try {
    if (tr.run() == trainer<Net, world_type>::run_outcome::stopped) {
      if (!run_control::stop_signal && run_control::study_failed) {
        // a study running several runs at once: another one failed, and this one stops so
        // that the study ends with its error; its checkpoint lets a rerun continue it
        log.line("stopped at iteration " + std::to_string(tr.iteration()) +
                 " because another run of the study failed; rerun the study to continue this run from " +
                 last_snapshot.string());
        res.exit_code = 128 + SIGTERM;
        return res;
      }
      // a data-parallel run stops where any process was signalled: the others say SIGTERM
      const int sig = run_control::stop_signal ? static_cast<int>(run_control::stop_signal) : SIGTERM;
      log.line(std::string("stopped by ") + run_control::signal_name(sig) + " at iteration " +
               std::to_string(tr.iteration()) + "; " +
               (o.mode == "study" ? "resume the study with --resume " + o.out_dir + " (or rerun the same command)"
                                  : "resume with --resume " + last_snapshot.string()));
      res.exit_code = 128 + sig;
      return res;
    }
  } catch (const divergence_error& e) {
    log.line(std::string("error: ") + e.what());
    log.line(last_snapshot.empty() ? "no checkpoint was written before the divergence"
                                   : "last good checkpoint: " + last_snapshot.string());
    res.exit_code = 3;
    return res;
  }
  run_control::set_activity("finishing the " + spec.kind + " run");
  res.seconds = log.elapsed() - t0;
  res.params = count_parameters(net);
  res.macs = net.mult_adds_per_image();
  res.splits = history.records();
  const std::int64_t trained = tr.iteration() - first_iter;
  log.line("done: final top-1 " + fmt("%.4f", res.final_top1) + " (top-5 " + fmt("%.4f", res.final_top5) +
           ") at iteration " + std::to_string(res.final_iter) + "; best top-1 " + fmt("%.4f", res.best_top1) +
           " at iteration " + std::to_string(res.best_iter) + " (best is picked on the test set: report the final one)");
  // Throughput only from full batches actually trained in this process.
  log.line("time: " + run_log::duration(res.seconds) + ", " +
           (trained > 0 && res.seconds > 0
                ? fmt("%.1f", double(trained) * o.batch_size / res.seconds) + " img/s including evaluation"
                : std::string("no training iteration in this process")) +
           "; logs in " + spec.dir.string());
  std::ostringstream js;
  js << "{\"type\":\"summary\",\"kind\":\"" << spec.kind << "\",\"seed\":" << spec.seed
     << ",\"final_top1\":" << res.final_top1 << ",\"final_top5\":" << res.final_top5 << ",\"best_top1\":" << res.best_top1
     << ",\"best_iter\":" << res.best_iter << ",\"iter\":" << tr.iteration() << ",\"params\":" << res.params
     << ",\"macs\":" << res.macs << ",\"seconds\":" << res.seconds << "}";
  log.json(js.str());
  return res;
}

/// execute, and an error that stops the run is also written to its train.log before it
/// propagates (the program prints it on stderr), so a log ends with the reason.
template <class Net>
run_result execute_logged(const options& o, const run_spec& spec, const data_env& data, run_log& log) {
  try {
    return execute<Net>(o, spec, data, log);
  } catch (const std::exception& e) {
    log.file_line(std::string("error: ") + e.what());
    throw;
  }
}

/// A growth study's per-round sections (markdown) and plots: per grown arm, the filters
/// every site gained in each round and its final width (means over seeds; all sites, zeros
/// included), parameters and MACs after each round; growth.svg (parameters over iterations,
/// first seed, every arm) and widths.svg (every site's width over iterations, first seed,
/// the first grown arm); a split map per arm (splits-<arm>.svg).
inline std::string growth_sections(const options& o, const std::vector<run_result>& runs, const fs::path& dir) {
  const std::vector<std::string> colors{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                                        "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"};
  std::vector<std::string> arms;
  for (const auto& r : runs)
    if (r.kind.rfind("grow-", 0) == 0 && std::find(arms.begin(), arms.end(), r.kind) == arms.end()) arms.push_back(r.kind);
  std::ostringstream md;
  md << "## Growth per round (means over seeds)\n\n";
  const auto first_seed = runs.empty() ? 0 : runs.front().seed;
  std::int64_t start_params = 0;
  for (const auto& r : runs)
    if (r.kind == "small") start_params = r.params;
  std::vector<series> growth, widths;
  std::size_t c = 0;
  for (const auto& arm : arms) {
    std::vector<const run_result*> rs;
    for (const auto& r : runs)
      if (r.kind == arm && !r.rounds.empty()) rs.push_back(&r);
    if (rs.empty()) continue;
    const auto& sites = rs.front()->sites;
    const std::size_t R = rs.front()->rounds.size();
    md << "### " << arm << "\n\n| site |";
    for (std::size_t k = 0; k < R; ++k) md << " + round " << k + 1 << " |";
    md << " final width |\n|---|";
    for (std::size_t k = 0; k <= R; ++k) md << "---|";
    md << "\n";
    std::vector<bar> bars;
    for (std::size_t i = 0; i < sites.size(); ++i) {
      md << "| " << sites[i] << " |";
      double total = 0;
      for (std::size_t k = 0; k < R; ++k) {
        double added = 0;
        for (const auto* r : rs) {
          if (k >= r->rounds.size()) continue;
          for (const auto& sp : r->splits)
            if (sp.iteration == r->rounds[k].iter && sp.site == sites[i]) added += 1;
        }
        added /= double(rs.size());
        total += added;
        md << " " << fmt("%.1f", added) << " |";
      }
      double w = 0;
      for (const auto* r : rs)
        if (!r->rounds.empty() && i < r->rounds.back().widths.size()) w += r->rounds.back().widths[i];
      md << " " << fmt("%.1f", w / double(rs.size())) << " |\n";
      bars.push_back({sites[i], total, std::nan("")});
    }
    md << "| parameters after the round |";
    for (std::size_t k = 0; k < R; ++k) {
      double p = 0;
      for (const auto* r : rs) p += k < r->rounds.size() ? double(r->rounds[k].params) : 0;
      md << " " << fmt("%.0f", p / double(rs.size())) << " |";
    }
    md << " |\n| conv MACs/image after the round (M) |";
    for (std::size_t k = 0; k < R; ++k) {
      double m = 0;
      for (const auto* r : rs) m += k < r->rounds.size() ? double(r->rounds[k].macs) : 0;
      md << " " << fmt("%.2f", m / double(rs.size()) / 1e6) << " |";
    }
    md << " |\n\n![" << arm << " splits](splits-" << arm << ".svg)\n\n";
    svg::save((dir / ("splits-" + arm + ".svg")).string(),
              bar_chart("filters " + arm + " added per site over all rounds (mean over seeds)", "filters", bars));
    for (const auto* r : rs)
      if (r->seed == first_seed) {
        // steps: the size holds until a round, then jumps
        series g{arm, colors[c++ % colors.size()], {}, false};
        double last = double(start_params);
        if (start_params > 0) g.points.emplace_back(0.0, last);
        for (const auto& ri : r->rounds) {
          if (start_params > 0) g.points.emplace_back(double(ri.iter), last);
          last = double(ri.params);
          g.points.emplace_back(double(ri.iter), last);
        }
        g.points.emplace_back(double(o.max_iter), double(r->params));
        growth.push_back(g);
        if (widths.empty())
          for (std::size_t i = 0; i < r->sites.size(); ++i) {
            // the starting width: after round 1 less the filters round 1 added there
            double w0 = r->rounds.front().widths.size() > i ? r->rounds.front().widths[i] : 0;
            for (const auto& sp : r->splits)
              if (sp.iteration == r->rounds.front().iter && sp.site == r->sites[i]) w0 -= 1;
            series w{r->sites[i], colors[i % colors.size()], {{0.0, w0}}, i >= colors.size()};
            double prev = w0;
            for (const auto& ri : r->rounds)
              if (i < ri.widths.size()) {
                w.points.emplace_back(double(ri.iter), prev);
                prev = ri.widths[i];
                w.points.emplace_back(double(ri.iter), prev);
              }
            w.points.emplace_back(double(o.max_iter), prev);
            widths.push_back(w);
          }
      }
  }
  for (const auto& r : runs)
    if (r.seed == first_seed && (r.kind == "small" || r.kind == "full"))
      growth.push_back({r.kind, colors[c++ % colors.size()], {{0.0, double(r.params)}, {double(o.max_iter), double(r.params)}}, true});
  svg::save((dir / "growth.svg").string(),
            line_chart("parameters over training (seed " + std::to_string(first_seed) + ")", "iteration", "parameters", growth));
  svg::save((dir / "widths.svg").string(),
            line_chart("width per site after each round (" + (arms.empty() ? std::string("-") : arms.front()) + ", seed " +
                           std::to_string(first_seed) + ")",
                       "iteration", "filters", widths));
  return md.str();
}

/// Writes report.md, results.csv and the SVG plots into `dir`; returns the markdown table.
inline std::string write_report(const options& o, const std::string& command, const std::string& dataset_note,
                                const std::vector<run_result>& runs, const fs::path& dir) {
  std::ostringstream md, csv;
  csv << "kind,seed,final_top1,final_top5,best_top1,best_iter,params,conv_macs_per_image,seconds,splits\n";
  for (const auto& r : runs)
    csv << r.kind << ',' << r.seed << ',' << r.final_top1 << ',' << r.final_top5 << ',' << r.best_top1 << ','
        << r.best_iter << ',' << r.params << ',' << r.macs << ',' << r.seconds << ',' << r.splits.size() << '\n';
  svg::save((dir / "results.csv").string(), csv.str());

  std::vector<std::string> kinds;
  for (const auto& r : runs)
    if (std::find(kinds.begin(), kinds.end(), r.kind) == kinds.end()) kinds.push_back(r.kind);
  std::ostringstream table;
  table << "| run | final top-1 % (mean ± std) | best top-1 % (mean ± std) | params | conv MACs/image | seeds |\n"
        << "|---|---|---|---|---|---|\n";
  for (const auto& k : kinds) {
    std::vector<double> fin, best;
    std::int64_t pmin = 0, pmax = 0, mmin = 0, mmax = 0;  // grown sizes differ between seeds
    std::string seeds;
    for (const auto& r : runs)
      if (r.kind == k) {
        const bool first = fin.empty();
        fin.push_back(r.final_top1);
        best.push_back(r.best_top1);
        pmin = first ? r.params : std::min(pmin, r.params);
        pmax = first ? r.params : std::max(pmax, r.params);
        mmin = first ? r.macs : std::min(mmin, r.macs);
        mmax = first ? r.macs : std::max(mmax, r.macs);
        seeds += (seeds.empty() ? "" : ",") + std::to_string(r.seed);
      }
    const auto range = [](std::string lo, std::string hi) { return lo == hi ? lo : lo + "–" + hi; };
    table << "| " << k << " | " << pm(stats_of(fin)) << " | " << pm(stats_of(best)) << " | "
          << range(std::to_string(pmin), std::to_string(pmax)) << " | "
          << range(fmt("%.2f", mmin / 1e6), fmt("%.2f", mmax / 1e6)) << " M | " << seeds << " |\n";
  }
  // Paired differences against the baseline of the same seed (final top-1).
  const std::string paired_header =
      "| comparison | mean ± std (points) | 95% interval of the mean (points) | per seed |\n|---|---|---|---|\n";
  std::ostringstream paired;
  // against the baseline; in a growth study against random growth and both static nets
  const std::vector<std::string> references =
      o.growth() ? std::vector<std::string>{"grow-random", "small", "full"} : std::vector<std::string>{"baseline"};
  for (const auto& ref : references)
    for (const auto& k : kinds) {
      if (k == ref || (o.growth() && std::find(references.begin(), references.end(), k) != references.end() &&
                       std::find(references.begin(), references.end(), k) < std::find(references.begin(), references.end(), ref)))
        continue;
      std::vector<double> d;
      std::string per;
      for (const auto& r : runs)
        if (r.kind == k)
          for (const auto& b : runs)
            if (b.kind == ref && b.seed == r.seed) {
              d.push_back(r.final_top1 - b.final_top1);
              per += (per.empty() ? "" : ", ") + ("seed " + std::to_string(r.seed) + ": " + fmt("%+.2f", 100 * d.back()));
            }
      if (!d.empty())
        paired << "| " << k << " − " << ref << " | " << pm(stats_of(d)) << " | " << ci_text(stats_of(d)) << " | " << per
               << " |\n";
    }

  // Plots: curves of the first seed's runs, TPM, where splits went.
  const std::vector<std::string> colors{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"};
  std::vector<series> loss, acc;
  const auto first_seed = runs.empty() ? 0 : runs.front().seed;
  std::size_t c = 0;
  for (const auto& r : runs)
    if (r.seed == first_seed) {
      loss.push_back({r.kind, colors[c % colors.size()], r.loss, r.kind != "baseline"});
      acc.push_back({r.kind, colors[c % colors.size()], r.top1, r.kind != "baseline"});
      ++c;
    }
  svg::save((dir / "loss.svg").string(), line_chart("training loss (seed " + std::to_string(first_seed) + ")", "iteration", "mean mini-batch loss", loss));
  svg::save((dir / "accuracy.svg").string(), line_chart("test top-1 (seed " + std::to_string(first_seed) + ")", "iteration", "top-1", acc));
  std::vector<series> tpm;
  c = 0;
  for (const auto& r : runs)
    if (r.kind == "baseline" && !r.tpm.empty())
      tpm.push_back({"seed " + std::to_string(r.seed), colors[c++ % colors.size()], r.tpm, false});
  if (!o.growth())
    svg::save((dir / "tpm.svg").string(), line_chart("TPM (" + o.tpm + ") per iteration, mean over sites and filters", "iteration", "score", tpm));
  const std::string growth_md = o.growth() ? growth_sections(o, runs, dir) : std::string();
  // Every site in network order (zeros included) with its splits over all seeds and the
  // mean over seeds of its best filter score at the split.
  std::vector<bar> bars;
  for (const auto& r : runs)
    if (r.kind == "derived" && bars.empty())
      for (const auto& site : r.sites) bars.push_back({site, 0, 0});
  if (bars.empty())  // runs logged before the site list was: the sites that got splits
    for (const auto& r : runs)
      if (r.kind == "derived")
        for (const auto& sp : r.splits)
          if (std::none_of(bars.begin(), bars.end(), [&](const bar& b) { return b.label == sp.site; }))
            bars.push_back({sp.site, 0, std::nan("")});
  const int scored = derived_runs_with_scores(runs);
  for (const auto& r : runs)
    if (r.kind == "derived") {
      for (const auto& sp : r.splits)
        for (auto& b : bars)
          if (b.label == sp.site) b.value += 1;
      for (std::size_t i = 0; i < r.sites.size(); ++i)
        for (auto& b : bars)
          if (b.label == r.sites[i] && i < r.site_best.size()) b.note += r.site_best[i] / scored;
    }
  const bool with_scores = std::any_of(bars.begin(), bars.end(), [](const bar& b) { return !std::isnan(b.note); });
  if (!o.growth())
  svg::save((dir / "splits.svg").string(),
            bar_chart("where the " + o.tpm + " splits went (all seeds)" +
                          (with_scores ? "; by each site its best filter score at the split" +
                                             (o.normalise != "none" ? " (" + o.normalise + ")" : std::string())
                                       : std::string()),
                      "splits", bars));
  std::vector<series> pair_cos;  // per growing arm: mean (solid) and min (dashed) over its split pairs
  c = 0;
  for (const auto& r : runs)
    if (r.seed == first_seed && !r.pair_mean_cos.empty()) {
      const auto& color = colors[c++ % colors.size()];
      pair_cos.push_back({r.kind + " mean", color, r.pair_mean_cos, false});
      pair_cos.push_back({r.kind + " min", color, r.pair_min_cos, true});
    }
  svg::save((dir / "split_pairs.svg").string(),
            line_chart("split pairs: cosine of incoming weights (seed " + std::to_string(first_seed) + ")", "iteration",
                       "cosine (original, copy)", pair_cos));

  md << "# netsplit study report\n\n"
     << "Command: `" << command << "`\n\n" << dataset_note << "\n\n"
     << "Recipe: preset `" << o.preset << "`, " << o.max_iter << " iterations of batch " << o.batch_size << ", lr `"
     << o.schedule.describe() << "`, momentum " << o.momentum << (o.nesterov ? " (Nesterov)" : "") << ", weight decay "
     << o.weight_decay << ". ";
  if (o.growth()) {
    std::string at;
    for (const auto i : o.grow_at) at += (at.empty() ? "" : ", ") + std::to_string(i);
    md << "Growth from width " << o.width_mult << " in " << o.grow_at.size() << " rounds at iterations " << at
       << ", each on the TPM of the " << o.grow_window << " iterations before it, "
       << (o.grow_to > 0 ? (o.grow_by == "widths" ? "every site to its width at " : "to the parameters of width ") +
                               detail::fmt_real(o.grow_to) + (o.grow_by == "widths" ? "" : " (a budget per round, spent by score per added parameter)")
                         : std::to_string(o.splits) + " filters per round")
       << "; normalisation `" << o.normalise << "`, `" << o.strategy << "`, eps " << o.split_eps << ", sites `"
       << o.split_sites << "`.\n\n";
  } else {
    md << "TPM `" << o.tpm << "` over iterations [" << o.tpm_begin << ", " << o.tpm_end
     << "), " << o.splits << " splits at iteration " << o.split_at << " (`" << o.select << "`, normalisation `"
     << o.normalise << "`, `" << o.strategy
     << "`, eps " << o.split_eps << ", sites `" << o.split_sites << "`).\n\n";
  }
  md << "## Test top-1\n\n" << table.str() << "\n"
     << "## Paired difference of final top-1 (same seed)\n\n" << paired_header
     << paired.str() << "\n" << growth_md
     << "How to read this: *final* is the accuracy after the last iteration and is the number to compare; *best* "
        "is the maximum over the test evaluations and is picked on the test set, so it is optimistic. Nothing in "
        "this study was tuned on the test set: filters are selected from training-batch signals (TPM) only. "
        "`random` splits the same number of filters chosen at random (same strategy); `static` trains a network "
        "of the grown widths from scratch. The 95% interval is Student's t on the n paired differences "
        "(n − 1 degrees of freedom): an interval that contains 0 is not evidence of an effect, and with few "
        "seeds it is wide. The split-pairs plot follows each arm's split pairs (original filter, copy): the mean "
        "(solid) and least (dashed) cosine of their incoming weights; a curve that stays at 1 means the copies did "
        "not diverge and the grown network is the small one re-parametrised.\n\n"
     << (o.growth() ? "In a growth study `grow-<metric>` arms start at the starting width from the `small` run's snapshot "
                      "at the first round's window, split in every round on their metric's scores; `grow-random` "
                      "splits uniformly random filters with the same budget or quotas in the same rounds (its "
                      "parameter and MAC counts are in the table); `small` and `full` are static networks of the "
                      "starting and the target width trained from scratch.\n\n"
                    : "")
     << (o.growth() ? "## Plots\n\n![loss](loss.svg)\n![accuracy](accuracy.svg)\n![growth](growth.svg)\n![widths](widths.svg)\n![split pairs](split_pairs.svg)\n\n"
                    : "## Plots\n\n![loss](loss.svg)\n![accuracy](accuracy.svg)\n![tpm](tpm.svg)\n![splits](splits.svg)\n![split pairs](split_pairs.svg)\n\n")
     << "## Runs\n\n| run | seed | final top-1 | best top-1 (iter) | params | time |\n|---|---|---|---|---|---|\n";
  for (const auto& r : runs)
    md << "| " << r.kind << " | " << r.seed << " | " << fmt("%.4f", r.final_top1) << " | " << fmt("%.4f", r.best_top1)
       << " (" << r.best_iter << ") | " << r.params << " | " << run_log::duration(r.seconds) << " |\n";
  svg::save((dir / "report.md").string(), md.str());
  return table.str() + "\n" + (paired.str().empty() ? "" : paired_header + paired.str());
}

}  // namespace cifar_cli
