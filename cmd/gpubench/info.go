package main

import (
	"fmt"
	"io"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/internal/telemetry"
	"github.com/gpubench/gpubench/model"
	"strings"
)

// info describes the GPU as the CUDA driver and NVML see it.
func info(stdout io.Writer) error {
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
	dtypePaths(stdout, i)
	return nvmlInfo(stdout, i)
}

// dtypePaths prints, for each --dtype, which kernels this GPU gets, or why
// it cannot run them: read from the modules each dtype's program launches
// for gpt2-124m (head size 64, which the tensor-core attention kernels
// take; tiny's 32 runs tf32's attention on the FP32 units).
func dtypePaths(w io.Writer, i gpu.Info) {
	p, _ := config.LookupPreset("gpt2-124m")
	fmt.Fprintf(w, "  kernels, for %s's step:\n", p.Name)
	for _, dt := range config.DTypes {
		m := model.Program(p.Dims(1), config.Train, model.Options{SMs: i.SMs, CC: 10*i.CCMajor + i.CCMinor, DType: dt, SharedOptIn: i.SharedOptIn})
		if err := m.CheckDevice(model.Device{Name: i.Name, Major: i.CCMajor, Minor: i.CCMinor, SharedOptIn: i.SharedOptIn}); err != nil {
			fmt.Fprintf(w, "  --dtype=%-4s       cannot run: %v\n", dt, err)
			continue
		}
		fmt.Fprintf(w, "  --dtype=%-4s       %s\n", dt, m.KernelPath())
	}
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }

// nvmlInfo adds what only NVML knows: current clocks, temperature, power
// and why the clocks are held down, if they are. Without NVML it says so
// and succeeds: the CUDA facts above stand on their own.
func nvmlInfo(w io.Writer, i gpu.Info) error {
	s, err := telemetry.OpenPCI(i.PCIDomain, i.PCIBus, i.PCIDevice)
	if err != nil {
		fmt.Fprintf(w, "  NVML                unavailable (%v)\n", err)
		return nil
	}
	defer s.Close()
	st, now := s.Static(), s.Sample()
	reasons := "none"
	if len(now.Reasons) > 0 {
		reasons = strings.Join(now.Reasons, ", ")
	}
	fmt.Fprintf(w, "  driver              %s\n", st.DriverVersion)
	fmt.Fprintf(w, "  SM clock            %d MHz (max %d)\n", now.SMClockMHz, st.MaxSMClockMHz)
	fmt.Fprintf(w, "  memory clock        %d MHz (max %d)\n", now.MemClockMHz, st.MaxMemClockMHz)
	fmt.Fprintf(w, "  temperature         %d C\n", now.TemperatureC)
	fmt.Fprintf(w, "  power               %.0f W (limit %.0f W)\n", now.PowerW, st.PowerLimitW)
	fmt.Fprintf(w, "  clock event reasons %s\n", reasons)
	return nil
}
