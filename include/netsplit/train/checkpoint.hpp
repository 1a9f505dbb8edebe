// netsplit/train/checkpoint.hpp — the network and optimizer part of a checkpoint.
// A checkpoint is a safetensors file: parameters as "param/<name>", BatchNorm running
// statistics as "buffer/<name>", momentum buffers as "momentum/<name>", and in
// __metadata__ the format tag, the architecture, and whatever the trainer and its
// extensions add (iteration, data-loader and RNG state, schedule, split history, TPM).
// Any tool that reads safetensors can read the weights.
#pragma once

#include <charconv>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/io/safetensors.hpp"
#include "netsplit/models/resnet.hpp"
#include "netsplit/train/sgd.hpp"

namespace netsplit::checkpoint {

inline constexpr const char* format_tag = "netsplit-checkpoint-1";

template <class T, class B>
io::tensor_record record_of(const tensor<T, B>& t) {
  std::vector<std::int64_t> shape;
  for (int i = 0; i < t.rank(); ++i) shape.push_back(t.dim(i));
  const auto host = t.to_host();
  return io::tensor_record::from<T>(shape, std::span<const T>(host));
}

/// Metadata value, or io_error naming the file and the missing key.
inline const std::string& meta(const io::safetensors_file& f, const std::string& key, const std::string& where) {
  const auto it = f.metadata.find(key);
  if (it == f.metadata.end())
    detail::raise<io_error>("netsplit: checkpoint ", where, " has no '", key, "' entry in its metadata");
  return it->second;
}

inline void expect_meta(const io::safetensors_file& f, const std::string& key, const std::string& expected,
                        const std::string& where) {
  const auto& got = meta(f, key, where);
  if (got != expected)
    detail::raise<io_error>("netsplit: checkpoint ", where, " has ", key, " = '", got, "' but this run expects '",
                            expected, "'");
}

inline std::int64_t parse_int(const std::string& text, const char* what, const std::string& where) {
  std::int64_t v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 0)
    detail::raise<io_error>("netsplit: checkpoint ", where, " has a bad ", what, " '", text,
                            "' (expected a non-negative integer)");
  return v;
}

/// Parameters, buffers and momentum of net/opt as a safetensors file (no trainer state).
template <class Net, class T, class B>
io::safetensors_file capture(Net& net, const sgd<T, B>& opt) {
  io::safetensors_file f;
  f.metadata["netsplit.format"] = format_tag;
  f.metadata["netsplit.architecture"] = Net::architecture();
  net.visit_parameters([&](const std::string& n, tensor<T, B>& w, tensor<T, B>&) { f.tensors["param/" + n] = record_of(w); });
  net.visit_buffers([&](const std::string& n, tensor<T, B>& b) { f.tensors["buffer/" + n] = record_of(b); });
  for (const auto& [n, m] : opt.momentum()) f.tensors["momentum/" + n] = record_of(m);
  return f;
}

/// Throws io_error unless f holds every parameter and buffer of net with its current shape,
/// written for the same architecture. Changes nothing.
template <class Net>
void check_compatible(const io::safetensors_file& f, Net& net, const std::string& where) {
  using T = typename Net::scalar_type;
  using B = typename Net::backend_type;
  expect_meta(f, "netsplit.format", format_tag, where);
  expect_meta(f, "netsplit.architecture", Net::architecture(), where);
  auto check = [&](const std::string& key, const tensor<T, B>& t) {
    const auto it = f.tensors.find(key);
    if (it == f.tensors.end()) detail::raise<io_error>("netsplit: checkpoint ", where, " lacks tensor '", key, "'");
    const auto& r = it->second;
    if (r.type != io::dtype_of<T>::value)
      detail::raise<io_error>("netsplit: checkpoint ", where, " stores '", key, "' with another scalar type");
    std::vector<std::int64_t> shape;
    for (int i = 0; i < t.rank(); ++i) shape.push_back(t.dim(i));
    if (r.shape != shape) {
      std::string got;
      for (auto d : r.shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
      detail::raise<io_error>("netsplit: checkpoint ", where, " has '", key, "' of shape [", got,
                              "] but the network has ", t.shape(),
                              " (different widths: was it grown by splits that were not replayed?)");
    }
  };
  net.visit_parameters([&](const std::string& n, tensor<T, B>& w, tensor<T, B>&) { check("param/" + n, w); });
  net.visit_buffers([&](const std::string& n, tensor<T, B>& b) { check("buffer/" + n, b); });
  for (const auto& [key, r] : f.tensors) {
    if (key.rfind("momentum/", 0) != 0) continue;
    if (r.type != io::dtype_of<T>::value)
      detail::raise<io_error>("netsplit: checkpoint ", where, " stores '", key, "' with another scalar type");
  }
}

/// Copies parameters, buffers and momentum from f into net and opt. Call check_compatible
/// first: restore assumes f matches.
template <class Net, class T, class B>
void restore(const io::safetensors_file& f, Net& net, sgd<T, B>& opt, const std::string& where) {
  check_compatible(f, net, where);
  net.visit_parameters([&](const std::string& n, tensor<T, B>& w, tensor<T, B>& g) {
    w.from_host(f.at("param/" + n).template as<T>());
    g.fill(T(0));
  });
  net.visit_buffers([&](const std::string& n, tensor<T, B>& b) { b.from_host(f.at("buffer/" + n).template as<T>()); });
  opt.momentum().clear();
  net.visit_parameters([&](const std::string& n, tensor<T, B>& w, tensor<T, B>&) {
    const auto it = f.tensors.find("momentum/" + n);
    if (it == f.tensors.end()) return;  // saved before the first step
    tensor<T, B> m(w.shape());
    if (static_cast<std::int64_t>(it->second.template as<T>().size()) != w.numel())
      detail::raise<io_error>("netsplit: checkpoint ", where, " has momentum for '", n, "' of the wrong size");
    m.from_host(it->second.template as<T>());
    opt.momentum().emplace(n, std::move(m));
  });
}

}  // namespace netsplit::checkpoint
