// netsplit/data/augmentation.hpp — the CIFAR ResNet augmentation: pad, random crop, flip.
// Equivalent to torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip() followed by
// ToTensor + Normalize: the image is padded with raw value 0 (which normalises to
// -mean/std), a 32x32 window at offsets (dy, dx), each uniform in [0, 2*padding], is cut
// out, and the window is mirrored left-right with probability 1/2.
// The random choice (crop_flip) is drawn separately from applying it, so a batch can draw
// all its choices in order on one thread and apply them in parallel with identical results.
#pragma once

#include <algorithm>
#include <cstdint>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/random.hpp"
#include "netsplit/data/cifar.hpp"
#include "netsplit/data/normalization.hpp"

namespace netsplit {

/// One augmentation choice. Output pixel (y, x) is padded-image pixel (dy + y, dx + x), or
/// (dy + y, dx + 31 - x) when flip is set; the padded image is the original shifted by
/// `padding` in both axes with zeros around it.
struct crop_flip {
  int dy = 0;
  int dx = 0;
  bool flip = false;
  bool operator==(const crop_flip&) const = default;
};

/// The CIFAR papers' padding: 4 pixels on every side.
inline constexpr int cifar_crop_padding = 4;

/// Draws dy, then dx (each uniform in [0, 2*padding]), then flip (probability 1/2), in that
/// order: three draws from `r`, always.
inline crop_flip draw_crop_flip(rng& r, int padding = cifar_crop_padding) {
  NETSPLIT_EXPECT(padding >= 0 && padding <= cifar_geometry::width, "crop padding must be in [0, ",
                  cifar_geometry::width, "], got ", padding);
  const auto range = static_cast<std::uint64_t>(2 * padding + 1);
  crop_flip a;
  a.dy = static_cast<int>(r.uniform_int(range));
  a.dx = static_cast<int>(r.uniform_int(range));
  a.flip = r.uniform_int(2) == 1;
  return a;
}

/// Writes the augmented, normalised 3x32x32 float image of byte image `src` to `dst`.
/// Cost: one table look-up or one store per output value, no branches per pixel.
inline void augment_image(const std::uint8_t* src, const crop_flip& a, const normalization_table& t,
                          float* dst, int padding = cifar_crop_padding) {
  using g = cifar_geometry;
  constexpr int H = g::height, W = g::width;
  NETSPLIT_EXPECT(a.dy >= 0 && a.dy <= 2 * padding && a.dx >= 0 && a.dx <= 2 * padding,
                  "crop offsets (", a.dy, ", ", a.dx, ") outside [0, ", 2 * padding, "]");
  // Source column of output column x (before the flip): sx = x + dx - padding.
  // Valid output columns (source inside the image) form [x_lo, x_hi).
  const int shift_x = a.dx - padding, shift_y = a.dy - padding;
  const int x_lo = std::max(0, -shift_x), x_hi = std::min(W, W - shift_x);
  for (std::size_t c = 0; c < 3; ++c) {
    const auto& lut = t[c];
    const float pad = lut[0];
    const std::uint8_t* plane = src + c * g::plane_bytes;
    for (int y = 0; y < H; ++y, dst += W) {
      const int sy = y + shift_y;
      if (sy < 0 || sy >= H) {
        std::fill(dst, dst + W, pad);
        continue;
      }
      const std::uint8_t* row = plane + sy * W;  // row[x + shift_x] is the source of column x
      if (!a.flip) {
        for (int x = 0; x < x_lo; ++x) dst[x] = pad;
        for (int x = x_lo; x < x_hi; ++x) dst[x] = lut[row[x + shift_x]];
        for (int x = x_hi; x < W; ++x) dst[x] = pad;
      } else {
        // Flipped: output column x shows unflipped column W-1-x.
        for (int x = 0; x < W - x_hi; ++x) dst[x] = pad;
        for (int x = W - x_hi; x < W - x_lo; ++x) dst[x] = lut[row[W - 1 - x + shift_x]];
        for (int x = W - x_lo; x < W; ++x) dst[x] = pad;
      }
    }
  }
}

}  // namespace netsplit
