// Package nsyscheck checks an Nsight Systems report of a gpubench run
// against the run's plan: the NVTX ranges of each iteration, the kernels and
// memsets launched inside each range, and that nothing ran outside them. It
// also measures per-range GPU time, idle gaps and launch overhead.
//
// It reads the SQLite file `nsys export --type sqlite` writes, through the
// pure-Go modernc.org/sqlite driver, read-only. The tables and columns it
// uses are those of the Nsight Systems SQLite schema reference:
//
//   - NVTX_EVENTS: start, end, eventType (59 NvtxPushPopRange, 60
//     NvtxStartEndRange, resolved by name through ENUM_NSYS_EVENT_TYPE when
//     that table is there), text, or textId referencing StringIds for
//     registered strings, globalTid, and the payload columns int64Value,
//     uint64Value, int32Value, uint32Value.
//   - CUPTI_ACTIVITY_KIND_RUNTIME: the CUDA runtime and driver API calls,
//     cuLaunchKernel and cuMemsetD32Async among them: start, end, globalTid,
//     correlationId, nameId referencing StringIds, eventClass. With
//     --cudabacktrace=true each launch call appears twice under one
//     correlationId, the second copy with eventClass
//     TRACE_PROCESS_EVENT_CUDABACKTRACE (67, looked up in
//     ENUM_NSYS_EVENT_CLASS) and a slightly wider span; the copy is ignored.
//   - CUPTI_ACTIVITY_KIND_KERNEL: start, end, correlationId, globalPid,
//     shortName (else demangledName, else mangledName) referencing
//     StringIds, deviceId, streamId, and gridX, gridY, gridZ where present
//     (the grids low-occupancy's signature reads).
//   - CUPTI_ACTIVITY_KIND_MEMSET: start, end, correlationId, globalPid,
//     bytes, deviceId, streamId.
//   - CUPTI_ACTIVITY_KIND_MEMCPY: the same, with copyKind (1 host to
//     device, 2 device to host) and srcKind, dstKind in nsys's own
//     ENUM_CUDA_MEM_KIND numbering (0 pageable, 1 pinned, 2 device). The
//     copies outside the iteration ranges (the run loop's inputs and loss)
//     are not checked; those inside are a planted flaw's.
//   - Every API call of CUPTI_ACTIVITY_KIND_RUNTIME, launch or not (Trace.
//     Calls): the synchronisations, allocations and frees a flaw plants.
//   - StringIds(id, value), ThreadNames(nameId, globalTid) and
//     META_DATA_EXPORT(name, value) where present; META_DATA_EXPORT's
//     EXPORT_PRODUCT_VERSION and EXPORT_SCHEMA_VERSION name the nsys that
//     wrote the file.
//
// Checked against a real export of nsys 2025.3.2 (schema 3.20.3) in
// testdata/nsys. Tables are created lazily by the exporter, so any of them
// may be missing (no CUPTI_ACTIVITY_KIND_MEMSET table means no memsets);
// columns are looked up with PRAGMA table_info and optional ones are
// skipped; a missing column that is needed is refused with the columns
// found and the nsys version. The file is untrusted: see untrusted.go for
// how any input is read in bounded time and memory, or refused in one
// line. Timestamps are nanoseconds on the report's timeline. A globalTid
// packs the process and thread ids: PID = globalTid / 0x1000000 % 0x1000000,
// TID = globalTid % 0x1000000; globalPid is the same with TID 0.
package nsyscheck

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gpubench/gpubench/internal/plan"
	"github.com/gpubench/gpubench/internal/program"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// Table names of the Nsight Systems SQLite export.
const (
	tableNVTX       = "NVTX_EVENTS"
	tableRuntime    = "CUPTI_ACTIVITY_KIND_RUNTIME"
	tableKernel     = "CUPTI_ACTIVITY_KIND_KERNEL"
	tableMemset     = "CUPTI_ACTIVITY_KIND_MEMSET"
	tableMemcpy     = "CUPTI_ACTIVITY_KIND_MEMCPY"
	tableGraph      = "CUPTI_ACTIVITY_KIND_GRAPH_TRACE"
	tableStrings    = "StringIds"
	tableThreads    = "ThreadNames"
	tableEventType  = "ENUM_NSYS_EVENT_TYPE"
	tableEventClass = "ENUM_NSYS_EVENT_CLASS"
	tableMeta       = "META_DATA_EXPORT"
)

// NVTX event types (ENUM_NSYS_EVENT_TYPE ids), used when the export has no
// enum table to look them up in.
const (
	EventNvtxMark          = 34
	EventNvtxPushPopRange  = 59
	EventNvtxStartEndRange = 60
)

// Range is one NVTX range.
type Range struct {
	Name       string
	Start, End int64 // ns
	Thread     int64 // globalTid of the thread that opened the range
	EventType  int64
}

// Contains reports whether t lies in the range's span, ends included.
func (r Range) Contains(t int64) bool { return r.Start <= t && t <= r.End }

// GPUOp is a kernel, memset, memcpy or graph launch as the GPU ran it.
type GPUOp struct {
	Kind          plan.OpKind
	Name          string // kernel name; empty for memsets
	Start, End    int64  // ns
	CorrelationID int64
	GlobalPid     int64 // 0 when the export has none
	Device        int64
	Stream        int64
	Bytes         int64 // memsets and memcpys
	// A memcpy's direction (CUPTI copyKind: CopyHtoD, CopyDtoH) and the
	// kinds of memory on its two sides (CUPTI srcKind, dstKind:
	// MemPageable, MemPinned, ...).
	CopyKind, SrcKind, DstKind int64
	// Grid is a kernel's grid (gridX, gridY, gridZ); zero where the
	// export has not got the columns (Trace.KernelGrids).
	Grid program.Dim3
}

// Blocks is the kernel's grid size, gridX·gridY·gridZ.
func (o GPUOp) Blocks() int64 { return int64(o.Grid.X) * int64(o.Grid.Y) * int64(o.Grid.Z) }

// The export's codes for a memcpy's direction (ENUM_CUDA_MEMCPY_OPER) and
// its memory (ENUM_CUDA_MEM_KIND: nsys's own numbering, which is not
// CUPTI's), as nsys 2025.3 writes them (testdata/nsys).
const (
	CopyHtoD    = 1 // CUDA_MEMCPY_KIND_HTOD
	CopyDtoH    = 2 // CUDA_MEMCPY_KIND_DTOH
	MemPageable = 0 // CUDA_MEMOPR_MEMORY_KIND_PAGEABLE
	MemPinned   = 1 // CUDA_MEMOPR_MEMORY_KIND_PINNED
	MemDevice   = 2 // CUDA_MEMOPR_MEMORY_KIND_DEVICE
)

// memoryKind names a CUPTI memory kind for messages.
func memoryKind(k int64) string {
	switch k {
	case MemPageable:
		return "pageable"
	case MemPinned:
		return "pinned"
	case MemDevice:
		return "device"
	}
	return fmt.Sprintf("memory kind %d", k)
}

// Duration is End - Start in ns.
func (o GPUOp) Duration() int64 { return o.End - o.Start }

// Describe names the op for messages: "kernel gelu_forward" or
// "memset of 4096 bytes".
func (o GPUOp) Describe() string {
	switch o.Kind {
	case plan.Memset:
		return fmt.Sprintf("memset of %d bytes", o.Bytes)
	case plan.Graph:
		return "graph launch " + o.Name
	case program.Memcpy:
		dir := fmt.Sprintf("copy kind %d", o.CopyKind)
		switch o.CopyKind {
		case CopyHtoD:
			dir = "host-to-device from " + memoryKind(o.SrcKind)
		case CopyDtoH:
			dir = "device-to-host to " + memoryKind(o.DstKind)
		}
		return fmt.Sprintf("memcpy of %d bytes %s memory", o.Bytes, dir)
	}
	return "kernel " + o.Name
}

// Launch is a CUDA API call (cuLaunchKernel, cuMemsetD32Async, ...) and the
// GPU operation it started, matched by correlationId within one process.
type Launch struct {
	API        string // the call's name, e.g. "cuLaunchKernel"
	Start, End int64  // ns, of the call on the CPU
	Thread     int64  // globalTid
	Op         GPUOp
}

// QueueDelay is the time from the start of the API call to the start of the
// operation on the GPU, in ns.
func (l Launch) QueueDelay() int64 { return l.Op.Start - l.Start }

// Trace is what nsyscheck reads from an export.
type Trace struct {
	Path string
	// SchemaVersion is META_DATA_EXPORT's EXPORT_SCHEMA_VERSION, if any.
	SchemaVersion string
	// NsysVersion is META_DATA_EXPORT's EXPORT_PRODUCT_VERSION, the
	// version of the nsys that exported the file ("2025.3.2.0"), if any.
	NsysVersion string
	// Ranges are the NVTX ranges (push/pop and start/end) that ended, by
	// start time.
	Ranges []Range
	// OpenRanges counts the NVTX ranges that had not ended when the
	// capture stopped; they are not in Ranges.
	OpenRanges int
	// NVTXTable reports whether the export has an NVTX_EVENTS table.
	NVTXTable bool
	// Launches are the GPU operations matched to their API call, by the
	// call's start time.
	Launches []Launch
	// Unlaunched are GPU operations with no matching API call, by start.
	Unlaunched []GPUOp
	// APITable, KernelTable and MemsetTable report which CUPTI tables the
	// export has; the exporter creates tables only for data it holds.
	APITable, KernelTable, MemsetTable bool
	// KernelGrids reports that the kernel table has gridX, gridY and
	// gridZ, so that GPUOp.Grid holds each kernel's grid.
	KernelGrids bool
	// GraphTable reports whole-graph records: nsys's default
	// --cuda-graph-trace=graph shows each graph launch as one operation
	// and none of its nodes.
	GraphTable bool
	// ThreadNames maps a globalTid to its name, where the export has one.
	ThreadNames map[int64]string
	// Calls are every CUDA API call (but the --cudabacktrace copies), by
	// start: the synchronisations, allocations and copies a flaw plants
	// are calls, some of which start no GPU operation.
	Calls []APICall
	// MemcpyTable reports whether the export has a memcpy table.
	MemcpyTable bool
}

// hasGPUWork reports whether the capture holds any kernel, memset or graph
// launch (memcpys alone are the run loop's reads of the loss).
func (t *Trace) hasGPUWork() bool {
	for _, l := range t.Launches {
		if l.Op.Kind != program.Memcpy {
			return true
		}
	}
	for _, op := range t.Unlaunched {
		if op.Kind != program.Memcpy {
			return true
		}
	}
	return false
}

// APICall is one CUDA runtime or driver API call.
type APICall struct {
	Name       string
	Start, End int64 // ns
	Thread     int64 // globalTid
}

// ThreadLabel formats a globalTid for messages: "tid 4242 (pid 4240, main)".
func (t *Trace) ThreadLabel(gtid int64) string {
	s := fmt.Sprintf("tid %d (pid %d", TID(gtid), PID(gtid))
	if n := t.ThreadNames[gtid]; n != "" {
		s += ", " + n
	}
	return s + ")"
}

// PID is the process id packed in a globalTid or globalPid.
func PID(global int64) int64 { return int64(uint64(global) >> 24 & 0xFFFFFF) }

// TID is the thread id packed in a globalTid.
func TID(global int64) int64 { return int64(uint64(global) & 0xFFFFFF) }

// sameProcess compares the process parts (hardware, VM and PID) of two
// global ids.
func sameProcess(a, b int64) bool { return uint64(a)>>24 == uint64(b)>>24 }

// Load reads the parts of an `nsys export --type sqlite` file that the
// checks use. It opens the file read-only and never creates it. Its error
// is one line that starts with the path and says what is wrong with the
// file.
func Load(path string) (*Trace, error) {
	t, err := load(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

func load(path string) (*Trace, error) {
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	db, conn, err := open(ctx, path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	defer conn.Close()

	l := &loader{ctx: ctx, conn: conn, cols: map[string]map[string]bool{}, strings: map[int64]string{}}
	if err := l.readTables(); err != nil {
		return nil, err
	}
	t := &Trace{
		Path:        path,
		NVTXTable:   l.has(tableNVTX),
		APITable:    l.has(tableRuntime),
		KernelTable: l.has(tableKernel),
		MemsetTable: l.has(tableMemset),
		GraphTable:  l.has(tableGraph),
		MemcpyTable: l.has(tableMemcpy),
		ThreadNames: map[int64]string{},
	}
	l.meta(t)
	steps := []func() error{l.readRanges, l.readOps, l.readCalls, l.readThreads, l.readStrings}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := l.build(t); err != nil {
		return nil, err
	}
	return t, nil
}

// open opens path read-only. A plain file name would make the driver open
// (and create) it read-write, so it is passed as a file: URI with mode=ro.
// The schema may not call functions that have side effects
// (trusted_schema off), and SQLite loads no value over maxValue bytes.
func open(ctx context.Context, path string) (*sql.DB, *sql.Conn, error) {
	st, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path starts the message already
		}
		return nil, nil, err
	}
	if st.IsDir() {
		return nil, nil, fmt.Errorf("is a directory, not an nsys SQLite export (%s)", exportHint)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("is not a regular file, not an nsys SQLite export (%s)", exportHint)
	}
	if err := sniff(path, st.Size()); err != nil {
		return nil, nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, err
	}
	q := url.Values{"mode": {"ro"}, "_pragma": {"trusted_schema(0)", "cell_size_check(1)"}}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("opening it: %s (is it an SQLite file from nsys export --type sqlite?)", describeSQLite(err))
	}
	if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_LENGTH, maxValue); err != nil {
		conn.Close()
		db.Close()
		return nil, nil, err
	}
	return db, conn, nil
}

type loader struct {
	ctx  context.Context
	conn *sql.Conn
	// kernelGrids: the kernel table has the grid columns (Trace.KernelGrids).
	kernelGrids bool
	// tables maps each table and view of the file to its type in
	// PRAGMA table_list: table, view, virtual or shadow.
	tables map[string]string
	cols   map[string]map[string]bool
	// version names the nsys that wrote the file, for messages.
	version string

	names   names
	strings map[int64]string // the StringIds wanted, by id: filled by readStrings

	// What readRanges, readOps, readCalls and readThreads found, with the
	// StringIds their names refer to; build resolves them.
	ranges  []rawRange
	open    int
	ops     []GPUOp
	opNames []int64 // per op: the StringIds id of its name, or noName
	calls   []*apiCall
	threads []rawThread
}

// noName marks a name that refers to no StringIds row.
const noName = -1 << 63

type rawRange struct {
	Range
	text       string // the explicit text, if hasText
	hasText    bool
	textID     int64 // the registered string, when !hasText
	payload    int64
	hasPayload bool
}

type rawThread struct{ tid, nameID int64 }

// has reports whether the file has a plain table called name.
func (l *loader) has(name string) bool { return l.tables[name] == "table" }

// readTables lists the tables and refuses a file that is no export:
// one without any table the checks read, or where one of them is not a
// plain table.
func (l *loader) readTables() error {
	rows, err := l.conn.QueryContext(l.ctx, `SELECT type, name FROM pragma_table_list WHERE schema = 'main'`)
	if err != nil {
		return fmt.Errorf("%s (is it an SQLite file from nsys export --type sqlite?)", describeSQLite(err))
	}
	defer rows.Close()
	l.tables = map[string]string{}
	for rows.Next() {
		var typ, name string
		if err := rows.Scan(&typ, &name); err != nil {
			return fmt.Errorf("%s (is it an SQLite file from nsys export --type sqlite?)", describeSQLite(err))
		}
		if int64(len(l.tables)) < maxRows {
			l.tables[name] = typ
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s (is it an SQLite file from nsys export --type sqlite?)", describeSQLite(err))
	}
	for _, name := range []string{tableNVTX, tableRuntime, tableKernel, tableMemset, tableMemcpy, tableGraph, tableStrings, tableThreads,
		tableEventType, tableEventClass, tableMeta} {
		if typ, ok := l.tables[name]; ok && typ != "table" {
			return fmt.Errorf("%s is a %s, not a table: not an Nsight Systems SQLite export (%s)", name, typ, exportHint)
		}
	}
	if !l.has(tableNVTX) && !l.has(tableKernel) && !l.has(tableRuntime) && !l.has(tableStrings) {
		return fmt.Errorf("not an Nsight Systems SQLite export: it has none of the tables %s, %s, %s, %s (%s; %s)",
			tableNVTX, tableKernel, tableRuntime, tableStrings, l.foundTables(), exportHint)
	}
	return nil
}

// foundTables lists some of the file's tables, for messages.
func (l *loader) foundTables() string {
	var found []string
	for name := range l.tables {
		if !strings.HasPrefix(name, "sqlite_") {
			found = append(found, short(name))
		}
	}
	if len(found) == 0 {
		return "it has no tables at all"
	}
	sort.Strings(found)
	return "its tables: " + list(found, 6)
}

// list joins at most n of names, saying how many more there are.
func list(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// columns returns the column names of table; nil when there is no table.
// Generated columns are not listed (PRAGMA table_info leaves them out), so
// nothing that computes a value is ever read.
func (l *loader) columns(table string) (map[string]bool, error) {
	if !l.has(table) {
		return nil, nil
	}
	if c, ok := l.cols[table]; ok {
		return c, nil
	}
	rows, err := l.conn.QueryContext(l.ctx, `SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %s", table, describeSQLite(err))
	}
	defer rows.Close()
	set := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("reading the columns of %s: %s", table, describeSQLite(err))
		}
		set[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %s", table, describeSQLite(err))
	}
	l.cols[table] = set
	return set, nil
}

// need checks that table has all the columns.
func (l *loader) need(table string, cols ...string) (map[string]bool, error) {
	have, err := l.columns(table)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, c := range cols {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		var found []string
		for c := range have {
			found = append(found, short(c))
		}
		sort.Strings(found)
		return nil, l.schemaError("table %s lacks column(s) %s (it has %s)", table, strings.Join(missing, ", "), list(found, 12))
	}
	return have, nil
}

// checkedWith is the nsys whose exports gpubench check was checked against
// (testdata/nsys).
const checkedWith = "nsys 2025.3 (export schema 3.20.3)"

// schemaError reports a schema that gpubench check cannot read, with the
// nsys version that wrote it and the one expected.
func (l *loader) schemaError(format string, args ...any) error {
	found := "the export names no nsys version (it has no " + tableMeta + " table)"
	if l.has(tableMeta) {
		found = "the export names no nsys version in " + tableMeta
	}
	if l.version != "" {
		found = "written by " + l.version
	}
	return fmt.Errorf("%s: %s; gpubench check reads the schema of %s", fmt.Sprintf(format, args...), found, checkedWith)
}

func (l *loader) hasStrings() bool {
	c, _ := l.columns(tableStrings)
	return c["id"] && c["value"]
}

// meta reads the versions from META_DATA_EXPORT. They only label the
// report, so a damaged table leaves them unknown.
func (l *loader) meta(t *Trace) {
	if c, _ := l.columns(tableMeta); !c["name"] || !c["value"] {
		return
	}
	_ = l.scan(tableMeta, []column{textCol("name"), textCol("value")}, func(r *row) error {
		name, _, err := r.text(0)
		if err != nil {
			return nil
		}
		value, ok, err := r.text(1)
		if err != nil || !ok || len(value) > 64 {
			return nil
		}
		switch name {
		case "EXPORT_SCHEMA_VERSION":
			t.SchemaVersion = printable(value)
		case "EXPORT_PRODUCT_VERSION":
			t.NsysVersion = printable(value)
		}
		return nil
	})
	switch {
	case t.NsysVersion != "" && t.SchemaVersion != "":
		l.version = fmt.Sprintf("nsys %s (export schema %s)", t.NsysVersion, t.SchemaVersion)
	case t.NsysVersion != "":
		l.version = "nsys " + t.NsysVersion
	case t.SchemaVersion != "":
		l.version = "an nsys with export schema " + t.SchemaVersion
	}
}

// enumIDs returns the ids of table's rows (an ENUM_NSYS_* table) with the
// given names, nil when the table is missing or unreadable.
func (l *loader) enumIDs(table string, names ...string) []int64 {
	if c, _ := l.columns(table); !c["id"] || !c["name"] {
		return nil
	}
	var ids []int64
	err := l.scan(table, []column{intCol("id"), textCol("name")}, func(r *row) error {
		id, ok, err := r.int(0)
		name, _, err2 := r.text(1)
		if err == nil && err2 == nil && ok {
			for _, n := range names {
				if name == n {
					ids = append(ids, id)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil
	}
	return ids
}

func (l *loader) readRanges() error {
	if !l.has(tableNVTX) {
		return nil
	}
	c, err := l.need(tableNVTX, "start", "end")
	if err != nil {
		return err
	}
	byText, byID := c["text"], c["textId"] && l.hasStrings()
	if !byText && !byID {
		return l.schemaError("table %s has neither a text nor a textId column", tableNVTX)
	}
	types := []int64{EventNvtxPushPopRange, EventNvtxStartEndRange}
	if ids := l.enumIDs(tableEventType, "NvtxPushPopRange", "NvtxStartEndRange"); len(ids) > 0 {
		types = ids
	}
	isRange := func(typ int64) bool {
		for _, t := range types {
			if typ == t {
				return true
			}
		}
		return false
	}
	cols := []column{
		{name: "start", required: true}, intCol("end"), intCol("eventType"), textCol("text"), intCol("textId"), intCol("globalTid"),
		// The payload, in the order of preference.
		intCol("int64Value"), intCol("uint64Value"), intCol("int32Value"), intCol("uint32Value"),
	}
	if !byText {
		cols[3].absent = true
	}
	return l.scan(tableNVTX, cols, func(r *row) error {
		if c["eventType"] {
			typ, ok, err := r.int(2)
			if err != nil {
				return err
			}
			if !ok || !isRange(typ) {
				return nil
			}
		}
		var rr rawRange
		var err error
		if rr.Start, _, err = r.int(0); err != nil {
			return err
		}
		end, ok, err := r.int(1)
		if err != nil {
			return err
		}
		if !ok {
			l.open++
			return nil
		}
		rr.End = end
		if rr.EventType, _, err = r.int(2); err != nil {
			return err
		}
		if byText {
			if rr.text, rr.hasText, err = r.text(3); err != nil {
				return err
			}
		}
		rr.textID = noName
		if !rr.hasText && byID {
			id, ok, err := r.int(4)
			if err != nil {
				return err
			}
			if ok {
				rr.textID = id
				l.strings[id] = ""
			}
		}
		if rr.Thread, _, err = r.int(5); err != nil {
			return err
		}
		for i := 6; i < 10 && !rr.hasPayload; i++ {
			if rr.payload, rr.hasPayload, err = r.int(i); err != nil {
				return err
			}
		}
		l.ranges = append(l.ranges, rr)
		return nil
	})
}

// apiCall is a row of CUPTI_ACTIVITY_KIND_RUNTIME.
type apiCall struct {
	name       string
	nameID     int64
	corr       int64
	start, end int64
	thread     int64
	backtrace  bool // a --cudabacktrace copy of another row
	used       bool
}

// eventClassBacktrace is the ENUM_NSYS_EVENT_CLASS id of
// TRACE_PROCESS_EVENT_CUDABACKTRACE, used when the export has no enum table.
// With --cudabacktrace=true every API call that gets a backtrace appears
// twice in CUPTI_ACTIVITY_KIND_RUNTIME under one correlationId: once with
// its own class (1, TRACE_PROCESS_EVENT_CUDA_DRIVER, for cuLaunchKernel)
// and once with this class, a callchainId and a slightly wider span.
const eventClassBacktrace = 67

func (l *loader) readCalls() error {
	if !l.has(tableRuntime) {
		return nil
	}
	c, err := l.need(tableRuntime, "start", "end", "correlationId")
	if err != nil {
		return err
	}
	backtrace := int64(eventClassBacktrace)
	if ids := l.enumIDs(tableEventClass, "TRACE_PROCESS_EVENT_CUDABACKTRACE"); len(ids) > 0 {
		backtrace = ids[0]
	}
	named := c["nameId"] && l.hasStrings()
	perCorr := map[int64]int{}
	cols := []column{{name: "start", required: true}, {name: "end", required: true}, intCol("correlationId"),
		intCol("globalTid"), intCol("nameId"), intCol("eventClass")}
	return l.scan(tableRuntime, cols, func(r *row) error {
		corr, _, err := r.int(2)
		if err != nil || corr == 0 {
			return err
		}
		a := &apiCall{corr: corr, nameID: noName}
		if a.start, _, err = r.int(0); err != nil {
			return err
		}
		if a.end, _, err = r.int(1); err != nil {
			return err
		}
		if a.thread, _, err = r.int(3); err != nil {
			return err
		}
		if named {
			id, ok, err := r.int(4)
			if err != nil {
				return err
			}
			if ok {
				a.nameID = id
				l.strings[id] = ""
			}
		}
		class, ok, err := r.int(5)
		if err != nil {
			return err
		}
		a.backtrace = ok && class == backtrace
		if perCorr[corr]++; perCorr[corr] > maxCallsPerCorrelation {
			return fmt.Errorf("%s: correlationId %d is on more than %d API calls (an export has one per call and process, two with --cudabacktrace): duplicate ids",
				tableRuntime, corr, maxCallsPerCorrelation)
		}
		l.calls = append(l.calls, a)
		return nil
	})
}

// readOps reads the GPU operations: kernels, memsets and whole-graph
// records.
func (l *loader) readOps() error {
	if l.has(tableKernel) {
		c, err := l.need(tableKernel, "start", "end", "correlationId")
		if err != nil {
			return err
		}
		nameCol := ""
		if l.hasStrings() {
			for _, col := range []string{"shortName", "demangledName", "mangledName"} {
				if c[col] {
					nameCol = col
					break
				}
			}
		}
		if nameCol == "" {
			return l.schemaError("table %s has no kernel name column (shortName, demangledName or mangledName) resolvable through %s", tableKernel, tableStrings)
		}
		if err := l.scanOps(tableKernel, plan.Kernel, intCol(nameCol)); err != nil {
			return err
		}
		l.kernelGrids = c["gridX"] && c["gridY"] && c["gridZ"]
	}
	if l.has(tableMemset) {
		if _, err := l.need(tableMemset, "start", "end", "correlationId"); err != nil {
			return err
		}
		if err := l.scanOps(tableMemset, plan.Memset, intCol("bytes")); err != nil {
			return err
		}
	}
	if l.has(tableMemcpy) {
		if _, err := l.need(tableMemcpy, "start", "end", "correlationId", "bytes"); err != nil {
			return err
		}
		if err := l.scanMemcpys(); err != nil {
			return err
		}
	}
	if l.has(tableGraph) {
		if _, err := l.need(tableGraph, "start", "end", "correlationId"); err != nil {
			return err
		}
		if err := l.scanOps(tableGraph, plan.Graph, intCol("graphExecId")); err != nil {
			return err
		}
	}
	if int64(len(l.ops)) > maxRows {
		return fmt.Errorf("the export holds more than %d GPU operations, more than gpubench check reads (profile fewer iterations)", maxRows)
	}
	return nil
}

// scanOps reads the operations of one table; extra is the kernel's name
// id, the memset's size or the graph's exec id.
func (l *loader) scanOps(table string, kind plan.OpKind, extra column) error {
	cols := []column{{name: "start", required: true}, {name: "end", required: true}, intCol("correlationId"),
		intCol("globalPid"), intCol("deviceId"), intCol("streamId"), extra}
	if kind == plan.Kernel {
		cols = append(cols, intCol("gridX"), intCol("gridY"), intCol("gridZ"))
	}
	return l.scan(table, cols, func(r *row) error {
		op := GPUOp{Kind: kind}
		var err error
		for i, dst := range []*int64{&op.Start, &op.End, &op.CorrelationID, &op.GlobalPid, &op.Device, &op.Stream} {
			if *dst, _, err = r.int(i); err != nil {
				return err
			}
		}
		v, ok, err := r.int(6)
		if err != nil {
			return err
		}
		name := int64(noName)
		switch kind {
		case plan.Kernel:
			if ok {
				name = v
				l.strings[v] = ""
			}
			var g [3]int64
			for k := range g {
				if g[k], _, err = r.int(7 + k); err != nil {
					return err
				}
				// A grid dimension is at most 2^31-1; anything else is
				// not a grid (untrusted input), read as none.
				if g[k] < 0 || g[k] > 1<<31-1 {
					g = [3]int64{}
					break
				}
			}
			op.Grid = program.Dim3{X: int(g[0]), Y: int(g[1]), Z: int(g[2])}
		case plan.Memset:
			op.Bytes = v
		case plan.Graph:
			op.Name = fmt.Sprintf("graphExec %d", v)
		}
		l.ops = append(l.ops, op)
		l.opNames = append(l.opNames, name)
		return nil
	})
}

// scanMemcpys reads the memcpys: scanOps's columns, with the size, the
// direction and the memory kinds.
func (l *loader) scanMemcpys() error {
	cols := []column{{name: "start", required: true}, {name: "end", required: true}, intCol("correlationId"),
		intCol("globalPid"), intCol("deviceId"), intCol("streamId"), intCol("bytes"), intCol("copyKind"), intCol("srcKind"), intCol("dstKind")}
	return l.scan(tableMemcpy, cols, func(r *row) error {
		op := GPUOp{Kind: program.Memcpy}
		var err error
		for i, dst := range []*int64{&op.Start, &op.End, &op.CorrelationID, &op.GlobalPid, &op.Device, &op.Stream,
			&op.Bytes, &op.CopyKind, &op.SrcKind, &op.DstKind} {
			if *dst, _, err = r.int(i); err != nil {
				return err
			}
		}
		l.ops = append(l.ops, op)
		l.opNames = append(l.opNames, noName)
		return nil
	})
}

// readThreads reads the thread names; they only label messages, so rows
// of the wrong shape are skipped.
func (l *loader) readThreads() error {
	if c, _ := l.columns(tableThreads); !c["nameId"] || !c["globalTid"] || !l.hasStrings() {
		return nil
	}
	return l.scan(tableThreads, []column{intCol("globalTid"), intCol("nameId")}, func(r *row) error {
		tid, ok, err := r.int(0)
		id, ok2, err2 := r.int(1)
		if err == nil && err2 == nil && ok && ok2 {
			l.threads = append(l.threads, rawThread{tid, id})
			l.strings[id] = ""
		}
		return nil
	})
}

// readStrings reads the StringIds rows that the names found refer to.
func (l *loader) readStrings() error {
	if len(l.strings) == 0 || !l.hasStrings() {
		return nil
	}
	found := map[int64]bool{}
	return l.scan(tableStrings, []column{{name: "id", required: true}, textCol("value")}, func(r *row) error {
		id, _, err := r.int(0)
		if err != nil {
			return err
		}
		if _, wanted := l.strings[id]; !wanted || found[id] {
			return nil // the first row of an id counts
		}
		s, _, err := r.text(1)
		if err != nil {
			return err
		}
		found[id] = true
		l.strings[id], err = l.names.intern(s)
		return err
	})
}

// name resolves a StringIds id; "" when it refers to no row.
func (l *loader) name(id int64) string {
	if id == noName {
		return ""
	}
	return l.strings[id]
}

// callName is the name of an API call as the program calls it: CUPTI
// records a runtime call with the version of its entry point appended
// ("cudaMalloc_v3020", "cudaDeviceSynchronize_v3020"), which Nsight Systems'
// timeline and expert rules drop. Driver names keep their suffix: it is part
// of the function's name (cuMemAlloc_v2 is what cuMemAlloc compiles to).
func callName(s string) string {
	if !strings.HasPrefix(s, "cuda") {
		return s
	}
	i := strings.LastIndex(s, "_v")
	if i < 0 || i+2 == len(s) {
		return s
	}
	for _, c := range s[i+2:] {
		if c < '0' || c > '9' {
			return s
		}
	}
	return s[:i]
}

// build resolves the names and fills in t.
func (l *loader) build(t *Trace) error {
	t.OpenRanges = l.open
	t.KernelGrids = l.kernelGrids
	for _, rr := range l.ranges {
		r := rr.Range
		if rr.hasText {
			var err error
			if r.Name, err = l.names.intern(rr.text); err != nil {
				return err
			}
		} else {
			r.Name = l.name(rr.textID)
		}
		// A range named just "iteration" with an integer payload is
		// iteration{payload}: the cheap way to number ranges with NVTX.
		if r.Name == plan.IterationPrefix && rr.hasPayload && rr.payload >= 0 {
			r.Name = plan.IterationName(int(rr.payload))
		}
		t.Ranges = append(t.Ranges, r)
	}
	l.ranges = nil
	// By start, the enclosing range first: the order the checks rely on.
	sort.SliceStable(t.Ranges, func(i, j int) bool {
		a, b := t.Ranges[i], t.Ranges[j]
		if a.Start != b.Start {
			return a.Start < b.Start
		}
		return a.End > b.End
	})
	for _, th := range l.threads {
		if n := l.name(th.nameID); n != "" {
			t.ThreadNames[th.tid] = n
		}
	}
	calls := map[int64][]*apiCall{}
	for _, a := range l.calls {
		a.name = callName(l.name(a.nameID))
		calls[a.corr] = append(calls[a.corr], a)
		if !a.backtrace {
			t.Calls = append(t.Calls, APICall{Name: a.name, Start: a.start, End: a.end, Thread: a.thread})
		}
	}
	sort.SliceStable(t.Calls, func(i, j int) bool { return t.Calls[i].Start < t.Calls[j].Start })
	for i, op := range l.ops {
		if op.Kind == plan.Kernel {
			op.Name = l.name(l.opNames[i])
		}
		a := matchCall(calls[op.CorrelationID], op)
		if a == nil {
			t.Unlaunched = append(t.Unlaunched, op)
			continue
		}
		t.Launches = append(t.Launches, Launch{API: a.name, Start: a.start, End: a.end, Thread: a.thread, Op: op})
	}
	// By launch call, then, for the nodes of one graph launch (which share
	// its call), by their start on the GPU: the order of a stream.
	sort.SliceStable(t.Launches, func(i, j int) bool {
		a, b := t.Launches[i], t.Launches[j]
		if a.Start != b.Start {
			return a.Start < b.Start
		}
		return a.Op.Start < b.Op.Start
	})
	sort.SliceStable(t.Unlaunched, func(i, j int) bool { return t.Unlaunched[i].Start < t.Unlaunched[j].Start })
	return nil
}

// matchCall picks the API call that launched op. Correlation ids are unique
// within a process, so it considers the calls with op's id in op's process
// (all of them when the export records no process). Of those it prefers the
// call itself to its backtrace copy, then the shortest: the innermost. A
// call launches one operation, except a graph launch (cuGraphLaunch), whose
// every node carries its correlation id when nsys traces graph nodes.
func matchCall(cands []*apiCall, op GPUOp) *apiCall {
	if op.CorrelationID == 0 {
		return nil
	}
	var pick *apiCall
	for _, a := range cands {
		if (a.used && !strings.HasPrefix(a.name, "cuGraphLaunch")) || (op.GlobalPid != 0 && a.thread != 0 && !sameProcess(a.thread, op.GlobalPid)) {
			continue
		}
		if pick == nil || better(a, pick) {
			pick = a
		}
	}
	if pick != nil {
		// The launch's other rows (its backtrace copy) are used up too.
		for _, a := range cands {
			if a.thread == pick.thread {
				a.used = true
			}
		}
	}
	return pick
}

func better(a, b *apiCall) bool {
	if a.backtrace != b.backtrace {
		return !a.backtrace
	}
	return a.end-a.start < b.end-b.start
}
