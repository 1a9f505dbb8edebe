// netsplit/backend/cpu/caches.hpp — the data-cache sizes of the machine, as it reports them.
// The CPU backend sizes its working sets from these (Winograd's chunks: winograd.hpp), not
// from constants tuned on one CPU. Linux reports them in
// /sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}; where that is missing, glibc's
// sysconf; where both are missing, common sizes (32 KiB, 1 MiB, 8 MiB).
#pragma once

#include <unistd.h>

#include <cstddef>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>

namespace netsplit {

/// Bytes of one core's L1 data cache and L2, and of the L3 (shared by cores), and where the
/// figures came from ("sysfs", "sysconf", "default", or "set" when a caller gave them).
struct cpu_caches {
  std::size_t l1d = 0, l2 = 0, l3 = 0;
  const char* source = "default";
};

namespace detail {

/// A size as sysfs writes it ("32K", "1024K", "32M", "512"), or none for anything else.
inline std::optional<std::size_t> parse_cache_size(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  if (s.empty()) return std::nullopt;
  std::size_t unit = 1;
  if (s.back() == 'K' || s.back() == 'k') unit = std::size_t{1} << 10;
  else if (s.back() == 'M' || s.back() == 'm') unit = std::size_t{1} << 20;
  else if (s.back() == 'G' || s.back() == 'g') unit = std::size_t{1} << 30;
  if (unit != 1) s.remove_suffix(1);
  if (s.empty() || s.size() > 12) return std::nullopt;
  std::size_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::size_t>(c - '0');
  }
  if (v == 0) return std::nullopt;
  return v * unit;
}

inline std::optional<std::string> read_line(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!f || !std::getline(f, s)) return std::nullopt;
  return s;
}

/// The caches listed under `dir` (sysfs's cpu0/cache layout), or none if it lists no L2.
inline std::optional<cpu_caches> caches_from_sysfs(const std::string& dir) {
  cpu_caches c;
  for (int i = 0; i < 8; ++i) {
    const std::string base = dir + "/index" + std::to_string(i) + "/";
    const auto level = read_line(base + "level"), type = read_line(base + "type"), size = read_line(base + "size");
    if (!level || !type || !size) continue;
    const auto bytes = parse_cache_size(*size);
    if (!bytes || *type == "Instruction") continue;
    if (*level == "1") c.l1d = *bytes;
    else if (*level == "2") c.l2 = *bytes;
    else if (*level == "3") c.l3 = *bytes;
  }
  if (c.l2 == 0) return std::nullopt;
  c.source = "sysfs";
  return c;
}

}  // namespace detail

/// The machine's caches, read once per process (see the file comment for the order of sources).
inline const cpu_caches& machine_caches() {
  static const cpu_caches caches = [] {
    cpu_caches c;
    if (auto s = detail::caches_from_sysfs("/sys/devices/system/cpu/cpu0/cache")) c = *s;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    else if (const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE); l2 > 0) {
      c.l2 = static_cast<std::size_t>(l2);
      const long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
      c.l1d = l1 > 0 ? static_cast<std::size_t>(l1) : 0;
      c.l3 = l3 > 0 ? static_cast<std::size_t>(l3) : 0;
      c.source = "sysconf";
    }
#endif
    if (c.l1d == 0) c.l1d = std::size_t{32} << 10;
    if (c.l2 == 0) c.l2 = std::size_t{1} << 20;
    if (c.l3 == 0) c.l3 = std::size_t{8} << 20;
    return c;
  }();
  return caches;
}

}  // namespace netsplit
