// netsplit/grow/growth_plan.hpp — growing a network in rounds. A growth_plan lists the
// rounds (the iteration each splits at, and the TPM window [at − window, at) whose scores
// it spends) and what each round adds: K filters (count mode, top_k); a share of a
// parameter budget (budget mode: from the network's size at the start to a target, e.g.
// the parameters of the same model at a larger width multiplier, spread evenly over the
// rounds; each round spends the gap between its share and the network's size, so a round
// that spent less leaves it to the next; the scores decide where); or per-site target
// widths (widths mode: each round adds to every site its share of the way to the target,
// ceil(gap / rounds left), the site's best-scored filters; the grown network ends with
// exactly the target's shapes, e.g. the model at a larger width multiplier). grow_round runs one round on a training network:
// scores (normalised), selection, splits with their optimizer state and TPM state, the
// history record, and the recorder moved on to the next round's window.
// Plans that cannot be met are contract_violations before training starts (check_plan).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"
#include "netsplit/grow/split_history.hpp"
#include "netsplit/grow/split_now.hpp"
#include "netsplit/models/network.hpp"
#include "netsplit/models/structure.hpp"
#include "netsplit/split/budget.hpp"
#include "netsplit/split/normalisation.hpp"
#include "netsplit/split/strategy.hpp"
#include "netsplit/split/top_k.hpp"
#include "netsplit/tpm/recorder.hpp"
#include "netsplit/train/trainer.hpp"

namespace netsplit {

struct growth_round {
  std::int64_t at = 0;  // split before this iteration runs
  tpm_window window;    // scores from [at - window, at)
};

enum class growth_mode { count, budget, widths };

struct growth_plan {
  std::vector<growth_round> rounds;
  growth_mode mode = growth_mode::count;
  int count = 0;                      // count mode: filters per round
  std::int64_t start_params = 0;      // budget mode: the network's size before round 0
  std::int64_t target_params = 0;     // budget mode: its size after the last round
  std::map<std::string, int> target_widths;  // widths mode: per site name
  bool budget_mode() const { return mode == growth_mode::budget; }

  /// Widths mode: filters round r adds to a site of `width` whose target is `target`.
  int quota(std::size_t r, int width, int target) const {
    const auto left = static_cast<int>(rounds.size() - std::min(r, rounds.size()));
    return left <= 0 || target <= width ? 0 : (target - width + left - 1) / left;
  }

  /// Parameters round r may add when the network has `current`: its share of the way to
  /// the target, less what earlier rounds already added (0 in count mode).
  std::int64_t round_budget(std::size_t r, std::int64_t current) const {
    if (!budget_mode() || rounds.empty()) return 0;
    const double share = double(target_params - start_params) * double(r + 1) / double(rounds.size());
    return std::llround(double(start_params) + share) - current;
  }
  /// The next round for a run that has completed `iter` iterations: the first whose split
  /// is at or after it (a checkpoint at a round's iteration is written before its split);
  /// rounds.size() when every round is behind.
  std::size_t round_for(std::int64_t iter) const {
    std::size_t r = 0;
    while (r < rounds.size() && rounds[r].at < iter) ++r;
    return r;
  }
};

namespace detail {
inline growth_plan growth_rounds(const std::vector<std::int64_t>& at, std::int64_t window, std::int64_t max_iter) {
  NETSPLIT_EXPECT(!at.empty(), "a growth plan needs at least one round");
  NETSPLIT_EXPECT(window >= 1, "a growth round's TPM window must hold at least 1 iteration, got ", window);
  growth_plan p;
  for (std::size_t r = 0; r < at.size(); ++r) {
    NETSPLIT_EXPECT(at[r] < max_iter, "growth round ", r + 1, " at iteration ", at[r], " is not before the run's end (",
                    max_iter, ")");
    const std::int64_t begin = at[r] - window;
    NETSPLIT_EXPECT(begin >= 0, "growth round ", r + 1, " at iteration ", at[r], " has no room for its ", window,
                    "-iteration TPM window");
    NETSPLIT_EXPECT(r == 0 || begin >= at[r - 1], "growth round ", r + 1, "'s TPM window [", begin, ", ", at[r],
                    ") starts before round ", r, "'s split at ", at[r - 1],
                    " (rounds must be increasing and at least a window apart)");
    p.rounds.push_back({at[r], {begin, at[r]}});
  }
  return p;
}
}  // namespace detail

/// Plans with rounds at the iterations `at` (increasing), each scoring over the `window`
/// iterations before it; contract_violation for rounds that do not fit in `max_iter`
/// iterations or overlapping windows. Count mode: `count` filters per round.
inline growth_plan make_growth_plan(const std::vector<std::int64_t>& at, std::int64_t window, int count,
                                    std::int64_t max_iter) {
  NETSPLIT_EXPECT(count >= 1, "a growth round must split at least 1 filter, got ", count);
  auto p = detail::growth_rounds(at, window, max_iter);
  p.count = count;
  return p;
}
/// Budget mode: from start_params to target_params (contract_violation unless above).
inline growth_plan make_budget_plan(const std::vector<std::int64_t>& at, std::int64_t window,
                                    std::int64_t start_params, std::int64_t target_params, std::int64_t max_iter) {
  NETSPLIT_EXPECT(target_params > start_params, "a growth target of ", target_params,
                  " parameters is not above the network's ", start_params, ": nothing to grow");
  auto p = detail::growth_rounds(at, window, max_iter);
  p.mode = growth_mode::budget;
  p.start_params = start_params;
  p.target_params = target_params;
  return p;
}
/// Widths mode: to the widths of `target` (same model, e.g. at a larger width multiplier);
/// check_plan refuses a site whose target is below its width.
template <Network Net>
growth_plan make_width_plan(const std::vector<std::int64_t>& at, std::int64_t window, Net& target,
                            std::int64_t max_iter) {
  auto p = detail::growth_rounds(at, window, max_iter);
  p.mode = growth_mode::widths;
  for (const auto& site : derive_sites(target)) p.target_widths[site.name] = site_width(target, site);
  return p;
}

/// A Selector with a quota per site (by index into the scores it is given): the site's
/// best-scored filters (ties to the lower index). Widths-mode rounds use it.
struct site_quotas {
  std::vector<int> quota;
  std::string name() const { return "site_quotas"; }
  std::vector<split_choice> select(std::span<const site_scores> scores) const {
    NETSPLIT_EXPECT(quota.size() == scores.size(), "site_quotas has ", quota.size(), " quotas for ", scores.size(),
                    " sites");
    std::vector<split_choice> out;
    for (std::size_t s = 0; s < scores.size(); ++s) {
      const auto& v = scores[s].scores;
      NETSPLIT_EXPECT(quota[s] <= static_cast<int>(v.size()), "a growth round cannot split ", quota[s],
                      " filters of site '", scores[s].site, "', which has ", v.size());
      std::vector<int> order(v.size());
      for (std::size_t f = 0; f < v.size(); ++f) order[f] = static_cast<int>(f);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return v[a] > v[b]; });
      for (int k = 0; k < quota[s]; ++k) out.push_back({s, order[k], v[order[k]]});
    }
    return out;
  }
};
static_assert(Selector<site_quotas>);

/// Checks before training that round 0 of `plan` can be met on `net` with the sites
/// `which` allows: count mode needs that many eligible filters, budget mode a first
/// round's budget that pays for the cheapest eligible split. contract_violation otherwise.
template <Network Net>
void check_plan(Net& net, const growth_plan& plan, const std::string& which = "all") {
  const auto sites = derive_sites(net);
  const auto ok = eligible_sites(sites, which);
  std::int64_t filters = 0, cheapest = -1;
  std::string cheapest_site;
  for (std::size_t s = 0; s < sites.size(); ++s) {
    if (!ok[s]) continue;
    filters += site_width(net, sites[s]);
    const auto c = split_cost(net, sites[s]);
    if (cheapest < 0 || c < cheapest) {
      cheapest = c;
      cheapest_site = sites[s].name;
    }
  }
  NETSPLIT_EXPECT(filters > 0, "no eligible split site for '", which, "'");
  if (plan.mode == growth_mode::widths) {
    for (std::size_t s = 0; s < sites.size(); ++s) {
      const auto it = plan.target_widths.find(sites[s].name);
      NETSPLIT_EXPECT(it != plan.target_widths.end(), "the growth target has no site '", sites[s].name, "'");
      const int w = site_width(net, sites[s]);
      NETSPLIT_EXPECT(it->second >= w, "the growth target gives site '", sites[s].name, "' ", it->second,
                      " filters, below its current ", w);
      NETSPLIT_EXPECT(ok[s] || it->second == w, "site '", sites[s].name, "' must grow to ", it->second,
                      " filters but is not among the eligible sites ('", which, "')");
      NETSPLIT_EXPECT(plan.quota(0, w, it->second) <= w, "growth round 1 would split ", plan.quota(0, w, it->second),
                      " filters of site '", sites[s].name, "', which has ", w,
                      " (a filter splits once per round): grow in more rounds");
    }
    return;
  }
  if (!plan.budget_mode()) {
    NETSPLIT_EXPECT(plan.count <= filters, "a growth round of ", plan.count, " filters is more than the ", filters,
                    " filters the eligible sites ('", which, "') have");
    return;
  }
  const auto first = plan.round_budget(0, count_parameters(net));
  NETSPLIT_EXPECT(first >= cheapest, "growth round 1's budget of ", first,
                  " parameters is below the cheapest eligible split (", cheapest, " parameters at site '",
                  cheapest_site, "'): grow to a larger target or in fewer rounds");
}

/// Round r of `plan` on the training network of `tr` (call it from before_iteration at
/// plan.rounds[r].at): `normalisation` then top_k (count mode) or budget (budget mode,
/// ranked by score per parameter, or by score alone with per_cost = false) on the
/// recorder's scores, or on `scores` when given (a random control); the splits go through
/// split_now. Afterwards `rec` (and `also`, a second recorder such as the random scores)
/// restart on round r + 1's window.
template <Network Net, Communicator C, ScoreNormalisation N, SplitStrategy S>
std::vector<split_record> grow_round(trainer<Net, C>& tr, split_history<Net>& history, tpm_recorder<Net>& rec,
                                     const growth_plan& plan, std::size_t r, const N& normalisation,
                                     const S& strategy, std::uint64_t seed, const std::string& which = "all",
                                     const std::vector<site_scores>* scores = nullptr, bool per_cost = true,
                                     tpm_recorder<Net>* also = nullptr) {
  NETSPLIT_EXPECT(r < plan.rounds.size(), "growth round ", r + 1, " of a plan of ", plan.rounds.size());
  std::vector<split_record> out;
  if (plan.mode == growth_mode::widths) {
    const auto ok = eligible_sites(rec.sites(), which);
    site_quotas q;
    for (std::size_t s = 0; s < rec.sites().size(); ++s)
      if (ok[s]) {
        const auto& site = rec.sites()[s];
        const auto it = plan.target_widths.find(site.name);
        NETSPLIT_EXPECT(it != plan.target_widths.end(), "the growth target has no site '", site.name, "'");
        q.quota.push_back(plan.quota(r, site_width(tr.net(), site), it->second));
      }
    if (std::any_of(q.quota.begin(), q.quota.end(), [](int k) { return k > 0; }))
      out = split_now(tr, history, rec, normalised_selector{normalisation, q}, strategy, seed, which, scores);
  } else if (plan.budget_mode()) {
    const auto b = plan.round_budget(r, count_parameters(tr.net()));
    if (b > 0) {
      const normalised_selector sel{normalisation, budget{double(b), per_cost}};
      out = split_now(tr, history, rec, sel, strategy, seed, which, scores);
    }
  } else {
    const normalised_selector sel{normalisation, top_k{plan.count}};
    out = split_now(tr, history, rec, sel, strategy, seed, which, scores);
  }
  if (r + 1 < plan.rounds.size()) {
    rec.restart(plan.rounds[r + 1].window);
    if (also) also->restart(plan.rounds[r + 1].window);
  }
  return out;
}

}  // namespace netsplit
