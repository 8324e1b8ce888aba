package model

import (
	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/internal/hoststall"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/kernels"
)

// The planted flaws (config.Flaws), each a change to the program made
// where a user's own program would make it:
//
//   - sync-every-launch: part appends a device synchronisation after each
//     kernel and memset, in the same NVTX range;
//   - alloc-per-iteration: the forward starts by allocating the
//     activations (all but the loss, which the run loop reads after the
//     iteration) and the iteration's last pass frees them;
//   - host-stall: the iteration starts with a host operation that spins
//     in dataLoaderStall (internal/hoststall: C, so that nsys names it);
//   - unfused: GPT-2's forward launches each linear layer's product
//     without its fused bias and adds the bias in a bias_add kernel of its
//     own, and runs the GELU as a chain of six elementwise kernels
//     (kernels.GELUChain) through a scratch activation, gelu_tmp, that
//     only the flaw allocates. The residual adds are separate kernels
//     (residual_forward) in the clean step already, so they stay as they
//     are. The forward writes the same activations (fch, fch_gelu, ...)
//     up to float rounding, so the backward, which reads them, is the
//     clean one;
//   - readback-per-layer: each block's forward ends with a copy of one
//     element of its output to the host and a wait for it;
//   - pageable-upload (pinned-upload): the iteration starts by uploading
//     the batch, synchronously from pageable memory (asynchronously from
//     pinned memory);
//   - serial-copies (overlapped-copies): each block's backward ends with
//     copies of its parameter gradients to pinned host memory, on the
//     compute stream (on the copy stream, after an event the compute
//     stream records; the backward ends waiting for the last copy);
//   - low-occupancy: every fp32 product plans with gemmplan.Largest (the
//     128×128 tile, no split-K), so the same kernels launch fewer, larger
//     blocks;
//   - uncoalesced: every residual add launches residual_forward_strided;
//   - bank-conflicts: every fp32 forward product launches
//     matmul_forward_nopad, with the tile and grid of the clean plan.
//
// The kernel flaws plant no operation: they change which kernel, tile or
// grid an operation of the clean program launches, and nothing it
// computes (but low-occupancy's unsplit weight gradients, whose sums run
// in another order). config refuses the SGEMM's flaws with the
// tensor-core dtypes, whose products do not run it.
//
// The operations of the iteration itself (host-stall, the uploads) run
// before the forward range, outside the passes, so they compose with
// --graph; unfused's are kernels, which a graph captures.
//
// The flaws call the CUDA runtime API (cudaDeviceSynchronize, cudaMemcpy,
// cudaMalloc, ...), as users' own programs and PyTorch do, where the clean
// step uses the driver API: Nsight Systems' expert rules (nsys analyze)
// recognise the runtime's calls only.

func (m *Step) has(f config.Flaw) bool { return config.HasFlaw(m.Flaws, f) }

// withSyncs is ops with a device synchronisation after each launch, under
// sync-every-launch; ops unchanged otherwise.
func (m *Step) withSyncs(ops []program.Op) []program.Op {
	if !m.has(config.SyncEveryLaunch) {
		return ops
	}
	out := make([]program.Op, 0, 2*len(ops))
	for _, op := range ops {
		out = append(out, op)
		if op.Kind == program.Kernel || op.Kind == program.Memset {
			out = append(out, syncOp(program.DeviceSynchronize))
		}
	}
	return out
}

// matmulOptions are the fp32 products' launch options under the kernel
// flaws: the clean plan's without them.
func (m *Step) matmulOptions() kernels.MatmulOptions {
	var o kernels.MatmulOptions
	if m.has(config.LowOccupancy) {
		o.Choice = gemmplan.Largest
	}
	o.NoPad = m.has(config.BankConflicts)
	return o
}

// residualForward is the residual add out = a + b over n elements:
// residual_forward_strided under uncoalesced, the same bits.
func (m *Step) residualForward(out, a, b program.View, n int) program.Op {
	if m.has(config.Uncoalesced) {
		return kernels.ResidualForwardStrided(out, a, b, n)
	}
	return kernels.ResidualForward(out, a, b, n)
}

// syncOp is a synchronisation through the runtime call name.
func syncOp(name string) program.Op {
	return program.Op{Kind: program.Sync, Name: name}
}

// iterationOps are the operations the iteration runs before its forward:
// the data loader's stall, then the batch's upload.
func (m *Step) iterationOps() []program.Op {
	var ops []program.Op
	at := func(op program.Op, step string) program.Op {
		op.Part, op.Layer, op.Step = "data", -1, step
		return op
	}
	if m.has(config.HostStall) {
		d := config.HostStallTime
		ops = append(ops, at(program.Op{Kind: program.Host, Name: hoststall.Symbol, Func: func() { hoststall.Stall(d) }},
			"data loader ("+d.String()+" on the CPU)"))
	}
	upload := func(b *program.Buffer, call string, host program.HostMemory) program.Op {
		return at(program.Op{Kind: program.Memcpy, Name: call, Dst: b.All(), Dir: program.HostToDevice, Host: host, Bytes: b.Bytes()},
			"upload "+b.Name)
	}
	for _, b := range []*program.Buffer{m.Tokens, m.Targets} {
		switch {
		case m.has(config.PageableUpload):
			ops = append(ops, upload(b, program.RuntimeMemcpy, program.Pageable))
		case m.has(config.PinnedUpload):
			ops = append(ops, upload(b, program.RuntimeMemcpyAsync, program.Pinned))
		}
	}
	return ops
}

// perIteration are the buffers alloc-per-iteration allocates and frees
// each iteration: the activations but the loss.
func (m *Step) perIteration() []*program.Buffer {
	var out []*program.Buffer
	for _, b := range m.Buffers {
		if b.Group == program.Activations && b != m.Loss {
			out = append(out, b)
		}
	}
	return out
}

// allocActivations and freeActivations are alloc-per-iteration's
// operations, none without the flaw.
func (m *Step) allocActivations() []program.Op {
	return m.lifetimeOps(program.Alloc, program.RuntimeMalloc)
}
func (m *Step) freeActivations() []program.Op {
	return m.lifetimeOps(program.Free, program.RuntimeFree)
}

func (m *Step) lifetimeOps(k program.OpKind, call string) []program.Op {
	if !m.has(config.AllocPerIteration) {
		return nil
	}
	var ops []program.Op
	for _, b := range m.perIteration() {
		ops = append(ops, program.Op{Kind: k, Name: call, Dst: b.All()})
	}
	return ops
}

// readback is readback-per-layer's copy of one element of block l's output
// to the host and the wait for it (a loss.item() or tensor.item() per
// layer); none without the flaw.
func (m *Step) readback(l int) []program.Op {
	if !m.has(config.ReadbackPerLayer) {
		return nil
	}
	v := m.acts.residual3[l].Buf.Slice("", 0, 1)
	return []program.Op{
		{Kind: program.Memcpy, Name: program.RuntimeMemcpyAsync, Dst: v, Dir: program.DeviceToHost, Host: program.Pageable, Bytes: v.Bytes()},
		syncOp(program.RuntimeStreamSynchronize),
	}
}

// The events overlapped-copies orders its two streams with: the compute
// stream records gradsReady after each layer's backward and the copy
// stream waits for it before the layer's copies; the copy stream records
// copiesDone after the last layer's and the compute stream waits for it
// at the end of the backward, so that the next iteration's backward never
// overwrites a gradient still being copied, and waiting for the compute
// stream (the loss, a download) waits for the copies too. One event
// serves every layer: a wait is for the record made before it.
const (
	gradsReady = "grads ready"
	copiesDone = "copies done"
)

// offload is serial-copies' (overlapped-copies') copy of layer l's
// parameter gradients to pinned host memory, one cudaMemcpyAsync per
// tensor, as a training loop with the optimizer on the CPU offloads them
// once the layer's backward has written them; none without either flaw.
//
// What is copied is every gradient the layer owns (12C²+13C elements for
// GPT-2: 0.79 MB a layer in fp32 on tiny, 28 MB on gpt2-124m): at PCIe 5's
// ~50 GB/s about a tenth of the layer's backward on every preset, since
// both grow as C². That is what such a program copies; nothing is inflated
// to make the lesson louder. On the compute stream each copy is a gap
// between the layer's last kernel and the next layer's first; on the copy
// stream the copies run under the next layer's kernels.
func (m *Step) offload(l int) []program.Op {
	serial, overlapped := m.has(config.SerialCopies), m.has(config.OverlappedCopies)
	if !serial && !overlapped || m.Grads == nil {
		return nil
	}
	var ops []program.Op
	stream := program.ComputeStream
	if overlapped {
		stream = program.CopyStream
		ops = append(ops, eventOp(program.EventRecord, gradsReady, program.ComputeStream),
			eventOp(program.StreamWaitEvent, gradsReady, program.CopyStream))
	}
	for _, g := range m.layerGrads(l) {
		ops = append(ops, program.Op{Kind: program.Memcpy, Name: program.RuntimeMemcpyAsync, Dst: g, Dir: program.DeviceToHost,
			Host: program.Pinned, Bytes: g.Bytes(), Stream: stream})
	}
	if overlapped && l == 0 { // the backward's last layer
		ops = append(ops, eventOp(program.EventRecord, copiesDone, program.CopyStream))
	}
	return ops
}

// joinCopies is overlapped-copies' wait, at the end of the backward, for
// the copy stream's last copy; none otherwise.
func (m *Step) joinCopies() []program.Op {
	if !m.has(config.OverlappedCopies) || m.Grads == nil {
		return nil
	}
	return []program.Op{eventOp(program.StreamWaitEvent, copiesDone, program.ComputeStream)}
}

func eventOp(call, event string, stream int) program.Op {
	return program.Op{Kind: program.EventOp, Name: call, Event: event, Stream: stream}
}

// layerGrads are the views of layer l's parameter gradients, in layout
// order.
func (m *Step) layerGrads(l int) []program.View {
	var out []program.View
	for i, t := range m.Layout {
		if isPerLayer(t.Name) {
			out = append(out, m.tensor(m.Grads, "d", i, l))
		}
	}
	return out
}

// biasedLinearForward is GPT-2's linearForward of a layer with a bias:
// one product with the bias fused into its epilogue, or under unfused the
// product without it followed by a bias_add launch over its output.
func (m *Step) biasedLinearForward(out, inp, w, bias program.View, n, c, oc, ld int) []program.Op {
	if !m.has(config.Unfused) || bias.IsNull() {
		return []program.Op{m.linearForward(out, inp, w, bias, n, c, oc, ld)}
	}
	return []program.Op{m.linearForward(out, inp, w, program.View{}, n, c, oc, ld), kernels.BiasAdd(out, bias, n, oc, ld)}
}

// geluForward is out = gelu(inp) over n elements: gelu_forward, or under
// unfused the chain of elementwise kernels through gelu_tmp.
func (m *Step) geluForward(out, inp program.View, n int) []program.Op {
	if !m.has(config.Unfused) {
		return []program.Op{kernels.GELUForward(out, inp, n)}
	}
	return kernels.GELUChain(out, m.acts.geluTmp, inp, n)
}
