package nvtx_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/nvtx"
)

// helperEnv makes the re-executed test binary run recordedScenario instead
// of the tests: NVTX loads its tool once per process, on the first call, so
// a process of its own is the only way to attach the recording library.
const helperEnv = "GPUBENCH_NVTX_HELPER"

func init() {
	if os.Getenv(helperEnv) == "1" {
		// Keep the main goroutine on the process's first thread, whose id
		// equals the pid, so that the scenario goroutine runs on a thread
		// whose id does not: a thread id taken from getpid would then show.
		runtime.LockOSThread()
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		code := make(chan int)
		go func() { code <- recordedScenario() }()
		os.Exit(<-code)
	}
	os.Exit(m.Run())
}

// recordedScenario drives the API the way the gpubench runner does and
// prints the values the calls returned on stdout, one per line.
func recordedScenario() (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintln(os.Stderr, "helper:", r)
			code = 2
		}
	}()
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	newText := func(s string) *nvtx.Text {
		t, err := nvtx.NewText(s)
		must(err)
		return t
	}
	var ret []string
	got := func(name string, v any) { ret = append(ret, fmt.Sprintf("%s=%v", name, v)) }

	runtime.LockOSThread()
	nvtx.Initialize()
	must(nvtx.NameOSThread("gpubench-main"))
	must(nvtx.NameCategory(1, "iteration"))

	forward, err := nvtx.RegisterString("forward")
	must(err)
	iters := []*nvtx.Text{newText("iteration0"), newText("iteration1")}
	backward, sync := newText("backward"), newText("sync")

	fwd := nvtx.Attributes{Message: forward, Color: nvtx.RGB(0, 200, 0)}
	bwd := nvtx.Attributes{Message: backward, Color: nvtx.ARGB(0x80, 200, 0, 0)}
	for i, text := range iters {
		iter := nvtx.Attributes{Message: text, Color: nvtx.RGB(0, 0, 255), Category: 1, Payload: nvtx.Uint64(uint64(i))}
		got("push", nvtx.Push(&iter))
		fwd.Payload = nvtx.Uint64(uint64(i))
		got("push", nvtx.Push(&fwd))
		got("pop", nvtx.Pop())
		bwd.Payload = nvtx.Int64(-int64(i) - 1)
		got("push", nvtx.Push(&bwd))
		got("pop", nvtx.Pop())
		nvtx.Mark(&nvtx.Attributes{Message: sync, Payload: nvtx.Float64(float64(i) + 0.5)})
		got("pop", nvtx.Pop())
	}
	// A Text freed while Attributes still refer to it must not reach the
	// tool as a dangling pointer.
	sync.Free()
	nvtx.Mark(&nvtx.Attributes{Message: sync})

	// The nil Domain is the global domain, reached through the domain API.
	var global *nvtx.Domain
	global.Mark(&nvtx.Attributes{Message: forward, Category: 1})

	d, err := nvtx.NewDomain("gpubench")
	must(err)
	must(d.NameCategory(7, "kernels"))
	gemm, err := d.RegisterString("gemm")
	must(err)
	load := newText("load")

	// Domains keep their own stacks: the domain's first push is level 0
	// inside a global range.
	got("push", nvtx.Push(&nvtx.Attributes{Message: load}))
	k := nvtx.Attributes{Message: gemm, Color: nvtx.RGB(255, 128, 0), Category: 7, Payload: nvtx.Uint64(42)}
	got("dpush", d.Push(&k))
	k.Payload = nvtx.Uint64(43)
	got("dpush", d.Push(&k))
	d.Mark(&nvtx.Attributes{Message: gemm, Category: 7, Payload: nvtx.Int64(-5)})
	got("dpop", d.Pop())
	got("dpop", d.Pop())
	got("pop", nvtx.Pop())

	// Start/end ranges are not bound to a thread: end them on another one.
	did := d.RangeStart(&nvtx.Attributes{Message: gemm, Category: 7, Payload: nvtx.Uint64(1)})
	gid := nvtx.RangeStart(&nvtx.Attributes{Message: load, Color: nvtx.RGB(1, 2, 3)})
	got("dstart", fmt.Sprintf("%#x", uint64(did)))
	got("start", fmt.Sprintf("%#x", uint64(gid)))
	done := make(chan struct{})
	go func() {
		// The main goroutine holds its locked thread, so this one runs on
		// another.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		nvtx.RangeEnd(gid)
		d.RangeEnd(did)
		close(done)
	}()
	<-done

	got("pop", nvtx.Pop()) // unbalanced: the tool reports an error
	d.Destroy()

	fmt.Println(strings.Join(ret, "\n"))
	return 0
}

// wantRecord is the exact event sequence the recording library must see.
// Thread ids are renamed T0, T1, ... in order of appearance.
var wantRecord = []string{
	"attach tid=T0",
	"initialize tid=T0",
	"name-thread tid=T0 target=T0 name=gpubench-main",
	"name-category tid=T0 dom=- cat=1 name=iteration",
	"register-string tid=T0 dom=- text=forward",

	"push tid=T0 dom=- depth=0 msg=ascii:iteration0 color=ff0000ff cat=1 payload=u64:0",
	"push tid=T0 dom=- depth=1 msg=reg:forward color=ff00c800 cat=0 payload=u64:0",
	"pop tid=T0 dom=- depth=1",
	"push tid=T0 dom=- depth=1 msg=ascii:backward color=80c80000 cat=0 payload=i64:-1",
	"pop tid=T0 dom=- depth=1",
	"mark tid=T0 dom=- depth=1 msg=ascii:sync color=- cat=0 payload=f64:0.5",
	"pop tid=T0 dom=- depth=0",

	"push tid=T0 dom=- depth=0 msg=ascii:iteration1 color=ff0000ff cat=1 payload=u64:1",
	"push tid=T0 dom=- depth=1 msg=reg:forward color=ff00c800 cat=0 payload=u64:1",
	"pop tid=T0 dom=- depth=1",
	"push tid=T0 dom=- depth=1 msg=ascii:backward color=80c80000 cat=0 payload=i64:-2",
	"pop tid=T0 dom=- depth=1",
	"mark tid=T0 dom=- depth=1 msg=ascii:sync color=- cat=0 payload=f64:1.5",
	"pop tid=T0 dom=- depth=0",

	"mark tid=T0 dom=- depth=0 msg=- color=- cat=0 payload=-",
	"mark tid=T0 dom=- depth=0 msg=reg:forward color=- cat=1 payload=-",

	"domain-create tid=T0 dom=gpubench",
	"name-category tid=T0 dom=gpubench cat=7 name=kernels",
	"register-string tid=T0 dom=gpubench text=gemm",
	"push tid=T0 dom=- depth=0 msg=ascii:load color=- cat=0 payload=-",
	"push tid=T0 dom=gpubench depth=0 msg=reg:gemm color=ffff8000 cat=7 payload=u64:42",
	"push tid=T0 dom=gpubench depth=1 msg=reg:gemm color=ffff8000 cat=7 payload=u64:43",
	"mark tid=T0 dom=gpubench depth=2 msg=reg:gemm color=- cat=7 payload=i64:-5",
	"pop tid=T0 dom=gpubench depth=1",
	"pop tid=T0 dom=gpubench depth=0",
	"pop tid=T0 dom=- depth=0",

	"start tid=T0 dom=gpubench id=0x100000001 msg=reg:gemm color=- cat=7 payload=u64:1",
	"start tid=T0 dom=- id=0x100000002 msg=ascii:load color=ff010203 cat=0 payload=-",
	"end tid=T1 dom=- id=0x100000002",
	"end tid=T1 dom=gpubench id=0x100000001",

	"pop-unbalanced tid=T0 dom=-",
	"domain-destroy tid=T0 dom=gpubench",
}

// wantReturned is what the API calls must hand back from the tool.
var wantReturned = []string{
	"push=0", "push=1", "pop=1", "push=1", "pop=1", "pop=0",
	"push=0", "push=1", "pop=1", "push=1", "pop=1", "pop=0",
	"push=0", "dpush=0", "dpush=1", "dpop=1", "dpop=0", "pop=0",
	"dstart=0x100000001", "start=0x100000002",
	"pop=-1",
}

func TestInjectedToolRecordsEvents(t *testing.T) {
	lib := buildInjection(t)
	record := filepath.Join(t.TempDir(), "record.txt")

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		helperEnv+"=1",
		"NVTX_INJECTION64_PATH="+lib,
		"NVTX_RECORD_FILE="+record,
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper process: %v; stderr:\n%s", err, stderr.String())
	}
	raw, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("the injection library was not loaded: %v", err)
	}
	checkLines(t, "recorded events", renameThreads(lines(string(raw))), wantRecord)
	checkLines(t, "returned values", lines(string(stdout)), wantReturned)
}

// checkLines reports every line that differs, so that a dropped payload or
// color shows up with its neighbours.
func checkLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("%s, line %d:\n got: %q\nwant: %q", what, i+1, g, w)
		}
	}
}

// buildInjection compiles testdata/inject.c into a shared library.
func buildInjection(t *testing.T) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	lib := filepath.Join(t.TempDir(), "libnvtxrecord.so")
	cmd := exec.Command(cc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror",
		"-I/usr/local/cuda/include", "-o", lib, filepath.Join("testdata", "inject.c"), "-lpthread")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the injection library: %v\n%s", err, out)
	}
	return lib
}

func lines(s string) []string {
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}

var threadIDField = regexp.MustCompile(`\b(tid|target)=(\d+)`)

// renameThreads replaces kernel thread ids, which differ from run to run,
// with T0, T1, ... in order of first appearance, keeping which events share
// a thread.
func renameThreads(in []string) []string {
	names := map[string]string{}
	out := make([]string, len(in))
	for i, l := range in {
		out[i] = threadIDField.ReplaceAllStringFunc(l, func(m string) string {
			key, id, _ := strings.Cut(m, "=")
			n, ok := names[id]
			if !ok {
				n = "T" + strconv.Itoa(len(names))
				names[id] = n
			}
			return key + "=" + n
		})
	}
	return out
}
