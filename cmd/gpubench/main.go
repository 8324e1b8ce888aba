// Command gpubench runs a small GPT-2 training step built from its own CUDA
// kernels, wrapped in NVTX ranges inside a cuProfilerStart/Stop window, so
// that Nsight Systems and Nsight Compute show a workload whose every range
// and kernel is known. `gpubench help` lists the commands.
package main

import (
	"io"
	"os"

	"github.com/gpubench/gpubench/internal/cli"
	"github.com/gpubench/gpubench/internal/cudrv"
	// startup handles the commands that need no GPU, and a missing GPU,
	// before gorgonia.org/cu's init runs: see its package comment.
	_ "github.com/gpubench/gpubench/internal/startup"
)

func main() {
	cudrv.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the commands that need a GPU; startup has already handled
// the others and rejected bad arguments.
func run(args []string, stdout, stderr io.Writer) int {
	cmd, rest := cli.Split(args)
	var err error
	switch cmd {
	case "run":
		err = runBenchmark(rest, stdout, stderr)
	case "info":
		err = info(stdout)
	case "selftest":
		err = selftest(stdout)
	}
	return cli.ExitCode(err, stderr)
}
