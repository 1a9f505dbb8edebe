// examples/cifar100_resnet20/run_control.hpp — what the program does about the world around
// a run: stop signals, a terminal that goes away, memory that runs out.
//  * SIGINT/SIGTERM: the first asks the run to stop after the current iteration (the
//    trainer writes a checkpoint there and the program exits 128 + the signal); the
//    handler then gives the signal back its default action, so a second one stops the
//    process at once.
//  * SIGPIPE is ignored: a closed stdout makes writes fail with EPIPE, which run_log
//    notices (stdout_lost) and reports in train.log; training goes on.
//  * Out of memory: the program's operator new records the size of a request it could not
//    meet, and `activity` says what the program was doing, so the error names both.
#pragma once

#include <atomic>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace cifar_cli {

namespace run_control {

inline volatile std::sig_atomic_t stop_signal = 0;  // the first SIGINT/SIGTERM received, or 0
inline std::atomic<bool> stdout_lost{false};       // a write to stdout failed (the reader went away)
inline std::atomic<std::size_t> failed_allocation{0};  // bytes of the last request operator new could not meet
// A study running several runs at once (--concurrent-runs) stops the others when one fails:
// they end after their current iteration with a checkpoint, as on a signal.
inline std::atomic<bool> study_failed{false};

namespace detail {
struct progress_state {
  std::string activity = "starting";
  std::int64_t iteration = 0;
};
inline std::mutex progress_mutex;
inline progress_state shared_progress;  // guarded by progress_mutex
inline bool progress_pinned = false;    // guarded by progress_mutex
inline thread_local progress_state own_progress;
}  // namespace detail

/// What the program is doing (for error messages: "out of memory while <activity>"), and the
/// last completed training iteration. Runs of a study on several threads each set their own;
/// the program's is the last one set, until pin_progress() makes it the calling thread's.
inline void set_activity(std::string what) {
  detail::own_progress.activity = std::move(what);
  const std::lock_guard<std::mutex> lock(detail::progress_mutex);
  if (!detail::progress_pinned) detail::shared_progress.activity = detail::own_progress.activity;
}
inline void set_iteration(std::int64_t it) {
  detail::own_progress.iteration = it;
  const std::lock_guard<std::mutex> lock(detail::progress_mutex);
  if (!detail::progress_pinned) detail::shared_progress.iteration = it;
}
/// The calling thread's activity and iteration become the program's for good: the run that
/// failed first is the one an error message names, whatever the others do after.
inline void pin_progress() {
  const std::lock_guard<std::mutex> lock(detail::progress_mutex);
  if (detail::progress_pinned) return;
  detail::shared_progress = detail::own_progress;
  detail::progress_pinned = true;
}
inline std::string activity() {
  const std::lock_guard<std::mutex> lock(detail::progress_mutex);
  return detail::shared_progress.activity;
}
inline std::int64_t iteration() {
  const std::lock_guard<std::mutex> lock(detail::progress_mutex);
  return detail::shared_progress.iteration;
}
// Data-parallel runs: only rank 0 prints progress and writes the program's files (logs,
// reports, plots; the trainer writes checkpoints on rank 0 only). Errors every rank reports.
inline bool writer = true;
inline std::string rank_prefix;  // "rank N: " for the error messages of a data-parallel run

extern "C" inline void on_stop_signal(int sig) {
  // async-signal-safe: a flag, and the default actions back for the next signal
  stop_signal = sig;
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

/// Installs the handlers above (once, at the start of main).
inline void install() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART needed: the handler only sets a flag
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

/// A signal arrived, or (a study running several runs at once) another run failed.
inline bool stop_requested() { return stop_signal != 0 || study_failed; }

/// Writes text to stdout unless it is lost; returns false when this write found it gone
/// (EPIPE, or any other failure), and from then on writes nothing there.
inline bool print(const std::string& text) {
  if (stdout_lost || !writer) return true;
  const bool ok = std::fwrite(text.data(), 1, text.size(), stdout) == text.size() && std::fflush(stdout) == 0;
  if (ok) return true;
  stdout_lost = true;
  std::clearerr(stdout);
  return false;
}
inline const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

}  // namespace run_control

}  // namespace cifar_cli
