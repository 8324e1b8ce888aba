package config

import "fmt"

// Tier is which family of tensor-core kernels runs the bf16 and tf32
// products (--tier): the sm_80 tier (mma.sync, ldmatrix, cp.async; Ampere
// and later) or the Hopper tier (wgmma and TMA; sm_90a, compute
// capability 9.0 only). auto takes the Hopper tier where the GPU has it.
type Tier string

// The tiers.
const (
	TierAuto  Tier = "auto"
	TierMMA   Tier = "mma"
	TierWGMMA Tier = "wgmma"
)

// Tiers lists the tiers in the order --help shows them.
var Tiers = []Tier{TierAuto, TierMMA, TierWGMMA}

// ParseTier checks a --tier value.
func ParseTier(s string) (Tier, error) { return parseChoice("--tier", "tier", s, Tiers) }

// ValidateTier refuses a tier the dtype has no kernels of: both tiers run
// the bf16 and tf32 products; fp32 runs on the FP32 units whatever the
// tier.
func ValidateTier(t Tier, dt DType) error {
	switch {
	case t == TierWGMMA && !dt.TensorCores():
		return fmt.Errorf("--tier=wgmma: the Hopper tier has bf16 and tf32 products only, not %s (use --dtype=bf16 or tf32, or --tier=auto)", dt)
	case t == TierMMA && !dt.TensorCores():
		return fmt.Errorf("--tier=mma: %s runs no product on tensor cores (a tier needs --dtype=bf16 or tf32, or leave --tier=auto)", dt)
	}
	return nil
}

// UsesWGMMA says whether a step of dtype dt on a GPU of compute capability
// cc (major·10 + minor) runs its products on the Hopper tier under t:
// bf16 and tf32 do, on 9.0 under auto or wherever under wgmma.
func (t Tier) UsesWGMMA(dt DType, cc int) bool {
	if !dt.TensorCores() {
		return false
	}
	return t == TierWGMMA || ((t == TierAuto || t == "") && cc == 90)
}
