// Package nccl binds the few NCCL calls that a data-parallel gpubench run
// needs: the communicator's unique id, its creation and destruction, the
// gradients' all-reduce and the group calls around a bucket of them.
//
// NCCL is loaded at run time (dlopen of libnccl.so.2, then libnccl.so),
// not linked: building gpubench needs neither NCCL nor nccl.h, and a
// machine without NCCL runs everything but --gpus, which Load refuses
// with one line naming the library and the loader's reason. The
// types and constants of nccl.h that the calls take are declared here, with
// the values of NCCL 2's src/nccl.h.in (stable since 2.0; bfloat16 since
// 2.10).
//
// Streams and device pointers are passed as uintptr (a CUstream, a
// CUdeviceptr: a cudaStream_t is the same handle), so this package imports
// neither gorgonia.org/cu nor the driver: it is built and tested on CI.
// Like every CUDA call in gpubench, a call that takes a communicator runs
// on the OS thread whose CUDA context is current (the device's primary
// context, which NCCL's runtime calls then use).
//
// One rank's sequence, with the id handed from rank 0 to the others by the
// parent process (package launch):
//
//	lib, err := nccl.Load()
//	id, err := lib.UniqueID()             // rank 0 only; the others receive it
//	comm, err := lib.CommInitRank(world, id, rank) // blocks until every rank has called it
//	lib.GroupStart(); comm.AllReduce(grad, grad, n, nccl.Float32, nccl.Sum, stream); lib.GroupEnd()
//	comm.Destroy()                        // or comm.Abort() after a failure
package nccl

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// nccl.h's types, declared here (see the package comment). Every NCCL enum
// (ncclResult_t, ncclDataType_t, ncclRedOp_t) has the size of an int.
typedef int nccl_result;
typedef struct { char internal[128]; } nccl_unique_id; // ncclUniqueId: NCCL_UNIQUE_ID_BYTES
typedef void* nccl_comm;                               // ncclComm_t
typedef void* cuda_stream;                             // cudaStream_t, a CUstream

// gpubench_dlopen opens a library, or returns NULL and a copy of dlerror's
// message in *err (free it). dlerror's text is per thread: it is read in
// the same call as dlopen, on the same thread.
static void* gpubench_dlopen(const char* name, char** err) {
	void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char* e = dlerror();
		*err = strdup(e != NULL ? e : "unknown dlopen error");
	}
	return h;
}

static void* gpubench_dlsym(void* h, const char* name) {
	dlerror();
	return dlsym(h, name);
}

// The calls, through the pointers dlsym found: cgo cannot call a C
// function pointer itself.
static nccl_result call_get_version(void* f, int* v) { return ((nccl_result (*)(int*))f)(v); }
static nccl_result call_get_unique_id(void* f, nccl_unique_id* id) {
	return ((nccl_result (*)(nccl_unique_id*))f)(id);
}
static nccl_result call_comm_init_rank(void* f, nccl_comm* comm, int nranks, const nccl_unique_id* id, int rank) {
	// The id is passed by value, as ncclCommInitRank takes it.
	return ((nccl_result (*)(nccl_comm*, int, nccl_unique_id, int))f)(comm, nranks, *id, rank);
}
static nccl_result call_comm(void* f, nccl_comm comm) { return ((nccl_result (*)(nccl_comm))f)(comm); }
static nccl_result call_all_reduce(void* f, uintptr_t send, uintptr_t recv, size_t count, int dtype, int op,
                                   nccl_comm comm, uintptr_t stream) {
	return ((nccl_result (*)(const void*, void*, size_t, int, int, nccl_comm, cuda_stream))f)(
		(const void*)send, (void*)recv, count, dtype, op, comm, (cuda_stream)stream);
}
static nccl_result call_void(void* f) { return ((nccl_result (*)(void))f)(); }
static const char* call_error_string(void* f, nccl_result r) { return ((const char* (*)(nccl_result))f)(r); }
static const char* call_last_error(void* f, nccl_comm comm) { return ((const char* (*)(nccl_comm))f)(comm); }
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

// Names are the libraries Load tries, in order: the runtime library's
// soname, then the development link, for a NCCL installed without it.
var Names = []string{"libnccl.so.2", "libnccl.so"}

// Lib is a loaded NCCL: its calls, found by dlsym.
type Lib struct {
	name string
	h    unsafe.Pointer

	getVersion, getUniqueID, commInitRank, commDestroy, commAbort unsafe.Pointer
	allReduce, groupStart, groupEnd, getErrorString               unsafe.Pointer
	getLastError                                                  unsafe.Pointer // nil where the library predates ncclGetLastError
}

var (
	loadOnce sync.Once
	loaded   *Lib
	loadErr  error
)

// Load opens NCCL once and returns it, or the same error every time: one
// line naming the library and the dynamic loader's reason, such as
// "load NCCL: libnccl.so.2: cannot open shared object file: No such file
// or directory (also tried libnccl.so: ...)".
func Load() (*Lib, error) {
	loadOnce.Do(func() { loaded, loadErr = open(Names) })
	return loaded, loadErr
}

// open loads the first of names that dlopen finds and binds its calls.
func open(names []string) (*Lib, error) {
	var reasons []string
	for _, name := range names {
		cname := C.CString(name)
		var cerr *C.char
		h := C.gpubench_dlopen(cname, &cerr)
		C.free(unsafe.Pointer(cname))
		if h == nil {
			reasons = append(reasons, C.GoString(cerr))
			C.free(unsafe.Pointer(cerr))
			continue
		}
		l := &Lib{name: name, h: h}
		if err := l.bind(); err != nil {
			C.dlclose(h)
			return nil, err
		}
		return l, nil
	}
	if len(reasons) == 0 {
		return nil, errors.New("load NCCL: no library named")
	}
	msg := "load NCCL: " + reasons[0]
	if len(reasons) > 1 {
		msg += " (also tried " + strings.Join(reasons[1:], "; ") + ")"
	}
	return nil, errors.New(msg)
}

// bind looks up every call gpubench makes, so that a library lacking one
// fails at Load, not in the middle of a step.
func (l *Lib) bind() error {
	for _, s := range []struct {
		name string
		fn   *unsafe.Pointer
	}{
		{"ncclGetVersion", &l.getVersion},
		{"ncclGetUniqueId", &l.getUniqueID},
		{"ncclCommInitRank", &l.commInitRank},
		{"ncclCommDestroy", &l.commDestroy},
		{"ncclCommAbort", &l.commAbort},
		{"ncclAllReduce", &l.allReduce},
		{"ncclGroupStart", &l.groupStart},
		{"ncclGroupEnd", &l.groupEnd},
		{"ncclGetErrorString", &l.getErrorString},
	} {
		if *s.fn = l.sym(s.name); *s.fn == nil {
			return fmt.Errorf("load NCCL: %s has no %s (gpubench needs NCCL 2.4 or later)", l.name, s.name)
		}
	}
	l.getLastError = l.sym("ncclGetLastError")
	return nil
}

func (l *Lib) sym(name string) unsafe.Pointer {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return C.gpubench_dlsym(l.h, cname)
}

// Name is the library Load opened, as dlopen was given it.
func (l *Lib) Name() string { return l.name }

// Version is the loaded library's version (ncclGetVersion).
func (l *Lib) Version() (Version, error) {
	var v C.int
	if err := l.check("ncclGetVersion", C.call_get_version(l.getVersion, &v), nil); err != nil {
		return Version{}, err
	}
	return VersionOf(int(v)), nil
}

// UniqueID makes the id of a new communicator (ncclGetUniqueId). One rank
// calls it, rank 0 by convention, and passes the id to every other rank
// before they all call CommInitRank with it. It opens the socket NCCL's
// bootstrap listens on, so the id is only good while this process lives.
func (l *Lib) UniqueID() (UniqueID, error) {
	var id C.nccl_unique_id
	if err := l.check("ncclGetUniqueId", C.call_get_unique_id(l.getUniqueID, &id), nil); err != nil {
		return UniqueID{}, err
	}
	var out UniqueID
	copy(out[:], C.GoBytes(unsafe.Pointer(&id), C.int(len(out))))
	return out, nil
}

// GroupStart opens a group of NCCL calls (ncclGroupStart): the all-reduces
// of one bucket, launched together at GroupEnd.
func (l *Lib) GroupStart() error {
	return l.check("ncclGroupStart", C.call_void(l.groupStart), nil)
}

// GroupEnd closes the group GroupStart opened and enqueues its calls
// (ncclGroupEnd).
func (l *Lib) GroupEnd() error {
	return l.check("ncclGroupEnd", C.call_void(l.groupEnd), nil)
}

// Comm is a communicator: this process's rank in a world of ranks.
type Comm struct {
	lib         *Lib
	c           C.nccl_comm
	rank, world int
}

// CommInitRank joins the communicator of id as rank of world
// (ncclCommInitRank), on the CUDA device of the current context. It blocks
// until every rank of the world has called it with the same id.
func (l *Lib) CommInitRank(world int, id UniqueID, rank int) (*Comm, error) {
	if world < 1 || rank < 0 || rank >= world {
		return nil, fmt.Errorf("ncclCommInitRank: rank %d of %d is no rank", rank, world)
	}
	cid := *(*C.nccl_unique_id)(unsafe.Pointer(&id))
	var c C.nccl_comm
	op := fmt.Sprintf("ncclCommInitRank(rank %d of %d)", rank, world)
	if err := l.check(op, C.call_comm_init_rank(l.commInitRank, &c, C.int(world), &cid, C.int(rank)), nil); err != nil {
		return nil, err
	}
	return &Comm{lib: l, c: c, rank: rank, world: world}, nil
}

// Rank is the communicator's rank, World its number of ranks.
func (c *Comm) Rank() int  { return c.rank }
func (c *Comm) World() int { return c.world }

// AllReduce enqueues on stream the reduction by op of count elements of
// type dt at send, across every rank, into recv (ncclAllReduce); send ==
// recv reduces in place. send and recv are device pointers (CUdeviceptr),
// stream a CUstream.
func (c *Comm) AllReduce(send, recv uintptr, count int, dt DataType, op RedOp, stream uintptr) error {
	name := fmt.Sprintf("ncclAllReduce(%d %v, %v)", count, dt, op)
	if count < 0 {
		return fmt.Errorf("%s: a negative count", name)
	}
	r := C.call_all_reduce(c.lib.allReduce, C.uintptr_t(send), C.uintptr_t(recv), C.size_t(count),
		C.int(dt), C.int(op), c.c, C.uintptr_t(stream))
	if r == 0 {
		return nil // the error's name is formatted only on failure
	}
	return c.lib.check(name, r, c)
}

// Destroy frees the communicator once its enqueued work has completed
// (ncclCommDestroy).
func (c *Comm) Destroy() error {
	return c.lib.check("ncclCommDestroy", C.call_comm(c.lib.commDestroy, c.c), nil)
}

// Abort frees the communicator and stops the operations it still runs
// (ncclCommAbort): the way out after another rank has failed, whose
// collectives would otherwise wait for it forever.
func (c *Comm) Abort() error {
	return c.lib.check("ncclCommAbort", C.call_comm(c.lib.commAbort, c.c), nil)
}

// check turns an NCCL result into an *Error carrying NCCL's description
// of it and, where the library has ncclGetLastError, the last error it
// logged for comm.
func (l *Lib) check(op string, r C.nccl_result, comm *Comm) error {
	if r == 0 {
		return nil
	}
	e := &Error{Op: op, Code: Result(r)}
	if s := C.call_error_string(l.getErrorString, r); s != nil {
		e.Msg = C.GoString(s)
	}
	if l.getLastError != nil {
		var c C.nccl_comm
		if comm != nil {
			c = comm.c
		}
		if s := C.call_last_error(l.getLastError, c); s != nil {
			e.Detail = C.GoString(s)
		}
	}
	return e
}
