// Package startup runs before the CUDA driver binding initialises.
//
// gorgonia.org/cu calls cuInit in its package init and exits with its own
// message when that fails. Go (1.21 on) initialises packages in the order
// of their import paths where dependencies allow, and this package's path
// sorts before gorgonia.org/cu while everything it imports is either
// imported by cu too or sorts before it. So its init runs first: it
// handles the commands that need no GPU (help, plan, bad arguments) and
// exits, and for the rest it calls cuInit itself, so that a machine
// without a usable GPU gets one clear line instead of cu's.
//
// Import it for its side effect, from package main only.
package startup

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
	if err := cudrv.Init(); err != nil {
		fmt.Fprintf(os.Stderr, "gpubench: no usable NVIDIA GPU: %v (gpubench help and plan need none)\n", err)
		os.Exit(cli.ExitFailure)
	}
}
