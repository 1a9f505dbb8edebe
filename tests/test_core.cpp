// Core: tensors, errors, the serializable RNG, the thread pool and CPU backend determinism.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "netsplit/netsplit.hpp"

using namespace netsplit;
using ftensor = tensor<float, cpu_backend>;

static_assert(Backend<cpu_backend, float>);
static_assert(Backend<cpu_backend, double>);
struct not_a_backend {
  using context = int;
};
static_assert(!Backend<not_a_backend>);

TEST_CASE("tensor owns aligned storage, copies deeply, reuses its allocation") {
  ftensor t({2, 3, 4, 5}, 1.5f);
  CHECK(t.numel() == 120);
  CHECK(t.rank() == 4);
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  CHECK(t.to_host()[119] == 1.5f);
  ftensor c = t;
  c.data()[0] = 7.f;
  CHECK(t.data()[0] == 1.5f);
  const float* before = t.data();
  t.resize({2, 3, 4, 4});  // smaller: same allocation
  CHECK(t.data() == before);
  ftensor m = std::move(c);
  CHECK(m.data()[0] == 7.f);
  CHECK(c.empty());
  auto v = m.view();
  CHECK(v.shape() == tensor_shape{2, 3, 4, 5});
  CHECK(v.data() == m.data());
}

// The vmflags of the mapping that holds `p`, from /proc/self/smaps ("" where there is none).
static std::string vm_flags_of(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    std::uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " ", &lo, &hi) == 2 && line.find(':') > line.find(' '))
      inside = lo <= at && at < hi;
    else if (inside && line.rfind("VmFlags:", 0) == 0)
      return line.substr(8);
  }
  return "";
}

TEST_CASE("a tensor of a huge page or more starts on one and asks the kernel for huge pages") {
  constexpr std::size_t floats = detail::huge_page_bytes / sizeof(float);
  ftensor small({static_cast<std::int64_t>(floats) - 16});  // below a huge page: cache-line alignment only
  CHECK(reinterpret_cast<std::uintptr_t>(small.data()) % 64 == 0);
  ftensor big({static_cast<std::int64_t>(floats) * 3 / 2});  // 3 MiB: one whole huge page and a tail
  REQUIRE(reinterpret_cast<std::uintptr_t>(big.data()) % detail::huge_page_bytes == 0);
#if defined(__linux__)
  // "hg": the mapping is advised MADV_HUGEPAGE. Only where the kernel has transparent huge pages.
  if (std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled")) {
    std::istringstream flags(vm_flags_of(big.data()));
    std::set<std::string> set{std::istream_iterator<std::string>(flags), std::istream_iterator<std::string>()};
    CHECK(set.count("hg") == 1);
  }
#endif
  big.fill(2.f);  // the memory is ordinary memory either way
  CHECK(big.to_host()[floats] == 2.f);
}

TEST_CASE("tensor from_host rejects a size mismatch with a clear message") {
  ftensor t({2, 2});
  std::vector<float> three(3, 0.f);
  try {
    t.from_host(three);
    FAIL("expected contract_violation");
  } catch (const contract_violation& e) {
    const std::string msg = e.what();
    CHECK(msg.find("3 values") != std::string::npos);
    CHECK(msg.find("[2, 2]") != std::string::npos);
  }
  CHECK_THROWS_AS(tensor_shape({1, 2, 3, 4, 5}), contract_violation);
  CHECK_THROWS_AS(tensor_shape({-1}), contract_violation);
}

TEST_CASE("function_ref calls the callable it refers to, with its arguments and result") {
  int calls = 0;
  std::string seen;
  auto count = [&](const std::string& s, int k) {
    ++calls;
    seen += s;
    return k * 2;
  };
  netsplit::function_ref<int(const std::string&, int)> f(count);
  CHECK(f("a", 3) == 6);
  CHECK(f("b", -4) == -8);
  CHECK(calls == 2);
  CHECK(seen == "ab");
  // a copy refers to the same callable; a const callable and a generic lambda convert too
  const auto copy = f;
  CHECK(copy("c", 1) == 2);
  CHECK(calls == 3);
  const auto twice = [](const std::string&, int k) { return 2 * k; };
  CHECK(netsplit::function_ref<int(const std::string&, int)>(twice)("", 21) == 42);
  int sum = 0;
  auto add = [&](const std::string&, auto k) { sum += k; };  // result discarded: void signature
  netsplit::function_ref<void(const std::string&, int)> g(add);
  g("", 5);
  g("", 7);
  CHECK(sum == 12);
  // (the composite layers' walks through parameter_visitor and buffer_visitor: every
  // parameter's name, order and count in test_models and test_layers)
}

TEST_CASE("the exception hierarchy has one root") {
  CHECK_THROWS_AS(throw contract_violation("x"), error);
  CHECK_THROWS_AS(throw io_error("x"), error);
  CHECK_THROWS_AS(throw backend_error("x"), error);
  CHECK_THROWS_AS(throw divergence_error("x"), error);
  try {
    NETSPLIT_EXPECT(1 + 1 == 3, "arithmetic: got ", 2);
  } catch (const contract_violation& e) {
    const std::string msg = e.what();
    CHECK(msg.find("1 + 1 == 3") != std::string::npos);
    CHECK(msg.find("got 2") != std::string::npos);
  }
}

TEST_CASE("rng: seeded, serializable, resumes the exact stream") {
  rng a(123), b(123), c(124);
  CHECK(a.next_u64() == b.next_u64());
  CHECK(a.next_u64() != c.next_u64());
  for (int i = 0; i < 10; ++i) a.normal();
  const std::string saved = a.serialize();
  std::vector<double> expected;
  for (int i = 0; i < 20; ++i) expected.push_back(a.normal());
  rng resumed = rng::deserialize(saved);
  for (int i = 0; i < 20; ++i) CHECK(resumed.normal() == expected[static_cast<std::size_t>(i)]);
  CHECK_THROWS_AS(rng::deserialize("12 34"), io_error);
  CHECK_THROWS_AS(rng::deserialize("0 0 0 0"), io_error);
  CHECK_THROWS_AS(rng::deserialize("1 2 3 4 5"), io_error);
  CHECK_THROWS_AS(rng::deserialize("zz 1 2 3"), io_error);
}

TEST_CASE("rng distributions have the right moments and ranges") {
  rng r(9);
  double sum = 0, sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double v = r.normal();
    sum += v;
    sq += v * v;
  }
  CHECK(std::abs(sum / n) < 0.01);
  CHECK(std::abs(sq / n - 1.0) < 0.02);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) ++counts[r.uniform_int(7)];
  for (int k : counts) CHECK(std::abs(k - 10000) < 500);
  for (int i = 0; i < 1000; ++i) {
    const double u = r.uniform();
    CHECK((u >= 0.0 && u < 1.0));
  }
}

TEST_CASE("thread pool covers every index once, partitions statically, rethrows") {
  thread_pool pool(3);
  std::vector<std::atomic<int>> hits(101);
  std::vector<int> owner(101, -1);
  pool.parallel_for(101, [&](std::ptrdiff_t b, std::ptrdiff_t e, int t) {
    for (auto i = b; i < e; ++i) {
      ++hits[static_cast<std::size_t>(i)];
      owner[static_cast<std::size_t>(i)] = t;
    }
  });
  for (auto& h : hits) CHECK(h.load() == 1);
  CHECK(owner[0] == 0);
  CHECK(owner[32] == 0);  // 101*1/3 = 33: chunk 0 is [0, 33)
  CHECK(owner[33] == 1);
  CHECK(owner[66] == 1);
  CHECK(owner[67] == 2);
  CHECK(owner[100] == 2);
  CHECK_THROWS_AS(pool.parallel_for(10, [](std::ptrdiff_t b, std::ptrdiff_t, int) {
    if (b > 0) throw io_error("from a worker");
  }), io_error);
  int calls = 0;
  pool.parallel_for(1, [&](std::ptrdiff_t, std::ptrdiff_t, int) { ++calls; });  // still usable
  CHECK(calls == 1);
  CHECK_THROWS_AS(thread_pool(0), contract_violation);
}

TEST_CASE("thread pool's taken-over blocks: every index once, in blocks of the grain, shares taken over") {
  for (const int threads : {1, 3}) {
    thread_pool pool(threads);
    for (const std::ptrdiff_t n : {1, 2, 7, 100, 101}) {
      for (const std::ptrdiff_t grain : {1, 4, 200}) {
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
        std::atomic<int> bad_block{0};
        pool.parallel_for_dynamic(n, grain, [&](std::ptrdiff_t b, std::ptrdiff_t e, int t) {
          if (b % grain != 0 || e != std::min(n, b + grain) || t < 0 || t >= threads) ++bad_block;
          for (auto i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
        });
        CHECK(bad_block.load() == 0);
        for (auto& h : hits) CHECK(h.load() == 1);
      }
    }
  }
  thread_pool pool(3);
  // a thread that stalls on every block it takes runs at most one: the others take over the
  // rest of its share (blocks 3..5 of 9; parallel_for would give it all three)
  std::vector<int> owner(9, -1);
  pool.parallel_for_dynamic(9, 1, [&](std::ptrdiff_t b, std::ptrdiff_t, int t) {
    if (t == 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    owner[static_cast<std::size_t>(b)] = t;
  });
  CHECK(std::count(owner.begin(), owner.end(), 1) <= 1);
  for (int o : owner) CHECK(o >= 0);
  CHECK_THROWS_AS(pool.parallel_for_dynamic(10, 2, [](std::ptrdiff_t b, std::ptrdiff_t, int) {
    if (b == 8) throw io_error("from a block");
  }), io_error);
  std::atomic<long> sum{0};
  pool.parallel_for_dynamic(10, 3, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
    for (auto i = b; i < e; ++i) sum += i;
  });  // still usable
  CHECK(sum.load() == 45);
}

TEST_CASE("thread pool hands off while polling and after sleeping, with idle workers") {
  // Back-to-back calls meet workers that are still polling; calls after a pause longer than
  // the polling meet sleeping workers (woken through the condition variable); calls with
  // fewer indices than threads leave workers idle, which must not run a later call's task
  // twice nor miss one.
  thread_pool pool(3);
  std::atomic<long> sum{0};
  long expect = 0;
  for (int round = 0; round < 2000; ++round) {
    const std::ptrdiff_t n = 1 + round % 5;  // 1..5 indices: 1, 2 or all 3 threads used
    pool.parallel_for(n, [&](std::ptrdiff_t b, std::ptrdiff_t e, int) {
      for (auto i = b; i < e; ++i) sum += i + 1;
    });
    expect += n * (n + 1) / 2;
    if (round % 500 == 499) std::this_thread::sleep_for(thread_pool::spin_time * 5);
  }
  CHECK(sum.load() == expect);
  // a worker's exception after a sleep still reaches the caller, and the pool goes on
  std::this_thread::sleep_for(thread_pool::spin_time * 5);
  CHECK_THROWS_AS(pool.parallel_for(3, [](std::ptrdiff_t b, std::ptrdiff_t, int) {
    if (b == 2) throw io_error("from the last worker");
  }), io_error);
  // the caller's chunk finishes long before the workers': the caller sleeps, then is woken
  std::atomic<int> done{0};
  pool.parallel_for(3, [&](std::ptrdiff_t b, std::ptrdiff_t, int) {
    if (b > 0) std::this_thread::sleep_for(thread_pool::spin_time * 5);
    ++done;
  });
  CHECK(done.load() == 3);
}

/// A thread that spins until it is destroyed: beside a pool's threads on few cores it makes the
/// pool's assignment of blocks to threads change from call to call.
struct spinning_thread {
  std::atomic<bool> stop{false};
  std::thread thread{[this] {
    while (!stop.load(std::memory_order_relaxed)) {
    }
  }};
  spinning_thread() = default;
  spinning_thread(const spinning_thread&) = delete;
  spinning_thread& operator=(const spinning_thread&) = delete;
  ~spinning_thread() {
    stop = true;
    thread.join();
  }
};

TEST_CASE("a convolution's batch-norm sums do not depend on which thread took which block") {
  // The engines' image blocks are taken over by whichever thread is free
  // (parallel_for_dynamic), so the assignment changes from call to call, the more so with a
  // busy thread beside the pool's three; the sums are kept per block and added in image order.
  rng r(5);
  // F(4x4) Winograd; the direct engine (stride 2)
  for (const conv2d_desc d : {conv2d_desc{37, 16, 16, 8, 8, 3, 1, 1}, conv2d_desc{37, 16, 16, 16, 16, 3, 2, 1}}) {
    std::vector<float> x(static_cast<std::size_t>(d.batch * d.in_channels * d.in_height * d.in_width)),
        w(static_cast<std::size_t>(d.weight_count()));
    for (auto* v : {&x, &w})
      for (auto& e : *v) e = static_cast<float>(r.normal());
    cpu_context ctx(3);
    const spinning_thread busy;
    std::vector<float> y(static_cast<std::size_t>(d.batch * d.out_channels * d.out_height() * d.out_width())),
        shift(16), first_shift;
    std::vector<double> s1(16), s2(16), first;
    bool same = true;
    for (int rep = 0; rep < 30; ++rep) {
      cpu_backend::conv2d_forward_sums(ctx, d, x.data(), w.data(), y.data(), shift.data(), s1.data(), s2.data());
      std::vector<double> sums(s1);
      sums.insert(sums.end(), s2.begin(), s2.end());
      if (rep == 0) {
        first = sums;
        first_shift = shift;
      } else {
        same = same && sums == first && shift == first_shift;
      }
    }
    CHECK(same);
    CHECK(first_shift[0] == y[0]);  // image 0's first value
  }
}

TEST_CASE("a convolution's weight gradient does not depend on which thread took which group of images") {
  // The Winograd weight gradients' groups of image chunks are taken over by whichever thread
  // is free (weight_gradient_frame); each group keeps its own partial sum, added in group
  // order. With a busy thread beside the pool's three the assignment changes from call to call.
  rng r(6);
  // F(4x4) with the weight-gradient micro-kernel (16 channels) and with the packed form (32
  // channels on AVX-512; the micro-kernel again where the transposes are scalar); the direct
  // engine (stride 2), whose groups also pack the input gradient's planes
  for (const conv2d_desc d : {conv2d_desc{37, 16, 16, 8, 8, 3, 1, 1}, conv2d_desc{37, 32, 32, 8, 8, 3, 1, 1},
                              conv2d_desc{37, 16, 32, 16, 16, 3, 2, 1}}) {
    std::vector<float> x(static_cast<std::size_t>(d.batch * d.in_channels * d.in_height * d.in_width)),
        w(static_cast<std::size_t>(d.weight_count())),
        dy(static_cast<std::size_t>(d.batch * d.out_channels * d.out_height() * d.out_width()));
    for (auto* v : {&x, &w, &dy})
      for (auto& e : *v) e = static_cast<float>(r.normal());
    cpu_context ctx(3);
    const spinning_thread busy;
    std::vector<float> dx(x.size()), dw(w.size()), first, first_dx;
    bool same = true;
    for (int rep = 0; rep < 30; ++rep) {
      cpu_backend::conv2d_backward(ctx, d, x.data(), w.data(), dy.data(), dx.data(), dw.data());
      if (rep == 0) {
        first = dw;
        first_dx = dx;
      } else {
        same = same && dw == first && dx == first_dx;
      }
    }
    CHECK(same);
    // and it is the weight gradient: against one thread's (one partial sum), to rounding
    cpu_context one(1);
    std::vector<float> dw1(w.size());
    cpu_backend::conv2d_backward(one, d, x.data(), w.data(), dy.data(), dx.data(), dw1.data());
    double worst = 0, scale = 0;
    for (std::size_t i = 0; i < dw.size(); ++i) {
      worst = std::max(worst, double(std::abs(first[i] - dw1[i])));
      scale = std::max(scale, double(std::abs(dw1[i])));
    }
    CHECK(worst <= 1e-5 * scale);
  }
}

TEST_CASE("cpu convolution is bit-reproducible for a fixed thread count") {
  rng r(4);
  conv2d_desc d{6, 8, 16, 12, 12, 3, 1, 1};
  std::vector<float> x(static_cast<std::size_t>(6 * 8 * 144)), w(static_cast<std::size_t>(d.weight_count())),
      dy(static_cast<std::size_t>(6 * 16 * 144));
  for (auto* v : {&x, &w, &dy})
    for (auto& e : *v) e = static_cast<float>(r.normal());
  auto run = [&](int threads) {
    cpu_context ctx(threads);
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size());
    cpu_backend::conv2d_forward(ctx, d, x.data(), w.data(), y.data());
    cpu_backend::conv2d_backward(ctx, d, x.data(), w.data(), dy.data(), dx.data(), dw.data());
    y.insert(y.end(), dx.begin(), dx.end());
    y.insert(y.end(), dw.begin(), dw.end());
    return y;
  };
  const auto a = run(2), b = run(2), one = run(1);
  CHECK(a == b);
  // Across thread counts only the order of the weight-gradient sum differs.
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::abs(a[i] - one[i])));
  CHECK(worst < 1e-3);
}
