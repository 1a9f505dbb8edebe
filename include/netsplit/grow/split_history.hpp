// netsplit/grow/split_history.hpp — the split history of a training run, carried in the
// trainer's checkpoints as a section ("netsplit.splits", one line per split; see
// split/history.hpp). Loading a grown checkpoint validates its history by replaying it on
// a fresh network (so the file's tensors are checked against the widths it implies before
// anything changes), then grows the training network the same way.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/io/safetensors.hpp"
#include "netsplit/models/network.hpp"
#include "netsplit/split/apply.hpp"
#include "netsplit/split/history.hpp"
#include "netsplit/train/checkpoint.hpp"

namespace netsplit {

template <Network Net>
class split_history {
 public:
  /// Every split applied to the network so far, in order.
  const std::vector<split_record>& records() const { return records_; }
  void add(split_record r) { records_.push_back(std::move(r)); }

  /// Saves and restores the history with tr's checkpoints, replaying it onto tr's network
  /// on load. The history must outlive tr.
  template <class Trainer>
  void attach(Trainer& tr) {
    tr.add_section(section(tr.net()));
  }

  /// The history's part of a checkpoint of `net`.
  checkpoint_section<Net> section(Net& net) {
    auto staged = std::make_shared<std::vector<split_record>>();
    checkpoint_section<Net> s;
    s.name = "splits";
    s.save = [this](io::safetensors_file& f) { f.metadata[key] = serialize_history(records_); };
    s.validate = [this, staged](const io::safetensors_file& f, const std::string& where) {
      const auto it = f.metadata.find(key);
      *staged = it == f.metadata.end() ? std::vector<split_record>{} : parse_history(it->second, where);
      if (*staged != records_ && !records_.empty())
        detail::raise<io_error>("netsplit: checkpoint ", where, " has a different split history than this network (",
                                staged->size(), " vs ", records_.size(), " splits)");
    };
    s.reshape = [this, staged](const io::safetensors_file&, const std::string& where, Net& fresh) {
      if (*staged == records_) return false;
      replay_history(fresh, *staged, where);
      return true;
    };
    s.apply = [this, staged, &net](const io::safetensors_file&, const std::string& where) {
      if (*staged == records_) return;
      replay_history(net, *staged, where);
      records_ = *staged;
    };
    return s;
  }

  static constexpr const char* key = "netsplit.splits";

 private:
  std::vector<split_record> records_;
};

}  // namespace netsplit
