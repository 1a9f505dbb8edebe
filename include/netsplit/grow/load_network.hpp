// netsplit/grow/load_network.hpp — a trained or grown network from a checkpoint, outside
// a trainer: for inference, evaluation or fine-tuning with your own loop.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/core/shape.hpp"
#include "netsplit/data/normalization.hpp"
#include "netsplit/grow/split_history.hpp"
#include "netsplit/io/safetensors.hpp"
#include "netsplit/models/network.hpp"
#include "netsplit/split/apply.hpp"
#include "netsplit/split/history.hpp"
#include "netsplit/train/checkpoint.hpp"
#include "netsplit/train/optimizer.hpp"

namespace netsplit {

/// Loads a checkpoint's parameters and batch-norm statistics into `net`, which must be the
/// model the file was written for (same type, classes and width multiplier) at its
/// initial widths: a grown network's split history is replayed first, so `net` takes the
/// grown widths. The optimizer and trainer state in the file are ignored. Returns the input
/// normalisation the run trained with (nullopt for files written before checkpoints
/// recorded it). Throws io_error naming the file for a damaged file or another model,
/// and changes nothing then.
template <Network Net>
std::optional<channel_stats> load_network(Net& net, const std::filesystem::path& path) {
  using T = typename Net::scalar_type;
  using B = typename Net::backend_type;
  const auto f = io::read_file(path, io::read_options{.require_checksum = true});
  const auto where = path.string();
  checkpoint::expect_meta(f, "netsplit.format", checkpoint::format_tag, where);
  checkpoint::expect_meta(f, "netsplit.architecture", net.architecture(), where);
  std::vector<split_record> history;
  if (const auto h = f.metadata.find(split_history<Net>::key); h != f.metadata.end())
    history = parse_history(h->second, where);
  std::optional<channel_stats> stats;
  if (const auto n = f.metadata.find("netsplit.normalization"); n != f.metadata.end()) {
    stats = parse_channel_stats(n->second);
    if (!stats)
      detail::raise<io_error>("netsplit: checkpoint ", where, " has a malformed netsplit.normalization '", n->second,
                              "'");
  }
  // Validate on a scratch network at the same initial widths, then change `net`.
  Net fresh(0, net.width());
  {
    std::vector<tensor_shape> want, have;
    fresh.visit_parameters([&](const std::string&, tensor<T, B>& w, tensor<T, B>&) { want.push_back(w.shape()); });
    net.visit_parameters([&](const std::string&, tensor<T, B>& w, tensor<T, B>&) { have.push_back(w.shape()); });
    NETSPLIT_EXPECT(want == have, "load_network needs the network at its initial widths (a new ", net.architecture(),
                    "); this one has been grown");
  }
  replay_history(fresh, history, where);
  checkpoint::check_compatible(f, fresh, where, /*state_slots=*/{});
  replay_history(net, history, where);
  optimizer_state<T, B> no_state{{}};  // the file's optimizer state is not read
  checkpoint::restore(f, net, no_state, where);
  return stats;
}

}  // namespace netsplit
