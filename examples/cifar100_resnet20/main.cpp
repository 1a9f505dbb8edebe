// examples/cifar100_resnet20 — the study's program.
// train mode: one run (optionally growing by splits at an iteration, or continuing from a
// baseline snapshot as a derived run). study mode: for each seed, a baseline with TPM
// recorded over a window and a snapshot at the split iteration, a derived run from that
// snapshot with K splits, and controls (random splits; a static network of the grown
// size), then a report (markdown/CSV table and SVG plots).
// Exit codes: 0 done, 1 error (I/O, data, impossible request), 2 bad command line,
// 3 training diverged (the last good checkpoint is kept).
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "cli.hpp"
#include "netsplit/netsplit.hpp"
#include "report.hpp"
#include "study.hpp"

namespace fs = std::filesystem;
using namespace netsplit;
using namespace cifar_cli;

#ifndef NETSPLIT_SOURCE_DIR
#define NETSPLIT_SOURCE_DIR "."
#endif

namespace {

struct dataset_choice {
  std::string kind;  // cifar100 | cifar10
  fs::path dir;
  std::string note;  // said to the user when a fallback happened
};

fs::path default_dir(const std::string& kind) {
  const fs::path project(NETSPLIT_SOURCE_DIR);
  return kind == "cifar100" ? project / "data" / "cifar-100-binary"
                            : project / ".." / "shared" / "data" / "cifar10-jpeg" / "cifar-10-batches-bin";
}

dataset_choice choose_dataset(const options& o) {
  if (o.dataset == "cifar100" || o.dataset == "cifar10")
    return {o.dataset, o.data_dir.empty() ? default_dir(o.dataset) : fs::path(o.data_dir), ""};
  const fs::path c100 = o.data_dir.empty() ? default_dir("cifar100") : fs::path(o.data_dir);
  if (fs::exists(c100 / "train.bin")) return {"cifar100", c100, ""};
  const fs::path c10 = default_dir("cifar10");
  return {"cifar10", c10,
          "CIFAR-100 not found at " + c100.string() + " (get it with scripts/download_cifar100.sh); using the shared CIFAR-10 at " +
              fs::weakly_canonical(c10).string() + " (10 classes) instead"};
}

data_env load_data(const options& o, const dataset_choice& c) {
  data_env d;
  d.train = c.kind == "cifar100" ? load_cifar100(c.dir, split::train) : load_cifar10(c.dir, split::train);
  d.test = c.kind == "cifar100" ? load_cifar100(c.dir, split::test) : load_cifar10(c.dir, split::test);
  if (o.train_limit > 0 && static_cast<std::size_t>(o.train_limit) < d.train.size())
    d.train = subset(d.train, 0, static_cast<std::size_t>(o.train_limit));
  if (o.test_limit > 0 && static_cast<std::size_t>(o.test_limit) < d.test.size())
    d.test = subset(d.test, 0, static_cast<std::size_t>(o.test_limit));
  d.stats = compute_channel_stats(d.train);
  d.source = c.dir.string();
  return d;
}

std::string recipe_line(const options& o) {
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

template <class Net>
int run_study(const options& o, const data_env& data, const std::string& command, const std::string& note) {
  std::vector<run_result> runs;
  const fs::path root(o.out_dir);
  fs::create_directories(root);
  std::string table;
  for (const auto seed : o.seeds) {
    const fs::path sdir = root / ("seed" + std::to_string(seed));
    // kind; for derived and random the snapshot to start from; for static the grown widths.
    auto run = [&](std::string kind, std::string snapshot = {}, std::vector<split_record> grown = {}) {
      run_spec spec;
      spec.kind = std::move(kind);
      spec.snapshot = std::move(snapshot);
      spec.grown = std::move(grown);
      spec.seed = seed;
      spec.dir = sdir / spec.kind;
      run_log log(spec.dir, o.progress);
      log.prefix = "[seed " + std::to_string(seed) + " " + spec.kind + "] ";
      if (!note.empty()) log.line("note: " + note);
      log.line("data: " + data.train.name + " from " + data.source + ": " + std::to_string(data.train.size()) +
               " training, " + std::to_string(data.test.size()) + " test images");
      log.line(recipe_line(o) + " " + std::to_string(seed));
      auto r = execute_logged<Net>(o, spec, data, log);
      if (r.exit_code != 0) throw divergence_error("netsplit: the " + spec.kind + " run of seed " + std::to_string(seed) + " diverged");
      runs.push_back(r);
      table = write_report(o, command, note, runs, root);
      return r;
    };
    const auto base = run("baseline");
    if (base.split_snapshot.empty()) throw io_error("netsplit: the baseline wrote no snapshot at the split iteration");
    const auto derived = run("derived", base.split_snapshot.string());
    for (const auto& c : o.controls) {
      if (c == "random") run("random", base.split_snapshot.string());
      if (c == "static") run("static", "", derived.splits);
    }
  }
  std::printf("\n%s\nreport: %s (plots: loss.svg, accuracy.svg, tpm.svg, splits.svg; table: results.csv)\n", table.c_str(),
              (root / "report.md").string().c_str());
  return 0;
}

template <class Net>
int dispatch(const options& o, const data_env& data, const std::string& command, const std::string& note) {
  if (o.mode == "study") return run_study<Net>(o, data, command, note);
  run_log log(o.out_dir, o.progress);
  if (!note.empty()) log.line("note: " + note);
  return run_train<Net>(o, data, log);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  try {
    o = parse_options(argc, argv);
  } catch (const cli_error& e) {
    std::fprintf(stderr, "cifar100_resnet20: %s\nrun with --help for the flags\n", e.what());
    return 2;
  }
  if (o.help) {
    std::printf("%s", usage().c_str());
    return 0;
  }
  std::string command = "cifar100_resnet20";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  try {
    const auto choice = choose_dataset(o);
    if (!choice.note.empty()) std::printf("note: %s\n", choice.note.c_str());
    const auto data = load_data(o, choice);
    const bool b = o.shortcut == "B";
    if (choice.kind == "cifar100")
      return b ? dispatch<resnet20<cpu_backend, 100, float, shortcut_b>>(o, data, command, choice.note)
               : dispatch<resnet20<cpu_backend, 100, float, shortcut_a>>(o, data, command, choice.note);
    return b ? dispatch<resnet20<cpu_backend, 10, float, shortcut_b>>(o, data, command, choice.note)
             : dispatch<resnet20<cpu_backend, 10, float, shortcut_a>>(o, data, command, choice.note);
  } catch (const divergence_error& e) {
    std::fprintf(stderr, "cifar100_resnet20: %s\n", e.what());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cifar100_resnet20: error: %s\n", e.what());
    return 1;
  }
}
