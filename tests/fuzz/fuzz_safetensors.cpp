// Fuzz target: the checkpoint reader, io::parse (read_file and trainer::load go through it).
// The input is the file's bytes. A rejection must be an io_error (a netsplit::error). An
// accepted file must survive a round trip: serialize() takes it without complaint, the
// result parses with the checksum required, gives the same metadata and tensors, and
// serializes to the same bytes again; every tensor reads back as its dtype.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_common.hpp"
#include "netsplit/io/safetensors.hpp"

using namespace netsplit_fuzz;
namespace io = netsplit::io;

namespace {
void read_all(const io::safetensors_file& f) {
  for (const auto& [name, r] : f.tensors) {
    std::size_t n = 0;
    switch (r.type) {
      case io::dtype::f32: n = r.as<float>().size(); break;
      case io::dtype::f64: n = r.as<double>().size(); break;
      case io::dtype::i32: n = r.as<std::int32_t>().size(); break;
      case io::dtype::i64: n = r.as<std::int64_t>().size(); break;
      case io::dtype::u8: n = r.as<std::uint8_t>().size(); break;
    }
    NETSPLIT_FUZZ_CHECK(static_cast<std::int64_t>(n) == r.numel());
    NETSPLIT_FUZZ_CHECK(r.bytes.size() == n * io::dtype_size(r.type));
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  bool accepted = false;
  io::safetensors_file file;
  run_accepting_netsplit_errors([&] {
    file = io::parse(bytes, "fuzz.safetensors");
    accepted = true;
  });
  bool strict_accepted = false;
  run_accepting_netsplit_errors([&] {
    const auto strict = io::parse(bytes, "fuzz.safetensors", io::read_options{.require_checksum = true});
    strict_accepted = true;
    NETSPLIT_FUZZ_CHECK(accepted && strict.metadata == file.metadata && strict.tensors == file.tensors);
  });
  if (!accepted) return 0;
  // Anything accepted is fully usable; errors from here on are findings, not rejections.
  try {
    read_all(file);
    const auto again = io::serialize(file);
    const auto back = io::parse(again, "roundtrip.safetensors", io::read_options{.require_checksum = true});
    NETSPLIT_FUZZ_CHECK(back.metadata == file.metadata);
    NETSPLIT_FUZZ_CHECK(back.tensors == file.tensors);
    NETSPLIT_FUZZ_CHECK(io::serialize(back) == again);
  } catch (const std::exception& e) {
    finding(std::string("an accepted file failed its round trip: ") + e.what());
  }
  (void)strict_accepted;
  return 0;
}
