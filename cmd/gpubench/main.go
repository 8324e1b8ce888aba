// Command gpubench runs a small GPT-2 training step built from its own CUDA
// kernels, wrapped in NVTX ranges inside a cuProfilerStart/Stop window, so
// that Nsight Systems and Nsight Compute show a workload whose every range
// and kernel is known.
//
//	gpubench [run] [flags]     run the benchmark (the default command)
//	gpubench info              describe the GPU
//	gpubench plan [flags]      print the ranges and kernels a run launches
//	gpubench check [flags] REPORT.sqlite
//	                           check an nsys sqlite export against the plan
//	gpubench selftest          prove the PTX → JIT → launch → NVTX chain
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gpubench/gpubench/internal/config"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1   // the run or a check failed
	exitUsage       = 2   // bad flags or arguments: nothing was touched
	exitInterrupted = 130 // SIGINT/SIGTERM: partial results were printed
)

// usageError marks an error in the command line.
type usageError struct{ error }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd, rest := "run", args
	if len(args) > 0 {
		switch args[0] {
		case "run", "info", "plan", "check", "selftest", "help":
			cmd, rest = args[0], args[1:]
		case "-h", "--help", "-help":
			cmd = "help"
		}
	}
	var err error
	switch cmd {
	case "help":
		usage(stdout)
		return exitOK
	case "run":
		err = runBenchmark(rest, stdout, stderr)
	case "info":
		err = info(rest, stdout)
	case "plan":
		err = planCommand(rest, stdout)
	case "check":
		err = checkCommand(rest, stdout)
	case "selftest":
		err = selftest(rest, stdout)
	}
	return report(err, stderr)
}

// report prints err as one line and picks the exit code.
func report(err error, stderr io.Writer) int {
	var ue usageError
	var ie interrupted
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, config.ErrHelp):
		usage(stderr)
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "gpubench: %v\n", err)
		return exitUsage
	case errors.As(err, &ie):
		fmt.Fprintf(stderr, "gpubench: %v\n", err)
		return exitInterrupted
	default:
		fmt.Fprintf(stderr, "gpubench: %v\n", err)
		return exitFailure
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `gpubench: a GPT-2 training step from our own CUDA kernels, for profiling.

Usage:
  gpubench [run] [flags]              run the benchmark (default command)
  gpubench info                       describe the GPU (driver, clocks, power)
  gpubench plan [flags] [--json]      the NVTX ranges and kernels one iteration launches
  gpubench check [flags] REPORT.sqlite
                                      check an nsys sqlite export against the plan
  gpubench selftest                   launch one kernel inside NVTX ranges and a profiler window

Profile it:
  nsys profile -t cuda,nvtx --capture-range=cudaProfilerApi --capture-range-end=stop \
      -o report gpubench --model=small --batch-size 8 --profile

Run flags (plan and check take the same shape flags):
`)
	config.Usage(w)
}
