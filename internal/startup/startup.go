// Package startup decides when gpubench initialises the CUDA driver.
//
// gorgonia.org/cu calls cuInit in its package init and exits the process,
// with its own message, when that fails: on a machine without a usable GPU
// no gpubench command could run. So this package links the binary with
// -Wl,--wrap=cuInit: every cuInit call in it goes to a wrapper here, which
// answers success without calling the driver until this package's init has
// run. cu's init therefore passes whatever the machine, and in whichever
// order Go initialises the two packages.
//
// This package's init then handles the commands that need no GPU (help,
// plan, check, bad arguments) and exits, without ever calling the driver.
// For the rest it calls cuInit for real, so that a machine without a usable
// GPU gets one clear line, and every later cuInit reaches the driver.
//
// The wrap is in this package, not in cudrv, so that it applies to the
// gpubench binary only: test binaries that link cu without it keep cu's own
// initialisation. Import it for its side effect, from package main only.
package startup

/*
#cgo LDFLAGS: -Wl,--wrap=cuInit -lcuda
#include <cuda.h>

CUresult __real_cuInit(unsigned int flags);

static int gpubench_cuinit_armed;

// gpubench_arm_cuinit makes every later cuInit call reach the driver.
static void gpubench_arm_cuinit(void) { gpubench_cuinit_armed = 1; }

CUresult __wrap_cuInit(unsigned int flags) {
	if (!gpubench_cuinit_armed) {
		return CUDA_SUCCESS;
	}
	return __real_cuInit(flags);
}
*/
import "C"

import (
	"fmt"
	"os"

	"github.com/gpubench/gpubench/internal/cli"
	"github.com/gpubench/gpubench/internal/cudrv"
)

func init() {
	if handled, code := cli.WithoutGPU(os.Args[1:], os.Stdout, os.Stderr); handled {
		os.Exit(code)
	}
	C.gpubench_arm_cuinit()
	if err := cudrv.Init(); err != nil {
		fmt.Fprintf(os.Stderr, "gpubench: no usable NVIDIA GPU: %v (gpubench help, plan and check need none)\n", err)
		os.Exit(cli.ExitFailure)
	}
}
