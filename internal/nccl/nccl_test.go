package nccl

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"math"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// TestLoad checks what Load gives on this machine: on CI, which has no
// NCCL, one line naming libnccl.so.2 and the loader's reason, the same
// every time; where NCCL is installed, a version 2.
func TestLoad(t *testing.T) {
	lib, err := Load()
	lib2, err2 := Load()
	if lib != lib2 || err != err2 {
		t.Errorf("Load is not memoized: (%p, %v) then (%p, %v)", lib, err, lib2, err2)
	}
	if err != nil {
		msg := err.Error()
		if !strings.Contains(msg, "libnccl.so.2") || strings.Contains(msg, "\n") {
			t.Errorf("Load's error %q: want one line naming libnccl.so.2", msg)
		}
		t.Logf("no NCCL here: %v", err)
		return
	}
	v, err := lib.Version()
	if err != nil {
		t.Fatal(err)
	}
	if v.Major != 2 {
		t.Errorf("%s: version %v, want 2.x", lib.Name(), v)
	}
	t.Logf("%s: NCCL %v", lib.Name(), v)
}

func TestOpenNamesEveryLibraryTried(t *testing.T) {
	_, err := open([]string{"/nonexistent/libnccl.so.2", "/nonexistent/libnccl.so"})
	if err == nil {
		t.Fatal("open of missing libraries succeeded")
	}
	for _, want := range []string{"load NCCL: /nonexistent/libnccl.so.2: ", "also tried /nonexistent/libnccl.so: ", "No such file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestOpenWithoutTheCalls loads a library that is not NCCL: the calls it
// lacks fail Load, not a step.
func TestOpenWithoutTheCalls(t *testing.T) {
	_, err := open([]string{"libc.so.6"})
	if err == nil || !strings.Contains(err.Error(), "libc.so.6 has no ncclGetVersion") {
		t.Fatalf("open(libc.so.6): %v, want it to name the first missing call", err)
	}
}

// fakeLib builds testdata/fakenccl.c into a shared library and opens it.
func fakeLib(t *testing.T) *Lib {
	t.Helper()
	cc := "cc"
	if out, err := exec.Command("go", "env", "CC").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		cc = strings.Fields(string(out))[0]
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("no C compiler (%s) to build the fake NCCL", cc)
	}
	so := filepath.Join(t.TempDir(), "libfakenccl.so")
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", so, filepath.Join("testdata", "fakenccl.c")).CombinedOutput(); err != nil {
		t.Fatalf("build the fake NCCL: %v\n%s", err, out)
	}
	l, err := open([]string{so})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// hostMemory is memory outside Go's heap, which the fake all-reduce reads
// and writes in place of device memory.
func hostMemory(t *testing.T, n int) []byte {
	t.Helper()
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(b) })
	return b
}

func TestFakeLibrary(t *testing.T) {
	l := fakeLib(t)
	v, err := l.Version()
	if err != nil || v != (Version{2, 28, 3}) {
		t.Errorf("Version: %v, %v; want 2.28.3", v, err)
	}

	id, err := l.UniqueID()
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range id {
		if b != byte(i^0x5a) {
			t.Fatalf("UniqueID byte %d: %#x, want %#x", i, b, i^0x5a)
		}
	}
	// The id reaches ncclCommInitRank by value, every byte intact; the
	// fake refuses any other.
	comm, err := l.CommInitRank(2, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	if comm.Rank() != 1 || comm.World() != 2 {
		t.Errorf("comm: rank %d of %d, want 1 of 2", comm.Rank(), comm.World())
	}
	bad := id
	bad[127] ^= 1
	_, err = l.CommInitRank(2, bad, 0)
	var ne *Error
	if !errors.As(err, &ne) || ne.Code != InvalidArgument {
		t.Fatalf("CommInitRank of a changed id: %v, want ncclInvalidArgument", err)
	}
	want := "ncclCommInitRank(rank 0 of 2): fake: invalid argument (ncclInvalidArgument): fake: the unique id arrived changed"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}

	// Three floats summed over a world of two identical ranks, in place
	// and not; the stream argument is the fake's launch counter.
	mem := hostMemory(t, 4096)
	send := unsafe.Slice((*float32)(unsafe.Pointer(&mem[0])), 3)
	recv := unsafe.Slice((*float32)(unsafe.Pointer(&mem[64])), 3)
	launches := (*int64)(unsafe.Pointer(&mem[128]))
	copy(send, []float32{1, -2.5, 3})
	addr := func(p unsafe.Pointer) uintptr { return uintptr(p) }
	if err := l.GroupStart(); err != nil {
		t.Fatal(err)
	}
	if err := comm.AllReduce(addr(unsafe.Pointer(&send[0])), addr(unsafe.Pointer(&recv[0])), 3, Float32, Sum, addr(unsafe.Pointer(launches))); err != nil {
		t.Fatal(err)
	}
	if err := comm.AllReduce(addr(unsafe.Pointer(&send[0])), addr(unsafe.Pointer(&send[0])), 2, Float32, Sum, addr(unsafe.Pointer(launches))); err != nil {
		t.Fatal(err)
	}
	if err := l.GroupEnd(); err != nil {
		t.Fatal(err)
	}
	if got, want := recv, []float32{2, -5, 6}; !equal(got, want) {
		t.Errorf("out-of-place all-reduce: %v, want %v", got, want)
	}
	if got, want := send, []float32{2, -5, 3}; !equal(got, want) {
		t.Errorf("in-place all-reduce of 2: %v, want %v", got, want)
	}
	copy(recv, []float32{7, 7, 7})
	if err := comm.AllReduce(addr(unsafe.Pointer(&send[0])), addr(unsafe.Pointer(&recv[0])), 3, Float32, Avg, addr(unsafe.Pointer(launches))); err != nil {
		t.Fatal(err)
	}
	if got, want := recv, []float32{2, -5, 3}; !equal(got, want) {
		t.Errorf("average all-reduce: %v, want %v", got, want)
	}
	if *launches != 3 {
		t.Errorf("the stream saw %d all-reduces, want 3", *launches)
	}

	err = comm.AllReduce(addr(unsafe.Pointer(&send[0])), addr(unsafe.Pointer(&recv[0])), 3, BFloat16, Sum, addr(unsafe.Pointer(launches)))
	if !errors.As(err, &ne) || ne.Code != InvalidArgument || !strings.HasPrefix(err.Error(), "ncclAllReduce(3 bfloat16, sum): ") {
		t.Errorf("bf16 all-reduce in the fake: %v, want ncclInvalidArgument naming the call", err)
	}
	if err := comm.AllReduce(0, 0, -1, Float32, Sum, 0); err == nil {
		t.Error("AllReduce of -1 elements succeeded")
	}
	err = l.GroupEnd()
	if !errors.As(err, &ne) || ne.Code != InvalidUsage || !strings.Contains(err.Error(), "ncclGroupEnd: fake: invalid usage") {
		t.Errorf("ncclGroupEnd without a start: %v, want ncclInvalidUsage", err)
	}
	if err := comm.Destroy(); err != nil {
		t.Error(err)
	}

	for _, r := range []struct{ rank, world int }{{-1, 2}, {2, 2}, {0, 0}} {
		if _, err := l.CommInitRank(r.world, id, r.rank); err == nil {
			t.Errorf("CommInitRank(rank %d of %d) succeeded", r.rank, r.world)
		}
	}
	comm, err = l.CommInitRank(1, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := comm.Abort(); err != nil {
		t.Error(err)
	}
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestUniqueIDText(t *testing.T) {
	var id UniqueID
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	s := id.String()
	if len(s) != 256 || strings.ContainsAny(s, " \n\t") {
		t.Fatalf("text form %q: want 256 characters without spaces", s)
	}
	back, err := ParseUniqueID(s)
	if err != nil || back != id {
		t.Fatalf("ParseUniqueID(String()): %v, %v", back == id, err)
	}
	// As a TextMarshaler, inside JSON.
	b, err := json.Marshal(map[string]UniqueID{"id": id})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]UniqueID
	if err := json.Unmarshal(b, &m); err != nil || m["id"] != id {
		t.Fatalf("JSON round trip: %v", err)
	}

	for _, c := range []struct{ name, text, want string }{
		{"empty", "", "0 characters, want 256 hex digits"},
		{"short", s[:254], "254 characters"},
		{"long", s + "00", "258 characters"},
		{"not hex", "zz" + s[2:], "invalid byte"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := id
			err := id.UnmarshalText([]byte(c.text))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("UnmarshalText: %v, want an error with %q", err, c.want)
			}
			if id != before {
				t.Error("a failed UnmarshalText changed the id")
			}
		})
	}
}

func TestVersionOf(t *testing.T) {
	for _, c := range []struct {
		code int
		want Version
	}{
		{2000, Version{2, 0, 0}},
		{2408, Version{2, 4, 8}},
		{2804, Version{2, 8, 4}},
		{20903, Version{2, 9, 3}},
		{21003, Version{2, 10, 3}},
		{22803, Version{2, 28, 3}},
	} {
		if got := VersionOf(c.code); got != c.want {
			t.Errorf("VersionOf(%d) = %v, want %v", c.code, got, c.want)
		}
	}
	if v := (Version{2, 28, 3}); !v.AtLeast(2, 10) || !v.AtLeast(2, 28) || v.AtLeast(2, 29) || v.AtLeast(3, 0) {
		t.Errorf("%v.AtLeast is wrong", v)
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{Float32.String(), "float32"},
		{BFloat16.String(), "bfloat16"},
		{DataType(2).String(), "ncclDataType(2)"},
		{Sum.String(), "sum"},
		{Avg.String(), "avg"},
		{RedOp(3).String(), "ncclRedOp(3)"},
		{SystemError.String(), "ncclSystemError"},
		{Timeout.String(), "ncclTimeout"},
		{Result(42).String(), "ncclResult(42)"},
		{(&Error{Op: "ncclGroupEnd", Code: RemoteError}).Error(), "ncclGroupEnd: ncclRemoteError"},
		{(&Error{Op: "ncclCommInitRank(rank 1 of 2)", Code: SystemError, Msg: "unhandled system error", Detail: "socket: connection refused"}).Error(),
			"ncclCommInitRank(rank 1 of 2): unhandled system error (ncclSystemError): socket: connection refused"},
		{(&Error{Op: "x", Code: InternalError, Msg: "m", Detail: "m"}).Error(), "x: m (ncclInternalError)"},
	} {
		if c.got != c.want {
			t.Errorf("%q, want %q", c.got, c.want)
		}
	}
	if Float32.Size() != 4 || BFloat16.Size() != 2 || DataType(0).Size() != 0 {
		t.Error("DataType.Size is wrong")
	}
}

// TestNeedsNoDriver keeps this package off gorgonia.org/cu, whose init
// exits where cuInit fails, so that it is tested on CI.
func TestNeedsNoDriver(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	var bad []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "gorgonia.org/cu") || strings.HasPrefix(p, "github.com/gpubench/gpubench/") && p != "github.com/gpubench/gpubench/internal/nccl" {
			bad = append(bad, p)
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("package nccl depends on %s", strings.Join(bad, ", "))
	}
}
