package nsyscheck

import (
	"errors"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/plan"
	"github.com/gpubench/gpubench/model"
)

// The real capture of a data-parallel run of one rank: the README's nsys
// command (-s process-tree, so the parent and its child) on
// gpubench --model=tiny --batch-size 8 --profile --gpus=1, 10 iterations,
// an H200, NCCL 2.28.3, nsys 2025.3.2 (testdata/nsys/README.md).
const gpus1Export = "tiny-gpus1-h200.sqlite"

func rankPlans(world int) []plan.Plan {
	var ps []plan.Plan
	for r := range world {
		ps = append(ps, plan.Of(model.Program(tinyDims, config.Train, model.Options{DataParallel: model.DataParallel{World: world, Rank: r}})))
	}
	return ps
}

var tenIters = []config.Window{{First: 0, Last: 9}}

// asRank is a copy of the trace as another process, rank's: every thread
// moved to pid, every all-reduce range renamed.
func asRank(t *Trace, pid int64, from, to string) *Trace {
	out := *t
	move := func(gtid int64) int64 { return pid<<24 | TID(gtid) }
	out.Ranges = append([]Range(nil), t.Ranges...)
	for i := range out.Ranges {
		out.Ranges[i].Thread = move(out.Ranges[i].Thread)
		out.Ranges[i].Name = strings.Replace(out.Ranges[i].Name, from, to, 1)
	}
	out.Launches = append([]Launch(nil), t.Launches...)
	for i := range out.Launches {
		out.Launches[i].Thread = move(out.Launches[i].Thread)
	}
	out.Calls = append([]APICall(nil), t.Calls...)
	for i := range out.Calls {
		out.Calls[i].Thread = move(out.Calls[i].Thread)
	}
	return &out
}

func merge(a, b *Trace) *Trace {
	out := *a
	out.Ranges = append(append([]Range(nil), a.Ranges...), b.Ranges...)
	out.Launches = append(append([]Launch(nil), a.Launches...), b.Launches...)
	out.Calls = append(append([]APICall(nil), a.Calls...), b.Calls...)
	return &out
}

func TestRealDataParallelExport(t *testing.T) {
	tr, err := Load(realExport(t, gpus1Export))
	if err != nil {
		t.Fatal(err)
	}
	reps, err := checkRanks(tr, rankPlans(1), tenIters, Options{})
	if err != nil || len(reps) != 1 || reps[0].Rank != 0 {
		t.Fatalf("%d reports, %v", len(reps), err)
	}
	ar := reps[0].AllReduce
	// Two buckets an iteration, one all-reduce each: NCCL's one-rank
	// kernel (oneRankReduce) once a bucket.
	if ar == nil || ar.Kernels != 20 || ar.Time <= 0 || ar.Hidden < 0 || ar.Hidden > ar.Time || ar.Steps <= ar.Time {
		t.Fatalf("all-reduce stats %+v", ar)
	}
	t.Logf("all-reduce: %s", ar)

	// Against the plain plan the all-reduce ranges are unexpected.
	if _, err := CheckTrace(tr, plan.For(tinyDims, config.Train), 10); err == nil || !strings.Contains(err.Error(), `unexpected NVTX range "allreduce rank0 bucket0"`) {
		t.Errorf("plain plan: %v", err)
	}

	// Two processes: this one as rank 0, a copy as rank 1.
	pid := PID(tr.Ranges[0].Thread)
	two := merge(tr, asRank(tr, pid+1, "rank0", "rank1"))
	reps, err = checkRanks(two, rankPlans(2), tenIters, Options{})
	if err != nil || len(reps) != 2 || reps[1].Rank != 1 || reps[1].PID != pid+1 || !reps[1].OK() {
		t.Fatalf("two ranks: %d reports, %v", len(reps), err)
	}
	for _, c := range []struct {
		name  string
		trace *Trace
		world int
		want  string
	}{
		{"a rank missing", tr, 2, "rank 1: no process of the capture is rank 1"},
		{"two processes of one rank", merge(tr, asRank(tr, pid+1, "", "")), 2, "both say they are rank 0"},
		{"a rank outside the world", asRank(tr, pid, "rank0", "rank3"), 2, "pid"},
		{"rank 1 against rank 0's plan", asRank(tr, pid, "rank0", "rank1"), 1, "rank 1, the run has ranks 0..0"},
	} {
		_, err := checkRanks(c.trace, rankPlans(c.world), tenIters, Options{})
		var me *MismatchError
		if !errors.As(err, &me) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}

	// A bucket whose NCCL kernel is missing fails.
	cut := *tr
	cut.Launches = nil
	dropped := false
	for _, l := range tr.Launches {
		if !dropped && IsNCCLKernel(l.Op.Name) {
			dropped = true
			continue
		}
		cut.Launches = append(cut.Launches, l)
	}
	reps, err = checkRanks(&cut, rankPlans(1), tenIters, Options{})
	if err == nil || len(reps) != 1 || !strings.Contains(strings.Join(reps[0].Failures, "\n"), "0 kernels of NCCL launched, want 1 to 1") {
		t.Errorf("a missing NCCL kernel: %v", err)
	}
}

func TestRankOf(t *testing.T) {
	for name, want := range map[string]int{"allreduce rank0 bucket3": 0, "allreduce rank12 bucket0": 12, "allreduce": -1, "backward": -1, "allreduce rankx bucket0": -1} {
		if got := RankOf(name); got != want {
			t.Errorf("RankOf(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestOverlap(t *testing.T) {
	busy := union([]GPUOp{{Start: 0, End: 10}, {Start: 5, End: 20}, {Start: 30, End: 40}})
	if len(busy) != 2 || busy[0] != (span{0, 20}) || busy[1] != (span{30, 40}) {
		t.Fatalf("union %v", busy)
	}
	for _, c := range []struct{ start, end, want int64 }{
		{0, 20, 20}, {15, 35, 10}, {20, 30, 0}, {-5, 50, 30}, {41, 45, 0},
	} {
		if got := overlap(c.start, c.end, busy); got != c.want {
			t.Errorf("overlap(%d, %d) = %d, want %d", c.start, c.end, got, c.want)
		}
	}
	s := AllReduceStats{Time: 100, Hidden: 75, Steps: 1000}
	if s.HiddenShare() != 0.75 || s.VisibleShare() != 0.025 {
		t.Errorf("%v %v", s.HiddenShare(), s.VisibleShare())
	}
}
