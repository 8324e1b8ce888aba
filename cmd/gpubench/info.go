package main

import (
	"fmt"
	"io"

	"github.com/gpubench/gpubench/internal/gpu"
)

// info describes the GPU as the CUDA driver and NVML see it.
func info(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("info takes no arguments, got %q", args[0])}
	}
	dev, err := gpu.Open(0)
	if err != nil {
		return err
	}
	defer dev.Close()
	i := dev.Info
	free, total, err := dev.MemInfo()
	if err != nil {
		return fmt.Errorf("cuMemGetInfo: %w", err)
	}
	fmt.Fprintf(stdout, "device %d: %s\n", i.Ordinal, i.Name)
	fmt.Fprintf(stdout, "  compute capability  %d.%d\n", i.CCMajor, i.CCMinor)
	fmt.Fprintf(stdout, "  multiprocessors     %d\n", i.SMs)
	fmt.Fprintf(stdout, "  memory              %.1f GiB total, %.1f GiB free\n", gib(total), gib(free))
	fmt.Fprintf(stdout, "  memory bus          %d bit, %d MHz\n", i.MemoryBusBits, i.MemoryClockMHz)
	fmt.Fprintf(stdout, "  L2 cache            %d MiB\n", i.L2Bytes>>20)
	fmt.Fprintf(stdout, "  max SM clock        %d MHz\n", i.ClockMHz)
	fmt.Fprintf(stdout, "  driver CUDA version %s\n", i.CUDAVersion())
	return nvmlInfo(stdout, i.Ordinal)
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }
