package plan

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/program"
)

// WriteText writes the plan as a readable tree: for each NVTX range its
// launch order (a part repeated layer after layer shown once, with its
// layer order) and its per-kernel counts, then the totals of one iteration.
func (p Plan) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "plan: mode %s, %s, launch shapes for %d SMs\n", p.Mode, p.Dims, p.SMs)
	if p.Kernels != "" {
		fmt.Fprintf(bw, "kernels: %s\n", p.Kernels)
	}
	if len(p.Flaws) > 0 {
		fmt.Fprintf(bw, "flaws: %s planted (gpubench flaws describes them; a run with them is no benchmark result)\n", config.FlawList(p.Flaws))
	}
	fmt.Fprintf(bw, "per iteration: %s in %d NVTX ranges, %s\n", describe(p.PerIteration, true), p.Ranges, flopsBytes(p.PerIteration))
	fmt.Fprintf(bw, "(the range %s is named %s, %s, ... in a run)\n", IterationTemplate, IterationName(0), IterationName(1))
	if len(p.Setup) > 0 {
		fmt.Fprintf(bw, "once before the first iteration, outside the ranges: %s\n", strings.Join(opNames(p.Setup), ", "))
	}
	fmt.Fprintln(bw)
	writeRange(bw, p.Iteration, 0)
	return bw.Flush()
}

// group is a run of launches of one part: once, or repeated over layers.
type group struct {
	part   string
	layers []int // the layers in launch order; nil outside the blocks
	ops    []Launch
}

// groups compresses a launch sequence: consecutive launches of one part
// and layer make a repetition, and consecutive repetitions of the same
// part that launch the same steps and kernels are shown once.
func groups(ls []Launch) []group {
	var reps []group
	for _, l := range ls {
		n := len(reps)
		if n > 0 && reps[n-1].part == l.Part && (l.Layer < 0) == (reps[n-1].layers == nil) &&
			(l.Layer < 0 || reps[n-1].layers[0] == l.Layer) {
			reps[n-1].ops = append(reps[n-1].ops, l)
			continue
		}
		g := group{part: l.Part, ops: []Launch{l}}
		if l.Layer >= 0 {
			g.layers = []int{l.Layer}
		}
		reps = append(reps, g)
	}
	var out []group
	for _, g := range reps {
		n := len(out)
		if n > 0 && g.layers != nil && out[n-1].layers != nil && out[n-1].part == g.part && sameSteps(out[n-1].ops, g.ops) {
			out[n-1].layers = append(out[n-1].layers, g.layers[0])
			continue
		}
		out = append(out, g)
	}
	return out
}

func sameSteps(a, b []Launch) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Step != b[i].Step || a[i].Kind != b[i].Kind || a[i].Name != b[i].Name || a[i].Grid != b[i].Grid || a[i].Block != b[i].Block {
			return false
		}
	}
	return true
}

func writeRange(w *bufio.Writer, r Range, depth int) {
	ind := strings.Repeat("  ", depth)
	if len(r.Ops) == 0 {
		fmt.Fprintf(w, "%s%s: nothing launched directly", ind, r.Name)
	} else {
		fmt.Fprintf(w, "%s%s: %s, %s", ind, r.Name, describe(r.Direct, false), flopsBytes(r.Direct))
	}
	if len(r.Children) > 0 {
		fmt.Fprintf(w, " (with nested ranges: %s)", describe(r.Inclusive, false))
	}
	fmt.Fprintln(w)
	if len(r.Ops) > 0 {
		fmt.Fprintf(w, "%s  launch order:\n", ind)
		for i := 0; i < len(r.Ops); {
			if g := r.Ops[i]; g.Kind == program.Graph {
				fmt.Fprintf(w, "%s    one %s of a graph of %d nodes, captured once:\n", ind, g.Name, len(g.Nodes))
				writeGroups(w, ind+"  ", g.Nodes)
				i++
				continue
			}
			j := i
			for j < len(r.Ops) && r.Ops[j].Kind != program.Graph {
				j++
			}
			writeGroups(w, ind, r.Ops[i:j])
			i = j
		}
		writeCounts(w, ind, "kernels", r.Kernels)
		writeCounts(w, ind, "memsets", r.Memsets)
	}
	var model *Range // the last child written in full
	for i := range r.Children {
		c := r.Children[i]
		// Generate mode's decode steps launch the same kernels in the same
		// order, step after step: write the first in full and the others
		// in one line each, with what differs (the grids that follow the
		// position).
		if model != nil && sameNames(model.Ops, c.Ops) && len(c.Children) == 0 && len(model.Children) == 0 {
			fmt.Fprintf(w, "%s  %s: %s, %s; the launches of %s%s\n", ind, c.Name, describe(c.Direct, false), flopsBytes(c.Direct),
				model.Name, gridChanges(model.Ops, c.Ops))
			continue
		}
		if c.After < len(r.Ops) {
			at := r.Ops[c.After-1]
			fmt.Fprintf(w, "%s  after launch %d of %s's %d (%s / %s), while the rest go on:\n", ind, c.After, r.Name, len(r.Ops), at.Part, at.Step)
		}
		writeRange(w, c, depth+1)
		model = &r.Children[i]
	}
}

// sameNames reports whether a and b launch the same operations at the
// same steps in the same order, whatever their shapes.
func sameNames(a, b []Launch) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for i := range a {
		if a[i].Step != b[i].Step || a[i].Kind != b[i].Kind || a[i].Name != b[i].Name || len(a[i].Nodes) != len(b[i].Nodes) {
			return false
		}
		if !sameNames(a[i].Nodes, b[i].Nodes) && len(a[i].Nodes) > 0 {
			return false
		}
	}
	return true
}

// gridChanges says which launches of b have another grid than in a: ""
// when none, else the distinct kernels and their grids in b.
func gridChanges(a, b []Launch) string {
	var diffs []string
	seen := map[string]bool{}
	var walk func(a, b []Launch)
	walk = func(a, b []Launch) {
		for i := range a {
			if len(a[i].Nodes) > 0 {
				walk(a[i].Nodes, b[i].Nodes)
				continue
			}
			if a[i].Grid != b[i].Grid {
				d := fmt.Sprintf("%s grid %s", b[i].Name, dim(b[i].Grid))
				if !seen[d] {
					seen[d] = true
					diffs = append(diffs, d)
				}
			}
		}
	}
	walk(a, b)
	if len(diffs) == 0 {
		return ""
	}
	return ", but " + strings.Join(diffs, ", ")
}

// writeGroups writes a launch sequence part by part (see groups).
func writeGroups(w *bufio.Writer, ind string, ls []Launch) {
	for _, g := range groups(ls) {
		switch n := len(g.layers); {
		case n == 0:
			fmt.Fprintf(w, "%s    %s:\n", ind, g.part)
		case n == 1:
			fmt.Fprintf(w, "%s    %s %d:\n", ind, g.part, g.layers[0])
		default:
			fmt.Fprintf(w, "%s    %s l = %d..%d (x%d):\n", ind, g.part, g.layers[0], g.layers[n-1], n)
		}
		for i := 0; i < len(g.ops); {
			j := i
			for j < len(g.ops) && g.ops[j].Step == g.ops[i].Step {
				j++
			}
			fmt.Fprintf(w, "%s      %s: %s\n", ind, g.ops[i].Step, strings.Join(opNames(g.ops[i:j]), ", "))
			i = j
		}
	}
}

// opNames names each launch: "matmul_forward<<<48, 256>>>" for a
// kernel, "cuMemsetD32Async (dresidual)" for a memset; " on stream 1"
// follows an operation that is not on the compute stream.
func opNames(ls []Launch) []string {
	names := make([]string, len(ls))
	for i, l := range ls {
		switch l.Kind {
		case Kernel:
			names[i] = fmt.Sprintf("%s<<<%s, %s>>>", l.Name, dim(l.Grid), dim(l.Block))
		case program.Memcpy:
			names[i] = fmt.Sprintf("%s (%s %s, %d B, %s memory)", l.Name, l.Dir, l.Target, l.Bytes, l.Host)
		case program.Sync, program.Host:
			names[i] = l.Name + "()"
		case program.EventOp:
			names[i] = fmt.Sprintf("%s (%s)", l.Name, l.Event)
		default:
			names[i] = fmt.Sprintf("%s (%s)", l.Name, l.Target)
		}
		if l.Stream != program.ComputeStream {
			names[i] += fmt.Sprintf(" on stream %d", l.Stream)
		}
	}
	return names
}

// dim formats a shape without its trailing 1s: "48", "(4,8)".
func dim(d program.Dim3) string {
	switch {
	case d.Y == 1 && d.Z == 1:
		return fmt.Sprint(d.X)
	case d.Z == 1:
		return fmt.Sprintf("(%d,%d)", d.X, d.Y)
	}
	return d.String()
}

func writeCounts(w *bufio.Writer, ind, title string, cs []Count) {
	if len(cs) == 0 {
		return
	}
	width := 0
	for _, c := range cs {
		width = max(width, len(c.Name))
	}
	fmt.Fprintf(w, "%s  %s:\n", ind, title)
	for _, c := range cs {
		fmt.Fprintf(w, "%s    %-*s %5d\n", ind, width, c.Name, c.Count)
	}
}

// describe formats totals as "47 kernels, 1 memset".
func describe(t Totals, launches bool) string {
	s := plural(t.Kernels, "kernel")
	if t.Memsets > 0 {
		s += ", " + plural(t.Memsets, "memset")
	}
	if t.Memcpys > 0 {
		s += ", " + plural(t.Memcpys, "memcpy")
	}
	if t.Graphs > 0 {
		s += fmt.Sprintf(" in %s", plural(t.Graphs, "graph launch"))
	}
	if launches {
		s += fmt.Sprintf(" (%s)", plural(t.Launches, "launch"))
	}
	if t.Calls > 0 {
		s += fmt.Sprintf(" and %s", plural(t.Calls, "host call"))
	}
	return s
}

// flopsBytes formats the counted work as "1.23 GFLOP, 45.6 MB moved".
func flopsBytes(t Totals) string {
	return fmt.Sprintf("%s, %s moved", si(float64(t.FLOPs), "FLOP"), si(float64(t.Bytes), "B"))
}

func si(v float64, unit string) string {
	for _, p := range []struct {
		f float64
		s string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if v >= p.f {
			return fmt.Sprintf("%.3g %s%s", v/p.f, p.s, unit)
		}
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "ch") {
		return fmt.Sprintf("%d %ses", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// MarshalIndentJSON returns the plan as indented JSON, the form
// `gpubench plan --format=json` prints; it is json.MarshalIndent(p, "", "  ").
func (p Plan) MarshalIndentJSON() ([]byte, error) {
	return json.MarshalIndent(p, "", "  ")
}
