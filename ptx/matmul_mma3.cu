// matmul_mma3.cu: matmul_mma.cu's kernels with a 3-stage pipeline, for the
// GPUs whose blocks may use less shared memory than the 4 stages' 216 KB
// (A100: 163 KB); the program picks this module there (gemmplan.MMAStagesFor).
// nvcc-arch: compute_80
#define MMA_STAGES_3
#include "matmul_mma.cu"
