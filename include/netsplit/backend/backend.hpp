// netsplit/backend/backend.hpp — the Backend concept.
// A backend is a type naming where tensors live and how the heavy operations run:
// it owns no state itself; runtime resources (threads, streams, library handles) live in
// its `context`, which callers create and pass to every operation. Layers call only the
// operations required here, never a BLAS, Eigen or thrust directly.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "netsplit/backend/descriptors.hpp"
#include "netsplit/core/workspace.hpp"

namespace netsplit {

namespace detail {
/// What a context's parallel_for is called with: body(begin, end, thread) per chunk.
struct parallel_body_archetype {
  void operator()(std::ptrdiff_t, std::ptrdiff_t, int) const {}
};
}  // namespace detail

/// Requires: a context type with parallel_for(n, body) for host-side loops (body(begin,
/// end, thread) over chunks of [0, n); a backend without host threads runs one chunk) and
/// workspace() (core/workspace.hpp: tensors a backward pass borrows);
/// host_memory, true when a tensor's data() may be read by host code directly (otherwise
/// callers stage through copy_to_host); allocate/deallocate/copy/fill and host transfers for the
/// scalar T; the layer operations (convolution, batch norm, ReLU, residual sum, batch norm
/// fused with the ReLU and residual sum after it, channel scatter, pooling, linear,
/// softmax cross-entropy) and the SGD update, all taking the context first. Guarantees (documented per backend): results are deterministic for a
/// fixed context configuration.
template <class B, class T = float>
concept Backend = requires(typename B::context& ctx, T* p, const T* cp, const int* ip,
                           std::size_t n, std::int64_t len, T v, const conv2d_desc& cd,
                           const batch_norm_desc& bd, const channel_scatter_desc& sd) {
  typename B::context;
  { B::name } -> std::convertible_to<const char*>;
  { B::host_memory } -> std::convertible_to<bool>;
  ctx.parallel_for(len, detail::parallel_body_archetype{});
  { ctx.workspace() } -> std::same_as<tensor_workspace&>;
  { B::template allocate<T>(n) } -> std::same_as<T*>;
  B::template deallocate<T>(p, n);
  B::template copy<T>(cp, p, n);
  B::template copy_to_host<T>(cp, p, n);
  B::template copy_from_host<T>(cp, p, n);
  B::template fill<T>(p, n, v);
  B::axpy(ctx, len, v, cp, p);
  B::relu_forward(ctx, len, cp, p);
  B::relu_backward(ctx, len, cp, cp, p);
  B::add_relu_forward(ctx, len, cp, cp, p);
  B::add(ctx, len, cp, cp, p);
  { B::all_finite(ctx, len, cp) } -> std::same_as<bool>;
  B::conv2d_forward(ctx, cd, cp, cp, p);
  B::conv2d_forward_affine(ctx, cd, cp, cp, cp, cp, true, p);
  B::batch_norm_fold(ctx, bd, len, cp, cp, cp, cp, cp, p, p);
  B::conv2d_backward(ctx, cd, cp, cp, cp, p, p);
  B::conv2d_backward(ctx, cd, cp, cp, cp, p, p, cp);
  B::batch_norm_forward_train(ctx, bd, cp, cp, cp, p, p, p, p, p);
  B::batch_norm_forward_eval(ctx, bd, cp, cp, cp, cp, cp, p, p, p);
  B::batch_norm_backward(ctx, bd, true, cp, cp, cp, cp, cp, p, p, p);
  B::batch_norm_relu_forward_train(ctx, bd, cp, cp, cp, cp, p, p, p, p, p);
  B::batch_norm_relu_forward_eval(ctx, bd, cp, cp, cp, cp, cp, cp, p, p, p);
  B::batch_norm_relu_backward(ctx, bd, true, cp, cp, cp, cp, cp, cp, p, p, p);
  B::batch_norm_relu_backward(ctx, bd, true, cp, cp, cp, cp, cp, cp, p, p, p, p);
  B::channel_scatter_forward(ctx, sd, cp, ip, ip, cp, p);
  B::channel_scatter_backward(ctx, sd, cp, ip, ip, cp, p);
  B::global_avg_pool_forward(ctx, len, 1, cp, p);
  B::global_avg_pool_backward(ctx, len, 1, cp, p);
  B::max_pool2x2_forward(ctx, len, 2, 2, cp, p);
  B::max_pool2x2_backward(ctx, len, 2, 2, cp, cp, p);
  B::linear_forward(ctx, 1, 1, 1, cp, cp, cp, p);
  B::linear_backward(ctx, 1, 1, 1, cp, cp, cp, p, p, p);
  { B::softmax_cross_entropy(ctx, 1, 1, cp, ip, p) } -> std::convertible_to<double>;
  B::sgd_step(ctx, len, p, cp, p, v, v, v, true);
};

/// Optional: a convolution that also returns the shifted sums of its output per channel
/// (B::conv2d_forward_sums, cpu_backend; host memory), with the split batch-norm forward that
/// takes them (batch_norm_forward_sums): a training-mode batch norm after the convolution then
/// makes no statistics pass of its own. Backends without it run the two layers separately.
template <class B, class T = float>
concept ConvWithSums = Backend<B, T> && requires(typename B::context& ctx, T* p, const T* cp, double* s,
                                                 const double* cs, const conv2d_desc& cd, const batch_norm_desc& bd) {
  B::conv2d_forward_sums(ctx, cd, cp, cp, p, p, s, s);
  B::batch_norm_forward_sums(ctx, bd, cp, cp, cs, cs, 1.0, cp, cp, cp, true, p, p, p, p, p);
};

}  // namespace netsplit
