// Builds a ResNet20 from the installed headers and runs one forward pass.
#include <netsplit/netsplit.hpp>

#include <cstdio>

int main() {
  netsplit::cpu_context ctx(1);
  netsplit::resnet20<> net(42);
  netsplit::tensor<float, netsplit::cpu_backend> x({2, 3, 32, 32}, 0.25f);
  const auto& logits = net.forward(ctx, x, netsplit::phase::eval);
  std::printf("consumer: %lld parameters, logits %s\n",
              static_cast<long long>(netsplit::count_parameters(net)), logits.shape().str().c_str());
  return netsplit::count_parameters(net) == 275572 && logits.dim(1) == 100 ? 0 : 1;
}
