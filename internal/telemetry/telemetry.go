// Package telemetry samples a GPU's clocks, temperature, power, energy,
// memory use and clock event ("throttle") reasons through NVML, with
// github.com/NVIDIA/go-nvml.
//
// go-nvml loads libnvidia-ml.so.1 with dlopen when NVML is initialised, so
// this package builds and its tests run on machines without a driver; there
// Open returns an error wrapping ErrUnavailable and the caller carries on
// without telemetry. Builds without cgo get a stub whose Open always fails
// the same way.
//
// NVML is thread-safe and independent of the CUDA context, so a Sampler may
// sample from its own goroutine (Start/Stop) while another goroutine, locked
// to its OS thread, drives CUDA.
//
// Every reading is fallible on its own (energy, for one, is not supported on
// every board): a failed reading leaves its field zero and records the NVML
// error in Sample.Errors under the field's JSON name.
package telemetry

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"
)

// ErrUnavailable is wrapped by Open's error when NVML cannot be loaded or
// initialised (no NVIDIA driver, no GPU, or a build without cgo).
var ErrUnavailable = errors.New("telemetry: NVML unavailable")

// Static is what does not change during a run.
type Static struct {
	Index             int               `json:"index"`
	Name              string            `json:"name"`
	UUID              string            `json:"uuid,omitempty"`
	DriverVersion     string            `json:"driver_version"`
	CUDADriverVersion string            `json:"cuda_driver_version,omitempty"` // e.g. "12.4"
	MaxSMClockMHz     uint32            `json:"max_sm_clock_mhz"`
	MaxMemClockMHz    uint32            `json:"max_mem_clock_mhz"`
	PowerLimitW       float64           `json:"power_limit_w"` // enforced limit
	MemoryTotalBytes  uint64            `json:"memory_total_bytes"`
	Errors            map[string]string `json:"errors,omitempty"` // field → NVML error
}

// Sample is one reading of the dynamic values.
type Sample struct {
	Time            time.Time `json:"time"`
	SMClockMHz      uint32    `json:"sm_clock_mhz"`
	MemClockMHz     uint32    `json:"mem_clock_mhz"`
	TemperatureC    uint32    `json:"temperature_c"`
	PowerW          float64   `json:"power_w"`
	EnergyMJ        uint64    `json:"energy_mj"` // total since the driver loaded, millijoules
	MemoryUsedBytes uint64    `json:"memory_used_bytes"`
	ReasonsMask     uint64    `json:"clock_event_reasons_mask"`
	Reasons         []string  `json:"clock_event_reasons"` // DecodeReasons(ReasonsMask)
	// Errors maps the JSON name of each field whose reading failed to the
	// NVML error; such a field is zero.
	Errors map[string]string `json:"errors,omitempty"`
}

// Has reports whether the field with the given JSON name was read.
func (s *Sample) Has(field string) bool {
	_, failed := s.Errors[field]
	return !failed
}

// Clock event reason bits (nvmlClocksEventReason*, formerly
// nvmlClocksThrottleReason*; the values did not change).
const (
	ReasonGpuIdle              uint64 = 0x1
	ReasonApplicationsClocks   uint64 = 0x2
	ReasonSwPowerCap           uint64 = 0x4
	ReasonHwSlowdown           uint64 = 0x8
	ReasonSyncBoost            uint64 = 0x10
	ReasonSwThermalSlowdown    uint64 = 0x20
	ReasonHwThermalSlowdown    uint64 = 0x40
	ReasonHwPowerBrakeSlowdown uint64 = 0x80
	ReasonDisplayClockSetting  uint64 = 0x100
	ReasonBoardLimit           uint64 = 0x200
	ReasonReliability          uint64 = 0x400
)

// SlowdownReasons are the bits that mean the clocks are held down by power,
// thermal or board limits, as opposed to idling or settings.
const SlowdownReasons = ReasonSwPowerCap | ReasonHwSlowdown | ReasonSwThermalSlowdown |
	ReasonHwThermalSlowdown | ReasonHwPowerBrakeSlowdown | ReasonBoardLimit | ReasonReliability

var reasonNames = []struct {
	bit  uint64
	name string
}{
	{ReasonGpuIdle, "gpu_idle"},
	{ReasonApplicationsClocks, "applications_clocks_setting"},
	{ReasonSwPowerCap, "sw_power_cap"},
	{ReasonHwSlowdown, "hw_slowdown"},
	{ReasonSyncBoost, "sync_boost"},
	{ReasonSwThermalSlowdown, "sw_thermal_slowdown"},
	{ReasonHwThermalSlowdown, "hw_thermal_slowdown"},
	{ReasonHwPowerBrakeSlowdown, "hw_power_brake_slowdown"},
	{ReasonDisplayClockSetting, "display_clock_setting"},
	{ReasonBoardLimit, "board_limit"},
	{ReasonReliability, "reliability"},
}

// DecodeReasons names the bits set in a clock event reasons mask, lowest
// bit first; a bit it does not know is named "unknown_0x<bit>". A zero mask
// (no reason: the clocks run as high as they may) gives an empty, non-nil
// slice.
func DecodeReasons(mask uint64) []string {
	names := []string{}
	for m := mask; m != 0; m &= m - 1 {
		bit := uint64(1) << bits.TrailingZeros64(m)
		names = append(names, reasonName(bit))
	}
	return names
}

func reasonName(bit uint64) string {
	for _, r := range reasonNames {
		if r.bit == bit {
			return r.name
		}
	}
	return fmt.Sprintf("unknown_0x%x", bit)
}

// reader is the NVML device, thin: one call per value. Errors are NVML's.
type reader interface {
	smClockMHz() (uint32, error)
	memClockMHz() (uint32, error)
	temperatureC() (uint32, error)
	powerMW() (uint32, error)
	energyMJ() (uint64, error)
	memoryUsedBytes() (uint64, error)
	reasons() (uint64, error)
	close() error
}

// Sampler reads one device. Its methods may be called from any goroutine.
type Sampler struct {
	r      reader
	static Static
	now    func() time.Time

	mu      sync.Mutex
	stop    chan struct{}
	done    chan struct{}
	samples []Sample
	closed  bool
}

func newSampler(r reader, static Static) *Sampler {
	return &Sampler{r: r, static: static, now: time.Now}
}

// Static returns the device's static information, read at Open.
func (s *Sampler) Static() Static { return s.static }

// Sample reads every dynamic value once.
func (s *Sampler) Sample() Sample {
	out := Sample{Time: s.now()}
	fail := func(field string, err error) {
		if out.Errors == nil {
			out.Errors = map[string]string{}
		}
		out.Errors[field] = err.Error()
	}
	var err error
	if out.SMClockMHz, err = s.r.smClockMHz(); err != nil {
		fail("sm_clock_mhz", err)
	}
	if out.MemClockMHz, err = s.r.memClockMHz(); err != nil {
		fail("mem_clock_mhz", err)
	}
	if out.TemperatureC, err = s.r.temperatureC(); err != nil {
		fail("temperature_c", err)
	}
	if mw, err := s.r.powerMW(); err != nil {
		fail("power_w", err)
	} else {
		out.PowerW = float64(mw) / 1000
	}
	if out.EnergyMJ, err = s.r.energyMJ(); err != nil {
		fail("energy_mj", err)
	}
	if out.MemoryUsedBytes, err = s.r.memoryUsedBytes(); err != nil {
		fail("memory_used_bytes", err)
	}
	if out.ReasonsMask, err = s.r.reasons(); err != nil {
		fail("clock_event_reasons_mask", err)
	}
	out.Reasons = DecodeReasons(out.ReasonsMask)
	return out
}

// Start samples now and then every interval on a goroutine of its own until
// Stop. It is an error to Start a running or closed Sampler or to pass an
// interval that is not positive.
func (s *Sampler) Start(interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("telemetry: sampling interval %v is not positive", interval)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("telemetry: Start on a closed Sampler")
	}
	if s.stop != nil {
		return errors.New("telemetry: Start on a running Sampler")
	}
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	s.samples = nil
	go s.loop(interval, s.stop, s.done)
	return nil
}

func (s *Sampler) loop(interval time.Duration, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		x := s.Sample()
		s.mu.Lock()
		s.samples = append(s.samples, x)
		s.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// Stop ends the sampling that Start began and returns its samples, oldest
// first. It returns nil if the Sampler is not running.
func (s *Sampler) Stop() []Sample {
	s.mu.Lock()
	stop, done := s.stop, s.done
	s.stop, s.done = nil, nil
	s.mu.Unlock()
	if stop == nil {
		return nil
	}
	close(stop)
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.samples
	s.samples = nil
	return out
}

// Close stops any sampling and releases NVML. The Sampler is unusable after.
func (s *Sampler) Close() error {
	s.Stop()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	return s.r.close()
}

// Summary condenses the samples of a run.
type Summary struct {
	Samples       int      `json:"samples"` // during-run samples summarised
	SMClockMinMHz uint32   `json:"sm_clock_min_mhz"`
	SMClockMaxMHz uint32   `json:"sm_clock_max_mhz"`
	TempMaxC      uint32   `json:"temperature_max_c"`
	PowerMeanW    float64  `json:"power_mean_w"` // mean of the power readings
	PowerMaxW     float64  `json:"power_max_w"`
	MemoryMaxUsed uint64   `json:"memory_used_max_bytes"`
	Reasons       []string `json:"clock_event_reasons"` // union over the samples
	// SlowdownSamples counts samples with any SlowdownReasons bit set.
	SlowdownSamples int `json:"slowdown_samples"`
	// EnergyJ is the energy counter's rise from the first to the last
	// sample that has one (before … after), in joules; 0 without two.
	EnergyJ float64 `json:"energy_j"`
	// EnergySeconds is the time between those two samples.
	EnergySeconds float64 `json:"energy_seconds"`
}

// Summarize condenses a run's samples: the value ranges come from during
// (or, if during is empty, from before and after), the energy from the
// counter's first and last readings over before, during and after. before
// and after may be nil.
func Summarize(before *Sample, during []Sample, after *Sample) Summary {
	use := during
	if len(use) == 0 {
		for _, p := range []*Sample{before, after} {
			if p != nil {
				use = append(use, *p)
			}
		}
	}
	var sum Summary
	var mask uint64
	var powerSum float64
	var powerN int
	for i := range use {
		x := &use[i]
		sum.Samples++
		if x.Has("sm_clock_mhz") {
			if sum.SMClockMinMHz == 0 || x.SMClockMHz < sum.SMClockMinMHz {
				sum.SMClockMinMHz = x.SMClockMHz
			}
			sum.SMClockMaxMHz = max(sum.SMClockMaxMHz, x.SMClockMHz)
		}
		if x.Has("temperature_c") {
			sum.TempMaxC = max(sum.TempMaxC, x.TemperatureC)
		}
		if x.Has("power_w") {
			powerSum += x.PowerW
			powerN++
			sum.PowerMaxW = max(sum.PowerMaxW, x.PowerW)
		}
		if x.Has("memory_used_bytes") {
			sum.MemoryMaxUsed = max(sum.MemoryMaxUsed, x.MemoryUsedBytes)
		}
		if x.Has("clock_event_reasons_mask") {
			mask |= x.ReasonsMask
			if x.ReasonsMask&SlowdownReasons != 0 {
				sum.SlowdownSamples++
			}
		}
	}
	if powerN > 0 {
		sum.PowerMeanW = powerSum / float64(powerN)
	}
	sum.Reasons = DecodeReasons(mask)

	var all []*Sample
	if before != nil {
		all = append(all, before)
	}
	for i := range during {
		all = append(all, &during[i])
	}
	if after != nil {
		all = append(all, after)
	}
	var first, last *Sample
	for _, x := range all {
		if x.Has("energy_mj") && x.EnergyMJ > 0 {
			if first == nil {
				first = x
			}
			last = x
		}
	}
	if first != nil && last != first && last.EnergyMJ >= first.EnergyMJ {
		sum.EnergyJ = float64(last.EnergyMJ-first.EnergyMJ) / 1000
		sum.EnergySeconds = last.Time.Sub(first.Time).Seconds()
	}
	return sum
}
