package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
)

func tinyDims(t *testing.T) config.Dims {
	t.Helper()
	p, err := config.LookupPreset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	return p.Dims(config.DefaultBatch)
}

// shapes returns the model shapes the tests run over: the tiny preset (L=2),
// odd layer counts and the largest preset.
func shapes(t *testing.T) []config.Dims {
	tiny := tinyDims(t)
	out := []config.Dims{tiny}
	for _, L := range []int{1, 3, 7} {
		d := tiny
		d.L = L
		out = append(out, d)
	}
	g, err := config.LookupPreset("gpt2-124m")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, g.Dims(4))
}

// Expected counts, derived from the proposal in the brief rather than read
// back from the table.
func wantForward(L int) map[string]int {
	return map[string]int{
		EncoderForward:      1,
		LayerNormForward:    2*L + 1,
		MatmulForward:       4*L + 1,
		AttentionForward:    L,
		ResidualForward:     2 * L,
		GeluForward:         L,
		CrossEntropyForward: 1,
		LossReduce:          1,
	}
}

func wantBackward(L int) map[string]int {
	return map[string]int{
		CrossEntropyBackward:        1,
		MatmulBackwardInput:         4*L + 1,
		MatmulBackwardWeight:        4*L + 1,
		BiasBackward:                4 * L,
		LayerNormBackwardInput:      2*L + 1,
		LayerNormBackwardParams:     2*L + 1,
		GeluBackward:                L,
		AttentionBackwardPreprocess: L,
		AttentionBackwardDKDV:       L,
		AttentionBackwardDQ:         L,
		EncoderBackwardWTE:          1,
		EncoderBackwardWPE:          1,
	}
}

func countsMap(cs []Count) map[string]int {
	m := map[string]int{}
	for _, c := range cs {
		if c.Count <= 0 {
			panic(fmt.Sprintf("count %v", c))
		}
		m[c.Name] += c.Count
	}
	return m
}

func TestCountsPerRange(t *testing.T) {
	for _, d := range shapes(t) {
		for _, mode := range []config.Mode{config.Train, config.Infer} {
			t.Run(fmt.Sprintf("%s/L=%d", mode, d.L), func(t *testing.T) {
				p := For(d, mode)
				L := d.L
				root := p.Iteration
				if root.Name != IterationTemplate {
					t.Errorf("root range %q, want %q", root.Name, IterationTemplate)
				}
				if root.Direct.Launches != 0 || len(root.Kernels) != 0 {
					t.Errorf("iteration launches %d ops directly, want none", root.Direct.Launches)
				}

				wantChildren := []string{Forward}
				if mode == config.Train {
					wantChildren = append(wantChildren, Backward)
				}
				var got []string
				for _, c := range root.Children {
					got = append(got, c.Name)
				}
				if !reflect.DeepEqual(got, wantChildren) {
					t.Fatalf("children %v, want %v", got, wantChildren)
				}
				if p.Ranges != 1+len(wantChildren) {
					t.Errorf("Ranges = %d, want %d", p.Ranges, 1+len(wantChildren))
				}

				fwd := root.Child(Forward)
				if got, want := fwd.Direct.Kernels, 1+10*L+4; got != want {
					t.Errorf("forward kernels = %d, want 1 + 10L + 4 = %d", got, want)
				}
				if fwd.Direct.Memsets != 0 {
					t.Errorf("forward memsets = %d, want 0", fwd.Direct.Memsets)
				}
				if got, want := countsMap(fwd.Kernels), wantForward(L); !equalCounts(got, want) {
					t.Errorf("forward counts\n got %v\nwant %v", got, want)
				}

				wantTotal := Totals{Kernels: 1 + 10*L + 4}
				if mode == config.Train {
					bwd := root.Child(Backward)
					if got, want := bwd.Direct.Kernels, 7+20*L; got != want {
						t.Errorf("backward kernels = %d, want 7 + 20L = %d", got, want)
					}
					if got := bwd.MemsetCount(MemsetD32); got != 2 || bwd.Direct.Memsets != 2 {
						t.Errorf("backward memsets = %d (%s: %d), want 2", bwd.Direct.Memsets, MemsetD32, got)
					}
					if got, want := countsMap(bwd.Kernels), wantBackward(L); !equalCounts(got, want) {
						t.Errorf("backward counts\n got %v\nwant %v", got, want)
					}
					wantTotal.Kernels += 7 + 20*L
					wantTotal.Memsets = 2
				} else if root.Child(Backward) != nil {
					t.Error("infer plan has a backward range")
				}
				wantTotal.Launches = wantTotal.Kernels + wantTotal.Memsets
				if p.PerIteration != wantTotal || root.Inclusive != wantTotal {
					t.Errorf("per iteration %+v (root inclusive %+v), want %+v", p.PerIteration, root.Inclusive, wantTotal)
				}

				// Counts, totals and the launch sequence agree.
				for _, r := range root.Children {
					ls := r.Launches()
					if len(ls) != r.Direct.Launches {
						t.Errorf("%s: %d launches in sequence, totals say %d", r.Name, len(ls), r.Direct.Launches)
					}
					sum := 0
					for _, c := range r.Kernels {
						sum += c.Count
						if r.KernelCount(c.Name) != c.Count {
							t.Errorf("%s: KernelCount(%s) disagrees", r.Name, c.Name)
						}
					}
					if sum != r.Direct.Kernels {
						t.Errorf("%s: kernel counts sum to %d, totals say %d", r.Name, sum, r.Direct.Kernels)
					}
				}
			})
		}
	}
}

func equalCounts(got, want map[string]int) bool {
	for k, v := range want {
		if v == 0 {
			delete(want, k)
		}
	}
	return reflect.DeepEqual(got, want)
}

func TestLaunchOrder(t *testing.T) {
	for _, d := range shapes(t) {
		t.Run(fmt.Sprintf("L=%d", d.L), func(t *testing.T) {
			L := d.L
			p := For(d, config.Train)
			fwd := p.Iteration.Child(Forward).Launches()
			if fwd[0].Name != EncoderForward || fwd[len(fwd)-1].Name != LossReduce {
				t.Errorf("forward runs %s .. %s, want %s .. %s", fwd[0].Name, fwd[len(fwd)-1].Name, EncoderForward, LossReduce)
			}
			// Layers run upwards in forward: launch 1+10l is layer l's ln1.
			for l := 0; l < L; l++ {
				got := fwd[1+10*l]
				if got.Name != LayerNormForward || got.Layer != l || got.Step != "ln1" {
					t.Errorf("forward launch %d = %s at %s, want %s at layer %d / ln1", 1+10*l, got.Name, got.Where(), LayerNormForward, l)
				}
			}

			bwd := p.Iteration.Child(Backward).Launches()
			for i := 0; i < 2; i++ {
				if bwd[i].Kind != Memset || bwd[i].Name != MemsetD32 {
					t.Errorf("backward launch %d is %s %s, want memset %s", i, bwd[i].Kind, bwd[i].Name, MemsetD32)
				}
			}
			if bwd[2].Name != CrossEntropyBackward {
				t.Errorf("backward launch 2 = %s, want %s", bwd[2].Name, CrossEntropyBackward)
			}
			// Layers run downwards in backward, after the memsets, loss, lm head and final ln.
			head := 2 + 1 + 2 + 2
			for i := 0; i < L; i++ {
				got := bwd[head+20*i]
				if got.Layer != L-1-i || got.Name != MatmulBackwardInput || got.Step != "fc proj" {
					t.Errorf("backward launch %d = %s at %s, want %s at layer %d / fc proj", head+20*i, got.Name, got.Where(), MatmulBackwardInput, L-1-i)
				}
			}
			last := bwd[len(bwd)-2:]
			if last[0].Name != EncoderBackwardWTE || last[1].Name != EncoderBackwardWPE {
				t.Errorf("backward ends with %s, %s", last[0].Name, last[1].Name)
			}
			for _, l := range append(fwd, bwd...) {
				if l.Layer < -1 || l.Layer >= L {
					t.Errorf("launch %s at layer %d, out of range", l.Name, l.Layer)
				}
			}
		})
	}
}

func TestPlansDoNotShareTable(t *testing.T) {
	d := tinyDims(t)
	a := For(d, config.Train)
	a.Iteration.Children[0].Blocks[0].Steps[0].Ops[0].Name = "changed"
	b := For(d, config.Train)
	if b.Iteration.Children[0].Blocks[0].Steps[0].Ops[0].Name != EncoderForward {
		t.Fatal("editing one plan changed the schedule table")
	}
}

func TestUnknownModePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("For with an unknown mode did not panic")
		}
	}()
	For(tinyDims(t), config.Mode("bogus"))
}

func TestJSONRoundTrip(t *testing.T) {
	for _, d := range shapes(t) {
		for _, mode := range []config.Mode{config.Train, config.Infer} {
			t.Run(fmt.Sprintf("%s/L=%d", mode, d.L), func(t *testing.T) {
				p := For(d, mode)
				b, err := p.MarshalIndentJSON()
				if err != nil {
					t.Fatal(err)
				}
				var back Plan
				if err := json.Unmarshal(b, &back); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(back, p) {
					t.Fatalf("round trip changed the plan:\n%s", b)
				}
				b2, err := json.MarshalIndent(back, "", "  ")
				if err != nil || !bytes.Equal(b, b2) {
					t.Fatalf("second encoding differs (err %v)", err)
				}
			})
		}
	}
}

func TestJSONFieldNames(t *testing.T) {
	b, err := json.Marshal(For(tinyDims(t), config.Train))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	checkKeys(t, "plan", m, "mode", "dims", "iteration", "per_iteration", "ranges")
	checkKeys(t, "per_iteration", m["per_iteration"].(map[string]any), "kernels", "memsets", "launches")
	it := m["iteration"].(map[string]any)
	checkKeys(t, "iteration", it, "name", "blocks", "kernels", "memsets", "direct", "inclusive", "children")
	bwd := it["children"].([]any)[1].(map[string]any)
	block := bwd["blocks"].([]any)[0].(map[string]any)
	checkKeys(t, "block", block, "label", "per_layer", "repeat", "steps")
	op := block["steps"].([]any)[0].(map[string]any)["ops"].([]any)[0].(map[string]any)
	checkKeys(t, "op", op, "kind", "name", "target")
	if op["kind"] != "memset" || op["name"] != MemsetD32 {
		t.Errorf("first backward op = %v", op)
	}
	if m["mode"] != "train" {
		t.Errorf("mode = %v", m["mode"])
	}
}

func checkKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: JSON lacks field %q (has %v)", what, k, m)
		}
	}
}

func TestWriteText(t *testing.T) {
	for _, d := range shapes(t) {
		for _, mode := range []config.Mode{config.Train, config.Infer} {
			t.Run(fmt.Sprintf("%s/L=%d", mode, d.L), func(t *testing.T) {
				p := For(d, mode)
				var buf bytes.Buffer
				if err := p.WriteText(&buf); err != nil {
					t.Fatal(err)
				}
				text := buf.String()
				mustContain := []string{
					fmt.Sprintf("plan: mode %s, %s\n", mode, d),
					fmt.Sprintf("per iteration: %d kernels", p.PerIteration.Kernels),
					fmt.Sprintf("in %d NVTX ranges\n", p.Ranges),
					"\n" + IterationTemplate + ": nothing launched directly",
					fmt.Sprintf("\n  %s: %d kernels", Forward, 1+10*d.L+4),
				}
				if d.L > 0 {
					mustContain = append(mustContain, fmt.Sprintf("layer l = 0..%d (x%d):\n", d.L-1, d.L))
				}
				if mode == config.Train {
					mustContain = append(mustContain,
						fmt.Sprintf("\n  %s: %d kernels, 2 memsets\n", Backward, 7+20*d.L),
						MemsetD32+" (dresidual)",
					)
					if d.L > 0 {
						mustContain = append(mustContain, fmt.Sprintf("layer l = %d..0 (x%d):\n", d.L-1, d.L))
					}
				} else if strings.Contains(text, Backward) {
					t.Errorf("infer plan text mentions %s", Backward)
				}
				for _, s := range mustContain {
					if !strings.Contains(text, s) {
						t.Errorf("text lacks %q:\n%s", s, text)
					}
				}
				// Every per-kernel count appears on a "name count" line.
				for _, r := range p.Iteration.Children {
					for _, c := range append(append([]Count{}, r.Kernels...), r.Memsets...) {
						re := regexp.MustCompile(`(?m)^ +` + regexp.QuoteMeta(c.Name) + ` +` + fmt.Sprint(c.Count) + `$`)
						if !re.MatchString(text) {
							t.Errorf("text lacks count line %s %d", c.Name, c.Count)
						}
					}
				}
			})
		}
	}
}

func TestIterationNames(t *testing.T) {
	for _, i := range []int{0, 1, 9, 10, 123} {
		n := IterationName(i)
		if n != fmt.Sprintf("iteration%d", i) {
			t.Errorf("IterationName(%d) = %q", i, n)
		}
		if got, ok := ParseIterationName(n); !ok || got != i {
			t.Errorf("ParseIterationName(%q) = %d, %v", n, got, ok)
		}
	}
	for _, bad := range []string{"iteration", "iteration-1", "iteration01", "iteration1a", "Iteration1", "forward", "iteration 1"} {
		if _, ok := ParseIterationName(bad); ok {
			t.Errorf("ParseIterationName(%q) accepted", bad)
		}
	}
}

func TestBuildCustom(t *testing.T) {
	one := []Block{{Label: "selftest", Repeat: 1, Steps: []Step{{Label: "fill", Ops: []Op{{Kind: Kernel, Name: "fill_f32"}}}}}}
	root := Range{Name: IterationTemplate, Children: []Range{
		{Name: Forward, Blocks: one},
		{Name: Backward, Blocks: one},
	}}
	p := Build(config.Train, config.Dims{}, root)
	if p.PerIteration != (Totals{Kernels: 2, Launches: 2}) || p.Ranges != 3 {
		t.Errorf("per iteration %+v in %d ranges", p.PerIteration, p.Ranges)
	}
	for _, r := range p.Iteration.Children {
		if r.KernelCount("fill_f32") != 1 || len(r.Kernels) != 1 || r.Direct.Kernels != 1 {
			t.Errorf("%s: %+v", r.Name, r)
		}
	}
	// Build copies its input.
	root.Children[0].Blocks[0].Steps[0].Ops[0].Name = "changed"
	if p.Iteration.Children[0].Blocks[0].Steps[0].Ops[0].Name != "fill_f32" {
		t.Error("Build kept a reference to its input")
	}
}
