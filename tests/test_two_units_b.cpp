// Translation unit B of the ODR test: same header, same types, instantiated again.
#include "netsplit/netsplit.hpp"

std::int64_t parameters_from_unit_b() {
  netsplit::resnet20<> net(2);
  netsplit::cpu_context ctx(1);
  netsplit::tensor<float, netsplit::cpu_backend> x({1, 3, 32, 32}, 1.0f);
  net.forward(ctx, x, netsplit::phase::eval);
  return netsplit::count_parameters(net);
}
