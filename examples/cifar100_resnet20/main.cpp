// examples/cifar100_resnet20 — the study's trainer program.
// Trains ResNet20 on CIFAR-100 (or the shared CIFAR-10 when CIFAR-100 is absent) with a
// preset recipe, writes logs, metrics and checkpoints to --out-dir, and resumes exactly
// from a checkpoint. Exit codes: 0 done, 1 error (I/O, data), 2 bad command line,
// 3 training diverged (the last good checkpoint is kept).
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "cli.hpp"
#include "netsplit/netsplit.hpp"
#include "report.hpp"

namespace fs = std::filesystem;
using namespace netsplit;

#ifndef NETSPLIT_SOURCE_DIR
#define NETSPLIT_SOURCE_DIR "."
#endif

namespace {

struct dataset_choice {
  std::string kind;  // cifar100 | cifar10
  fs::path dir;
  std::string note;  // said to the user when a fallback happened
};

fs::path project_dir() { return fs::path(NETSPLIT_SOURCE_DIR); }
fs::path default_dir(const std::string& kind) {
  return kind == "cifar100" ? project_dir() / "data" / "cifar-100-binary"
                            : project_dir() / ".." / "shared" / "data" / "cifar10-jpeg" / "cifar-10-batches-bin";
}

dataset_choice choose_dataset(const cifar_cli::options& o) {
  if (o.dataset == "cifar100" || o.dataset == "cifar10")
    return {o.dataset, o.data_dir.empty() ? default_dir(o.dataset) : fs::path(o.data_dir), ""};
  const fs::path c100 = o.data_dir.empty() ? default_dir("cifar100") : fs::path(o.data_dir);
  if (fs::exists(c100 / "train.bin")) return {"cifar100", c100, ""};
  const fs::path c10 = default_dir("cifar10");
  return {"cifar10", c10,
          "CIFAR-100 not found at " + c100.string() + " (get it with scripts/download_cifar100.sh); using the shared CIFAR-10 at " +
              fs::weakly_canonical(c10).string() + " (10 classes) instead"};
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

template <int Classes, class Shortcut>
int train(const cifar_cli::options& o, const dataset_choice& choice, cifar_cli::run_log& log) {
  using net_t = resnet20<cpu_backend, Classes, float, Shortcut>;
  const auto split_train = split::train, split_test = split::test;
  dataset train_set = choice.kind == "cifar100" ? load_cifar100(choice.dir, split_train)
                                                      : load_cifar10(choice.dir, split_train);
  dataset test_set = choice.kind == "cifar100" ? load_cifar100(choice.dir, split_test)
                                                     : load_cifar10(choice.dir, split_test);
  if (o.train_limit > 0 && static_cast<std::size_t>(o.train_limit) < train_set.size())
    train_set = subset(train_set, 0, static_cast<std::size_t>(o.train_limit));
  if (o.test_limit > 0 && static_cast<std::size_t>(o.test_limit) < test_set.size())
    test_set = subset(test_set, 0, static_cast<std::size_t>(o.test_limit));
  const auto stats = compute_channel_stats(train_set);

  cpu_context ctx(o.threads);
  net_t net(rng::derive(o.seed, 0).next_u64());
  train_config cfg;
  cfg.max_iter = o.max_iter;
  cfg.batch_size = o.batch_size;
  cfg.schedule = o.schedule;
  cfg.optimizer = {o.momentum, o.weight_decay, o.nesterov};
  cfg.test_interval = o.test_interval;
  cfg.snapshot_every = o.snapshot_every;
  cfg.snapshot_at = o.snapshot_at;
  cfg.snapshot_dir = o.out_dir;
  cfg.snapshot_prefix = "resnet20";
  cfg.seed = o.seed;
  trainer<net_t> tr(ctx, net, train_set, test_set, stats, cfg);

  log.line("netsplit " + net_t::architecture() + ": " + std::to_string(count_parameters(net)) + " parameters, " +
           fmt("%.1f", net.mult_adds_per_image() / 1e6) + " M conv multiply-adds per image");
  log.line("data: " + train_set.name + " from " + choice.dir.string() + ": " + std::to_string(train_set.size()) +
           " training, " + std::to_string(test_set.size()) + " test images");
  log.line("recipe: preset " + o.preset + ", " + std::to_string(o.max_iter) + " iterations of batch " +
           std::to_string(o.batch_size) + ", lr " + o.schedule.describe() + ", momentum " + fmt("%g", o.momentum) +
           (o.nesterov ? " (Nesterov)" : "") + ", weight decay " + fmt("%g", o.weight_decay) + ", seed " +
           std::to_string(o.seed) + ", " + std::to_string(ctx.threads()) + " threads");

  if (!o.resume.empty()) {
    tr.load(o.resume);
    log.line("resumed from " + o.resume + " at iteration " + std::to_string(tr.iteration()));
  }

  double best = -1;
  std::int64_t best_iter = 0, final_iter = 0;
  double final_top1 = 0, final_top5 = 0;
  fs::path last_snapshot;
  const std::int64_t display = std::max<std::int64_t>(1, std::min<std::int64_t>(100, o.max_iter / 20));
  tr.events.on_iteration = [&](const iteration_event& e) { log.on_iteration(e, display); };
  tr.events.on_test = [&](const test_event& e) {
    log.on_test(e);
    if (e.top1 > best) {
      best = e.top1;
      best_iter = e.iter;
    }
    final_top1 = e.top1;
    final_top5 = e.top5;
    final_iter = e.iter;
  };
  tr.events.on_snapshot = [&](const snapshot_event& e) {
    last_snapshot = e.path;
    log.line("Snapshotting to " + e.path.string());
  };
  const auto t0 = log.elapsed();
  const auto first_iter = tr.iteration();
  try {
    tr.run();
  } catch (const divergence_error& e) {
    log.line(std::string("error: ") + e.what());
    log.line(last_snapshot.empty() ? "no checkpoint was written before the divergence"
                                   : "last good checkpoint: " + last_snapshot.string());
    return 3;
  }
  const double secs = log.elapsed() - t0;
  const double imgs = double(tr.iteration() - first_iter) * o.batch_size;
  log.line("done: final top-1 " + fmt("%.4f", final_top1) + " (top-5 " + fmt("%.4f", final_top5) + ") at iteration " +
           std::to_string(final_iter) + "; best top-1 " + fmt("%.4f", best) + " at iteration " +
           std::to_string(best_iter) + " (best is selected on the test set: report the final one)");
  log.line("time: " + cifar_cli::run_log::duration(secs) + ", " + fmt("%.1f", secs > 0 ? imgs / secs : 0) +
           " img/s including evaluation; logs in " + o.out_dir);
  std::ostringstream js;
  js << "{\"type\":\"summary\",\"final_top1\":" << final_top1 << ",\"final_top5\":" << final_top5
     << ",\"best_top1\":" << best << ",\"best_iter\":" << best_iter << ",\"iter\":" << tr.iteration()
     << ",\"seconds\":" << secs << "}";
  log.json(js.str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cifar_cli::options o;
  try {
    o = cifar_cli::parse_options(argc, argv);
  } catch (const cifar_cli::cli_error& e) {
    std::fprintf(stderr, "cifar100_resnet20: %s\nrun with --help for the flags\n", e.what());
    return 2;
  }
  if (o.help) {
    std::printf("%s", cifar_cli::usage().c_str());
    return 0;
  }
  try {
    const auto choice = choose_dataset(o);
    cifar_cli::run_log log(o.out_dir, o.progress);
    if (!choice.note.empty()) log.line("note: " + choice.note);
    const bool b = o.shortcut == "B";
    if (choice.kind == "cifar100")
      return b ? train<100, shortcut_b>(o, choice, log) : train<100, shortcut_a>(o, choice, log);
    return b ? train<10, shortcut_b>(o, choice, log) : train<10, shortcut_a>(o, choice, log);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cifar100_resnet20: error: %s\n", e.what());
    return 1;
  }
}
