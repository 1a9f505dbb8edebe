// examples/cifar100_resnet20 — the study's program.
// train mode: one run (optionally growing by splits at an iteration, or continuing from a
// baseline snapshot as a derived run). study mode: for each seed, a baseline with TPM
// recorded over a window and a snapshot at the split iteration, a derived run from that
// snapshot with K splits, and controls (random splits; a static network of the grown
// size), then a report (markdown/CSV table and SVG plots).
// Exit codes: 0 done, 1 error (I/O, data, impossible request, out of memory, output folder
// in use), 2 bad command line, 3 training diverged (the last good checkpoint is kept),
// 130 / 143 stopped by SIGINT / SIGTERM (a checkpoint was written; resume from it).
// Data parallel (built with NETSPLIT_ENABLE_MPI): `mpirun -np N cifar100_resnet20 ...`
// runs the same command on N processes, each training on its part of every batch; rank 0
// prints and writes the files. An error on any process ends all of them (MPI_Abort with
// the exit code above), as does a process that waits --mpi-timeout seconds for the others.
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <thread>

#include "cli.hpp"
#include "netsplit/netsplit.hpp"
#include "netsplit/io/folder_lock.hpp"
#include "report.hpp"
#include "run_control.hpp"
#include "run.hpp"
#include "study.hpp"
#include "world.hpp"

// The program's allocation functions: as the standard ones, but a request that cannot be
// met records its size (run_control::failed_allocation) so "out of memory" can say how
// much was asked. (Defined here, in the program's one translation unit, never in the library.)
namespace {
void* allocate_or_throw(std::size_t n, std::size_t align) {
  const std::size_t size = n ? n : 1;
  void* p = align <= __STDCPP_DEFAULT_NEW_ALIGNMENT__ ? std::malloc(size)
                                                       : std::aligned_alloc(align, (size + align - 1) / align * align);
  if (!p) {
    cifar_cli::run_control::failed_allocation = n;
    throw std::bad_alloc();
  }
  return p;
}
}  // namespace
void* operator new(std::size_t n) { return allocate_or_throw(n, 0); }
void* operator new[](std::size_t n) { return allocate_or_throw(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return allocate_or_throw(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return allocate_or_throw(n, static_cast<std::size_t>(a)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace fs = std::filesystem;
using namespace netsplit;
using namespace cifar_cli;

// NETSPLIT_PROGRAM_CUDA: the CUDA units (model_unit.cpp, units 3 and 4) are linked, --backend cuda runs.
#if NETSPLIT_PROGRAM_CUDA
constexpr bool built_with_cuda = true;
#else
constexpr bool built_with_cuda = false;
#endif

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
  // A limit reads only the first images (named as subset() names them); a holdout needs the
  // whole training set, and replaces the test set, which is then not read.
  const auto first = [](std::int64_t limit) {
    return limit > 0 ? static_cast<std::size_t>(limit) : std::numeric_limits<std::size_t>::max();
  };
  const cifar_kind kind = c.kind == "cifar100" ? cifar_kind::cifar100 : cifar_kind::cifar10;
  run_control::set_activity("loading the training set from " + c.dir.string());
  d.train = load_cifar(kind, c.dir, split::train, std::nullopt, first(o.holdout > 0 ? 0 : o.train_limit));
  if (o.holdout == 0) {
    run_control::set_activity("loading the test set from " + c.dir.string());
    d.test = load_cifar(kind, c.dir, split::test, std::nullopt, first(o.test_limit));
  }
  if (o.holdout > 0) {
    // the last N training images are the evaluation set; the test set is not read
    if (static_cast<std::size_t>(o.holdout) >= d.train.size())
      throw cli_error("--holdout " + std::to_string(o.holdout) + " leaves no training image of " +
                      std::to_string(d.train.size()));
    const auto keep = d.train.size() - static_cast<std::size_t>(o.holdout);
    d.test = subset(d.train, keep, static_cast<std::size_t>(o.holdout));
    d.train = subset(d.train, 0, keep);
  }
  if (o.train_limit > 0 && static_cast<std::size_t>(o.train_limit) < d.train.size())
    d.train = subset(d.train, 0, static_cast<std::size_t>(o.train_limit));
  if (o.test_limit > 0 && static_cast<std::size_t>(o.test_limit) < d.test.size())
    d.test = subset(d.test, 0, static_cast<std::size_t>(o.test_limit));
  d.stats = compute_channel_stats(d.train);
  d.source = c.dir.string();
  return d;
}

/// "out of memory while <activity>", the size asked, and the address-space limit if any.
void report_out_of_memory(std::size_t bytes) {
  std::string what = run_control::activity();
  if (what.rfind("training", 0) == 0) what += " (iteration " + std::to_string(run_control::iteration() + 1) + ")";
  rlimit lim{};
  std::string limit;
  if (getrlimit(RLIMIT_AS, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
    limit = "; the process may use at most " + std::to_string(lim.rlim_cur / (1024 * 1024)) + " MiB (ulimit -v)";
  std::fprintf(stderr, "cifar100_resnet20: error: out of memory while %s: an allocation of %s could not be met%s\n",
               what.c_str(), bytes ? (std::to_string(bytes) + " bytes").c_str() : "unknown size", limit.c_str());
}

}  // namespace

int run_main(int argc, char** argv);

/// Reports an error (every process, its rank named when there are several) and ends the
/// run: one process returns `code`; several end together (MPI_Abort), since the others may
/// be waiting for this one in a collective.
int fail(int code, const std::string& message) {
  if (!message.empty())
    std::fprintf(stderr, "cifar100_resnet20: %s%s\n", run_control::rank_prefix.c_str(), message.c_str());
  std::fflush(stderr);
#if NETSPLIT_WITH_MPI
  if (world().size() > 1) world().abort(code);
#endif
  return code;
}

int main(int argc, char** argv) {
#if NETSPLIT_WITH_MPI
  std::optional<netsplit::mpi::environment> mpi_env;
  try {
    if (netsplit::mpi::launched_by_mpi()) {
      mpi_env.emplace(argc, argv);
      world();
    } else {
      world_slot().emplace(world_type::alone());  // started alone: no MPI at all
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cifar100_resnet20: error: %s\n", e.what());
    return 1;
  }
#endif
  if (world().size() > 1) {
    run_control::writer = world().rank() == 0;
    run_control::rank_prefix = "rank " + std::to_string(world().rank()) + " of " + std::to_string(world().size()) + ": ";
  }
  return run_main(argc, argv);
}

int run_main(int argc, char** argv) {
  options o;
  try {
    o = parse_options(argc, argv);
  } catch (const cli_error& e) {
    // every process parsed the same command: the first one says it
    if (run_control::writer) std::fprintf(stderr, "cifar100_resnet20: %s\nrun with --help for the flags\n", e.what());
    return 2;
  }
  if (o.help) {
    run_control::print(usage());
    return 0;
  }
  if (o.mode == "study" && !o.resume.empty() && !fs::is_directory(o.resume)) {
    if (run_control::writer) std::fprintf(stderr,
                 "cifar100_resnet20: --resume %s: in study mode --resume names the output folder of the study to "
                 "continue, and that is not a folder\nrun with --help for the flags\n",
                 o.resume.c_str());
    return 2;
  }
  if (!built_with_mpi && (o.sync_bn || std::getenv("OMPI_COMM_WORLD_SIZE"))) {
    if (run_control::writer)
      std::fprintf(stderr, "cifar100_resnet20: %s: this program was built without MPI (configure with "
                           "-DNETSPLIT_ENABLE_MPI=ON for data-parallel runs)\nrun with --help for the flags\n",
                   o.sync_bn ? "--sync-bn" : "started by mpirun");
    return 2;
  }
  if (o.backend == "cuda" && !built_with_cuda) {
    if (run_control::writer)
      std::fprintf(stderr, "cifar100_resnet20: --backend cuda: this program was built without the CUDA backend "
                           "(configure with -DNETSPLIT_ENABLE_CUDA=ON, see README)\nrun with --help for the flags\n");
    return 2;
  }
  if (o.backend == "cuda" && world().size() > 1) {
    // the communicator sums gradients in host memory
    if (run_control::writer)
      std::fprintf(stderr, "cifar100_resnet20: --backend cuda: data-parallel runs (%d processes) train on the CPU "
                           "backend only; run one process per GPU without mpirun\nrun with --help for the flags\n",
                   world().size());
    return 2;
  }
  if (o.concurrent_runs > 1 && world().size() > 1) {
    // every process trains every run together (data parallel): one run at a time
    if (run_control::writer)
      std::fprintf(stderr, "cifar100_resnet20: --concurrent-runs %d: a data-parallel study (%d processes) trains one run "
                           "at a time on all of them; drop the flag or run without mpirun\nrun with --help for the flags\n",
                   o.concurrent_runs, world().size());
    return 2;
  }
  run_control::install();
#if NETSPLIT_WITH_MPI
  world().set_timeout(o.mpi_timeout, [](const std::string& why) {
    std::fprintf(stderr, "cifar100_resnet20: error: %s; ending this process (mpirun ends the others)\n", why.c_str());
    std::fflush(stderr);
    std::_Exit(1);
  });
#endif
  std::string command = "cifar100_resnet20";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  try {
    // One run per output folder at a time (a study's runs share its folder's lock), taken
    // before anything is read or written; the kernel releases it however the process ends.
    std::optional<io::folder_lock> lock;
    if (run_control::writer) lock.emplace(o.out_dir);  // rank 0 writes there, and holds the lock
    const auto choice = choose_dataset(o);
    if (!choice.note.empty()) run_control::print("note: " + choice.note + "\n");
    const auto data = load_data(o, choice);
    if (static_cast<std::size_t>(o.batch_size) > data.train.size()) {
      if (run_control::writer)
        std::fprintf(stderr,
                     "cifar100_resnet20: --batch-size %d is larger than the training set (%zu images in %s): "
                     "no full batch could be drawn\nrun with --help for the flags\n",
                     o.batch_size, data.train.size(), data.source.c_str());
      return 2;
    }
    if (o.batch_size < world().size()) {
      if (run_control::writer)
        std::fprintf(stderr, "cifar100_resnet20: --batch-size %d cannot be shared by %d processes (each needs at least one "
                             "image)\nrun with --help for the flags\n", o.batch_size, world().size());
      return 2;
    }
    run_control::set_activity("building the network");
    const run_request request{o, data, command, choice.note, choice.kind == "cifar100" ? 100 : 10};
#if NETSPLIT_PROGRAM_CUDA
    if (o.backend == "cuda") return run_named_model<netsplit::cuda_backend>(request);
#endif
    return run_named_model<netsplit::cpu_backend>(request);
  } catch (const cli_error& e) {  // a request that only the data or the output folder refutes
    return fail(2, std::string(e.what()) + "\nrun with --help for the flags");
  } catch (const divergence_error& e) {
    return fail(3, e.what());
  } catch (const out_of_memory& e) {
    report_out_of_memory(e.bytes());
    return fail(1, "");
  } catch (const std::bad_alloc&) {
    report_out_of_memory(run_control::failed_allocation);
    return fail(1, "");
  } catch (const std::exception& e) {
    return fail(1, std::string("error: ") + e.what());
  }
}
