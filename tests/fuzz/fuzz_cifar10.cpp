// Fuzz target: the CIFAR-10 binary reader (load_cifar10) on a folder built from the input.
// Input layout: flags (1 byte), meta length (u16 LE), batches.meta.txt bytes, then the data
// bytes. flags: bit 0 test split; bits 1-2 records per file - 1; bit 3 no batches.meta.txt;
// bit 4 the last data file is missing; bit 5 the first data file is a folder; bit 6 (train)
// the data is cut into five parts, one per batch file, instead of five copies; bit 7 asks
// for 0 records per file (a contract violation).
// Accepted data must be exactly what the files hold: sizes, labels and pixels are checked.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "netsplit/data/cifar.hpp"

using namespace netsplit_fuzz;
namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  byte_reader in(data, size);
  const std::uint8_t flags = in.u8();
  const bool test = flags & 1;
  const std::size_t records = (flags & 0x80) ? 0 : 1 + ((flags >> 1) & 3);
  const std::string_view meta = in.take(in.u16());
  const std::string_view body = in.rest();

  clear_scratch();
  const fs::path dir = scratch_dir();
  if (!(flags & 8)) write_file(dir / "batches.meta.txt", meta);
  std::vector<std::string> names;
  if (test) names.push_back("test_batch.bin");
  else
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  std::vector<std::string_view> contents;
  for (std::size_t f = 0; f < names.size(); ++f) {
    std::string_view part = body;
    if (!test && (flags & 0x40)) {
      const std::size_t chunk = body.size() / 5;
      part = body.substr(f * chunk, f == 4 ? std::string_view::npos : chunk);
    }
    contents.push_back(part);
    if ((flags & 0x10) && f + 1 == names.size()) continue;
    if ((flags & 0x20) && f == 0) {
      fs::create_directory(dir / names[f]);
      continue;
    }
    write_file(dir / names[f], part);
  }

  run_accepting_netsplit_errors([&] {
    const auto d = netsplit::load_cifar10(dir, test ? netsplit::split::test : netsplit::split::train, records);
    // Accepted: everything the reader returns must be what the files hold.
    using g = netsplit::cifar_geometry;
    NETSPLIT_FUZZ_CHECK(d.classes == 10 && d.class_names.size() == 10);
    NETSPLIT_FUZZ_CHECK(d.size() == records * names.size());
    NETSPLIT_FUZZ_CHECK(d.pixels.size() == d.size() * g::image_bytes);
    NETSPLIT_FUZZ_CHECK(d.coarse_labels.empty());
    for (std::size_t f = 0; f < names.size(); ++f) {
      NETSPLIT_FUZZ_CHECK(contents[f].size() == records * g::cifar10_record_bytes);
      for (std::size_t r = 0; r < records; ++r) {
        const std::size_t i = f * records + r;
        const char* rec = contents[f].data() + r * g::cifar10_record_bytes;
        NETSPLIT_FUZZ_CHECK(d.labels[i] == static_cast<std::uint8_t>(rec[0]) && d.labels[i] < 10);
        NETSPLIT_FUZZ_CHECK(std::memcmp(d.image(i), rec + 1, g::image_bytes) == 0);
      }
    }
  });
  return 0;
}
