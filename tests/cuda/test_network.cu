// nvcc build of test_network.cpp (the same source the thrust-CPP build compiles).
#include "test_network.cpp"
