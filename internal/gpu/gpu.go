// Package gpu opens a CUDA device for gpubench and owns its device memory.
//
// A Device is bound to the OS thread that opened it: the CUDA context is
// current on that thread only. Open locks the calling goroutine to its thread
// and everything that uses the Device must run on that goroutine.
package gpu

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/gpubench/gpubench/internal/cudart"
	"github.com/gpubench/gpubench/internal/cudrv"
	"gorgonia.org/cu"
)

// Info describes the device, as the driver reports it.
type Info struct {
	Ordinal        int    `json:"ordinal"`
	Name           string `json:"name"`
	CCMajor        int    `json:"cc_major"`
	CCMinor        int    `json:"cc_minor"`
	SMs            int    `json:"sms"`
	TotalMemory    int64  `json:"total_memory_bytes"`
	ClockMHz       int    `json:"max_clock_mhz"`
	MemoryClockMHz int    `json:"memory_clock_mhz"`
	MemoryBusBits  int    `json:"memory_bus_bits"`
	L2Bytes        int    `json:"l2_bytes"`
	// SharedOptIn is the most dynamic shared memory one block may ask for
	// after opting in (cuFuncSetAttribute): 227 KB on Hopper.
	SharedOptIn   int `json:"shared_optin_bytes"`
	DriverVersion int `json:"driver_cuda_version"` // cuDriverGetVersion: 13000 is CUDA 13.0
	PCIDomain     int `json:"pci_domain"`
	PCIBus        int `json:"pci_bus"`
	PCIDevice     int `json:"pci_device"`
}

// CUDAVersion formats DriverVersion as major.minor.
func (i Info) CUDAVersion() string {
	return fmt.Sprintf("%d.%d", i.DriverVersion/1000, i.DriverVersion%1000/10)
}

// Device is an open CUDA device with its primary context current on the
// calling thread, one stream for all work, and a record of its allocations.
type Device struct {
	Info   Info
	Stream cu.Stream

	dev       cu.Device
	ctx       cu.CUContext
	allocated int64 // bytes currently allocated through Alloc
	peak      int64 // largest value of allocated
	buffers   map[cu.DevicePtr]int64
}

// Open locks the calling goroutine to its OS thread, makes the device's
// primary context current and creates the work stream.
func Open(ordinal int) (*Device, error) {
	runtime.LockOSThread()
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("count CUDA devices: %w", err)
	}
	if ordinal < 0 || ordinal >= n {
		return nil, fmt.Errorf("--device: %d is not a CUDA device (allowed: 0..%d)", ordinal, n-1)
	}
	dev, err := cu.GetDevice(ordinal)
	if err != nil {
		return nil, fmt.Errorf("get device %d: %w", ordinal, err)
	}
	ctx, err := dev.RetainPrimaryCtx()
	if err != nil {
		return nil, fmt.Errorf("retain primary context of device %d: %w", ordinal, err)
	}
	if err := cu.SetCurrentContext(ctx); err != nil {
		dev.ReleasePrimaryCtx()
		return nil, fmt.Errorf("make context current: %w", err)
	}
	d := &Device{dev: dev, ctx: ctx, buffers: map[cu.DevicePtr]int64{}}
	if d.Info, err = query(ordinal, dev); err != nil {
		dev.ReleasePrimaryCtx()
		return nil, err
	}
	// A blocking stream: it orders itself after the synchronous copies and
	// memsets (Upload, Poison), which run on the legacy default stream and
	// may return before the device has finished them.
	if d.Stream, err = cu.MakeStream(cu.DefaultStream); err != nil {
		dev.ReleasePrimaryCtx()
		return nil, fmt.Errorf("create stream: %w", err)
	}
	return d, nil
}

func query(ordinal int, dev cu.Device) (Info, error) {
	info := Info{Ordinal: ordinal, DriverVersion: cu.Version()}
	var err error
	if info.Name, err = dev.Name(); err != nil {
		return info, fmt.Errorf("device name: %w", err)
	}
	if info.TotalMemory, err = dev.TotalMem(); err != nil {
		return info, fmt.Errorf("device memory: %w", err)
	}
	attrs := []struct {
		dst  *int
		attr cu.DeviceAttribute
	}{
		{&info.CCMajor, cu.ComputeCapabilityMajor},
		{&info.CCMinor, cu.ComputeCapabilityMinor},
		{&info.SMs, cu.MultiprocessorCount},
		{&info.ClockMHz, cu.ClockRate},
		{&info.MemoryClockMHz, cu.MemoryClockRate},
		{&info.MemoryBusBits, cu.GlobalMemoryBusWidth},
		{&info.L2Bytes, cu.L2CacheSize},
		// CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, which
		// gorgonia.org/cu does not name.
		{&info.SharedOptIn, cu.DeviceAttribute(97)},
		{&info.PCIDomain, cu.PciDomainID},
		{&info.PCIBus, cu.PciBusID},
		{&info.PCIDevice, cu.PciDeviceID},
	}
	for _, a := range attrs {
		if *a.dst, err = dev.Attribute(a.attr); err != nil {
			return info, fmt.Errorf("device attribute %v: %w", a.attr, err)
		}
	}
	info.ClockMHz /= 1000 // the driver reports kHz
	info.MemoryClockMHz /= 1000
	return info, nil
}

// Close frees every buffer still allocated, destroys the stream and releases
// the primary context.
func (d *Device) Close() error {
	for p := range d.buffers {
		cu.MemFree(p)
	}
	d.buffers = nil
	d.Stream.Destroy()
	err := d.dev.ReleasePrimaryCtx()
	runtime.UnlockOSThread()
	return err
}

// MemInfo returns the free and total device memory in bytes.
func (d *Device) MemInfo() (free, total int64, err error) { return cu.MemInfo() }

// Alloc allocates bytes of device memory and records them for PeakAllocated.
func (d *Device) Alloc(bytes int64) (cu.DevicePtr, error) { return d.AllocWith(bytes, false) }

// AllocWith is Alloc through the driver (cuMemAlloc) or, with viaRuntime,
// through the runtime API (cudaMalloc, as the planted flaws allocate),
// counted alike.
func (d *Device) AllocWith(bytes int64, viaRuntime bool) (cu.DevicePtr, error) {
	if bytes <= 0 {
		bytes = 4 // cuMemAlloc refuses 0; an empty tensor still needs an address
	}
	var p cu.DevicePtr
	var err error
	if viaRuntime {
		var a uintptr
		a, err = cudart.Malloc(bytes)
		p = cu.DevicePtr(a)
	} else {
		p, err = cu.MemAlloc(bytes)
	}
	if err != nil {
		return 0, fmt.Errorf("allocate %d bytes of device memory (%d already allocated): %w", bytes, d.allocated, err)
	}
	d.buffers[p] = bytes
	d.allocated += bytes
	d.peak = max(d.peak, d.allocated)
	return p, nil
}

// Free releases a buffer from Alloc.
func (d *Device) Free(p cu.DevicePtr) error { return d.FreeWith(p, false) }

// FreeWith releases a buffer from AllocWith through the same API.
func (d *Device) FreeWith(p cu.DevicePtr, viaRuntime bool) error {
	bytes, ok := d.buffers[p]
	if !ok {
		return fmt.Errorf("free %v: not allocated by this device", p)
	}
	delete(d.buffers, p)
	d.allocated -= bytes
	if viaRuntime {
		return cudart.Free(uintptr(p))
	}
	return cu.MemFree(p)
}

// Allocated returns the bytes currently allocated through Alloc.
func (d *Device) Allocated() int64 { return d.allocated }

// PeakAllocated returns the most bytes ever allocated at once through Alloc.
func (d *Device) PeakAllocated() int64 { return d.peak }

// AllocF32 allocates n float32s.
func (d *Device) AllocF32(n int) (cu.DevicePtr, error) { return d.Alloc(int64(n) * 4) }

// Upload copies host values to device memory (synchronously).
func Upload[T float32 | int32 | uint16](dst cu.DevicePtr, src []T) error {
	if len(src) == 0 {
		return nil
	}
	return cu.MemcpyHtoD(dst, unsafe.Pointer(&src[0]), int64(len(src))*int64(unsafe.Sizeof(src[0])))
}

// Download copies device memory into dst (synchronously).
func Download[T float32 | int32 | uint16](dst []T, src cu.DevicePtr) error {
	if len(dst) == 0 {
		return nil
	}
	return cu.MemcpyDtoH(unsafe.Pointer(&dst[0]), src, int64(len(dst))*int64(unsafe.Sizeof(dst[0])))
}

// NaNBits is the float32 quiet NaN that Poison writes.
const NaNBits = 0x7fc00000

// Poison fills n float32s with NaN, so that an element a kernel should have
// written but did not shows up in any comparison.
func Poison(p cu.DevicePtr, n int) error {
	if n == 0 {
		return nil
	}
	return cu.MemsetD32(p, NaNBits, int64(n))
}

// BF16NaNBits is the bfloat16 quiet NaN that PoisonBF16 writes.
const BF16NaNBits = 0x7fc0

// PoisonBF16 fills n bfloat16s with NaN.
func PoisonBF16(p cu.DevicePtr, n int) error {
	if n == 0 {
		return nil
	}
	return cu.MemsetD16(p, BF16NaNBits, int64(n))
}

// Synchronize waits for the stream's work and returns its first error.
func (d *Device) Synchronize() error { return cudrv.Explain(d.Stream.Synchronize()) }

// Context returns the device's primary context, to make it current on
// another locked thread (tests run each test on its own goroutine).
func (d *Device) Context() (cu.CUContext, error) { return d.ctx, nil }

// Size returns the bytes of a buffer from Alloc, or 0 for another pointer.
func (d *Device) Size(p cu.DevicePtr) int64 { return d.buffers[p] }

// CopyBandwidth measures the device-to-device copy bandwidth in GB/s
// (bytes read plus bytes written, per second): the best of five copies of
// bytes between two buffers of its own, timed with CUDA events on the
// stream. It is the bound a memory-bound kernel is compared with; its
// buffers are freed before it returns and are not counted by
// PeakAllocated.
func (d *Device) CopyBandwidth(bytes int64) (gbps float64, err error) {
	src, err := cu.MemAlloc(bytes)
	if err != nil {
		return 0, fmt.Errorf("copy bandwidth: allocate %d bytes: %w", bytes, err)
	}
	defer cu.MemFree(src)
	dst, err := cu.MemAlloc(bytes)
	if err != nil {
		return 0, fmt.Errorf("copy bandwidth: allocate %d bytes: %w", bytes, err)
	}
	defer cu.MemFree(dst)
	var evs [2]cu.Event
	for i := range evs {
		if evs[i], err = cu.MakeEvent(cu.DefaultEvent); err != nil {
			return 0, err
		}
		defer cu.DestroyEvent(&evs[i])
	}
	best := 0.0
	for rep := 0; rep < 6; rep++ { // the first is a warm-up
		if err := evs[0].Record(d.Stream); err != nil {
			return 0, err
		}
		if err := cu.MemcpyDtoDAsync(dst, src, bytes, d.Stream); err != nil {
			return 0, fmt.Errorf("copy bandwidth: %w", err)
		}
		if err := evs[1].Record(d.Stream); err != nil {
			return 0, err
		}
		if err := d.Synchronize(); err != nil {
			return 0, err
		}
		ms, err := evs[0].Elapsed(evs[1])
		if err != nil {
			return 0, err
		}
		if rep > 0 && ms > 0 {
			best = max(best, 2*float64(bytes)/(float64(ms)/1e3)/1e9)
		}
	}
	return best, nil
}
