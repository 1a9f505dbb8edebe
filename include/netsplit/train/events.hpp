// netsplit/train/events.hpp — what training reports, so the library never prints.
// The trainer calls these callbacks; a program (the example) turns them into progress
// lines, logs and plots. Iteration numbers count completed iterations (Caffe's convention:
// "Iteration 100" is reported after the 100th update).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace netsplit {

struct iteration_event {
  std::int64_t iter = 0;     // completed iterations
  std::int64_t max_iter = 0;
  double loss = 0;           // mean cross-entropy of this mini-batch
  double lr = 0;             // learning rate used for this update
  double img_per_s = 0;      // throughput of this iteration (data + step)
  int batch = 0;
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

/// Callbacks; any may be empty.
struct training_events {
  std::function<void(const iteration_event&)> on_iteration;
  std::function<void(const test_event&)> on_test;
  std::function<void(const snapshot_event&)> on_snapshot;
  std::function<void(const split_event&)> on_split;
};

}  // namespace netsplit
