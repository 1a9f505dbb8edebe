// netsplit/backend/cpu/thread_pool.hpp — a fixed-size pool with static partitioning.
// parallel_for splits [0, n) into one contiguous chunk per thread, always the same way
// for the same n and thread count; reductions that keep one partial per thread and sum
// them in thread order are therefore bit-reproducible for a given thread count.
// Hand-offs poll before they sleep. A training step calls parallel_for 157 times (ResNet20,
// batch 128; ResNet56 463, VGG11 86; inference 38 / 110 / 20), and a hand-off through the
// condition variables alone (a futex wake of a sleeping thread, then one back) took 22-31 us
// per call on the 2-core virtual machines this project runs on (AMD EPYC, 2026-12-05,
// `parallel_for(2, ...)` with an empty body), about 3% of a step; with polling, 1.2-1.4 us.
// A waiting thread polls for up to spin_time and only then blocks on its condition
// variable, as OpenMP runtimes do; between bursts of polling it yields the core, so pools
// that together have more threads than the machine has cores (tests run side by side, runs
// of a study) do not poll while the thread they wait for waits for the core: two processes
// of 2-thread pools on 2 cores took 140-210 us per call polling without yielding, 6.3-6.9 us
// with it (7-15 us with the condition variables alone); alone 1.2-1.4 us either way.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "netsplit/core/errors.hpp"

namespace netsplit {

class thread_pool {
 public:
  /// How long a waiting thread polls before it sleeps.
  static constexpr std::chrono::microseconds spin_time{100};

  explicit thread_pool(int threads) : size_(threads) {
    NETSPLIT_EXPECT(threads >= 1, "thread count must be at least 1, got ", threads);
    shares_ = std::make_unique<share[]>(static_cast<std::size_t>(threads));
    try {
      for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
    } catch (const std::system_error& e) {
      shutdown();
      detail::raise<backend_error>("netsplit: could not start ", threads, " threads: ", e.what());
    }
  }
  ~thread_pool() { shutdown(); }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int size() const { return size_; }

  /// Calls body(begin, end, thread_index) for the chunk of [0, n) owned by each thread.
  /// Chunk t is [n*t/P, n*(t+1)/P). Rethrows the first exception a chunk raised.
  template <class F>
  void parallel_for(std::ptrdiff_t n, F&& body) {
    if (n <= 0) return;
    const int used = static_cast<int>(std::min<std::ptrdiff_t>(n, size_));
    if (used == 1) {
      body(std::ptrdiff_t{0}, n, 0);
      return;
    }
    std::function<void(int)> task = [&](int t) {
      const std::ptrdiff_t b = n * t / used, e = n * (t + 1) / used;
      body(b, e, t);
    };
    run(task, used);
  }

  /// Calls body(begin, end, thread_index) for the blocks [k*grain, min((k+1)*grain, n)) of
  /// [0, n), for bodies whose results do not depend on which thread runs which block (no sums
  /// across blocks). Thread t owns parallel_for's share of the blocks and takes them from the
  /// front; a thread done with its own takes the last untaken blocks of the others. So with
  /// cores of equal speed each thread runs (nearly) its fixed share, in order, as parallel_for
  /// does, and where one core runs slower, as a virtual machine's vCPUs can, the faster takes
  /// over the rest of its share instead of waiting (docs/performance.md, twelfth pass).
  template <class F>
  void parallel_for_dynamic(std::ptrdiff_t n, std::ptrdiff_t grain, F&& body) {
    if (n <= 0) return;
    grain = std::max<std::ptrdiff_t>(grain, 1);
    const std::ptrdiff_t blocks = (n + grain - 1) / grain;
    constexpr std::ptrdiff_t most = 0x7fffffff;  // blocks a share's 32-bit ends can count
    if (blocks > most) return parallel_for_dynamic(n, (n + most - 1) / most, std::forward<F>(body));
    const int used = static_cast<int>(std::min<std::ptrdiff_t>(blocks, size_));
    if (used == 1) {
      for (std::ptrdiff_t k = 0; k < blocks; ++k) body(k * grain, std::min(n, (k + 1) * grain), 0);
      return;
    }
    for (int t = 0; t < used; ++t)  // [front, back) of thread t's own blocks
      shares_[static_cast<std::size_t>(t)].ends.store(pack(blocks * t / used, blocks * (t + 1) / used),
                                                      std::memory_order_relaxed);
    std::function<void(int)> task = [&](int t) {
      const auto run_block = [&](std::ptrdiff_t k) { body(k * grain, std::min(n, (k + 1) * grain), t); };
      for (std::ptrdiff_t k; (k = take(t, true)) >= 0;) run_block(k);
      for (int j = 1; j < used; ++j)
        for (std::ptrdiff_t k; (k = take((t + j) % used, false)) >= 0;) run_block(k);
    };
    run(task, used);
  }

 private:
  /// Runs task(t) on threads 0..used-1 (the caller is thread 0) and waits for all of them.
  void run(std::function<void(int)>& task, int used) {
    // publish the task, then the generation the workers wait on (release: they see the task)
    task_ = &task;
    active_ = used;
    error_ = nullptr;
    pending_.store(size_ - 1, std::memory_order_relaxed);  // every worker acknowledges
    generation_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard lock(mutex_);
      wake_.notify_all();
    }
    run_guarded(task, 0);
    if (!poll([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock lock(mutex_);
      main_sleeping_.store(true, std::memory_order_seq_cst);
      done_.wait(lock, [&] { return pending_.load(std::memory_order_seq_cst) == 0; });
      main_sleeping_.store(false, std::memory_order_relaxed);
    }
    task_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

  static std::uint64_t pack(std::ptrdiff_t front, std::ptrdiff_t back) {
    return static_cast<std::uint64_t>(front) | static_cast<std::uint64_t>(back) << 32;
  }
  /// The next block of thread v's share, from its front (its owner) or its back (another
  /// thread); -1 when none is left.
  std::ptrdiff_t take(int v, bool front) {
    auto& ends = shares_[static_cast<std::size_t>(v)].ends;
    std::uint64_t cur = ends.load(std::memory_order_relaxed);
    for (;;) {
      const auto f = static_cast<std::ptrdiff_t>(cur & 0xffffffffu), b = static_cast<std::ptrdiff_t>(cur >> 32);
      if (f >= b) return -1;
      const std::uint64_t next = front ? pack(f + 1, b) : pack(f, b - 1);
      if (ends.compare_exchange_weak(cur, next, std::memory_order_relaxed)) return front ? f : b - 1;
    }
  }

  /// Polls ready() for up to spin_time; true once it holds.
  template <class P>
  static bool poll(P&& ready) {
    if (ready()) return true;
    const auto until = std::chrono::steady_clock::now() + spin_time;
    for (;;) {
      for (int i = 0; i < 64; ++i) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if (ready()) return true;
      }
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::yield();
    }
  }
  void run_guarded(std::function<void(int)>& task, int t) {
    try {
      task(t);
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
  void worker_loop(int t) {
    std::size_t seen = 0;
    for (;;) {
      const auto fresh = [&] { return generation_.load(std::memory_order_acquire) != seen; };
      if (!poll(fresh)) {
        std::unique_lock lock(mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_seq_cst) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      if (stop_.load(std::memory_order_acquire)) return;
      seen = generation_.load(std::memory_order_acquire);
      // every worker acknowledges every task (those past `used` without running it), so no
      // worker reads the next task's fields while the caller writes them
      if (t < active_) run_guarded(*task_, t);
      if (pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 && main_sleeping_.load(std::memory_order_seq_cst)) {
        std::lock_guard lock(mutex_);
        done_.notify_one();
      }
    }
  }
  void shutdown() {
    {
      std::lock_guard lock(mutex_);
      stop_.store(true, std::memory_order_seq_cst);
      generation_.fetch_add(1, std::memory_order_seq_cst);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int size_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::function<void(int)>* task_ = nullptr;
  int active_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<std::size_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> main_sleeping_{false};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
  struct alignas(64) share {  // a line each: the threads take blocks without sharing one
    std::atomic<std::uint64_t> ends{0};
  };
  std::unique_ptr<share[]> shares_;  // parallel_for_dynamic: each thread's [front, back)
};

}  // namespace netsplit
