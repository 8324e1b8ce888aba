package telemetry

import (
	"errors"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestDecodeReasons(t *testing.T) {
	tests := []struct {
		mask uint64
		want []string
	}{
		{0, []string{}},
		{0x1, []string{"gpu_idle"}},
		{0x2, []string{"applications_clocks_setting"}},
		{0x4, []string{"sw_power_cap"}},
		{0x8, []string{"hw_slowdown"}},
		{0x10, []string{"sync_boost"}},
		{0x20, []string{"sw_thermal_slowdown"}},
		{0x40, []string{"hw_thermal_slowdown"}},
		{0x80, []string{"hw_power_brake_slowdown"}},
		{0x100, []string{"display_clock_setting"}},
		{0x200, []string{"board_limit"}},
		{0x400, []string{"reliability"}},
		{0x4 | 0x20, []string{"sw_power_cap", "sw_thermal_slowdown"}},
		{0x1 | 0x100 | 0x8, []string{"gpu_idle", "hw_slowdown", "display_clock_setting"}},
		{0x800, []string{"unknown_0x800"}},
		{1<<63 | 0x4, []string{"sw_power_cap", "unknown_0x8000000000000000"}},
		{0x7ff, []string{"gpu_idle", "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "sync_boost",
			"sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "display_clock_setting",
			"board_limit", "reliability"}},
	}
	for _, tc := range tests {
		got := DecodeReasons(tc.mask)
		if got == nil || !slices.Equal(got, tc.want) {
			t.Errorf("DecodeReasons(%#x) = %q, want %q", tc.mask, got, tc.want)
		}
	}
	if SlowdownReasons&(ReasonGpuIdle|ReasonApplicationsClocks|ReasonSyncBoost|ReasonDisplayClockSetting) != 0 {
		t.Error("SlowdownReasons holds a non-slowdown bit")
	}
}

// fake is a device whose readings follow a counter.
type fake struct {
	n        atomic.Int64
	noEnergy bool
	closed   atomic.Int64
}

func (f *fake) smClockMHz() (uint32, error)   { return uint32(1000 + f.n.Add(1)), nil }
func (f *fake) memClockMHz() (uint32, error)  { return 2619, nil }
func (f *fake) temperatureC() (uint32, error) { return uint32(40 + f.n.Load()%10), nil }
func (f *fake) powerMW() (uint32, error)      { return 350500, nil }
func (f *fake) energyMJ() (uint64, error) {
	if f.noEnergy {
		return 0, errors.New("Not Supported")
	}
	return uint64(1_000_000 + 1000*f.n.Load()), nil
}
func (f *fake) memoryUsedBytes() (uint64, error) { return 1 << 30, nil }
func (f *fake) reasons() (uint64, error)         { return ReasonSwPowerCap | ReasonGpuIdle, nil }
func (f *fake) close() error                     { f.closed.Add(1); return nil }

func TestSample(t *testing.T) {
	f := &fake{noEnergy: true}
	s := newSampler(f, Static{Name: "Fake GPU"})
	x := s.Sample()
	if x.SMClockMHz != 1001 || x.MemClockMHz != 2619 || x.PowerW != 350.5 || x.MemoryUsedBytes != 1<<30 {
		t.Errorf("sample %+v", x)
	}
	if !slices.Equal(x.Reasons, []string{"gpu_idle", "sw_power_cap"}) || x.ReasonsMask != 0x5 {
		t.Errorf("reasons %v %#x", x.Reasons, x.ReasonsMask)
	}
	if x.Has("energy_mj") || !x.Has("power_w") || x.Errors["energy_mj"] != "Not Supported" || len(x.Errors) != 1 {
		t.Errorf("errors %v", x.Errors)
	}
	if x.Time.IsZero() || s.Static().Name != "Fake GPU" {
		t.Error("time or static missing")
	}
}

func TestStartStop(t *testing.T) {
	f := &fake{}
	s := newSampler(f, Static{})
	if got := s.Stop(); got != nil {
		t.Errorf("Stop before Start = %v", got)
	}
	if err := s.Start(0); err == nil {
		t.Error("Start(0) accepted")
	}
	if err := s.Start(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(time.Millisecond); err == nil {
		t.Error("second Start accepted")
	}
	time.Sleep(30 * time.Millisecond)
	got := s.Stop()
	if len(got) < 2 {
		t.Fatalf("%d samples in 30ms at 1ms", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].SMClockMHz <= got[i-1].SMClockMHz || got[i].Time.Before(got[i-1].Time) {
			t.Errorf("samples out of order at %d", i)
		}
	}
	// Restart gives a fresh set.
	if err := s.Start(time.Hour); err != nil {
		t.Fatal(err)
	}
	if got2 := s.Stop(); len(got2) != 1 {
		t.Errorf("restart: %d samples, want the immediate one", len(got2))
	}
	if err := s.Start(time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil || f.closed.Load() != 1 {
		t.Errorf("second Close: %v, closed %d times", err, f.closed.Load())
	}
	if err := s.Start(time.Millisecond); err == nil {
		t.Error("Start after Close accepted")
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Unix(1000, 0)
	mk := func(sec int, clock uint32, temp uint32, power float64, energy uint64, mask uint64) Sample {
		return Sample{Time: t0.Add(time.Duration(sec) * time.Second), SMClockMHz: clock, TemperatureC: temp,
			PowerW: power, EnergyMJ: energy, MemoryUsedBytes: uint64(sec) << 20, ReasonsMask: mask, Reasons: DecodeReasons(mask)}
	}
	before := mk(0, 345, 35, 70, 5_000_000, ReasonGpuIdle)
	during := []Sample{
		mk(1, 1980, 50, 600, 5_400_000, 0),
		mk(2, 1755, 60, 700, 6_100_000, ReasonSwPowerCap),
		mk(3, 1800, 55, 650, 6_800_000, ReasonSwPowerCap|ReasonSwThermalSlowdown),
	}
	during[1].Errors = map[string]string{"temperature_c": "x"} // ignored
	during[1].TemperatureC = 99
	after := mk(4, 400, 45, 90, 7_000_000, ReasonGpuIdle)

	s := Summarize(&before, during, &after)
	want := Summary{Samples: 3, SMClockMinMHz: 1755, SMClockMaxMHz: 1980, TempMaxC: 55, PowerMeanW: 650, PowerMaxW: 700,
		MemoryMaxUsed: 3 << 20, Reasons: []string{"sw_power_cap", "sw_thermal_slowdown"}, SlowdownSamples: 2,
		EnergyJ: 2000, EnergySeconds: 4}
	if !equalSummary(s, want) {
		t.Errorf("Summarize =\n%+v\nwant\n%+v", s, want)
	}

	// No during samples: ranges from before and after.
	s = Summarize(&before, nil, &after)
	if s.Samples != 2 || s.SMClockMinMHz != 345 || s.SMClockMaxMHz != 400 || s.EnergyJ != 2000 ||
		!slices.Equal(s.Reasons, []string{"gpu_idle"}) {
		t.Errorf("before/after only: %+v", s)
	}
	// Nothing at all.
	s = Summarize(nil, nil, nil)
	if s.Samples != 0 || s.EnergyJ != 0 || s.Reasons == nil {
		t.Errorf("empty: %+v", s)
	}
	// Energy unsupported on the last sample: use the last that has it.
	a2 := after
	a2.Errors = map[string]string{"energy_mj": "Not Supported"}
	a2.EnergyMJ = 0
	s = Summarize(&before, during, &a2)
	if s.EnergyJ != 1800 || s.EnergySeconds != 3 {
		t.Errorf("energy without after: %v J over %v s", s.EnergyJ, s.EnergySeconds)
	}
}

func equalSummary(a, b Summary) bool { return reflect.DeepEqual(a, b) }
