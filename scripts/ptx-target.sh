#!/usr/bin/env bash
# ptx-target.sh SOURCE.cu < nvcc.ptx > module.ptx
#
# nvcc 11.8 names no architecture-specific target: it writes PTX ISA 7.8 for
# plain sm_90 at most. A source that needs sm_90a's own instructions (wgmma,
# setmaxnreg; see ptx/matmul_wgmma.cu) says so on a line of its own,
# "// ptx-target: sm_90a", and its PTX header is rewritten here to
# `.version 8.0` / `.target sm_90a`. nvcc 11.8 passes inline asm through
# unchanged, so the body is already what that target means, and the CUDA
# 12+ driver JIT-compiles it (verified on an H200, driver 580). Any other
# source passes through unchanged. `make ptx` and ptx/ptx_test.go's
# freshness check both run this, so the rule lives here only.
set -euo pipefail
src=${1:?usage: ptx-target.sh SOURCE.cu < in.ptx > out.ptx}
target=$(sed -n 's|^// ptx-target: *\(sm_[0-9]*a\)\b.*|\1|p' "$src" | head -1)
if [[ -z $target ]]; then
	exec cat
fi
exec sed -E -e 's/^\.version [0-9]+\.[0-9]+$/.version 8.0/' -e "s/^\.target sm_[0-9]+\$/.target $target/"
