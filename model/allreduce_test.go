package model

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/program"
)

// dataParallelShapes are the GPT-2 shapes the data-parallel programs are
// checked on, with bucket caps that give one bucket for all the layers,
// one a layer, and runs of two.
func dataParallelShapes(t *testing.T) []config.Dims {
	var out []config.Dims
	for _, d := range shapesForCI(t) {
		if !d.IsLlama() {
			out = append(out, d)
		}
	}
	return out
}

// writes reports whether op writes any element of v's buffer in
// [v.Offset, v.Offset+v.Elems).
func writes(op *program.Op, v program.View) bool {
	overlaps := func(w program.View, n int64) bool {
		return w.Buf == v.Buf && w.Offset < v.Offset+v.Elems && v.Offset < w.Offset+n
	}
	for _, a := range op.Args {
		if a.Kind == program.Ptr && !a.View.IsNull() && a.Access != program.Read && overlaps(a.View, a.Touch) {
			return true
		}
	}
	return op.Kind == program.Memset && overlaps(op.Dst, op.Dst.Elems)
}

// TestDataParallelBuckets: every rank's backward all-reduces every
// gradient exactly once, each bucket in its own range named with the rank,
// issued after the last kernel that writes any of its gradients and before
// none that does, in the backward's order (the last layer first, the
// embeddings last); the compute stream waits for the last all-reduce
// before the backward ends. Apart from the all-reduces, the program is the
// single-process one.
func TestDataParallelBuckets(t *testing.T) {
	for _, d := range dataParallelShapes(t) {
		for _, dt := range []config.DType{config.FP32, config.BF16} {
			if d.ValidateDType(dt) != nil {
				continue
			}
			plain := Program(d, config.Train, Options{DType: dt})
			var layer int64
			for _, g := range plain.layerGrads(0) {
				layer += g.Bytes()
			}
			for _, bucketBytes := range []int64{0, 1, 2 * layer} {
				for _, dp := range []DataParallel{{World: 1}, {World: 2, Rank: 1}, {World: 8, Rank: 5}} {
					dp.BucketBytes = bucketBytes
					name := fmt.Sprintf("%v %s bucket %d B rank %d of %d", d, dt, bucketBytes, dp.Rank, dp.World)
					checkBuckets(t, name, plain, Program(d, config.Train, Options{DType: dt, DataParallel: dp}))
				}
			}
		}
	}
}

func checkBuckets(t *testing.T, name string, plain, m *Step) {
	t.Helper()
	record(t, m) // every operation valid, every range closed
	bs := m.GradBuckets()
	if len(bs) < 2 {
		t.Fatalf("%s: %d buckets, want the layers' and the embeddings'", name, len(bs))
	}
	// Coverage: every gradient element in exactly one all-reduce.
	count := make([]int8, m.Grads.Elems)
	var reduces int
	for _, op := range m.Ops() {
		if op.Kind == program.Collective && op.Name == program.NCCLAllReduce {
			reduces++
			if op.Dst.Buf != m.Grads {
				t.Fatalf("%s: all-reduce of %s, not of the gradients", name, op.Dst)
			}
			for i := op.Dst.Offset; i < op.Dst.Offset+op.Dst.Elems; i++ {
				count[i]++
			}
		}
	}
	for i, c := range count {
		if c != 1 {
			t.Fatalf("%s: gradient element %d all-reduced %d times", name, i, c)
		}
	}
	// Order: the layers from the last down, then the embeddings.
	next := m.Dims.L - 1
	for i, b := range bs[:len(bs)-1] {
		for _, l := range b.Layers {
			if l != next {
				t.Fatalf("%s: bucket %d holds layer %d, want %d", name, i, l, next)
			}
			next--
		}
	}
	if next != -1 || len(bs[len(bs)-1].Layers) != 0 {
		t.Fatalf("%s: the buckets end at layer %d, then %v; want every layer, then the embeddings", name, next+1, bs[len(bs)-1].Layers)
	}
	// Placement in the backward: each bucket's range is a child of the
	// backward after every write to its gradients and before none.
	var seq []*program.Op // the backward's operations, with the bucket ranges' own
	at := map[*program.Range]int{}
	var walk func(r *program.Range)
	walk = func(r *program.Range) {
		for _, it := range r.Items {
			if it.Range != nil {
				at[it.Range] = len(seq)
				walk(it.Range)
				continue
			}
			seq = append(seq, it.Op)
		}
	}
	bwd := m.Backward()
	walk(bwd)
	for i, b := range bs {
		want := program.AllReduceName(m.DP.Rank, i)
		if b.Range == nil || b.Range.Name != want || bwd.Child(want) != b.Range || b.Range.Kind != program.AllReduceRange {
			t.Fatalf("%s: bucket %d's range is not the backward's child %q", name, i, want)
		}
		if !strings.Contains(want, fmt.Sprintf("rank%d", m.DP.Rank)) {
			t.Fatalf("%s: range %q does not name the rank", name, want)
		}
		start := at[b.Range]
		for j, op := range seq {
			for _, v := range b.Slices {
				if w := writes(op, v); w && j >= start {
					t.Fatalf("%s: %s (%s) writes %s after bucket %d's all-reduce", name, op.Name, op.Where(), v, i)
				}
			}
		}
		ops := b.Range.Ops()
		if len(ops) < 5 || ops[0].Name != program.EventRecord || ops[0].Stream != program.ComputeStream ||
			ops[1].Name != program.StreamWaitEvent || ops[1].Stream != program.CommStream || ops[1].Event != ops[0].Event ||
			ops[2].Name != program.NCCLGroupStart {
			t.Fatalf("%s: bucket %d begins %v, want the event from the compute stream to the comm stream, then a group", name, i, ops[:3])
		}
		k := 3
		for ; ops[k].Name == program.NCCLAllReduce; k++ {
		}
		if ops[k].Name != program.NCCLGroupEnd || k-3 != len(b.Slices) {
			t.Fatalf("%s: bucket %d: %d all-reduces then %s, want one a slice (%d) then %s", name, i, k-3, ops[k].Name, len(b.Slices), program.NCCLGroupEnd)
		}
	}
	// The compute stream's wait for the last all-reduce ends the backward.
	last := seq[len(seq)-1]
	if last.Name != program.StreamWaitEvent || last.Stream != program.ComputeStream || last.Event != allReduced {
		t.Fatalf("%s: the backward ends with %v, want the compute stream's wait for %q", name, last, allReduced)
	}
	// Apart from the all-reduces the step is the plain one: the same
	// kernels and memsets in the same order, the same FLOPs and buffers.
	var a, b []string
	var fa, fb int64
	for _, op := range plain.Ops() {
		a, fa = append(a, op.String()), fa+op.FLOPs
	}
	for _, op := range m.Ops() {
		if op.Part != "allreduce" {
			b = append(b, op.String())
		}
		fb += op.FLOPs
	}
	if strings.Join(a, "\n") != strings.Join(b, "\n") || fa != fb {
		t.Fatalf("%s: the step less its all-reduces differs from the plain step (%d FLOP, want %d)", name, fb, fa)
	}
	if len(m.Used()) != len(plain.Used()) {
		t.Fatalf("%s: %d buffers, the plain step %d", name, len(m.Used()), len(plain.Used()))
	}
}

// TestPlainStepHasNoAllReduce: without DataParallel nothing changes.
func TestPlainStepHasNoAllReduce(t *testing.T) {
	m := Program(config.Dims{V: 50, MaxT: 8, T: 8, L: 2, NH: 1, C: 4, B: 1}, config.Train, Options{})
	for _, op := range m.Ops() {
		if op.Kind == program.Collective || op.Stream != program.ComputeStream {
			t.Fatalf("plain step: %v", op)
		}
	}
	if m.GradBuckets() != nil {
		t.Fatal("plain step has buckets")
	}
}
