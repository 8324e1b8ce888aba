package telemetry

import (
	"errors"
	"strings"
	"testing"
)

// TestOpenWithoutDriver checks that a machine without an NVIDIA driver gets
// an error from Open rather than a crash. It is skipped only where Open
// succeeds, that is where a driver and a GPU are present.
func TestOpenWithoutDriver(t *testing.T) {
	s, err := Open(0)
	if err == nil {
		st := s.Static()
		x := s.Sample()
		if cerr := s.Close(); cerr != nil {
			t.Errorf("Close: %v", cerr)
		}
		t.Skipf("NVML is present (%s, driver %s; sample %+v): nothing to test", st.Name, st.DriverVersion, x)
	}
	if !errors.Is(err, ErrUnavailable) && !strings.Contains(err.Error(), "NVML") {
		t.Errorf("Open error %q neither wraps ErrUnavailable nor names NVML", err)
	}
	t.Logf("Open(0): %v", err)
	// A second try fails the same way, and so does OpenPCI.
	if _, err2 := Open(0); err2 == nil {
		t.Error("second Open succeeded")
	}
	if _, err3 := OpenPCI(0, 1, 0); err3 == nil {
		t.Error("OpenPCI succeeded where Open failed")
	}
}
