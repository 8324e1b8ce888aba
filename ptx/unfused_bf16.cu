// nvcc-arch: compute_80
#define GPUBENCH_BF16
#include "unfused.cu"
