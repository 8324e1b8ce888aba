// Package kernels loads gpubench's PTX modules and launches their kernels.
//
// Each layer has one PTX module (ptx/<layer>.cu) and one Go file here
// (kernels/<layer>.go) with a typed launcher per kernel, whose arguments
// mirror the kernel's parameters. A launch allocates nothing: every kernel
// keeps its own parameter storage, built once when the module is loaded.
//
// All launches go to the stream they are given and return at once; the
// launch's own error (a bad configuration, say) is returned wrapped with the
// kernel's name and shape. Faults inside a kernel surface at the next
// synchronisation; set SyncEachLaunch to pin them to the kernel that caused
// them.
package kernels

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/gpubench/gpubench/internal/cudrv"
	"github.com/gpubench/gpubench/ptx"
	"gorgonia.org/cu"
)

// Kernels holds every kernel of gpubench, grouped by layer.
type Kernels struct {
	Common       Common
	Encoder      Encoder
	LayerNorm    LayerNorm
	Matmul       Matmul
	Attention    Attention
	GELU         GELU
	Residual     Residual
	CrossEntropy CrossEntropy

	// SyncEachLaunch makes every launch wait for its kernel to finish and
	// report the kernel's fault, if any, under its own name. It serialises
	// host and device, so it is for debugging, never for timing.
	SyncEachLaunch bool

	modules []cu.Module
	all     []*kernel
}

// Load JIT-compiles every embedded PTX module for the current context's
// device and looks up each kernel. It must run on the thread holding the
// context.
func Load() (*Kernels, error) {
	k := &Kernels{}
	l := &loader{k: k, modules: map[string]cu.Module{}}
	k.Common.load(l)
	k.Encoder.load(l)
	k.LayerNorm.load(l)
	k.Matmul.load(l)
	k.Attention.load(l)
	k.GELU.load(l)
	k.Residual.load(l)
	k.CrossEntropy.load(l)
	if l.err != nil {
		k.Unload()
		return nil, l.err
	}
	return k, nil
}

// Unload unloads the modules. The kernels must not be launched afterwards.
func (k *Kernels) Unload() {
	for _, m := range k.modules {
		m.Unload()
	}
	k.modules = nil
}

// LaunchCounts returns how often each kernel was launched since Load or the
// last ResetCounts, by PTX entry name. Kernels never launched are left out.
func (k *Kernels) LaunchCounts() map[string]int {
	counts := map[string]int{}
	for _, kn := range k.all {
		if kn.launches > 0 {
			counts[kn.name] += int(kn.launches)
		}
	}
	return counts
}

// ResetCounts sets every launch count to zero.
func (k *Kernels) ResetCounts() {
	for _, kn := range k.all {
		kn.launches = 0
	}
}

// loader loads each module once and collects the first error.
type loader struct {
	k       *Kernels
	modules map[string]cu.Module
	err     error
}

// jitLogSize bounds the JIT's error log; PTX errors are a few lines each.
const jitLogSize = 16 << 10

func (l *loader) module(name string) (cu.Module, bool) {
	if m, ok := l.modules[name]; ok {
		return m, true
	}
	src, err := ptx.Module(name)
	if err != nil {
		l.err = err
		return cu.Module{}, false
	}
	// The error log buffer makes a JIT failure print the JIT's own message
	// (the PTX line and what it did not accept), not only a result code.
	errLog := &cu.JITErrorLogBuffer{Buffer: make([]byte, jitLogSize)}
	m, err := cu.LoadDataEx(src, errLog)
	if err != nil {
		msg := cString(errLog.Buffer)
		if msg == "" {
			msg = "(the JIT left no log)"
		}
		l.err = fmt.Errorf("JIT-compile PTX module %s.ptx: %w\n%s", name, err, msg)
		return cu.Module{}, false
	}
	l.modules[name] = m
	l.k.modules = append(l.k.modules, m)
	return m, true
}

// kernel looks up entry in module; after the first error it returns a
// placeholder so that the layers' load methods need no error plumbing.
func (l *loader) kernel(module, entry string) *kernel {
	kn := &kernel{name: entry, sync: &l.k.SyncEachLaunch}
	for i := range kn.ptrs {
		kn.ptrs[i] = unsafe.Pointer(&kn.slots[i])
	}
	l.k.all = append(l.k.all, kn)
	if l.err != nil {
		return kn
	}
	m, ok := l.module(module)
	if !ok {
		return kn
	}
	fn, err := m.Function(entry)
	if err != nil {
		l.err = fmt.Errorf("kernel %s in %s.ptx: %w", entry, module, err)
		return kn
	}
	kn.fn = fn
	return kn
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// maxParams bounds the parameters of any gpubench kernel.
const maxParams = 16

// arg is one kernel parameter in 8-byte storage. cu's Launch copies 8 bytes
// from every parameter pointer, so 4-byte scalars live in the low half (the
// driver reads only the size the PTX declares; x86-64 and arm64 are little
// endian).
type arg uint64

// ptr passes a device pointer (.u64 in PTX).
func ptr(p cu.DevicePtr) arg { return arg(p) }

// i32 passes an int (.u32/.s32 in PTX). Callers validate ranges before any
// launch; see config.Dims.Validate.
func i32(v int) arg { return arg(uint32(int32(v))) }

// f32 passes a float (.f32 in PTX).
func f32(v float32) arg { return arg(math.Float32bits(v)) }

// dim3 is a grid or block shape.
type dim3 struct{ x, y, z int }

func grid1(x int) dim3       { return dim3{x, 1, 1} }
func grid2(x, y int) dim3    { return dim3{x, y, 1} }
func grid3(x, y, z int) dim3 { return dim3{x, y, z} }

func (d dim3) String() string { return fmt.Sprintf("(%d,%d,%d)", d.x, d.y, d.z) }

// ceilDiv is the number of blocks of size b that cover n.
func ceilDiv(n, b int) int { return (n + b - 1) / b }

// kernel is one loaded kernel with its parameter storage.
type kernel struct {
	name     string
	fn       cu.Function
	slots    [maxParams]arg
	ptrs     [maxParams]unsafe.Pointer // ptrs[i] = &slots[i], set once
	launches uint64
	sync     *bool
}

// LaunchError is a failed launch, with what was launched and how.
type LaunchError struct {
	Kernel      string
	Grid, Block string
	SharedBytes int
	Err         error
}

func (e *LaunchError) Error() string {
	return fmt.Sprintf("kernel %s (grid %s, block %s, %d B shared): %v", e.Kernel, e.Grid, e.Block, e.SharedBytes, e.Err)
}

func (e *LaunchError) Unwrap() error { return e.Err }

// launch enqueues the kernel on s. args must match the PTX entry's parameter
// list in count and size; a CI test checks every call site against the PTX.
func (k *kernel) launch(s cu.Stream, grid, block dim3, sharedBytes int, args ...arg) error {
	n := copy(k.slots[:], args)
	err := k.fn.Launch(grid.x, grid.y, grid.z, block.x, block.y, block.z, sharedBytes, s, k.ptrs[:n])
	if err == nil && *k.sync {
		err = s.Synchronize()
	}
	if err != nil {
		return &LaunchError{Kernel: k.name, Grid: grid.String(), Block: block.String(), SharedBytes: sharedBytes, Err: cudrv.Explain(err)}
	}
	k.launches++
	return nil
}
