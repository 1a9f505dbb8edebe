// netsplit/backend/cuda/cudnn_plans.hpp — cuDNN descriptors (RAII) and the per-shape
// convolution plans of a cuda_context: for each convolution shape (batch, widths, size,
// kernel, stride, padding, scalar type) the descriptors and the algorithms chosen by
// cuDNN's measured search, made once when the shape is first seen. Algorithms are picked
// deterministic first, so a fixed context gives the same results run to run; without
// cuda_options::allow_tf32 only FMA (true fp32) algorithms are taken.
// Included only when NETSPLIT_CUDA_CUDNN is 1.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <type_traits>

#include <cudnn.h>

#include "netsplit/backend/cuda/check.hpp"
#include "netsplit/backend/descriptors.hpp"

namespace netsplit::detail::cudnn {

template <class T>
inline constexpr cudnnDataType_t data_type = std::is_same_v<T, float> ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;

struct tensor_desc {
  cudnnTensorDescriptor_t d = nullptr;
  tensor_desc() { NETSPLIT_CUDA_CHECK(cudnnCreateTensorDescriptor(&d)); }
  tensor_desc(cudnnDataType_t t, int n, int c, int h, int w) : tensor_desc() {
    NETSPLIT_CUDA_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, t, n, c, h, w));
  }
  ~tensor_desc() {
    if (d) cudnnDestroyTensorDescriptor(d);
  }
  tensor_desc(const tensor_desc&) = delete;
  tensor_desc& operator=(const tensor_desc&) = delete;
};
struct filter_desc {
  cudnnFilterDescriptor_t d = nullptr;
  filter_desc(cudnnDataType_t t, int k, int c, int h, int w) {
    NETSPLIT_CUDA_CHECK(cudnnCreateFilterDescriptor(&d));
    NETSPLIT_CUDA_CHECK(cudnnSetFilter4dDescriptor(d, t, CUDNN_TENSOR_NCHW, k, c, h, w));
  }
  ~filter_desc() {
    if (d) cudnnDestroyFilterDescriptor(d);
  }
  filter_desc(const filter_desc&) = delete;
  filter_desc& operator=(const filter_desc&) = delete;
};
struct convolution_desc {
  cudnnConvolutionDescriptor_t d = nullptr;
  convolution_desc(cudnnDataType_t t, int pad, int stride, cudnnMathType_t math) {
    NETSPLIT_CUDA_CHECK(cudnnCreateConvolutionDescriptor(&d));
    NETSPLIT_CUDA_CHECK(cudnnSetConvolution2dDescriptor(d, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION, t));
    NETSPLIT_CUDA_CHECK(cudnnSetConvolutionMathType(d, math));
  }
  ~convolution_desc() {
    if (d) cudnnDestroyConvolutionDescriptor(d);
  }
  convolution_desc(const convolution_desc&) = delete;
  convolution_desc& operator=(const convolution_desc&) = delete;
};

/// Picks from cuDNN's measured results (fastest first): the fastest deterministic one of an
/// allowed math type, else the fastest of an allowed math type.
template <class Perf>
const Perf* pick(const Perf* r, int n, bool allow_tf32) {
  auto math_ok = [&](cudnnMathType_t m) {
    return allow_tf32 || m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH;
  };
  for (int pass = 0; pass < 2; ++pass)
    for (int i = 0; i < n; ++i)
      if (r[i].status == CUDNN_STATUS_SUCCESS && math_ok(r[i].mathType) &&
          (pass == 1 || r[i].determinism == CUDNN_DETERMINISTIC))
        return &r[i];
  return nullptr;
}

struct conv_plan {
  tensor_desc x, y;
  filter_desc w;
  convolution_desc conv;
  cudnnConvolutionFwdAlgo_t forward{};
  cudnnConvolutionBwdDataAlgo_t backward_data{};
  cudnnConvolutionBwdFilterAlgo_t backward_filter{};
  cudnnMathType_t forward_math{}, backward_data_math{}, backward_filter_math{};
  std::size_t workspace = 0;  // bytes, the largest of the three

  conv_plan(cudnnHandle_t h, cudnnDataType_t t, const conv2d_desc& d, bool allow_tf32)
      : x(t, d.batch, d.in_channels, d.in_height, d.in_width),
        y(t, d.batch, d.out_channels, d.out_height(), d.out_width()),
        w(t, d.out_channels, d.in_channels, d.kernel, d.kernel),
        conv(t, d.pad, d.stride, allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH) {
    constexpr int max_algos = 16;
    int n = 0;
    {
      cudnnConvolutionFwdAlgoPerf_t r[max_algos];
      NETSPLIT_CUDA_CHECK(cudnnFindConvolutionForwardAlgorithm(h, x.d, w.d, conv.d, y.d, max_algos, &n, r));
      const auto* p = pick(r, n, allow_tf32);
      if (!p) ::netsplit::detail::cuda::fail("cudnnFindConvolutionForwardAlgorithm", no_algorithm(d), __FILE__, __LINE__);
      forward = p->algo;
      forward_math = p->mathType;
      workspace = std::max(workspace, p->memory);
    }
    {
      cudnnConvolutionBwdDataAlgoPerf_t r[max_algos];
      NETSPLIT_CUDA_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(h, w.d, y.d, conv.d, x.d, max_algos, &n, r));
      const auto* p = pick(r, n, allow_tf32);
      if (!p) ::netsplit::detail::cuda::fail("cudnnFindConvolutionBackwardDataAlgorithm", no_algorithm(d), __FILE__, __LINE__);
      backward_data = p->algo;
      backward_data_math = p->mathType;
      workspace = std::max(workspace, p->memory);
    }
    {
      cudnnConvolutionBwdFilterAlgoPerf_t r[max_algos];
      NETSPLIT_CUDA_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(h, x.d, y.d, conv.d, w.d, max_algos, &n, r));
      const auto* p = pick(r, n, allow_tf32);
      if (!p) ::netsplit::detail::cuda::fail("cudnnFindConvolutionBackwardFilterAlgorithm", no_algorithm(d), __FILE__, __LINE__);
      backward_filter = p->algo;
      backward_filter_math = p->mathType;
      workspace = std::max(workspace, p->memory);
    }
  }
  /// The math type each algorithm was measured with must be set before running it.
  void use_math(cudnnMathType_t m) { NETSPLIT_CUDA_CHECK(cudnnSetConvolutionMathType(conv.d, m)); }

 private:
  static std::string no_algorithm(const conv2d_desc& d) {
    return concat("no usable algorithm for batch ", d.batch, ", ", d.in_channels, "->", d.out_channels, " channels, ",
                  d.in_height, "x", d.in_width, ", kernel ", d.kernel, ", stride ", d.stride, ", pad ", d.pad);
  }
};

class plan_cache {
 public:
  template <class T>
  conv_plan& get(cudnnHandle_t h, const conv2d_desc& d, bool allow_tf32) {
    const std::array<int, 9> key{d.batch, d.in_channels, d.out_channels, d.in_height, d.in_width,
                                 d.kernel, d.stride, d.pad, static_cast<int>(data_type<T>)};
    auto& slot = plans_[key];
    if (!slot) slot = std::make_unique<conv_plan>(h, data_type<T>, d, allow_tf32);
    return *slot;
  }
  void clear() noexcept { plans_.clear(); }
  std::size_t size() const { return plans_.size(); }

 private:
  std::map<std::array<int, 9>, std::unique_ptr<conv_plan>> plans_;
};

}  // namespace netsplit::detail::cudnn
