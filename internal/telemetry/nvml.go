//go:build linux && cgo

package telemetry

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Open initialises NVML and returns a Sampler for the device at index in
// NVML's order, which is PCI bus order; CUDA's default order (fastest first)
// may differ, so prefer OpenPCI with the CUDA device's PCI address. Without
// a usable driver the error wraps ErrUnavailable. Close the Sampler to
// release NVML.
func Open(index int) (*Sampler, error) {
	return open(func() (nvml.Device, nvml.Return) { return nvml.DeviceGetHandleByIndex(index) },
		fmt.Sprintf("index %d", index))
}

// OpenPCI is Open for the device at a PCI address, as CUDA reports it
// (CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, _PCI_BUS_ID, _PCI_DEVICE_ID).
func OpenPCI(domain, bus, device int) (*Sampler, error) {
	id := fmt.Sprintf("%08x:%02x:%02x.0", domain, bus, device)
	return open(func() (nvml.Device, nvml.Return) { return nvml.DeviceGetHandleByPciBusId(id) }, "PCI "+id)
}

func open(handle func() (nvml.Device, nvml.Return), what string) (*Sampler, error) {
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
			return nil, fmt.Errorf("%w: libnvidia-ml.so.1 not found (no NVIDIA driver installed?)", ErrUnavailable)
		}
		return nil, fmt.Errorf("%w: nvmlInit: %v", ErrUnavailable, ret)
	}
	dev, ret := handle()
	if ret != nvml.SUCCESS {
		nvml.Shutdown()
		return nil, fmt.Errorf("telemetry: NVML device at %s: %v", what, ret)
	}
	var index int
	if i, ret := dev.GetIndex(); ret == nvml.SUCCESS {
		index = i
	}
	r := &nvmlReader{dev: dev}
	// nvmlDeviceGetCurrentClocksEventReasons is the newer name (driver 535+);
	// calling a symbol the library lacks would abort the process, so look.
	r.eventReasons = nvml.Extensions().LookupSymbol("nvmlDeviceGetCurrentClocksEventReasons") == nil
	return newSampler(r, readStatic(index, dev)), nil
}

func readStatic(index int, dev nvml.Device) Static {
	s := Static{Index: index}
	fail := func(field string, ret nvml.Return) {
		if s.Errors == nil {
			s.Errors = map[string]string{}
		}
		s.Errors[field] = ret.Error()
	}
	var ret nvml.Return
	if s.Name, ret = dev.GetName(); ret != nvml.SUCCESS {
		fail("name", ret)
	}
	if s.UUID, ret = dev.GetUUID(); ret != nvml.SUCCESS {
		fail("uuid", ret)
	}
	if s.DriverVersion, ret = nvml.SystemGetDriverVersion(); ret != nvml.SUCCESS {
		fail("driver_version", ret)
	}
	if v, ret := nvml.SystemGetCudaDriverVersion(); ret != nvml.SUCCESS {
		fail("cuda_driver_version", ret)
	} else {
		s.CUDADriverVersion = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
	}
	if s.MaxSMClockMHz, ret = dev.GetMaxClockInfo(nvml.CLOCK_SM); ret != nvml.SUCCESS {
		fail("max_sm_clock_mhz", ret)
	}
	if s.MaxMemClockMHz, ret = dev.GetMaxClockInfo(nvml.CLOCK_MEM); ret != nvml.SUCCESS {
		fail("max_mem_clock_mhz", ret)
	}
	if mw, ret := dev.GetEnforcedPowerLimit(); ret != nvml.SUCCESS {
		fail("power_limit_w", ret)
	} else {
		s.PowerLimitW = float64(mw) / 1000
	}
	if m, ret := dev.GetMemoryInfo(); ret != nvml.SUCCESS {
		fail("memory_total_bytes", ret)
	} else {
		s.MemoryTotalBytes = m.Total
	}
	return s
}

type nvmlReader struct {
	dev          nvml.Device
	eventReasons bool
}

func errOf(ret nvml.Return) error {
	if ret == nvml.SUCCESS {
		return nil
	}
	return ret
}

func (r *nvmlReader) smClockMHz() (uint32, error) {
	v, ret := r.dev.GetClockInfo(nvml.CLOCK_SM)
	return v, errOf(ret)
}

func (r *nvmlReader) memClockMHz() (uint32, error) {
	v, ret := r.dev.GetClockInfo(nvml.CLOCK_MEM)
	return v, errOf(ret)
}

func (r *nvmlReader) temperatureC() (uint32, error) {
	v, ret := r.dev.GetTemperature(nvml.TEMPERATURE_GPU)
	return v, errOf(ret)
}

func (r *nvmlReader) powerMW() (uint32, error) {
	v, ret := r.dev.GetPowerUsage()
	return v, errOf(ret)
}

func (r *nvmlReader) energyMJ() (uint64, error) {
	v, ret := r.dev.GetTotalEnergyConsumption()
	return v, errOf(ret)
}

func (r *nvmlReader) memoryUsedBytes() (uint64, error) {
	m, ret := r.dev.GetMemoryInfo()
	return m.Used, errOf(ret)
}

func (r *nvmlReader) reasons() (uint64, error) {
	if r.eventReasons {
		v, ret := r.dev.GetCurrentClocksEventReasons()
		return v, errOf(ret)
	}
	v, ret := r.dev.GetCurrentClocksThrottleReasons()
	return v, errOf(ret)
}

func (r *nvmlReader) close() error {
	if ret := nvml.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("telemetry: nvmlShutdown: %v", ret)
	}
	return nil
}
