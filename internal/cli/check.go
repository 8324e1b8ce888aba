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
	p := plan.Of(model.Program(r.Dims, r.Mode, OptionsOf(r, 0)))
	var rep *nsyscheck.Report
	if r.ProfileIters != nil || r.ProfileWindows > 0 {
		// The report holds one of the run's windows (repeat:N gives one
		// report per window).
		rep, err = nsyscheck.CheckWindows(rest[0], p, r.Windows())
	} else {
		rep, err = nsyscheck.Check(rest[0], p, r.Iters)
	}
	if rep != nil {
		if werr := rep.WriteText(stdout); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}
