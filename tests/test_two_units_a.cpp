// Translation unit A of the ODR test: includes the umbrella header and uses the library.
#include <doctest/doctest.h>

#include "netsplit/netsplit.hpp"

std::int64_t parameters_from_unit_b();

TEST_CASE("two translation units including netsplit.hpp link and agree") {
  netsplit::resnet20<> net(1);
  CHECK(netsplit::count_parameters(net) == parameters_from_unit_b());
}
