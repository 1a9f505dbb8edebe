// netsplit/backend/cpu/thread_pool.hpp — a fixed-size pool with static partitioning.
// parallel_for splits [0, n) into one contiguous chunk per thread, always the same way
// for the same n and thread count; reductions that keep one partial per thread and sum
// them in thread order are therefore bit-reproducible for a given thread count.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "netsplit/core/errors.hpp"

namespace netsplit {

class thread_pool {
 public:
  explicit thread_pool(int threads) : size_(threads) {
    NETSPLIT_EXPECT(threads >= 1, "thread count must be at least 1, got ", threads);
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
    {
      std::unique_lock lock(mutex_);
      task_ = &task;
      active_ = used;
      pending_ = used - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_guarded(task, 0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
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
      std::function<void(int)>* task = nullptr;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (t < active_) task = task_;
      }
      if (!task) continue;
      run_guarded(*task, t);
      std::lock_guard lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
  void shutdown() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
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
  int pending_ = 0;
  std::size_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace netsplit
