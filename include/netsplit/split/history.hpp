// netsplit/split/history.hpp — the record of every split, stored in checkpoints.
// One line per split, tab-separated: iteration, site, filter, new index, score, strategy,
// epsilon, seed. Parsing is strict: a corrupt history is an io_error naming the line and
// the field, never a silently different network.
#pragma once

#include <charconv>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "netsplit/core/errors.hpp"

namespace netsplit {

struct split_record {
  std::int64_t iteration = 0;
  std::string site;
  int filter = 0;
  int new_index = 0;
  double score = 0;
  std::string strategy;
  double eps = 0;
  std::uint64_t seed = 0;
  bool operator==(const split_record&) const = default;
};

inline std::string serialize_history(const std::vector<split_record>& h) {
  std::ostringstream os;
  os.precision(17);
  for (const auto& r : h)
    os << r.iteration << '\t' << r.site << '\t' << r.filter << '\t' << r.new_index << '\t' << r.score << '\t'
       << r.strategy << '\t' << r.eps << '\t' << r.seed << '\n';
  return os.str();
}

inline std::vector<split_record> parse_history(const std::string& text, const std::string& where) {
  std::vector<split_record> out;
  std::istringstream lines(text);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    std::vector<std::string> f;
    std::size_t start = 0;
    for (;;) {
      const auto tab = line.find('\t', start);
      f.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    auto bad = [&](const char* what) {
      detail::raise<io_error>("netsplit: split history in ", where, " line ", n, ": bad ", what, " in '", line, "'");
    };
    if (f.size() != 8) bad("field count (expected 8 tab-separated fields)");
    split_record r;
    auto int_field = [&](const std::string& s, auto& v, const char* what) {
      const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || p != s.data() + s.size()) bad(what);
    };
    auto real_field = [&](const std::string& s, double& v, const char* what) {
      std::istringstream is(s);
      if (!(is >> v) || !is.eof()) bad(what);
    };
    int_field(f[0], r.iteration, "iteration");
    r.site = f[1];
    int_field(f[2], r.filter, "filter");
    int_field(f[3], r.new_index, "new index");
    real_field(f[4], r.score, "score");
    r.strategy = f[5];
    real_field(f[6], r.eps, "epsilon");
    int_field(f[7], r.seed, "seed");
    if (r.site.empty()) bad("site");
    if (r.strategy.empty()) bad("strategy");
    if (r.iteration < 0 || r.filter < 0 || r.new_index <= r.filter) bad("indices");
    out.push_back(r);
  }
  return out;
}

}  // namespace netsplit
