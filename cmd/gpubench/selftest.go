package main

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/gpubench/gpubench/internal/cudrv"
	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/kernels"
	"github.com/gpubench/gpubench/nvtx"
)

// selftest proves the chain every run depends on, with the smallest kernel:
// embedded PTX is JIT-compiled, launched from Go inside the template's NVTX
// ranges and a profiler window, and computes the right numbers.
func selftest(stdout io.Writer) error {
	start := time.Now()
	dev, err := gpu.Open(0)
	if err != nil {
		return err
	}
	defer dev.Close()
	if err := nvtx.NameOSThread("gpubench main"); err != nil {
		return err
	}
	k, err := kernels.Load()
	if err != nil {
		return err
	}
	defer k.Unload()
	fmt.Fprintf(stdout, "device: %s (sm_%d%d), PTX modules JIT-compiled in %v\n",
		dev.Info.Name, dev.Info.CCMajor, dev.Info.CCMinor, time.Since(start).Round(time.Millisecond))

	const n, iters = 1 << 20, 3
	buf, err := dev.AllocF32(n)
	if err != nil {
		return err
	}
	if err := gpu.Poison(buf, n); err != nil {
		return err
	}
	if err := cudrv.ProfilerStart(); err != nil {
		return err
	}
	for i := 0; i < iters; i++ {
		name, err := nvtx.NewText(fmt.Sprintf("iteration%d", i))
		if err != nil {
			return err
		}
		nvtx.Push(&nvtx.Attributes{Message: name, Payload: nvtx.Int64(int64(i))})
		for _, phase := range []string{"forward", "backward"} {
			text, _ := nvtx.NewText(phase)
			nvtx.Push(&nvtx.Attributes{Message: text})
			if err := k.Common.Fill(dev.Stream, buf, n, float32(i)+0.5); err != nil {
				return err
			}
			nvtx.Pop()
			text.Free()
		}
		nvtx.Pop()
		name.Free()
	}
	if err := cudrv.ProfilerStop(); err != nil {
		return err
	}
	if err := dev.Synchronize(); err != nil {
		return fmt.Errorf("fill_f32: %w", err)
	}
	got := make([]float32, n)
	if err := gpu.Download(got, buf); err != nil {
		return err
	}
	want := float32(iters-1) + 0.5
	for i, v := range got {
		if v != want || math.IsNaN(float64(v)) {
			return fmt.Errorf("fill_f32 wrote %v at element %d, want %v", v, i, want)
		}
	}
	fmt.Fprintf(stdout, "fill_f32: %d launches in %d NVTX iterations inside cuProfilerStart/Stop; all %d elements correct\n",
		k.LaunchCounts()["fill_f32"], iters, n)
	return nil
}
