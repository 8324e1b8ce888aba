#!/bin/bash
# attnsim.sh: run ptx/attention_tf32.cu's three entries on the CPU, no GPU
# needed, as scripts/mmasim.sh does for the GEMMs.
#
# The kernel source is compiled as host C++ with its PTX wrappers (the
# section between "BEGIN PTX WRAPPERS" and "END PTX WRAPPERS") replaced by
# emulations (scripts/mmasim/attn_intrin.h): a block's 128 threads are
# cooperative coroutines run in random interleavings; __syncthreads,
# ldmatrix, mma.sync (which aborts on an operand not rounded to TF32) and
# the shuffles are barriers whose last arriver does the work; cp.async lands
# at its issue or only at the wait that forces it (both are run); shared
# memory starts as NaN. The forward and backward of every shape are checked
# against a float64 reference with the GPU tests' tolerances
# (scripts/mmasim/attn_main.cpp). Exact in layout and synchronisation,
# silent on speed.
#
#   scripts/attnsim.sh [shape index]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here"/mmasim/prelude.h "$here"/mmasim/sched.h "$here"/mmasim/attn_intrin.h "$here"/mmasim/attn_main.cpp "$work"/
python3 - "$here"/../ptx/attention_tf32.cu "$work"/kern.cpp <<'PY'
import sys
src = open(sys.argv[1]).read()
a = src.index('// BEGIN PTX WRAPPERS')
b = src.index('// END PTX WRAPPERS')
src = src[:a] + '#include "attn_intrin.h"\n' + src[b:]
src = src.replace('#include "common.cuh"', '#include "prelude.h"\n#define WARP_SIZE 32')
src = src.replace('extern "C" __global__', 'extern "C"')
open(sys.argv[2], 'w').write(src)
PY
g++ -std=c++20 -O2 -include functional -o "$work"/sim "$work"/attn_main.cpp
"$work"/sim "$@"
