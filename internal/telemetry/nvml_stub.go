//go:build !(linux && cgo)

package telemetry

import "fmt"

// Open always fails in a build without cgo (or off Linux): go-nvml needs
// cgo to dlopen libnvidia-ml. The error wraps ErrUnavailable.
func Open(index int) (*Sampler, error) {
	return nil, fmt.Errorf("%w: gpubench was built without cgo (or not for Linux)", ErrUnavailable)
}

// OpenPCI always fails in a build without cgo; see Open.
func OpenPCI(domain, bus, device int) (*Sampler, error) { return Open(0) }
