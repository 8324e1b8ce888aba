package flops

import (
	"math"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
)

// TestCountTiny checks every component against numbers worked by hand for
// B=1 T=2 C=4 NH=2 (hs=2) L=1 V=3 MaxT=2, N=2, 3 live scores per head.
func TestCountTiny(t *testing.T) {
	d := config.Dims{V: 3, MaxT: 2, T: 2, L: 1, NH: 2, C: 4, B: 1}
	want := []struct {
		name     string
		fwd, bwd int64
	}{
		{"encoder", 8, 16},         // N·C=8 × 1; dwte 8 + dwpe 8
		{"ln1", 64, 112},           // 8 × 8; 8 × 12 (input) + 8 × 2 (params)
		{"qkv", 192 + 24, 408},     // 2·2·4·12, bias 2·12; input 192 + weight 192 + bias 24
		{"attention", 94, 256},     // see below
		{"attn proj", 64 + 8, 136}, // 2·2·4·4, bias 2·4
		{"residual1", 8, 0},        // its gradient is the LayerNorm backward's accumulate
		{"ln2", 64, 112},           //
		{"fc", 256 + 32, 544},      // 2·2·4·16, bias 2·16
		{"gelu", 288, 640},         // 32 × 9, × 20
		{"fc proj", 256 + 8, 520},  // 2·2·16·4, bias 2·4
		{"residual2", 8, 0},        //
		{"final ln", 64, 112},      //
		{"lm head", 48, 96},        // 2·2·4·3, no bias
		{"loss", 24 + 2, 24},       // N·V=6 × 4, and the mean over N=2 rows
		{"zero dresidual", 0, 0},   // memsets
		{"zero dwpe", 0, 0},        //
	}
	// attention: one causal product over both heads is 2 heads × 2·hs·3
	// live scores = 24. Forward: 2 products (48) + 5 per live score (30) +
	// (hs+2) per query row and head (16) = 94. Backward: D = rowsum(dO∘O),
	// 2·N·C = 16; dK/dV kernel 4 products (96) + 6 per live score (36);
	// dQ kernel 3 products (72) + 36: 256.
	c := Count(d)
	if len(c.Components) != len(want) {
		t.Fatalf("%d components, want %d: %+v", len(c.Components), len(want), c.Components)
	}
	for i, w := range want {
		got := c.Components[i]
		if got.Name != w.name || got.Forward != w.fwd || got.Backward != w.bwd {
			t.Errorf("component %d = %s %d/%d, want %s %d/%d", i, got.Name, got.Forward, got.Backward, w.name, w.fwd, w.bwd)
		}
	}
	if c.Forward != 1512 || c.Backward != 2976 || c.Total() != 4488 {
		t.Errorf("totals %d/%d/%d, want 1512/2976/4488", c.Forward, c.Backward, c.Total())
	}
	// P = 3·4 + 2·4 + (12·16 + 13·4) + 2·4 = 272
	if c.Params != 272 || c.Tokens != 2 || c.SixND != 6*272*2 {
		t.Errorf("params %d tokens %d sixnd %d", c.Params, c.Tokens, c.SixND)
	}
	if c.ForMode(config.Infer) != 1512 || c.ForMode(config.Train) != 4488 {
		t.Errorf("ForMode wrong")
	}
}

// TestCountAgainstRules checks a matmul-dominated shape against formulas
// written independently of Count: the exact matmul terms, and the 6ND rule
// plus the causal attention term within a tolerance.
func TestCountAgainstRules(t *testing.T) {
	for _, d := range []config.Dims{
		{V: 4096, MaxT: 128, T: 128, L: 2, NH: 4, C: 512, B: 4},
		{V: 8192, MaxT: 256, T: 200, L: 6, NH: 8, C: 512, B: 3},
		config.Presets[2].Dims(8), // gpt2-124m
	} {
		c := Count(d)
		N := float64(d.B * d.T)
		C, V, L, B, T := float64(d.C), float64(d.V), float64(d.L), float64(d.B), float64(d.T)

		// Per token per layer the linears hold 3C²+C²+4C²+4C² = 12C² weights.
		linFwd := 2 * N * 12 * C * C * L
		headFwd := 2 * N * C * V
		attn := B * C * T * (T + 1) // one causal matmul, all heads, one layer
		if got, want := float64(c.MatmulForward), linFwd+headFwd+2*L*attn; got != want {
			t.Errorf("%v: MatmulForward %v, want %v", d, got, want)
		}
		if got, want := float64(c.MatmulBackward), 2*(linFwd+headFwd)+7*L*attn; got != want {
			t.Errorf("%v: MatmulBackward %v, want %v", d, got, want)
		}

		P := V*C + float64(d.MaxT)*C + L*(12*C*C+13*C) + 2*C
		if float64(c.Params) != P || float64(c.SixND) != 6*P*N {
			t.Errorf("%v: params %d, want %v", d, c.Params, P)
		}
		est := 6*P*N + 9*L*attn // 2 attention products forward, 7 backward
		if rel := math.Abs(float64(c.Total())-est) / est; rel > 0.02 {
			t.Errorf("%v: total %d vs 6ND+attention %.4g: off by %.2f%%", d, c.Total(), est, 100*rel)
		}
		// Matmuls dominate.
		if frac := float64(c.MatmulForward+c.MatmulBackward) / float64(c.Total()); frac < 0.98 {
			t.Errorf("%v: matmuls only %.3f of the total", d, frac)
		}
		// Backward of a linear is twice its forward (plus the bias sums).
		qkv, _ := c.Component("qkv")
		if qkv.Backward != 2*qkv.Forward-int64(d.L*d.B*d.T*3*d.C) {
			t.Errorf("%v: qkv %d/%d", d, qkv.Forward, qkv.Backward)
		}
	}
	if _, ok := Count(config.Presets[0].Dims(1)).Component("nope"); ok {
		t.Error("Component found a missing name")
	}
}

func TestPeakTable(t *testing.T) {
	tests := []struct {
		name  string
		want  float64
		label string
	}{
		{"NVIDIA H100 80GB HBM3", 66.9, "H100 SXM"},
		{"NVIDIA H100 SXM5 80GB", 66.9, "H100 SXM"},
		{"NVIDIA H100 PCIe", 51.2, "H100 PCIe"},
		{"NVIDIA H100 NVL", 60.0, "H100 NVL"},
		{"NVIDIA H200", 66.9, "H200 SXM"},
		{"NVIDIA H200 NVL", 60.0, "H200 NVL"},
		{"NVIDIA GH200 480GB", 66.9, "GH200"},
		{"NVIDIA A100-SXM4-80GB", 19.5, "A100"},
		{"NVIDIA A100 80GB PCIe", 19.5, "A100"},
		{"NVIDIA A10", 31.2, "A10"},
		{"NVIDIA L4", 30.3, "L4"},
		{"NVIDIA L40S", 91.6, "L40S"},
		{"nvidia l40", 90.5, "L40"},
		{"Tesla V100-SXM2-32GB", 15.7, "V100 SXM2"},
		{"Tesla V100-PCIE-16GB", 14.0, "V100 PCIe"},
		{"Tesla T4", 8.1, "T4"},
	}
	for _, tc := range tests {
		got, src := PeakFP32(tc.name, 0, 0, 0, 0)
		if got != tc.want || src != "table: "+tc.label {
			t.Errorf("PeakFP32(%q) = %v, %q; want %v, table: %s", tc.name, got, src, tc.want, tc.label)
		}
	}
}

func TestPeakFormula(t *testing.T) {
	tests := []struct {
		name              string
		sms, major, minor int
		mhz               int
		want              float64
	}{
		{"NVIDIA A10G", 80, 8, 6, 1710, 80 * 128 * 2 * 1710e6 / 1e12},             // not the A10 row
		{"Some Hopper", 132, 9, 0, 1980, 66.90},                                   // = H100 SXM datasheet
		{"Some Hopper PCIe", 114, 9, 0, 1755, 51.22},                              // = H100 PCIe
		{"Some Ampere DC", 108, 8, 0, 1410, 19.49},                                // = A100: 64 lanes on sm_80
		{"Some Ada", 58, 8, 9, 2040, 30.29},                                       // = L4
		{"Some Volta", 80, 7, 0, 1530, 15.67},                                     // = V100 SXM2
		{"", 10, 12, 0, 1000, 10 * 128 * 2 * 1000e6 / 1e12},                       // empty name
		{"NVIDIA GeForce GTX 1080", 20, 6, 1, 1733, 20 * 128 * 2 * 1733e6 / 1e12}, // Pascal consumer
	}
	for _, tc := range tests {
		got, src := PeakFP32(tc.name, tc.sms, tc.major, tc.minor, tc.mhz)
		if math.Abs(got-tc.want) > 0.01 || len(src) < 8 || src[:8] != "formula:" {
			t.Errorf("PeakFP32(%q, %d, %d.%d, %d) = %v, %q; want %.2f from formula", tc.name, tc.sms, tc.major, tc.minor, tc.mhz, got, src, tc.want)
		}
	}
	for _, tc := range []struct{ sms, major, minor, mhz int }{{0, 9, 0, 1980}, {132, 1, 0, 1980}, {132, 9, 0, 0}} {
		if got, src := PeakFP32("Mystery GPU", tc.sms, tc.major, tc.minor, tc.mhz); got != 0 || src[:8] != "unknown:" {
			t.Errorf("PeakFP32(unknown %v) = %v, %q; want 0, unknown", tc, got, src)
		}
	}
}

func TestFP32LanesPerSM(t *testing.T) {
	for _, tc := range []struct{ major, minor, want int }{
		{7, 0, 64}, {7, 5, 64}, {8, 0, 64}, {8, 6, 128}, {8, 9, 128}, {9, 0, 128}, {6, 0, 64}, {6, 1, 128}, {2, 0, 0},
	} {
		if got := FP32LanesPerSM(tc.major, tc.minor); got != tc.want {
			t.Errorf("FP32LanesPerSM(%d.%d) = %d, want %d", tc.major, tc.minor, got, tc.want)
		}
	}
}
