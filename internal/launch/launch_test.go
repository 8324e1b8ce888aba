package launch

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests start this test binary as the children: TestMain runs the
// fake worker named by envFake in place of the tests, as gpubench's child
// would run the step.
const envFake = "GPUBENCH_FAKE_WORKER"

func TestMain(m *testing.M) {
	if behaviour, ok := os.LookupEnv(envFake); ok {
		os.Exit(fakeWorker(behaviour))
	}
	os.Exit(m.Run())
}

// fakeWorker is a rank: it exchanges the id, then behaves as told.
func fakeWorker(behaviour string) int {
	c, ok, err := FromEnv()
	if err != nil || !ok {
		fmt.Fprintln(os.Stderr, "fake: not a child:", err)
		return 90
	}
	if behaviour == "no-id" && c.Rank == 0 {
		fmt.Fprintln(os.Stderr, "fake: cannot make an id")
		return 5
	}
	id, err := c.ExchangeID(func() (string, error) { return fmt.Sprintf("id-from-pid-%d", os.Getpid()), nil })
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake:", err)
		return 4
	}
	fmt.Printf("id=%s device=%d nvls=%s\n", id, c.Device, os.Getenv(EnvNVLS))
	res := Result{Device: c.Device, StepMs: []float64{float64(10 + c.Rank), float64(12 + c.Rank)}, Losses: []float64{1, 0.5}, AllReduce: "nccl"}
	switch behaviour {
	case "ok":
	case "fail-rank1", "fail-rank1-stubborn":
		if c.Rank == 1 {
			fmt.Fprintln(os.Stderr, "fake: CUDA_ERROR_OUT_OF_MEMORY")
			return 3
		}
		if behaviour == "fail-rank1-stubborn" {
			signal.Ignore(syscall.SIGTERM) // a rank stuck in a collective
		}
		time.Sleep(time.Minute) // ended by the parent
	case "until-signal":
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt)
		fmt.Println("ready")
		<-stop
		res.StepMs = res.StepMs[:1]
		res.Partial = true
		if err := c.Report(res); err != nil {
			return 91
		}
		fmt.Println("partial statistics printed")
		return 130
	case "no-result":
		return 0
	}
	if err := c.Report(res); err != nil {
		fmt.Fprintln(os.Stderr, "fake: report:", err)
		return 92
	}
	return 0
}

// syncBuffer is the children's output, safe to read while they write.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	ready chan struct{} // receives once a line with "ready" is written
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready != nil && bytes.Contains(p, []byte("ready")) {
		s.ready <- struct{}{}
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func spec(t *testing.T, behaviour string, world int) (Spec, *syncBuffer, *syncBuffer) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out, errs := &syncBuffer{}, &syncBuffer{}
	return Spec{Exe: exe, Args: []string{"-test.run=^$"}, Env: []string{envFake + "=" + behaviour, EnvNVLS + "=1"},
		World: world, Stdout: out, Stderr: errs, Grace: 300 * time.Millisecond}, out, errs
}

func TestRunExchangesTheID(t *testing.T) {
	for _, world := range []int{1, 2, 5} {
		s, out, _ := spec(t, "ok", world)
		rs, err := Run(s, nil)
		if err != nil {
			t.Fatalf("%d ranks: %v\n%s", world, err, out)
		}
		if len(rs) != world {
			t.Fatalf("%d ranks: %d results", world, len(rs))
		}
		var ids []string
		for r, res := range rs {
			if res.Rank != r || res.Device != r || len(res.StepMs) != 2 {
				t.Errorf("result %d: %+v", r, res)
			}
			prefix := fmt.Sprintf("rank %d: id=", r)
			i := strings.Index(out.String(), prefix)
			if i < 0 {
				t.Fatalf("rank %d printed no id:\n%s", r, out)
			}
			line, _, _ := strings.Cut(out.String()[i+len(prefix):], "\n")
			id, rest, _ := strings.Cut(line, " ")
			ids = append(ids, id)
			// Rank r runs on device r, with NVLink multicast off whatever
			// the parent's environment said.
			if want := fmt.Sprintf("device=%d nvls=0", r); rest != want {
				t.Errorf("rank %d: %q, want %q", r, rest, want)
			}
		}
		for r, id := range ids {
			if id != ids[0] || !strings.HasPrefix(id, "id-from-pid-") {
				t.Errorf("%d ranks: rank %d has id %q, rank 0 %q", world, r, id, ids[0])
			}
		}
	}
}

func TestRunFailingRank(t *testing.T) {
	for _, behaviour := range []string{"fail-rank1", "fail-rank1-stubborn"} {
		s, _, errs := spec(t, behaviour, 3)
		t0 := time.Now()
		_, err := Run(s, nil)
		var re *RankError
		if !errors.As(err, &re) || re.Rank != 1 {
			t.Fatalf("%s: %v, want rank 1's failure", behaviour, err)
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("%s: %v, want rank 1's exit status 3", behaviour, err)
		}
		if msg := err.Error(); msg != "rank 1 failed: exit status 3: fake: CUDA_ERROR_OUT_OF_MEMORY" {
			t.Errorf("%s: error %q", behaviour, msg)
		}
		// The others, asleep for a minute (or ignoring SIGTERM), were
		// ended: by SIGTERM, or SIGKILL after the grace period.
		if d := time.Since(t0); d > 20*time.Second {
			t.Errorf("%s: the run took %v; the parent did not end the other ranks", behaviour, d)
		}
		if !strings.Contains(errs.String(), "rank 1: fake: CUDA_ERROR_OUT_OF_MEMORY\n") {
			t.Errorf("%s: rank 1's stderr was not passed on with its prefix:\n%s", behaviour, errs)
		}
	}
}

func TestRunRankZeroWithoutID(t *testing.T) {
	s, _, errs := spec(t, "no-id", 3)
	_, err := Run(s, nil)
	var re *RankError
	if !errors.As(err, &re) || re.Rank != 0 || !strings.Contains(err.Error(), "exit status 5: fake: cannot make an id") {
		t.Fatalf("%v, want rank 0's failure\n%s", err, errs)
	}
}

func TestRunForwardsSignals(t *testing.T) {
	const world = 3
	s, out, _ := spec(t, "until-signal", world)
	out.ready = make(chan struct{}, world)
	sig := make(chan os.Signal, 1)
	go func() {
		for range world {
			<-out.ready
		}
		sig <- os.Interrupt
	}()
	rs, err := Run(s, sig)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("%v, want ErrInterrupted\n%s", err, out)
	}
	if len(rs) != world {
		t.Fatalf("%d partial results, want %d", len(rs), world)
	}
	for _, r := range rs {
		if !r.Partial || len(r.StepMs) != 1 {
			t.Errorf("rank %d: %+v, want its partial result", r.Rank, r)
		}
	}
	if n := strings.Count(out.String(), "partial statistics printed"); n != world {
		t.Errorf("%d ranks printed their partial statistics, want %d", n, world)
	}
}

func TestRunRankWithoutResult(t *testing.T) {
	s, _, _ := spec(t, "no-result", 2)
	_, err := Run(s, nil)
	var re *RankError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "without reporting its result") {
		t.Fatalf("%v", err)
	}
}

func TestRunCannotStart(t *testing.T) {
	s, _, _ := spec(t, "ok", 2)
	s.Exe = "/nonexistent/gpubench"
	_, err := Run(s, nil)
	var re *RankError
	if !errors.As(err, &re) || re.Rank != 0 {
		t.Fatalf("%v", err)
	}
}

func TestSummary(t *testing.T) {
	rs := []Result{
		{Rank: 0, Device: 0, StepMs: []float64{10, 11, 12}, Losses: []float64{2, 1.5}},
		{Rank: 1, Device: 1, StepMs: []float64{10, 13, 14}, Losses: []float64{2, 1.25}, Partial: true},
	}
	s, err := Summarize(rs, &Result{StepMs: []float64{9, 10, 11.7}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Slowest != 1 || s.Baseline != 10 || s.Efficiency != 10.0/13 {
		t.Errorf("summary %+v", s)
	}
	var b bytes.Buffer
	if err := s.Write(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"slowest rank: 1 (median step 13.000 ms)", "scaling efficiency vs --gpus=1: 76.9%", "(partial)", " 1.25 (partial)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	if _, err := Summarize([]Result{{Rank: 0}}, nil); err == nil {
		t.Error("a rank without steps summarised")
	}
}

func TestVisibleGPUs(t *testing.T) {
	dir := t.TempDir()
	for _, g := range []string{"0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0"} {
		if err := os.Mkdir(dir+"/"+g, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	defer func(p string) { procGPUs = p }(procGPUs)
	procGPUs = dir
	for _, c := range []struct {
		env  *string
		want int
	}{{nil, 3}, {ptr("0,2"), 2}, {ptr(""), 0}, {ptr("1,,2"), 1}, {ptr("0,1,2,3,4"), 3}} {
		if c.env == nil {
			os.Unsetenv("CUDA_VISIBLE_DEVICES")
		} else {
			t.Setenv("CUDA_VISIBLE_DEVICES", *c.env)
		}
		if n, ok := VisibleGPUs(); !ok || n != c.want {
			t.Errorf("CUDA_VISIBLE_DEVICES=%v: %d GPUs (%v), want %d", c.env, n, ok, c.want)
		}
	}
	procGPUs = dir + "/none"
	if _, ok := VisibleGPUs(); ok {
		t.Error("VisibleGPUs without the driver's /proc said it knew")
	}
}

func ptr(s string) *string { return &s }

// TestNeedsNoDriver keeps this package off gorgonia.org/cu: the parent
// runs before cuInit, on CI too.
func TestNeedsNoDriver(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "gorgonia.org/cu") || strings.HasSuffix(p, "/internal/cudrv") {
			t.Errorf("package launch depends on %s", p)
		}
	}
}
