// netsplit/core/shape.hpp — static feature-map shapes and runtime tensor shapes.
// A fmap_shape (channels, height, width) is a structural type used as a template
// argument: spatial size is fixed by the type, channels give the *initial* width only
// (splits grow the runtime width). tensor_shape is the runtime shape of a tensor.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>

#include "netsplit/core/errors.hpp"

namespace netsplit {

/// Compile-time shape of one image's feature map (batch excluded).
struct fmap_shape {
  int channels = 0;
  int height = 0;
  int width = 0;
  constexpr bool operator==(const fmap_shape&) const = default;
  constexpr std::int64_t spatial() const { return std::int64_t{height} * width; }
};

/// Output extent of a convolution/pooling window along one axis; negative if the
/// window does not fit.
constexpr int window_output(int in, int kernel, int stride, int pad) {
  return (in + 2 * pad - kernel) < 0 ? -1 : (in + 2 * pad - kernel) / stride + 1;
}

/// Runtime shape of a tensor: up to four extents, outermost first (N, C, H, W for
/// activations; Cout, Cin, Kh, Kw for conv weights).
class tensor_shape {
 public:
  static constexpr int max_rank = 4;

  constexpr tensor_shape() = default;
  constexpr tensor_shape(std::initializer_list<std::int64_t> dims) {
    NETSPLIT_EXPECT(dims.size() <= max_rank, "tensor rank ", dims.size(), " exceeds ", max_rank);
    for (auto d : dims) {
      NETSPLIT_EXPECT(d >= 0, "negative tensor extent ", d);
      dims_[rank_++] = d;
    }
  }

  constexpr int rank() const { return rank_; }
  constexpr std::int64_t operator[](int i) const { return dims_[static_cast<std::size_t>(i)]; }
  constexpr std::int64_t& operator[](int i) { return dims_[static_cast<std::size_t>(i)]; }
  constexpr std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
    return rank_ == 0 ? 0 : n;
  }
  constexpr bool operator==(const tensor_shape& o) const {
    if (rank_ != o.rank_) return false;
    for (int i = 0; i < rank_; ++i)
      if (dims_[static_cast<std::size_t>(i)] != o.dims_[static_cast<std::size_t>(i)]) return false;
    return true;
  }

  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims_[static_cast<std::size_t>(i)]);
    }
    return s + "]";
  }
  friend std::ostream& operator<<(std::ostream& os, const tensor_shape& s) { return os << s.str(); }

 private:
  std::array<std::int64_t, max_rank> dims_{};
  int rank_ = 0;
};

}  // namespace netsplit
