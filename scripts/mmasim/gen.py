# gen.py: matmul_mma.cu as host C++ for scripts/mmasim.sh: the inline-PTX helpers
# (smem_addr .. stg_u32) give way to intrin.h, cuda_bf16.h to prelude.h.
import re,sys
src=open(sys.argv[1]).read()
a=src.index('__device__ __forceinline__ unsigned smem_addr')
b=src.index('__device__ __forceinline__ bool aligned16')
src=src[:a]+'#include "intrin.h"\n'+src[b:]
src=src.replace('#include <cuda_bf16.h>','#include "prelude.h"')
src=src.replace('extern "C" __global__','extern "C"')
open(sys.argv[2],'w').write(src)
