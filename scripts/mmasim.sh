#!/bin/bash
# mmasim.sh: run ptx/matmul_mma.cu's GEMM entries on the CPU, no GPU needed.
#
# The kernel source is compiled as host C++ (g++ 12, C++20) with its inline-
# PTX helpers replaced by emulations (scripts/mmasim/intrin.h): a block's 256
# threads are cooperative coroutines, __syncthreads and the warp collectives
# (ldmatrix, ldmatrix.trans, mma.sync) are barriers whose last arriver does
# the work, cp.async lands either at its issue or only at the wait_group that
# forces it (both are run, so that a missing wait or an early refill shows),
# and shared memory starts as NaN. Every product, both block widths, bf16
# and TF32, odd and unaligned shapes and split weight gradients are checked
# against a float64 reference (scripts/mmasim/main.cpp). Slow (a minute),
# exact in layout and synchronisation, silent on speed.
#
#   scripts/mmasim.sh [shape index]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here"/mmasim/*.h "$here"/mmasim/main.cpp "$work"/
python3 "$here"/mmasim/gen.py "$here"/../ptx/matmul_mma.cu "$work"/kern.cpp
# MMASIM_DEFINES (e.g. -DMMA_STAGES_3, the 3-stage build of matmul_mma3.cu)
# passes compile-time switches of the kernel source.
g++ -std=c++20 -O2 ${MMASIM_DEFINES:-} -include functional -o "$work"/sim "$work"/main.cpp
"$work"/sim "$@"
