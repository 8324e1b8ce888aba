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
	"github.com/gpubench/gpubench/internal/flops"
	"github.com/gpubench/gpubench/internal/memplan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/model"
	"github.com/gpubench/gpubench/ptx"
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

var modes = []config.Mode{config.Train, config.Infer}

// event is one call of an executor in a form both sides can be put in:
// a push, a pop, or an operation with everything but device addresses.
func recorded(t *testing.T, m *model.Step) []string {
	t.Helper()
	var rec program.Recorder
	if err := program.Run(&m.Iteration, &rec); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range rec.Events {
		switch {
		case e.Push != "":
			out = append(out, "push "+e.Push)
		case e.Pop:
			out = append(out, "pop")
		case e.Op.Kind == program.Graph:
			out = append(out, fmt.Sprintf("graph %s of %d nodes at %s", e.Op.Name, len(e.Op.Body.Items), e.Op.Where()))
			for _, it := range e.Op.Body.Items {
				out = append(out, describeOp(it.Op))
			}
		default:
			out = append(out, describeOp(e.Op))
		}
	}
	return out
}

func describeOp(op *program.Op) string {
	{
		{
			var args []string
			for _, a := range op.Args {
				switch a.Kind {
				case program.Ptr:
					args = append(args, fmt.Sprintf("%s=%s/%d", a.Param, a.View, a.View.Elems))
				case program.I32Arg:
					args = append(args, fmt.Sprintf("%s=%d", a.Param, a.Int))
				default:
					args = append(args, fmt.Sprintf("%s=%g", a.Param, a.Float))
				}
			}
			return fmt.Sprintf("%s %s %s %v %v %d (%s) flops=%d bytes=%d at %s", op.Kind, op.Name, op.Target(),
				op.Grid, op.Block, op.SharedBytes, strings.Join(args, ", "), op.FLOPs, op.Bytes, op.Where())
		}
	}
}

func flatten(r Range) []string {
	out := []string{"push " + r.Name}
	for _, l := range r.Ops {
		if l.Kind == program.Graph {
			out = append(out, fmt.Sprintf("graph %s of %d nodes at %s", l.Name, len(l.Nodes), l.Where()))
			for _, n := range l.Nodes {
				out = append(out, describeLaunch(n))
			}
			continue
		}
		out = append(out, describeLaunch(l))
	}
	for _, c := range r.Children {
		out = append(out, flatten(c)...)
	}
	return append(out, "pop")
}

func describeLaunch(l Launch) string {
	{
		var args []string
		for _, a := range l.Args {
			switch {
			case a.Kind != program.Ptr:
				args = append(args, a.Param+"="+a.Value)
			case a.Buffer == "null":
				args = append(args, a.Param+"=null/0")
			default:
				args = append(args, fmt.Sprintf("%s=%s/%d", a.Param, a.Buffer, a.Elems))
			}
		}
		return fmt.Sprintf("%s %s %s %v %v %d (%s) flops=%d bytes=%d at %s", l.Kind, l.Name, l.Target,
			l.Grid, l.Block, l.SharedBytes, strings.Join(args, ", "), l.FLOPs, l.Bytes, l.Where())
	}
}

// TestRecorderEqualsPlan is the promise of gpubench: what the executor
// runs is what `gpubench plan --format=json` prints, operation by
// operation and in order, memsets included, for both modes. The plan side
// goes through its JSON, as a user (or check) reads it.
func TestRecorderEqualsPlan(t *testing.T) {
	for _, d := range shapes(t) {
		for _, mode := range modes {
			for _, graph := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/L=%d/graph=%v", mode, d.L, graph), func(t *testing.T) {
					m := model.Program(d, mode, model.Options{Graph: graph})
					b, err := Of(m).MarshalIndentJSON()
					if err != nil {
						t.Fatal(err)
					}
					var printed Plan
					if err := json.Unmarshal(b, &printed); err != nil {
						t.Fatal(err)
					}
					got, want := recorded(t, m), flatten(printed.Iteration)
					if len(got) != len(want) {
						t.Fatalf("the executor made %d calls, the plan lists %d", len(got), len(want))
					}
					for i := range got {
						if got[i] != want[i] {
							t.Fatalf("call %d: the executor made\n  %s\nthe plan says\n  %s", i, got[i], want[i])
						}
					}
					memsets := 0
					for _, s := range got {
						if strings.HasPrefix(s, "memset ") {
							memsets++
						}
					}
					if want := map[config.Mode]int{config.Train: 2, config.Infer: 0}[mode]; memsets != want {
						t.Errorf("%d memsets in the iteration, want %d", memsets, want)
					}
					// With graphs, each pass is one graph launch holding the
					// same operations as without.
					if graph {
						plain := Of(model.Program(d, mode, model.Options{}))
						for _, r := range printed.Iteration.Children {
							pr := plain.Iteration.Child(r.Name)
							if len(r.Ops) != 1 || r.Ops[0].Kind != program.Graph || !reflect.DeepEqual(r.Launches(), pr.Launches()) ||
								!reflect.DeepEqual(r.Kernels, pr.Kernels) {
								t.Errorf("%s with a graph: %d ops, not the plain pass's launches as one graph", r.Name, len(r.Ops))
							}
						}
					}
				})
			}
		}
	}
}

// TestChangingTheProgramChangesEveryView: the plan, the memory plan and the
// FLOP count are read off the same program, so one change to it moves all
// three, with no list to update by hand.
func TestChangingTheProgramChangesEveryView(t *testing.T) {
	d := tinyDims(t)
	m := model.Program(d, config.Infer, model.Options{})
	before, mem0, fl0 := Of(m), memplan.Of(m.Program), flops.Of(m.Forward(), nil)

	// Remove layer 0's attention: its logsumexp buffer is then used by no
	// operation (infer has no backward to read it).
	fwd := m.Forward()
	var removed *program.Op
	for i, it := range fwd.Items {
		if it.Op != nil && it.Op.Name == "attention_forward" && it.Op.Layer == 0 {
			removed = it.Op
			fwd.Items = append(fwd.Items[:i], fwd.Items[i+1:]...)
			break
		}
	}
	if removed == nil {
		t.Fatal("no attention_forward in layer 0")
	}
	after, mem1, fl1 := Of(m), memplan.Of(m.Program), flops.Of(m.Forward(), nil)
	if got := after.Iteration.Child(Forward).KernelCount("attention_forward"); got != d.L-1 {
		t.Errorf("plan: %d attention_forward launches after removing one of %d", got, d.L)
	}
	if after.PerIteration.Kernels != before.PerIteration.Kernels-1 {
		t.Errorf("plan: %d kernels, want %d", after.PerIteration.Kernels, before.PerIteration.Kernels-1)
	}
	lse := int64(d.B*d.NH*d.T) * 4
	if mem1.Total != mem0.Total-lse {
		t.Errorf("memory plan: %d bytes after the removal, want %d - %d (att_lse[0])", mem1.Total, mem0.Total, lse)
	}
	if fl1.Forward != fl0.Forward-removed.FLOPs || removed.FLOPs == 0 {
		t.Errorf("FLOPs: %d after the removal, want %d - %d", fl1.Forward, fl0.Forward, removed.FLOPs)
	}

	// Rename a kernel: the plan, and so check, name the new one; the PTX
	// has no such entry, which TestProgramMatchesPTX (package model)
	// reports on CI.
	for _, op := range fwd.Ops() {
		if op.Name == "gelu_forward" {
			op.Name = "gelu_forward_v2"
		}
	}
	renamedPlan := Of(m)
	renamed := renamedPlan.Iteration.Child(Forward)
	if renamed.KernelCount("gelu_forward_v2") != d.L || renamed.KernelCount("gelu_forward") != 0 {
		t.Errorf("plan after the rename: %+v", renamed.Kernels)
	}
	if _, ok := ptx.Params("gelu", "gelu_forward_v2"); ok {
		t.Error("the PTX has an entry gelu_forward_v2")
	}
}

func TestCountsAndTotals(t *testing.T) {
	for _, d := range shapes(t) {
		p := For(d, config.Train)
		fwd, bwd := p.Iteration.Child(Forward), p.Iteration.Child(Backward)
		if fwd == nil || bwd == nil || len(p.Iteration.Children) != 2 || p.Ranges != 3 {
			t.Fatalf("L=%d: ranges %+v", d.L, p.Iteration.Children)
		}
		for _, r := range []*Range{fwd, bwd} {
			sum := 0
			for _, c := range r.Kernels {
				sum += c.Count
			}
			if sum != r.Direct.Kernels || r.Direct.Kernels+r.Direct.Memsets != r.Direct.Launches || len(r.Ops) != r.Direct.Launches {
				t.Errorf("L=%d %s: counts %+v, totals %+v, %d ops", d.L, r.Name, r.Kernels, r.Direct, len(r.Ops))
			}
		}
		if p.PerIteration.Launches != fwd.Direct.Launches+bwd.Direct.Launches || p.PerIteration.FLOPs != fwd.Direct.FLOPs+bwd.Direct.FLOPs {
			t.Errorf("L=%d: per iteration %+v", d.L, p.PerIteration)
		}
		if c := flops.Count(d); c.Total() != p.PerIteration.FLOPs {
			t.Errorf("L=%d: plan counts %d FLOPs, flops.Count %d", d.L, p.PerIteration.FLOPs, c.Total())
		}
		if bwd.MemsetCount(MemsetD32) != 2 || bwd.Ops[0].Target != "dresidual" || bwd.Ops[1].Target != "dwpe" {
			t.Errorf("L=%d: backward starts %+v %+v", d.L, bwd.Ops[0], bwd.Ops[1])
		}
		if len(p.Setup) != 1 || p.Setup[0].Kind != Memset || p.Setup[0].Target != "matmul_counters" {
			t.Errorf("L=%d: setup %+v", d.L, p.Setup)
		}
		in := For(d, config.Infer)
		if len(in.Iteration.Children) != 1 || in.Iteration.Child(Backward) != nil || len(in.Setup) != 0 {
			t.Errorf("L=%d: infer plan %+v", d.L, in.Iteration.Children)
		}
	}
}

func TestUnknownModePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("For accepted an unknown mode")
		}
	}()
	For(tinyDims(t), config.Mode("bogus"))
}

func TestJSONRoundTrip(t *testing.T) {
	for _, mode := range modes {
		p := For(tinyDims(t), mode)
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
	checkKeys(t, "plan", m, "mode", "dims", "sms", "setup", "iteration", "per_iteration", "ranges")
	checkKeys(t, "per_iteration", m["per_iteration"].(map[string]any), "kernels", "memsets", "launches", "flops", "bytes")
	it := m["iteration"].(map[string]any)
	checkKeys(t, "iteration", it, "name", "ops", "kernels", "memsets", "direct", "inclusive", "children")
	bwd := it["children"].([]any)[1].(map[string]any)
	op := bwd["ops"].([]any)[0].(map[string]any)
	checkKeys(t, "op", op, "kind", "name", "target", "part", "layer", "step", "grid", "block")
	if op["kind"] != "memset" || op["name"] != MemsetD32 {
		t.Errorf("first backward op = %v", op)
	}
	k := bwd["ops"].([]any)[2].(map[string]any)
	checkKeys(t, "kernel", k, "kind", "name", "grid", "block", "shared_bytes", "args", "flops", "bytes")
	arg := k["args"].([]any)[0].(map[string]any)
	checkKeys(t, "arg", arg, "param", "kind", "buffer", "elem", "elems", "access")
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
		for _, mode := range modes {
			t.Run(fmt.Sprintf("%s/L=%d", mode, d.L), func(t *testing.T) {
				p := For(d, mode)
				var buf bytes.Buffer
				if err := p.WriteText(&buf); err != nil {
					t.Fatal(err)
				}
				text := buf.String()
				mustContain := []string{
					fmt.Sprintf("plan: mode %s, %s, launch shapes for %d SMs\n", mode, d, model.DefaultSMs),
					fmt.Sprintf("per iteration: %d kernels", p.PerIteration.Kernels),
					fmt.Sprintf("in %d NVTX ranges", p.Ranges),
					"\n" + IterationTemplate + ": nothing launched directly",
					fmt.Sprintf("\n  %s: %d kernels", Forward, 1+10*d.L+4),
					"matmul_forward<<<",
				}
				if d.L > 1 {
					mustContain = append(mustContain, fmt.Sprintf("layer l = 0..%d (x%d):\n", d.L-1, d.L))
				}
				if mode == config.Train {
					mustContain = append(mustContain,
						fmt.Sprintf("\n  %s: %d kernels, 2 memsets", Backward, 7+20*d.L),
						MemsetD32+" (dresidual)",
					)
					if d.L > 1 {
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
