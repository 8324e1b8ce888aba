package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/flops"
	"github.com/gpubench/gpubench/internal/memplan"
	"github.com/gpubench/gpubench/model"
)

// TestUnfusedPlan: what gpubench plan prints, the memory plan sums and the
// FLOP count adds up for --flaw=unfused all read its program: the
// forward's extra launches (4 bias_adds and the 6-kernel GELU chain in
// place of gelu_forward, per layer) with their counts, gelu_tmp in the
// memory plan, the chain's FLOPs; the clean program's all unchanged.
func TestUnfusedPlan(t *testing.T) {
	fs := []config.Flaw{config.Unfused}
	for _, d := range shapes(t) {
		for _, mode := range modes {
			t.Run(fmt.Sprintf("%s/L=%d", mode, d.L), func(t *testing.T) {
				clean := For(d, mode)
				p := Of(model.Program(d, mode, model.Options{Flaws: fs}))
				fwd, cfwd := p.Iteration.Child(Forward), clean.Iteration.Child(Forward)
				L := d.L
				if got, want := fwd.Inclusive.Kernels, cfwd.Inclusive.Kernels+9*L; got != want {
					t.Errorf("forward: %d kernels, want the clean %d and 9 a layer", got, cfwd.Inclusive.Kernels)
				}
				counts := map[string]int{"bias_add": 4 * L, "elem_mul": 3 * L, "elem_axpby": 2 * L, "elem_tanh_scale": L, "gelu_forward": 0}
				got := map[string]int{}
				for _, l := range fwd.Launches() {
					got[l.Name]++
				}
				for _, c := range fwd.Children {
					for _, l := range c.Launches() {
						got[l.Name]++
					}
				}
				for name, n := range counts {
					if got[name] != n {
						t.Errorf("forward launches %s %d times, want %d", name, got[name], n)
					}
				}
				if b := p.Iteration.Child(Backward); mode == config.Train && !jsonEqual(t, *b, *clean.Iteration.Child(Backward)) {
					t.Error("the backward differs from the clean one")
				}
				var buf bytes.Buffer
				if err := p.WriteText(&buf); err != nil {
					t.Fatal(err)
				}
				text := buf.String()
				for _, s := range []string{
					"flaws: unfused planted",
					fmt.Sprintf("\n  %s: %d kernels", Forward, fwd.Inclusive.Kernels),
					"bias_add<<<", "elem_mul<<<", "elem_axpby<<<", "elem_tanh_scale<<<",
				} {
					if !strings.Contains(text, s) {
						t.Errorf("plan text lacks %q:\n%s", s, text)
					}
				}
				if strings.Contains(text, "gelu_forward") {
					t.Error("plan text shows gelu_forward, which unfused replaces")
				}

				// The memory plan: the clean one and gelu_tmp, (N,4C).
				mc, err := memplan.New(d, mode, "")
				if err != nil {
					t.Fatal(err)
				}
				mu, err := memplan.NewWith(d, mode, model.Options{Flaws: fs})
				if err != nil {
					t.Fatal(err)
				}
				tmp := int64(d.Rows()) * 4 * int64(d.C) * 4
				if b, ok := mu.Buffer("gelu_tmp"); !ok || b.Bytes != tmp || b.Group != memplan.Activations {
					t.Errorf("memory plan's gelu_tmp: %+v, want %d B of activations", b, tmp)
				}
				if _, ok := mc.Buffer("gelu_tmp"); ok {
					t.Error("the clean memory plan has gelu_tmp")
				}
				if mu.Total != mc.Total+tmp || mu.Activations != mc.Activations+tmp {
					t.Errorf("memory plan total %d (activations %d), want the clean %d (%d) + %d", mu.Total, mu.Activations, mc.Total, mc.Activations, tmp)
				}
			})
		}
	}
	// The FLOP count: the GELU chain counts 11 an element, gelu_forward 9;
	// the products and everything else are the clean ones.
	d := shapes(t)[0]
	c, u := flops.Count(d), flops.CountWith(d, fs)
	extra := int64(d.L) * int64(d.Rows()) * 4 * int64(d.C) * 2
	if u.Forward != c.Forward+extra || u.Backward != c.Backward || u.MatmulForward != c.MatmulForward {
		t.Errorf("unfused FLOPs fwd %d bwd %d matmul %d, want the clean %d+%d, %d, %d", u.Forward, u.Backward, u.MatmulForward, c.Forward, extra, c.Backward, c.MatmulForward)
	}
	gc, _ := c.Component("gelu")
	gu, _ := u.Component("gelu")
	if gu.Forward != gc.Forward+extra {
		t.Errorf("gelu component %d, want %d", gu.Forward, gc.Forward+extra)
	}
}

// jsonEqual compares two plan ranges by their JSON, as plan --json prints
// them.
func jsonEqual(t *testing.T, a, b Range) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}
