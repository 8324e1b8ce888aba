// Package cudrv binds the few CUDA driver API calls that gorgonia.org/cu
// does not wrap: the profiler start/stop pair that bounds an Nsight capture
// range (--capture-range=cudaProfilerApi), for a start.
//
// It links libcuda directly and does not import gorgonia.org/cu. Like every
// CUDA call in gpubench, these must run on the OS thread that holds the
// context (see package nvtx for the threading rule).
package cudrv

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>
#include <cudaProfiler.h>
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"reflect"
)

// Error is a CUDA driver result code with the call that returned it.
type Error struct {
	Op   string
	Code int
}

func (e *Error) Error() string {
	var name, desc *C.char
	C.cuGetErrorName(C.CUresult(e.Code), &name)
	C.cuGetErrorString(C.CUresult(e.Code), &desc)
	if name == nil {
		return fmt.Sprintf("%s: CUDA error %d", e.Op, e.Code)
	}
	return fmt.Sprintf("%s: %s (%s)", e.Op, C.GoString(name), C.GoString(desc))
}

func check(op string, r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	return &Error{Op: op, Code: int(r)}
}

// ProfilerStart opens the profiler's capture window for the current context
// (cuProfilerStart). Under nsys --capture-range=cudaProfilerApi the capture
// begins here; with no profiler attached it costs one driver call.
func ProfilerStart() error { return check("cuProfilerStart", C.cuProfilerStart()) }

// ProfilerStop closes the capture window (cuProfilerStop).
func ProfilerStop() error { return check("cuProfilerStop", C.cuProfilerStop()) }

// Init calls cuInit(0) and reports whether a driver and a device answered.
// gpubench calls it before gorgonia.org/cu's own package init does, so that
// a machine without a GPU gets a clear sentence instead of cu's exit.
func Init() error { return check("cuInit", C.cuInit(0)) }

// Explain adds the driver's own name and description to a CUDA result
// returned by gorgonia.org/cu, whose errors carry only a short Go name
// ("IllegalAddress"). Other errors come back unchanged.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	// cu's result type is an unexported int; its value is the CUresult.
	v := reflect.ValueOf(err)
	if v.Kind() != reflect.Int || v.Type().PkgPath() != "gorgonia.org/cu" {
		return err
	}
	code := C.CUresult(v.Int())
	var name, desc *C.char
	if C.cuGetErrorName(code, &name) != C.CUDA_SUCCESS || name == nil {
		return err
	}
	C.cuGetErrorString(code, &desc)
	return fmt.Errorf("%w: %s (%s)", err, C.GoString(name), C.GoString(desc))
}

// Exit ends the process through the C library's exit, not os.Exit, so that
// the atexit handlers of profilers injected into the process run: Nsight
// Systems and CUPTI flush the events they still buffer there. os.Exit
// skips them, and a capture without a cuProfilerStop loses its tail.
func Exit(code int) {
	C.exit(C.int(code))
}
