// benchmarks/model_choice.hpp — the model token of the throughput and latency programs
// (netsplit_throughput, netsplit_latency, tests/cuda/gpu_throughput): resnet20, resnet56 or
// vgg11, optionally followed by x<width multiplier> (vgg11x0.25), as compare_pytorch.sh,
// compare_latency.sh and gpu_check.sh spell them.
#pragma once

#include <cstdlib>
#include <string>

namespace netsplit::bench {

struct model_choice {
  std::string name = "resnet20";
  double width = 1.0;
};

/// Parses `token` into `out`; false (out unspecified) for another model or a width outside (0, 16].
inline bool parse_model(const std::string& token, model_choice& out) {
  const auto x = token.find('x');
  out.name = token.substr(0, x);
  out.width = 1.0;
  if (out.name != "resnet20" && out.name != "resnet56" && out.name != "vgg11") return false;
  if (x == std::string::npos) return true;
  const std::string w = token.substr(x + 1);
  char* end = nullptr;
  out.width = std::strtod(w.c_str(), &end);
  return !w.empty() && end == w.c_str() + w.size() && out.width > 0 && out.width <= 16;
}

}  // namespace netsplit::bench
