package nccl

import (
	"encoding/hex"
	"fmt"
)

// UniqueIDBytes is the size of a communicator's id (NCCL_UNIQUE_ID_BYTES).
const UniqueIDBytes = 128

// UniqueID is a communicator's id (ncclUniqueId): opaque bytes that rank 0
// makes and every rank passes to CommInitRank. Its text form, for a pipe
// or an environment variable, is the bytes in lowercase hex: 256
// characters, no spaces.
type UniqueID [UniqueIDBytes]byte

// String returns the id's text form.
func (id UniqueID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText returns the id's text form.
func (id UniqueID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads the text form MarshalText writes.
func (id *UniqueID) UnmarshalText(text []byte) error {
	if len(text) != 2*UniqueIDBytes {
		return fmt.Errorf("NCCL unique id: %d characters, want %d hex digits", len(text), 2*UniqueIDBytes)
	}
	var b UniqueID
	if _, err := hex.Decode(b[:], text); err != nil {
		return fmt.Errorf("NCCL unique id: %w", err)
	}
	*id = b
	return nil
}

// ParseUniqueID reads an id's text form.
func ParseUniqueID(s string) (UniqueID, error) {
	var id UniqueID
	err := id.UnmarshalText([]byte(s))
	return id, err
}

// DataType is an element type of a collective (ncclDataType_t).
type DataType int32

// The element types gpubench reduces: its gradients' storage types.
const (
	Float32  DataType = 7 // ncclFloat32
	BFloat16 DataType = 9 // ncclBfloat16, NCCL 2.10 on
)

func (d DataType) String() string {
	switch d {
	case Float32:
		return "float32"
	case BFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("ncclDataType(%d)", int32(d))
}

// Size is the bytes of one element of d, 0 for a type this package does
// not name.
func (d DataType) Size() int {
	switch d {
	case Float32:
		return 4
	case BFloat16:
		return 2
	}
	return 0
}

// RedOp is a reduction (ncclRedOp_t).
type RedOp int32

// The reductions gpubench uses. Each rank's loss is the mean over its own
// shard, so the data-parallel gradient is the mean of the ranks' gradients:
// Avg (ncclAvg, NCCL 2.10 on) divides the sum by the number of ranks inside
// the collective; Sum (ncclSum) leaves the division to the caller.
const (
	Sum RedOp = 0
	Avg RedOp = 4
)

func (o RedOp) String() string {
	switch o {
	case Sum:
		return "sum"
	case Avg:
		return "avg"
	}
	return fmt.Sprintf("ncclRedOp(%d)", int32(o))
}

// Result is an NCCL result code (ncclResult_t).
type Result int32

// The result codes of nccl.h.
const (
	Success            Result = 0
	UnhandledCudaError Result = 1
	SystemError        Result = 2
	InternalError      Result = 3
	InvalidArgument    Result = 4
	InvalidUsage       Result = 5
	RemoteError        Result = 6
	InProgress         Result = 7
	Timeout            Result = 8
)

var resultNames = [...]string{
	Success:            "ncclSuccess",
	UnhandledCudaError: "ncclUnhandledCudaError",
	SystemError:        "ncclSystemError",
	InternalError:      "ncclInternalError",
	InvalidArgument:    "ncclInvalidArgument",
	InvalidUsage:       "ncclInvalidUsage",
	RemoteError:        "ncclRemoteError",
	InProgress:         "ncclInProgress",
	Timeout:            "ncclTimeout",
}

// String is the code's name in nccl.h.
func (r Result) String() string {
	if r >= 0 && int(r) < len(resultNames) {
		return resultNames[r]
	}
	return fmt.Sprintf("ncclResult(%d)", int32(r))
}

// Error is a failed NCCL call: the call, its result, NCCL's description of
// the result (ncclGetErrorString) and, where the library has
// ncclGetLastError, the last error it logged.
type Error struct {
	Op     string
	Code   Result
	Msg    string
	Detail string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %v", e.Op, e.Code)
	if e.Msg != "" {
		s = fmt.Sprintf("%s: %s (%v)", e.Op, e.Msg, e.Code)
	}
	if e.Detail != "" && e.Detail != e.Msg {
		s += ": " + e.Detail
	}
	return s
}

// Version is a release of NCCL.
type Version struct{ Major, Minor, Patch int }

// VersionOf decodes ncclGetVersion's code, NCCL_VERSION(X,Y,Z): X·1000 +
// Y·100 + Z up to 2.8, X·10000 + Y·100 + Z from 2.9 on (2.28.3 is 22803).
func VersionOf(code int) Version {
	if code < 10000 {
		return Version{code / 1000, code / 100 % 10, code % 100}
	}
	return Version{code / 10000, code / 100 % 100, code % 100}
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v is major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}
