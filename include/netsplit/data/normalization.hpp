// netsplit/data/normalization.hpp — per-channel mean/std normalisation of 8-bit images.
// Provides channel_stats, compute_channel_stats (from a training set), describe and
// parse_channel_stats (the form checkpoints record them in) and normalize_image,
// which maps a byte v of channel c to (v/255 - mean[c]) / std[c] in float, computed in the
// same order as torchvision's ToTensor + Normalize so the values agree bit for bit.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "netsplit/core/errors.hpp"
#include "netsplit/data/cifar.hpp"

namespace netsplit {

/// Per-channel (R, G, B) mean and population standard deviation of pixel values scaled to
/// [0, 1].
struct channel_stats {
  std::array<float, 3> mean{};
  std::array<float, 3> std{};
  bool operator==(const channel_stats&) const = default;
};

/// The stats as JSON, {"mean": [r, g, b], "std": [r, g, b]}, each to 9 significant digits
/// (reads back as the same float): checkpoints record it, so a network can be used outside
/// the trainer with the input normalisation it was trained with.
inline std::string describe(const channel_stats& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "{\"mean\": [%.9g, %.9g, %.9g], \"std\": [%.9g, %.9g, %.9g]}", s.mean[0], s.mean[1],
                s.mean[2], s.std[0], s.std[1], s.std[2]);
  return buf;
}

/// The stats describe() wrote, or nullopt when `text` is not in that form.
inline std::optional<channel_stats> parse_channel_stats(const std::string& text) {
  channel_stats s;
  int used = 0;
  if (std::sscanf(text.c_str(), " {\"mean\": [%f, %f, %f], \"std\": [%f, %f, %f]}%n", &s.mean[0], &s.mean[1],
                  &s.mean[2], &s.std[0], &s.std[1], &s.std[2], &used) != 6 ||
      static_cast<std::size_t>(used) != text.size())
    return std::nullopt;
  for (int c = 0; c < 3; ++c)
    if (!(std::isfinite(s.mean[c]) && std::isfinite(s.std[c]) && s.std[c] > 0)) return std::nullopt;
  return s;
}

/// Mean and population std (divide by the pixel count, not count - 1) of every channel over
/// all pixels of all images of `d`. Sums are exact integers, so the result does not depend
/// on image order; only the final division is rounded (in double, then to float).
inline channel_stats compute_channel_stats(const dataset& d) {
  using g = cifar_geometry;
  NETSPLIT_EXPECT(!d.empty(), "compute_channel_stats needs a non-empty dataset, '", d.name,
                  "' has no images");
  NETSPLIT_EXPECT(d.pixels.size() == d.size() * g::image_bytes, "dataset '", d.name, "' has ",
                  d.pixels.size(), " pixel bytes for ", d.size(), " images of ", g::image_bytes);
  std::array<std::uint64_t, 3> sum{}, sum_sq{};
  std::array<std::uint64_t, 256> hist{};
  for (int c = 0; c < 3; ++c) {
    hist.fill(0);
    for (std::size_t i = 0; i < d.size(); ++i) {
      const std::uint8_t* p = d.pixels.data() + i * g::image_bytes + c * g::plane_bytes;
      for (int k = 0; k < g::plane_bytes; ++k) ++hist[p[k]];
    }
    for (std::uint64_t v = 0; v < 256; ++v) {
      sum[static_cast<std::size_t>(c)] += hist[v] * v;
      sum_sq[static_cast<std::size_t>(c)] += hist[v] * v * v;
    }
  }
  const auto n = static_cast<unsigned __int128>(d.size()) * g::plane_bytes;
  channel_stats s;
  for (std::size_t c = 0; c < 3; ++c) {
    // n^2 var = n * sum_sq - sum^2, exact in 128 bits (n * sum_sq < 2^64 * 2^16 * 2^34).
    const unsigned __int128 num = n * sum_sq[c] - static_cast<unsigned __int128>(sum[c]) * sum[c];
    const double nd = static_cast<double>(n);
    const double var = static_cast<double>(num) / (nd * nd);  // 0-255 scale
    s.mean[c] = static_cast<float>(static_cast<double>(sum[c]) / nd / 255.0);
    s.std[c] = static_cast<float>(std::sqrt(var) / 255.0);
  }
  return s;
}

/// For each channel, the normalised float of every byte value: lut[c][v] = (v/255 - mean)/std.
/// Raw padding (value 0) therefore maps to -mean/std, exactly as with torchvision.
using normalization_table = std::array<std::array<float, 256>, 3>;

inline normalization_table make_normalization_table(const channel_stats& s) {
  normalization_table t{};
  for (std::size_t c = 0; c < 3; ++c) {
    NETSPLIT_EXPECT(std::isfinite(s.std[c]) && s.std[c] > 0.f && std::isfinite(s.mean[c]),
                    "channel ", c, " needs a finite mean and a positive std, got mean ",
                    s.mean[c], " std ", s.std[c]);
    for (int v = 0; v < 256; ++v)
      t[c][static_cast<std::size_t>(v)] = (static_cast<float>(v) / 255.f - s.mean[c]) / s.std[c];
  }
  return t;
}

/// Normalises one 3x32x32 byte image into 3072 floats (same plane layout), no augmentation.
inline void normalize_image(const std::uint8_t* src, const normalization_table& t, float* dst) {
  using g = cifar_geometry;
  for (std::size_t c = 0; c < 3; ++c) {
    const auto& lut = t[c];
    for (int k = 0; k < g::plane_bytes; ++k) *dst++ = lut[*src++];
  }
}

}  // namespace netsplit
