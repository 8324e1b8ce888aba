package cuexec

import (
	"fmt"

	"github.com/gpubench/gpubench/internal/nccl"
	"github.com/gpubench/gpubench/internal/program"
)

// NCCL is the Communicator of comm: the program's collectives as NCCL
// calls, its f32 and bf16 gradients as ncclFloat32 and ncclBfloat16.
func NCCL(lib *nccl.Lib, comm *nccl.Comm) Communicator { return ncclComm{lib, comm} }

type ncclComm struct {
	lib  *nccl.Lib
	comm *nccl.Comm
}

func (c ncclComm) GroupStart() error { return c.lib.GroupStart() }
func (c ncclComm) GroupEnd() error   { return c.lib.GroupEnd() }

func (c ncclComm) AllReduceAvg(ptr uintptr, count int64, e program.Elem, stream uintptr) error {
	var dt nccl.DataType
	switch e {
	case program.F32:
		dt = nccl.Float32
	case program.BF16:
		dt = nccl.BFloat16
	default:
		return fmt.Errorf("ncclAllReduce: no NCCL type for %s elements", e)
	}
	return c.comm.AllReduce(ptr, ptr, int(count), dt, nccl.Avg, stream)
}
