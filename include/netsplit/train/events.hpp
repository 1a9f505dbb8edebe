// netsplit/train/events.hpp — what training reports, so the library never prints.
// The trainer calls these callbacks; a program (the example) turns them into progress
// lines, logs and plots. Iteration numbers count completed iterations (Caffe's convention:
// "Iteration 100" is reported after the 100th update).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace netsplit {

struct iteration_event {
  std::int64_t iter = 0;     // completed iterations
  std::int64_t max_iter = 0;
  double loss = 0;           // mean cross-entropy of this mini-batch
  double lr = 0;             // learning rate used for this update
  double img_per_s = 0;      // throughput of this iteration (data + step), of the whole batch
  int batch = 0;             // the whole batch (over every process of a data-parallel run)
  double comm_s = 0;         // data parallel: seconds of this iteration spent in collectives (waiting included)
};

struct test_event {
  std::int64_t iter = 0;
  double top1 = 0, top5 = 0, loss = 0;
  std::int64_t samples = 0;
};

struct snapshot_event {
  std::int64_t iter = 0;
  std::filesystem::path path;
};

struct split_event {
  std::int64_t iter = 0;
  std::string description;  // one line per split: site, filter, score, strategy
};

/// A point in the training loop where other modules join (TPM recording, splits): an
/// ordered list of callbacks, called in the order they were added.
template <class... Args>
class hook {
 public:
  void add(std::function<void(Args...)> f) { fs_.push_back(std::move(f)); }
  void operator()(Args... args) const {
    for (const auto& f : fs_) f(args...);
  }
  bool empty() const { return fs_.empty(); }

 private:
  std::vector<std::function<void(Args...)>> fs_;
};

/// Callbacks; any may be empty.
struct training_events {
  std::function<void(const iteration_event&)> on_iteration;
  std::function<void(const test_event&)> on_test;
  std::function<void(const snapshot_event&)> on_snapshot;
  std::function<void(const split_event&)> on_split;
};

}  // namespace netsplit
