// netsplit/data/batch_loader.hpp — mini-batches of normalised float NCHW images.
// Train mode: each epoch visits the images in a fresh seeded permutation (Fisher–Yates on
// netsplit::rng) and augments them (augmentation.hpp) from a second rng stream. Eval mode:
// dataset order, no augmentation. An epoch is ceil(N / batch) batches, the last one smaller
// (PyTorch's drop_last=False). The whole state is a one-line string; a loader restored from
// it yields exactly the batches the saved one would have. Output is bit-identical for any
// thread count: the random choices are drawn on the calling thread, in image order.
#pragma once

#include <charconv>
#include <cstdint>
#include <map>
#include <numeric>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "netsplit/backend/cpu/context.hpp"
#include "netsplit/backend/cpu/cpu_backend.hpp"
#include "netsplit/core/errors.hpp"
#include "netsplit/core/random.hpp"
#include "netsplit/core/shard.hpp"
#include "netsplit/core/tensor.hpp"
#include "netsplit/data/augmentation.hpp"
#include "netsplit/data/cifar.hpp"
#include "netsplit/data/normalization.hpp"


namespace netsplit {

class batch_loader {
 public:
  /// Rng streams derived from the seed (rng::derive tags).
  static constexpr std::uint64_t order_stream = 0;
  static constexpr std::uint64_t augment_stream = 1;

  /// `data` must outlive the loader. `stats` normalise every image (usually computed on the
  /// training set). `train` turns on shuffling and augmentation. `ctx`, if given, spreads
  /// the images of a batch over its threads; results do not depend on it.
  batch_loader(const dataset& data, int batch_size, const channel_stats& stats, bool train,
               std::uint64_t seed, cpu_context* ctx = nullptr)
      : data_(&data),
        batch_size_(batch_size),
        train_(train),
        seed_(seed),
        table_(make_normalization_table(stats)),
        ctx_(ctx),
        order_rng_(rng::derive(seed, order_stream)),
        augment_rng_(rng::derive(seed, augment_stream)) {
    NETSPLIT_EXPECT(batch_size > 0, "batch size must be positive, got ", batch_size);
    NETSPLIT_EXPECT(!data.empty(), "batch_loader needs a non-empty dataset, '", data.name,
                    "' has no images");
    NETSPLIT_EXPECT(data.pixels.size() == data.size() * cifar_geometry::image_bytes, "dataset '",
                    data.name, "' has ", data.pixels.size(), " pixel bytes for ", data.size(),
                    " images");
    start_epoch();
  }
  /// The loader keeps a pointer to the dataset, so a temporary one is refused.
  batch_loader(dataset&&, int, const channel_stats&, bool, std::uint64_t, cpu_context* = nullptr) = delete;

  /// Data parallelism: this loader yields only part `rank` of `parts` of every batch (the
  /// contiguous shard_of(b, rank, parts) of the batch a whole loader would yield), while
  /// its order and augmentation streams advance exactly as the whole loader's: the loaders
  /// of all ranks together yield the whole batches, and their state is the whole loader's.
  void set_shard(int rank, int parts) {
    NETSPLIT_EXPECT(parts >= 1 && rank >= 0 && rank < parts, "batch_loader shard ", rank, " of ", parts,
                    " does not exist");
    NETSPLIT_EXPECT(parts <= batch_size_, "a batch of ", batch_size_, " cannot be shared by ", parts,
                    " processes (each needs at least one image)");
    shard_rank_ = rank;
    shard_parts_ = parts;
  }

  /// Fills `images` (resized to [b, 3, 32, 32]) and `labels` (resized to b) with the next
  /// batch and advances; b is batch_size, or less for the last batch of an epoch (with a
  /// shard: this loader's part of it, see last_batch()). After the last batch of an epoch,
  /// epoch() increases and position() returns to 0.
  void next(tensor<float, cpu_backend>& images, std::vector<int>& labels) {
    using g = cifar_geometry;
    const std::size_t first = static_cast<std::size_t>(position_) * static_cast<std::size_t>(batch_size_);
    const std::size_t whole = std::min(static_cast<std::size_t>(batch_size_), size() - first);
    const auto part = shard_of(static_cast<std::int64_t>(whole), shard_rank_, shard_parts_);
    const auto lo = static_cast<std::size_t>(part.begin), b = static_cast<std::size_t>(part.count());
    last_ = {static_cast<std::int64_t>(lo), static_cast<std::int64_t>(whole)};
    images.resize({static_cast<std::int64_t>(b), g::channels, g::height, g::width});
    labels.resize(b);
    indices_.resize(b);
    choices_.resize(b);
    // every rank draws the whole batch's augmentation choices, in order, and keeps its own
    for (std::size_t i = 0; i < whole; ++i) {
      const crop_flip choice = train_ ? draw_crop_flip(augment_rng_) : crop_flip{};
      if (i < lo || i >= lo + b) continue;
      const std::size_t k = i - lo;
      indices_[k] = train_ ? permutation_[first + i] : first + i;
      labels[k] = data_->labels[indices_[k]];
      choices_[k] = choice;
    }
    float* out = images.data();
    auto work = [&](std::ptrdiff_t lo_i, std::ptrdiff_t hi_i, int) {
      for (std::ptrdiff_t i = lo_i; i < hi_i; ++i) {
        const auto k = static_cast<std::size_t>(i);
        const std::uint8_t* src = data_->pixels.data() + indices_[k] * g::image_bytes;
        float* dst = out + k * g::image_bytes;
        if (train_)
          augment_image(src, choices_[k], table_, dst);
        else
          normalize_image(src, table_, dst);
      }
    };
    if (ctx_)
      ctx_->pool().parallel_for(static_cast<std::ptrdiff_t>(b), work);
    else
      work(0, static_cast<std::ptrdiff_t>(b), 0);
    if (++position_ == batches_per_epoch()) {
      ++epoch_;
      position_ = 0;
      start_epoch();
    }
  }

  /// The batch next() returned last: its first sample's place in the whole batch and the
  /// whole batch's size (0 and the batch's size without a shard).
  struct batch_part {
    std::int64_t offset = 0, whole = 0;
  };
  batch_part last_batch() const { return last_; }

  /// Index of the epoch the next batch belongs to (0 for the first).
  std::int64_t epoch() const { return epoch_; }
  /// Index of the next batch within its epoch, in [0, batches_per_epoch()).
  std::int64_t position() const { return position_; }
  std::int64_t batches_per_epoch() const {
    return static_cast<std::int64_t>((size() + static_cast<std::size_t>(batch_size_) - 1) /
                                     static_cast<std::size_t>(batch_size_));
  }
  std::size_t size() const { return data_->size(); }
  int batch_size() const { return batch_size_; }
  bool train() const { return train_; }
  std::uint64_t seed() const { return seed_; }
  /// The order in which the current epoch visits the dataset (identity in eval mode).
  std::vector<std::size_t> epoch_order() const {
    if (train_) return permutation_;
    std::vector<std::size_t> order(size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    return order;
  }

  /// One line of `key=value` fields separated by ';': the format version, the
  /// configuration (mode, dataset size, batch size, seed; checked on load), the epoch, the
  /// position, the order rng at the start of the epoch (the permutation is regenerated from
  /// it) and the augmentation rng now.
  std::string save_state() const {
    return detail::concat("format=netsplit.batch_loader.v1;mode=", train_ ? "train" : "eval",
                          ";size=", size(), ";batch_size=", batch_size_, ";seed=", seed_,
                          ";epoch=", epoch_, ";position=", position_,
                          ";order_rng=", epoch_order_rng_.serialize(),
                          ";augment_rng=", augment_rng_.serialize());
  }

  /// Restores a state from save_state(). io_error, leaving this loader unchanged, if the
  /// text is malformed or was saved by a loader with another mode, dataset size, batch size
  /// or seed.
  void load_state(const std::string& text) {
    const auto fields = parse_fields(text);
    auto field = [&](const std::string& key) -> const std::string& {
      const auto it = fields.find(key);
      if (it == fields.end()) bad_state(text, "missing field '" + key + "'");
      return it->second;
    };
    if (fields.size() != 9) bad_state(text, "expected 9 fields, found " + std::to_string(fields.size()));
    if (field("format") != "netsplit.batch_loader.v1")
      bad_state(text, "unknown format '" + field("format") + "'");
    const std::string& mode = field("mode");
    if (mode != "train" && mode != "eval") bad_state(text, "mode must be train or eval, got '" + mode + "'");
    auto check_same = [&](const char* what, const std::string& saved, const std::string& mine) {
      if (saved != mine)
        bad_state(text, std::string("saved ") + what + " " + saved + " differs from this loader's " + mine);
    };
    check_same("mode", mode, train_ ? "train" : "eval");
    check_same("dataset size", std::to_string(parse_u64(text, "size", field("size"))),
               std::to_string(size()));
    check_same("batch size", std::to_string(parse_u64(text, "batch_size", field("batch_size"))),
               std::to_string(batch_size_));
    check_same("seed", std::to_string(parse_u64(text, "seed", field("seed"))), std::to_string(seed_));
    const std::uint64_t epoch = parse_u64(text, "epoch", field("epoch"));
    const std::uint64_t position = parse_u64(text, "position", field("position"));
    if (epoch > static_cast<std::uint64_t>(INT64_MAX)) bad_state(text, "epoch out of range");
    if (position >= static_cast<std::uint64_t>(batches_per_epoch()))
      bad_state(text, "position " + std::to_string(position) + " not below batches per epoch " +
                          std::to_string(batches_per_epoch()));
    const rng order = rng::deserialize(field("order_rng"));  // io_error if malformed
    const rng augment = rng::deserialize(field("augment_rng"));
    epoch_ = static_cast<std::int64_t>(epoch);
    position_ = static_cast<std::int64_t>(position);
    order_rng_ = order;
    augment_rng_ = augment;
    start_epoch();
  }

 private:
  /// Regenerates the epoch's permutation from order_rng_, remembering its starting state.
  void start_epoch() {
    epoch_order_rng_ = order_rng_;
    if (!train_) return;
    permutation_.resize(size());
    std::iota(permutation_.begin(), permutation_.end(), std::size_t{0});
    for (std::size_t i = size() - 1; i > 0; --i) {
      const auto j = static_cast<std::size_t>(order_rng_.uniform_int(i + 1));
      std::swap(permutation_[i], permutation_[j]);
    }
  }

  [[noreturn]] static void bad_state(const std::string& text, const std::string& why) {
    detail::raise<io_error>("netsplit: bad batch_loader state '", text, "': ", why);
  }
  static std::map<std::string, std::string> parse_fields(const std::string& text) {
    std::map<std::string, std::string> fields;
    std::string_view rest = text;
    while (!rest.empty()) {
      const auto end = rest.find(';');
      const std::string_view item = rest.substr(0, end);
      const auto eq = item.find('=');
      if (eq == std::string_view::npos || eq == 0)
        bad_state(text, "field '" + std::string(item) + "' is not key=value");
      if (!fields.emplace(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1))).second)
        bad_state(text, "field '" + std::string(item.substr(0, eq)) + "' repeated");
      if (end == std::string_view::npos) break;
      rest.remove_prefix(end + 1);
      if (rest.empty()) bad_state(text, "trailing ';'");
    }
    return fields;
  }
  static std::uint64_t parse_u64(const std::string& text, const char* key, const std::string& v) {
    std::uint64_t x = 0;
    const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (v.empty() || ec != std::errc{} || p != v.data() + v.size())
      bad_state(text, std::string(key) + " '" + v + "' is not a non-negative integer");
    return x;
  }

  const dataset* data_;
  int batch_size_;
  bool train_;
  std::uint64_t seed_;
  normalization_table table_;
  cpu_context* ctx_;
  rng order_rng_;        // after generating the current epoch's permutation
  rng epoch_order_rng_;  // order_rng_ before it; saved so the permutation can be rebuilt
  rng augment_rng_;
  std::int64_t epoch_ = 0;
  std::int64_t position_ = 0;
  std::vector<std::size_t> permutation_;
  std::vector<std::size_t> indices_;  // per-batch scratch
  std::vector<crop_flip> choices_;
  int shard_rank_ = 0, shard_parts_ = 1;
  batch_part last_;
};

}  // namespace netsplit
