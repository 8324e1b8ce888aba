package main

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/gpubench/gpubench/internal/cudrv"
	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/kernels"
	"github.com/gpubench/gpubench/nvtx"
)

// selftest proves the chain every run depends on, with the smallest kernel:
// embedded PTX is JIT-compiled, a program with the template's NVTX ranges
// is run from Go inside a profiler window, and computes the right numbers.
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
	x, err := cuexec.New(dev)
	if err != nil {
		return err
	}
	defer x.Close()
	fmt.Fprintf(stdout, "device: %s (sm_%d%d), PTX modules JIT-compiled in %v\n",
		dev.Info.Name, dev.Info.CCMajor, dev.Info.CCMinor, time.Since(start).Round(time.Millisecond))

	const n, iters = 1 << 20, 3
	var p program.Program
	buf := p.Buffer("buf", -1, program.F32, n, program.Scratch)
	if err := x.Alloc(p.Buffers...); err != nil {
		return err
	}
	if err := gpu.Poison(x.Ptr(buf.All()), n); err != nil {
		return err
	}
	if err := cudrv.ProfilerStart(); err != nil {
		return err
	}
	for i := 0; i < iters; i++ {
		// One fill a phase, of the iteration's own value.
		it := program.Range{Name: program.IterationName(i)}
		for _, phase := range []string{program.Forward, program.Backward} {
			it.Nest(phase).Add(kernels.Fill(buf.All(), n, float32(i)+0.5))
		}
		if err := x.Run(&it); err != nil {
			return err
		}
	}
	if err := cudrv.ProfilerStop(); err != nil {
		return err
	}
	got := make([]float32, n)
	if err := cuexec.Download(x, got, buf.All()); err != nil {
		return fmt.Errorf("fill_f32: %w", err)
	}
	want := float32(iters-1) + 0.5
	for i, v := range got {
		if v != want || math.IsNaN(float64(v)) {
			return fmt.Errorf("fill_f32 wrote %v at element %d, want %v", v, i, want)
		}
	}
	fmt.Fprintf(stdout, "fill_f32: %d launches in %d NVTX iterations inside cuProfilerStart/Stop; all %d elements correct\n",
		x.LaunchCounts()["fill_f32"], iters, n)
	return nil
}
