// netsplit/train/trainer.hpp — the training loop: data -> forward -> loss -> backward ->
// SGD, evaluation at an interval, snapshots, exact resume, divergence guard.
// Reports through training_events (never prints). The trainer is a generic engine: it
// knows nothing of scores or splits. Other modules join through hooks — before_iteration
// (splits happen here), after_backward (TPM recording sees the gradients before the
// update) — and through checkpoint sections (split history and TPM state travel in the
// same file; see checkpoint_section).
// Determinism: for a fixed seed and thread count, a run resumed from a checkpoint at
// iteration k reaches bit-identical parameters at iteration n as a run that never stopped.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/data/data.hpp"
#include "netsplit/backend/cpu/cpu_backend.hpp"
#include "netsplit/models/network.hpp"
#include "netsplit/train/checkpoint.hpp"
#include "netsplit/train/evaluate.hpp"
#include "netsplit/train/events.hpp"
#include "netsplit/train/lr_schedule.hpp"
#include "netsplit/train/sgd.hpp"

namespace netsplit {

struct train_config {
  std::int64_t max_iter = 1000;
  int batch_size = 128;
  lr_schedule schedule = multistep_lr{};
  sgd_config optimizer{};
  std::int64_t test_interval = 0;  // 0: test only at the end
  std::int64_t snapshot_every = 0;  // 0: none besides snapshot_at and the final one
  std::vector<std::int64_t> snapshot_at;
  bool snapshot_final = true;
  std::filesystem::path snapshot_dir = ".";
  std::string snapshot_prefix = "netsplit";
  std::uint64_t seed = 1;  // data order and augmentation streams derive from it
};

template <Network Net>
class trainer {
 public:
  using T = typename Net::scalar_type;
  using B = typename Net::backend_type;
  using context_type = typename B::context;

  trainer(context_type& ctx, Net& net, const dataset& train, const dataset& test,
          const channel_stats& stats, train_config cfg)
      : ctx_(ctx),
        net_(net),
        cfg_(std::move(cfg)),
        train_set_(train),
        test_set_(test),
        stats_(stats),
        train_(train, cfg_.batch_size, stats, true, cfg_.seed, host_context()),
        opt_(cfg_.optimizer) {
    NETSPLIT_EXPECT(cfg_.max_iter >= 0, "max_iter must be non-negative, got ", cfg_.max_iter);
    NETSPLIT_EXPECT(cfg_.batch_size > 0, "batch size must be positive, got ", cfg_.batch_size);
    NETSPLIT_EXPECT(train.classes == Net::classes, "training set '", train.name, "' has ", train.classes,
                    " classes but the network predicts ", Net::classes);
    NETSPLIT_EXPECT(test.classes == Net::classes, "test set '", test.name, "' has ", test.classes,
                    " classes but the network predicts ", Net::classes);
  }

  training_events events;
  /// Called with the iteration about to run (0-based), before its batch is drawn.
  hook<std::int64_t> before_iteration;
  /// Called after backward of iteration `iter` (0-based), before the SGD update.
  hook<std::int64_t> after_backward;
  /// Called after the update, with the number of completed iterations (iter + 1).
  hook<std::int64_t> after_update;

  /// Registers a part of every checkpoint this trainer writes and loads; sections save
  /// and load in the order they were added.
  void add_section(checkpoint_section<Net> s) { sections_.push_back(std::move(s)); }

  std::int64_t iteration() const { return iter_; }
  const train_config& config() const { return cfg_; }
  train_config& config() { return cfg_; }
  Net& net() { return net_; }
  sgd<T, B>& optimizer() { return opt_; }
  context_type& context() { return ctx_; }
  batch_loader& train_loader() { return train_; }

  /// Asked after every iteration (its test and snapshots done); true stops the run there
  /// (e.g. a program's signal flag). Must be cheap: it is on the training loop.
  std::function<bool()> stop_requested;

  enum class run_outcome { completed, stopped };

  /// Runs until config().max_iter, testing and snapshotting on schedule. When
  /// stop_requested says so before the last iteration, writes a checkpoint at the current
  /// iteration (unless the schedule just wrote one; on_snapshot reports it) and returns
  /// stopped: loading it continues the run exactly.
  run_outcome run() {
    while (iter_ < cfg_.max_iter) {
      step();
      const bool last = iter_ == cfg_.max_iter;
      if ((cfg_.test_interval > 0 && iter_ % cfg_.test_interval == 0) || last) test();
      const bool saved = wants_snapshot(iter_) || (last && cfg_.snapshot_final);
      if (saved) snapshot();
      if (!last && stop_requested && stop_requested()) {
        if (!saved) snapshot();
        return run_outcome::stopped;
      }
    }
    return run_outcome::completed;
  }

  /// One SGD iteration. Throws divergence_error (state untouched by the bad update) when
  /// the loss is NaN or infinite.
  void step() {
    before_iteration(iter_);
    const auto t0 = std::chrono::steady_clock::now();
    if constexpr (loader_native) {
      train_.next(images_, labels_);
    } else {
      train_.next(host_images_, labels_);
      const auto host = host_images_.to_host();
      images_.resize(host_images_.shape());
      images_.from_host(std::vector<T>(host.begin(), host.end()));
    }
    const double loss = loss_.forward(ctx_, net_.forward(ctx_, images_, phase::train), labels_);
    if (!std::isfinite(loss))
      detail::raise<divergence_error>("netsplit: training diverged: loss is ", loss, " at iteration ", iter_ + 1,
                                      " (lr ", cfg_.schedule.lr(iter_), "); no update was applied");
    net_.backward(ctx_, loss_.backward());
    after_backward(iter_);
    const double lr = cfg_.schedule.lr(iter_);
    opt_.step(ctx_, net_, lr);
    ++iter_;
    after_update(iter_);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (events.on_iteration)
      events.on_iteration({iter_, cfg_.max_iter, loss, lr, secs > 0 ? labels_.size() / secs : 0.0,
                           static_cast<int>(labels_.size())});
  }

  /// Evaluates on the whole test set and reports a test_event.
  classification_totals test() {
    batch_loader loader(test_set_, cfg_.batch_size, stats_, false, cfg_.seed, host_context());
    const auto totals = evaluate(ctx_, net_, loader);
    if (events.on_test) events.on_test({iter_, totals.top1_rate(), totals.top5_rate(), totals.mean_loss(), totals.samples});
    return totals;
  }

  /// Path of the snapshot for an iteration: <dir>/<prefix>_iter_<n>.safetensors.
  std::filesystem::path snapshot_path(std::int64_t iter) const {
    return cfg_.snapshot_dir / (cfg_.snapshot_prefix + "_iter_" + std::to_string(iter) + ".safetensors");
  }

  /// Writes the whole training state atomically; refuses to write non-finite parameters.
  std::filesystem::path snapshot() {
    const auto path = snapshot_path(iter_);
    save(path);
    if (events.on_snapshot) events.on_snapshot({iter_, path});
    return path;
  }

  void save(const std::filesystem::path& path) {
    net_.visit_parameters([&](const std::string& name, tensor<T, B>& w, tensor<T, B>&) {
      if (!B::all_finite(ctx_, w.numel(), w.data()))
        detail::raise<divergence_error>("netsplit: parameter '", name, "' is not finite at iteration ", iter_,
                                        "; refusing to write checkpoint ", path.string());
    });
    io::safetensors_file f = checkpoint::capture(net_, opt_.state());
    f.metadata["netsplit.iteration"] = std::to_string(iter_);
    f.metadata["netsplit.loader"] = train_.save_state();
    f.metadata["netsplit.schedule"] = cfg_.schedule.describe();
    f.metadata["netsplit.seed"] = std::to_string(cfg_.seed);
    f.metadata["netsplit.batch_size"] = std::to_string(cfg_.batch_size);
    f.metadata["netsplit.dataset"] = train_set_.name;
    f.metadata["netsplit.normalization"] = describe(stats_);
    for (const auto& s : sections_)
      if (s.save) s.save(f);
    io::write_file_atomic(path, f);
  }

  /// Restores the whole training state from a checkpoint written by save(). The file must
  /// match this run's architecture, dataset and batch size; mismatches are io_errors
  /// naming the file, and nothing is changed unless the whole file is valid.
  void load(const std::filesystem::path& path) {
    const auto f = io::read_file(path, io::read_options{.require_checksum = true});
    const auto where = path.string();
    const auto iter = checkpoint::parse_int(checkpoint::meta(f, "netsplit.iteration", where), "iteration", where);
    checkpoint::expect_meta(f, "netsplit.dataset", train_set_.name, where);
    checkpoint::expect_meta(f, "netsplit.batch_size", std::to_string(cfg_.batch_size), where);
    // the model and its widths first: a section of another model's file (its split history)
    // would otherwise fail on names this network does not have
    checkpoint::expect_meta(f, "netsplit.architecture", net_.architecture(), where);
    for (const auto& s : sections_)
      if (s.validate) s.validate(f, where);
    // A section that will change the network's widths (a split history) shows the widths
    // on a fresh network first, so the file's tensors are checked before anything changes.
    bool reshaped = false;
    std::optional<Net> fresh;
    for (const auto& s : sections_)
      if (s.reshape) {
        if (!fresh) fresh.emplace(net_.width());
        reshaped = s.reshape(f, where, *fresh) || reshaped;
      }
    checkpoint::check_compatible(f, reshaped ? *fresh : net_, where, opt_.state().slot_names());
    batch_loader loader = train_;
    loader.load_state(checkpoint::meta(f, "netsplit.loader", where));
    for (const auto& s : sections_)
      if (s.apply) s.apply(f, where);
    checkpoint::restore(f, net_, opt_.state(), where);
    train_ = loader;
    iter_ = iter;
  }

 private:
  bool wants_snapshot(std::int64_t it) const {
    if (cfg_.snapshot_every > 0 && it % cfg_.snapshot_every == 0) return true;
    for (auto s : cfg_.snapshot_at)
      if (s == it) return true;
    return false;
  }

  /// The loader fills host float tensors and spreads its work over a cpu_context's pool.
  static constexpr bool loader_native = std::is_same_v<tensor<T, B>, tensor<float, cpu_backend>>;
  cpu_context* host_context() {
    if constexpr (std::is_same_v<context_type, cpu_context>) return &ctx_;
    else return nullptr;
  }

  context_type& ctx_;
  Net& net_;
  train_config cfg_;
  const dataset& train_set_;
  const dataset& test_set_;
  channel_stats stats_;
  batch_loader train_;
  sgd<T, B> opt_;
  softmax_cross_entropy<T, B> loss_;
  tensor<T, B> images_;
  tensor<float, cpu_backend> host_images_;
  std::vector<int> labels_;
  std::int64_t iter_ = 0;
  std::vector<checkpoint_section<Net>> sections_;
};

}  // namespace netsplit
