package nsyscheck

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/kernels"
	"github.com/gpubench/gpubench/model"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/plan"
)

const fxIters = 3

func tinyPlan(t testing.TB, mode config.Mode) plan.Plan {
	t.Helper()
	p, err := config.LookupPreset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	return plan.For(p.Dims(config.DefaultBatch), mode)
}

func mainLabel() string  { return fmt.Sprintf("tid %d (pid %d, gpubench-main)", fxMainTID, fxPID) }
func otherLabel() string { return fmt.Sprintf("tid %d (pid %d)", fxOtherTID, fxPID) }

type checkCase struct {
	name string
	// mode of the plan checked against (default train); capture is the
	// mode the fixture runs (default: the same).
	mode, capture config.Mode
	iters         int // passed to Check; default fxIters
	mutate        func(t *testing.T, f *fixture, p plan.Plan)
	// want returns substrings the error must hold; nil for a clean run.
	want func(f *fixture, p plan.Plan) []string
	// notes the report must hold.
	notes []string
}

func checkCases() []checkCase {
	bwdCount := func(p plan.Plan, name string) int { return p.Iteration.Child(plan.Backward).KernelCount(name) }
	fwdCount := func(p plan.Plan, name string) int { return p.Iteration.Child(plan.Forward).KernelCount(name) }
	return []checkCase{
		{name: "follows the plan"},
		{name: "infer run, infer plan", mode: config.Infer},
		{name: "any number of iterations", iters: -1},
		{name: "one iteration", iters: 1, mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.removeIteration(2)
			f.removeIteration(1)
		}},
		{name: "legacy NVTX table with text only", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.legacyNVTX = true
		}},
		{name: "iteration number as payload", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			for i := range fxIters {
				r := f.rangeOf(t, i, "iteration")
				n := int64(i)
				r.name, r.payload = plan.IterationPrefix, &n
			}
		}},
		{name: "range still open at the end", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			last := f.rangeOf(t, fxIters-1, "iteration")
			f.ranges = append(f.ranges, fxRange{name: "teardown", start: last.end + 10*us, tid: fxMainThread, eventType: EventNvtxPushPopRange, iter: -1, open: true})
		}, notes: []string{"1 NVTX range was still open when the capture stopped, not checked"}},
		{name: "registered range names", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.registered = true
		}},
		{name: "no backtrace copies", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.noBacktrace = true
		}},
		{name: "no memset table", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.noMemsetTable = true
		}, want: func(f *fixture, p plan.Plan) []string {
			return []string{fmt.Sprintf("iteration0/backward: 0 memsets launched, plan says %d (the export has no CUPTI_ACTIVITY_KIND_MEMSET table: no memset was captured)",
				p.Iteration.Child(plan.Backward).Direct.Memsets)}
		}},
		{name: "infer run without memset table", mode: config.Infer, mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.noMemsetTable = true
		}},

		{name: "missing iteration", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.removeIteration(fxIters - 1)
		}, want: func(f *fixture, p plan.Plan) []string {
			return []string{fmt.Sprintf("capture holds %d iteration ranges, expected %d", fxIters-1, fxIters)}
		}},
		{name: "more iterations than expected", iters: fxIters - 1, want: func(f *fixture, p plan.Plan) []string {
			return []string{fmt.Sprintf("capture holds %d iteration ranges, expected %d", fxIters, fxIters-1)}
		}},
		{name: "misnumbered iteration", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.rangeOf(t, 1, "iteration").name = plan.IterationName(5)
		}, want: func(f *fixture, p plan.Plan) []string {
			r := f.rangeOf(nil, 1, "iteration")
			return []string{fmt.Sprintf("iteration range 2 of %d (at %s) is named iteration5, expected iteration1", fxIters, ms(r.start))}
		}},
		{name: "numbering starts at 1", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			for i := range fxIters {
				f.rangeOf(t, i, "iteration").name = plan.IterationName(i + 1)
			}
		}, want: func(f *fixture, p plan.Plan) []string {
			r := f.rangeOf(nil, 0, "iteration")
			return []string{fmt.Sprintf("iteration range 1 of %d (at %s) is named iteration1, expected iteration0: the run numbers its measured iterations from 0, and the capture window starts at iteration0", fxIters, ms(r.start))}
		}},
		{name: "no NVTX table", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.noNVTXTable = true
		}, want: func(f *fixture, p plan.Plan) []string { return []string{NoNVTXMessage} }},
		{name: "NVTX marks but no ranges", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			var keep []fxRange
			for _, r := range f.ranges {
				if r.eventType != EventNvtxPushPopRange {
					keep = append(keep, r)
				}
			}
			f.ranges = keep
		}, want: func(f *fixture, p plan.Plan) []string { return []string{NoNVTXMessage} }},
		{name: "no iteration ranges", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			for i := range fxIters {
				f.rangeOf(t, i, "iteration").name = "step"
			}
		}, want: func(f *fixture, p plan.Plan) []string {
			return []string{fmt.Sprintf(`capture holds 0 iteration ranges, expected %d (NVTX ranges found: "step", "forward", "backward")`, fxIters),
				fmt.Sprintf("all %d GPU operations lie outside every iteration range", fxIters*p.PerIteration.Launches)}
		}},

		{name: "no iteration ranges, any number expected", iters: -1, mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			for i := range fxIters {
				f.rangeOf(t, i, "iteration").name = "step"
			}
		}, want: func(f *fixture, p plan.Plan) []string {
			return []string{"capture holds no iteration ranges, expected at least 1 (NVTX ranges found:"}
		}},
		{name: "backward before forward", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			fwd, bwd := f.rangeOf(t, 1, plan.Forward), f.rangeOf(t, 1, plan.Backward)
			gap := bwd.start - fwd.end
			lf, lb := fwd.end-fwd.start, bwd.end-bwd.start
			f.shift(t, 1, plan.Forward, lb+gap)
			f.shift(t, 1, plan.Backward, -(lf + gap))
		}, want: func(f *fixture, p plan.Plan) []string {
			return []string{"iteration1: backward runs before forward; the plan runs forward, then backward"}
		}},
		{name: "backward overlaps forward", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			r := f.rangeOf(t, 2, plan.Backward)
			r.start -= fxRangeGap + fxRangeGap/2
		}, want: func(f *fixture, p plan.Plan) []string {
			fwd, bwd := f.rangeOf(nil, 2, plan.Forward), f.rangeOf(nil, 2, plan.Backward)
			return []string{fmt.Sprintf("iteration2: backward starts at %s, before forward ends at %s", ms(bwd.start), ms(fwd.end))}
		}},
		{name: "forward not nested in its iteration", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.rangeOf(t, 0, plan.Forward).start = f.rangeOf(t, 0, "iteration").start - 5*us
		}, want: func(f *fixture, p plan.Plan) []string {
			fwd, it := f.rangeOf(nil, 0, plan.Forward), f.rangeOf(nil, 0, "iteration")
			return []string{fmt.Sprintf("iteration0: range forward [%s – %s] is not nested inside iteration0 [%s – %s]",
				ms(fwd.start), ms(fwd.end), ms(it.start), ms(it.end))}
		}},
		{name: "forward on another thread", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.rangeOf(t, 1, plan.Forward).tid = gtid(fxOtherTID)
			for _, k := range f.launchesOf(1, plan.Forward) {
				f.launches[k].tid = gtid(fxOtherTID)
			}
		}, want: func(f *fixture, p plan.Plan) []string {
			first := f.launches[f.launchesOf(1, plan.Forward)[0]]
			return []string{
				fmt.Sprintf("iteration1: range forward is on thread %s, not on the iteration's thread %s", otherLabel(), mainLabel()),
				fmt.Sprintf("kernel %s at %s lies outside every iteration range (its cuLaunchKernel call ran on thread %s during iteration1, which is on thread %s)",
					first.kernel, ms(first.gpuStart), otherLabel(), mainLabel()),
			}
		}},
		{name: "one kernel launched from another thread", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.launches[f.findLaunch(t, 0, plan.Backward, "gelu_backward", 0)].tid = gtid(fxOtherTID)
		}, want: func(f *fixture, p plan.Plan) []string {
			l := f.launches[f.findLaunch(nil, 0, plan.Backward, "gelu_backward", 0)]
			n := bwdCount(p, "gelu_backward")
			return []string{
				fmt.Sprintf("iteration0/backward: kernel gelu_backward launched %s, plan says %d", times(n-1), n),
				fmt.Sprintf("kernel gelu_backward at %s lies outside every iteration range (its cuLaunchKernel call ran on thread %s during iteration0", ms(l.gpuStart), otherLabel()),
			}
		}},
		{name: "missing backward range", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.rangeOf(t, 1, plan.Backward).name = "backwards"
		}, want: func(f *fixture, p plan.Plan) []string {
			return []string{"iteration1: no backward range inside it", `iteration1: unexpected NVTX range "backwards" inside it`}
		}},
		{name: "unexpected range", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			b := f.rangeOf(t, 0, plan.Backward)
			f.ranges = append(f.ranges, fxRange{name: "optimizer", start: b.end, end: b.end + fxRangeGap/2, tid: fxMainThread, eventType: EventNvtxPushPopRange, iter: -1})
		}, want: func(f *fixture, p plan.Plan) []string {
			b := f.rangeOf(nil, 0, plan.Backward)
			return []string{fmt.Sprintf(`iteration0: unexpected NVTX range "optimizer" inside it at %s (not in the plan for mode train)`, ms(b.end))}
		}},
		{name: "train run, infer plan", mode: config.Infer, capture: config.Train, want: func(f *fixture, p plan.Plan) []string {
			return []string{`iteration0: unexpected NVTX range "backward" inside it`}
		}},
		{name: "infer run, train plan", mode: config.Train, capture: config.Infer, want: func(f *fixture, p plan.Plan) []string {
			return []string{"iteration0: no backward range inside it", "iteration2: no backward range inside it"}
		}},
		{name: "forward range outside the iterations", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			last := f.rangeOf(t, fxIters-1, "iteration")
			f.ranges = append(f.ranges, fxRange{name: plan.Forward, start: last.end + 50*us, end: last.end + 60*us, tid: fxMainThread, eventType: EventNvtxPushPopRange, iter: -1})
		}, want: func(f *fixture, p plan.Plan) []string {
			last := f.rangeOf(nil, fxIters-1, "iteration")
			return []string{fmt.Sprintf("range forward at %s lies outside every iteration range", ms(last.end+50*us))}
		}},

		{name: "missing kernel", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.remove(f.findLaunch(t, 1, plan.Backward, "matmul_backward_weight", 3))
		}, want: func(f *fixture, p plan.Plan) []string {
			n := bwdCount(p, "matmul_backward_weight")
			return []string{fmt.Sprintf("iteration1/backward: kernel matmul_backward_weight launched %d times, plan says %d", n-1, n)}
		}},
		{name: "extra kernel", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			l := f.launches[f.findLaunch(t, 0, plan.Forward, "gelu_forward", 0)]
			l.corr, l.apiStart, l.apiEnd = f.corr(), l.apiStart+1*us, l.apiEnd+1*us
			f.launches = append(f.launches, l)
		}, want: func(f *fixture, p plan.Plan) []string {
			n := fwdCount(p, "gelu_forward")
			return []string{fmt.Sprintf("iteration0/forward: kernel gelu_forward launched %d times, plan says %d", n+1, n)}
		}},
		{name: "kernel not in the plan", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.launches[f.findLaunch(t, 2, plan.Forward, "layernorm_forward", 0)].kernel = "mystery_kernel"
		}, want: func(f *fixture, p plan.Plan) []string {
			n := fwdCount(p, "layernorm_forward")
			return []string{
				fmt.Sprintf("iteration2/forward: kernel layernorm_forward launched %d times, plan says %d", n-1, n),
				"iteration2/forward: kernel mystery_kernel launched 1 time, plan says 0",
			}
		}},
		{name: "kernels out of order", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			ks := f.launchesOf(0, plan.Forward)
			a, b := &f.launches[ks[2]], &f.launches[ks[3]]
			a.kernel, b.kernel = b.kernel, a.kernel
		}, want: func(f *fixture, p plan.Plan) []string {
			ls := p.Iteration.Child(plan.Forward).Launches()
			return []string{fmt.Sprintf("iteration0/forward: launch 3 is kernel %s, plan says kernel %s at %s", ls[3].Name, ls[2].Name, ls[2].Where())}
		}},
		{name: "missing memset", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			for _, k := range f.launchesOf(2, plan.Backward) {
				if f.launches[k].kind == plan.Memset {
					f.remove(k)
					return
				}
			}
			t.Fatal("no memset in the fixture")
		}, want: func(f *fixture, p plan.Plan) []string {
			want := p.Iteration.Child(plan.Backward).Direct.Memsets
			return []string{fmt.Sprintf("iteration2/backward: %s launched, plan says %d", plural(want-1, "memset"), want)}
		}},
		{name: "kernel between iterations", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			it := f.rangeOf(t, 0, "iteration")
			start := it.end + 50*us
			f.launches = append(f.launches, fxLaunch{api: "cuLaunchKernel", apiStart: start, apiEnd: start + fxAPIDur, tid: fxMainThread, corr: f.corr(),
				kind: plan.Kernel, kernel: "layernorm_forward", gpuStart: start + fxQueue, gpuEnd: start + fxQueue + fxOpDur, iter: -1})
		}, want: func(f *fixture, p plan.Plan) []string {
			it := f.rangeOf(nil, 0, "iteration")
			return []string{fmt.Sprintf("kernel layernorm_forward at %s lies outside every iteration range", ms(it.end+50*us+fxQueue))}
		}},
		{name: "memset before the first iteration", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.launches = append(f.launches, fxLaunch{api: plan.MemsetD32, apiStart: 100 * us, apiEnd: 104 * us, tid: fxMainThread, corr: f.corr(),
				kind: plan.Memset, bytes: 512, gpuStart: 110 * us, gpuEnd: 111 * us, iter: -1})
		}, want: func(f *fixture, p plan.Plan) []string {
			return []string{fmt.Sprintf("memset of 512 bytes at %s lies outside every iteration range", ms(110*us))}
		}},
		{name: "kernel without launch record", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.launches[f.findLaunch(t, 1, plan.Forward, "encoder_forward", 0)].noAPI = true
		}, want: func(f *fixture, p plan.Plan) []string {
			l := f.launches[f.findLaunch(nil, 1, plan.Forward, "encoder_forward", 0)]
			return []string{
				fmt.Sprintf("kernel encoder_forward at %s has no CUDA API launch record (correlationId %d), so it cannot be placed in any range", ms(l.gpuStart), l.corr),
				"iteration1/forward: kernel encoder_forward launched 0 times, plan says 1",
			}
		}},
		{name: "kernel of another process reusing a correlation id", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			l := f.launches[f.findLaunch(t, 0, plan.Forward, "encoder_forward", 0)]
			f.launches = append(f.launches, fxLaunch{kind: plan.Kernel, kernel: "stray_kernel", corr: l.corr, noAPI: true,
				gpuStart: l.gpuStart + 1*us, gpuEnd: l.gpuEnd + 1*us, globalPidOverride: 777 << 24, iter: -1})
		}, want: func(f *fixture, p plan.Plan) []string {
			l := f.launches[f.findLaunch(nil, 0, plan.Forward, "encoder_forward", 0)]
			return []string{fmt.Sprintf("kernel stray_kernel at %s has no CUDA API launch record (correlationId %d)", ms(l.gpuStart+1*us), l.corr)}
		}},
		{name: "no CUDA API table", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			f.noRuntimeTable = true
		}, want: func(f *fixture, p plan.Plan) []string {
			return []string{"no CUDA API calls found (the export has no CUPTI_ACTIVITY_KIND_RUNTIME table): was the capture made with -t cuda?"}
		}},
		{name: "no GPU operations", mutate: func(t *testing.T, f *fixture, p plan.Plan) {
			var keep []fxLaunch
			for _, l := range f.launches {
				if l.noGPU {
					keep = append(keep, l)
				}
			}
			f.launches = keep
		}, want: func(f *fixture, p plan.Plan) []string {
			return []string{"no GPU kernels found in the capture: was it made with -t cuda?"}
		}},
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range checkCases() {
		t.Run(tc.name, func(t *testing.T) {
			mode, capture, iters := tc.mode, tc.capture, tc.iters
			if mode == "" {
				mode = config.Train
			}
			if capture == "" {
				capture = mode
			}
			if iters == 0 {
				iters = fxIters
			}
			p := tinyPlan(t, mode)
			f := runFixture(tinyPlan(t, capture), fxIters)
			if tc.mutate != nil {
				tc.mutate(t, f, p)
			}
			path := f.write(t)
			rep, err := Check(path, p, iters)
			if rep == nil {
				t.Fatalf("no report: %v", err)
			}
			var text bytes.Buffer
			if werr := rep.WriteText(&text); werr != nil {
				t.Fatal(werr)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected failure: %v\n%s", err, text.String())
				}
				if !rep.OK() || !strings.Contains(text.String(), "result: OK") {
					t.Fatalf("report not OK:\n%s", text.String())
				}
			} else {
				var me *MismatchError
				if !errors.As(err, &me) {
					t.Fatalf("error %v (%T), want a *MismatchError", err, err)
				}
				for _, w := range tc.want(f, p) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q; got:\n%v", w, err)
					}
					if !strings.Contains(text.String(), w) {
						t.Errorf("text report lacks %q", w)
					}
				}
				if !strings.Contains(text.String(), "result: FAILED") {
					t.Errorf("text report does not say FAILED:\n%s", text.String())
				}
			}
			for _, n := range tc.notes {
				if !strings.Contains(strings.Join(rep.Notes, "\n"), n) {
					t.Errorf("notes %q lack %q", rep.Notes, n)
				}
			}
		})
	}
}

// TestMeasurements checks the numbers of a clean run against the fixture's
// timing constants.
func TestMeasurements(t *testing.T) {
	p := tinyPlan(t, config.Train)
	rep, err := Check(runFixture(p, fxIters).write(t), p, fxIters)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SchemaVersion != "3.28.1" || rep.Iterations != fxIters {
		t.Errorf("schema %q, %d iterations", rep.SchemaVersion, rep.Iterations)
	}
	if got, want := len(rep.Ranges), fxIters*p.Ranges; got != want {
		t.Fatalf("%d range stats, want %d", got, want)
	}
	d := func(ns int64) time.Duration { return time.Duration(ns) }
	for i, s := range rep.Ranges {
		r := p.Iteration
		wantName := plan.IterationName(i / p.Ranges)
		if k := i % p.Ranges; k > 0 {
			r = p.Iteration.Children[k-1]
			wantName = r.Name
		}
		if s.Name != wantName || s.Thread != fxMainThread {
			t.Errorf("range %d: %s on %d, want %s on %d", i, s.Name, s.Thread, wantName, fxMainThread)
		}
		n := int64(r.Inclusive.Launches)
		if s.Kernels != r.Inclusive.Kernels || s.Memsets != r.Inclusive.Memsets || s.Launch.Count != int(n) {
			t.Errorf("%s: %d kernels, %d memsets, %d launches; want %+v", s.Path, s.Kernels, s.Memsets, s.Launch.Count, r.Inclusive)
		}
		if s.KernelTime+s.MemsetTime != d(n*fxOpDur) {
			t.Errorf("%s: GPU time %v, want %v", s.Path, s.KernelTime+s.MemsetTime, d(n*fxOpDur))
		}
		if s.Launch.APIMean != d(fxAPIDur) || s.Launch.APIMax != d(fxAPIDur) || s.Launch.QueueMean != d(fxQueue) {
			t.Errorf("%s: launch stats %+v", s.Path, s.Launch)
		}
		if r.Name == plan.IterationTemplate {
			// forward's last op to backward's first: the pop, the push and
			// the gaps around them on the CPU.
			between := 2*fxRangeGap + fxRangeGap + fxAPIStep
			wantIdle := d((n-2)*(fxAPIStep-fxOpDur) + between - fxOpDur)
			if s.IdleTotal != wantIdle {
				t.Errorf("%s: idle %v, want %v", s.Path, s.IdleTotal, wantIdle)
			}
			continue
		}
		if s.GPUSpan != d((n-1)*fxAPIStep+fxOpDur) {
			t.Errorf("%s: GPU span %v, want %v", s.Path, s.GPUSpan, d((n-1)*fxAPIStep+fxOpDur))
		}
		if s.IdleTotal != d((n-1)*(fxAPIStep-fxOpDur)) || s.IdleMax != d(fxAPIStep-fxOpDur) {
			t.Errorf("%s: idle %v (max %v), want %v (max %v)", s.Path, s.IdleTotal, s.IdleMax, d((n-1)*(fxAPIStep-fxOpDur)), d(fxAPIStep-fxOpDur))
		}
		if s.CPUSpan() != d(2*fxRangeGap+n*fxAPIStep) {
			t.Errorf("%s: CPU span %v, want %v", s.Path, s.CPUSpan(), d(2*fxRangeGap+n*fxAPIStep))
		}
	}
	if rep.Launch.Count != fxIters*p.PerIteration.Launches {
		t.Errorf("%d launches in all, want %d", rep.Launch.Count, fxIters*p.PerIteration.Launches)
	}

	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	for _, s := range []string{
		"export schema 3.28.1",
		fmt.Sprintf("iteration ranges: %d found, %d expected", fxIters, fxIters),
		fmt.Sprintf("result: OK, the capture follows the plan (%d launches", fxIters*p.PerIteration.Launches),
		"\niteration0 ", "\n  forward ", "\n  backward ", "\niteration2 ",
		fmt.Sprintf("all iterations: %d launches; launch call mean %s", rep.Launch.Count, dur(d(fxAPIDur))),
	} {
		if !strings.Contains(text, s) {
			t.Errorf("report text lacks %q:\n%s", s, text)
		}
	}
}

func TestLoadTrace(t *testing.T) {
	p := tinyPlan(t, config.Train)
	f := runFixture(p, 2)
	tr, err := Load(f.write(t))
	if err != nil {
		t.Fatal(err)
	}
	// 3 ranges per iteration; the domain-create and mark rows are no ranges.
	if got, want := len(tr.Ranges), 2*p.Ranges; got != want {
		t.Errorf("%d ranges, want %d", got, want)
	}
	if got, want := len(tr.Launches), 2*p.PerIteration.Launches; got != want {
		t.Errorf("%d launches, want %d", got, want)
	}
	if len(tr.Unlaunched) != 0 {
		t.Errorf("%d unlaunched ops", len(tr.Unlaunched))
	}
	if tr.Ranges[0].Name != "iteration0" || tr.Ranges[1].Name != plan.Forward {
		t.Errorf("ranges start %q, %q", tr.Ranges[0].Name, tr.Ranges[1].Name)
	}
	memsets := 0
	for _, l := range tr.Launches {
		if l.Op.Kind == plan.Memset {
			memsets++
			if l.API != plan.MemsetD32 || (l.Op.Bytes != 4*int64(p.Dims.Rows()*p.Dims.C) && l.Op.Bytes != 4*int64(p.Dims.MaxT*p.Dims.C)) {
				t.Errorf("memset launch %+v", l)
			}
		} else if l.API != "cuLaunchKernel" || l.Op.Stream != fxStream || l.Op.GlobalPid != fxPID<<24 {
			t.Errorf("kernel launch %+v", l)
		}
	}
	if memsets != 2*p.PerIteration.Memsets {
		t.Errorf("%d memsets", memsets)
	}
	if got := tr.ThreadLabel(fxMainThread); got != mainLabel() {
		t.Errorf("ThreadLabel = %q", got)
	}
}

func TestLoadIsReadOnly(t *testing.T) {
	p := tinyPlan(t, config.Train)
	path := runFixture(p, 1).write(t)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Check(path, p, 1); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("Check changed the export")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("Check left files beside the export: %v", entries)
	}

	missing := filepath.Join(t.TempDir(), "missing.sqlite")
	if _, err := Load(missing); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Error("Load created the missing file")
	}
}

func TestLoadRejectsOtherFiles(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "report.nsys-rep")
	if err := os.WriteFile(text, bytes.Repeat([]byte("not sqlite "), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(text); err == nil || !strings.Contains(err.Error(), "nsys export --type sqlite") {
		t.Errorf("Load(text file) = %v", err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Load(dir) = %v", err)
	}

	// An SQLite file that is no Nsight Systems export.
	empty := filepath.Join(dir, "other.sqlite")
	db := mustOpen(t, empty)
	if _, err := db.Exec(`CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Load(empty); err == nil || !strings.Contains(err.Error(), "not an Nsight Systems SQLite export") {
		t.Errorf("Load(other sqlite) = %v", err)
	}
}

// selftestPlan is the schedule of `gpubench selftest`: three iterations,
// each with forward and backward ranges that launch one fill_f32 kernel.
func selftestPlan() plan.Plan {
	var p program.Program
	buf := p.Buffer("buf", -1, program.F32, 1<<20, program.Scratch)
	p.Iteration.Name = program.IterationTemplate
	for _, phase := range []string{program.Forward, program.Backward} {
		p.Iteration.Nest(phase).Add(kernels.Fill(buf.All(), 1<<20, 0.5))
	}
	return plan.FromProgram(&p)
}

// realExports are the exports in testdata/nsys (see the README there) with
// the plan and iteration count of the run that made each. Add new ones here.
var realExports = []struct {
	file  string
	plan  func(t testing.TB) plan.Plan
	iters int
}{
	{"selftest-h200.sqlite", func(testing.TB) plan.Plan { return selftestPlan() }, 3},
	// gpubench --model=tiny --iters 3 --warmup 1 --profile, captured with
	// --capture-range=cudaProfilerApi.
	{"tiny-h200.sqlite", func(testing.TB) plan.Plan { return plan.For(tinyDims, config.Train) }, 3},
	// gpubench --model=tiny --graph --iters 3 --profile, captured with
	// --cuda-graph-trace=node (every kernel of the two graphs, under the
	// graph launch's correlation id) and with the default =graph (one
	// record per graph launch).
	{"tiny-graph-node-h200.sqlite", func(testing.TB) plan.Plan { return graphPlan() }, 3},
	{"tiny-graph-graph-h200.sqlite", func(testing.TB) plan.Plan { return graphPlan() }, 3},
}

func graphPlan() plan.Plan {
	return plan.Of(model.Program(tinyDims, config.Train, model.Options{Graph: true}))
}

// TestRealGraphExports: a graph run's exports fail against the plan
// without graphs (whole-graph records are not kernels), and the
// whole-graph one says how to see the nodes.
func TestRealGraphExports(t *testing.T) {
	_, err := Check(realExport(t, "tiny-graph-graph-h200.sqlite"), plan.For(tinyDims, config.Train), 3)
	if err == nil || !strings.Contains(err.Error(), "graph launch") {
		t.Errorf("whole-graph export against the plain plan: %v", err)
	}
	rep, err := Check(realExport(t, "tiny-graph-graph-h200.sqlite"), graphPlan(), 3)
	if err != nil || !strings.Contains(strings.Join(rep.Notes, "\n"), "--cuda-graph-trace=node") {
		t.Errorf("whole-graph export: %v, notes %q", err, rep.Notes)
	}
	// Node records of the graph run carry the plain plan's kernels in
	// its order, so they pass the plain plan too: the nodes are the same.
	if _, err := Check(realExport(t, "tiny-graph-node-h200.sqlite"), plan.For(tinyDims, config.Train), 3); err != nil {
		t.Errorf("node export against the plain plan: %v", err)
	}
}

var tinyDims = config.Dims{V: 512, MaxT: 64, T: 64, L: 2, NH: 4, C: 128, B: 8}

// TestRealExportWithoutCaptureRange: the same run captured without
// --capture-range (and without --profile) also holds the warm-up
// iteration's kernels, outside every iteration range: check must fail and
// say so.
func TestRealExportWithoutCaptureRange(t *testing.T) {
	_, err := Check(realExport(t, "tiny-nocapture-h200.sqlite"), plan.For(tinyDims, config.Train), 3)
	if err == nil {
		t.Fatal("a capture without the capture range passed the check")
	}
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("error %v is not a *MismatchError", err)
	}
	if !strings.Contains(err.Error(), "lies outside every iteration range") {
		t.Errorf("error does not name the kernels outside the iterations:\n%v", err)
	}
	t.Logf("%v", err)
}

// realExport returns the path of a file in testdata/nsys; the files are
// committed, so a missing one fails the test.
func realExport(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "nsys", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no real export %s: %v", name, err)
	}
	return path
}

func TestRealExports(t *testing.T) {
	for _, e := range realExports {
		t.Run(e.file, func(t *testing.T) {
			rep, err := Check(realExport(t, e.file), e.plan(t), e.iters)
			if rep == nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if werr := rep.WriteText(&buf); werr != nil {
				t.Fatal(werr)
			}
			t.Logf("\n%s", buf.String())
			if err != nil {
				t.Fatal(err)
			}
			per := rep.Plan.PerIteration.Launches
			if strings.Contains(e.file, "graph-graph") {
				per = rep.Plan.PerIteration.Graphs // one record per graph launch
			}
			if rep.Iterations != e.iters || rep.Launch.Count != e.iters*per {
				t.Errorf("%d iterations, %d launches", rep.Iterations, rep.Launch.Count)
			}
		})
	}
	// Any other export must at least load.
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "nsys", "*.sqlite"))
	for _, path := range files {
		if _, err := Load(path); err != nil {
			t.Errorf("Load(%s): %v", path, err)
		}
	}
}

// TestSelftestExport checks details of the real selftest export: the
// backtrace copies of launch calls are merged, names and threads are read.
func TestSelftestExport(t *testing.T) {
	tr, err := Load(realExport(t, "selftest-h200.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	if tr.SchemaVersion == "" {
		t.Error("no schema version")
	}
	var names []string
	for _, r := range tr.Ranges {
		names = append(names, r.Name)
	}
	want := "iteration0 forward backward iteration1 forward backward iteration2 forward backward"
	if strings.Join(names, " ") != want {
		t.Errorf("ranges %q, want %q", names, want)
	}
	if len(tr.Launches) != 6 || len(tr.Unlaunched) != 0 {
		t.Fatalf("%d launches, %d unlaunched", len(tr.Launches), len(tr.Unlaunched))
	}
	for _, l := range tr.Launches {
		if l.API != "cuLaunchKernel" || l.Op.Name != "fill_f32" || l.Thread != tr.Ranges[0].Thread || l.QueueDelay() <= 0 {
			t.Errorf("launch %+v", l)
		}
	}

	// The same export against wrong expectations.
	for _, tc := range []struct {
		plan  plan.Plan
		iters int
		want  string
	}{
		{selftestPlan(), 2, "capture holds 3 iteration ranges, expected 2"},
		{tinyPlan(t, config.Train), 3, "iteration0/forward: kernel encoder_forward launched 0 times, plan says 1"},
		{tinyPlan(t, config.Infer), 3, `iteration0: unexpected NVTX range "backward" inside it`},
	} {
		_, err := CheckTrace(tr, tc.plan, tc.iters)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

// TestDepthsAndDTypes: a trace of the plan at every --nvtx depth and
// --dtype passes the check of that plan (op depth repeats kernel names
// among siblings, which pair up in order); a trace at another depth fails
// it, naming a range.
func TestDepthsAndDTypes(t *testing.T) {
	p, _ := config.LookupPreset("tiny")
	d := p.Dims(2)
	for _, dt := range config.DTypes {
		for _, depth := range config.NVTXDepths {
			t.Run(string(dt)+"/"+string(depth), func(t *testing.T) {
				pl := plan.Of(model.Program(d, config.Train, model.Options{DType: dt, NVTX: depth}))
				rep, err := Check(runFixture(pl, fxIters).write(t), pl, fxIters)
				if err != nil || rep == nil || !rep.OK() {
					var text bytes.Buffer
					if rep != nil {
						_ = rep.WriteText(&text)
					}
					t.Fatalf("the plan's own trace fails: %v\n%s", err, text.String())
				}
				other := config.NVTXOp
				if depth == config.NVTXOp {
					other = config.NVTXIteration
				}
				shallow := plan.Of(model.Program(d, config.Train, model.Options{DType: dt, NVTX: other}))
				rep, _ = Check(runFixture(shallow, fxIters).write(t), pl, fxIters)
				if rep == nil || rep.OK() {
					t.Fatalf("a trace at --nvtx=%s passes the check of --nvtx=%s", other, depth)
				}
				var text bytes.Buffer
				_ = rep.WriteText(&text)
				if !strings.Contains(text.String(), "range") {
					t.Errorf("the failure names no range:\n%s", text.String())
				}
			})
		}
	}
}

// TestWindows: a report of one profiler window of several (nsys
// --capture-range-end=repeat:N, or --profile-iters) passes when it holds
// exactly that window's iterations, numbered as in the run, with the
// "profile" range around them; another span fails, naming the windows.
func TestWindows(t *testing.T) {
	p := tinyPlan(t, config.Train)
	three := config.SplitWindows(10, 3) // 0-3, 4-6, 7-9
	cases := []struct {
		name        string
		windows     []config.Window
		first, n    int
		ok          bool
		wantMessage string
	}{
		{"middle window of three", three, 4, 3, true, ""},
		{"first window of three", three, 0, 4, true, ""},
		{"last window of three", three, 7, 3, true, ""},
		{"profile-iters", []config.Window{{First: 2, Last: 4}}, 2, 3, true, ""},
		{"a span that is no window", three, 5, 2, false, "capture starts at iteration5; the run's profiler windows start at iteration0, iteration4, iteration7"},
		{"window cut short", three, 4, 2, false, "capture holds 2 iteration ranges, expected 3"},
		{"profile-iters from 0", []config.Window{{First: 2, Last: 4}}, 0, 3, false, "capture starts at iteration0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := runFixtureFrom(p, c.first, c.n, true).write(t)
			rep, err := CheckWindows(path, p, c.windows)
			if rep == nil {
				t.Fatalf("no report: %v", err)
			}
			var text bytes.Buffer
			_ = rep.WriteText(&text)
			if rep.OK() != c.ok {
				t.Fatalf("OK() = %v, want %v:\n%s", rep.OK(), c.ok, text.String())
			}
			if c.wantMessage != "" && !strings.Contains(text.String(), c.wantMessage) {
				t.Errorf("report lacks %q:\n%s", c.wantMessage, text.String())
			}
		})
	}
}

// TestCallName: runtime calls lose CUPTI's entry-point version, driver
// calls keep their own suffix.
func TestCallName(t *testing.T) {
	for in, want := range map[string]string{
		"cudaMalloc_v3020":            "cudaMalloc",
		"cudaDeviceSynchronize_v3020": "cudaDeviceSynchronize",
		"cudaMemcpyAsync_v3020":       "cudaMemcpyAsync",
		"cudaFree":                    "cudaFree",
		"cuMemAlloc_v2":               "cuMemAlloc_v2",
		"cudaLaunchKernel_v7000":      "cudaLaunchKernel",
		"cuda_v":                      "cuda_v",
		"cudaX_vab":                   "cudaX_vab",
	} {
		if got := callName(in); got != want {
			t.Errorf("callName(%q) = %q, want %q", in, got, want)
		}
	}
}
