// netsplit/backend/cuda/transfer.hpp — explicit copies between the CPU and CUDA backends:
// to<cpu_backend>(t) brings a device tensor to the host, to<cuda_backend>(t, ctx) sends a
// host tensor to the device of ctx. Tensors of different backends never convert
// implicitly; these are the only bridges besides tensor::to_host/from_host.
#pragma once

#include <concepts>

#include "netsplit/backend/cpu/cpu_backend.hpp"
#include "netsplit/backend/cuda/cuda_backend.hpp"
#include "netsplit/core/tensor.hpp"

namespace netsplit {

/// A host copy of a device tensor (waits for the work queued on the tensor).
template <class To, class T>
  requires std::same_as<To, cpu_backend>
tensor<T, cpu_backend> to(const tensor<T, cuda_backend>& t) {
  tensor<T, cpu_backend> out(t.shape());
  if (t.numel() > 0) cuda_backend::copy_to_host<T>(t.data(), out.data(), static_cast<std::size_t>(t.numel()));
  return out;
}

/// A device copy of a host tensor, for use with ctx. The copy has finished when this
/// returns, so `t` may change or go away afterwards.
template <class To, class T>
  requires std::same_as<To, cuda_backend>
tensor<T, cuda_backend> to(const tensor<T, cpu_backend>& t, cuda_context& ctx) {
  (void)ctx;  // the tensor lives on the current device, which ctx's constructor selected
  tensor<T, cuda_backend> out(t.shape());
  if (t.numel() > 0) cuda_backend::copy_from_host<T>(t.data(), out.data(), static_cast<std::size_t>(t.numel()));
  return out;
}

}  // namespace netsplit
