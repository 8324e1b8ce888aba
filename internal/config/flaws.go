package config

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Flaw is a planted performance problem (--flaw): a change to the step's
// program that the profiler must show, made the way people make it in
// their own programs. A run with a flaw is a lesson, never a benchmark
// result; its fix is the clean run, or a named variant (Fix).
type Flaw string

// The flaws, and the fix variants that are run the same way.
const (
	SyncEveryLaunch   Flaw = "sync-every-launch"
	AllocPerIteration Flaw = "alloc-per-iteration"
	HostStall         Flaw = "host-stall"
	Unfused           Flaw = "unfused"
	ReadbackPerLayer  Flaw = "readback-per-layer"
	PageableUpload    Flaw = "pageable-upload"
	// PinnedUpload is pageable-upload's fix: the same per-iteration
	// upload, from pinned memory with an asynchronous copy.
	PinnedUpload Flaw = "pinned-upload"
	// The kernel flaws: the same step through a worse kernel, tile or
	// grid, for Nsight Compute's lessons.
	LowOccupancy  Flaw = "low-occupancy"
	Uncoalesced   Flaw = "uncoalesced"
	BankConflicts Flaw = "bank-conflicts"
)

// SerialCopies offloads each layer's parameter gradients to the host on
// the compute stream; OverlappedCopies, its fix, makes the same copies on
// a second stream ordered by events.
const (
	SerialCopies     Flaw = "serial-copies"
	OverlappedCopies Flaw = "overlapped-copies"
)

// HostStallTime is how long host-stall's data loader spins per iteration.
const HostStallTime = 2 * time.Millisecond

// FlawInfo describes one flaw for `gpubench flaws` and the lessons.
type FlawInfo struct {
	Name    Flaw
	Does    string // what it plants, in one line
	LookFor string // what the profiler shows, in one line
	// FixOf names the flaw this variant fixes; "" for a flaw (whose fix
	// is the clean run unless Fix says otherwise).
	FixOf Flaw
	Fix   Flaw // the named variant that fixes it, if any
	// TrainOnly flaws change the backward pass, which only --mode=train
	// runs.
	TrainOnly bool
}

// Flaws is the table of flaws and fix variants, in the order of the course.
var Flaws = []FlawInfo{
	{Name: SyncEveryLaunch,
		Does:    "a device synchronisation (cudaDeviceSynchronize) after every kernel and memset launch",
		LookFor: "a cudaDeviceSynchronize call after each launch in the CUDA API row, the GPU idle between kernels while the CPU launches the next; nsys analyze's cuda_api_sync rule lists them"},
	{Name: AllocPerIteration,
		Does:    "the activations allocated (cudaMalloc) at the start of each forward and freed (cudaFree) at the end of the iteration",
		LookFor: "cudaMalloc and cudaFree calls in every iteration; cudaFree synchronises, so the GPU drains at each iteration's end"},
	{Name: HostStall,
		Does:    fmt.Sprintf("a CPU data loader (dataLoaderStall) that spins %v before each forward", HostStallTime),
		LookFor: "a gap with no CUDA calls before each forward range; CPU samples (-s cpu) in dataLoaderStall"},
	{Name: SerialCopies, Fix: OverlappedCopies, TrainOnly: true,
		Does:    "during the backward, each layer's parameter gradients offloaded to pinned host memory (cudaMemcpyAsync, as for an optimizer on the CPU) on the compute stream, right after the layer's backward",
		LookFor: "device-to-host memcpys after each layer on the same stream as the backward kernels, never overlapping one: the kernels wait for the copy engine"},
	{Name: OverlappedCopies, FixOf: SerialCopies, TrainOnly: true,
		Does:    "the fix of serial-copies: the same copies on a second stream, after the layer's gradients through cudaEventRecord and cudaStreamWaitEvent; the backward's end waits for the last copy",
		LookFor: "the device-to-host memcpys on a second stream, overlapping the next layers' backward kernels; cudaEventRecord and cudaStreamWaitEvent calls in the backward"},
	{Name: Unfused,
		Does:    "GPT-2's forward runs each linear layer's bias as its own bias_add kernel after the matmul, and the GELU as a chain of six elementwise kernels (elem_mul, elem_axpby, elem_tanh_scale) where the clean step fuses them into the matmul and gelu_forward",
		LookFor: "many short kernels with GPU gaps between them while the CPU launches the next: 9 more kernel launches per layer in each forward (4 bias_add, 6 for the GELU in place of one gelu_forward); --graph removes the launch gaps but not the extra kernels"},
	{Name: ReadbackPerLayer,
		Does:    "after each layer's forward, one activation element copied to pageable host memory (cudaMemcpyAsync) and waited for (cudaStreamSynchronize): the .item() ping-pong",
		LookFor: "a small device-to-host memcpy and a cudaStreamSynchronize after each layer, the GPU idle after each; nsys analyze's cuda_memcpy_async (pageable memory) and cuda_api_sync rules list them"},
	{Name: PageableUpload, Fix: PinnedUpload,
		Does:    "each iteration uploads its batch (tokens, targets) from pageable host memory with a synchronous copy (cudaMemcpy)",
		LookFor: "host-to-device memcpys from pageable memory before each forward, the CPU blocked in cudaMemcpy; nsys analyze's cuda_memcpy_sync rule lists them"},
	{Name: PinnedUpload, FixOf: PageableUpload,
		Does:    "the fix of pageable-upload: the same upload from pinned host memory with an asynchronous copy (cudaMemcpyAsync)",
		LookFor: "host-to-device memcpys from pinned memory; the CPU returns at once (overlap with compute needs a second stream)"},
	{Name: LowOccupancy,
		Does:    "every fp32 matmul (forward and backward) runs the largest tile (128x128, 256 threads a block) and the weight gradients no split-K, whatever the shape: on a small model a grid of fewer blocks than the GPU has SMs",
		LookFor: "matmul_forward, matmul_backward_input and matmul_backward_weight with fewer, larger blocks than the clean run, fewer than the GPU has SMs (check reads the grids); in ncu, LaunchStats' Grid Size and the grid rule's estimated speedup (the share of idle SMs), SpeedOfLight's longer duration; the grid rule itself fires on the clean tiny products too, whose grids are also smaller than the SM count"},
	{Name: Uncoalesced,
		Does:    "every residual add runs residual_forward_strided: each thread adds one contiguous chunk of n/threads elements, so at each step the 32 lanes of a warp touch addresses a chunk apart",
		LookFor: "residual_forward_strided where the clean run has residual_forward, many times slower (it also runs on fewer threads: chunks of 64 elements, where residual_forward gives each thread one 16-byte vector); in ncu, SourceCounters' uncoalesced global access rule: 32 sectors a request, 4 bytes used of each 32-byte sector, where residual_forward's 16-byte vectors use every byte"},
	{Name: BankConflicts,
		Does:    "every fp32 forward matmul runs matmul_forward_nopad: the same SGEMM and tile without the 4-float pad of its shared-memory rows, so the transposing stores of its K-contiguous operands hit the same banks",
		LookFor: "matmul_forward_nopad where the clean run has matmul_forward; in ncu, MemoryWorkloadAnalysis_Tables' shared-store bank conflicts (the SharedMemoryConflicts rule), many wavefronts per shared store request"},
}

// LookupFlaw returns the table entry of f.
func LookupFlaw(f Flaw) (FlawInfo, bool) {
	for _, fi := range Flaws {
		if fi.Name == f {
			return fi, true
		}
	}
	return FlawInfo{}, false
}

// FlawNames lists the flaw names in the table's order.
func FlawNames() []string {
	names := make([]string, len(Flaws))
	for i, f := range Flaws {
		names[i] = string(f.Name)
	}
	return names
}

// ParseFlaws parses a --flaw value: names separated by commas, each known
// and given once. "" is no flaw.
func ParseFlaws(s string) ([]Flaw, error) {
	if s == "" {
		return nil, nil
	}
	var out []Flaw
	seen := map[Flaw]bool{}
	for _, name := range strings.Split(s, ",") {
		f := Flaw(strings.TrimSpace(name))
		if _, ok := LookupFlaw(f); !ok {
			return nil, fmt.Errorf("--flaw: unknown flaw %q (allowed: %s; gpubench flaws describes them)", string(f), strings.Join(FlawNames(), ", "))
		}
		if seen[f] {
			return nil, fmt.Errorf("--flaw: %s is named twice", f)
		}
		seen[f] = true
		out = append(out, f)
	}
	return out, nil
}

// HasFlaw reports whether fs holds f.
func HasFlaw(fs []Flaw, f Flaw) bool {
	for _, g := range fs {
		if g == f {
			return true
		}
	}
	return false
}

// FlawList joins flaws with commas, as --flaw takes them.
func FlawList(fs []Flaw) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return strings.Join(s, ",")
}

// checkFlaws refuses the flaws that cannot be planted in run r, with the
// reason. Every flaw composes with every NVTX depth, with both modes but
// the TrainOnly ones, and with every dtype but the fp32 SGEMM's flaws
// (bank-conflicts, low-occupancy); what a CUDA graph cannot capture is
// refused with --graph (the flaws that act before the forward run outside
// the graphs, so they compose with it; unfused and the kernel flaws change
// only kernels, tiles and grids, which a graph captures as they are).
// unfused changes GPT-2's bias and GELU, which a LLaMA has not: it is
// refused there.
func checkFlaws(r Run) error {
	fs := r.Flaws
	if HasFlaw(fs, PageableUpload) && HasFlaw(fs, PinnedUpload) {
		return errors.New("--flaw: pageable-upload and pinned-upload are the flaw and its fix; name one of them")
	}
	if HasFlaw(fs, SerialCopies) && HasFlaw(fs, OverlappedCopies) {
		return errors.New("--flaw: serial-copies and overlapped-copies are the flaw and its fix; name one of them")
	}
	for _, f := range fs {
		if fi, _ := LookupFlaw(f); fi.TrainOnly && r.Mode != Train {
			return fmt.Errorf("--flaw=%s: needs --mode=train (it offloads the gradients, which only the backward pass computes; --mode=%s has none)", f, r.Mode)
		}
	}
	if HasFlaw(fs, Unfused) && r.Dims.IsLlama() {
		return errors.New("--flaw=unfused: LLaMA's linear layers have no bias and its MLP is SwiGLU, not GELU: it has nothing of GPT-2's bias and GELU to unfuse (use a GPT-2 model)")
	}
	if r.DType.TensorCores() {
		for _, f := range fs {
			switch f {
			case BankConflicts:
				return fmt.Errorf("--flaw=bank-conflicts: cannot be combined with --dtype=%s (the flaw is in the fp32 SGEMM's shared-memory tile; --dtype=%s runs the linear layers on the tensor-core GEMM, whose cp.async stages keep their padding; use --dtype=fp32)", r.DType, r.DType)
			case LowOccupancy:
				return fmt.Errorf("--flaw=low-occupancy: cannot be combined with --dtype=%s (the flaw forces the fp32 SGEMM's largest tile; the tensor-core GEMM's tiles are already one 256-thread block an SM; use --dtype=fp32)", r.DType)
			}
		}
	}
	if r.Graph {
		for _, f := range fs {
			switch f {
			case SyncEveryLaunch:
				return errors.New("--flaw=sync-every-launch: cannot be combined with --graph (a stream being captured into a graph cannot synchronise; the graph is the fix)")
			case AllocPerIteration:
				return errors.New("--flaw=alloc-per-iteration: cannot be combined with --graph (cudaMalloc and cudaFree cannot be captured, and a graph's kernels keep the addresses they were captured with)")
			case ReadbackPerLayer:
				return errors.New("--flaw=readback-per-layer: cannot be combined with --graph (a captured stream cannot wait for a copy to reach the host in the middle of the forward)")
			case SerialCopies, OverlappedCopies:
				return fmt.Errorf("--flaw=%s: cannot be combined with --graph (gpubench captures each pass from one stream, as kernels and memsets only; the lesson is the copies and the streams themselves)", f)
			}
		}
	}
	if r.SyncLaunches && HasFlaw(fs, SyncEveryLaunch) {
		return errors.New("--flaw=sync-every-launch: cannot be combined with --sync-launches (both synchronise after every launch; drop --sync-launches)")
	}
	if r.Dump != "" && HasFlaw(fs, AllocPerIteration) {
		return errors.New("--flaw=alloc-per-iteration: cannot be combined with --dump (the dump reads the activations, which the flaw frees at the end of each iteration)")
	}
	return nil
}

// WriteFlaws writes the table of flaws: each name, what it does, what to
// look for, and its fix.
func WriteFlaws(w io.Writer) error {
	for _, f := range Flaws {
		fix := "the clean run (no --flaw)"
		if f.Fix != "" {
			fix = "--flaw=" + string(f.Fix)
		}
		if f.FixOf != "" {
			fix = "(this is the fix of " + string(f.FixOf) + ")"
		}
		if _, err := fmt.Fprintf(w, "%s\n  does:         %s\n  look for:     %s\n  fix:          %s\n", f.Name, f.Does, f.LookFor, fix); err != nil {
			return err
		}
	}
	return nil
}
