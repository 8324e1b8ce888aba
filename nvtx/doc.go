// Package nvtx annotates gpubench runs with NVIDIA Tools Extension (NVTX)
// ranges and markers, so that Nsight Systems and other profilers show which
// benchmark phase and iteration a kernel belongs to.
//
// It wraps the header-only NVTX v3 API. Nothing is linked but libdl: the
// first NVTX call loads the tool named by NVTX_INJECTION64_PATH (which a
// profiler sets), and with no tool attached every call is a cheap no-op. The
// package therefore builds and runs on machines without a GPU or a driver.
//
// # Threading
//
// Push/Pop ranges nest per OS thread, not per goroutine: a tool keeps one
// range stack for each thread, and a Pop ends the innermost range of the
// thread it runs on. The CUDA context is current per OS thread too. A
// goroutine that the Go scheduler moves between threads would therefore pop
// another thread's range and launch work in another context. For that
// reason all CUDA, NVTX and profiler calls in gpubench run on one goroutine
// that has called runtime.LockOSThread, and NameOSThread names that thread.
// RangeStart/RangeEnd ranges are not tied to a thread and may end anywhere.
//
// # Cost
//
// The hot path is one Push and one Pop per timed phase. Prepare an
// Attributes value once, with its message as a RegisteredString (or a Text)
// kept alive for the whole run, and only change its Payload (for instance
// the iteration number) between pushes: Push then makes one cgo call and
// allocates nothing, and Pop makes another.
package nvtx
