// Package cudart binds the few CUDA runtime API calls that the planted
// flaws (and their fixes) make (--flaw): the calls users' own programs make, and the ones
// Nsight Systems' expert rules (nsys analyze: cuda_api_sync,
// cuda_memcpy_sync, cuda_memcpy_async) look for by name. gpubench itself
// runs on the driver API; a clean run never calls this package.
//
// The runtime is linked statically (libcudart_static.a of the build
// machine's toolkit), so the binary needs no libcudart at run time, and a
// runtime older than the driver runs on it. On its first call the runtime
// picks up the context current on the calling thread, which in gpubench is
// the device's primary context (internal/gpu), so runtime and driver calls
// share one context, one address space and the same streams: a
// cudaStream_t is a CUstream. Like every CUDA call, these must run on the
// thread that holds the context (see package nvtx).
package cudart

/*
#cgo LDFLAGS: -lcudart_static -ldl -lrt -lpthread
#include <stdint.h>
#include <cuda_runtime_api.h>

// Device addresses travel as integers (gorgonia.org/cu's DevicePtr), and
// become pointers only here, on the C side.
static cudaError_t copyDevice(uintptr_t dev, void* host, size_t n, enum cudaMemcpyKind k) {
	return k == cudaMemcpyHostToDevice ? cudaMemcpy((void*)dev, host, n, k) : cudaMemcpy(host, (void*)dev, n, k);
}
static cudaError_t copyDeviceAsync(uintptr_t dev, void* host, size_t n, enum cudaMemcpyKind k, cudaStream_t s) {
	return k == cudaMemcpyHostToDevice ? cudaMemcpyAsync((void*)dev, host, n, k, s) : cudaMemcpyAsync(host, (void*)dev, n, k, s);
}
static cudaError_t freeDevice(uintptr_t dev) { return cudaFree((void*)dev); }
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Error is a CUDA runtime result code with the call that returned it.
type Error struct {
	Op   string
	Code int
}

func (e *Error) Error() string {
	c := C.cudaError_t(e.Code)
	return fmt.Sprintf("%s: %s (%s)", e.Op, C.GoString(C.cudaGetErrorName(c)), C.GoString(C.cudaGetErrorString(c)))
}

func check(op string, r C.cudaError_t) error {
	if r == C.cudaSuccess {
		return nil
	}
	return &Error{Op: op, Code: int(r)}
}

// DeviceSynchronize waits for all the device's work (cudaDeviceSynchronize).
func DeviceSynchronize() error {
	return check("cudaDeviceSynchronize", C.cudaDeviceSynchronize())
}

// streamOf returns the handle of a gorgonia.org/cu Stream, passed as a
// pointer to it (cu.Stream is a struct of one CUstream, which is a
// cudaStream_t).
func streamOf(cuStream unsafe.Pointer) C.cudaStream_t { return *(*C.cudaStream_t)(cuStream) }

// StreamSynchronize waits for a stream's work (cudaStreamSynchronize);
// cuStream points to a gorgonia.org/cu Stream.
func StreamSynchronize(cuStream unsafe.Pointer) error {
	return check("cudaStreamSynchronize", C.cudaStreamSynchronize(streamOf(cuStream)))
}

// Direction is a copy's direction, as cudaMemcpyKind.
type Direction int

// The directions of a copy.
const (
	HostToDevice Direction = C.cudaMemcpyHostToDevice
	DeviceToHost Direction = C.cudaMemcpyDeviceToHost
)

// Memcpy copies bytes between device address dev and host memory, in
// direction d, synchronously (cudaMemcpy): it waits for the device's earlier
// work on the legacy stream, and returns when the copy is done (to the
// host) or staged (from pageable host memory).
func Memcpy(dev uintptr, host unsafe.Pointer, bytes int64, d Direction) error {
	return check("cudaMemcpy", C.copyDevice(C.uintptr_t(dev), host, C.size_t(bytes), C.enum_cudaMemcpyKind(d)))
}

// MemcpyAsync enqueues the same copy on stream (cudaMemcpyAsync). With
// pageable host memory the runtime stages it and the call blocks; only
// pinned memory makes it asynchronous.
func MemcpyAsync(dev uintptr, host unsafe.Pointer, bytes int64, d Direction, cuStream unsafe.Pointer) error {
	return check("cudaMemcpyAsync", C.copyDeviceAsync(C.uintptr_t(dev), host, C.size_t(bytes), C.enum_cudaMemcpyKind(d), streamOf(cuStream)))
}

// eventOf returns the handle of a gorgonia.org/cu Event, passed as a
// pointer to it (cu.Event is a struct of one CUevent, which is a
// cudaEvent_t).
func eventOf(cuEvent unsafe.Pointer) C.cudaEvent_t { return *(*C.cudaEvent_t)(cuEvent) }

// EventRecord records an event on a stream (cudaEventRecord): the event
// completes when the stream's work enqueued before it has. cuEvent and
// cuStream point to a gorgonia.org/cu Event and Stream.
func EventRecord(cuEvent, cuStream unsafe.Pointer) error {
	return check("cudaEventRecord", C.cudaEventRecord(eventOf(cuEvent), streamOf(cuStream)))
}

// StreamWaitEvent makes a stream's later work wait for the event's last
// record (cudaStreamWaitEvent, no flags); the host does not wait.
func StreamWaitEvent(cuStream, cuEvent unsafe.Pointer) error {
	return check("cudaStreamWaitEvent", C.cudaStreamWaitEvent(streamOf(cuStream), eventOf(cuEvent), 0))
}

// Malloc allocates bytes of device memory (cudaMalloc).
func Malloc(bytes int64) (uintptr, error) {
	var p unsafe.Pointer
	if err := check("cudaMalloc", C.cudaMalloc(&p, C.size_t(bytes))); err != nil {
		return 0, err
	}
	return uintptr(p), nil
}

// Free frees device memory from Malloc (cudaFree); it waits for the
// device's work first.
func Free(p uintptr) error {
	return check("cudaFree", C.freeDevice(C.uintptr_t(p)))
}

// RuntimeVersion is the version of the linked runtime, e.g. 11080.
func RuntimeVersion() (int, error) {
	var v C.int
	err := check("cudaRuntimeGetVersion", C.cudaRuntimeGetVersion(&v))
	return int(v), err
}
