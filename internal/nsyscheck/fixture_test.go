package nsyscheck

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/plan"
	"github.com/gpubench/gpubench/internal/program"
)

// This file builds synthetic Nsight Systems SQLite exports: the tables and
// column names of the real schema (a subset of the columns, in the real
// order), filled with a consistent run that follows a plan.

const (
	fxPID       = 4242
	fxMainTID   = 4242
	fxOtherTID  = 4250
	fxDevice    = 0
	fxStream    = 7
	us          = int64(1000) // ns
	fxAPIDur    = 4 * us      // duration of a launch call
	fxAPIStep   = 10 * us     // one launch call every fxAPIStep
	fxQueue     = 8 * us      // GPU start - launch call start
	fxOpDur     = 6 * us      // GPU duration of every kernel and memset
	fxRangeGap  = 1 * us      // push to first launch, last launch to pop
	fxIterGap   = 200 * us    // between iterations
	fxStartTime = 1000 * us   // first iteration starts at 1 ms
)

func gtid(tid int64) int64 { return fxPID<<24 | tid }

var fxMainThread = gtid(fxMainTID)

// fxRange is an NVTX_EVENTS row.
type fxRange struct {
	name       string
	start, end int64
	tid        int64
	eventType  int64
	registered bool   // text through textId / StringIds
	payload    *int64 // int64Value
	iter       int    // -1 outside any iteration
	path       string // "iteration0", "forward", "backward", "" for others
	open       bool   // end is NULL
}

// fxLaunch is a CUPTI_ACTIVITY_KIND_RUNTIME row and the GPU row it starts.
type fxLaunch struct {
	api               string
	apiStart, apiEnd  int64
	tid               int64
	corr              int64
	kind              plan.OpKind
	kernel            string
	gpuStart, gpuEnd  int64
	bytes             int64
	noAPI             bool // drop the RUNTIME row
	iter              int
	rng               string // planned range the launch is made in
	seq               int    // index in that range's launch sequence
	noGPU             bool   // an API call that starts nothing (cuStreamSynchronize)
	globalPidOverride int64
	// A memcpy's direction and memory kinds (the export's codes).
	copyKind, srcKind, dstKind int64
	// stream is the GPU row's streamId; 0 means fxStream.
	stream int64
	// grid is a kernel's grid (gridX, gridY, gridZ), the plan's.
	grid program.Dim3
}

type fixture struct {
	ranges   []fxRange
	launches []fxLaunch

	noNVTXTable    bool
	noMemsetTable  bool
	noMemcpyTable  bool
	noRuntimeTable bool
	legacyNVTX     bool // NVTX_EVENTS with text only, no enum tables
	registered     bool // all range names through textId
	noBacktrace    bool // no --cudabacktrace copies of launch calls
	noGrids        bool // the kernel table without gridX, gridY, gridZ (other names in their place)
	nextCorr       int64
}

// runFixture builds a capture of iters iterations that follow p exactly,
// shaped like a real export of nsys 2025.3 (see testdata/nsys): the
// iteration ranges carry their index as an int64 payload, and every launch
// call also has a --cudabacktrace copy under its correlationId.
func runFixture(p plan.Plan, iters int) *fixture { return runFixtureFrom(p, 0, iters, false) }

// runFixtureFrom is a capture of iterations first..first+iters-1, as one
// profiler window of a run (--profile-iters, --profile-windows), with the
// NVTX range "profile" around them when profileRange is set.
func runFixtureFrom(p plan.Plan, first, iters int, profileRange bool) *fixture {
	f := &fixture{nextCorr: 100}
	t := fxStartTime
	// Rows that are not ranges and must be ignored.
	f.ranges = append(f.ranges,
		fxRange{name: "gpubench main", start: -200 * us, eventType: 39, tid: fxMainThread, iter: -1, open: true},
		fxRange{name: "gpubench", start: 10 * us, eventType: 75, tid: fxMainThread, iter: -1, open: true},
		fxRange{name: "checkpoint", start: 20 * us, eventType: EventNvtxMark, tid: fxMainThread, iter: -1, open: true},
	)
	f.launches = append(f.launches, fxLaunch{api: "cuProfilerStart", apiStart: t - 40*us, apiEnd: t - 34*us, tid: fxMainThread, corr: f.corr(), noGPU: true, iter: -1})
	if profileRange {
		f.ranges = append(f.ranges, fxRange{name: "profile", start: t - 20*us, tid: fxMainThread, eventType: EventNvtxPushPopRange, iter: -1, path: "profile"})
	}
	for i := first; i < first+iters; i++ {
		n := int64(i)
		it := fxRange{name: plan.IterationName(i), start: t, tid: fxMainThread, eventType: EventNvtxPushPopRange, payload: &n, iter: i, path: "iteration"}
		t += fxRangeGap
		own := 0
		f.emitOps(&t, p.Iteration.Launches(), i, "iteration", &own)
		for _, child := range p.Iteration.Children {
			// A pass, and (--nvtx=layer, op) the ranges inside it, depth
			// first; every launch is labelled with its pass.
			seq := 0
			var emit func(pr plan.Range, path string)
			emit = func(pr plan.Range, path string) {
				r := fxRange{name: pr.Name, start: t, tid: fxMainThread, eventType: EventNvtxPushPopRange, iter: i, path: path}
				t += fxRangeGap
				f.emitOps(&t, pr.Launches(), i, child.Name, &seq)
				for _, c := range pr.Children {
					emit(c, path+"/"+c.Name)
				}
				t += fxRangeGap
				r.end = t
				f.ranges = append(f.ranges, r)
				t += fxRangeGap
			}
			emit(child, child.Name)
		}
		it.end = t
		f.ranges = append(f.ranges, it)
		// A synchronizing call between iterations, which launches nothing.
		f.launches = append(f.launches, fxLaunch{api: "cuStreamSynchronize", apiStart: t + 10*us, apiEnd: t + 100*us, tid: fxMainThread, corr: f.corr(), noGPU: true, iter: -1})
		t += fxIterGap
	}
	if profileRange {
		f.ranges[3].end = t - 1*us
	}
	f.launches = append(f.launches, fxLaunch{api: "cuProfilerStop", apiStart: t, apiEnd: t + 1*us, tid: fxMainThread, corr: f.corr(), noGPU: true, iter: -1})
	return f
}

func (f *fixture) corr() int64 { f.nextCorr++; return f.nextCorr }

// emitOps appends the calls and GPU rows of planned operations ls, made in
// range rng of iteration i from time *t on, as gpubench's executor makes
// them: a launch call and its GPU row for kernels, memsets and memcpys; a
// call alone for synchronisations, allocations and frees; nothing but
// time for host work. seq numbers the GPU operations of the range.
func (f *fixture) emitOps(t *int64, ls []plan.Launch, i int, rng string, seq *int) {
	for _, l := range ls {
		if l.Kind == program.Host {
			*t += int64(config.HostStallTime)
			continue
		}
		fl := fxLaunch{
			api: l.Name, apiStart: *t, apiEnd: *t + fxAPIDur, tid: fxMainThread, corr: f.corr(),
			kind: l.Kind, gpuStart: *t + fxQueue, gpuEnd: *t + fxQueue + fxOpDur,
			iter: i, rng: rng, seq: *seq,
			// The plan's stream 0 is the compute stream; the copy stream
			// gets another id, as CUDA numbers the streams it makes.
			stream: fxStream + 6*int64(l.Stream),
		}
		switch l.Kind {
		case plan.Kernel:
			fl.api, fl.kernel, fl.grid = "cuLaunchKernel", l.Name, l.Grid
		case plan.Memset:
			fl.bytes = l.Bytes
		case program.Memcpy:
			fl.bytes = l.Bytes
			host := int64(MemPageable)
			if l.Host == program.Pinned {
				host = MemPinned
			}
			fl.copyKind, fl.srcKind, fl.dstKind = CopyHtoD, host, MemDevice
			if l.Dir == program.DeviceToHost {
				fl.copyKind, fl.srcKind, fl.dstKind = CopyDtoH, MemDevice, host
			}
		default: // a call alone
			fl.noGPU, fl.seq = true, -1
		}
		if !fl.noGPU {
			*seq++
		}
		f.launches = append(f.launches, fl)
		*t += fxAPIStep
	}
}

// rangeOf returns the range of iteration i at path ("iteration", "forward", ...).
func (f *fixture) rangeOf(tb testing.TB, i int, path string) *fxRange {
	for k := range f.ranges {
		if r := &f.ranges[k]; r.iter == i && r.path == path {
			return r
		}
	}
	tb.Fatalf("fixture has no range %s in iteration %d", path, i)
	return nil
}

// launchesOf returns the indices of iteration i's launches in range rng.
func (f *fixture) launchesOf(i int, rng string) []int {
	var out []int
	for k, l := range f.launches {
		if l.iter == i && l.rng == rng && !l.noGPU {
			out = append(out, k)
		}
	}
	return out
}

// findLaunch returns the index of the n-th (from 0) launch of kernel name
// in range rng of iteration i.
func (f *fixture) findLaunch(tb testing.TB, i int, rng, name string, n int) int {
	for _, k := range f.launchesOf(i, rng) {
		if f.launches[k].kernel == name {
			if n == 0 {
				return k
			}
			n--
		}
	}
	tb.Fatalf("fixture has no launch of %s in iteration%d/%s", name, i, rng)
	return -1
}

func (f *fixture) remove(idx int) {
	f.launches = append(f.launches[:idx], f.launches[idx+1:]...)
}

// removeIteration drops iteration i: its ranges and launches.
func (f *fixture) removeIteration(i int) {
	rs := f.ranges[:0]
	for _, r := range f.ranges {
		if r.iter != i {
			rs = append(rs, r)
		}
	}
	f.ranges = rs
	ls := f.launches[:0]
	for _, l := range f.launches {
		if l.iter != i {
			ls = append(ls, l)
		}
	}
	f.launches = ls
}

// shift moves a range and the launches made in it by d.
func (f *fixture) shift(tb testing.TB, i int, rng string, d int64) {
	r := f.rangeOf(tb, i, rng)
	r.start += d
	r.end += d
	for _, k := range f.launchesOf(i, rng) {
		l := &f.launches[k]
		l.apiStart += d
		l.apiEnd += d
		l.gpuStart += d
		l.gpuEnd += d
	}
}

const fxSchema = `
CREATE TABLE StringIds (id INTEGER NOT NULL PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE ThreadNames (nameId INTEGER NOT NULL, priority INTEGER, globalTid INTEGER);
CREATE TABLE META_DATA_EXPORT (name TEXT NOT NULL, value TEXT);
CREATE TABLE TARGET_INFO_SESSION_START_TIME (utcEpochNs INTEGER, utcTime TEXT, localTime TEXT);
CREATE TABLE ENUM_NSYS_EVENT_TYPE (id INTEGER NOT NULL PRIMARY KEY, name TEXT, label TEXT);
CREATE TABLE ENUM_NSYS_EVENT_CLASS (id INTEGER NOT NULL PRIMARY KEY, name TEXT, label TEXT);
`

const fxNVTX = `
CREATE TABLE NVTX_EVENTS (
	start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL, rangeId INTEGER,
	category INTEGER, color INTEGER, text TEXT, globalTid INTEGER, endGlobalTid INTEGER,
	textId INTEGER, domainId INTEGER, uint64Value INTEGER, int64Value INTEGER,
	doubleValue REAL, uint32Value INTEGER, int32Value INTEGER, floatValue REAL,
	jsonTextId INTEGER, jsonText TEXT, binaryData BLOB);
`

const fxLegacyNVTX = `
CREATE TABLE NVTX_EVENTS (start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL, text TEXT, globalTid INTEGER);
`

const fxRuntime = `
CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (
	start INTEGER NOT NULL, end INTEGER NOT NULL, eventClass INTEGER NOT NULL, globalTid INTEGER,
	correlationId INTEGER, nameId INTEGER NOT NULL, returnValue INTEGER NOT NULL, callchainId INTEGER);
`

const fxKernel = `
CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (
	start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL,
	greenContextId INTEGER, streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER,
	demangledName INTEGER NOT NULL, shortName INTEGER NOT NULL, mangledName INTEGER, launchType INTEGER,
	cacheConfig INTEGER, registersPerThread INTEGER NOT NULL, gridX INTEGER NOT NULL, gridY INTEGER NOT NULL,
	gridZ INTEGER NOT NULL, blockX INTEGER NOT NULL, blockY INTEGER NOT NULL, blockZ INTEGER NOT NULL,
	staticSharedMemory INTEGER NOT NULL, dynamicSharedMemory INTEGER NOT NULL,
	localMemoryPerThread INTEGER NOT NULL, localMemoryTotal INTEGER NOT NULL, gridId INTEGER NOT NULL,
	sharedMemoryExecuted INTEGER, graphNodeId INTEGER, sharedMemoryLimitConfig INTEGER);
`

const fxMemcpy = `
CREATE TABLE CUPTI_ACTIVITY_KIND_MEMCPY (
	start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL,
	greenContextId INTEGER, streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER,
	bytes INTEGER NOT NULL, copyKind INTEGER NOT NULL, deprecatedSrcId INTEGER, srcKind INTEGER, dstKind INTEGER,
	srcDeviceId INTEGER, srcContextId INTEGER, dstDeviceId INTEGER, dstContextId INTEGER, migrationCause INTEGER,
	graphNodeId INTEGER, virtualAddress INTEGER, copyCount INTEGER);
`

const fxMemset = `
CREATE TABLE CUPTI_ACTIVITY_KIND_MEMSET (
	start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL,
	greenContextId INTEGER, streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER,
	value INTEGER NOT NULL, bytes INTEGER NOT NULL, graphNodeId INTEGER, memKind INTEGER);
`

func mustOpen(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// write stores the fixture as an SQLite file and returns its path.
func (f *fixture) write(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "report.sqlite")
	db := mustOpen(tb, path)
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	exec := func(q string, args ...any) {
		tb.Helper()
		if _, err := tx.Exec(q, args...); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	ids := map[string]int64{}
	str := func(s string) int64 {
		if id, ok := ids[s]; ok {
			return id
		}
		id := int64(len(ids) + 1)
		ids[s] = id
		exec(`INSERT INTO StringIds (id, value) VALUES (?, ?)`, id, s)
		return id
	}

	exec(fxSchema)
	exec(`INSERT INTO META_DATA_EXPORT (name, value) VALUES ('EXPORT_SCHEMA_VERSION', '3.28.1')`)
	exec(`INSERT INTO TARGET_INFO_SESSION_START_TIME VALUES (1700000000000000000, '2023-11-14T22:13:20Z', '2023-11-14T22:13:20')`)
	exec(`INSERT INTO ThreadNames (nameId, priority, globalTid) VALUES (?, 0, ?)`, str("gpubench-main"), fxMainThread)
	if !f.legacyNVTX {
		for _, e := range []struct {
			id         int64
			name, text string
		}{{33, "NvtxCategory", "NVTX Category"}, {EventNvtxMark, "NvtxMark", "NVTX Mark"}, {39, "NvtxThread", "NVTX Thread"},
			{EventNvtxPushPopRange, "NvtxPushPopRange", "NVTX PushPop Range"}, {EventNvtxStartEndRange, "NvtxStartEndRange", "NVTX StartEnd Range"},
			{75, "NvtxDomainCreate", "NVTX Domain Create"}} {
			exec(`INSERT INTO ENUM_NSYS_EVENT_TYPE VALUES (?, ?, ?)`, e.id, e.name, e.text)
		}
		exec(`INSERT INTO ENUM_NSYS_EVENT_CLASS VALUES (0, 'TRACE_PROCESS_EVENT_CUDA_RUNTIME', 'CUDA runtime'),
			(1, 'TRACE_PROCESS_EVENT_CUDA_DRIVER', 'CUDA driver'), (67, 'TRACE_PROCESS_EVENT_CUDABACKTRACE', 'CUDA backtrace')`)
	}

	if !f.noNVTXTable {
		if f.legacyNVTX {
			exec(fxLegacyNVTX)
		} else {
			exec(fxNVTX)
		}
		for _, r := range f.ranges {
			var end any = r.end
			if r.open {
				end = nil
			}
			switch {
			case f.legacyNVTX:
				exec(`INSERT INTO NVTX_EVENTS (start, end, eventType, text, globalTid) VALUES (?, ?, ?, ?, ?)`, r.start, end, r.eventType, r.name, r.tid)
			case r.registered || f.registered:
				exec(`INSERT INTO NVTX_EVENTS (start, end, eventType, textId, globalTid, domainId, int64Value) VALUES (?, ?, ?, ?, ?, 0, ?)`,
					r.start, end, r.eventType, str(r.name), r.tid, r.payload)
			default:
				exec(`INSERT INTO NVTX_EVENTS (start, end, eventType, text, globalTid, domainId, int64Value) VALUES (?, ?, ?, ?, ?, 0, ?)`,
					r.start, end, r.eventType, r.name, r.tid, r.payload)
			}
		}
	}

	if !f.noRuntimeTable {
		exec(fxRuntime)
	}
	if f.noGrids {
		exec(strings.NewReplacer("gridX", "gX", "gridY", "gY", "gridZ", "gZ").Replace(fxKernel))
	} else {
		exec(fxKernel)
	}
	if !f.noMemsetTable {
		exec(fxMemset)
	}
	if !f.noMemcpyTable {
		exec(fxMemcpy)
	}
	callchain := 0
	for _, l := range f.launches {
		if !l.noAPI && !f.noRuntimeTable {
			if !l.noGPU && !f.noBacktrace {
				exec(`INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?, ?, 67, ?, ?, ?, 0, ?)`, l.apiStart-100, l.apiEnd+100, l.tid, l.corr, str(l.api), callchain)
				callchain++
			}
			// CUPTI records a runtime call (event class 0) under its
			// entry point's versioned name, a driver call (1) as is.
			class, name := 1, l.api
			if strings.HasPrefix(name, "cuda") {
				class, name = 0, name+"_v3020"
			}
			exec(`INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?, ?, ?, ?, ?, ?, 0, NULL)`, l.apiStart, l.apiEnd, class, l.tid, l.corr, str(name))
		}
		if l.noGPU {
			continue
		}
		pid := int64(fxPID << 24)
		if l.globalPidOverride != 0 {
			pid = l.globalPidOverride
		}
		stream := l.stream
		if stream == 0 {
			stream = fxStream
		}
		switch l.kind {
		case plan.Kernel:
			g := l.grid
			if g == (program.Dim3{}) {
				g = program.D1(8) // a launch made by hand in a test
			}
			exec(`INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (?, ?, ?, 1, NULL, ?, ?, ?, ?, ?, ?, 0, 0, 32, ?, ?, ?, 128, 1, 1, 0, 0, 0, 0, ?, NULL, NULL, NULL)`,
				l.gpuStart, l.gpuEnd, fxDevice, stream, l.corr, pid, str(l.kernel), str(l.kernel), str(l.kernel), g.X, g.Y, g.Z, l.corr)
		case plan.Memset:
			if !f.noMemsetTable {
				exec(`INSERT INTO CUPTI_ACTIVITY_KIND_MEMSET VALUES (?, ?, ?, 1, NULL, ?, ?, ?, 0, ?, NULL, 1)`,
					l.gpuStart, l.gpuEnd, fxDevice, stream, l.corr, pid, l.bytes)
			}
		case program.Memcpy:
			if !f.noMemcpyTable {
				exec(`INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY VALUES (?, ?, ?, 1, 0, ?, ?, ?, ?, ?, NULL, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1)`,
					l.gpuStart, l.gpuEnd, fxDevice, stream, l.corr, pid, l.bytes, l.copyKind, l.srcKind, l.dstKind)
			}
		default:
			panic(fmt.Sprintf("launch kind %q", l.kind))
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return path
}
