package main

import (
	"fmt"
	"io"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/launch"
	"github.com/gpubench/gpubench/internal/nccl"
	"github.com/gpubench/gpubench/internal/report"
	"github.com/gpubench/gpubench/model"
)

// rank is this process's part in a data-parallel run (--gpus), nil for a
// plain run: its place from the parent, and its NCCL communicator (nil for
// --gpus=1 without NCCL, which runs the plain step).
type rank struct {
	child *launch.Child
	lib   *nccl.Lib
	comm  *nccl.Comm
}

// rankOf reads this process's rank from the parent's environment: nil,
// nil for a plain run. It points r at the rank's device.
func rankOf(r *config.Run, stderr io.Writer) (*rank, error) {
	c, ok, err := launch.FromEnv()
	if err != nil || !ok {
		return nil, err
	}
	r.Rank, r.Device = c.Rank, c.Device
	rk := &rank{child: c}
	if rk.lib, err = nccl.Load(); err != nil {
		if c.World > 1 {
			return nil, fmt.Errorf("rank %d: %w", c.Rank, err)
		}
		fmt.Fprintf(stderr, "gpubench: rank 0: %v; running the plain step\n", err)
		rk.lib = nil
	}
	return rk, nil
}

// dataParallel is the program option of the rank: none without NCCL.
func (rk *rank) dataParallel() model.DataParallel {
	if rk == nil || rk.lib == nil {
		return model.DataParallel{}
	}
	return model.DataParallel{World: rk.child.World, Rank: rk.child.Rank}
}

// join exchanges NCCL's id through the parent and joins the communicator,
// on the device whose context is current on this thread. Every rank must
// call it: ncclCommInitRank waits for them all.
func (rk *rank) join() error {
	if rk == nil || rk.lib == nil {
		return nil
	}
	c := rk.child
	idText, err := c.ExchangeID(func() (string, error) {
		id, err := rk.lib.UniqueID()
		return id.String(), err
	})
	if err != nil {
		return err
	}
	id, err := nccl.ParseUniqueID(idText)
	if err != nil {
		return err
	}
	rk.comm, err = rk.lib.CommInitRank(c.World, id, c.Rank)
	return err
}

// close destroys the communicator after a run, or aborts it after a
// failure, whose collectives another rank may still wait in.
func (rk *rank) close(failed bool) {
	if rk == nil || rk.comm == nil {
		return
	}
	if failed {
		_ = rk.comm.Abort()
	} else {
		_ = rk.comm.Destroy()
	}
}

// communicator is the executor's view of the rank's communicator, nil
// without one.
func (rk *rank) communicator() cuexec.Communicator {
	if rk == nil || rk.comm == nil {
		return nil
	}
	return cuexec.NCCL(rk.lib, rk.comm)
}

// report sends the rank's step times and losses to the parent.
func (rk *rank) report(res *report.Result, partial bool) error {
	if rk == nil {
		return nil
	}
	out := launch.Result{Device: rk.child.Device, Partial: partial, AllReduce: "none"}
	if rk.comm != nil {
		v, _ := rk.lib.Version()
		out.AllReduce = "nccl " + v.String()
	}
	for _, it := range res.Iterations {
		out.StepMs = append(out.StepMs, it.StepMs)
		out.Losses = append(out.Losses, float64(it.Loss))
	}
	return rk.child.Report(out)
}
