// tests/fuzz/fuzz_common.hpp — what every netsplit fuzz target shares: the rule for clean
// rejections, a byte reader that splits one fuzz input into parts, and a scratch folder.
// A target may reject its input only by throwing netsplit::error (or cifar_cli::cli_error
// for the command line); any other exception, a crash, a leak, a hang or a broken
// invariant on accepted input is a finding and aborts, so libFuzzer keeps the input.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <typeinfo>

#include <unistd.h>

#include "netsplit/core/errors.hpp"

namespace netsplit_fuzz {

/// Aborts with a message: libFuzzer reports it as a crash and saves the input.
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "netsplit fuzz finding: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

#define NETSPLIT_FUZZ_CHECK(cond)                                                        \
  do {                                                                                   \
    if (!(cond)) ::netsplit_fuzz::finding("invariant `" #cond "` failed at " __FILE__); \
  } while (0)

/// NETSPLIT_FUZZ_VERBOSE=1 in the environment prints each verdict (to check seed corpora).
inline bool verbose() {
  static const bool v = std::getenv("NETSPLIT_FUZZ_VERBOSE") != nullptr;
  return v;
}

/// Runs `body`; netsplit::error is a clean rejection, anything else thrown is a finding.
template <class Body>
void run_accepting_netsplit_errors(Body&& body) {
  try {
    body();
    if (verbose()) std::fprintf(stderr, "accepted\n");
  } catch (const netsplit::error& e) {
    // a clean rejection: the input was bad and the library said so
    if (verbose()) std::fprintf(stderr, "rejected: %s\n", e.what());
  } catch (const std::exception& e) {
    finding(std::string("unexpected exception ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    finding("unexpected non-std exception");
  }
}

/// Reads a fuzz input front to back; reads past the end give zeros / empty parts.
class byte_reader {
 public:
  byte_reader(const std::uint8_t* data, std::size_t size) : p_(data), left_(size) {}
  std::uint8_t u8() {
    if (left_ == 0) return 0;
    --left_;
    return *p_++;
  }
  std::uint16_t u16() {
    const std::uint16_t lo = u8();
    return static_cast<std::uint16_t>(lo | (std::uint16_t{u8()} << 8));
  }
  /// Up to n bytes (fewer when the input ends).
  std::string_view take(std::size_t n) {
    if (n > left_) n = left_;
    std::string_view out(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    left_ -= n;
    return out;
  }
  std::string_view rest() { return take(left_); }

 private:
  const std::uint8_t* p_;
  std::size_t left_;
};

/// One scratch folder per process (under /dev/shm when possible: no disk traffic), emptied
/// between inputs and removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path base = fs::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0 ? fs::path("/dev/shm")
                                                                                        : fs::temp_directory_path();
    std::string tmpl = (base / "netsplit_fuzz_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) finding("cannot create a scratch folder under " + base.string());
    static std::filesystem::path made = tmpl;
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(made, ignored);
    });
    return made;
  }();
  return dir;
}

/// Empties the scratch folder (files and sub-folders a previous input left).
inline void clear_scratch() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(scratch_dir()))
    std::filesystem::remove_all(e.path(), ec);
}

inline void write_file(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) finding("cannot write fuzz fixture " + p.string());
}

}  // namespace netsplit_fuzz
