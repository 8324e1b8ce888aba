package cli

import (
	"fmt"
	"io"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/nsyscheck"
	"github.com/gpubench/gpubench/internal/plan"
	"github.com/gpubench/gpubench/model"
)

// Check checks an nsys sqlite export of a gpubench run against the plan of
// the run's flags, prints what it measured and fails on any mismatch. It
// needs no GPU.
func Check(args []string, stdout io.Writer) error {
	r, rest, err := config.ParseCommand(args, nil, 1)
	if err != nil {
		return usageOrHelp(err)
	}
	if r.GPUs > 0 {
		return checkRanks(rest[0], r, stdout)
	}
	p := plan.Of(model.Program(r.Dims, r.Mode, OptionsOf(r, 0, 0)))
	// With profiler windows the report holds one of them (repeat:N gives
	// one report per window); with --flaw it must show each flaw's
	// signature.
	rep, err := nsyscheck.CheckRun(rest[0], p, r)
	if rep != nil {
		if werr := rep.WriteText(stdout); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// checkRanks checks a capture of a data-parallel run: every rank's
// process against its rank's plan (nsyscheck.CheckRanks), each report
// under a "rank r (pid p)" line.
func checkRanks(path string, r config.Run, stdout io.Writer) error {
	var plans []plan.Plan
	for rank := range r.GPUs {
		r.Rank = rank
		plans = append(plans, plan.Of(model.Program(r.Dims, r.Mode, OptionsOf(r, 0, 0))))
	}
	reps, err := nsyscheck.CheckRanks(path, plans, r)
	for _, rep := range reps {
		if _, werr := fmt.Fprintf(stdout, "== rank %d (pid %d) of %d\n", rep.Rank, rep.PID, r.GPUs); werr != nil && err == nil {
			err = werr
		}
		if werr := rep.WriteText(stdout); werr != nil && err == nil {
			err = werr
		}
	}
	if err == nil {
		_, err = fmt.Fprintf(stdout, "== every rank of %d follows its plan\n", r.GPUs)
	}
	return err
}
