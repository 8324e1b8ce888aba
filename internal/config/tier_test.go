package config

import (
	"strings"
	"testing"
)

// TestValidateTier: the Hopper tier takes bf16 and tf32 and refuses fp32
// in one line that names what is allowed; the sm_80 tier refuses fp32.
func TestValidateTier(t *testing.T) {
	for _, c := range []struct {
		tier Tier
		dt   DType
		want []string // nil: accepted
	}{
		{TierWGMMA, BF16, nil},
		{TierWGMMA, TF32, nil},
		{TierWGMMA, FP32, []string{"--tier=wgmma", "bf16 and tf32", "not fp32", "--dtype=bf16 or tf32", "--tier=auto"}},
		{TierMMA, TF32, nil},
		{TierMMA, FP32, []string{"--tier=mma", "fp32"}},
		{TierAuto, FP32, nil},
		{TierAuto, TF32, nil},
	} {
		err := ValidateTier(c.tier, c.dt)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s with %s: %v", c.tier, c.dt, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s with %s: accepted", c.tier, c.dt)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s with %s: the error is not one line: %q", c.tier, c.dt, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s with %s: %q does not say %q", c.tier, c.dt, err, w)
			}
		}
	}
}

// TestParseRunTier: --tier reaches ValidateTier through the flags (the
// command line's exit 2 is ParseRun's error).
func TestParseRunTier(t *testing.T) {
	if _, err := ParseRun([]string{"--tier=wgmma", "--dtype=tf32"}); err != nil {
		t.Errorf("--tier=wgmma --dtype=tf32: %v", err)
	}
	if _, err := ParseRun([]string{"--tier=wgmma", "--dtype=fp32"}); err == nil || !strings.Contains(err.Error(), "bf16 and tf32") {
		t.Errorf("--tier=wgmma --dtype=fp32: %v, want the Hopper tier's dtypes", err)
	}
}

// TestUsesWGMMA: auto takes the Hopper tier on compute capability 9.0 for
// both tensor-core dtypes, wgmma anywhere, mma never; fp32 never.
func TestUsesWGMMA(t *testing.T) {
	for _, c := range []struct {
		tier Tier
		dt   DType
		cc   int
		want bool
	}{
		{TierAuto, BF16, 90, true},
		{TierAuto, TF32, 90, true},
		{"", TF32, 90, true},
		{TierAuto, TF32, 80, false},
		{TierAuto, TF32, 100, false},
		{TierAuto, FP32, 90, false},
		{TierWGMMA, TF32, 80, true},
		{TierMMA, TF32, 90, false},
		{TierMMA, BF16, 90, false},
	} {
		if got := c.tier.UsesWGMMA(c.dt, c.cc); got != c.want {
			t.Errorf("%q.UsesWGMMA(%s, %d) = %v, want %v", c.tier, c.dt, c.cc, got, c.want)
		}
	}
}
