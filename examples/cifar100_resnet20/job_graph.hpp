// examples/cifar100_resnet20/job_graph.hpp — runs a study's jobs (one training run each) on
// a few worker threads, each job once the job it starts from has finished. A study's runs
// form a small graph: per seed the baseline first, then the derived run and the random
// control (both from the baseline's snapshot), then the static control (the derived run's
// widths); seeds are independent. With one worker the jobs run in the list's order on the
// calling thread, exactly as a plain loop would.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace cifar_cli {

/// Runs jobs 0 .. after.size()-1 on `workers` threads (at least 1). Job i may start once job
/// after[i] has finished and returned true (after[i] < 0: at once; after[i] < i is required);
/// of the jobs that may start, the lowest index starts first. `body(i)` returning false, or
/// throwing, ends the schedule: no job starts after it, the running ones finish, and the jobs
/// that depend on it never run. `on_stop` is called once, on the first such job (from its
/// thread), so the caller can ask the jobs still running to stop early. The first exception is rethrown once every running job has returned. Returns
/// whether every job ran and returned true.
inline bool run_job_graph(const std::vector<int>& after, int workers, const std::function<bool(int)>& body,
                          const std::function<void()>& on_stop = {}) {
  const int n = static_cast<int>(after.size());
  for (int i = 0; i < n; ++i)
    if (after[i] >= i) throw std::logic_error("run_job_graph: job " + std::to_string(i) + " waits for a later job");
  enum class state { waiting, running, done, failed };
  std::vector<state> st(static_cast<std::size_t>(n), state::waiting);
  std::mutex m;
  std::condition_variable cv;
  bool stopped = false;
  int running = 0;
  std::exception_ptr first_error;
  // the lowest job that may start now, or -1 (call with m held)
  const auto next_ready = [&] {
    for (int i = 0; i < n; ++i)
      if (st[static_cast<std::size_t>(i)] == state::waiting &&
          (after[static_cast<std::size_t>(i)] < 0 || st[static_cast<std::size_t>(after[static_cast<std::size_t>(i)])] == state::done))
        return i;
    return -1;
  };
  const auto worker = [&] {
    std::unique_lock<std::mutex> lock(m);
    for (;;) {
      int job = -1;
      // wait until a job may start, or nothing more can: stopped, or none waiting or running
      cv.wait(lock, [&] { return stopped || (job = next_ready()) >= 0 || running == 0; });
      if (stopped || job < 0) return;
      st[static_cast<std::size_t>(job)] = state::running;
      ++running;
      lock.unlock();
      bool ok = false;
      std::exception_ptr error;
      try {
        ok = body(job);
      } catch (...) {
        error = std::current_exception();
      }
      bool first_stop = false;
      lock.lock();
      --running;
      st[static_cast<std::size_t>(job)] = ok ? state::done : state::failed;
      if (error && !first_error) first_error = error;
      if (!ok && !stopped) stopped = first_stop = true;
      if (first_stop && on_stop) {
        lock.unlock();
        on_stop();
        lock.lock();
      }
      cv.notify_all();
    }
  };
  const int w = std::max(1, std::min(workers, n));
  if (w == 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(static_cast<std::size_t>(w));
    for (int t = 0; t < w; ++t) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
  }
  if (first_error) std::rethrow_exception(first_error);
  for (const auto s : st)
    if (s != state::done) return false;
  return true;
}

}  // namespace cifar_cli
