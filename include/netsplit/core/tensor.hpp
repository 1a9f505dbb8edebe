// netsplit/core/tensor.hpp — owning tensor<T, B> and non-owning tensor_view<T, B>.
// Storage is allocated through the backend B (aligned host memory for cpu_backend,
// device memory for cuda_backend), so the backend is part of the type: a cpu tensor and a
// cuda tensor cannot be mixed, and moving data between them is an explicit copy.
// resize() keeps the allocation when it is large enough, so a training step that reuses
// its tensors allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/shape.hpp"

namespace netsplit {

template <class T, class B>
class tensor_view {
 public:
  using value_type = T;
  using backend_type = B;
  tensor_view() = default;
  tensor_view(T* data, tensor_shape shape) : data_(data), shape_(shape) {}
  T* data() const { return data_; }
  const tensor_shape& shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::int64_t dim(int i) const { return shape_[i]; }

 private:
  T* data_ = nullptr;
  tensor_shape shape_{};
};

template <class T, class B>
class tensor {
 public:
  using value_type = T;
  using backend_type = B;

  tensor() = default;
  explicit tensor(tensor_shape shape) { resize(shape); }
  tensor(tensor_shape shape, T value) {
    resize(shape);
    fill(value);
  }
  ~tensor() { release(); }

  tensor(const tensor& o) {
    resize(o.shape_);
    if (o.numel() > 0) B::template copy<T>(o.data_, data_, static_cast<std::size_t>(o.numel()));
  }
  tensor& operator=(const tensor& o) {
    if (this != &o) {
      resize(o.shape_);
      if (o.numel() > 0) B::template copy<T>(o.data_, data_, static_cast<std::size_t>(o.numel()));
    }
    return *this;
  }
  tensor(tensor&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        capacity_(std::exchange(o.capacity_, 0)),
        shape_(std::exchange(o.shape_, tensor_shape{})) {}
  tensor& operator=(tensor&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      capacity_ = std::exchange(o.capacity_, 0);
      shape_ = std::exchange(o.shape_, tensor_shape{});
    }
    return *this;
  }

  /// Sets the shape; reallocates only when the current allocation is too small.
  /// Contents are unspecified after a resize that changes numel.
  void resize(tensor_shape shape) {
    const auto n = static_cast<std::size_t>(shape.numel());
    if (n > capacity_) {
      release();
      data_ = B::template allocate<T>(n);
      capacity_ = n;
    }
    shape_ = shape;
  }

  void fill(T value) {
    if (numel() > 0) B::template fill<T>(data_, static_cast<std::size_t>(numel()), value);
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  const tensor_shape& shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::int64_t dim(int i) const { return shape_[i]; }
  int rank() const { return shape_.rank(); }
  bool empty() const { return numel() == 0; }

  tensor_view<T, B> view() { return {data_, shape_}; }
  tensor_view<const T, B> view() const { return {data_, shape_}; }

  /// Copies the contents to host memory (a plain copy for host backends).
  std::vector<T> to_host() const {
    std::vector<T> out(static_cast<std::size_t>(numel()));
    if (!out.empty()) B::template copy_to_host<T>(data_, out.data(), out.size());
    return out;
  }
  /// Replaces the contents from host memory; the element count must match the shape.
  void from_host(std::span<const T> values) {
    NETSPLIT_EXPECT(static_cast<std::int64_t>(values.size()) == numel(), "from_host got ",
                    values.size(), " values for a tensor of shape ", shape_, " (", numel(),
                    " elements)");
    if (!values.empty()) B::template copy_from_host<T>(values.data(), data_, values.size());
  }
  static tensor from_host(tensor_shape shape, std::span<const T> values) {
    tensor t(shape);
    t.from_host(values);
    return t;
  }

 private:
  void release() noexcept {
    if (data_) B::template deallocate<T>(data_, capacity_);
    data_ = nullptr;
    capacity_ = 0;
  }
  T* data_ = nullptr;
  std::size_t capacity_ = 0;
  tensor_shape shape_{};
};

}  // namespace netsplit
