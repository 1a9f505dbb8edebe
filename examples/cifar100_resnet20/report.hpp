// examples/cifar100_resnet20/report.hpp — how the trainer program reports: a live progress
// line on a terminal, plain lines otherwise, a human log whose test lines keep Caffe's form
// ("Test net output #0: Accuracy = 0.6727") and a JSONL metrics log.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "netsplit/train/events.hpp"
#include "run_control.hpp"

namespace cifar_cli {

class run_log {
 public:
  run_log(const std::filesystem::path& dir, bool progress)
      : live_(progress && ::isatty(STDOUT_FILENO)), start_(std::chrono::steady_clock::now()) {
    if (!run_control::writer) return;  // not rank 0 of a data-parallel run: no files
    std::filesystem::create_directories(dir);
    human_.open(dir / "train.log", std::ios::app);
    metrics_.open(dir / "metrics.jsonl", std::ios::app);
    if (!human_ || !metrics_) throw std::runtime_error("cannot write logs in " + dir.string());
    if (run_control::stdout_lost) file_line("stdout was closed earlier in this process: this log is the only output");
  }

  /// Printed before every stdout line (e.g. "[seed 1 derived] ") in multi-run studies.
  std::string prefix;

  /// A line for people: stdout and train.log, Caffe-style prefix in the log.
  void line(const std::string& text) {
    clear_live();
    const bool ok = run_control::print(prefix + text + "\n");
    if (!run_control::writer) return;
    human_ << stamp() << text << '\n';
    if (!ok) stdout_gone();
    human_.flush();
  }
  /// A line for train.log only (the program reports errors on stderr itself): best effort,
  /// a log that cannot be written (full disk) loses the line, never the error.
  void file_line(const std::string& text) {
    if (!run_control::writer) return;
    human_ << stamp() << text << '\n';
    human_.flush();
  }
  void json(const std::string& object) {
    if (!run_control::writer) return;
    metrics_ << object << '\n';
    metrics_.flush();
  }

  void on_iteration(const netsplit::iteration_event& e, std::int64_t display) {
    if (!run_control::writer) return;
    std::ostringstream js;
    js.precision(7);
    js << "{\"type\":\"train\",\"iter\":" << e.iter << ",\"loss\":" << e.loss << ",\"lr\":" << e.lr
       << ",\"img_per_s\":" << e.img_per_s;
    if (e.comm_s > 0) js << ",\"comm_s\":" << e.comm_s;  // data-parallel runs
    js << "}";
    json(js.str());
    smoothed_ = smoothed_ == 0 ? e.img_per_s : 0.95 * smoothed_ + 0.05 * e.img_per_s;
    const double eta = smoothed_ > 0 ? double(e.max_iter - e.iter) * e.batch / smoothed_ : 0;
    char buf[200];
    std::snprintf(buf, sizeof buf, "Iteration %lld/%lld, loss = %.4f, lr = %.5f, %.0f img/s, ETA %s",
                  static_cast<long long>(e.iter), static_cast<long long>(e.max_iter), e.loss, e.lr, smoothed_,
                  duration(eta).c_str());
    if (live_ && !run_control::stdout_lost) {
      if (!run_control::print("\r" + prefix + buf + "\033[K")) stdout_gone();
      live_shown_ = true;
    }
    if (e.iter % display == 0 || e.iter == e.max_iter) {
      if (live_) {
        human_ << stamp() << buf << '\n';
        human_.flush();
      } else {
        line(buf);
      }
    }
  }

  void on_test(const netsplit::test_event& e) {
    char buf[160];
    line("Iteration " + std::to_string(e.iter) + ", Testing net (#0)");
    std::snprintf(buf, sizeof buf, "    Test net output #0: Accuracy = %.4f", e.top1);
    line(buf);
    std::snprintf(buf, sizeof buf, "    Test net output #1: Accuracy_top5 = %.4f", e.top5);
    line(buf);
    std::snprintf(buf, sizeof buf, "    Test net output #2: loss = %.4f (* 1 = %.4f loss)", e.loss, e.loss);
    line(buf);
    std::ostringstream js;
    js.precision(7);
    js << "{\"type\":\"test\",\"iter\":" << e.iter << ",\"top1\":" << e.top1 << ",\"top5\":" << e.top5
       << ",\"test_loss\":" << e.loss << ",\"samples\":" << e.samples << "}";
    json(js.str());
  }

  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  static std::string duration(double s) {
    char buf[32];
    const long t = static_cast<long>(s);
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    return buf;
  }

 private:
  void clear_live() {
    if (live_shown_) {
      if (!run_control::print("\r\033[K")) stdout_gone();
      live_shown_ = false;
    }
  }
  /// The terminal or pipe went away: training goes on, and says so here.
  void stdout_gone() {
    human_ << stamp() << "stdout is closed (its reader went away): training goes on, logging to this file only"
           << '\n';
    human_.flush();
  }
  static std::string stamp() {
    const auto now = std::chrono::system_clock::now();
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "I%02d%02d %02d:%02d:%02d.%06lld netsplit] ", tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(us));
    return buf;
  }

  bool live_;
  bool live_shown_ = false;
  double smoothed_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::ofstream human_, metrics_;
};

}  // namespace cifar_cli
