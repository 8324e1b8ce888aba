package nvtx_test

import (
	"os"
	"runtime"
	"testing"

	"github.com/gpubench/gpubench/nvtx"
)

func TestColor(t *testing.T) {
	tests := []struct {
		name string
		got  nvtx.Color
		want nvtx.Color
	}{
		{"ARGB", nvtx.ARGB(0x12, 0x34, 0x56, 0x78), 0x12345678},
		{"RGB is opaque", nvtx.RGB(0x34, 0x56, 0x78), 0xff345678},
		{"black", nvtx.RGB(0, 0, 0), 0xff000000},
		{"transparent", nvtx.ARGB(0, 0xff, 0xff, 0xff), 0x00ffffff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %#08x, want %#08x", tt.got, tt.want)
			}
		})
	}
}

func TestNULIsAnError(t *testing.T) {
	const bad = "for\x00ward"
	d := newDomain(t, "gpubench-test")

	tests := []struct {
		name string
		call func() error
	}{
		{"NewText", func() error { _, err := nvtx.NewText(bad); return err }},
		{"RegisterString", func() error { _, err := nvtx.RegisterString(bad); return err }},
		{"Domain.RegisterString", func() error { _, err := d.RegisterString(bad); return err }},
		{"NewDomain", func() error { _, err := nvtx.NewDomain(bad); return err }},
		{"NameCategory", func() error { return nvtx.NameCategory(1, bad) }},
		{"Domain.NameCategory", func() error { return d.NameCategory(1, bad) }},
		{"NameOSThread", func() error { return nvtx.NameOSThread(bad) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil {
				t.Error("got nil error for a string with a NUL byte")
			}
		})
	}
}

// With no tool attached every call must be a harmless no-op.
func TestNoTool(t *testing.T) {
	if os.Getenv("NVTX_INJECTION64_PATH") != "" {
		t.Skip("a tool is attached")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	if err := nvtx.NameOSThread("test"); err != nil {
		t.Fatal(err)
	}
	msg := newText(t, "x")
	d := newDomain(t, "gpubench-test")
	reg := registerString(t, d, "y")
	if reg.String() != "y" {
		t.Errorf("RegisteredString.String() = %q, want %q", reg.String(), "y")
	}

	for _, m := range []nvtx.Message{msg, reg, nil} {
		a := nvtx.Attributes{Message: m, Color: nvtx.RGB(1, 2, 3), Category: 1, Payload: nvtx.Uint64(1)}
		levels := map[string]int{
			"Push":        nvtx.Push(&a),
			"Pop":         nvtx.Pop(),
			"Domain.Push": d.Push(&a),
			"Domain.Pop":  d.Pop(),
		}
		for call, got := range levels {
			if got != nvtx.NoPushPopTracking {
				t.Errorf("%T message: %s = %d, want NoPushPopTracking", m, call, got)
			}
		}
		if id := nvtx.RangeStart(&a); id != 0 {
			t.Errorf("RangeStart = %d, want 0", id)
		}
		if id := d.RangeStart(&a); id != 0 {
			t.Errorf("Domain.RangeStart = %d, want 0", id)
		}
		nvtx.Mark(&a)
		d.Mark(&a)
	}
}

func TestPushPopAllocatesNothing(t *testing.T) {
	msg := newText(t, "iteration")
	d := newDomain(t, "gpubench-test")
	reg := registerString(t, d, "kernel")

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tests := []struct {
		name string
		run  func(i uint64)
	}{
		{"Push+Pop", func(i uint64) {
			a := nvtx.Attributes{Message: msg, Color: nvtx.RGB(0, 0, 255), Category: 1, Payload: nvtx.Uint64(i)}
			nvtx.Push(&a)
			nvtx.Pop()
		}},
		{"Domain.Push+Pop", func(i uint64) {
			a := nvtx.Attributes{Message: reg, Color: nvtx.RGB(0, 255, 0), Category: 2, Payload: nvtx.Uint64(i)}
			d.Push(&a)
			d.Pop()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var i uint64
			allocs := testing.AllocsPerRun(1000, func() {
				i++
				tt.run(i)
			})
			if allocs != 0 {
				t.Errorf("%v allocations per push+pop, want 0", allocs)
			}
		})
	}
}

func BenchmarkPushPop(b *testing.B) {
	a := nvtx.Attributes{Message: newText(b, "iteration"), Color: nvtx.RGB(0, 0, 255), Category: 1}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	for i := uint64(0); b.Loop(); i++ {
		a.Payload = nvtx.Uint64(i)
		nvtx.Push(&a)
		nvtx.Pop()
	}
}

func BenchmarkDomainPushPop(b *testing.B) {
	d := newDomain(b, "gpubench-bench")
	a := nvtx.Attributes{Message: registerString(b, d, "kernel"), Color: nvtx.RGB(0, 255, 0), Category: 2}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	for i := uint64(0); b.Loop(); i++ {
		a.Payload = nvtx.Uint64(i)
		d.Push(&a)
		d.Pop()
	}
}

func newText(tb testing.TB, s string) *nvtx.Text {
	tb.Helper()
	msg, err := nvtx.NewText(s)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(msg.Free)
	return msg
}

func newDomain(tb testing.TB, name string) *nvtx.Domain {
	tb.Helper()
	d, err := nvtx.NewDomain(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Destroy)
	return d
}

func registerString(tb testing.TB, d *nvtx.Domain, s string) *nvtx.RegisteredString {
	tb.Helper()
	r, err := d.RegisterString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}
