// netsplit/train/checkpoint.hpp — the network and optimizer part of a checkpoint, and
// checkpoint_section: a named part that another module owns.
// A checkpoint is a safetensors file: parameters as "param/<name>", BatchNorm running
// statistics as "buffer/<name>", optimizer state as "<slot>/<name>" (SGD: "momentum/"),
// and in __metadata__ the format tag, the architecture, and whatever the trainer and the
// registered sections add (iteration, data-loader and RNG state, schedule; split history,
// TPM state), and the option-A shortcuts' channel maps (netsplit.channel_maps), which split
// replay rebuilds but a tool outside netsplit needs. Any tool that reads safetensors can
// read the weights; python/netsplit_torch.py rebuilds the whole network in PyTorch.
#pragma once

#include <charconv>
#include <cstdio>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/io/safetensors.hpp"
#include "netsplit/layers/layer.hpp"
#include "netsplit/models/network.hpp"
#include "netsplit/train/optimizer.hpp"

namespace netsplit {

/// A part of a checkpoint that a module other than the trainer owns (the split history,
/// the TPM recorder's state), registered with trainer::add_section. Loading is two-phase,
/// so nothing changes unless the whole file fits: every section's validate runs before
/// any section's apply. Any member may be empty.
template <class Net>
struct checkpoint_section {
  std::string name;  // for messages
  /// Adds the section's tensors and metadata to a file being written.
  std::function<void(io::safetensors_file&)> save;
  /// Throws (io_error, naming `where`) when the file does not fit; changes nothing.
  std::function<void(const io::safetensors_file&, const std::string& where)> validate;
  /// When applying will change the network's widths (a split history to replay): makes
  /// the same change to `fresh`, a network at its initial widths, and returns true; the
  /// trainer then checks the file's tensors against `fresh` instead of its network.
  std::function<bool(const io::safetensors_file&, const std::string& where, Net& fresh)> reshape;
  /// Adopts the section's state from a validated file (before the tensors are restored).
  std::function<void(const io::safetensors_file&, const std::string& where)> apply;
};

namespace detail {
/// A network with fixed channel maps (option-A shortcuts) to record.
template <class N>
concept network_has_channel_maps = requires(N& n) { n.visit_channel_maps(channel_map_visitor_archetype{}); };
}  // namespace detail

}  // namespace netsplit

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

/// The network's fixed channel maps (option-A shortcuts) as the JSON object stored under
/// "netsplit.channel_maps": {"<layer>": {"in": C, "out": C', "stride": s, "src": [...],
/// "dst": [...], "coef": [...]}, ...} in visiting order; coefficients with 17 significant
/// digits, so they read back exactly. "{}" for a network without maps (VGG, option B).
template <class Net>
std::string channel_maps_json(Net& net) {
  std::string out = "{";
  if constexpr (netsplit::detail::network_has_channel_maps<Net>) {
    net.visit_channel_maps([&](const std::string& name, const channel_map& m) {
      auto list = [&](const auto& v) {
        std::string s = "[";
        for (std::size_t i = 0; i < v.size(); ++i) {
          char buf[32];
          if constexpr (std::is_same_v<std::decay_t<decltype(v[i])>, double>) std::snprintf(buf, sizeof buf, "%.17g", v[i]);
          else std::snprintf(buf, sizeof buf, "%d", v[i]);
          s += (i ? ", " : "") + std::string(buf);
        }
        return s + "]";
      };
      out += (out.size() > 1 ? ", \"" : "\"") + name + "\": {\"in\": " + std::to_string(m.in_channels) +
             ", \"out\": " + std::to_string(m.out_channels) + ", \"stride\": " + std::to_string(m.stride) +
             ", \"src\": " + list(m.src) + ", \"dst\": " + list(m.dst) + ", \"coef\": " + list(m.coef) + "}";
    });
  }
  return out + "}";
}

/// Parameters, buffers and optimizer state as a safetensors file (no trainer state).
template <class Net, class T, class B>
io::safetensors_file capture(Net& net, const optimizer_state<T, B>& opt) {
  io::safetensors_file f;
  f.metadata["netsplit.format"] = format_tag;
  f.metadata["netsplit.architecture"] = net.architecture();
  f.metadata["netsplit.channel_maps"] = channel_maps_json(net);
  net.visit_parameters([&](const std::string& n, tensor<T, B>& w, tensor<T, B>&) { f.tensors["param/" + n] = record_of(w); });
  net.visit_buffers([&](const std::string& n, tensor<T, B>& b) { f.tensors["buffer/" + n] = record_of(b); });
  opt.for_each([&](const std::string& slot, const std::string& n, const tensor<T, B>& m) {
    f.tensors[slot + "/" + n] = record_of(m);
  });
  return f;
}

/// Throws io_error unless f holds every parameter and buffer of net with its current shape,
/// written for the same architecture, and optimizer state of net's scalar type for the
/// state slots named (SGD's: "momentum"). Changes nothing.
template <class Net>
void check_compatible(const io::safetensors_file& f, Net& net, const std::string& where,
                      const std::vector<std::string>& state_slots = {"momentum"}) {
  using T = typename Net::scalar_type;
  using B = typename Net::backend_type;
  expect_meta(f, "netsplit.format", format_tag, where);
  expect_meta(f, "netsplit.architecture", net.architecture(), where);
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
  // files since the channel maps were recorded: the replayed network's maps must be the writer's
  if (const auto it = f.metadata.find("netsplit.channel_maps"); it != f.metadata.end() && it->second != channel_maps_json(net))
    detail::raise<io_error>("netsplit: checkpoint ", where,
                            " records other option-A shortcut channel maps than this network has after replaying its "
                            "splits (a split history that does not match the file's tensors)");
  for (const auto& slot : state_slots)
    for (const auto& [key, r] : f.tensors) {
      if (key.rfind(slot + "/", 0) != 0) continue;
      if (r.type != io::dtype_of<T>::value)
        detail::raise<io_error>("netsplit: checkpoint ", where, " stores '", key, "' with another scalar type");
    }
}

/// Copies parameters, buffers and optimizer state from f into net and opt. Call
/// check_compatible first: restore assumes f matches.
template <class Net, class T, class B>
void restore(const io::safetensors_file& f, Net& net, optimizer_state<T, B>& opt, const std::string& where) {
  check_compatible(f, net, where, opt.slot_names());
  net.visit_parameters([&](const std::string& n, tensor<T, B>& w, tensor<T, B>& g) {
    w.from_host(f.at("param/" + n).template as<T>());
    g.fill(T(0));
  });
  net.visit_buffers([&](const std::string& n, tensor<T, B>& b) { b.from_host(f.at("buffer/" + n).template as<T>()); });
  opt.clear();
  for (const auto& slot : opt.slot_names())
    net.visit_parameters([&](const std::string& n, tensor<T, B>& w, tensor<T, B>&) {
      const auto it = f.tensors.find(slot + "/" + n);
      if (it == f.tensors.end()) return;  // saved before the first step
      tensor<T, B> m(w.shape());
      if (static_cast<std::int64_t>(it->second.template as<T>().size()) != w.numel())
        detail::raise<io_error>("netsplit: checkpoint ", where, " has ", slot, " for '", n, "' of the wrong size");
      m.from_host(it->second.template as<T>());
      opt.slot(slot).emplace(n, std::move(m));
    });
}

}  // namespace netsplit::checkpoint
