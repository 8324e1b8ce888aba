package plan

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText writes the plan as a readable tree: for each NVTX range its
// launch order (per-layer blocks shown once, with their layer order) and its
// per-kernel counts, then the totals of one iteration.
func (p Plan) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "plan: mode %s, %s\n", p.Mode, p.Dims)
	fmt.Fprintf(bw, "per iteration: %s in %d NVTX ranges\n", describe(p.PerIteration, true), p.Ranges)
	fmt.Fprintf(bw, "(the range %s is named %s, %s, ... in a run)\n\n",
		IterationTemplate, IterationName(0), IterationName(1))
	writeRange(bw, p.Iteration, 0)
	return bw.Flush()
}

func writeRange(w *bufio.Writer, r Range, depth int) {
	ind := strings.Repeat("  ", depth)
	if r.Direct.Launches == 0 {
		fmt.Fprintf(w, "%s%s: nothing launched directly", ind, r.Name)
	} else {
		fmt.Fprintf(w, "%s%s: %s", ind, r.Name, describe(r.Direct, false))
	}
	if len(r.Children) > 0 {
		fmt.Fprintf(w, " (with nested ranges: %s)", describe(r.Inclusive, false))
	}
	fmt.Fprintln(w)
	if r.Direct.Launches > 0 {
		fmt.Fprintf(w, "%s  launch order:\n", ind)
		for _, b := range r.Blocks {
			if b.Repeat == 0 {
				continue
			}
			switch {
			case !b.PerLayer:
				fmt.Fprintf(w, "%s    %s:\n", ind, b.Label)
			case b.Descending:
				fmt.Fprintf(w, "%s    %s l = %d..0 (x%d):\n", ind, b.Label, b.Repeat-1, b.Repeat)
			default:
				fmt.Fprintf(w, "%s    %s l = 0..%d (x%d):\n", ind, b.Label, b.Repeat-1, b.Repeat)
			}
			for _, s := range b.Steps {
				names := make([]string, len(s.Ops))
				for i, op := range s.Ops {
					names[i] = op.Name
					if op.Target != "" {
						names[i] += " (" + op.Target + ")"
					}
				}
				fmt.Fprintf(w, "%s      %s: %s\n", ind, s.Label, strings.Join(names, ", "))
			}
		}
		writeCounts(w, ind, "kernels", r.Kernels)
		writeCounts(w, ind, "memsets", r.Memsets)
	}
	for _, c := range r.Children {
		writeRange(w, c, depth+1)
	}
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
	if launches {
		s += fmt.Sprintf(" (%s)", plural(t.Launches, "launch"))
	}
	return s
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
// `gpubench plan --json` prints; it is json.MarshalIndent(p, "", "  ").
func (p Plan) MarshalIndentJSON() ([]byte, error) {
	return json.MarshalIndent(p, "", "  ")
}
