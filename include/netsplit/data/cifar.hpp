// netsplit/data/cifar.hpp — readers for the official CIFAR-10 and CIFAR-100 binary files.
// Provides `dataset` (raw 8-bit images + labels + class names), load_cifar10/100 and subset.
// Anything that is not exactly the official layout is rejected with an io_error naming the
// file and the problem; a reader never returns a silently short dataset.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "netsplit/core/errors.hpp"

namespace netsplit {

enum class cifar_kind { cifar10, cifar100 };
enum class split { train, test };

/// Geometry shared by both CIFAR sets: 3 planes (R, G, B) of 32x32 bytes, row-major.
struct cifar_geometry {
  static constexpr int channels = 3;
  static constexpr int height = 32;
  static constexpr int width = 32;
  static constexpr int plane_bytes = height * width;           // 1024
  static constexpr int image_bytes = channels * plane_bytes;   // 3072
  static constexpr std::size_t cifar10_record_bytes = 1 + image_bytes;   // label + pixels
  static constexpr std::size_t cifar100_record_bytes = 2 + image_bytes;  // coarse + fine + pixels
  static constexpr std::size_t cifar10_records_per_file = 10000;
  static constexpr std::size_t cifar100_train_records = 50000;
  static constexpr std::size_t cifar100_test_records = 10000;
};

/// An image classification set held as raw bytes, in file order.
/// Image i occupies pixels[i*3072, (i+1)*3072): the R plane, then G, then B, each 32x32
/// row-major with values 0..255. labels[i] is in [0, classes). For CIFAR-100, labels are
/// the fine labels and coarse_labels[i] is in [0, coarse_classes); for CIFAR-10
/// coarse_labels is empty and coarse_classes is 0.
struct dataset {
  std::string name;  // e.g. "cifar100-train"; subsets append "[first:end)"
  int classes = 0;
  int coarse_classes = 0;
  std::vector<std::uint8_t> pixels;
  std::vector<int> labels;
  std::vector<int> coarse_labels;
  std::vector<std::string> class_names;         // classes entries, label order
  std::vector<std::string> coarse_class_names;  // coarse_classes entries (CIFAR-100 only)

  std::size_t size() const { return labels.size(); }
  bool empty() const { return labels.empty(); }
  /// The 3072 bytes of image i.
  const std::uint8_t* image(std::size_t i) const {
    NETSPLIT_EXPECT(i < size(), "image index ", i, " out of range for dataset '", name,
                    "' of ", size(), " images");
    return pixels.data() + i * cifar_geometry::image_bytes;
  }
};

namespace detail {

inline std::string quoted(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

/// The size of a regular file; io_error if it is missing, not a regular file or unreadable.
inline std::uintmax_t checked_file_size(const std::filesystem::path& file) {
  std::error_code ec;
  const auto st = std::filesystem::status(file, ec);
  if (!std::filesystem::exists(st))
    raise<io_error>("netsplit: cannot read ", quoted(file), ": file does not exist");
  if (!std::filesystem::is_regular_file(st))
    raise<io_error>("netsplit: cannot read ", quoted(file), ": not a regular file");
  const auto size = std::filesystem::file_size(file, ec);
  if (ec) raise<io_error>("netsplit: cannot read ", quoted(file), ": ", ec.message());
  return size;
}

/// Reads a whole regular file; io_error if it is missing, not a regular file or unreadable.
inline std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& file) {
  const auto size = checked_file_size(file);
  std::ifstream in(file, std::ios::binary);
  if (!in) raise<io_error>("netsplit: cannot open ", quoted(file), " for reading");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  if (size > 0) {
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
    if (static_cast<std::uintmax_t>(in.gcount()) != size)
      raise<io_error>("netsplit: cannot read ", quoted(file), ": read ", in.gcount(), " of ",
                      size, " bytes");
  }
  return bytes;
}

/// Splits the bytes of a file into records after checking the size and the record count.
inline std::size_t checked_record_count(const std::filesystem::path& file, std::size_t bytes,
                                        std::size_t record_bytes, std::size_t expected) {
  if (bytes % record_bytes != 0)
    raise<io_error>("netsplit: ", quoted(file), ": file size ", bytes,
                    " bytes is not a multiple of the record size ", record_bytes,
                    " bytes (not the official CIFAR binary layout, or truncated)");
  const std::size_t found = bytes / record_bytes;
  if (found != expected)
    raise<io_error>("netsplit: ", quoted(file), ": wrong record count: found ", found,
                    " records, expected ", expected);
  return found;
}

/// Calls take(record, index) for records [0, count) of `file`, a file of `file_bytes` bytes
/// (checked_file_size) whose records are `record_bytes` long, read in blocks of about 1 MiB:
/// no copy of the whole file is made, and reading stops after `count` records.
template <class Take>
void for_each_record(const std::filesystem::path& file, std::uintmax_t file_bytes,
                     std::size_t record_bytes, std::size_t count, Take&& take) {
  if (count == 0) return;
  std::ifstream in(file, std::ios::binary);
  if (!in) raise<io_error>("netsplit: cannot open ", quoted(file), " for reading");
  const std::size_t block = std::max<std::size_t>(1, (std::size_t{1} << 20) / record_bytes);
  std::vector<std::uint8_t> buffer(std::min(block, count) * record_bytes);
  for (std::size_t first = 0; first < count; first += block) {
    const std::size_t n = std::min(block, count - first);
    const auto want = static_cast<std::streamsize>(n * record_bytes);
    in.read(reinterpret_cast<char*>(buffer.data()), want);
    if (in.gcount() != want)
      raise<io_error>("netsplit: cannot read ", quoted(file), ": read ",
                      first * record_bytes + static_cast<std::size_t>(in.gcount()), " of ", file_bytes, " bytes");
    for (std::size_t r = 0; r < n; ++r) take(buffer.data() + r * record_bytes, first + r);
  }
}

/// The name of images [first, end) of set `name` ("cifar10-train[0:256)"): subset()'s, and a
/// limited load's when it leaves images out, so the two name the same images alike.
inline std::string range_name(const std::string& name, std::size_t first, std::size_t end) {
  return name + "[" + std::to_string(first) + ":" + std::to_string(end) + ")";
}

inline int checked_label(const std::filesystem::path& file, std::size_t record,
                         const char* what, std::uint8_t value, int classes) {
  if (value >= classes)
    raise<io_error>("netsplit: ", quoted(file), ": record ", record, ": ", what, " ",
                    static_cast<int>(value), " out of range [0, ", classes, ")");
  return value;
}

inline void check_expected(std::size_t expected, const char* what) {
  NETSPLIT_EXPECT(expected > 0, what, " must be positive, got ", expected);
}

}  // namespace detail

/// Reads a class-name list: one name per line, label order. Surrounding whitespace and
/// '\r' are stripped and blank lines skipped (the official files end with blank lines);
/// exactly `expected` names must remain, otherwise io_error.
inline std::vector<std::string> read_class_names(const std::filesystem::path& file,
                                                 std::size_t expected) {
  const auto bytes = detail::read_file_bytes(file);
  std::vector<std::string> names;
  std::string line;
  auto flush = [&] {
    const auto b = line.find_first_not_of(" \t\r\v\f");
    if (b != std::string::npos) {
      const auto e = line.find_last_not_of(" \t\r\v\f");
      names.push_back(line.substr(b, e - b + 1));
    }
    line.clear();
  };
  for (const std::uint8_t c : bytes) {
    if (c == '\n')
      flush();
    else
      line.push_back(static_cast<char>(c));
  }
  flush();
  if (names.size() != expected)
    detail::raise<io_error>("netsplit: ", detail::quoted(file), ": found ", names.size(),
                          " class names, expected ", expected, " (one non-empty line each)");
  return names;
}

/// Loads CIFAR-10 from `dir` (the folder holding data_batch_1.bin .. data_batch_5.bin,
/// test_batch.bin and batches.meta.txt). Each data file must hold exactly
/// `records_per_file` records (official: 10000); pass a smaller count only for test
/// fixtures. Train is the 5 batches concatenated in order. With `max_images` below the
/// set's size only its first `max_images` images are read (every file's size is still
/// checked), named as subset(set, 0, max_images) names them.
inline dataset load_cifar10(const std::filesystem::path& dir, split s,
                            std::size_t records_per_file = cifar_geometry::cifar10_records_per_file,
                            std::size_t max_images = std::numeric_limits<std::size_t>::max()) {
  detail::check_expected(records_per_file, "records_per_file");
  using g = cifar_geometry;
  dataset d;
  d.classes = 10;
  d.class_names = read_class_names(dir / "batches.meta.txt", 10);
  std::vector<std::filesystem::path> files;
  if (s == split::train) {
    for (int i = 1; i <= 5; ++i) files.push_back(dir / ("data_batch_" + std::to_string(i) + ".bin"));
  } else {
    files.push_back(dir / "test_batch.bin");
  }
  std::vector<std::uintmax_t> sizes;
  for (const auto& file : files) {
    sizes.push_back(detail::checked_file_size(file));
    detail::checked_record_count(file, static_cast<std::size_t>(sizes.back()), g::cifar10_record_bytes, records_per_file);
  }
  const std::size_t total = files.size() * records_per_file, kept = std::min(total, max_images);
  d.name = s == split::train ? "cifar10-train" : "cifar10-test";
  if (kept < total) d.name = detail::range_name(d.name, 0, kept);
  d.pixels.reserve(kept * g::image_bytes);
  d.labels.reserve(kept);
  for (std::size_t f = 0; f < files.size() && d.labels.size() < kept; ++f) {
    const std::size_t n = std::min(records_per_file, kept - d.labels.size());
    detail::for_each_record(files[f], sizes[f], g::cifar10_record_bytes, n, [&](const std::uint8_t* rec, std::size_t r) {
      d.labels.push_back(detail::checked_label(files[f], r, "label", rec[0], d.classes));
      d.pixels.insert(d.pixels.end(), rec + 1, rec + 1 + g::image_bytes);
    });
  }
  return d;
}

/// Loads CIFAR-100 from `dir` (the folder holding train.bin, test.bin,
/// fine_label_names.txt and coarse_label_names.txt). The file must hold exactly
/// `expected_records` records; by default the official count (50000 train, 10000 test).
/// Pass a count only for test fixtures. `max_images` as for load_cifar10.
inline dataset load_cifar100(const std::filesystem::path& dir, split s,
                             std::optional<std::size_t> expected_records = std::nullopt,
                             std::size_t max_images = std::numeric_limits<std::size_t>::max()) {
  using g = cifar_geometry;
  const std::size_t expected = expected_records.value_or(
      s == split::train ? g::cifar100_train_records : g::cifar100_test_records);
  detail::check_expected(expected, "expected_records");
  dataset d;
  d.classes = 100;
  d.coarse_classes = 20;
  d.class_names = read_class_names(dir / "fine_label_names.txt", 100);
  d.coarse_class_names = read_class_names(dir / "coarse_label_names.txt", 20);
  const auto file = dir / (s == split::train ? "train.bin" : "test.bin");
  const auto size = detail::checked_file_size(file);
  const std::size_t n = std::min(
      detail::checked_record_count(file, static_cast<std::size_t>(size), g::cifar100_record_bytes, expected), max_images);
  d.name = s == split::train ? "cifar100-train" : "cifar100-test";
  if (n < expected) d.name = detail::range_name(d.name, 0, n);
  d.pixels.reserve(n * g::image_bytes);
  d.labels.reserve(n);
  d.coarse_labels.reserve(n);
  detail::for_each_record(file, size, g::cifar100_record_bytes, n, [&](const std::uint8_t* rec, std::size_t r) {
    d.coarse_labels.push_back(detail::checked_label(file, r, "coarse label", rec[0], d.coarse_classes));
    d.labels.push_back(detail::checked_label(file, r, "fine label", rec[1], d.classes));
    d.pixels.insert(d.pixels.end(), rec + 2, rec + 2 + g::image_bytes);
  });
  return d;
}

/// Either reader, chosen at run time (for command-line programs); `max_images` as for
/// load_cifar10.
inline dataset load_cifar(cifar_kind kind, const std::filesystem::path& dir, split s,
                          std::optional<std::size_t> expected_records = std::nullopt,
                          std::size_t max_images = std::numeric_limits<std::size_t>::max()) {
  if (kind == cifar_kind::cifar10)
    return load_cifar10(dir, s, expected_records.value_or(cifar_geometry::cifar10_records_per_file), max_images);
  return load_cifar100(dir, s, expected_records, max_images);
}

/// Images [first, first + count) of `d` as a new dataset (class names kept). For tests and
/// quick runs; contract_violation if the range does not fit.
inline dataset subset(const dataset& d, std::size_t first, std::size_t count) {
  NETSPLIT_EXPECT(first <= d.size() && count <= d.size() - first, "subset [", first, ", ",
                  first, " + ", count, ") out of range for dataset '", d.name, "' of ",
                  d.size(), " images");
  using g = cifar_geometry;
  dataset out;
  out.name = detail::range_name(d.name, first, first + count);
  out.classes = d.classes;
  out.coarse_classes = d.coarse_classes;
  out.class_names = d.class_names;
  out.coarse_class_names = d.coarse_class_names;
  const auto b = static_cast<std::ptrdiff_t>(first), e = static_cast<std::ptrdiff_t>(first + count);
  out.labels.assign(d.labels.begin() + b, d.labels.begin() + e);
  if (!d.coarse_labels.empty()) out.coarse_labels.assign(d.coarse_labels.begin() + b, d.coarse_labels.begin() + e);
  out.pixels.assign(d.pixels.begin() + b * g::image_bytes, d.pixels.begin() + e * g::image_bytes);
  return out;
}

}  // namespace netsplit
