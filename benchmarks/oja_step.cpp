// benchmarks/oja_step.cpp — how well grad_disagreement's Oja direction finds the principal
// direction of a synthetic gradient stream (oja_stream.hpp: g_t = mu + a_t u + e_t), with
// the fixed step (grad_disagreement) and the annealed one (grad_disagreement_annealed).
// Prints |cos(direction, u)| averaged over 4 seeds for rows of n elements (ResNet20's rows: 144 for a stage-1 inner site, 576 for a
// stage-3 one or the stage-1 group) and windows of T gradients. The numbers in
// docs/metrics.md come from this program. Synthetic: real gradients also drift over a window.
#include <cstdio>

#include "netsplit/tpm/grad_disagreement.hpp"
#include "oja_stream.hpp"

using namespace netsplit;
using bench::oja_cosine;

int main() {
  std::printf("| row n | window T | spread s | fixed step | annealed |\n|---|---|---|---|---|\n");
  for (const int n : {16, 144, 576})
    for (const int steps : {100, 1000, 10000})
      for (const double spread : {1.5, 3.0}) {
        double fixed = 0, annealed = 0;
        for (std::uint64_t seed = 1; seed <= 4; ++seed) {
          fixed += oja_cosine(grad_disagreement{}, n, steps, spread, seed) / 4;
          annealed += oja_cosine(grad_disagreement_annealed{}, n, steps, spread, seed) / 4;
        }
        std::printf("| %d | %d | %.1f | %.3f | %.3f |\n", n, steps, spread, fixed, annealed);
      }
  return 0;
}
