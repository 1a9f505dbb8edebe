// netsplit/layers/batch_norm.hpp — per-channel batch normalisation with affine γ, β.
// Train: normalise with the batch's statistics and update running averages (momentum 0.1,
// unbiased variance, as PyTorch). Eval: normalise with the running statistics.
// Batch size 1 is handled as PyTorch does: allowed whenever a channel still has more than
// one value (N*H*W > 1); a single value per channel in train mode is a contract violation,
// because its variance, and the unbiased running update, are undefined.
// Sync batch norm (a context whose batch_norm_sum is set, cpu_context): in train mode the
// statistics and the backward sums are those of the union of every process's batch, summed
// through batch_norm_sum; the running statistics are then identical on every process.
// Spec batch_norm models LayerSpec; batch_norm_layer models Layer, HasParameters, HasBuffers.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "netsplit/layers/layer.hpp"

namespace netsplit {

template <class T, class B, fmap_shape In>
class batch_norm_layer : public layer_base<T, B, In, In> {
 public:
  static constexpr double eps = 1e-5;
  static constexpr double momentum = 0.1;

  batch_norm_layer() { set_width(In.channels); }

  int in_channels() const { return c_; }
  int out_channels() const { return c_; }

  /// Sets the current width; γ=1, β=0, running mean 0, running variance 1.
  void set_width(int c) {
    NETSPLIT_EXPECT(c > 0, "batch_norm width must be positive, got ", c);
    c_ = c;
    for (auto* t : {&gamma_, &beta_, &dgamma_, &dbeta_, &running_mean_, &running_var_, &save_mean_,
                    &save_invstd_})
      t->resize({c});
    initialize_state();
  }
  void initialize(rng&) { initialize_state(); }
  /// Width multiplier (layers/layer.hpp): as many channels as the stream has.
  void scale_widths(double, int& stream) { set_width(stream); }

  /// Adopts the width of γ after a split replaced the per-channel tensors (values kept).
  void sync_widths() {
    const auto c = gamma_.numel();
    NETSPLIT_EXPECT(c > 0 && beta_.numel() == c && running_mean_.numel() == c && running_var_.numel() == c,
                    "batch_norm per-channel tensors disagree: gamma ", gamma_.shape(), ", beta ", beta_.shape(),
                    ", running mean ", running_mean_.shape(), ", running var ", running_var_.shape());
    c_ = static_cast<int>(c);
    for (auto* t : {&dgamma_, &dbeta_, &save_mean_, &save_invstd_}) {
      t->resize({c});
      t->fill(T(0));
    }
  }

  const tensor<T, B>& forward(typename B::context& ctx, const tensor<T, B>& x, phase p) {
    detail::expect_input(x, In, c_, "batch_norm");
    input_ = &x;
    phase_ = p;
    out_.resize(x.shape());
    const auto d = desc(static_cast<int>(x.dim(0)));
    synced_ = p == phase::train && syncs(ctx);
    if (synced_) {
      forward_synced(ctx, d, x, nullptr, false);
    } else if (p == phase::train) {
      expect_batch(d);
      B::batch_norm_forward_train(ctx, d, x.data(), gamma_.data(), beta_.data(), out_.data(),
                                  save_mean_.data(), save_invstd_.data(), running_mean_.data(),
                                  running_var_.data());
    } else {
      B::batch_norm_forward_eval(ctx, d, x.data(), gamma_.data(), beta_.data(), running_mean_.data(),
                                 running_var_.data(), out_.data(), save_mean_.data(),
                                 save_invstd_.data());
    }
    return out_;
  }

  /// Fused with what follows batch norm in a residual network: y = max(bn(x) + r, 0), or
  /// max(bn(x), 0) when r is null; r has x's shape. Differentiate with backward_relu
  /// (no r) or backward_add_relu (with r).
  const tensor<T, B>& forward_relu(typename B::context& ctx, const tensor<T, B>& x, phase p,
                                   const tensor<T, B>* r = nullptr) {
    const auto d = begin_relu(x, p, r);
    const T* rp = r ? r->data() : nullptr;
    synced_ = p == phase::train && syncs(ctx);
    if (synced_) {
      forward_synced(ctx, d, x, rp, true);
    } else if (p == phase::train) {
      expect_batch(d);
      B::batch_norm_relu_forward_train(ctx, d, x.data(), gamma_.data(), beta_.data(), rp, out_.data(),
                                       save_mean_.data(), save_invstd_.data(), running_mean_.data(),
                                       running_var_.data());
    } else {
      B::batch_norm_relu_forward_eval(ctx, d, x.data(), gamma_.data(), beta_.data(), running_mean_.data(),
                                      running_var_.data(), rp, out_.data(), save_mean_.data(),
                                      save_invstd_.data());
    }
    return out_;
  }
  /// conv, then forward_relu(ctx, conv's output, p, r), as one pass fewer where the backend
  /// can (B::conv2d_forward_sums, in phase::train): the convolution takes this batch norm's
  /// statistics while it stores its output, about one of each channel's values, so the batch
  /// norm does not read that output for them (with sync batch norm they are moved to the
  /// running mean in double, the shift every process shares). The statistics are the same
  /// sums taken in another order: equal to rounding (tests/test_layers.cpp). `conv` is a
  /// conv2d_layer with this layer's channels as outputs.
  template <class Conv>
  const tensor<T, B>& forward_relu_after(typename B::context& ctx, Conv& conv, const tensor<T, B>& x, phase p,
                                         const tensor<T, B>* r = nullptr) {
    if constexpr (ConvWithSums<B, T>) {
      if (p == phase::train) {
        NETSPLIT_EXPECT(conv.out_channels() == c_, "batch_norm: ", c_, " channels after a convolution of ",
                        conv.out_channels());
        static_assert(B::host_memory, "batch_norm: ConvWithSums backends keep tensors in host memory");
        sums_.resize(2 * static_cast<std::size_t>(c_) + 1);
        sum_shift_.resize({c_});
        double* s1 = sums_.data();
        double* s2 = s1 + c_;
        const auto& y = conv.forward_summed(ctx, x, p, sum_shift_.data(), s1, s2);
        const auto d = begin_relu(y, p, r);
        synced_ = syncs(ctx);
        if (synced_) {  // every process's sums about the running mean: sum (y - rm)^k from sum (y - k)^k
          const double n = static_cast<double>(d.batch) * d.spatial;
          for (int c = 0; c < c_; ++c) {
            const double dk = static_cast<double>(sum_shift_.data()[c]) - static_cast<double>(running_mean_.data()[c]);
            s2[c] += dk * (2 * s1[c] + n * dk);
            s1[c] += n * dk;
          }
          forward_from_sums(ctx, d, y, running_mean_.data(), r ? r->data() : nullptr, true);
        } else {
          forward_from_sums(ctx, d, y, sum_shift_.data(), r ? r->data() : nullptr, true);
        }
        return out_;
      }
    }
    return forward_relu(ctx, conv.forward(ctx, x, p), p, r);
  }

  /// Backward of forward_relu without a residual: dy is dL/d(max(bn(x), 0)). The input
  /// gradient goes into `into` when given (a tensor the caller lends, e.g. from the context's
  /// workspace), else into the layer's own tensor.
  const tensor<T, B>& backward_relu(typename B::context& ctx, const tensor<T, B>& dy, bool input_grad = true,
                                    tensor<T, B>* into = nullptr) {
    detail::has_input(input_, "batch_norm");
    detail::expect_grad(dy, out_, "batch_norm");
    dy_ = &dy;
    return backward_into(ctx, dy, out_.data(), input_grad, into);
  }
  /// Backward of forward_relu with a residual r: dy is dL/d(max(bn(x) + r, 0)). The residual's
  /// gradient (dy where the output is positive) goes into dr, resized here (a tensor the caller
  /// lends), in the pass that takes batch norm's sums; the input gradient as backward_relu's.
  const tensor<T, B>& backward_add_relu(typename B::context& ctx, const tensor<T, B>& dy, tensor<T, B>& dr,
                                        bool input_grad = true, tensor<T, B>* into = nullptr) {
    detail::has_input(input_, "batch_norm");
    detail::expect_grad(dy, out_, "batch_norm");
    dr.resize(dy.shape());
    return backward_into(ctx, dy, out_.data(), input_grad, into, dr.data());
  }
  /// Output of the last forward and the gradient its last backward_relu received: with the
  /// fused ReLU these are the ReLU's output and its gradient (TPM signals).
  const tensor<T, B>& output() const { return out_; }
  const tensor<T, B>* output_grad() const { return dy_; }

  /// The input gradient goes into `into` when given, as in backward_relu.
  const tensor<T, B>& backward(typename B::context& ctx, const tensor<T, B>& dy, bool input_grad = true,
                               tensor<T, B>* into = nullptr) {
    detail::has_input(input_, "batch_norm");
    detail::expect_grad(dy, out_, "batch_norm");
    return backward_into(ctx, dy, nullptr, input_grad, into);
  }

  template <class V>
  void visit_parameters(V&& v) {
    v(std::string("weight"), gamma_, dgamma_);
    v(std::string("bias"), beta_, dbeta_);
  }
  template <class V>
  void visit_buffers(V&& v) {
    v(std::string("running_mean"), running_mean_);
    v(std::string("running_var"), running_var_);
  }

  batch_norm_desc desc(int batch) const {
    return {batch, c_, static_cast<int>(In.spatial()), eps, momentum};
  }

  tensor<T, B>& gamma() { return gamma_; }
  tensor<T, B>& beta() { return beta_; }
  tensor<T, B>& running_mean() { return running_mean_; }
  tensor<T, B>& running_var() { return running_var_; }

  /// Split role: its per-channel parameters and statistics belong to the open stream's
  /// producers (channel j follows filter j); a channel that starts from scratch gets the
  /// statistics of a freshly built layer (mean 0, variance 1).
  template <class W>
  void describe_sites(W& w, const std::string& prefix) {
    w.produce_params({prefix + "weight", prefix + "bias"});
    w.produce_buffers({prefix + "running_mean", prefix + "running_var"}, {0.0, 1.0});
  }
 private:
  /// Whether this context asks for sync batch norm (only contexts that offer it have
  /// batch_norm_sum; their backends have the split forward and backward operations).
  static bool syncs(typename B::context& ctx) {
    if constexpr (requires { ctx.batch_norm_sum; }) return static_cast<bool>(ctx.batch_norm_sum);
    else return false;
  }
  /// forward_relu's checks and bookkeeping; x's batch descriptor.
  batch_norm_desc begin_relu(const tensor<T, B>& x, phase p, const tensor<T, B>* r) {
    detail::expect_input(x, In, c_, "batch_norm");
    NETSPLIT_EXPECT(!r || r->shape() == x.shape(), "batch_norm: residual ", r ? r->shape() : x.shape(),
                    " does not match the input ", x.shape());
    input_ = &x;
    phase_ = p;
    out_.resize(x.shape());
    return desc(static_cast<int>(x.dim(0)));
  }
  void forward_synced(typename B::context& ctx, const batch_norm_desc& d, const tensor<T, B>& x, const T* r,
                      bool relu) {
    if constexpr (requires { ctx.batch_norm_sum; }) {
      sums_.resize(2 * static_cast<std::size_t>(c_) + 1);
      B::batch_norm_shifted_sums(ctx, d, x.data(), running_mean_.data(), sums_.data(), sums_.data() + c_);
      forward_from_sums(ctx, d, x, running_mean_.data(), r, relu);
    }
  }
  /// Training-mode forward from sums_, x's sums shifted by `shift` (summed over processes
  /// first when synced_; the shift is then the running mean).
  void forward_from_sums(typename B::context& ctx, const batch_norm_desc& d, const tensor<T, B>& x, const T* shift,
                         const T* r, bool relu) {
    sums_.back() = static_cast<double>(d.batch) * d.spatial;
    if (synced_) {
      if constexpr (requires { ctx.batch_norm_sum; }) ctx.batch_norm_sum(std::span<double>(sums_));
      NETSPLIT_EXPECT(sums_.back() > 1, "sync batch_norm needs more than one value per channel over all processes, got ",
                      sums_.back());
    } else {
      expect_batch(d);
    }
    B::batch_norm_forward_sums(ctx, d, x.data(), shift, sums_.data(), sums_.data() + c_, sums_.back(),
                               gamma_.data(), beta_.data(), r, relu, out_.data(), save_mean_.data(),
                               save_invstd_.data(), running_mean_.data(), running_var_.data());
  }
  /// The backwards: y is the forward's output when the ReLU was fused (dy is masked by
  /// y > 0), else null; dr, where not null, receives the masked dy (backward_add_relu).
  const tensor<T, B>& backward_into(typename B::context& ctx, const tensor<T, B>& dy, const T* y, bool input_grad,
                                    tensor<T, B>* into, T* dr = nullptr) {
    if (!input_grad) dx_.resize({});
    tensor<T, B>& dx = !input_grad ? dx_ : into ? *into : dx_;
    if (input_grad) dx.resize(dy.shape());
    T* dxp = input_grad ? dx.data() : nullptr;
    const auto d = desc(static_cast<int>(dy.dim(0)));
    if (synced_) {
      backward_synced(ctx, d, dy.data(), y, dxp, dr);
    } else if (y) {
      B::batch_norm_relu_backward(ctx, d, phase_ == phase::train, input_->data(), y, gamma_.data(), save_mean_.data(),
                                  save_invstd_.data(), dy.data(), dxp, dgamma_.data(), dbeta_.data(), dr);
    } else {
      B::batch_norm_backward(ctx, d, phase_ == phase::train, input_->data(), gamma_.data(), save_mean_.data(),
                             save_invstd_.data(), dy.data(), dxp, dgamma_.data(), dbeta_.data());
    }
    return dx;
  }
  /// The split backward (sums, summed over processes, then the input gradient); dr as in
  /// backward_into: stored by the sums half, read by the apply half in place of dy and y.
  void backward_synced(typename B::context& ctx, const batch_norm_desc& d, const T* dy, const T* y, T* dx, T* dr) {
    if constexpr (requires { ctx.batch_norm_sum; }) {
      sums_.assign(2 * static_cast<std::size_t>(c_) + 1, 0.0);
      B::batch_norm_backward_sums(ctx, d, input_->data(), y, save_mean_.data(), save_invstd_.data(), dy,
                                  dgamma_.data(), dbeta_.data(), sums_.data(), sums_.data() + c_, dr);
      sums_.back() = static_cast<double>(d.batch) * d.spatial;
      ctx.batch_norm_sum(std::span<double>(sums_));  // every process, whether or not it wants dx
      if (dx)
        B::batch_norm_backward_apply(ctx, d, input_->data(), dr ? nullptr : y, gamma_.data(), save_mean_.data(),
                                     save_invstd_.data(), dr ? dr : dy, sums_.data(), sums_.data() + c_, sums_.back(),
                                     dx);
    }
  }
  static void expect_batch(const batch_norm_desc& d) {
    NETSPLIT_EXPECT(std::int64_t{d.batch} * d.spatial > 1,
                    "batch_norm in train mode needs more than one value per channel, got batch ", d.batch,
                    " of ", In.height, "x", In.width, " (use eval mode or a larger batch)");
  }
  void initialize_state() {
    gamma_.fill(T(1));
    beta_.fill(T(0));
    dgamma_.fill(T(0));
    dbeta_.fill(T(0));
    running_mean_.fill(T(0));
    running_var_.fill(T(1));
  }
  int c_ = 0;
  phase phase_ = phase::train;
  tensor<T, B> gamma_, beta_, dgamma_, dbeta_, running_mean_, running_var_, save_mean_, save_invstd_;
  tensor<T, B> out_, dx_;
  const tensor<T, B>* input_ = nullptr;
  const tensor<T, B>* dy_ = nullptr;
  bool synced_ = false;
  std::vector<double> sums_;  // per-channel sums and the count (sync batch norm: summed over processes)
  tensor<T, B> sum_shift_;    // forward_relu_after: the values the convolution's sums are taken about
};

/// Batch normalisation spec: accepts any non-empty feature map, keeps its shape.
struct batch_norm {
  static constexpr const char* kind = "batch_norm";
  static constexpr bool accepts(fmap_shape in) { return in.channels > 0 && in.height > 0 && in.width > 0; }
  static constexpr fmap_shape output_shape(fmap_shape in) { return in; }
  template <class T, class B, fmap_shape In>
  using layer = batch_norm_layer<T, B, In>;
};

}  // namespace netsplit
