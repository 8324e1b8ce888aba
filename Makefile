# gpubench: build here (CUDA headers, no GPU needed), run where a GPU is.
#
#   make run     build gpubench and run the tiny model once (needs a GPU)
#   make test    everything CI runs: vet, build, tests, kernel emulations (no GPU needed)
#   make ptx     regenerate ptx/*.ptx from ptx/*.cu (needs nvcc)
#   make device  build gpubench and the GPU test binaries into .device/

SHELL := /bin/bash
GO ?= go

# The toolkit script installs CUDA where it is missing and prints its root.
# The script honours a CUDA_HOME set by the caller when it is usable.
CUDA_HOME := $(shell scripts/install-cuda.sh)
# go-nvml declares deprecated NVML calls; their warnings are not ours.
export CGO_CFLAGS += -I$(CUDA_HOME)/include -Wno-deprecated-declarations
export CGO_LDFLAGS += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib64/stubs
export CUDA_HOME

NVCC ?= $(CUDA_HOME)/bin/nvcc
# compute_70 PTX (ISA 7.8 from nvcc 11.8) JIT-compiles on every GPU from Volta
# on and every driver from 520 on. -lineinfo lets Nsight Compute show source.
# A source that needs a later architecture (bf16, mma.sync, cp.async: the
# sm_80 tier) says so on a line of its own, "// nvcc-arch: compute_80", and
# its module is loaded only on GPUs that have it (internal/cuexec). One that
# needs an architecture-specific target nvcc 11.8 cannot name (sm_90a: wgmma,
# setmaxnreg) also says "// ptx-target: sm_90a", and scripts/ptx-target.sh
# rewrites its PTX header to that target.
NVCCFLAGS := -ptx -O3 -lineinfo
NVCC_ARCH := compute_70
# nvcc_arch prints the architecture a source asks for, or NVCC_ARCH.
nvcc_arch = $$(sed -n 's|^// nvcc-arch: *\(compute_[0-9a-z]*\).*|\1|p' $(1) | head -1 | grep . || echo $(NVCC_ARCH))

PTX_SRC := $(wildcard ptx/*.cu)
PTX_OUT := $(PTX_SRC:.cu=.ptx)
GPU_TEST_PKGS := kernels model/cuda

.PHONY: all build run test vet sim ptx device clean toolkit

all: build

toolkit:
	@echo "CUDA toolkit: $(CUDA_HOME)"

build:
	$(GO) build -o bin/gpubench ./cmd/gpubench

run: build
	bin/gpubench --model=tiny

vet:
	$(GO) vet ./...
	$(GO) vet -tags gpu ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: the files above need formatting"; exit 1; }

test: vet
	$(GO) build ./...
	$(GO) test -count=1 ./...
	$(MAKE) --no-print-directory sim

# sim runs the CPU emulations of the mma.sync kernels (scripts/mmasim.sh:
# matmul_mma's products; scripts/attnsim.sh: attention_tf32), which check
# their fragment layouts and synchronisation against float64 without a GPU.
sim:
	bash scripts/mmasim.sh
	bash scripts/attnsim.sh

# nvcc names internal-linkage code (the CUDA headers' intrinsics too) with
# the CRC-32 of the source's absolute path, and -lineinfo's .file directives
# hold absolute paths. So every machine compiles in the same folder and the
# .file directives are cut to the file name: the PTX is then byte for byte
# the same wherever `make ptx` runs. (ptx/ptx_test.go's freshness check does
# not need that: it builds anywhere and masks exactly those two parts.)
PTX_BUILD := /tmp/gpubench-ptx
ptx/%.ptx: ptx/%.cu $(wildcard ptx/*.cuh)
	mkdir -p $(PTX_BUILD) && cp ptx/*.cu ptx/*.cuh $(PTX_BUILD)/
	cd $(PTX_BUILD) && $(NVCC) -arch=$(call nvcc_arch,$*.cu) $(NVCCFLAGS) $*.cu -o $*.ptx
	set -o pipefail; sed -E 's#\.file([[:space:]]+[0-9]+) "[^"]*/([^/"]+)"#.file\1 "\2"#' $(PTX_BUILD)/$*.ptx | scripts/ptx-target.sh ptx/$*.cu > $@
# ptx/<layer>_bf16.cu is `#include "<layer>.cu"` with GPUBENCH_BF16 defined.
$(filter %_bf16.ptx,$(PTX_OUT)): ptx/%_bf16.ptx: ptx/%.cu
# ptx/matmul_mma3.cu is matmul_mma.cu with a 3-stage pipeline.
ptx/matmul_mma3.ptx: ptx/matmul_mma.cu

ptx: $(PTX_OUT)

device:
	mkdir -p .device
	$(GO) build -o .device/gpubench ./cmd/gpubench
	for p in $(GPU_TEST_PKGS); do $(GO) test -c -tags gpu -o .device/$${p//\//-}.test ./$$p || exit 1; done

clean:
	rm -rf bin .device
