// netsplit/backend/cpu/context.hpp — runtime resources of the CPU backend.
// The context owns the thread pool and per-thread scratch memory; callers create one
// and pass it to every operation (no globals). Thread count defaults to all cores.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <stdlib.h>  // posix_memalign
#if defined(__linux__)
#include <sys/mman.h>  // madvise
#endif

#include "netsplit/backend/cpu/caches.hpp"
#include "netsplit/backend/cpu/thread_pool.hpp"
#include "netsplit/core/errors.hpp"
#include "netsplit/core/workspace.hpp"

namespace netsplit {

namespace detail {
struct aligned_free {
  void operator()(void* p) const noexcept { std::free(p); }
};
/// A 2 MiB page, the unit of the kernel's transparent huge pages on x86-64 and most arm64.
inline constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;
/// Host memory for tensors and scratch, freed with std::free: 64-byte aligned (a cache line,
/// one AVX-512 vector). An allocation of at least a huge page starts on a huge-page boundary,
/// and on Linux its whole huge pages are marked MADV_HUGEPAGE, so the kernel backs them with
/// 2 MiB pages where its transparent huge pages are enabled ("madvise" or "always"). The
/// Winograd transforms and batch norm step through a channel's planes one image apart (a
/// page or more), so with 4 KiB pages nearly every such step lands on another page. ResNet20
/// training measured 1.15-1.27x faster with them on an AMD EPYC, VGG11 no different
/// (docs/performance.md, "Huge pages for tensors"). The tail that does not fill a huge page
/// keeps small pages, so resident memory does not grow under glibc's default malloc (with
/// malloc told to keep its memory, the gaps before aligned blocks cost ResNet20 10 MiB).
inline void* aligned_bytes(std::size_t bytes) {
  const std::size_t align = bytes >= huge_page_bytes ? huge_page_bytes : 64;
  void* p = nullptr;
  if (::posix_memalign(&p, align, std::max<std::size_t>(bytes, 1)) != 0 || !p)
    throw out_of_memory(detail::concat("netsplit: out of memory: a cpu allocation of ", bytes, " bytes failed"), bytes);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // Advice only: a kernel without transparent huge pages refuses it (EINVAL), and the
  // memory is the same either way.
  if (align == huge_page_bytes) (void)::madvise(p, bytes / huge_page_bytes * huge_page_bytes, MADV_HUGEPAGE);
#endif
  return p;
}
}  // namespace detail

/// How the CPU backend computes convolutions (winograd.hpp, conv_kernels.hpp):
/// `fastest` takes Winograd for 3x3 stride-1 "same" convolutions where it was measured
/// faster (float with vector transforms, AVX-512 or AVX2; at least 16 input channels, or at
/// most 16 output channels; which tile per shape and pass: winograd_fastest) and the direct
/// engine elsewhere; `direct` takes the direct engine for all (a choice for users who want
/// the direct form's rounding);
/// `winograd_2x2` and `winograd_4x4` take Winograd F(2x2, 3x3) or F(4x4, 3x3) wherever it
/// applies (even sizes; sizes divisible by 4), any type and instruction set (the portable
/// transforms are slower than the direct engine: for tests and comparisons).
enum class cpu_conv_algorithm { fastest, direct, winograd_2x2, winograd_4x4 };

/// The algorithm's name as written above ("fastest", "direct", "winograd_2x2", "winograd_4x4").
inline const char* to_string(cpu_conv_algorithm a) {
  switch (a) {
    case cpu_conv_algorithm::fastest: return "fastest";
    case cpu_conv_algorithm::direct: return "direct";
    case cpu_conv_algorithm::winograd_2x2: return "winograd_2x2";
    case cpu_conv_algorithm::winograd_4x4: return "winograd_4x4";
  }
  return "?";
}
/// The algorithm named `name` (to_string's spelling), or none.
inline std::optional<cpu_conv_algorithm> parse_cpu_conv_algorithm(std::string_view name) {
  for (auto a : {cpu_conv_algorithm::fastest, cpu_conv_algorithm::direct, cpu_conv_algorithm::winograd_2x2,
                 cpu_conv_algorithm::winograd_4x4})
    if (name == to_string(a)) return a;
  return std::nullopt;
}

class cpu_context {
 public:
  /// threads <= 0 means all hardware threads.
  explicit cpu_context(int threads = 0)
      : pool_(threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency())),
        scratch_(static_cast<std::size_t>(pool_.size() * scratch_slots)) {}

  int threads() const { return pool_.size(); }
  thread_pool& pool() { return pool_; }
  /// Host-side loops of callers (Backend's parallel_for): the pool's fixed chunking.
  template <class F>
  void parallel_for(std::ptrdiff_t n, F&& body) { pool_.parallel_for(n, std::forward<F>(body)); }

  cpu_conv_algorithm conv_algorithm() const { return conv_algorithm_; }
  void set_conv_algorithm(cpu_conv_algorithm a) { conv_algorithm_ = a; }

  /// The caches the backend sizes its working sets from: the machine's (machine_caches())
  /// unless set_caches gave others (for tests, and to try another machine's sizes).
  const cpu_caches& caches() const { return caches_; }
  void set_caches(const cpu_caches& c) {
    caches_ = c;
    caches_.source = "set";
  }
  /// Bytes one thread's chunk of images may hold in a convolution: Winograd's transformed
  /// planes (winograd::plan_chunks) and the direct engine's packs (conv_kernels.hpp,
  /// chunk_images). Three quarters of the core's L2, leaving the rest to the weights' rows and
  /// the activations streaming through (measured in docs/performance.md, "Winograd chunk
  /// size"); set_conv_chunk_bytes(n) fixes it to n bytes instead, 0 returns to the L2 rule.
  std::size_t conv_chunk_bytes() const {
    return conv_chunk_bytes_ > 0 ? conv_chunk_bytes_ : caches_.l2 / 4 * 3;
  }
  void set_conv_chunk_bytes(std::size_t bytes) { conv_chunk_bytes_ = bytes; }
  /// Tiles a Winograd chunk holds at least, in rows of the micro-kernel's tile block, even
  /// when that exceeds conv_chunk_bytes: on small maps (VGG's 4x4 and 2x2, one to four
  /// tiles per image) a chunk within the L2 share holds a few tiles, padded to a block of 48
  /// (AVX-512), and reads all of the layer's transformed weights once per chunk.
  int winograd_min_blocks() const { return winograd_min_blocks_; }
  void set_winograd_min_blocks(int blocks) { winograd_min_blocks_ = std::max(0, blocks); }

  /// Tensors that live for part of a backward pass (core/workspace.hpp).
  tensor_workspace& workspace() { return workspace_; }

  static constexpr int scratch_slots = 8;

  /// Sync batch norm: when set, training-mode batch norm normalises with the statistics of
  /// the batches of every process of a data-parallel run, and this sums its per-channel
  /// buffers over them in place (identically on every process; see train/communicator.hpp).
  /// Empty (the default): each process's batch is its own.
  std::function<void(std::span<double>)> batch_norm_sum;

  /// Scratch memory private to one thread of the pool: slot `slot` (0..7) holds at least
  /// `count` elements of T, valid until the next call with the same thread and slot.
  template <class T>
  T* scratch(int thread, int slot, std::size_t count) {
    auto& s = scratch_[static_cast<std::size_t>(thread * scratch_slots + slot)];
    const std::size_t bytes = count * sizeof(T);
    if (bytes > s.bytes) {
      s.ptr.reset(detail::aligned_bytes(bytes));
      s.bytes = bytes;
    }
    return static_cast<T*>(s.ptr.get());
  }

 private:
  struct buffer {
    std::unique_ptr<void, detail::aligned_free> ptr;
    std::size_t bytes = 0;
  };
  thread_pool pool_;
  std::vector<buffer> scratch_;
  cpu_conv_algorithm conv_algorithm_ = cpu_conv_algorithm::fastest;
  cpu_caches caches_ = machine_caches();
  std::size_t conv_chunk_bytes_ = 0;
  int winograd_min_blocks_ = 2;
  tensor_workspace workspace_;
};

}  // namespace netsplit
