// Data: CIFAR readers (generated fixtures in the official layouts + the real shared
// CIFAR-10), channel statistics, pad/crop/flip augmentation, and the resumable loader.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "netsplit/backend/cpu/context.hpp"
#include "netsplit/data/data.hpp"

using namespace netsplit;
namespace fs = std::filesystem;
using ftensor = tensor<float, cpu_backend>;
using g = cifar_geometry;

namespace {

const fs::path shared_dir = fs::path(NETSPLIT_SOURCE_DIR) / ".." / "shared";
const fs::path real_cifar10_dir = shared_dir / "data" / "cifar10-jpeg" / "cifar-10-batches-bin";
const fs::path real_cifar100_names_dir = shared_dir / "data" / "cifar100" / "cifar-100-binary";

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct temp_dir {
  fs::path path;
  temp_dir() {
    static int counter = 0;
    std::random_device rd;
    path = fs::temp_directory_path() /
           ("netsplit_test_data_" + std::to_string(rd()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

void write_bytes(const fs::path& file, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}
void write_text(const fs::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}
std::string names_text(const std::string& prefix, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += prefix + std::to_string(i) + "\n";
  return s;
}

/// Deterministic pixel byte k (0..3071) of image number `image`.
std::uint8_t pixel_of(std::size_t image, int k) {
  return static_cast<std::uint8_t>((image * 131 + static_cast<std::size_t>(k) * 7 + (k >> 10) * 50) % 256);
}
std::vector<std::uint8_t> image_bytes(std::size_t image) {
  std::vector<std::uint8_t> px(g::image_bytes);
  for (int k = 0; k < g::image_bytes; ++k) px[static_cast<std::size_t>(k)] = pixel_of(image, k);
  return px;
}

/// CIFAR-10 records: label byte + pixels, for images [first, first + n).
std::vector<std::uint8_t> cifar10_records(std::size_t first, std::size_t n) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = first; i < first + n; ++i) {
    out.push_back(static_cast<std::uint8_t>(i % 10));
    const auto px = image_bytes(i);
    out.insert(out.end(), px.begin(), px.end());
  }
  return out;
}
/// CIFAR-100 records: coarse byte + fine byte + pixels.
std::vector<std::uint8_t> cifar100_records(std::size_t first, std::size_t n) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = first; i < first + n; ++i) {
    out.push_back(static_cast<std::uint8_t>(i % 20));
    out.push_back(static_cast<std::uint8_t>((i * 7) % 100));
    const auto px = image_bytes(i);
    out.insert(out.end(), px.begin(), px.end());
  }
  return out;
}

constexpr std::size_t fixture_records = 3;  // per CIFAR-10 file

/// CIFAR-10 layout: data_batch_1..5 with 3 records each (images 0..14), test_batch (100..102).
void make_cifar10_fixture(const fs::path& dir) {
  for (int b = 0; b < 5; ++b)
    write_bytes(dir / ("data_batch_" + std::to_string(b + 1) + ".bin"),
                cifar10_records(static_cast<std::size_t>(b) * fixture_records, fixture_records));
  write_bytes(dir / "test_batch.bin", cifar10_records(100, fixture_records));
  write_text(dir / "batches.meta.txt",
             "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n");
}

bool have_real_cifar100_names() {
  return fs::exists(real_cifar100_names_dir / "fine_label_names.txt") &&
         fs::exists(real_cifar100_names_dir / "coarse_label_names.txt");
}

/// CIFAR-100 layout: train.bin (images 0..3), test.bin (200..202) and the real name lists
/// (generated ones when the shared folder is absent).
void make_cifar100_fixture(const fs::path& dir) {
  write_bytes(dir / "train.bin", cifar100_records(0, 4));
  write_bytes(dir / "test.bin", cifar100_records(200, 3));
  if (have_real_cifar100_names()) {
    fs::copy_file(real_cifar100_names_dir / "fine_label_names.txt", dir / "fine_label_names.txt");
    fs::copy_file(real_cifar100_names_dir / "coarse_label_names.txt", dir / "coarse_label_names.txt");
  } else {
    MESSAGE("shared CIFAR-100 name lists absent; using generated names");
    write_text(dir / "fine_label_names.txt", names_text("fine", 100));
    write_text(dir / "coarse_label_names.txt", names_text("coarse", 20));
  }
}

/// The message of the E that f throws; fails the test if f throws nothing or another type.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("threw the wrong exception type: ", e.what());
  }
  FAIL("expected an exception, none was thrown");
  return {};
}
void check_mentions(const std::string& msg, std::initializer_list<std::string> parts) {
  INFO("message: ", msg);
  for (const auto& p : parts) {
    INFO("expected to mention: ", p);
    CHECK(msg.find(p) != std::string::npos);
  }
}

channel_stats some_stats() { return {{0.49f, 0.48f, 0.45f}, {0.25f, 0.24f, 0.26f}}; }

/// A dataset of n generated images whose label is the image number (classes = n), so a
/// batch's labels reveal which images it holds.
dataset numbered_dataset(std::size_t n) {
  dataset d;
  d.name = "numbered";
  d.classes = static_cast<int>(n);
  for (std::size_t i = 0; i < n; ++i) {
    d.labels.push_back(static_cast<int>(i));
    const auto px = image_bytes(i);
    d.pixels.insert(d.pixels.end(), px.begin(), px.end());
  }
  return d;
}

struct batch {
  std::vector<float> images;
  std::vector<int> labels;
  tensor_shape shape;
  bool operator==(const batch& o) const {
    return labels == o.labels && shape == o.shape && images.size() == o.images.size() &&
           std::memcmp(images.data(), o.images.data(), images.size() * sizeof(float)) == 0;
  }
};
batch next_batch(batch_loader& l) {
  ftensor t;
  batch b;
  l.next(t, b.labels);
  b.shape = t.shape();
  b.images = t.to_host();
  return b;
}
std::vector<batch> take(batch_loader& l, int n) {
  std::vector<batch> out;
  for (int i = 0; i < n; ++i) out.push_back(next_batch(l));
  return out;
}

/// Straightforward reference of the augmentation: a zero-padded 40x40 copy, crop, flip.
std::vector<float> reference_augment(const std::uint8_t* src, const crop_flip& a, const channel_stats& s) {
  constexpr int P = 4, S = 32 + 2 * P;
  std::vector<float> out(g::image_bytes);
  for (int c = 0; c < 3; ++c) {
    std::vector<std::uint8_t> padded(S * S, 0);
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) padded[static_cast<std::size_t>((y + P) * S + x + P)] = src[c * 1024 + y * 32 + x];
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) {
        const int px = a.flip ? a.dx + 31 - x : a.dx + x;
        const std::uint8_t v = padded[static_cast<std::size_t>((a.dy + y) * S + px)];
        out[static_cast<std::size_t>(c * 1024 + y * 32 + x)] =
            (static_cast<float>(v) / 255.f - s.mean[static_cast<std::size_t>(c)]) / s.std[static_cast<std::size_t>(c)];
      }
  }
  return out;
}

}  // namespace

// ---- readers on generated files -----------------------------------------------------------

TEST_CASE("load_cifar10 reads the official layout: labels, planes, class names, file order") {
  temp_dir tmp;
  make_cifar10_fixture(tmp.path);
  const dataset train = load_cifar10(tmp.path, split::train, fixture_records);
  CHECK(train.name == "cifar10-train");
  CHECK(train.classes == 10);
  REQUIRE(train.size() == 15);
  CHECK(train.pixels.size() == 15 * 3072);
  CHECK(train.coarse_labels.empty());
  REQUIRE(train.class_names.size() == 10);
  CHECK(train.class_names.front() == "airplane");
  CHECK(train.class_names.back() == "truck");
  for (std::size_t i = 0; i < 15; ++i) {
    CHECK(train.labels[i] == static_cast<int>(i % 10));
    const auto px = image_bytes(i);
    CHECK(std::equal(px.begin(), px.end(), train.image(i)));
  }
  const dataset test = load_cifar10(tmp.path, split::test, fixture_records);
  CHECK(test.name == "cifar10-test");
  REQUIRE(test.size() == 3);
  CHECK(test.labels[0] == 0);  // image 100
  const auto px = image_bytes(102);
  CHECK(std::equal(px.begin(), px.end(), test.image(2)));
  CHECK(load_cifar(cifar_kind::cifar10, tmp.path, split::test, fixture_records).labels == test.labels);
}

TEST_CASE("load_cifar100 reads coarse and fine labels and both name lists") {
  temp_dir tmp;
  make_cifar100_fixture(tmp.path);
  const dataset train = load_cifar100(tmp.path, split::train, 4);
  CHECK(train.name == "cifar100-train");
  CHECK(train.classes == 100);
  CHECK(train.coarse_classes == 20);
  REQUIRE(train.size() == 4);
  REQUIRE(train.coarse_labels.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(train.coarse_labels[i] == static_cast<int>(i % 20));
    CHECK(train.labels[i] == static_cast<int>((i * 7) % 100));
    const auto px = image_bytes(i);
    CHECK(std::equal(px.begin(), px.end(), train.image(i)));
  }
  REQUIRE(train.class_names.size() == 100);
  REQUIRE(train.coarse_class_names.size() == 20);
  if (have_real_cifar100_names()) {
    CHECK(train.class_names.front() == "apple");
    CHECK(train.class_names.back() == "worm");
    CHECK(train.coarse_class_names.front() == "aquatic_mammals");
  }
  const dataset test = load_cifar(cifar_kind::cifar100, tmp.path, split::test, 3);
  REQUIRE(test.size() == 3);
  CHECK(test.labels[2] == static_cast<int>((202 * 7) % 100));
  CHECK(test.coarse_labels[2] == 202 % 20);
}

TEST_CASE("class-name files: whitespace and blank lines are ignored, CRLF accepted") {
  temp_dir tmp;
  write_text(tmp.path / "names.txt", "\n  a \r\nb\r\n\r\n c\n\n");
  CHECK(read_class_names(tmp.path / "names.txt", 3) == std::vector<std::string>{"a", "b", "c"});
  write_text(tmp.path / "noeol.txt", "x\ny");
  CHECK(read_class_names(tmp.path / "noeol.txt", 2) == std::vector<std::string>{"x", "y"});
}

// ---- readers reject bad input with io_error naming the file and the problem --------------

TEST_CASE("the official record count is enforced unless relaxed explicitly") {
  temp_dir tmp;
  make_cifar10_fixture(tmp.path);
  make_cifar100_fixture(tmp.path);
  check_mentions(message_of<io_error>([&] { load_cifar10(tmp.path, split::train); }),
                 {"data_batch_1.bin", "wrong record count", "found 3", "expected 10000"});
  check_mentions(message_of<io_error>([&] { load_cifar100(tmp.path, split::train); }),
                 {"train.bin", "wrong record count", "found 4", "expected 50000"});
  check_mentions(message_of<io_error>([&] { load_cifar100(tmp.path, split::test); }),
                 {"test.bin", "found 3", "expected 10000"});
  check_mentions(message_of<io_error>([&] { load_cifar10(tmp.path, split::test, 4); }),
                 {"test_batch.bin", "found 3", "expected 4"});
  CHECK_THROWS_AS(load_cifar10(tmp.path, split::test, 0), contract_violation);
  CHECK_THROWS_AS(load_cifar100(tmp.path, split::test, 0), contract_violation);
}

TEST_CASE("a missing data file is an io_error naming it") {
  temp_dir tmp;
  make_cifar10_fixture(tmp.path);
  make_cifar100_fixture(tmp.path);
  fs::remove(tmp.path / "data_batch_3.bin");
  fs::remove(tmp.path / "test.bin");
  check_mentions(message_of<io_error>([&] { load_cifar10(tmp.path, split::train, fixture_records); }),
                 {"data_batch_3.bin", "does not exist"});
  check_mentions(message_of<io_error>([&] { load_cifar100(tmp.path, split::test, 3); }),
                 {"test.bin", "does not exist"});
  fs::create_directory(tmp.path / "test.bin");
  check_mentions(message_of<io_error>([&] { load_cifar100(tmp.path, split::test, 3); }),
                 {"test.bin", "not a regular file"});
  check_mentions(message_of<io_error>([&] { load_cifar10(tmp.path / "nowhere", split::test); }),
                 {"nowhere", "does not exist"});
}

TEST_CASE("a file size that is not a multiple of the record size is rejected") {
  temp_dir tmp;
  make_cifar10_fixture(tmp.path);
  make_cifar100_fixture(tmp.path);
  auto rec = cifar10_records(0, fixture_records);
  rec.resize(rec.size() - 5);  // truncated
  write_bytes(tmp.path / "data_batch_2.bin", rec);
  check_mentions(message_of<io_error>([&] { load_cifar10(tmp.path, split::train, fixture_records); }),
                 {"data_batch_2.bin", "file size 9214 bytes", "not a multiple of the record size 3073"});
  // A CIFAR-10 file given to the CIFAR-100 reader: 3 * 3073 is not a multiple of 3074.
  write_bytes(tmp.path / "test.bin", cifar10_records(0, 3));
  check_mentions(message_of<io_error>([&] { load_cifar100(tmp.path, split::test, 3); }),
                 {"test.bin", "file size 9219 bytes", "record size 3074"});
}

TEST_CASE("a label out of range names the record and the value") {
  temp_dir tmp;
  make_cifar10_fixture(tmp.path);
  make_cifar100_fixture(tmp.path);
  auto c10 = cifar10_records(0, fixture_records);
  c10[2 * 3073] = 10;  // record 2's label
  write_bytes(tmp.path / "test_batch.bin", c10);
  check_mentions(message_of<io_error>([&] { load_cifar10(tmp.path, split::test, fixture_records); }),
                 {"test_batch.bin", "record 2", "label 10", "out of range [0, 10)"});

  auto fine = cifar100_records(0, 4);
  fine[1 * 3074 + 1] = 100;  // record 1's fine label
  write_bytes(tmp.path / "train.bin", fine);
  check_mentions(message_of<io_error>([&] { load_cifar100(tmp.path, split::train, 4); }),
                 {"train.bin", "record 1", "fine label 100", "[0, 100)"});

  auto coarse = cifar100_records(0, 4);
  coarse[3 * 3074] = 20;  // record 3's coarse label
  write_bytes(tmp.path / "train.bin", coarse);
  check_mentions(message_of<io_error>([&] { load_cifar100(tmp.path, split::train, 4); }),
                 {"train.bin", "record 3", "coarse label 20", "[0, 20)"});
}

TEST_CASE("missing or short class-name files are rejected") {
  temp_dir tmp;
  make_cifar10_fixture(tmp.path);
  make_cifar100_fixture(tmp.path);
  write_text(tmp.path / "batches.meta.txt", names_text("c", 9) + "\n\n");
  check_mentions(message_of<io_error>([&] { load_cifar10(tmp.path, split::test, fixture_records); }),
                 {"batches.meta.txt", "found 9 class names, expected 10"});
  write_text(tmp.path / "batches.meta.txt", names_text("c", 11));
  check_mentions(message_of<io_error>([&] { load_cifar10(tmp.path, split::test, fixture_records); }),
                 {"batches.meta.txt", "found 11 class names, expected 10"});
  fs::remove(tmp.path / "batches.meta.txt");
  check_mentions(message_of<io_error>([&] { load_cifar10(tmp.path, split::test, fixture_records); }),
                 {"batches.meta.txt", "does not exist"});

  write_text(tmp.path / "fine_label_names.txt", names_text("f", 99));
  check_mentions(message_of<io_error>([&] { load_cifar100(tmp.path, split::test, 3); }),
                 {"fine_label_names.txt", "found 99 class names, expected 100"});
  write_text(tmp.path / "fine_label_names.txt", names_text("f", 100));
  fs::remove(tmp.path / "coarse_label_names.txt");
  check_mentions(message_of<io_error>([&] { load_cifar100(tmp.path, split::test, 3); }),
                 {"coarse_label_names.txt", "does not exist"});
  write_text(tmp.path / "coarse_label_names.txt", "");
  check_mentions(message_of<io_error>([&] { load_cifar100(tmp.path, split::test, 3); }),
                 {"coarse_label_names.txt", "found 0 class names, expected 20"});
}

TEST_CASE("subset copies a contiguous range and checks it") {
  const dataset d = numbered_dataset(10);
  const dataset s = subset(d, 3, 4);
  CHECK(s.name == "numbered[3:7)");
  CHECK(s.labels == std::vector<int>{3, 4, 5, 6});
  CHECK(s.classes == 10);
  CHECK(std::equal(s.pixels.begin(), s.pixels.end(), d.image(3)));
  CHECK(subset(d, 10, 0).empty());
  CHECK_THROWS_AS(subset(d, 8, 3), contract_violation);
  CHECK_THROWS_AS(subset(d, 11, 0), contract_violation);
}

TEST_CASE("a limited load reads the first images: the whole set's subset, every file's size still checked") {
  temp_dir tmp;
  make_cifar10_fixture(tmp.path);
  make_cifar100_fixture(tmp.path);
  const dataset whole = load_cifar10(tmp.path, split::train, fixture_records);
  for (std::size_t m = 0; m <= 17; ++m) {
    CAPTURE(m);
    const dataset first = load_cifar10(tmp.path, split::train, fixture_records, m);
    const dataset expected = subset(whole, 0, std::min<std::size_t>(m, 15));
    CHECK(first.name == (m < 15 ? expected.name : std::string("cifar10-train")));  // "cifar10-train[0:7)"
    CHECK(first.labels == expected.labels);
    CHECK(first.pixels == expected.pixels);
    CHECK(first.class_names == whole.class_names);
  }
  CHECK(load_cifar(cifar_kind::cifar10, tmp.path, split::train, fixture_records, 4).name == "cifar10-train[0:4)");

  const dataset whole100 = load_cifar100(tmp.path, split::train, 4);
  const dataset first100 = load_cifar100(tmp.path, split::train, 4, 2);
  CHECK(first100.name == "cifar100-train[0:2)");
  CHECK(first100.labels == subset(whole100, 0, 2).labels);
  CHECK(first100.coarse_labels == subset(whole100, 0, 2).coarse_labels);
  CHECK(first100.pixels == subset(whole100, 0, 2).pixels);
  CHECK(load_cifar(cifar_kind::cifar100, tmp.path, split::train, 4, 9).name == "cifar100-train");

  // A bad label is found when its record is read, and only then.
  auto third = cifar10_records(2 * fixture_records, fixture_records);
  third[2 * 3073] = 10;  // image 8: data_batch_3's record 2
  write_bytes(tmp.path / "data_batch_3.bin", third);
  CHECK(load_cifar10(tmp.path, split::train, fixture_records, 8).size() == 8);
  check_mentions(message_of<io_error>([&] { load_cifar10(tmp.path, split::train, fixture_records, 9); }),
                 {"data_batch_3.bin", "record 2", "label 10"});
  // A file's size is checked even when none of its records is read.
  auto fifth = cifar10_records(4 * fixture_records, fixture_records);
  fifth.resize(fifth.size() - 1);
  write_bytes(tmp.path / "data_batch_5.bin", fifth);
  check_mentions(message_of<io_error>([&] { load_cifar10(tmp.path, split::train, fixture_records, 1); }),
                 {"data_batch_5.bin", "not a multiple of the record size"});
}

TEST_CASE("a file of more records than one read block is read whole and in order") {
  temp_dir tmp;
  make_cifar10_fixture(tmp.path);
  constexpr std::size_t n = 700;  // the reader reads about 1 MiB (341 records) at a time
  write_bytes(tmp.path / "test_batch.bin", cifar10_records(0, n));
  for (const std::size_t limit : {n, std::size_t{341}, std::size_t{342}, std::size_t{683}}) {
    CAPTURE(limit);
    const dataset d = load_cifar10(tmp.path, split::test, n, limit);
    REQUIRE(d.size() == limit);
    for (std::size_t i = 0; i < limit; ++i) {
      CHECK(d.labels[i] == static_cast<int>(i % 10));
      const auto px = image_bytes(i);
      CHECK(std::equal(px.begin(), px.end(), d.image(i)));
    }
  }
}

// ---- the real shared CIFAR-10 -------------------------------------------------------------

TEST_CASE("real CIFAR-10: 50000/10000 images, 5000/1000 per class, README statistics") {
  if (!fs::exists(real_cifar10_dir / "data_batch_1.bin")) {
    MESSAGE("skipped: ", real_cifar10_dir.string(), " not found");
    return;
  }
  const dataset train = load_cifar10(real_cifar10_dir, split::train);
  const dataset test = load_cifar10(real_cifar10_dir, split::test);
  REQUIRE(train.size() == 50000);
  REQUIRE(test.size() == 10000);
  CHECK(train.class_names == std::vector<std::string>{"airplane", "automobile", "bird", "cat", "deer",
                                                      "dog", "frog", "horse", "ship", "truck"});
  std::array<int, 10> train_count{}, test_count{};
  for (int l : train.labels) ++train_count[static_cast<std::size_t>(l)];
  for (int l : test.labels) ++test_count[static_cast<std::size_t>(l)];
  for (std::size_t c = 0; c < 10; ++c) {
    CHECK(train_count[c] == 5000);
    CHECK(test_count[c] == 1000);
  }
  // README.txt: train mean 125.269, 122.933, 113.863; std 62.534, 61.909, 66.460 (0-255).
  const channel_stats s = compute_channel_stats(train);
  const std::array<double, 3> mean{125.269, 122.933, 113.863}, sd{62.534, 61.909, 66.460};
  for (std::size_t c = 0; c < 3; ++c) {
    CHECK(std::abs(s.mean[c] - mean[c] / 255) < 1e-3);
    CHECK(std::abs(s.std[c] - sd[c] / 255) < 1e-3);
  }
  const channel_stats t = compute_channel_stats(test);
  const std::array<double, 3> tmean{125.987, 123.691, 114.847}, tsd{62.436, 61.761, 66.448};
  for (std::size_t c = 0; c < 3; ++c) {
    CHECK(std::abs(t.mean[c] - tmean[c] / 255) < 1e-3);
    CHECK(std::abs(t.std[c] - tsd[c] / 255) < 1e-3);
  }

  // One eval pass over the training set: normalised values have mean ~0 and std ~1.
  batch_loader loader(train, 500, s, false, 0);
  CHECK(loader.batches_per_epoch() == 100);
  ftensor images;
  std::vector<int> labels;
  std::array<double, 3> sum{}, sum_sq{};
  for (int b = 0; b < 100; ++b) {
    loader.next(images, labels);
    const float* p = images.data();
    for (std::int64_t i = 0; i < images.dim(0); ++i)
      for (std::size_t c = 0; c < 3; ++c)
        for (int k = 0; k < 1024; ++k, ++p) {
          sum[c] += *p;
          sum_sq[c] += static_cast<double>(*p) * *p;
        }
  }
  CHECK(loader.epoch() == 1);
  const double n = 50000.0 * 1024;
  for (std::size_t c = 0; c < 3; ++c) {
    CHECK(std::abs(sum[c] / n) < 1e-4);
    CHECK(std::abs(sum_sq[c] / n - 1.0) < 1e-3);
  }
}

// ---- statistics and normalisation -----------------------------------------------------------

TEST_CASE("compute_channel_stats: population mean and std on the [0, 1] scale") {
  dataset d;
  d.name = "two";
  d.classes = 1;
  d.labels = {0, 0};
  d.pixels.assign(2 * 3072, 0);
  // R: one image all 0, the other all 255 -> mean 0.5, population std 0.5.
  std::fill_n(d.pixels.begin() + 3072, 1024, std::uint8_t{255});
  // G: all 51 -> mean 0.2, std 0.
  std::fill_n(d.pixels.begin() + 1024, 1024, std::uint8_t{51});
  std::fill_n(d.pixels.begin() + 3072 + 1024, 1024, std::uint8_t{51});
  // B: half of each plane 0, half 102 -> mean 0.2, std 0.2.
  std::fill_n(d.pixels.begin() + 2048, 512, std::uint8_t{102});
  std::fill_n(d.pixels.begin() + 3072 + 2048, 512, std::uint8_t{102});
  const channel_stats s = compute_channel_stats(d);
  CHECK(s.mean[0] == doctest::Approx(0.5).epsilon(1e-7));
  CHECK(s.std[0] == doctest::Approx(0.5).epsilon(1e-7));
  CHECK(s.mean[1] == doctest::Approx(0.2).epsilon(1e-7));
  CHECK(s.std[1] == 0.f);
  CHECK(s.mean[2] == doctest::Approx(0.2).epsilon(1e-7));
  CHECK(s.std[2] == doctest::Approx(0.2).epsilon(1e-7));
  // A zero std cannot normalise.
  CHECK_THROWS_AS(make_normalization_table(s), contract_violation);
  CHECK_THROWS_AS(compute_channel_stats(dataset{}), contract_violation);
}

TEST_CASE("normalisation matches ToTensor + Normalize, padding becomes -mean/std") {
  const channel_stats s = some_stats();
  const auto t = make_normalization_table(s);
  for (std::size_t c = 0; c < 3; ++c) {
    CHECK(t[c][0] == -s.mean[c] / s.std[c]);
    for (int v = 0; v < 256; ++v)
      CHECK(t[c][static_cast<std::size_t>(v)] == (static_cast<float>(v) / 255.f - s.mean[c]) / s.std[c]);
  }
  const auto px = image_bytes(5);
  std::vector<float> out(3072);
  normalize_image(px.data(), t, out.data());
  CHECK(out[1024 + 33] == t[1][px[1024 + 33]]);
  CHECK(out[3071] == t[2][px[3071]]);
}

// ---- augmentation ---------------------------------------------------------------------------

TEST_CASE("crop and flip on a hand-made image reproduce the expected pixels") {
  const channel_stats s = some_stats();
  const auto t = make_normalization_table(s);
  // R plane: pixel (y, x) = 1 + x + 2 * y (distinct per row/column, never 0); G, B: 200.
  std::vector<std::uint8_t> img(3072, 200);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x) img[static_cast<std::size_t>(y * 32 + x)] = static_cast<std::uint8_t>(1 + x + 2 * y);
  auto R = [&](int y, int x) { return t[0][static_cast<std::size_t>(1 + x + 2 * y)]; };
  const float padR = -s.mean[0] / s.std[0], padG = -s.mean[1] / s.std[1];
  std::vector<float> out(3072);
  auto at = [&](int c, int y, int x) { return out[static_cast<std::size_t>(c * 1024 + y * 32 + x)]; };

  // Centre crop, no flip: the identity.
  augment_image(img.data(), {4, 4, false}, t, out.data());
  std::vector<float> plain(3072);
  normalize_image(img.data(), t, plain.data());
  CHECK(out == plain);

  // Top-left crop: 4 rows and 4 columns of padding, then the image shifted by 4.
  augment_image(img.data(), {0, 0, false}, t, out.data());
  CHECK(at(0, 0, 0) == padR);
  CHECK(at(0, 3, 31) == padR);
  CHECK(at(0, 10, 3) == padR);
  CHECK(at(1, 2, 2) == padG);
  CHECK(at(0, 4, 4) == R(0, 0));
  CHECK(at(0, 31, 31) == R(27, 27));
  CHECK(at(1, 4, 4) == t[1][200]);

  // Bottom-right crop: the image shifted up-left by 4, padding at the bottom and right.
  augment_image(img.data(), {8, 8, false}, t, out.data());
  CHECK(at(0, 0, 0) == R(4, 4));
  CHECK(at(0, 27, 27) == R(31, 31));
  CHECK(at(0, 28, 0) == padR);
  CHECK(at(0, 0, 28) == padR);

  // Flip after the crop: output (y, x) = padded (dy + y, dx + 31 - x).
  augment_image(img.data(), {4, 8, true}, t, out.data());
  CHECK(at(0, 0, 0) == padR);       // padded column 39 -> source 35
  CHECK(at(0, 0, 3) == padR);       // padded column 36 -> source 32
  CHECK(at(0, 0, 4) == R(0, 31));   // padded column 35 -> source 31
  CHECK(at(0, 5, 31) == R(5, 4));   // padded column 8 -> source 4
  augment_image(img.data(), {4, 4, true}, t, out.data());
  for (int x = 0; x < 32; ++x) CHECK(at(0, 7, x) == R(7, 31 - x));

  // Every one of the 162 choices agrees with a plain pad-crop-flip reference.
  const auto px = image_bytes(9);
  int mismatches = 0;
  for (int dy = 0; dy <= 8; ++dy)
    for (int dx = 0; dx <= 8; ++dx)
      for (bool flip : {false, true}) {
        augment_image(px.data(), {dy, dx, flip}, t, out.data());
        if (out != reference_augment(px.data(), {dy, dx, flip}, s)) ++mismatches;
      }
  CHECK(mismatches == 0);
  CHECK_THROWS_AS(augment_image(px.data(), {9, 0, false}, t, out.data()), contract_violation);
}

TEST_CASE("augmentation draws: offsets uniform in [0, 8], flip with probability 1/2") {
  rng r(77);
  constexpr int n = 36000;
  std::array<int, 9> dy{}, dx{};
  int flips = 0;
  for (int i = 0; i < n; ++i) {
    const crop_flip a = draw_crop_flip(r);
    REQUIRE(a.dy >= 0);
    REQUIRE(a.dy <= 8);
    REQUIRE(a.dx >= 0);
    REQUIRE(a.dx <= 8);
    ++dy[static_cast<std::size_t>(a.dy)];
    ++dx[static_cast<std::size_t>(a.dx)];
    flips += a.flip;
  }
  CHECK(std::abs(flips / double(n) - 0.5) < 0.01);  // ~3.8 sigma
  for (std::size_t k = 0; k < 9; ++k) {
    CHECK(std::abs(dy[k] - n / 9) < 250);  // sigma ~ 63
    CHECK(std::abs(dx[k] - n / 9) < 250);
  }
  // Exactly three draws per choice, in the order dy, dx, flip.
  rng a(5), b(5);
  const crop_flip c = draw_crop_flip(a);
  CHECK(c.dy == static_cast<int>(b.uniform_int(9)));
  CHECK(c.dx == static_cast<int>(b.uniform_int(9)));
  CHECK(c.flip == (b.uniform_int(2) == 1));
  CHECK(a == b);
}

// ---- batch loader ---------------------------------------------------------------------------

TEST_CASE("eval mode: dataset order, no augmentation, smaller last batch, wraps to a new epoch") {
  const dataset d = numbered_dataset(10);
  const auto t = make_normalization_table(some_stats());
  batch_loader l(d, 4, some_stats(), false, 1);
  CHECK(l.batches_per_epoch() == 3);
  CHECK(l.epoch() == 0);
  CHECK(l.position() == 0);
  for (int epoch = 0; epoch < 2; ++epoch) {
    const auto bs = take(l, 3);
    CHECK(bs[0].labels == std::vector<int>{0, 1, 2, 3});
    CHECK(bs[1].labels == std::vector<int>{4, 5, 6, 7});
    CHECK(bs[2].labels == std::vector<int>{8, 9});
    CHECK(bs[0].shape == tensor_shape{4, 3, 32, 32});
    CHECK(bs[2].shape == tensor_shape{2, 3, 32, 32});
    std::vector<float> expected(3072);
    normalize_image(d.image(9), t, expected.data());
    CHECK(std::equal(expected.begin(), expected.end(), bs[2].images.begin() + 3072));
    CHECK(l.epoch() == epoch + 1);
    CHECK(l.position() == 0);
  }
  batch_loader one(d, 1, some_stats(), false, 1);
  CHECK(one.batches_per_epoch() == 10);
  batch_loader all(d, 64, some_stats(), false, 1);
  CHECK(all.batches_per_epoch() == 1);
  CHECK(next_batch(all).labels.size() == 10);
  CHECK(all.epoch() == 1);
}

TEST_CASE("train mode: each epoch is a fresh permutation, last batch smaller, positions count") {
  const dataset d = numbered_dataset(10);
  batch_loader l(d, 4, some_stats(), true, 3);
  std::vector<std::vector<int>> epochs;
  for (int e = 0; e < 3; ++e) {
    std::vector<int> seen;
    for (int b = 0; b < 3; ++b) {
      CHECK(l.epoch() == e);
      CHECK(l.position() == b);
      const batch x = next_batch(l);
      CHECK(x.labels.size() == (b < 2 ? 4u : 2u));
      CHECK(x.shape[0] == static_cast<std::int64_t>(x.labels.size()));
      seen.insert(seen.end(), x.labels.begin(), x.labels.end());
    }
    std::vector<int> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    epochs.push_back(seen);
  }
  CHECK(epochs[0] != epochs[1]);
  CHECK(epochs[1] != epochs[2]);
}

TEST_CASE("train mode follows the documented streams: Fisher-Yates order, then crop_flip per image") {
  const dataset d = numbered_dataset(13);
  const channel_stats s = some_stats();
  const auto t = make_normalization_table(s);
  const std::uint64_t seed = 2024;
  batch_loader l(d, 5, s, true, seed);
  rng order = rng::derive(seed, batch_loader::order_stream);
  rng aug = rng::derive(seed, batch_loader::augment_stream);
  std::vector<float> expected(3072);
  for (int e = 0; e < 2; ++e) {
    std::vector<std::size_t> perm(13);
    for (std::size_t i = 0; i < 13; ++i) perm[i] = i;
    for (std::size_t i = 12; i > 0; --i) std::swap(perm[i], perm[static_cast<std::size_t>(order.uniform_int(i + 1))]);
    CHECK(l.epoch_order() == perm);
    for (std::size_t first = 0; first < 13; first += 5) {
      const batch b = next_batch(l);
      for (std::size_t k = 0; k < b.labels.size(); ++k) {
        CHECK(b.labels[k] == static_cast<int>(perm[first + k]));
        augment_image(d.image(perm[first + k]), draw_crop_flip(aug), t, expected.data());
        CHECK(std::memcmp(expected.data(), b.images.data() + k * 3072, 3072 * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("loader output is deterministic for a seed and independent of the thread count") {
  const dataset d = numbered_dataset(50);
  batch_loader a(d, 16, some_stats(), true, 9);
  batch_loader b(d, 16, some_stats(), true, 9);
  batch_loader other(d, 16, some_stats(), true, 10);
  const auto ra = take(a, 8), rb = take(b, 8), ro = take(other, 8);
  CHECK(ra == rb);
  CHECK(ra != ro);
  for (int threads : {1, 2, 3}) {
    cpu_context ctx(threads);
    batch_loader p(d, 16, some_stats(), true, 9, &ctx);
    CHECK(take(p, 8) == ra);
    batch_loader e1(d, 16, some_stats(), false, 9, &ctx), e0(d, 16, some_stats(), false, 9);
    CHECK(take(e1, 5) == take(e0, 5));
  }
}

TEST_CASE("a restored loader yields exactly the batches of one that never stopped") {
  const dataset d = numbered_dataset(37);  // batch 8: 5 batches per epoch, the last of 5
  for (bool train : {true, false}) {
    INFO("train mode: ", train);
    batch_loader reference(d, 8, some_stats(), train, 42);
    const auto expected = take(reference, 16);
    // Mid-epoch, just before the epoch's last batch (so the restored loader crosses the
    // boundary), exactly at a boundary, and in later epochs.
    for (int k : {0, 2, 4, 5, 7, 9, 10, 13}) {
      INFO("saved after ", k, " batches");
      batch_loader first(d, 8, some_stats(), train, 42);
      take(first, k);
      CHECK(first.epoch() == k / 5);
      CHECK(first.position() == k % 5);
      const std::string state = first.save_state();
      batch_loader restored(d, 8, some_stats(), train, 42);
      take(restored, 3);  // a loader that had moved on is overwritten too
      restored.load_state(state);
      CHECK(restored.save_state() == state);
      CHECK(restored.epoch() == first.epoch());
      CHECK(restored.position() == first.position());
      CHECK(restored.epoch_order() == first.epoch_order());
      for (int i = k; i < 16; ++i) {
        INFO("batch ", i);
        CHECK(next_batch(restored) == expected[static_cast<std::size_t>(i)]);
      }
      // The loader that saved goes on identically as well.
      CHECK(next_batch(first) == expected[static_cast<std::size_t>(k)]);
    }
  }
}

TEST_CASE("malformed or foreign loader state is rejected with io_error, loader unchanged") {
  const dataset d = numbered_dataset(37);
  batch_loader l(d, 8, some_stats(), true, 42);
  take(l, 3);
  const std::string good = l.save_state();
  auto replace = [&](const std::string& key, const std::string& value) {
    const auto b = good.find(key + "=");
    REQUIRE(b != std::string::npos);
    const auto e = good.find(';', b);
    return good.substr(0, b) + key + "=" + value + (e == std::string::npos ? "" : good.substr(e));
  };
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "expected 9 fields"},
      {"garbage", "not key=value"},
      {good + ";", "trailing"},
      {good + ";epoch=1", "repeated"},
      {good + ";extra=1", "expected 9 fields"},
      {good.substr(0, good.find(";augment_rng")), "expected 9 fields"},
      {replace("format", "netsplit.batch_loader.v0"), "unknown format"},
      {replace("mode", "eval"), "mode"},
      {replace("mode", "sideways"), "train or eval"},
      {replace("size", "36"), "dataset size"},
      {replace("batch_size", "16"), "batch size"},
      {replace("seed", "43"), "seed"},
      {replace("epoch", "-1"), "epoch"},
      {replace("epoch", "1x"), "epoch"},
      {replace("position", "5"), "position 5"},
      {replace("position", ""), "position"},
      {replace("order_rng", "0 0 0 0"), "bad rng state"},
      {replace("augment_rng", "1 2 3"), "bad rng state"},
      {replace("augment_rng", "1 2 3 zz"), "bad rng state"},
  };
  for (const auto& entry : bad) {  // not a structured binding: clang 14 cannot capture those
    const std::string& text = entry.first;
    INFO("state: ", text);
    const std::string msg = message_of<io_error>([&] { l.load_state(text); });
    check_mentions(msg, {entry.second});
    CHECK(l.save_state() == good);
  }
  batch_loader fresh(d, 8, some_stats(), true, 42);
  take(fresh, 3);
  CHECK(next_batch(l) == next_batch(fresh));
  CHECK_THROWS_AS(batch_loader(d, 0, some_stats(), true, 1), contract_violation);
  const dataset empty;
  CHECK_THROWS_AS(batch_loader(empty, 4, some_stats(), true, 1), contract_violation);
  static_assert(!std::is_constructible_v<batch_loader, dataset&&, int, channel_stats, bool, std::uint64_t>);
}

TEST_CASE("a train batch of 128 is augmented and normalised in well under 5 ms") {
  const dataset d = numbered_dataset(1024);
  batch_loader l(d, 128, some_stats(), true, 1);
  ftensor images;
  std::vector<int> labels;
  l.next(images, labels);  // warm-up: allocation
  double best_ms = 1e9, total_ms = 0;
  constexpr int runs = 7;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    l.next(images, labels);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    best_ms = std::min(best_ms, ms);
    total_ms += ms;
  }
  MESSAGE("batch_loader::next, batch 128, train mode, 1 thread: best ", best_ms, " ms, mean ",
          total_ms / runs, " ms");
#ifdef NDEBUG
  CHECK(best_ms < 5.0);
#endif
}
