// netsplit/core/random.hpp — a seeded, serializable random number generator.
// xoshiro256** seeded through splitmix64. Distributions are implemented here (not
// <random>'s, whose algorithms differ between standard libraries and which cache hidden
// state), so a saved state resumes the exact same stream on every platform.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>

#include "netsplit/core/errors.hpp"

namespace netsplit {

class rng {
 public:
  using state_type = std::array<std::uint64_t, 4>;

  explicit rng(std::uint64_t seed = 0) { reseed(seed); }

  void reseed(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (auto& s : state_) s = splitmix64(x);
  }

  /// An independent stream derived from this generator's seed material and a tag,
  /// without advancing this generator (used for per-purpose streams: data order,
  /// augmentation, initialisation, splits).
  static rng derive(std::uint64_t seed, std::uint64_t stream) {
    std::uint64_t x = seed ^ (0x9E3779B97F4A7C15ull * (stream + 1));
    return rng(splitmix64(x));
  }

  std::uint64_t next_u64() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// Uniform integer in [0, n) without modulo bias (Lemire's method).
  std::uint64_t uniform_int(std::uint64_t n) {
    NETSPLIT_EXPECT(n > 0, "uniform_int range must be positive, got ", n);
    for (;;) {
      const unsigned __int128 m = static_cast<unsigned __int128>(next_u64()) * n;
      const auto low = static_cast<std::uint64_t>(m);
      if (low >= n || low >= (-n) % n) return static_cast<std::uint64_t>(m >> 64);
    }
  }

  /// Uniform double in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  /// Standard normal by Box–Muller; consumes exactly two draws and caches nothing.
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  const state_type& state() const { return state_; }
  void set_state(const state_type& s) {
    NETSPLIT_EXPECT(s[0] | s[1] | s[2] | s[3], "rng state must not be all zero");
    state_ = s;
  }

  /// Text form of the state: four hexadecimal words separated by spaces.
  std::string serialize() const {
    std::ostringstream os;
    os << std::hex;
    for (std::size_t i = 0; i < 4; ++i) os << (i ? " " : "") << state_[i];
    return os.str();
  }
  static rng deserialize(const std::string& text) {
    std::istringstream is(text);
    state_type s{};
    for (auto& w : s) {
      if (!(is >> std::hex >> w)) raise_bad(text);
    }
    std::string rest;
    if (is >> rest) raise_bad(text);
    rng r;
    if (!(s[0] | s[1] | s[2] | s[3])) raise_bad(text);
    r.state_ = s;
    return r;
  }

  bool operator==(const rng&) const = default;

 private:
  [[noreturn]] static void raise_bad(const std::string& text) {
    detail::raise<io_error>("netsplit: bad rng state '", text,
                            "', expected four non-zero-in-total hexadecimal words");
  }
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  state_type state_{};
};

}  // namespace netsplit
