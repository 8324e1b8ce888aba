// Package bf16 converts between float32 and bfloat16, the 16-bit format of
// the bf16 kernels: float32's sign and 8 exponent bits with 7 of its 23
// fraction bits. A bfloat16 is held as its bits in a uint16, as the GPU
// stores it.
package bf16

import "math"

// FromFloat32 rounds f to the nearest bfloat16, ties to even, as the GPU's
// cvt.rn.bf16.f32 (__float2bfloat16) does. NaN stays a quiet NaN of the
// same sign; values beyond the largest bfloat16 round to infinity.
func FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it NaN after the cut
		return uint16(b>>16) | 0x0040
	}
	// Adding 0x7fff plus the kept part's lowest bit rounds to nearest with
	// ties to even; a carry into the exponent is the correct rounding up.
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// ToFloat32 is the exact float32 value of the bfloat16 bits h.
func ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Round is f rounded to bfloat16 and back: the value a bf16 buffer holds.
func Round(f float64) float64 { return float64(ToFloat32(FromFloat32(float32(f)))) }

// NaN is the bits of the quiet NaN with which buffers are poisoned.
const NaN uint16 = 0x7fc0

// Epsilon is the spacing of bfloat16 numbers just above 1: 2^-7. A value
// rounded to bf16 has a relative error of at most half of it.
const Epsilon = 1.0 / 128
