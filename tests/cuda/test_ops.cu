// nvcc build of test_ops.cpp (the same source the thrust-CPP build compiles).
#include "test_ops.cpp"
