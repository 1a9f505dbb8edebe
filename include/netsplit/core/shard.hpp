// netsplit/core/shard.hpp — how a batch is shared among the processes of a data-parallel
// run: contiguous parts, in rank order, as equal as the batch allows.
#pragma once

#include <algorithm>
#include <cstdint>

namespace netsplit {

/// The contiguous part [begin, end) of a batch of `total` samples that `rank` of `size`
/// processes: sizes differ by at most one, lower ranks take the larger parts.
struct shard_range {
  std::int64_t begin = 0, end = 0;
  std::int64_t count() const { return end - begin; }
};
inline shard_range shard_of(std::int64_t total, int rank, int size) {
  const auto r = static_cast<std::int64_t>(rank), n = static_cast<std::int64_t>(size);
  const auto base = total / n, extra = total % n;
  const auto begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

}  // namespace netsplit
