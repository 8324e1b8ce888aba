package model

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gpubench/gpubench/internal/program"
)

// DataParallel is a rank of a data-parallel step (--gpus): one process per
// GPU, each running the step on its own shard of the batch and averaging
// the gradients with the others through NCCL.
type DataParallel struct {
	// World is the number of ranks; 0 means a plain single-process step,
	// with no all-reduce. World 1 is one rank through NCCL (--gpus=1).
	World, Rank int
	// BucketBytes caps a bucket's gradients (0: DefaultBucketBytes). A
	// bucket holds whole layers, at least one.
	BucketBytes int64
}

// DefaultBucketBytes is PyTorch DistributedDataParallel's default bucket
// cap (bucket_cap_mb=25): gpt2-124m's layers (7.1M parameters, 14 MB in
// bf16, 28 MB in fp32) then go one to a bucket, tiny's all into one.
const DefaultBucketBytes = 25 << 20

// GradBucket is one all-reduce of a data-parallel step: the gradients of a
// run of layers (or of the embeddings), averaged over the ranks as soon as
// the backward has written the last of them.
type GradBucket struct {
	Index int
	// Layers are the blocks whose gradients the bucket holds, from the
	// highest down (the backward's order); none for the embeddings'
	// bucket, which is the last.
	Layers []int
	// Slices are the bucket's contiguous views of the gradients, in
	// offset order: a block's tensors are laid out tensor by tensor over
	// every layer (ref.Layout), so a run of layers is one slice per
	// tensor. The first bucket also holds the final LayerNorm's gradients,
	// written before any block's; the last holds wte and wpe, which the
	// lm head and the encoder's backward write last.
	Slices []program.View
	// Range is the bucket's NVTX range in the backward.
	Range *program.Range
}

// GradBuckets are the step's all-reduce buckets in the order the backward
// issues them; nil unless the step is data-parallel.
func (m *Step) GradBuckets() []GradBucket { return m.buckets }

// planBuckets divides the blocks into buckets of whole layers, from the
// last block down, each holding at most BucketBytes of gradients (at least
// one layer), then the embeddings' bucket.
func (m *Step) planBuckets() {
	d := m.Dims
	limit := m.DP.BucketBytes
	if limit <= 0 {
		limit = DefaultBucketBytes
	}
	var layerBytes int64
	for _, g := range m.layerGrads(0) {
		layerBytes += g.Bytes()
	}
	per := max(1, int(limit/layerBytes))
	for hi := d.L - 1; hi >= 0; hi -= per {
		lo := max(0, hi-per+1)
		b := GradBucket{Index: len(m.buckets)}
		for l := hi; l >= lo; l-- {
			b.Layers = append(b.Layers, l)
		}
		for i, t := range m.Layout {
			if !isPerLayer(t.Name) {
				continue
			}
			one := m.tensor(m.Grads, "d", i, lo)
			b.Slices = append(b.Slices, m.Grads.Slice(fmt.Sprintf("d%s[%d:%d]", t.Name, lo, hi+1), one.Offset, one.Elems*int64(hi-lo+1)))
		}
		if b.Index == 0 {
			b.Slices = append(b.Slices, m.Grad(iLnfw, 0), m.Grad(iLnfb, 0))
		}
		m.buckets = append(m.buckets, b)
	}
	m.buckets = append(m.buckets, GradBucket{Index: len(m.buckets), Slices: []program.View{m.Grad(iWte, 0), m.Grad(iWpe, 0)}})
	for i := range m.buckets {
		m.buckets[i].Slices = mergeSlices(m.buckets[i].Slices)
	}
}

// mergeSlices sorts views of one buffer by offset and joins the adjacent
// ones (wte and wpe, lnfw and lnfb), so that each is one ncclAllReduce.
func mergeSlices(vs []program.View) []program.View {
	sort.Slice(vs, func(i, j int) bool { return vs[i].Offset < vs[j].Offset })
	var out []program.View
	for _, v := range vs {
		if n := len(out); n > 0 && out[n-1].Offset+out[n-1].Elems == v.Offset {
			first, _, _ := strings.Cut(out[n-1].Label, "..")
			out[n-1].Elems += v.Elems
			out[n-1].Label = first + ".." + v.Label
			continue
		}
		out = append(out, v)
	}
	return out
}

// The events that order the all-reduces with the backward: the compute
// stream records bucketReady(b) after bucket b's last gradient kernel and
// the comm stream waits for it before the bucket's all-reduce; the comm
// stream records allReduced after the last bucket's, and the compute
// stream waits for it at the end of the backward, so that whatever follows
// on the compute stream (the loss's download, the next iteration's
// backward overwriting the gradients) follows the averaged gradients.
const allReduced = "grads all-reduced"

func bucketReady(b int) string { return fmt.Sprintf("bucket%d grads ready", b) }

// allReduce appends bucket b's all-reduce to the backward r, in its own
// NVTX range: the event from the compute stream, then the bucket's slices
// averaged in one NCCL group on the comm stream.
func (m *Step) allReduce(r *program.Range, b int) {
	bk := &m.buckets[b]
	bk.Range = r.NestKind(program.AllReduceName(m.DP.Rank, b), program.AllReduceRange, -1)
	where := func(op program.Op) program.Op {
		op.Part, op.Layer, op.Step = "allreduce", -1, fmt.Sprintf("bucket%d", b)
		return op
	}
	bk.Range.Add(where(eventOp(program.EventRecord, bucketReady(b), program.ComputeStream)),
		where(eventOp(program.StreamWaitEvent, bucketReady(b), program.CommStream)),
		where(program.Op{Kind: program.Collective, Name: program.NCCLGroupStart}))
	for _, v := range bk.Slices {
		bk.Range.Add(where(program.Op{Kind: program.Collective, Name: program.NCCLAllReduce, Dst: v, Stream: program.CommStream}))
	}
	bk.Range.Add(where(program.Op{Kind: program.Collective, Name: program.NCCLGroupEnd}))
	if b == len(m.buckets)-1 {
		bk.Range.Add(where(eventOp(program.EventRecord, allReduced, program.CommStream)))
		r.Add(where(eventOp(program.StreamWaitEvent, allReduced, program.ComputeStream)))
	}
}

// bucketEndingAt is the bucket whose lowest layer is l, or -1.
func (m *Step) bucketEndingAt(l int) int {
	for i, b := range m.buckets {
		if n := len(b.Layers); n > 0 && b.Layers[n-1] == l {
			return i
		}
	}
	return -1
}
