// The trainer program's command line: presets, overrides, and clear errors (exit code 2
// in the program) for unknown or malformed flags.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <string>
#include <vector>

#include "../examples/cifar100_resnet20/cli.hpp"
#include "../examples/cifar100_resnet20/job_graph.hpp"
#include "../examples/cifar100_resnet20/world.hpp"
#include "../examples/cifar100_resnet20/plot.hpp"
#include "../examples/cifar100_resnet20/stats.hpp"

using cifar_cli::cli_error;
using cifar_cli::parse_options;

namespace {
cifar_cli::options parse(std::vector<std::string> args) {
  std::vector<const char*> argv{"cifar100_resnet20"};
  for (auto& a : args) argv.push_back(a.c_str());
  return parse_options(static_cast<int>(argv.size()), argv.data());
}
}  // namespace

TEST_CASE("presets set the recipe; flags override them in any order") {
  const auto seed = parse({"--preset", "seed"});
  CHECK(seed.max_iter == 64000);
  CHECK(seed.batch_size == 128);
  CHECK(seed.schedule.lr(31999) == doctest::Approx(0.1));
  CHECK(seed.schedule.lr(32000) == doctest::Approx(0.01));
  CHECK(seed.schedule.lr(48000) == doctest::Approx(0.001));
  CHECK(seed.weight_decay == doctest::Approx(1e-4));
  CHECK(seed.out_dir == "runs/seed");
  const auto q = parse({"--max-iter", "100", "--preset=quick", "--test-interval", "7"});
  CHECK(q.preset == "quick");
  CHECK(q.max_iter == 100);
  CHECK(q.test_interval == 7);
  CHECK(q.nesterov);
  const auto d = parse({});
  CHECK(d.preset == "default");
  CHECK(d.max_iter > 0);
  const auto s = parse({"--snapshot-at", "10,20,30", "--resume", "x.safetensors", "--threads", "1", "--seed", "9",
                        "--out-dir", "o", "--dataset", "cifar10", "--shortcut", "B", "--nesterov", "off",
                        "--lr-schedule", "multistep 0.2 0.5 10 20"});
  CHECK(s.snapshot_at == std::vector<std::int64_t>{10, 20, 30});
  CHECK(s.resume == "x.safetensors");
  CHECK(s.threads == 1);
  CHECK(s.seed == 9);
  CHECK(s.out_dir == "o");
  CHECK(s.dataset == "cifar10");
  CHECK(s.shortcut == "B");
  CHECK(!s.nesterov);
  CHECK(s.schedule.lr(15) == doctest::Approx(0.1));
  CHECK(parse({"--help"}).help);
}

TEST_CASE("bad flags are errors that say what was expected") {
  auto fails = [](std::vector<std::string> args, const char* needle) {
    INFO(needle);
    CHECK_THROWS_WITH_AS(parse(std::move(args)), doctest::Contains(needle), cli_error);
  };
  fails({"--frobnicate", "1"}, "unknown flag '--frobnicate'");
  fails({"--max-iter"}, "--max-iter needs a value");
  fails({"--max-iter", "ten"}, "--max-iter expects an integer");
  fails({"--max-iter", "-5"}, "--max-iter expects an integer");
  fails({"--max-iter", "5x"}, "got '5x'");
  fails({"--batch-size", "0"}, "--batch-size expects an integer in [1");
  fails({"--preset", "huge"}, "unknown preset 'huge'");
  fails({"--dataset", "mnist"}, "--dataset expects cifar100, cifar10 or auto");
  fails({"--momentum", "1.5"}, "--momentum expects a number");
  fails({"--momentum", "nan"}, "--momentum expects a number");
  fails({"--weight-decay", ""}, "--weight-decay expects a number");
  fails({"--nesterov", "maybe"}, "--nesterov expects on or off");
  fails({"--snapshot-at", "10,,20"}, "--snapshot-at expects an integer");
  fails({"--snapshot-at", "0"}, "--snapshot-at expects an integer in [1");
  fails({"--lr-schedule", "zigzag"}, "--lr-schedule");
  fails({"--shortcut", "C"}, "--shortcut expects A or B");
  fails({"stray"}, "unexpected argument 'stray'");
  fails({"--threads", "99999"}, "--threads expects an integer");
  fails({"--seed", "18446744073709551616"}, "--seed expects an integer");
  fails({"--seeds", "1,,2"}, "--seeds expects an integer");
  fails({"--controls", "random,bogus"}, "--controls expects random, static, small, full or none, got 'bogus'");
  fails({"--tpm", "entropy"}, "--tpm expects taylor");
  fails({"--tpm-window", "9:3"}, "is empty");
  fails({"--tpm-window", "9"}, "--tpm-window expects BEGIN:END");
  fails({"--mode", "study", "--preset", "smoke", "--tpm-window", "5:40"}, "does not fit in a run of 30 iterations");
  fails({"--preset", "smoke", "--tpm-window", "5:10", "--split-at", "7"}, "must be at or after the TPM window's end");
  fails({"--preset", "smoke", "--tpm-window", "5:10", "--split-at", "30"}, "before --max-iter");
  fails({"--strategy", "clone"}, "--strategy expects net2wider");
  fails({"--select", "best"}, "--select expects top_k");
  fails({"--normalise", "rank"}, "--normalise expects none, per_tap, per_site_rank or z_score, got 'rank'");
  fails({"--splits", "0"}, "--splits expects an integer in [1");
  fails({"--mode", "study", "--from-snapshot", "x.safetensors"}, "--from-snapshot is for train mode");
  fails({"--mode", "study", "--resume", "runs/a", "--out-dir", "runs/b"}, "a study resumes in its own folder");
  // issue 18: a repeated seed would count one run twice; more threads than the machine has
  fails({"--mode", "study", "--seeds", "1,2,1"}, "--seeds lists seed 1 twice");
  if (const unsigned hw = std::thread::hardware_concurrency(); hw > 0)
    fails({"--threads", std::to_string(hw + 1)}, "hardware threads");
  fails({"--mode", "evolve"}, "--mode expects train or study");
}

TEST_CASE("--model and --width-mult choose the network; mistakes say what was expected") {
  const auto d = parse({});
  CHECK(d.model == "resnet20");
  CHECK(d.width_mult == 1.0);
  const auto v = parse({"--model", "vgg16", "--width-mult", "0.25"});
  CHECK(v.model == "vgg16");
  CHECK(v.width_mult == 0.25);
  CHECK(parse({"--model", "resnet56", "--shortcut", "B"}).shortcut == "B");
  for (const auto& m : cifar_cli::model_names()) CHECK(parse({"--model", m}).model == m);
  CHECK_THROWS_WITH_AS(parse({"--model", "vgg12"}),
                       "--model expects resnet20, resnet32, resnet44, resnet56, vgg11, vgg13, vgg16 or vgg19, got 'vgg12'",
                       cli_error);
  CHECK_THROWS_WITH_AS(parse({"--model", "vgg11", "--shortcut", "A"}),
                       "--shortcut applies to the ResNets; vgg11 has no residual shortcuts", cli_error);
  CHECK_THROWS_WITH_AS(parse({"--width-mult", "0"}), "--width-mult must be larger than 0, got '0'", cli_error);
  CHECK_THROWS_AS(parse({"--width-mult", "17"}), cli_error);
  CHECK_THROWS_AS(parse({"--width-mult", "half"}), cli_error);
  CHECK_THROWS_AS(parse({"--model"}), cli_error);
}

TEST_CASE("--backend and --device: where the runs train; the CUDA backend's models") {
  const auto d = parse({});
  CHECK(d.backend == "cpu");
  CHECK(d.device == 0);
  const auto c = parse({"--backend", "cuda", "--device", "1", "--model", "vgg11"});
  CHECK(c.backend == "cuda");
  CHECK(c.device == 1);
  CHECK(parse({"--device", "2", "--backend", "cuda"}).device == 2);  // in either order
  for (const auto& m : cifar_cli::model_names())
    if (m == "resnet20" || m == "resnet56" || m == "vgg11") CHECK(parse({"--backend", "cuda", "--model", m}).backend == "cuda");
    else CHECK_THROWS_WITH_AS(parse({"--backend", "cuda", "--model", m}),
                              ("--backend cuda trains resnet20, resnet56 and vgg11; " + m + " trains on --backend cpu").c_str(),
                              cli_error);
  CHECK_THROWS_WITH_AS(parse({"--backend", "gpu"}), "--backend must be cpu or cuda, not 'gpu'", cli_error);
  CHECK_THROWS_WITH_AS(parse({"--device", "1"}), "--device chooses a CUDA device: it needs --backend cuda", cli_error);
  CHECK_THROWS_AS(parse({"--backend", "cuda", "--device", "-1"}), cli_error);
  CHECK_THROWS_AS(parse({"--backend", "cuda", "--device", "1024"}), cli_error);
}

TEST_CASE("study flags and windows resolved from the preset") {
  const auto s = parse({"--mode", "study", "--preset", "seed"});
  CHECK(s.tpm_begin == 40000);
  CHECK(s.tpm_end == 50000);
  CHECK(s.split_at == 50000);
  CHECK(s.out_dir == "runs/seed-study");
  const auto q = parse({"--mode", "study", "--preset", "quick", "--seeds", "1,2,3", "--controls", "random,static",
                        "--tpm", "grad_disagreement", "--strategy", "gradient_direction", "--splits", "5"});
  CHECK(q.seeds == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(q.controls == std::vector<std::string>{"random", "static"});
  CHECK(q.tpm_end == 3128);
  CHECK(q.splits == 5);
  CHECK(parse({"--controls", "none"}).controls.empty());
  CHECK(q.normalise == "none");
  CHECK(parse({"--normalise", "per_tap"}).normalise == "per_tap");
  // a study resumes in its folder: --resume DIR is its --out-dir
  CHECK(parse({"--mode", "study", "--resume", "runs/s"}).out_dir == "runs/s");
  CHECK(parse({"--mode", "study", "--resume", "runs/s", "--out-dir", "runs/s"}).out_dir == "runs/s");
  // several runs at once: a study's, 1..64
  CHECK(parse({"--mode", "study"}).concurrent_runs == 1);
  CHECK(parse({"--mode", "study", "--concurrent-runs", "3"}).concurrent_runs == 3);
  CHECK_THROWS_WITH_AS(parse({"--concurrent-runs", "2"}), doctest::Contains("needs --mode study"), cli_error);
  CHECK_THROWS_AS(parse({"--mode", "study", "--concurrent-runs", "0"}), cli_error);
  CHECK_THROWS_AS(parse({"--mode", "study", "--concurrent-runs", "65"}), cli_error);
  CHECK_THROWS_AS(parse({"--mode", "study", "--concurrent-runs", "two"}), cli_error);
}

TEST_CASE("threads per run: the process's threads shared by the runs trained at once") {
  CHECK(cifar_cli::threads_per_run(4, 1) == 4);
  CHECK(cifar_cli::threads_per_run(4, 2) == 2);
  CHECK(cifar_cli::threads_per_run(4, 3) == 1);
  CHECK(cifar_cli::threads_per_run(2, 8) == 1);  // at least one each
  CHECK(cifar_cli::threads_per_run(0, 1) == 0);  // one run: the backend's own default (all cores)
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  if (hw > 0) CHECK(cifar_cli::threads_per_run(0, 2) == std::max(1, hw / 2));
}

// A study's runs as jobs (job_graph.hpp): the order, the dependencies, several at once, and
// what a stopped or failed job does to the rest.
TEST_CASE("job graph: one worker runs the jobs in the list's order") {
  // two seeds of baseline, derived (after baseline), random (after baseline), static (after derived)
  const std::vector<int> after{-1, 0, 0, 1, -1, 4, 4, 5};
  std::vector<int> order;
  CHECK(cifar_cli::run_job_graph(after, 1, [&](int i) {
    order.push_back(i);
    return true;
  }));
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK_THROWS_AS(cifar_cli::run_job_graph({-1, 2, -1}, 1, [](int) { return true; }), std::logic_error);
}

TEST_CASE("job graph: several workers run independent jobs at once and respect every dependency") {
  const std::vector<int> after{-1, 0, 0, 1, -1, 4, 4, 5};
  std::mutex m;
  std::vector<int> started, finished;
  std::atomic<int> running{0}, most{0};
  CHECK(cifar_cli::run_job_graph(after, 3, [&](int i) {
    {
      const std::lock_guard<std::mutex> lock(m);
      // a job starts only after the job it depends on finished
      if (after[static_cast<std::size_t>(i)] >= 0)
        CHECK(std::find(finished.begin(), finished.end(), after[static_cast<std::size_t>(i)]) != finished.end());
      started.push_back(i);
    }
    const int now = ++running;
    for (int seen = most.load(); now > seen && !most.compare_exchange_weak(seen, now);) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    --running;
    const std::lock_guard<std::mutex> lock(m);
    finished.push_back(i);
    return true;
  }));
  CHECK(finished.size() == 8);
  // both seeds' baselines (no dependency between them) ran at the same time
  CHECK(most.load() >= 2);
  // two jobs that can only finish together: they must run at the same time (with one
  // worker this would wait forever, so the wait is bounded and counted as a failure)
  std::atomic<int> arrived{0};
  const auto meet = [&](int) {
    ++arrived;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 2)
      if (std::chrono::steady_clock::now() > until) return false;
    return true;
  };
  CHECK(cifar_cli::run_job_graph({-1, -1}, 2, meet));
}

TEST_CASE("job graph: a stopped or failed job ends the schedule; its dependents never run") {
  const std::vector<int> after{-1, 0, 0, 1, -1, 4, 4, 5};
  std::vector<int> ran;
  int stops = 0;
  // one worker: job 1 (seed 1's derived run) is stopped; nothing starts after it
  CHECK_FALSE(cifar_cli::run_job_graph(
      after, 1,
      [&](int i) {
        ran.push_back(i);
        return i != 1;
      },
      [&] { ++stops; }));
  CHECK(ran == std::vector<int>{0, 1});
  CHECK(stops == 1);
  // a job that throws: the error comes back once the running jobs returned; the others
  // were told to stop (on_stop) and the jobs depending on the failed one never ran
  std::mutex m;
  ran.clear();
  std::atomic<bool> told{false};
  CHECK_THROWS_WITH_AS(cifar_cli::run_job_graph(
                           after, 2,
                           [&](int i) {
                             {
                               const std::lock_guard<std::mutex> lock(m);
                               ran.push_back(i);
                             }
                             if (i == 0) {  // fails once seed 2's baseline runs beside it
                               const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                               while (std::chrono::steady_clock::now() < until) {
                                 const std::lock_guard<std::mutex> lock(m);
                                 if (ran.size() == 2) break;
                               }
                               throw std::runtime_error("baseline of seed 1 diverged");
                             }
                             // seed 2's baseline runs beside it until told to stop
                             const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                             while (!told && std::chrono::steady_clock::now() < until) std::this_thread::yield();
                             return !told;
                           },
                           [&] { told = true; }),
                       "baseline of seed 1 diverged", std::runtime_error);
  std::sort(ran.begin(), ran.end());
  CHECK(ran == std::vector<int>{0, 4});
}

TEST_CASE("growth flags: rounds, windows, targets, arms and controls resolved; impossible plans refused") {
  const auto g = parse({"--mode", "study", "--width-mult", "0.5", "--grow-rounds", "3", "--grow-to", "1",
                        "--tpm", "taylor,splitting"});
  CHECK(g.grow_at == std::vector<std::int64_t>{160, 320, 480});
  CHECK(g.grow_window == 80);
  CHECK(g.tpm_begin == 80);
  CHECK(g.tpms == std::vector<std::string>{"taylor", "splitting"});
  CHECK(g.controls == std::vector<std::string>{"random", "small", "full"});
  CHECK(cifar_cli::tpm_every_for(g, "splitting") == 10);
  CHECK(cifar_cli::tpm_every_for(g, "taylor") == 1);
  const auto a = parse({"--grow-at", "100,300", "--grow-window", "50", "--grow-by", "widths", "--grow-to", "2"});
  CHECK(a.grow_at == std::vector<std::int64_t>{100, 300});
  CHECK(a.grow_window == 50);
  CHECK(a.mode == "train");
  using cifar_cli::cli_error;
  CHECK_THROWS_AS(parse({"--grow-at", "100", "--grow-rounds", "2"}), cli_error);       // both
  CHECK_THROWS_AS(parse({"--grow-at", "300,200"}), cli_error);                         // not increasing
  CHECK_THROWS_AS(parse({"--grow-at", "900"}), cli_error);                             // past --max-iter
  CHECK_THROWS_AS(parse({"--grow-at", "100,120", "--grow-window", "50"}), cli_error);  // overlapping windows
  CHECK_THROWS_AS(parse({"--grow-at", "100", "--grow-to", "0.5", "--width-mult", "0.5"}), cli_error);
  CHECK_THROWS_AS(parse({"--grow-at", "100", "--grow-by", "widths"}), cli_error);      // widths need a target
  CHECK_THROWS_AS(parse({"--grow-to", "2"}), cli_error);                               // no rounds
  CHECK_THROWS_AS(parse({"--tpm", "taylor,splitting"}), cli_error);                    // arms need a growth study
  CHECK_THROWS_AS(parse({"--mode", "study", "--grow-at", "100", "--controls", "static"}), cli_error);
  CHECK_THROWS_AS(parse({"--mode", "study", "--grow-at", "100", "--controls", "full"}), cli_error);  // no --grow-to
  CHECK_THROWS_AS(parse({"--mode", "study", "--controls", "small"}), cli_error);      // not a growth study
  CHECK_THROWS_AS(parse({"--grow-at", "100", "--split-at", "200"}), cli_error);
  CHECK_THROWS_AS(parse({"--tpm", "taylor,taylor"}), cli_error);
}

TEST_CASE("report statistics: sample std, Student-t 95% interval of a paired mean") {
  using namespace cifar_cli;
  const auto m = stats_of({0.001, -0.002, 0.004});  // hand: mean 0.001, sample std 0.003
  CHECK(m.n == 3);
  CHECK(m.mean == doctest::Approx(0.001));
  CHECK(m.std == doctest::Approx(0.003));
  const auto c = ci95(m);  // t(0.975, 2) = 4.303: 0.001 +- 4.303 * 0.003 / sqrt(3)
  CHECK(c.lo == doctest::Approx(0.001 - 4.303 * 0.003 / std::sqrt(3.0)));
  CHECK(c.hi == doctest::Approx(0.001 + 4.303 * 0.003 / std::sqrt(3.0)));
  CHECK(ci_text(m) == "[-0.65, +0.85]");
  CHECK(ci_text(stats_of({0.01})) == "—");  // one seed: no interval
  CHECK(pm(stats_of({0.01})) == "1.00 (n=1)");
  CHECK(t_quantile_975(1) == doctest::Approx(12.706));
  CHECK(t_quantile_975(30) == doctest::Approx(2.042));
  CHECK(t_quantile_975(60) == doctest::Approx(2.000).epsilon(0.002));  // exact 2.0003
  CHECK(t_quantile_975(120) == doctest::Approx(1.980).epsilon(0.002));  // exact 1.9799
}

TEST_CASE("plot axes: ticks at round values, labelled with the decimals their step needs") {
  using cifar_cli::svg::ticks;
  using tick = std::pair<double, std::string>;
  CHECK(ticks(0, 800) == std::vector<tick>{{0, "0"}, {200, "200"}, {400, "400"}, {600, "600"}, {800, "800"}});
  CHECK(ticks(-0.05, 1.05).front() == tick{0, "0.0"});
  CHECK(ticks(-0.05, 1.05).back().second == "1.0");
  const auto near_one = ticks(0.99974, 1.00003);  // cosines of split pairs
  REQUIRE(near_one.size() == 6);
  CHECK(near_one.front().second == "0.99975");
  CHECK(near_one.back().second == "1.00000");
  CHECK(ticks(1, 1).empty());
  CHECK(ticks(6, 9, 5, 1.0) == std::vector<tick>{{6, "6"}, {7, "7"}, {8, "8"}, {9, "9"}});  // whole iterations
  const auto small = ticks(8.9e-6, 2.15e-5);  // taylor scores: scientific, not 0.000010
  REQUIRE(small.size() == 6);
  CHECK(small.front().second == "1.0e-05");
  CHECK(small[1].second == "1.2e-05");
  CHECK(small.back().second == "2.0e-05");
  CHECK(ticks(-1e-5, 1e-5)[2].second == "0");
}

TEST_CASE("the split map draws every site, zeros included, each with its score") {
  const auto svg = cifar_cli::bar_chart("where splits went", "splits",
                                        {{"stage1", 3, 0.25}, {"layer1.0.conv1", 0, 1.5e-5}, {"stage3", 6, std::nan("")}});
  auto count = [&](const std::string& what) {
    std::size_t n = 0;
    for (auto at = svg.find(what); at != std::string::npos; at = svg.find(what, at + 1)) ++n;
    return n;
  };
  CHECK(count("<rect x=") == 3);  // the zero bar too (height 0)
  CHECK(count(">stage1 (0.25)</text>") == 1);
  CHECK(count(">layer1.0.conv1 (1.5e-05)</text>") == 1);
  CHECK(count(">stage3</text>") == 1);  // no score: the label alone
  CHECK(count(">6</text>") == 2);       // the bar's value and the y axis' top tick
}
