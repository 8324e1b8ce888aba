package memplan

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/flops"
	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/model"
	"github.com/gpubench/gpubench/ptx"
)

func mustNew(t *testing.T, d config.Dims, m config.Mode) Plan {
	t.Helper()
	p, err := New(d, m, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanSizes(t *testing.T) {
	for _, d := range []config.Dims{
		config.Presets[0].Dims(1),
		config.Presets[1].Dims(4),
		config.Presets[2].Dims(8),
		{V: 1000, MaxT: 100, T: 70, L: 3, NH: 5, C: 40, B: 3},
	} {
		P := flops.NumParams(d)
		N := int64(d.B * d.T)
		C, V, L := int64(d.C), int64(d.V), int64(d.L)
		lse := int64(d.B * d.NH * d.T)
		// Per layer: ln1 1, qkv 3, atty 1, residual2 1, ln2 1, fch 4,
		// fch_gelu 4, residual3 1 = 16 N·C; 4 N of LN statistics; one
		// logsumexp per (b, h, t). Once: encoded, lnf, proj (3 N·C), lnf
		// statistics (2 N), logits, losses and their logsumexp, the loss.
		act := L*(16*N*C+4*N+lse) + 3*N*C + 2*N + N*V + 2*N + 1
		// Inputs: tokens and targets (2 N); in train mode also the token
		// buckets: order (N), starts and tokens of min(N, V) buckets.
		buckets := min(N, V)
		inputs := 2*N + N + 2*buckets + 1
		// dresidual, dC, d4C (6 N·C), attention's D, LayerNorm partials,
		// and the products' split-K partials and counters: the most that
		// any product of the five linear layers (in → out) needs, the
		// forward (N×out over in), the input gradient (N×in over out) and
		// the weight gradient (out×in over N), at least 1 each.
		mmF, mmC := int64(1), int64(1)
		for _, l := range [][2]int{{d.C, 3 * d.C}, {d.C, d.C}, {d.C, 4 * d.C}, {4 * d.C, d.C}, {d.C, d.V}} {
			in, out, n := l[0], l[1], int(N)
			for _, mnk := range [][3]int{{n, out, in}, {n, in, out}, {out, in, n}} {
				f, c := gemmplan.ProductScratch(mnk[0], mnk[1], mnk[2])
				mmF, mmC = max(mmF, int64(f)), max(mmC, int64(c))
			}
		}
		rows := int64(ptx.LayerNormBwdRows)
		scratch := 6*N*C + lse + 2*C*((N+rows-1)/rows) + mmF + mmC

		tr := mustNew(t, d, config.Train)
		if tr.ParamCount != P || tr.Params != 4*P || tr.Grads != 4*P {
			t.Errorf("%v: params %d/%d/%d, want P=%d", d, tr.ParamCount, tr.Params, tr.Grads, P)
		}
		if tr.Activations != 4*act || tr.Scratch != 4*scratch || tr.Inputs != 4*inputs {
			t.Errorf("%v: activations %d scratch %d inputs %d, want %d %d %d", d, tr.Activations, tr.Scratch, tr.Inputs, 4*act, 4*scratch, 4*inputs)
		}
		var sum, req int64
		for _, b := range tr.Buffers {
			if b.Bytes != 4*b.Elements || b.Elements <= 0 {
				t.Errorf("%v: buffer %+v", d, b)
			}
			sum += b.Bytes
			perLayer := b.Bytes / int64(b.Layers)
			req += int64(b.Layers) * ((perLayer + AllocGranularity - 1) / AllocGranularity * AllocGranularity)
		}
		if tr.Total != sum || tr.Total != tr.Params+tr.Grads+tr.Activations+tr.Inputs+tr.Scratch {
			t.Errorf("%v: total %d, buffers sum to %d", d, tr.Total, sum)
		}
		if tr.Required != req+Headroom {
			t.Errorf("%v: required %d, want %d", d, tr.Required, req+Headroom)
		}
		if b, ok := tr.Buffer("fch"); !ok || b.Layers != d.L || b.Elements != L*N*4*C {
			t.Errorf("%v: fch %+v", d, b)
		}
		if b, ok := tr.Buffer("logits"); !ok || b.Layers != 1 || b.Elements != N*V {
			t.Errorf("%v: logits %+v", d, b)
		}
		if b, ok := tr.Buffer("matmul_partials"); !ok || b.Elements != mmF {
			t.Errorf("%v: matmul_partials %+v, want %d", d, b, mmF)
		}
		if b, ok := tr.Buffer("matmul_counters"); !ok || b.Elements != mmC {
			t.Errorf("%v: matmul_counters %+v, want %d", d, b, mmC)
		}

		in := mustNew(t, d, config.Infer)
		if in.Grads != 0 || in.Scratch != 0 || in.Params != 4*P || in.Activations != 4*act || in.Inputs != 4*2*N {
			t.Errorf("%v: infer plan %+v", d, in)
		}
		for _, name := range []string{"grads", "dresidual", "d4C", "att_delta", "matmul_partials", "matmul_counters"} {
			if _, ok := in.Buffer(name); ok {
				t.Errorf("%v: infer plan has %s", d, name)
			}
		}
		if in.Total >= tr.Total {
			t.Errorf("%v: infer %d not below train %d", d, in.Total, tr.Total)
		}
	}
}

// TestMatmulScratchPresets pins the split-K workspace of the presets at
// their default batch (gemmplan's TestWeightGradScratch has the reasons).
func TestMatmulScratchPresets(t *testing.T) {
	for _, tc := range []struct {
		preset           int
		floats, counters int64
	}{
		{0, 524288, 64},    // tiny: 2 MiB; 64 counters for the lm head's 512×512 forward
		{1, 8388608, 1024}, // small: 32 MiB
		{2, 8388608, 1024}, // gpt2-124m: 32 MiB
	} {
		p := mustNew(t, config.Presets[tc.preset].Dims(config.DefaultBatch), config.Train)
		pf, _ := p.Buffer("matmul_partials")
		pc, _ := p.Buffer("matmul_counters")
		if f, c := pf.Elements, pc.Elements; f != tc.floats || c != tc.counters {
			t.Errorf("%s: %d floats, %d counters; want %d, %d", config.Presets[tc.preset].Name, pf.Elements, pc.Elements, tc.floats, tc.counters)
		}
	}
}

func TestNewErrors(t *testing.T) {
	d := config.Presets[0].Dims(1)
	if _, err := New(d, "sideways", ""); err == nil {
		t.Error("unknown mode accepted")
	}
	d.C = 0
	if _, err := New(d, config.Train, ""); err == nil {
		t.Error("C=0 accepted")
	}
}

func TestLargestBatchThatFits(t *testing.T) {
	d := config.Presets[1].Dims(1)
	for _, mode := range []config.Mode{config.Train, config.Infer} {
		req := func(b int) int64 {
			d2 := d
			d2.B = b
			return mustNew(t, d2, mode).Required
		}
		for _, b := range []int{1, 2, 5, 17, 64} {
			if got := LargestBatchThatFits(d, mode, "", req(b)); got != b {
				t.Errorf("%s: free = required(B=%d): got %d", mode, b, got)
			}
			if got := LargestBatchThatFits(d, mode, "", req(b)-1); got != b-1 {
				t.Errorf("%s: free = required(B=%d)-1: got %d", mode, b, got)
			}
		}
		if got := LargestBatchThatFits(d, mode, "", 0); got != 0 {
			t.Errorf("%s: free 0: got %d", mode, got)
		}
		// Brute force over a range of free sizes.
		for free := req(1) - 1; free < req(40); free += (req(40) - req(1)) / 97 {
			want := 0
			for b := 1; b <= 64 && req(b) <= free; b++ {
				want = b
			}
			if got := LargestBatchThatFits(d, mode, "", free); got != want {
				t.Errorf("%s: free %d: got %d want %d", mode, free, got, want)
			}
		}
	}
	// With memory to spare the 32-bit index limit of config.Validate binds:
	// gpt2-124m logits B·1024·50257 < 2^31 gives B ≤ 41.
	g := config.Presets[2].Dims(8)
	if got := LargestBatchThatFits(g, config.Train, "", 1<<50); got != 41 {
		t.Errorf("gpt2-124m with unbounded memory: got %d, want 41", got)
	}
	bad := g
	bad.NH = 7 // C not divisible: no B is valid
	if got := LargestBatchThatFits(bad, config.Train, "", 1<<50); got != 0 {
		t.Errorf("invalid dims: got %d", got)
	}
	if got := LargestBatchThatFits(g, "sideways", "", 1<<50); got != 0 {
		t.Errorf("bad mode: got %d", got)
	}
}

// TestRefuseGenerate: generate mode's plan counts the KV cache, which grows
// with batch and context, and a refusal names the largest batch and the
// longest prompt that fit, each of which does fit while one more does not.
func TestRefuseGenerate(t *testing.T) {
	p, err := config.LookupPreset("llama2-7b")
	if err != nil {
		t.Fatal(err)
	}
	d := p.Dims(8)
	d.T, d.New = 512, 64
	dt := config.BF16
	need, err := New(d, config.Generate, dt)
	if err != nil {
		t.Fatal(err)
	}
	// B·KVLen·NKV·hs keys and as many values, bf16, per layer.
	if want := int64(2 * 2 * d.L * d.B * d.KVLen() * d.C); need.KVCache != want {
		t.Errorf("KV cache %d bytes, want %d", need.KVCache, want)
	}
	if err := Refuse("llama2-7b", d, config.Generate, dt, need, need.Required); err != nil {
		t.Errorf("a plan that fits exactly was refused: %v", err)
	}
	free := need.Required - need.KVCache/2 // room for half the cache
	err = Refuse("llama2-7b", d, config.Generate, dt, need, free)
	if err == nil {
		t.Fatal("a plan over the free memory was not refused")
	}
	t.Log(err)
	var b, tp, ctx int
	if _, e := fmt.Sscanf(err.Error()[strings.Index(err.Error(), "(the largest"):], "(the largest batch that fits is %d; at batch 8 the longest --prompt-len that fits is %d, a context of %d)", &b, &tp, &ctx); e != nil {
		t.Fatalf("refusal %q does not name the batch and prompt that fit: %v", err, e)
	}
	fits := func(b, t int) bool {
		dd := d
		dd.B, dd.T = b, t
		p, err := New(dd, config.Generate, dt)
		return err == nil && p.Fits(free)
	}
	if !fits(b, d.T) || fits(b+1, d.T) {
		t.Errorf("largest batch %d: fits %v, batch %d fits %v", b, fits(b, d.T), b+1, fits(b+1, d.T))
	}
	if !fits(d.B, tp) || fits(d.B, tp+1) || ctx != tp+d.New-1 {
		t.Errorf("longest prompt %d (context %d): fits %v, one more fits %v", tp, ctx, fits(d.B, tp), fits(d.B, tp+1))
	}
}

// TestRefuseKeepsTheFlaws: the batch Refuse suggests for an unfused run
// fits with unfused's own buffers (gelu_tmp), not only the clean plan's.
func TestRefuseKeepsTheFlaws(t *testing.T) {
	p, err := config.LookupPreset("small")
	if err != nil {
		t.Fatal(err)
	}
	d := p.Dims(16)
	o := model.Options{Flaws: []config.Flaw{config.Unfused}}
	need, err := NewWith(d, config.Train, o)
	if err != nil {
		t.Fatal(err)
	}
	// Memory for batch 8 of the clean step, not of the unfused one.
	d8 := d
	d8.B = 8
	clean8, _ := New(d8, config.Train, "")
	unfused8, _ := NewWith(d8, config.Train, o)
	free := clean8.Required
	if unfused8.Fits(free) {
		t.Fatalf("unfused's gelu_tmp should not fit in the clean batch 8's %d B", free)
	}
	err = Refuse("small", d, config.Train, "", need, free)
	if err == nil || !strings.Contains(err.Error(), "the largest batch that fits is 7") {
		t.Errorf("%v", err)
	}
}
