// Fuzz target: the CIFAR-100 binary reader (load_cifar100) on a folder built from the input.
// Input layout: flags (1 byte), fine-names length (u16 LE), coarse-names length (u16 LE),
// fine_label_names.txt bytes, coarse_label_names.txt bytes, then train.bin / test.bin bytes.
// flags: bit 0 test split; bits 1-2 expected records - 1; bit 3 no fine names; bit 4 no
// coarse names; bit 5 no data file; bit 6 the data file is a folder; bit 7 use the official
// record count (50000 / 10000, so small inputs must be rejected).
// Accepted data must be exactly what the file holds: sizes, both labels and pixels.
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "fuzz_common.hpp"
#include "netsplit/data/cifar.hpp"

using namespace netsplit_fuzz;
namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  byte_reader in(data, size);
  const std::uint8_t flags = in.u8();
  const bool test = flags & 1;
  const std::optional<std::size_t> expected =
      (flags & 0x80) ? std::nullopt : std::optional<std::size_t>(1 + ((flags >> 1) & 3));
  const std::size_t fine_len = in.u16(), coarse_len = in.u16();
  const std::string_view fine = in.take(fine_len), coarse = in.take(coarse_len), body = in.rest();

  clear_scratch();
  const fs::path dir = scratch_dir();
  if (!(flags & 8)) write_file(dir / "fine_label_names.txt", fine);
  if (!(flags & 0x10)) write_file(dir / "coarse_label_names.txt", coarse);
  const fs::path file = dir / (test ? "test.bin" : "train.bin");
  if (flags & 0x40) fs::create_directory(file);
  else if (!(flags & 0x20)) write_file(file, body);

  run_accepting_netsplit_errors([&] {
    const auto d = netsplit::load_cifar100(dir, test ? netsplit::split::test : netsplit::split::train, expected);
    using g = netsplit::cifar_geometry;
    const std::size_t n = d.size();
    NETSPLIT_FUZZ_CHECK(d.classes == 100 && d.coarse_classes == 20);
    NETSPLIT_FUZZ_CHECK(d.class_names.size() == 100 && d.coarse_class_names.size() == 20);
    NETSPLIT_FUZZ_CHECK(expected && n == *expected);
    NETSPLIT_FUZZ_CHECK(body.size() == n * g::cifar100_record_bytes);
    NETSPLIT_FUZZ_CHECK(d.pixels.size() == n * g::image_bytes && d.coarse_labels.size() == n);
    for (std::size_t r = 0; r < n; ++r) {
      const char* rec = body.data() + r * g::cifar100_record_bytes;
      NETSPLIT_FUZZ_CHECK(d.coarse_labels[r] == static_cast<std::uint8_t>(rec[0]) && d.coarse_labels[r] < 20);
      NETSPLIT_FUZZ_CHECK(d.labels[r] == static_cast<std::uint8_t>(rec[1]) && d.labels[r] < 100);
      NETSPLIT_FUZZ_CHECK(std::memcmp(d.image(r), rec + 2, g::image_bytes) == 0);
    }
  });
  return 0;
}
