// examples/cifar100_resnet20/world.hpp — the processes this program runs on: MPI's world
// in a build with NETSPLIT_ENABLE_MPI (started by mpirun, or alone: then one process),
// otherwise netsplit::single_process. Every run of the program trains through it, so the
// program has one code path for one process and for N.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "netsplit/netsplit.hpp"
#if NETSPLIT_WITH_MPI
#include "netsplit/mpi.hpp"
#endif

namespace cifar_cli {

#if NETSPLIT_WITH_MPI
using world_type = netsplit::mpi::communicator;
inline constexpr bool built_with_mpi = true;
#else
using world_type = netsplit::single_process;
inline constexpr bool built_with_mpi = false;
#endif

/// The program's processes (created by main after MPI is initialised).
inline std::optional<world_type>& world_slot() {
  static std::optional<world_type> w;
  return w;
}
inline world_type& world() {
  auto& w = world_slot();
  if (!w) w.emplace();
  return *w;
}

/// --threads 0: the machine's hardware threads, shared among the processes mpirun started
/// on it (Open MPI says how many in OMPI_COMM_WORLD_LOCAL_SIZE).
inline int threads_per_process(int requested) {
  if (requested > 0) return requested;
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const int n = local ? std::atoi(local) : 1;
  if (hw <= 0 || n <= 1) return 0;
  return std::max(1, hw / n);
}

/// Threads of each run of a study that runs `concurrent` runs at once: the process's threads
/// (threads_per_process) shared among them, at least one each. Fixed for the whole study,
/// whatever runs at a moment, so a run's result does not depend on the schedule (a run of
/// T threads sums in the order of T threads: it equals the same run alone with --threads T).
inline int threads_per_run(int requested, int concurrent) {
  const int t = threads_per_process(requested);
  if (concurrent <= 1) return t;
  const int total = t > 0 ? t : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  return std::max(1, total / concurrent);
}

/// Where a run trains: its backend's context, opened from the options, and the line that
/// describes it in the run's log. The CPU backend's here; the CUDA backend's in cuda_runs.hpp
/// (the program's CUDA translation units only, model_unit.cpp with NETSPLIT_PROGRAM_UNIT 3 or 4).
template <class B>
struct run_backend;

template <>
struct run_backend<netsplit::cpu_backend> {
  /// The run's share of the process's threads (threads_per_run).
  static netsplit::cpu_context open(int threads, int concurrent_runs, int /*device*/) {
    return netsplit::cpu_context(threads_per_run(threads, concurrent_runs));
  }
  static std::string describe(netsplit::cpu_context& ctx) {
    return "cpu backend: " + std::to_string(ctx.threads()) + " thread(s), L1d " + std::to_string(ctx.caches().l1d >> 10) +
           " KiB, L2 " + std::to_string(ctx.caches().l2 >> 10) + " KiB per core (" + ctx.caches().source +
           "), convolution chunk " + std::to_string(ctx.conv_chunk_bytes() >> 10) + " KiB, at least " +
           std::to_string(ctx.winograd_min_blocks()) + " tile blocks";
  }
};

}  // namespace cifar_cli
