// nvcc build of main.cpp (the same source the thrust-CPP build compiles).
#include "main.cpp"
