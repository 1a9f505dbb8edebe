// netsplit/train/communicator.hpp — what a data-parallel trainer needs of its processes.
// A Communicator names this process (rank) among `size` replicas and offers the four
// collectives the trainer uses: a sum of float or double buffers whose result is
// bit-identical on every rank and fixed for a given rank count (the order of the additions
// does not depend on timing), a broadcast of bytes from a root, and a barrier.
// single_process is the trivial one (rank 0 of 1, every collective a no-op): the trainer
// has one code path whether it runs alone or under MPI (netsplit/mpi.hpp, outside this
// header tree's umbrella: the core needs no MPI).
// replica_view is what other modules (the TPM recorder) see of a trainer's replica: the
// current batch's shard within its global batch and the sum over ranks.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "netsplit/core/shard.hpp"

namespace netsplit {

template <class C>
concept Communicator = requires(C& c, const C& cc, std::span<float> f, std::span<double> d,
                                std::span<std::byte> b) {
  { cc.rank() } -> std::convertible_to<int>;
  { cc.size() } -> std::convertible_to<int>;
  c.allreduce_sum(f);  // in place; identical on every rank afterwards
  c.allreduce_sum(d);
  c.broadcast(b, 0);  // in place, from the root's buffer
  c.barrier();
};

/// One process: rank 0 of 1; sums and broadcasts leave buffers as they are.
struct single_process {
  int rank() const { return 0; }
  int size() const { return 1; }
  void allreduce_sum(std::span<float>) {}
  void allreduce_sum(std::span<double>) {}
  void broadcast(std::span<std::byte>, int) {}
  void barrier() {}
};
static_assert(Communicator<single_process>);

/// What a trainer's replica tells the modules that read its batch (the TPM recorder):
/// which samples of the global batch it holds, and how to sum a buffer over all replicas
/// (empty in a single process, where nothing needs summing).
struct replica_view {
  int rank = 0, size = 1;
  std::int64_t offset = 0;  // the current batch's first sample in the global batch
  std::int64_t global_batch = 0;  // the current global batch's size
  std::function<void(std::span<double>)> sum;
};

}  // namespace netsplit
