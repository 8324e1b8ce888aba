// Package cli is the part of the gpubench command that needs no GPU: the
// usage text, the exit codes, flag validation and the plan and check
// commands.
//
// It runs from package startup's init, before gpubench calls cuInit (see
// package startup), and does not import gorgonia.org/cu, so these commands
// never touch the driver (a test here keeps it so). It is tested on CI.
package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/plan"
	"github.com/gpubench/gpubench/model"
)

// Exit codes of gpubench.
const (
	ExitOK          = 0
	ExitFailure     = 1   // the run or a check failed
	ExitUsage       = 2   // bad flags or arguments: nothing was touched
	ExitInterrupted = 130 // SIGINT/SIGTERM: partial results were printed
)

// UsageError is an error in the command line.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Interrupted is a run stopped by a signal after it printed what it had
// measured.
type Interrupted struct{ Err error }

func (e Interrupted) Error() string { return e.Err.Error() }
func (e Interrupted) Unwrap() error { return e.Err }

// Split returns the command named by args and the arguments after it; a
// run needs no name.
func Split(args []string) (cmd string, rest []string) {
	if len(args) > 0 {
		switch args[0] {
		case "run", "info", "plan", "check", "flaws", "selftest", "help":
			return args[0], args[1:]
		case "-h", "--help", "-help":
			return "help", nil
		}
	}
	return "run", args
}

// WithoutGPU runs whatever of the command line needs no GPU: help, plan,
// check, and the rejection of bad arguments to run, info and selftest. It
// reports whether it handled the command and the exit code. The rest is
// left to main.
func WithoutGPU(args []string, stdout, stderr io.Writer) (handled bool, code int) {
	cmd, rest := Split(args)
	var err error
	switch cmd {
	case "help":
		Usage(stdout)
		return true, ExitOK
	case "plan":
		err = Plan(rest, stdout)
	case "check":
		err = Check(rest, stdout)
	case "flaws":
		if len(rest) > 0 {
			err = UsageError{fmt.Errorf("flaws takes no arguments, got %q", rest[0])}
		} else {
			err = config.WriteFlaws(stdout)
		}
	case "run":
		r, perr := config.ParseRun(rest)
		switch {
		case perr != nil:
			err = usageOrHelp(perr)
		case r.GPUs > 0 && !isChild():
			err = RunParallel(args, r, stdout, stderr)
		default:
			return false, 0
		}
	case "info", "selftest":
		if len(rest) == 0 {
			return false, 0
		}
		err = UsageError{fmt.Errorf("%s takes no arguments, got %q", cmd, rest[0])}
	}
	return true, ExitCode(err, stderr)
}

func usageOrHelp(err error) error {
	if errors.Is(err, config.ErrHelp) {
		return err
	}
	return UsageError{err}
}

// ExitCode prints err as one line on stderr and returns the exit code.
func ExitCode(err error, stderr io.Writer) int {
	var ue UsageError
	var ie Interrupted
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, config.ErrHelp):
		Usage(stderr)
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "gpubench: %v\n", err)
		return ExitUsage
	case errors.As(err, &ie):
		fmt.Fprintf(stderr, "gpubench: %v\n", err)
		return ExitInterrupted
	default:
		fmt.Fprintf(stderr, "gpubench: %v\n", err)
		return ExitFailure
	}
}

// Usage writes gpubench's help.
func Usage(w io.Writer) {
	fmt.Fprint(w, `gpubench: GPT-2 and LLaMA training steps, and LLaMA generation (prefill, then decode with a
KV cache), from our own CUDA kernels, for profiling.

Usage:
  gpubench [run] [flags]              run the benchmark (the default command)
  gpubench info                       describe the GPU (driver, clocks, power, throttling)
  gpubench plan [flags] [--format=json] [--sms=N]
                                      the NVTX ranges and kernels one iteration launches
  gpubench check [flags] REPORT.sqlite
                                      check an nsys sqlite export against the plan
  gpubench flaws                      the flaws --flaw plants for profiling lessons: what each does, what to look for
  gpubench selftest                   launch one kernel inside NVTX ranges and a profiler window

Profile it with Nsight Systems:
  nsys profile -t cuda,nvtx --capture-range=cudaProfilerApi --capture-range-end=stop \
      -o report gpubench --model=small --batch-size 8 --profile
  nsys export --type sqlite report.nsys-rep
  gpubench check --model=small --batch-size 8 report.sqlite
  (the guide's LLaMA-2-7B at batch 8: --model=llama2-7b --mode=generate --dtype=bf16 --batch-size 8)

Flags (plan and check take the same shape flags as a run):
`)
	config.Usage(w)
}

// Plan prints the schedule a run with the same flags follows: the NVTX
// range tree of one iteration and the kernels inside each range.
func Plan(args []string, stdout io.Writer) error {
	var format string
	var sms int
	r, _, err := config.ParseCommand(args, func(fs *flag.FlagSet) {
		fs.StringVar(&format, "format", "text", "plan: text or json")
		fs.IntVar(&sms, "sms", model.DefaultSMs, "plan: the GPU's multiprocessor count, for the launch shapes (gpubench info says it)")
	}, 0)
	if err != nil {
		return usageOrHelp(err)
	}
	if sms < 1 || sms > 1024 {
		return UsageError{fmt.Errorf("--sms: %d is not allowed (allowed: 1..1024; an H100 or H200 has 132)", sms)}
	}
	if format != "text" && format != "json" {
		return UsageError{fmt.Errorf("--format: unknown format %q (allowed: text, json)", format)}
	}
	if r.GPUs > 0 {
		return planRanks(r, sms, format, stdout)
	}
	p := plan.Of(model.Program(r.Dims, r.Mode, OptionsOf(r, sms, 0)))
	switch format {
	case "text":
		return p.WriteText(stdout)
	case "json":
		b, err := p.MarshalIndentJSON()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return nil
}

// planRanks prints the plan of every rank of a data-parallel run: in text,
// one after the other under a "rank r of N" line; in JSON, an array of
// them in rank order.
func planRanks(r config.Run, sms int, format string, stdout io.Writer) error {
	var plans []plan.Plan
	for rank := range r.GPUs {
		r.Rank = rank
		plans = append(plans, plan.Of(model.Program(r.Dims, r.Mode, OptionsOf(r, sms, 0))))
	}
	if format == "json" {
		b, err := json.MarshalIndent(plans, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	for rank, p := range plans {
		if _, err := fmt.Fprintf(stdout, "rank %d of %d (device %d)\n", rank, r.GPUs, rank); err != nil {
			return err
		}
		if err := p.WriteText(stdout); err != nil {
			return err
		}
	}
	return nil
}

// OptionsOf is the program options of run r for a GPU of sms
// multiprocessors (0: model.DefaultSMs) and compute capability cc, major·10
// + minor (0: model.DefaultCC).
func OptionsOf(r config.Run, sms, cc int) model.Options {
	return model.Options{SMs: sms, CC: cc, Graph: r.Graph, DType: r.DType, Tier: r.Tier, NVTX: r.NVTX, Flaws: r.Flaws,
		DataParallel: model.DataParallel{World: r.GPUs, Rank: r.Rank}}
}
