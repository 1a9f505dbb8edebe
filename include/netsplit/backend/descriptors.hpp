// netsplit/backend/descriptors.hpp — plain descriptions of the heavy operations every
// backend implements. Layers fill these in from their static configuration and the
// current runtime widths; backends never see layer objects.
#pragma once

#include <cstdint>

namespace netsplit {

/// 2-D convolution, NCHW activations, weights [out_channels, in_channels, k, k], no bias.
struct conv2d_desc {
  int batch = 0, in_channels = 0, out_channels = 0;
  int in_height = 0, in_width = 0, kernel = 1, stride = 1, pad = 0;
  constexpr int out_height() const { return (in_height + 2 * pad - kernel) / stride + 1; }
  constexpr int out_width() const { return (in_width + 2 * pad - kernel) / stride + 1; }
  constexpr std::int64_t weight_count() const {
    return std::int64_t{out_channels} * in_channels * kernel * kernel;
  }
  /// Multiply-adds of the forward pass for the whole batch.
  constexpr std::int64_t mult_adds() const {
    return weight_count() * out_height() * out_width() * batch;
  }
};

/// 2x2 max pooling's winner rule, shared by every backend: the index (0..3, row-major:
/// top-left, top-right, bottom-left, bottom-right) of the largest of four values; of equal
/// values the first wins, as in PyTorch's kernels; a NaN wins (it propagates).
template <class T>
#if defined(__CUDACC__)
__host__ __device__
#endif
constexpr int max_window_index(T a, T b, T c, T d) {
  int k = 0;
  T m = a;
  if (m == m) {  // not NaN
    if (b > m || b != b) k = 1, m = b;
  }
  if (m == m) {
    if (c > m || c != c) k = 2, m = c;
  }
  if (m == m) {
    if (d > m || d != d) k = 3, m = d;
  }
  return k;
}

/// Per-channel batch normalisation over N, H, W of an NCHW tensor.
struct batch_norm_desc {
  int batch = 0, channels = 0, spatial = 0;  // spatial = H * W
  double eps = 1e-5;
  double momentum = 0.1;  // running = (1 - momentum) * running + momentum * batch statistic
};

/// Option-A shortcut generalised to arbitrary widths: a list of entries (src, dst, coef);
/// output channel dst receives coef * (input channel src subsampled by stride), summed over
/// entries; output channels no entry maps to are 0.
struct channel_scatter_desc {
  int batch = 0, in_channels = 0, out_channels = 0;
  int in_height = 0, in_width = 0, stride = 1;
  int entries = 0;
};

}  // namespace netsplit
