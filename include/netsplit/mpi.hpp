// netsplit/mpi.hpp — data-parallel training over MPI: everything in netsplit.hpp plus
// netsplit::mpi::environment (MPI's initialisation, once per process) and
// netsplit::mpi::communicator (models Communicator, train/communicator.hpp).
// Link the netsplit::mpi CMake target (NETSPLIT_ENABLE_MPI=ON; Debian: libopenmpi-dev).
// netsplit.hpp never includes this file, so the core needs no MPI.
//
// Sums are ordered: MPI_Allreduce may add the contributions in an order that depends on
// the algorithm Open MPI picks for a message size and process count (the standard only
// recommends, does not require, that the order be fixed), so a run would not be
// reproducible. Here a binomial tree adds them toward rank 0 in a fixed order (rank 0
// adds rank 1's buffer, rank 2 adds rank 3's, then rank 0 adds rank 2's, ...) and rank 0
// broadcasts the result: every process holds the same bits, the same for every run on the
// same number of processes.
//
// Failures: every MPI call's error becomes a distributed_error (the communicator's error
// handler returns instead of aborting). A process that dies makes mpirun stop the others
// (Open MPI's default); a process that waits in a collective longer than the timeout set
// with set_timeout has the watchdog call the program's handler (which should report and
// end the process: netsplit never prints), so no process waits forever for a peer that
// will not come.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "netsplit/netsplit.hpp"

namespace netsplit::mpi {

namespace detail {
inline void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  netsplit::detail::raise<distributed_error>("netsplit: MPI ", what, " failed: ", std::string(text, len));
}
template <class T>
MPI_Datatype datatype() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else return MPI_BYTE;
}
}  // namespace detail

/// Whether this process was started by an MPI launcher (mpirun/mpiexec of Open MPI or
/// MPICH, srun with PMI/PMIx): a program can then start MPI, and otherwise run alone
/// without initialising it at all (communicator::alone()).
inline bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

/// MPI for the lifetime of this object (one per process, in main): initialises MPI unless
/// it already is (funnelled threads: only the thread that created it calls MPI) and
/// finalises what it initialised.
class environment {
 public:
  environment(int& argc, char**& argv) {
    int done = 0;
    MPI_Initialized(&done);
    if (done) return;
    int provided = 0;
    detail::check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owns_ = true;
  }
  environment(const environment&) = delete;
  environment& operator=(const environment&) = delete;
  ~environment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }

 private:
  bool owns_ = false;
};

/// A copyable handle on a duplicate of an MPI communicator (MPI_COMM_WORLD by default), so
/// netsplit's traffic never meets the program's own. Models Communicator.
class communicator {
 public:
  explicit communicator(MPI_Comm parent = MPI_COMM_WORLD) : s_(std::make_shared<state>()) {
    detail::check(MPI_Comm_dup(parent, &s_->comm), "MPI_Comm_dup");
    detail::check(MPI_Comm_set_errhandler(s_->comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    detail::check(MPI_Comm_rank(s_->comm, &s_->rank), "MPI_Comm_rank");
    detail::check(MPI_Comm_size(s_->comm, &s_->size), "MPI_Comm_size");
  }

  /// One process, without MPI (no call into MPI is made): for a program built with MPI
  /// that was not started by mpirun (launched_by_mpi() is false).
  static communicator alone() { return communicator(alone_tag{}); }

  int rank() const { return s_->rank; }
  int size() const { return s_->size; }

  void allreduce_sum(std::span<float> v) { ordered_sum(v); }
  void allreduce_sum(std::span<double> v) { ordered_sum(v); }

  void broadcast(std::span<std::byte> v, int root) {
    if (s_->size == 1) return;
    const guard g(*s_, "broadcast");
    for_chunks(v.size(), [&](std::size_t at, int n) {
      detail::check(MPI_Bcast(v.data() + at, n, MPI_BYTE, root, s_->comm), "MPI_Bcast");
    });
  }
  void barrier() {
    if (s_->size == 1) return;
    const guard g(*s_, "barrier");
    detail::check(MPI_Barrier(s_->comm), "MPI_Barrier");
  }

  /// Ends every process of the run with `code` (MPI_Abort): for a process that failed on
  /// its own while the others may be waiting for it in a collective.
  [[noreturn]] void abort(int code) const {
    if (s_->comm == MPI_COMM_NULL) std::exit(code);
    MPI_Abort(s_->comm, code);
    std::abort();  // MPI_Abort does not return; this keeps [[noreturn]] honest
  }

  /// A watchdog: when this process has waited in one collective for `seconds`, calls
  /// `on_timeout` (from the watchdog's thread) with a message naming the rank, the
  /// collective and the wait. The handler should report and end the process (then mpirun
  /// ends the others); if it returns, the wait goes on. seconds <= 0 turns it off.
  void set_timeout(double seconds, std::function<void(const std::string&)> on_timeout) {
    s_->stop_watchdog();
    if (seconds <= 0 || !on_timeout || s_->size == 1) return;  // alone: nobody to wait for
    s_->timeout = seconds;
    s_->on_timeout = std::move(on_timeout);
    s_->watchdog = std::thread([st = s_.get()] { st->watch(); });
  }

 private:
  struct alone_tag {};
  explicit communicator(alone_tag) : s_(std::make_shared<state>()) {}

  struct state {
    MPI_Comm comm = MPI_COMM_NULL;
    int rank = 0, size = 1;
    // the collective this process is waiting in: its name and when it began (0: none)
    std::atomic<const char*> in{nullptr};
    std::atomic<std::int64_t> since_ns{0};
    double timeout = 0;
    std::function<void(const std::string&)> on_timeout;
    std::thread watchdog;
    std::mutex m;
    std::condition_variable cv;
    bool stopping = false;

    void watch() {
      std::unique_lock lock(m);
      while (!stopping) {
        cv.wait_for(lock, std::chrono::milliseconds(200));
        const auto start = since_ns.load();
        const char* what = in.load();
        if (stopping || !what || start == 0) continue;
        const double waited = (now_ns() - start) * 1e-9;
        if (waited >= timeout) {
          on_timeout(netsplit::detail::concat("rank ", rank, " of ", size, " waited ", static_cast<long>(waited),
                                              " s in ", what, " (timeout ", timeout,
                                              " s): another process died, hangs or is far slower"));
          since_ns = now_ns();  // a handler that returned: report again after another timeout
        }
      }
    }
    void stop_watchdog() {
      {
        std::lock_guard lock(m);
        stopping = true;
      }
      cv.notify_all();
      if (watchdog.joinable()) watchdog.join();
      stopping = false;
    }
    static std::int64_t now_ns() {
      return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
    }
    ~state() {
      stop_watchdog();
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized && comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
    }
  };
  /// Marks the time this process spends in a collective, for the watchdog.
  struct guard {
    state& s;
    guard(state& st, const char* what) : s(st) {
      s.since_ns = state::now_ns();
      s.in = what;
    }
    ~guard() {
      s.in = nullptr;
      s.since_ns = 0;
    }
  };

  /// Calls f(offset, count) over [0, n) in pieces MPI's int counts can express.
  template <class F>
  static void for_chunks(std::size_t n, F&& f) {
    constexpr std::size_t most = std::numeric_limits<int>::max() / 8;
    for (std::size_t at = 0; at < n || (n == 0 && at == 0); at += most) {
      f(at, static_cast<int>(std::min(most, n - at)));
      if (n == 0) break;
    }
  }

  template <class T>
  void ordered_sum(std::span<T> v) {
    if (s_->size == 1 || v.empty()) return;
    const guard g(*s_, "a sum over processes");
    scratch_.resize(v.size() * sizeof(T));
    T* other = reinterpret_cast<T*>(scratch_.data());
    const MPI_Datatype type = detail::datatype<T>();
    // binomial tree toward rank 0: at distance `step`, a rank that is a multiple of 2*step
    // adds the partial sum of rank + step; the others send theirs and are done
    for (int step = 1; step < s_->size; step *= 2) {
      if (s_->rank % (2 * step) == 0) {
        const int from = s_->rank + step;
        if (from >= s_->size) continue;
        for_chunks(v.size(), [&](std::size_t at, int n) {
          detail::check(MPI_Recv(other + at, n, type, from, tag, s_->comm, MPI_STATUS_IGNORE), "MPI_Recv");
        });
        for (std::size_t i = 0; i < v.size(); ++i) v[i] += other[i];
      } else {
        for_chunks(v.size(), [&](std::size_t at, int n) {
          detail::check(MPI_Send(v.data() + at, n, type, s_->rank - step, tag, s_->comm), "MPI_Send");
        });
        break;
      }
    }
    for_chunks(v.size(), [&](std::size_t at, int n) {
      detail::check(MPI_Bcast(v.data() + at, n, type, 0, s_->comm), "MPI_Bcast");
    });
  }

  static constexpr int tag = 7101;
  std::shared_ptr<state> s_;
  std::vector<std::byte> scratch_;
};
static_assert(Communicator<communicator>);

}  // namespace netsplit::mpi
