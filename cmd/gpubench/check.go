package main

import (
	"errors"
	"io"

	"github.com/gpubench/gpubench/internal/cli"
	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/nsyscheck"
	"github.com/gpubench/gpubench/internal/plan"
)

// check checks an nsys sqlite export of a gpubench run against the plan of
// the run's flags, prints what it measured and fails on any mismatch.
func check(args []string, stdout io.Writer) error {
	r, rest, err := config.ParseCommand(args, nil, 1)
	if err != nil {
		if errors.Is(err, config.ErrHelp) {
			return err
		}
		return cli.UsageError{Err: err}
	}
	rep, err := nsyscheck.Check(rest[0], plan.For(r.Dims, r.Mode), r.Iters)
	if rep != nil {
		if werr := rep.WriteText(stdout); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}
