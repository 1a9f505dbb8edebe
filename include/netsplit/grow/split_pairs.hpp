// netsplit/grow/split_pairs.hpp — do split copies diverge? split_pair_monitor follows
// every split pair of a run's history (the original filter and its new copy) and reports
// the cosine similarity and relative distance of their incoming weights: the pair's rows
// over every producer of the site (one conv for an inner site; the stem or shortcut and
// every block's second conv for a residual-stream group). A function-preserving split
// starts the pair at cosine 1 (exact copy) or 1 - O(eps^2) (symmetric noise); copies that
// never move apart leave the grown network a re-parametrisation of the small one.
// attach(trainer) reports at a split iteration (before its update) and every `interval`
// completed iterations through on_report; the library never prints.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/grow/split_history.hpp"
#include "netsplit/models/network.hpp"
#include "netsplit/models/structure.hpp"

namespace netsplit {

/// One split pair at one moment.
struct split_pair_state {
  std::string site;
  int filter = 0;  // the original
  int copy = 0;    // the new filter (the record's new_index)
  std::int64_t split_iteration = 0;
  double cosine = 1;    // cos of the two incoming rows
  double distance = 0;  // ||a - b|| / ((||a|| + ||b||) / 2), 0 when both are 0
};

/// Every pair of the history at iteration `iter` (after `iter` completed updates), in the
/// history's order; min and mean of their cosines (1 without pairs).
struct split_pair_report {
  std::int64_t iter = 0;
  std::vector<split_pair_state> pairs;
  double min_cosine = 1, mean_cosine = 1;
};

template <Network Net>
class split_pair_monitor {
 public:
  /// Follows the pairs of `history` (which must outlive the monitor), reporting every
  /// `interval` >= 1 completed iterations once attached.
  split_pair_monitor(Net& net, const split_history<Net>& history, std::int64_t interval)
      : net_(net), history_(history), interval_(interval), sites_(derive_sites(net)) {
    NETSPLIT_EXPECT(interval >= 1, "split_pair_monitor needs an interval of at least 1 iteration, got ", interval);
  }

  std::function<void(const split_pair_report&)> on_report;

  /// Reports (on_report) before the update of an iteration in which splits were recorded,
  /// and after every `interval`-th completed iteration while the history holds any split.
  /// Attach after the hook that splits (before_iteration hooks run in the order added).
  template <class Trainer>
  void attach(Trainer& tr) {
    tr.before_iteration.add([this](std::int64_t it) {
      const auto& h = history_.records();
      if (std::any_of(h.begin(), h.end(), [&](const split_record& r) { return r.iteration == it; })) report(it);
    });
    tr.after_update.add([this](std::int64_t completed) {
      if (completed % interval_ == 0 && !history_.records().empty()) report(completed);
    });
  }

  /// The pairs now, labelled with iteration `iter`. contract_violation when a record names
  /// a site or filters the network does not have.
  split_pair_report measure(std::int64_t iter) const {
    split_pair_report out;
    out.iter = iter;
    const tensor_index<Net> idx(net_);
    std::map<std::string, std::vector<typename Net::scalar_type>> host;  // each producer copied once
    double sum = 0;
    for (const auto& r : history_.records()) {
      const auto& site = sites_[find_site(sites_, r.site)];
      split_pair_state p;
      p.site = r.site;
      p.filter = r.filter;
      p.copy = r.new_index;
      p.split_iteration = r.iteration;
      double dot = 0, na = 0, nb = 0, d2 = 0;
      for (const auto& n : site.producer_weights) {
        const auto& w = idx.param(n);
        NETSPLIT_EXPECT(r.filter < w.dim(0) && r.new_index < w.dim(0), "split pair ", r.filter, " / ", r.new_index,
                        " of site '", r.site, "' is out of range: '", n, "' has ", w.dim(0), " filters");
        auto [at, fresh] = host.try_emplace(n);
        if (fresh) at->second = w.to_host();
        const auto& h = at->second;
        const auto len = static_cast<std::size_t>(w.numel() / w.dim(0));
        const auto* a = h.data() + static_cast<std::size_t>(r.filter) * len;
        const auto* b = h.data() + static_cast<std::size_t>(r.new_index) * len;
        for (std::size_t i = 0; i < len; ++i) {
          const double x = a[i], y = b[i];
          dot += x * y;
          na += x * x;
          nb += y * y;
          d2 += (x - y) * (x - y);
        }
      }
      const double la = std::sqrt(na), lb = std::sqrt(nb);
      p.cosine = la > 0 && lb > 0 ? dot / (la * lb) : (la == lb ? 1.0 : 0.0);
      p.distance = la + lb > 0 ? std::sqrt(d2) / ((la + lb) / 2) : 0.0;
      sum += p.cosine;
      out.min_cosine = out.pairs.empty() ? p.cosine : std::min(out.min_cosine, p.cosine);
      out.pairs.push_back(std::move(p));
    }
    if (!out.pairs.empty()) out.mean_cosine = sum / static_cast<double>(out.pairs.size());
    return out;
  }

 private:
  void report(std::int64_t iter) {
    if (on_report) on_report(measure(iter));
  }

  Net& net_;
  const split_history<Net>& history_;
  std::int64_t interval_;
  std::vector<split_site<typename Net::scalar_type, typename Net::backend_type>> sites_;
};

}  // namespace netsplit
