package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/launch"
	"github.com/gpubench/gpubench/internal/nccl"
)

// isChild reports whether this process is a rank that a data-parallel
// parent started: it runs the step on its GPU like a plain run.
func isChild() bool {
	_, ok := os.LookupEnv(launch.EnvRank)
	return ok
}

// RunParallel is the parent of a data-parallel run (--gpus=N): it refuses
// more GPUs than are visible and a missing NCCL before anything starts,
// then runs one child per GPU (package launch), each the same command, and
// prints each rank's step times, the slowest rank and, with --scaling, the
// efficiency against a first run on one GPU. It never touches a GPU.
//
// --gpus=1 without NCCL runs the one child as the plain step (no
// all-reduce), with a note: one GPU needs no communication, and a machine
// without NCCL can still run every command line of the README.
func RunParallel(args []string, r config.Run, stdout, stderr io.Writer) error {
	if n, ok := launch.VisibleGPUs(); ok && r.GPUs > n {
		return UsageError{fmt.Errorf("--gpus: %d GPUs asked for, %d visible here (allowed: 1..%d; CUDA_VISIBLE_DEVICES narrows them)", r.GPUs, n, n)}
	}
	if _, err := nccl.Load(); err != nil {
		if r.GPUs > 1 || r.Scaling {
			return fmt.Errorf("--gpus=%d: %v (more than one GPU needs NCCL's libnccl.so.2; without --gpus gpubench runs on one GPU)", r.GPUs, err)
		}
		fmt.Fprintf(stderr, "gpubench: --gpus=1: %v; rank 0 runs the plain single-GPU step, without the all-reduce\n", err)
	}
	// NVLink multicast stays off in the children, and in anything the
	// parent itself loads.
	os.Setenv(launch.EnvNVLS, "0")
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--gpus: find gpubench's own binary to start the ranks: %w", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)

	run := func(world int) ([]launch.Result, error) {
		return launch.Run(launch.Spec{Exe: exe, Args: args, World: world, Stdout: stdout, Stderr: stderr}, sig)
	}
	var baseline *launch.Result
	if r.Scaling {
		fmt.Fprintf(stderr, "gpubench: --scaling: the same step on one GPU first\n")
		rs, err := run(1)
		if err != nil {
			return parallelError("the --gpus=1 baseline", rs, nil, err, stdout)
		}
		baseline = &rs[0]
	}
	rs, err := run(r.GPUs)
	return parallelError(fmt.Sprintf("--gpus=%d", r.GPUs), rs, baseline, err, stdout)
}

// parallelError prints what the ranks reported and turns launch's error
// into the command's: a failed rank exits 1, a forwarded signal 130.
func parallelError(what string, rs []launch.Result, baseline *launch.Result, err error, stdout io.Writer) error {
	if len(rs) > 0 {
		s, serr := launch.Summarize(rs, baseline)
		if serr == nil {
			if werr := s.Write(stdout); werr != nil && err == nil {
				err = werr
			}
		} else if err == nil {
			err = serr
		}
	}
	switch {
	case errors.Is(err, launch.ErrInterrupted):
		return Interrupted{Err: fmt.Errorf("%s interrupted; each rank's statistics above are partial", what)}
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
