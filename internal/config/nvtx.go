package config

import (
	"fmt"
	"strings"
)

// NVTXDepth is how deep the NVTX ranges of a step go (--nvtx).
type NVTXDepth string

// The depths, from the template's to one range per operation.
const (
	// NVTXIteration: iteration{i} holding forward, then backward (the
	// Nsight Systems template's ranges; the default).
	NVTXIteration NVTXDepth = "iteration"
	// NVTXLayer adds, in each pass, embedding, layer{l} holding attention
	// and mlp, and head.
	NVTXLayer NVTXDepth = "layer"
	// NVTXOp adds one range per operation of the program, inside the
	// layer ranges, named after its kernel (or driver call).
	NVTXOp NVTXDepth = "op"
)

// NVTXDepths lists the depths in order.
var NVTXDepths = []NVTXDepth{NVTXIteration, NVTXLayer, NVTXOp}

// ParseNVTXDepth checks an --nvtx value.
func ParseNVTXDepth(s string) (NVTXDepth, error) {
	return parseChoice("--nvtx", "depth", s, NVTXDepths)
}

// MaxNVTXDomain bounds the length of an --nvtx-domain name.
const MaxNVTXDomain = 64

// ValidNVTXDomain checks an --nvtx-domain name: empty (the global domain),
// or up to MaxNVTXDomain printable ASCII characters other than '@' and
// whitespace (nsys's -p NAME@DOMAIN splits on '@').
func ValidNVTXDomain(s string) error {
	if len(s) > MaxNVTXDomain {
		return fmt.Errorf("--nvtx-domain: %d characters, at most %d are allowed", len(s), MaxNVTXDomain)
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r > '~' || r == '@' }); i >= 0 {
		return fmt.Errorf("--nvtx-domain: %q holds %q at byte %d (allowed: printable ASCII without spaces or '@')", s, s[i], i)
	}
	return nil
}
