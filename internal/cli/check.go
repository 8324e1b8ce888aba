package cli

import (
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
