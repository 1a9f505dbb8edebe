// tests/cuda/test_ops.cpp — every Backend operation and every layer of cuda_backend against
// cpu_backend: memory and transfers, element-wise ops, convolution (cuDNN or lowered, and
// the lowered path in several chunks), batch norm in both modes, the channel scatter,
// pooling, linear, loss, SGD; then each layer's forward/backward. Tolerances: see
// backend_tests.hpp.
#include "backend_tests.hpp"

#include <limits>

namespace netsplit_test {
namespace {

template <class B>
void memory_and_transfers() {
  const auto v = random_values(37, 1);
  tensor<float, B> t({37});
  t.from_host(v);
  CHECK(t.to_host() == v);
  tensor<float, B> copied(t);  // B::copy
  CHECK(copied.to_host() == v);
  tensor<float, B> assigned;
  assigned = t;
  CHECK(assigned.to_host() == v);
  t.fill(2.5f);
  CHECK(t.to_host() == std::vector<float>(37, 2.5f));
  CHECK(copied.to_host() == v);  // a deep copy

  tensor<int, B> labels({4});
  labels.from_host(std::vector<int>{3, 1, 4, 1});
  CHECK(labels.to_host() == std::vector<int>{3, 1, 4, 1});

  tensor<float, B> empty;
  CHECK(empty.to_host().empty());
  CHECK_THROWS_AS(t.from_host(std::vector<float>(3)), contract_violation);

  // explicit transfers, both directions, bit-exact
  const auto host = make_tensor<float, cpu>({2, 3, 2}, random_values(12, 2));
  typename B::context ctx;
  const tensor<float, B> dev = to<B>(host, ctx);
  CHECK(dev.shape() == host.shape());
  const tensor<float, cpu> back = to<cpu>(dev);
  CHECK(back.shape() == host.shape());
  CHECK(back.to_host() == host.to_host());
}

template <class B>
void elementwise_ops() {
  typename B::context ctx;
  reference_cpu ref;
  const std::int64_t n = 1031;
  auto xv = random_values(n, 3), yv = random_values(n, 4);
  xv[5] = 0.f;
  yv[6] = 0.f;
  const auto x = make_tensor<float, B>({n}, xv), y0 = make_tensor<float, B>({n}, yv);
  auto xc = make_tensor<float, cpu>({n}, xv), yc = make_tensor<float, cpu>({n}, yv);
  tensor<float, B> out({n});
  tensor<float, cpu> outc({n});

  auto y = y0;
  B::axpy(ctx, n, 0.75f, x.data(), y.data());
  cpu::axpy(ref, n, 0.75f, xc.data(), yc.data());
  NETSPLIT_CHECK_CLOSE(y.to_host(), yc.to_host(), elementwise_tol);

  B::relu_forward(ctx, n, x.data(), out.data());
  cpu::relu_forward(ref, n, xc.data(), outc.data());
  CHECK(out.to_host() == outc.to_host());

  B::relu_backward(ctx, n, x.data(), y0.data(), out.data());
  cpu::relu_backward(ref, n, xc.data(), make_tensor<float, cpu>({n}, yv).data(), outc.data());
  CHECK(out.to_host() == outc.to_host());

  B::add_relu_forward(ctx, n, x.data(), y0.data(), out.data());
  const auto y0c = make_tensor<float, cpu>({n}, yv);
  cpu::add_relu_forward(ref, n, xc.data(), y0c.data(), outc.data());
  CHECK(out.to_host() == outc.to_host());

  CHECK(B::all_finite(ctx, n, x.data()));
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    auto v = xv;
    v[n - 1] = bad;
    const auto t = make_tensor<float, B>({n}, v);
    CHECK_FALSE(B::all_finite(ctx, n, t.data()));
  }
  CHECK(B::all_finite(ctx, 0, x.data()));
}

const conv2d_desc conv_shapes[] = {
    // batch, in, out, h, w, kernel, stride, pad
    {3, 5, 7, 9, 9, 3, 1, 1},   {2, 4, 6, 8, 8, 3, 2, 1},    {2, 6, 8, 8, 8, 1, 2, 0},
    {2, 3, 4, 7, 5, 3, 1, 1},   {2, 5, 3, 6, 6, 1, 1, 0},    {2, 16, 16, 32, 32, 3, 1, 1},
    {5, 3, 4, 6, 6, 3, 1, 0},   {1, 2, 3, 5, 5, 5, 2, 2},
};

template <class B, class Run>
void conv_against_cpu(const conv2d_desc& d, Run run) {
  INFO("conv batch " << d.batch << " " << d.in_channels << "->" << d.out_channels << " " << d.in_height << "x"
                     << d.in_width << " k" << d.kernel << " s" << d.stride << " p" << d.pad);
  typename B::context ctx;
  reference_cpu ref;
  const tensor_shape xs{d.batch, d.in_channels, d.in_height, d.in_width};
  const tensor_shape ys{d.batch, d.out_channels, d.out_height(), d.out_width()};
  const tensor_shape ws{d.out_channels, d.in_channels, d.kernel, d.kernel};
  const auto xv = random_values(static_cast<std::size_t>(xs.numel()), 10);
  const auto wv = random_values(static_cast<std::size_t>(ws.numel()), 11, 0.3);
  const auto dyv = random_values(static_cast<std::size_t>(ys.numel()), 12);
  const auto xc = make_tensor<float, cpu>(xs, xv), wc = make_tensor<float, cpu>(ws, wv), dyc = make_tensor<float, cpu>(ys, dyv);
  const auto xb = make_tensor<float, B>(xs, xv), wb = make_tensor<float, B>(ws, wv), dyb = make_tensor<float, B>(ys, dyv);
  tensor<float, cpu> yc(ys), dxc(xs), dwc(ws);
  tensor<float, B> yb(ys), dxb(xs), dwb(ws), dwb_only(ws);
  cpu::conv2d_forward(ref, d, xc.data(), wc.data(), yc.data());
  cpu::conv2d_backward(ref, d, xc.data(), wc.data(), dyc.data(), dxc.data(), dwc.data());
  run(ctx, d, xb, wb, dyb, yb, dxb, dwb, dwb_only);
  NETSPLIT_CHECK_CLOSE(yb.to_host(), yc.to_host(), op_tol);
  NETSPLIT_CHECK_CLOSE(dxb.to_host(), dxc.to_host(), op_tol);
  NETSPLIT_CHECK_CLOSE(dwb.to_host(), dwc.to_host(), op_tol);
  NETSPLIT_CHECK_CLOSE(dwb_only.to_host(), dwc.to_host(), op_tol);
}

template <class B>
void convolution_ops() {
  for (const auto& d : conv_shapes)
    conv_against_cpu<B>(d, [](auto& ctx, const conv2d_desc& d, auto& x, auto& w, auto& dy, auto& y, auto& dx, auto& dw,
                              auto& dw_only) {
      B::conv2d_forward(ctx, d, x.data(), w.data(), y.data());
      B::conv2d_backward(ctx, d, x.data(), w.data(), dy.data(), dx.data(), dw.data());
      B::conv2d_backward(ctx, d, x.data(), w.data(), dy.data(), static_cast<float*>(nullptr), dw_only.data());
      // dx_add (here x itself): dx + x, the weight gradient unchanged (tolerances: cuDNN's
      // algorithms need not repeat bit for bit)
      tensor<float, B> dx_plus(x.shape()), dw_plus(w.shape());
      B::conv2d_backward(ctx, d, x.data(), w.data(), dy.data(), dx_plus.data(), dw_plus.data(), x.data());
      auto want = dx.to_host();
      const auto add = x.to_host();
      for (std::size_t i = 0; i < want.size(); ++i) want[i] += add[i];
      NETSPLIT_CHECK_CLOSE(dx_plus.to_host(), want, op_tol);
      NETSPLIT_CHECK_CLOSE(dw_plus.to_host(), dw.to_host(), op_tol);
    });
}

/// The lowering path (im2col + GEMM) in every build, cut into chunks of 2 images.
template <class B>
void lowered_convolution() {
  for (const auto& d : conv_shapes)
    conv_against_cpu<B>(d, [](auto& ctx, const conv2d_desc& d, auto& x, auto& w, auto& dy, auto& y, auto& dx, auto& dw,
                              auto& dw_only) {
      B::lowered_conv_forward(ctx, d, x.data(), w.data(), y.data(), 2);
      B::lowered_conv_backward(ctx, d, x.data(), w.data(), dy.data(), dx.data(), dw.data(), 2);
      B::lowered_conv_backward(ctx, d, x.data(), w.data(), dy.data(), static_cast<float*>(nullptr), dw_only.data(), 2);
    });
}

/// Inference's folded form: batch_norm_fold, then conv2d_forward_affine with each epilogue
/// (shift; shift + ReLU; shift + residual + ReLU; residual alone).
template <class B>
void folded_inference_ops() {
  typename B::context ctx;
  reference_cpu ref;
  for (const auto& d : conv_shapes) {
    INFO("conv batch " << d.batch << " " << d.in_channels << "->" << d.out_channels << " " << d.in_height << "x"
                       << d.in_width << " k" << d.kernel << " s" << d.stride << " p" << d.pad);
    const tensor_shape xs{d.batch, d.in_channels, d.in_height, d.in_width};
    const tensor_shape ys{d.batch, d.out_channels, d.out_height(), d.out_width()};
    const tensor_shape ws{d.out_channels, d.in_channels, d.kernel, d.kernel}, cs{d.out_channels};
    const batch_norm_desc bd{d.batch, d.out_channels, d.out_height() * d.out_width()};
    const auto xv = random_values(static_cast<std::size_t>(xs.numel()), 30);
    const auto wv = random_values(static_cast<std::size_t>(ws.numel()), 31, 0.3);
    const auto rv = random_values(static_cast<std::size_t>(ys.numel()), 32);
    const auto gv = random_values(d.out_channels, 33, 0.3, 1.0), bv = random_values(d.out_channels, 34, 0.3);
    const auto mv = random_values(d.out_channels, 35, 0.2), vv = random_values(d.out_channels, 36, 0.2, 1.0);
    auto run = [&]<class BB>(BB, typename BB::context& cx, int variant) {
      const auto x = make_tensor<float, BB>(xs, xv), w = make_tensor<float, BB>(ws, wv), r = make_tensor<float, BB>(ys, rv);
      const auto g = make_tensor<float, BB>(cs, gv), b = make_tensor<float, BB>(cs, bv);
      const auto m = make_tensor<float, BB>(cs, mv), v = make_tensor<float, BB>(cs, vv);
      tensor<float, BB> wf(ws), shift(cs), y(ys);
      BB::batch_norm_fold(cx, bd, ws.numel() / d.out_channels, w.data(), g.data(), b.data(), m.data(), v.data(),
                          wf.data(), shift.data());
      BB::conv2d_forward_affine(cx, d, x.data(), wf.data(), variant == 3 ? nullptr : shift.data(),
                                variant >= 2 ? r.data() : nullptr, variant == 1 || variant == 2, y.data());
      return std::vector<std::vector<float>>{wf.to_host(), shift.to_host(), y.to_host()};
    };
    for (int variant = 0; variant < 4; ++variant) {
      INFO("epilogue variant " << variant);
      const auto want = run(cpu{}, ref, variant);
      const auto got = run(B{}, ctx, variant);
      NETSPLIT_CHECK_CLOSE(got[0], want[0], elementwise_tol);
      NETSPLIT_CHECK_CLOSE(got[1], want[1], elementwise_tol);
      NETSPLIT_CHECK_CLOSE(got[2], want[2], op_tol);
    }
  }
}

template <class B>
void batch_norm_ops() {
  typename B::context ctx;
  reference_cpu ref;
  for (const auto& d : {batch_norm_desc{4, 6, 25}, batch_norm_desc{2, 3, 1}, batch_norm_desc{8, 16, 64}}) {
    INFO("batch norm " << d.batch << "x" << d.channels << "x" << d.spatial);
    const std::int64_t n = std::int64_t{d.batch} * d.channels * d.spatial;
    const tensor_shape xs{n}, cs{d.channels};
    const auto xv = random_values(n, 20, 2.0, 3.0);  // offset mean: exercises the shifted sums
    const auto dyv = random_values(n, 21);
    const auto gv = random_values(d.channels, 22, 0.3, 1.0), bv = random_values(d.channels, 23, 0.3);
    const auto rmv = random_values(d.channels, 24, 0.1), rvv = random_values(d.channels, 25, 0.1, 1.0);
    auto setup = [&]<class BB>(BB) {
      struct state {
        tensor<float, BB> x, dy, gamma, beta, rm, rv, y, mean, invstd, dx, dgamma, dbeta, dgamma2, dbeta2;
      };
      return state{make_tensor<float, BB>(xs, xv), make_tensor<float, BB>(xs, dyv), make_tensor<float, BB>(cs, gv),
                   make_tensor<float, BB>(cs, bv), make_tensor<float, BB>(cs, rmv), make_tensor<float, BB>(cs, rvv),
                   tensor<float, BB>(xs), tensor<float, BB>(cs), tensor<float, BB>(cs), tensor<float, BB>(xs),
                   tensor<float, BB>(cs), tensor<float, BB>(cs), tensor<float, BB>(cs), tensor<float, BB>(cs)};
    };
    auto c = setup(cpu{});
    auto g = setup(B{});
    auto compare = [&](const char* what) {
      INFO(what);
      NETSPLIT_CHECK_CLOSE(g.y.to_host(), c.y.to_host(), op_tol);
      NETSPLIT_CHECK_CLOSE(g.mean.to_host(), c.mean.to_host(), op_tol);
      NETSPLIT_CHECK_CLOSE(g.invstd.to_host(), c.invstd.to_host(), op_tol);
      NETSPLIT_CHECK_CLOSE(g.rm.to_host(), c.rm.to_host(), op_tol);
      NETSPLIT_CHECK_CLOSE(g.rv.to_host(), c.rv.to_host(), op_tol);
      // In train mode dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)): with few values per
      // channel (2 in the 2x3x1 case, where dx is O(eps / var) of its terms) it is mostly cancellation,
      // so it is compared relative to the size of those terms, max |gamma * invstd * dy|.
      double terms = 0;
      {
        const auto gh = c.gamma.to_host(), ih = c.invstd.to_host(), dh = c.dy.to_host();
        for (std::size_t i = 0; i < dh.size(); ++i) {
          const auto ch = (i / static_cast<std::size_t>(d.spatial)) % static_cast<std::size_t>(d.channels);
          terms = std::max(terms, std::abs(double(gh[ch]) * ih[ch] * dh[i]));
        }
      }
      const double rel_dx = max_rel_to(g.dx.to_host(), c.dx.to_host(), terms);
      INFO("dx difference " << rel_dx << " relative to max |gamma * invstd * dy| = " << terms);
      CHECK(rel_dx <= op_tol);
      NETSPLIT_CHECK_CLOSE(g.dgamma.to_host(), c.dgamma.to_host(), op_tol);
      NETSPLIT_CHECK_CLOSE(g.dbeta.to_host(), c.dbeta.to_host(), op_tol);
      NETSPLIT_CHECK_CLOSE(g.dgamma2.to_host(), c.dgamma.to_host(), op_tol);
      NETSPLIT_CHECK_CLOSE(g.dbeta2.to_host(), c.dbeta.to_host(), op_tol);
    };
    // train mode: batch statistics, running update, gradients through the statistics
    auto train = [&]<class BB>(BB, auto& s, typename BB::context& cx) {
      BB::batch_norm_forward_train(cx, d, s.x.data(), s.gamma.data(), s.beta.data(), s.y.data(), s.mean.data(),
                                   s.invstd.data(), s.rm.data(), s.rv.data());
      BB::batch_norm_backward(cx, d, true, s.x.data(), s.gamma.data(), s.mean.data(), s.invstd.data(), s.dy.data(),
                              s.dx.data(), s.dgamma.data(), s.dbeta.data());
      BB::batch_norm_backward(cx, d, true, s.x.data(), s.gamma.data(), s.mean.data(), s.invstd.data(), s.dy.data(),
                              static_cast<float*>(nullptr), s.dgamma2.data(), s.dbeta2.data());
    };
    train(cpu{}, c, ref);
    train(B{}, g, ctx);
    compare("train");
    // eval mode: running statistics are constants
    auto eval = [&]<class BB>(BB, auto& s, typename BB::context& cx) {
      BB::batch_norm_forward_eval(cx, d, s.x.data(), s.gamma.data(), s.beta.data(), s.rm.data(), s.rv.data(),
                                  s.y.data(), s.mean.data(), s.invstd.data());
      BB::batch_norm_backward(cx, d, false, s.x.data(), s.gamma.data(), s.mean.data(), s.invstd.data(), s.dy.data(),
                              s.dx.data(), s.dgamma.data(), s.dbeta.data());
      BB::batch_norm_backward(cx, d, false, s.x.data(), s.gamma.data(), s.mean.data(), s.invstd.data(), s.dy.data(),
                              static_cast<float*>(nullptr), s.dgamma2.data(), s.dbeta2.data());
    };
    eval(cpu{}, c, ref);
    eval(B{}, g, ctx);
    compare("eval");
  }
}

template <class B>
void channel_scatter_ops() {
  typename B::context ctx;
  reference_cpu ref;
  // duplicated destination, a source used twice, an output channel nobody writes
  const std::vector<int> src{0, 1, 2, 0, 2}, dst{1, 1, 3, 4, 0};
  const std::vector<float> coef{0.5f, 0.5f, -2.f, 1.f, 1.f};
  for (const auto& [h, stride] : {std::pair{6, 2}, std::pair{5, 2}, std::pair{4, 1}}) {
    INFO("scatter " << h << "x" << h << " stride " << stride);
    const channel_scatter_desc d{3, 3, 6, h, h, stride, 5};
    const int ho = (h - 1) / stride + 1;
    const tensor_shape xs{3, 3, h, h}, ys{3, 6, ho, ho};
    const auto xv = random_values(static_cast<std::size_t>(xs.numel()), 30);
    const auto dyv = random_values(static_cast<std::size_t>(ys.numel()), 31);
    auto run = [&]<class BB>(BB, typename BB::context& cx) {
      const auto x = make_tensor<float, BB>(xs, xv), dy = make_tensor<float, BB>(ys, dyv);
      const auto s = make_tensor<int, BB>({5}, src), t = make_tensor<int, BB>({5}, dst);
      const auto c = make_tensor<float, BB>({5}, coef);
      tensor<float, BB> y(ys, 7.f), dx(xs, 7.f);  // garbage in: outputs are overwritten
      BB::channel_scatter_forward(cx, d, x.data(), s.data(), t.data(), c.data(), y.data());
      BB::channel_scatter_backward(cx, d, dy.data(), s.data(), t.data(), c.data(), dx.data());
      return std::pair{y.to_host(), dx.to_host()};
    };
    const auto want = run(cpu{}, ref);
    const auto got = run(B{}, ctx);
    NETSPLIT_CHECK_CLOSE(got.first, want.first, elementwise_tol);
    NETSPLIT_CHECK_CLOSE(got.second, want.second, elementwise_tol);
  }
}

template <class B>
void pooling_linear_loss_sgd_ops() {
  typename B::context ctx;
  reference_cpu ref;
  const int n = 5, c = 7, spatial = 9, in = 7, out = 11;
  const auto xv = random_values(n * c * spatial, 40), pv = random_values(n * c, 41);
  const auto wv = random_values(out * in, 42, 0.4), bv = random_values(out, 43), dyv = random_values(n * out, 44);
  const std::vector<int> labels{0, 10, 3, 3, 7};
  const auto mv = random_values(out * in, 45, 0.1);
  auto run = [&]<class BB>(BB, typename BB::context& cx) {
    std::vector<std::vector<float>> r;
    const auto x = make_tensor<float, BB>({n * c * spatial}, xv), dp = make_tensor<float, BB>({n * c}, pv);
    tensor<float, BB> pooled({n * c}), dx({n * c * spatial});
    BB::global_avg_pool_forward(cx, n * c, spatial, x.data(), pooled.data());
    BB::global_avg_pool_backward(cx, n * c, spatial, dp.data(), dx.data());
    r.push_back(pooled.to_host());
    r.push_back(dx.to_host());
    const auto lx = make_tensor<float, BB>({n, in}, random_values(n * in, 46));
    auto w = make_tensor<float, BB>({out, in}, wv);
    const auto b = make_tensor<float, BB>({out}, bv), dy = make_tensor<float, BB>({n, out}, dyv);
    tensor<float, BB> y({n, out}), ldx({n, in}), dw({out, in}), db({out}), dw2({out, in}), db2({out});
    BB::linear_forward(cx, n, in, out, lx.data(), w.data(), b.data(), y.data());
    BB::linear_backward(cx, n, in, out, lx.data(), w.data(), dy.data(), ldx.data(), dw.data(), db.data());
    BB::linear_backward(cx, n, in, out, lx.data(), w.data(), dy.data(), static_cast<float*>(nullptr), dw2.data(),
                        db2.data());
    for (auto* t : {&y, &ldx, &dw, &db, &dw2, &db2}) r.push_back(t->to_host());
    const auto lab = make_tensor<int, BB>({n}, labels);
    tensor<float, BB> dlogits({n, out});
    const double loss = BB::softmax_cross_entropy(cx, n, out, y.data(), lab.data(), dlogits.data());
    r.push_back({static_cast<float>(loss)});
    r.push_back(dlogits.to_host());
    for (bool nesterov : {false, true}) {
      auto m = make_tensor<float, BB>({out, in}, mv);
      auto w2 = w;
      BB::sgd_step(cx, out * in, w2.data(), dw.data(), m.data(), 0.1f, 0.9f, 1e-4f, nesterov);
      BB::sgd_step(cx, out * in, w2.data(), dw.data(), m.data(), 0.05f, 0.9f, 1e-4f, nesterov);
      r.push_back(w2.to_host());
      r.push_back(m.to_host());
    }
    return r;
  };
  check_all_close(run(B{}, ctx), run(cpu{}, ref), op_tol, "pool/linear/loss/sgd");
}

// ---- layers: forward and backward of each against the CPU backend ---------------------------

/// Runs layer L on both backends from the same parameters, input and output gradient, in
/// the given phase; compares output, input gradient, parameter gradients and buffers.
template <template <class, class> class L, class B>
void compare_layer(phase p, std::uint64_t seed, double tol = op_tol) {
  using LC = L<float, cpu>;
  using LB = L<float, B>;
  typename B::context ctx;
  reference_cpu ref;
  LC lc;
  LB lb;
  rng r(seed);
  if constexpr (Initializable<LC>) lc.initialize(r);
  // non-trivial BN affine parameters and running statistics
  auto perturb = [&](auto& t) {
    auto v = t.to_host();
    for (auto& x : v) x += 0.3f * static_cast<float>(r.normal());
    t.from_host(v);
  };
  if constexpr (HasParameters<LC>)
    lc.visit_parameters([&](const std::string& n, auto& w, auto&) {
      if (n.find("bn") != std::string::npos || w.rank() == 1) perturb(w);
    });
  if constexpr (HasBuffers<LC>)
    lc.visit_buffers([&](const std::string& n, auto& b) {
      perturb(b);
      if (n.find("var") != std::string::npos) {
        auto v = b.to_host();
        for (auto& x : v) x = std::abs(x) + 0.5f;
        b.from_host(v);
      }
    });
  copy_state(lc, lb);
  constexpr auto in = LC::input_shape;
  constexpr auto out = LC::output_shape;
  const int n = 4;
  const tensor_shape xs{n, in.channels, in.height, in.width}, ys{n, out.channels, out.height, out.width};
  const auto xv = random_values(static_cast<std::size_t>(xs.numel()), seed + 1);
  const auto dyv = random_values(static_cast<std::size_t>(ys.numel()), seed + 2);
  const auto xc = make_tensor<float, cpu>(xs, xv), dyc = make_tensor<float, cpu>(ys, dyv);
  const auto xb = make_tensor<float, B>(xs, xv), dyb = make_tensor<float, B>(ys, dyv);
  NETSPLIT_CHECK_CLOSE(lb.forward(ctx, xb, p).to_host(), lc.forward(ref, xc, p).to_host(), tol);
  NETSPLIT_CHECK_CLOSE(lb.backward(ctx, dyb, true).to_host(), lc.backward(ref, dyc, true).to_host(), tol);
  check_all_close(grads_of(lb), grads_of(lc), tol, "parameter gradient");
  check_all_close(state_of(lb), state_of(lc), tol, "parameters and buffers after the pass");
}

template <class T, class B> using conv3_s1 = conv2d_layer<T, B, fmap_shape{5, 8, 8}, 6, 3, 1, 1>;
template <class T, class B> using conv3_s2 = conv2d_layer<T, B, fmap_shape{4, 8, 8}, 8, 3, 2, 1>;
template <class T, class B> using conv1_s2 = conv2d_layer<T, B, fmap_shape{4, 8, 8}, 8, 1, 2, 0>;
template <class T, class B> using bn_layer = batch_norm_layer<T, B, fmap_shape{6, 5, 5}>;
template <class T, class B> using relu6 = relu_layer<T, B, fmap_shape{6, 5, 5}>;
template <class T, class B> using pool6 = global_avg_pool_layer<T, B, fmap_shape{6, 5, 5}>;
template <class T, class B> using maxpool6 = max_pool2x2_layer<T, B, fmap_shape{6, 6, 4}>;
template <class T, class B>
using small_vgg = sequential_layer<T, B, fmap_shape{3, 8, 8}, conv3x3<4>, batch_norm, relu, max_pool2x2, conv3x3<6>,
                                   batch_norm, relu, max_pool2x2, global_avg_pool, linear<5>>;
template <class T, class B> using fc = linear_layer<T, B, fmap_shape{6, 1, 1}, 10>;
template <class T, class B> using short_a = shortcut_a_layer<T, B, fmap_shape{4, 8, 8}, 8, 2>;
template <class T, class B> using short_b = shortcut_b_layer<T, B, fmap_shape{4, 8, 8}, 8, 2>;
template <class T, class B> using block_id = basic_block_layer<T, B, fmap_shape{4, 8, 8}, 4, 1, shortcut_a>;
template <class T, class B> using block_a = basic_block_layer<T, B, fmap_shape{4, 8, 8}, 8, 2, shortcut_a>;
template <class T, class B> using block_b = basic_block_layer<T, B, fmap_shape{4, 8, 8}, 8, 2, shortcut_b>;
template <class T, class B>
using small_stack = sequential_layer<T, B, fmap_shape{3, 8, 8}, conv3x3<4>, batch_norm, relu, basic_block<8, 2>,
                                     global_avg_pool, linear<5>>;

}  // namespace
}  // namespace netsplit_test

using namespace netsplit_test;

TEST_CASE("cuda backend: memory, copies and explicit transfers") { memory_and_transfers<backend_under_test>(); }
TEST_CASE("cuda backend: element-wise operations and all_finite") { elementwise_ops<backend_under_test>(); }
TEST_CASE("cuda backend: convolution forward/backward match the CPU backend (1e-4)") {
  convolution_ops<backend_under_test>();
}
TEST_CASE("cuda backend: the lowered convolution in chunks matches the CPU backend (1e-4)") {
  lowered_convolution<backend_under_test>();
}
TEST_CASE("cuda backend: folded inference (batch_norm_fold, conv2d_forward_affine) matches the CPU backend") {
  folded_inference_ops<backend_under_test>();
}
TEST_CASE("cuda backend: batch norm train/eval forward and backward match the CPU backend") {
  batch_norm_ops<backend_under_test>();
}
TEST_CASE("cuda backend: channel scatter forward/backward") { channel_scatter_ops<backend_under_test>(); }
TEST_CASE("cuda backend: pooling, linear, softmax cross-entropy, SGD") {
  pooling_linear_loss_sgd_ops<backend_under_test>();
}
TEST_CASE("cuda backend: each layer's forward/backward matches the CPU backend") {
  for (phase p : {phase::train, phase::eval}) {
    INFO((p == phase::train ? "train" : "eval"));
    SUBCASE("conv3x3 stride 1") { compare_layer<conv3_s1, backend_under_test>(p, 100); }
    SUBCASE("conv3x3 stride 2") { compare_layer<conv3_s2, backend_under_test>(p, 101); }
    SUBCASE("conv1x1 stride 2") { compare_layer<conv1_s2, backend_under_test>(p, 102); }
    SUBCASE("batch norm") { compare_layer<bn_layer, backend_under_test>(p, 103); }
    SUBCASE("relu") { compare_layer<relu6, backend_under_test>(p, 104); }
    SUBCASE("global average pool") { compare_layer<pool6, backend_under_test>(p, 105); }
    SUBCASE("2x2 max pool") { compare_layer<maxpool6, backend_under_test>(p, 113); }
    SUBCASE("a small VGG-like network") { compare_layer<small_vgg, backend_under_test>(p, 114); }
    SUBCASE("linear") { compare_layer<fc, backend_under_test>(p, 106); }
    SUBCASE("shortcut A") { compare_layer<short_a, backend_under_test>(p, 107); }
    SUBCASE("shortcut B") { compare_layer<short_b, backend_under_test>(p, 108); }
    SUBCASE("basic block, identity") { compare_layer<block_id, backend_under_test>(p, 109); }
    SUBCASE("basic block, option A") { compare_layer<block_a, backend_under_test>(p, 110); }
    SUBCASE("basic block, option B") { compare_layer<block_b, backend_under_test>(p, 111); }
    SUBCASE("a small sequential network") { compare_layer<small_stack, backend_under_test>(p, 112); }
  }
}
