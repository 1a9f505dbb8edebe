// examples/cifar100_resnet20/run.hpp — from a parsed command line to a run of the chosen
// model: train mode (one run) or study mode (per seed: baseline, derived run, controls;
// then the report). run_named_model<B> maps --model to a network type on backend B; each
// model's runs are instantiated in three translation units (model_unit.cpp: ResNet20 and 32,
// ResNet44 and 56, the VGGs), so the program's heaviest templates compile in parallel, and on
// the CUDA backend in two more (a build with it).
#pragma once

#include <cmath>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <mutex>
#include <span>
#include <sstream>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "cli.hpp"
#include "job_graph.hpp"
#include "netsplit/netsplit.hpp"
#include "report.hpp"
#include "run_control.hpp"
#include "study.hpp"
#include "world.hpp"

namespace netsplit {
struct cuda_backend;  // netsplit/cuda.hpp: only the program's CUDA unit defines its runs
}

namespace cifar_cli {

using netsplit::divergence_error;
using netsplit::io_error;
using netsplit::split_record;

/// What main hands to a model's runs.
struct run_request {
  const options& o;
  const data_env& data;
  std::string command, note;
  int classes = 100;  // the dataset's: 100 or 10
};

inline std::string recipe_line(const options& o) {
  return "recipe: preset " + o.preset + ", " + std::to_string(o.max_iter) + " iterations of batch " +
         std::to_string(o.batch_size) + ", lr " + o.schedule.describe() + ", momentum " + fmt("%g", o.momentum) +
         (o.nesterov ? " (Nesterov)" : "") + ", weight decay " + fmt("%g", o.weight_decay) + ", seed(s)";
}

template <class Net>
int run_train(const options& o, const data_env& data, run_log& log) {
  log.line("data: " + data.train.name + " from " + data.source + ": " + std::to_string(data.train.size()) +
           " training, " + std::to_string(data.test.size()) + " test images");
  log.line(recipe_line(o) + " " + std::to_string(o.seed));
  run_spec spec;
  spec.seed = o.seed;
  spec.dir = o.out_dir;
  return execute_logged<Net>(o, spec, data, log).exit_code;
}

/// What makes two study commands the same study (seeds, threads and output aside: a study
/// may be continued with more seeds or threads).
inline std::string study_fingerprint(const options& o) {
  std::ostringstream f;
  f << "model=" << o.model << " width=" << o.width_mult << " shortcut=" << o.shortcut << " dataset=" << o.dataset
    << " train_limit=" << o.train_limit << " test_limit=" << o.test_limit << " holdout=" << o.holdout
    << " max_iter=" << o.max_iter << " batch=" << o.batch_size << " lr=" << o.schedule.describe()
    << " momentum=" << o.momentum << " wd=" << o.weight_decay << " nesterov=" << o.nesterov
    << " test_interval=" << o.test_interval << " tpm=";
  for (const auto& m : o.tpms) f << m << ";";
  f << " window=" << o.tpm_begin << ":" << o.tpm_end << " split_at=" << o.split_at << " splits=" << o.splits
    << " strategy=" << o.strategy << " eps=" << o.split_eps << " select=" << o.select << " cap=" << o.select_cap
    << " threshold=" << o.select_threshold << " normalise=" << o.normalise << " sites=" << o.split_sites << " controls=";
  for (const auto& c : o.controls) f << c << ";";
  f << " grow_at=";
  for (const auto i : o.grow_at) f << i << ";";
  f << " grow_window=" << o.grow_window << " grow_to=" << o.grow_to << " grow_by=" << o.grow_by
    << " tpm_every=" << o.tpm_every;
  if (o.sync_bn) f << " sync_bn=1";  // (absent before data parallelism: old studies keep their fingerprint)
  return f.str();
}

template <class Net>
int run_study(const options& study_options, const data_env& data, const std::string& command, const std::string& note) {
  options o = study_options;  // (its concurrent_runs is capped at the study's runs below)
  const fs::path root(o.out_dir);
  fs::create_directories(root);
  // Rerunning the same study command (or --resume DIR) continues the study in its folder:
  // finished runs are read back, an interrupted one resumes from its latest checkpoint.
  // The folder's study.txt records what the study is; another study there is refused.
  // Under mpirun the first process alone reads it (and writes it, as every file) and tells
  // the others what it found, so all take the same path: each reading it for itself, a
  // process once found the file that the first was still writing, empty, and refused the
  // study as another one (2026-12-08, test_distributed_program's study on 2 ranks).
  const auto fingerprint = study_fingerprint(o);
  const auto recorded = root / "study.txt";
  bool resuming = !o.resume.empty();
  enum : std::int32_t { new_study, same_study, other_study };
  std::int32_t found = new_study;
  std::string before;
  if (world().rank() == 0 && fs::exists(recorded)) {
    std::ifstream in(recorded);
    before.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    found = before == fingerprint ? same_study : other_study;
  }
  world().broadcast(std::as_writable_bytes(std::span<std::int32_t>(&found, 1)), 0);
  if (found == other_study)
    throw cli_error("the folder " + root.string() + " holds another study (its study.txt" +
                    (world().rank() == 0 ? ": " + before : std::string(", read by the first process")) +
                    "); this command's is: " + fingerprint + " (use another --out-dir)");
  if (found == same_study) {
    if (!resuming) run_control::print("continuing the study in " + root.string() + " (finished runs are read back)\n");
    resuming = true;
  } else {
    svg::save(recorded.string(), fingerprint);
  }
  // The study's runs as a graph of jobs: each starts from the result of at most one earlier
  // job (the baseline's or the small run's snapshot, the derived run's widths). In this
  // order one at a time; with --concurrent-runs N, up to N at once (job_graph.hpp).
  struct job {
    std::uint64_t seed;
    std::string kind;
    int after = -1;  // the job whose result this one starts from
    double width = 0;
    std::string metric;
  };
  std::vector<job> jobs;
  const auto add = [&](std::uint64_t seed, std::string kind, int from = -1, double width = 0, std::string metric = {}) {
    jobs.push_back(job{seed, std::move(kind), from, width, std::move(metric)});
  };
  for (const auto seed : o.seeds) {
    const int first = static_cast<int>(jobs.size());
    if (o.growth()) {
      // small: static at the starting width, and the trunk (its snapshot at the first
      // round's window) every grown arm starts from; one grown arm per metric; controls.
      add(seed, "small");
      const int trunk = o.tpm_begin > 0 ? first : -1;  // no window before round 1: arms start from scratch
      for (const auto& m : o.tpms) add(seed, "grow-" + m, trunk, 0, m);
      for (const auto& c : o.controls) {
        if (c == "random") add(seed, "grow-random", trunk);
        if (c == "full") add(seed, "full", -1, o.grow_to);
      }
    } else {
      add(seed, "baseline");
      add(seed, "derived", first);
      for (const auto& c : o.controls) {
        if (c == "random") add(seed, "random", first);
        if (c == "static") add(seed, "static", first + 1);
      }
    }
  }
  const int concurrent = std::min<int>(o.concurrent_runs, static_cast<int>(jobs.size()));
  o.concurrent_runs = concurrent;  // each run's share of the threads: no more runs than the study has
  if (concurrent > 1) {
    run_control::print("training up to " + std::to_string(concurrent) + " of the study's " + std::to_string(jobs.size()) +
                       " runs at once, " + std::to_string(threads_per_run(o.threads, o.concurrent_runs)) +
                       " thread(s) each\n");
    // a seed's baseline trains before its other runs can start: with fewer seeds than runs
    // at once, the baselines leave threads idle (each run keeps its share, for
    // reproducibility); a growth study's full net trains beside its small run
    if (!o.growth() && o.seeds.size() < static_cast<std::size_t>(concurrent))
      run_control::print("note: " + std::to_string(o.seeds.size()) + " seed(s) for " + std::to_string(concurrent) +
                         " runs at once: each seed's baseline trains on its share of the threads while nothing "
                         "else can run; --concurrent-runs pays off with at least as many seeds\n");
  }
  std::vector<std::optional<run_result>> results(jobs.size());
  std::mutex results_mutex;  // results and the report
  std::string table;
  int stopped_code = 0;  // the first run stopped by a signal: its exit code
  std::vector<int> after;
  for (const auto& j : jobs) after.push_back(j.after);
  // One job: read back when a resumed study finished it before, else trained. False when
  // the run was stopped (a signal, or another run's failure); throws when it failed.
  const auto body = [&](int i) {
    const job& j = jobs[static_cast<std::size_t>(i)];
    run_spec spec;
    spec.kind = j.kind;
    spec.width = j.width;
    spec.metric = j.metric;
    spec.seed = j.seed;
    spec.dir = root / ("seed" + std::to_string(j.seed)) / spec.kind;
    if (j.after >= 0) {
      const run_result& from = *results[static_cast<std::size_t>(j.after)];  // finished before this job started
      if (j.kind == "static") {
        spec.grown = from.splits;
      } else {
        if (from.split_snapshot.empty() || !fs::exists(from.split_snapshot))
          throw io_error(from.kind == "small"
                             ? "netsplit: the small run wrote no snapshot at iteration " + std::to_string(o.tpm_begin)
                             : std::string("netsplit: the baseline wrote no snapshot at the split iteration"));
        spec.snapshot = from.split_snapshot.string();
      }
    }
    std::optional<run_result> done = resuming ? finished_run(o, spec) : std::nullopt;
    if (!done) {
      if (resuming) spec.resume = latest_checkpoint(spec.dir, o.model).string();
      run_log log(spec.dir, o.progress && concurrent == 1);  // several runs at once: plain lines
      log.prefix = "[seed " + std::to_string(j.seed) + " " + spec.kind + "] ";
      if (!note.empty()) log.line("note: " + note);
      log.line("data: " + data.train.name + " from " + data.source + ": " + std::to_string(data.train.size()) +
               " training, " + std::to_string(data.test.size()) + " test images");
      log.line(recipe_line(o) + " " + std::to_string(j.seed));
      done = execute_logged<Net>(o, spec, data, log);
      if (done->exit_code > 128) {  // stopped: the study stops too
        const std::lock_guard<std::mutex> lock(results_mutex);
        if (stopped_code == 0) stopped_code = done->exit_code;
        return false;
      }
      if (done->exit_code != 0)
        throw divergence_error("netsplit: the " + spec.kind + " run of seed " + std::to_string(j.seed) + " diverged");
    } else {
      if ((done->kind == "derived" || done->kind.rfind("grow-", 0) == 0) && done->sites.empty()) {
        // logged before runs listed every site at their split: the network's sites, without scores
        Net net(1, netsplit::width_multiplier{o.width_mult});
        for (const auto& site : netsplit::derive_sites(net)) done->sites.push_back(site.name);
        done->site_best.assign(done->sites.size(), std::nan(""));
      }
      run_control::print("[seed " + std::to_string(j.seed) + " " + spec.kind + "] finished before (" +
                         spec.dir.string() + "): final top-1 " + fmt("%.4f", done->final_top1) + "\n");
    }
    // the report holds the finished runs in the jobs' order, whichever finished first
    const std::lock_guard<std::mutex> lock(results_mutex);
    results[static_cast<std::size_t>(i)] = std::move(done);
    std::vector<run_result> runs;
    for (const auto& r : results)
      if (r) runs.push_back(*r);
    table = write_report(o, command, note, runs, root);
    return true;
  };
  // the first run to fail or stop stops the others (after their current iteration, with a
  // checkpoint); the error that names it is the one main reports
  const auto stop_others = [] {
    run_control::pin_progress();
    run_control::study_failed = true;
  };
  if (!run_job_graph(after, concurrent, body, stop_others)) return stopped_code ? stopped_code : 128 + SIGTERM;
  run_control::print("\n" + table + "\nreport: " + (root / "report.md").string() +
                     (o.growth() ? " (plots: loss.svg, accuracy.svg, growth.svg, widths.svg, splits.svg, split_pairs.svg; "
                                   "table: results.csv)\n"
                                 : " (plots: loss.svg, accuracy.svg, tpm.svg, splits.svg, split_pairs.svg; table: results.csv)\n"));
  return 0;
}

template <class Net>
int dispatch(const run_request& r) {
  if (r.o.mode == "study") return run_study<Net>(r.o, r.data, r.command, r.note);
  run_log log(r.o.out_dir, r.o.progress);
  if (!r.note.empty()) log.line("note: " + r.note);
  return run_train<Net>(r.o, r.data, log);
}


enum class family { resnet, vgg };

/// The runs of one model (family and depth) on backend B, for the dataset's classes and the
/// shortcut option.
template <family F, int Depth, class B>
int run_model(const run_request& r) {
  if constexpr (F == family::resnet) {
    using netsplit::resnet, netsplit::shortcut_a, netsplit::shortcut_b;
    const bool b = r.o.shortcut == "B";
    if (r.classes == 100)
      return b ? dispatch<resnet<Depth, 100, B, float, shortcut_b>>(r) : dispatch<resnet<Depth, 100, B, float, shortcut_a>>(r);
    return b ? dispatch<resnet<Depth, 10, B, float, shortcut_b>>(r) : dispatch<resnet<Depth, 10, B, float, shortcut_a>>(r);
  } else {
    return r.classes == 100 ? dispatch<netsplit::vgg<Depth, 100, B, float>>(r)
                            : dispatch<netsplit::vgg<Depth, 10, B, float>>(r);
  }
}
// Instantiated in model_unit.cpp (examples/CMakeLists.txt): every model on the CPU backend in
// three translation units; on the CUDA backend (a build with it) the models cuda_model() accepts,
// in two more.
extern template int run_model<family::resnet, 20, netsplit::cpu_backend>(const run_request&);
extern template int run_model<family::resnet, 32, netsplit::cpu_backend>(const run_request&);
extern template int run_model<family::resnet, 44, netsplit::cpu_backend>(const run_request&);
extern template int run_model<family::resnet, 56, netsplit::cpu_backend>(const run_request&);
extern template int run_model<family::vgg, 11, netsplit::cpu_backend>(const run_request&);
extern template int run_model<family::vgg, 13, netsplit::cpu_backend>(const run_request&);
extern template int run_model<family::vgg, 16, netsplit::cpu_backend>(const run_request&);
extern template int run_model<family::vgg, 19, netsplit::cpu_backend>(const run_request&);
extern template int run_model<family::resnet, 20, netsplit::cuda_backend>(const run_request&);
extern template int run_model<family::resnet, 56, netsplit::cuda_backend>(const run_request&);
extern template int run_model<family::vgg, 11, netsplit::cuda_backend>(const run_request&);

/// --model's name to its network type (the names are model_names()), on backend B; on the
/// CUDA backend only those cuda_model() accepts (parse_options refuses the others).
template <class B>
int run_named_model(const run_request& r) {
  const auto& m = r.o.model;
  if (m == "resnet20") return run_model<family::resnet, 20, B>(r);
  if (m == "resnet56") return run_model<family::resnet, 56, B>(r);
  if (m == "vgg11") return run_model<family::vgg, 11, B>(r);
  if constexpr (std::is_same_v<B, netsplit::cpu_backend>) {
    if (m == "resnet32") return run_model<family::resnet, 32, B>(r);
    if (m == "resnet44") return run_model<family::resnet, 44, B>(r);
    if (m == "vgg13") return run_model<family::vgg, 13, B>(r);
    if (m == "vgg16") return run_model<family::vgg, 16, B>(r);
    if (m == "vgg19") return run_model<family::vgg, 19, B>(r);
  }
  netsplit::detail::raise<netsplit::contract_violation>("cifar100_resnet20: no network type for model '", m,
                                                        "' on this backend");
}

}  // namespace cifar_cli
