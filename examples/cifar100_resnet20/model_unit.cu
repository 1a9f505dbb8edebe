// nvcc compiles model_unit.cpp as CUDA through this file (examples/CMakeLists.txt).
#include "model_unit.cpp"
