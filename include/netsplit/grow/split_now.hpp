// netsplit/grow/split_now.hpp — "split K filters now": scores from a TPM recorder, a
// selector, a strategy; applied to a training network together with its optimizer state,
// recorded in the run's split history, reported as a split_event.
#pragma once

#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "netsplit/grow/split_history.hpp"
#include "netsplit/models/structure.hpp"
#include "netsplit/split/apply.hpp"
#include "netsplit/split/selector.hpp"
#include "netsplit/tpm/recorder.hpp"
#include "netsplit/tpm/scores.hpp"
#include "netsplit/train/trainer.hpp"

namespace netsplit {

/// Which sites may be split: "all", "inner", "stream", or a comma-separated list of site
/// names (unknown names are a contract_violation listing the known ones).
template <class T, class B>
std::vector<bool> eligible_sites(const std::vector<split_site<T, B>>& sites, const std::string& which) {
  std::vector<bool> ok(sites.size(), false);
  if (which == "all" || which == "inner" || which == "stream") {
    for (std::size_t s = 0; s < sites.size(); ++s)
      ok[s] = which == "all" || (which == "inner") == (sites[s].kind == site_kind::inner);
    return ok;
  }
  std::size_t start = 0;
  while (start <= which.size()) {
    const auto comma = which.find(',', start);
    ok[find_site(sites, which.substr(start, comma == std::string::npos ? std::string::npos : comma - start))] = true;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return ok;
}

namespace detail {
/// split_now's choice: the selector's picks among the eligible sites' scores; `map` gets the
/// recorder's site index of each eligible site (compiled per network and selector).
template <class Net, Selector Sel>
std::vector<split_choice> choose_splits(tpm_recorder<Net>& rec, const Sel& selector, const std::string& which,
                                        const std::vector<site_scores>* scores, std::vector<std::size_t>& map) {
  const auto& sites = rec.sites();
  const auto ok = eligible_sites(sites, which);
  NETSPLIT_EXPECT(scores || rec.observed() > 0, "no TPM scores to split on: the ", rec.metric().name(), " window [",
                  rec.window().begin, ", ", rec.window().end, ") observed no iteration (the run never reached it, or ",
                  "resumed past it from a checkpoint without its TPM state)");
  auto all = scores ? *scores : rec.scores();
  NETSPLIT_EXPECT(all.size() == sites.size(), "split_now got scores for ", all.size(), " sites, the network has ",
                  sites.size());
  std::vector<site_scores> eligible;
  map.clear();
  for (std::size_t s = 0; s < all.size(); ++s)
    if (ok[s]) {
      eligible.push_back(all[s]);
      map.push_back(s);
    }
  return selector.select(eligible);
}

/// split_now's splits of the chosen filters (choices' sites index `map`, which indexes the
/// recorder's sites): compiled per network and strategy, not per selector too.
template <class Net, Communicator C, SplitStrategy S>
std::vector<split_record> split_choices(trainer<Net, C>& tr, split_history<Net>& history, tpm_recorder<Net>& rec,
                                        const std::vector<split_choice>& choices, const std::vector<std::size_t>& map,
                                        const S& strategy, std::uint64_t seed) {
  const auto& sites = rec.sites();
  std::vector<split_record> out;
  std::ostringstream desc;
  // The recorder grows its state with every split of this batch (rec.grow), so a later
  // choice's disagreement direction is read at the current widths: an earlier split that
  // widened this producer's inputs widened the direction as it widened the weights.
  auto direction = [&rec](const std::string& t, int filter) { return rec.direction(t, filter); };
  for (std::size_t k = 0; k < choices.size(); ++k) {
    const auto& c = choices[k];
    const auto& site = sites[map[c.site]];
    auto r = split_filter(tr.net(), site, c.filter, strategy, rng::derive(seed, 5000 + history.records().size()).next_u64(),
                          &tr.optimizer().state(), direction,
                          [&rec](const std::string& p, int axis, int filter, double keep, double copy) {
                            rec.grow(p, axis, filter, keep, copy);
                          });
    r.iteration = tr.iteration();
    r.score = c.score;
    history.add(r);
    out.push_back(r);
    desc << (k ? "\n" : "") << "split " << r.site << " filter " << r.filter << " -> " << r.new_index << " (score "
         << r.score << ", " << r.strategy << ", eps " << r.eps << ")";
  }
  tr.check_replicas();  // data parallel: every process must hold the same grown network
  if (tr.events.on_split) tr.events.on_split({tr.iteration(), desc.str()});
  return out;
}
}  // namespace detail

/// Splits the filters `selector` picks from the recorder's scores (restricted to `which`
/// sites) at the trainer's current iteration and adds them to `history`. `scores`, when
/// given, replaces the recorder's scores for selection (e.g. random scores for a control)
/// while the recorder still supplies what the strategy needs (disagreement directions).
/// Returns the records. In a data-parallel run every process calls it at the same
/// iteration: the scores are the same everywhere (the recorder sums its signals over the
/// processes) and so are the choices and the seeded strategies, so every process makes the
/// same splits (trainer::check_replicas verifies the result).
template <class Net, Communicator C, Selector Sel, SplitStrategy S>
std::vector<split_record> split_now(trainer<Net, C>& tr, split_history<Net>& history, tpm_recorder<Net>& rec,
                                    const Sel& selector, const S& strategy,
                                    std::uint64_t seed, const std::string& which = "all",
                                    const std::vector<site_scores>* scores = nullptr) {
  std::vector<std::size_t> map;
  const auto choices = detail::choose_splits(rec, selector, which, scores, map);
  return detail::split_choices(tr, history, rec, choices, map, strategy, seed);
}

}  // namespace netsplit
