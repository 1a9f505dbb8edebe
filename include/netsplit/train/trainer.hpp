// netsplit/train/trainer.hpp — the training loop: data -> forward -> loss -> backward ->
// SGD, evaluation at an interval, snapshots, exact resume, divergence guard.
// Reports through training_events (never prints). The trainer is a generic engine: it
// knows nothing of scores or splits. Other modules join through hooks — before_iteration
// (splits happen here), after_backward (TPM recording sees the gradients before the
// update) — and through checkpoint sections (split history and TPM state travel in the
// same file; see checkpoint_section).
// Determinism: for a fixed seed and thread count, a run resumed from a checkpoint at
// iteration k reaches bit-identical parameters at iteration n as a run that never stopped.
// Data parallelism (a Communicator of several processes, train/communicator.hpp; MPI in
// netsplit/mpi.hpp): every process draws the same global batch order and trains on its
// contiguous shard of each batch; the loss gradient is weighted by the shard's share of the
// batch, so the gradients summed over processes (one ordered sum per step, identical on
// every process) are the global batch's, and every process applies the same update. Batch
// norm uses each process's own statistics (PyTorch DDP's behaviour; the running statistics
// are rank 0's, broadcast after every step) unless train_config::sync_batch_norm, which
// normalises with the global batch's: then N processes compute what one does with the
// whole batch, to float rounding. Evaluation is sharded over processes and summed;
// checkpoints are written by rank 0 only and resume only with the same process count. The
// loss check, the stop request and a failed checkpoint write are agreed by all processes,
// so they stop together.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <exception>
#include <functional>
#include <limits>
#include <span>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/data/data.hpp"
#include "netsplit/backend/cpu/cpu_backend.hpp"
#include "netsplit/models/network.hpp"
#include "netsplit/train/checkpoint.hpp"
#include "netsplit/train/communicator.hpp"
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
  /// Data-parallel runs: batch norm with the statistics of the whole batch over every
  /// process (needs a context with batch_norm_sum: cpu_context). No effect in one process.
  bool sync_batch_norm = false;
};

template <Network Net, Communicator Comm = single_process>
class trainer {
 public:
  using T = typename Net::scalar_type;
  using B = typename Net::backend_type;
  using context_type = typename B::context;

  trainer(context_type& ctx, Net& net, const dataset& train, const dataset& test,
          const channel_stats& stats, train_config cfg, Comm comm = {})
      : comm_(std::move(comm)),
        ctx_(ctx),
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
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "a trainer sums gradients over processes in float or double");
    replica_.rank = comm_.rank();
    replica_.size = comm_.size();
    if (distributed()) {
      NETSPLIT_EXPECT(cfg_.batch_size >= comm_.size(), "a batch of ", cfg_.batch_size, " cannot be shared by ",
                      comm_.size(), " processes (each needs at least one image)");
      train_.set_shard(comm_.rank(), comm_.size());
      replica_.sum = [this](std::span<double> v) { timed([&] { comm_.allreduce_sum(v); }); };
      if (cfg_.sync_batch_norm) {
        if constexpr (requires { ctx.batch_norm_sum; }) {
          ctx_.batch_norm_sum = [this](std::span<double> v) { timed([&] { comm_.allreduce_sum(v); }); };
        } else {
          detail::raise<contract_violation>("sync batch norm needs a backend context with batch_norm_sum (",
                                            B::name, " has none)");
        }
      }
    }
  }
  ~trainer() {
    if constexpr (requires { ctx_.batch_norm_sum; })
      if (distributed() && cfg_.sync_batch_norm) ctx_.batch_norm_sum = nullptr;
  }
  trainer(const trainer&) = delete;
  trainer& operator=(const trainer&) = delete;

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
  Comm& communicator() { return comm_; }
  /// This process's place in a data-parallel run and its current batch's shard (for the
  /// TPM recorder: tpm_recorder::follow).
  const replica_view& replica() const { return replica_; }
  bool distributed() const { return comm_.size() > 1; }

  /// Asked after every iteration (its test and snapshots done); true stops the run there
  /// (e.g. a program's signal flag). Must be cheap: it is on the training loop.
  std::function<bool()> stop_requested;

  enum class run_outcome { completed, stopped };

  /// Runs until config().max_iter, testing and snapshotting on schedule. When
  /// stop_requested says so before the last iteration, writes a checkpoint at the current
  /// iteration (unless the schedule just wrote one; on_snapshot reports it) and returns
  /// stopped: loading it continues the run exactly.
  run_outcome run() {
    check_replicas();
    while (iter_ < cfg_.max_iter) {
      step();
      const bool last = iter_ == cfg_.max_iter;
      if ((cfg_.test_interval > 0 && iter_ % cfg_.test_interval == 0) || last) test();
      const bool saved = wants_snapshot(iter_) || (last && cfg_.snapshot_final);
      if (saved) snapshot();
      if (!last && (distributed() ? stop_agreed_ : stop_requested && stop_requested())) {
        if (!saved) snapshot();
        return run_outcome::stopped;
      }
    }
    return run_outcome::completed;
  }

  /// One SGD iteration. Throws divergence_error (state untouched by the bad update) when
  /// the loss is NaN or infinite (in a data-parallel run: on any process; every one throws).
  void step() {
    before_iteration(iter_);
    comm_seconds_ = 0;
    const auto t0 = std::chrono::steady_clock::now();
    if constexpr (loader_native) {
      train_.next(images_, labels_);
    } else {
      train_.next(host_images_, labels_);
      const auto host = host_images_.to_host();
      images_.resize(host_images_.shape());
      images_.from_host(std::vector<T>(host.begin(), host.end()));
    }
    const auto part = train_.last_batch();
    replica_.offset = part.offset;
    replica_.global_batch = part.whole;
    double loss = loss_.forward(ctx_, net_.forward(ctx_, images_, phase::train), labels_);
    if (distributed()) loss = agree(loss, static_cast<double>(labels_.size()) / static_cast<double>(part.whole));
    if (!std::isfinite(loss))
      detail::raise<divergence_error>("netsplit: training diverged: loss is ", loss,
                                      distributed() ? " (on at least one process)" : "", " at iteration ", iter_ + 1,
                                      " (lr ", cfg_.schedule.lr(iter_), "); no update was applied");
    net_.backward(ctx_, loss_.backward());
    if (distributed()) sum_gradients();
    after_backward(iter_);
    const double lr = cfg_.schedule.lr(iter_);
    opt_.step(ctx_, net_, lr);
    if (distributed() && !cfg_.sync_batch_norm) broadcast_buffers();
    ++iter_;
    after_update(iter_);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (events.on_iteration)
      events.on_iteration({iter_, cfg_.max_iter, loss, lr, secs > 0 ? part.whole / secs : 0.0,
                           static_cast<int>(part.whole), comm_seconds_});
  }

  /// Evaluates on the whole test set and reports a test_event (in a data-parallel run each
  /// process evaluates its contiguous part of the test set; the totals are summed).
  classification_totals test() {
    classification_totals totals;
    if (!distributed()) {
      batch_loader loader(test_set_, cfg_.batch_size, stats_, false, cfg_.seed, host_context());
      totals = evaluate(ctx_, net_, loader);
    } else {
      const auto part = shard_of(static_cast<std::int64_t>(test_set_.size()), comm_.rank(), comm_.size());
      if (!test_shard_ && part.count() > 0)
        test_shard_ = subset(test_set_, static_cast<std::size_t>(part.begin), static_cast<std::size_t>(part.count()));
      if (test_shard_) {
        batch_loader loader(*test_shard_, cfg_.batch_size, stats_, false, cfg_.seed, host_context());
        totals = evaluate(ctx_, net_, loader);
      }
      double sums[4] = {totals.loss_sum, double(totals.top1), double(totals.top5), double(totals.samples)};
      comm_.allreduce_sum(std::span<double>(sums));
      totals = {sums[0], std::llround(sums[1]), std::llround(sums[2]), std::llround(sums[3])};
    }
    if (events.on_test) events.on_test({iter_, totals.top1_rate(), totals.top5_rate(), totals.mean_loss(), totals.samples});
    return totals;
  }

  /// Path of the snapshot for an iteration: <dir>/<prefix>_iter_<n>.safetensors.
  std::filesystem::path snapshot_path(std::int64_t iter) const {
    return cfg_.snapshot_dir / (cfg_.snapshot_prefix + "_iter_" + std::to_string(iter) + ".safetensors");
  }

  /// Writes the whole training state atomically; refuses to write non-finite parameters.
  /// In a data-parallel run rank 0 writes and every process returns once the file is
  /// complete (or every process throws when rank 0 could not write it).
  std::filesystem::path snapshot() {
    const auto path = snapshot_path(iter_);
    if (!distributed()) {
      save(path);
    } else {
      double failed[1] = {0};
      std::exception_ptr error;
      if (comm_.rank() == 0) {
        try {
          save(path);
        } catch (...) {
          error = std::current_exception();
          failed[0] = 1;
        }
      }
      comm_.allreduce_sum(std::span<double>(failed));
      if (error) std::rethrow_exception(error);
      if (failed[0] > 0)
        detail::raise<io_error>("netsplit: rank 0 could not write checkpoint ", path.string(), " at iteration ", iter_);
    }
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
    if (distributed()) {  // a single-process file stays as it always was
      f.metadata["netsplit.processes"] = std::to_string(comm_.size());
      f.metadata["netsplit.sync_batch_norm"] = cfg_.sync_batch_norm ? "1" : "0";
    }
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
    {
      // the process count decides each process's batch statistics and the order of the
      // gradient sums: a run continues only on as many processes as it ran on
      const auto it = f.metadata.find("netsplit.processes");
      const std::string saved = it == f.metadata.end() ? "1" : it->second;
      if (saved != std::to_string(comm_.size()))
        detail::raise<io_error>("netsplit: ", where, " was written by a run on ", saved, " process(es); this run has ",
                                comm_.size(), " (resume it with as many processes: mpirun -np ", saved, ")");
      const auto sb = f.metadata.find("netsplit.sync_batch_norm");
      const bool saved_sync = sb != f.metadata.end() && sb->second == "1";
      if (distributed() && saved_sync != cfg_.sync_batch_norm)
        detail::raise<io_error>("netsplit: ", where, " was written by a run ", saved_sync ? "with" : "without",
                                " sync batch norm; this run is ", cfg_.sync_batch_norm ? "with" : "without", " it");
    }
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
    check_replicas();
  }

  /// A hash (FNV-1a) of everything a step changes: parameters, buffers, optimizer state
  /// and the iteration. Processes of a data-parallel run have the same one.
  std::uint64_t state_hash() {
    std::uint64_t h = 1469598103934665603ull;
    auto bytes = [&](const void* p, std::size_t n) {
      const auto* b = static_cast<const unsigned char*>(p);
      for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
    };
    auto tensor_bytes = [&](const std::string& name, const tensor<T, B>& t) {
      bytes(name.data(), name.size());
      const auto host = t.to_host();
      bytes(host.data(), host.size() * sizeof(T));
    };
    net_.visit_parameters([&](const std::string& n, tensor<T, B>& w, tensor<T, B>&) { tensor_bytes(n, w); });
    net_.visit_buffers([&](const std::string& n, tensor<T, B>& b) { tensor_bytes(n, b); });
    opt_.state().for_each([&](const std::string& slot, const std::string& p, const tensor<T, B>& t) {
      tensor_bytes(slot + "/" + p, t);
    });
    bytes(&iter_, sizeof iter_);
    return h;
  }

  /// Throws distributed_error on every process unless all processes hold the same state
  /// (state_hash): at the start of run() and after load().
  void check_replicas() {
    if (!distributed()) return;
    const std::uint64_t mine = state_hash();
    std::uint64_t root = mine;
    comm_.broadcast(std::as_writable_bytes(std::span<std::uint64_t>(&root, 1)), 0);
    double differ[1] = {root == mine ? 0.0 : 1.0};
    comm_.allreduce_sum(std::span<double>(differ));
    if (differ[0] > 0)
      detail::raise<distributed_error>("netsplit: the processes of this data-parallel run hold different parameters "
                                       "or optimizer state at iteration ", iter_, " (", differ[0], " of ", comm_.size(),
                                       " differ from rank 0): were they started with the same seed and files?");
  }

 private:
  /// The loss check and the stop request, agreed by every process before backward; returns
  /// the global batch's loss and weights this process's loss gradient by its share.
  double agree(double loss, double share) {
    const bool finite = std::isfinite(loss);
    double v[3] = {finite ? share * loss : 0.0, finite ? 0.0 : 1.0, stop_requested && stop_requested() ? 1.0 : 0.0};
    timed([&] { comm_.allreduce_sum(std::span<double>(v)); });
    stop_agreed_ = v[2] > 0;
    if (v[1] > 0) return finite ? std::numeric_limits<double>::quiet_NaN() : loss;
    if (share != 1.0) loss_.scale_gradient(ctx_, share);
    return v[0];
  }

  /// Sums every parameter's gradient over the processes (one buffer, one collective).
  void sum_gradients() {
    std::size_t n = 0;
    net_.visit_parameters([&](const std::string&, tensor<T, B>&, tensor<T, B>& g) { n += g.numel(); });
    flat_.resize(n);
    std::size_t at = 0;
    net_.visit_parameters([&](const std::string&, tensor<T, B>&, tensor<T, B>& g) {
      B::template copy_to_host<T>(g.data(), flat_.data() + at, g.numel());
      at += g.numel();
    });
    timed([&] { comm_.allreduce_sum(std::span<T>(flat_)); });
    at = 0;
    net_.visit_parameters([&](const std::string&, tensor<T, B>&, tensor<T, B>& g) {
      B::template copy_from_host<T>(flat_.data() + at, g.data(), g.numel());
      at += g.numel();
    });
  }

  /// Without sync batch norm each process's running statistics follow its own batches:
  /// rank 0's are every process's (as PyTorch DDP's broadcast_buffers).
  void broadcast_buffers() {
    std::size_t n = 0;
    net_.visit_buffers([&](const std::string&, tensor<T, B>& b) { n += b.numel(); });
    flat_.resize(n);
    std::size_t at = 0;
    net_.visit_buffers([&](const std::string&, tensor<T, B>& b) {
      B::template copy_to_host<T>(b.data(), flat_.data() + at, b.numel());
      at += b.numel();
    });
    timed([&] { comm_.broadcast(std::as_writable_bytes(std::span<T>(flat_)), 0); });
    at = 0;
    net_.visit_buffers([&](const std::string&, tensor<T, B>& b) {
      B::template copy_from_host<T>(flat_.data() + at, b.data(), b.numel());
      at += b.numel();
    });
  }

  /// Runs a collective, adding its time to this iteration's communication time.
  template <class F>
  void timed(F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    comm_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

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

  Comm comm_;
  replica_view replica_;
  bool stop_agreed_ = false;
  double comm_seconds_ = 0;  // this iteration's time in collectives
  std::vector<T> flat_;  // gradients or buffers of every parameter, summed or broadcast
  std::optional<dataset> test_shard_;
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
