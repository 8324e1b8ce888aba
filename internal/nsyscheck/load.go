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
//     StringIds, deviceId, streamId.
//   - CUPTI_ACTIVITY_KIND_MEMSET: start, end, correlationId, globalPid,
//     bytes, deviceId, streamId.
//   - StringIds(id, value), ThreadNames(nameId, globalTid) and
//     META_DATA_EXPORT(name, value) where present.
//
// Checked against a real export of nsys 2025.3.2 (schema 3.20.3) in
// testdata/nsys. Tables are created lazily by the exporter, so any of them
// may be missing (no CUPTI_ACTIVITY_KIND_MEMSET table means no memsets);
// columns are looked up with PRAGMA table_info and optional ones are
// skipped. Timestamps are nanoseconds on the report's timeline. A globalTid
// packs the process and thread ids: PID = globalTid / 0x1000000 % 0x1000000,
// TID = globalTid % 0x1000000; globalPid is the same with TID 0.
package nsyscheck

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gpubench/gpubench/internal/plan"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Table names of the Nsight Systems SQLite export.
const (
	tableNVTX      = "NVTX_EVENTS"
	tableRuntime   = "CUPTI_ACTIVITY_KIND_RUNTIME"
	tableKernel    = "CUPTI_ACTIVITY_KIND_KERNEL"
	tableMemset    = "CUPTI_ACTIVITY_KIND_MEMSET"
	tableGraph     = "CUPTI_ACTIVITY_KIND_GRAPH_TRACE"
	tableStrings   = "StringIds"
	tableThreads   = "ThreadNames"
	tableEventType = "ENUM_NSYS_EVENT_TYPE"
	tableMeta      = "META_DATA_EXPORT"
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

// GPUOp is a kernel or memset as the GPU ran it.
type GPUOp struct {
	Kind          plan.OpKind
	Name          string // kernel name; empty for memsets
	Start, End    int64  // ns
	CorrelationID int64
	GlobalPid     int64 // 0 when the export has none
	Device        int64
	Stream        int64
	Bytes         int64 // memsets only
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
	// GraphTable reports whole-graph records: nsys's default
	// --cuda-graph-trace=graph shows each graph launch as one operation
	// and none of its nodes.
	GraphTable bool
	// ThreadNames maps a globalTid to its name, where the export has one.
	ThreadNames map[int64]string
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
// checks use. It opens the file read-only and never creates it.
func Load(path string) (*Trace, error) {
	ctx := context.Background()
	db, err := open(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()

	tables, err := tableSet(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (is it an SQLite file from nsys export --type sqlite?)", path, err)
	}
	if !tables[tableNVTX] && !tables[tableKernel] && !tables[tableRuntime] && !tables[tableStrings] {
		return nil, fmt.Errorf("%s: not an Nsight Systems SQLite export: it has none of the tables %s, %s, %s, %s (make one with: nsys export --type sqlite REPORT.nsys-rep)",
			path, tableNVTX, tableKernel, tableRuntime, tableStrings)
	}
	l := &loader{ctx: ctx, db: db, tables: tables, cols: map[string]map[string]bool{}}
	t := &Trace{
		Path:        path,
		NVTXTable:   tables[tableNVTX],
		APITable:    tables[tableRuntime],
		KernelTable: tables[tableKernel],
		MemsetTable: tables[tableMemset],
		GraphTable:  tables[tableGraph],
		ThreadNames: map[int64]string{},
	}
	steps := []func(*Trace) error{l.meta, l.threadNames, l.ranges, l.launches}
	for _, step := range steps {
		if err := step(t); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return t, nil
}

// open opens path read-only. A plain file name would make the driver open
// (and create) it read-write, so it is passed as a file: URI with mode=ro.
func open(path string) (*sql.DB, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not an nsys SQLite export", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: "mode=ro"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

type loader struct {
	ctx    context.Context
	db     *sql.DB
	tables map[string]bool
	cols   map[string]map[string]bool
}

func tableSet(ctx context.Context, db *sql.DB) (map[string]bool, error) {
	return nameSet(ctx, db, `SELECT name FROM sqlite_master WHERE type IN ('table', 'view')`)
}

// nameSet runs a query whose rows are single names and returns them as a
// set.
func nameSet(ctx context.Context, db *sql.DB, query string, args ...any) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	set := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		set[name] = true
	}
	return set, rows.Err()
}

// columns returns the column names of table; nil when there is no table.
func (l *loader) columns(table string) (map[string]bool, error) {
	if !l.tables[table] {
		return nil, nil
	}
	if c, ok := l.cols[table]; ok {
		return c, nil
	}
	set, err := nameSet(l.ctx, l.db, `SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", table, err)
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
		return nil, fmt.Errorf("table %s lacks column(s) %s: unsupported Nsight Systems export schema", table, strings.Join(missing, ", "))
	}
	return have, nil
}

func (l *loader) hasStrings() bool {
	c, _ := l.columns(tableStrings)
	return c["id"] && c["value"]
}

func (l *loader) meta(t *Trace) error {
	c, err := l.columns(tableMeta)
	if err != nil || !c["name"] || !c["value"] {
		return err
	}
	var v sql.NullString
	err = l.db.QueryRowContext(l.ctx, `SELECT value FROM META_DATA_EXPORT WHERE name = 'EXPORT_SCHEMA_VERSION'`).Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	t.SchemaVersion = v.String
	return nil
}

func (l *loader) threadNames(t *Trace) error {
	c, err := l.columns(tableThreads)
	if err != nil || !c["nameId"] || !c["globalTid"] || !l.hasStrings() {
		return err
	}
	rows, err := l.db.QueryContext(l.ctx, `SELECT t.globalTid, s.value FROM ThreadNames t JOIN StringIds s ON s.id = t.nameId`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var tid sql.NullInt64
		var name sql.NullString
		if err := rows.Scan(&tid, &name); err != nil {
			return err
		}
		if tid.Valid && name.Valid {
			t.ThreadNames[tid.Int64] = name.String
		}
	}
	return rows.Err()
}

// rangeEventTypes returns the NVTX event types that are ranges.
func (l *loader) rangeEventTypes() ([]int64, error) {
	c, err := l.columns(tableEventType)
	if err != nil {
		return nil, err
	}
	if !c["id"] || !c["name"] {
		return []int64{EventNvtxPushPopRange, EventNvtxStartEndRange}, nil
	}
	rows, err := l.db.QueryContext(l.ctx, `SELECT id FROM ENUM_NSYS_EVENT_TYPE WHERE name IN ('NvtxPushPopRange', 'NvtxStartEndRange')`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		ids = []int64{EventNvtxPushPopRange, EventNvtxStartEndRange}
	}
	return ids, nil
}

func (l *loader) ranges(t *Trace) error {
	if !t.NVTXTable {
		return nil
	}
	c, err := l.need(tableNVTX, "start", "end")
	if err != nil {
		return err
	}
	var name string
	join := ""
	switch {
	case c["text"] && c["textId"] && l.hasStrings():
		name, join = "COALESCE(n.text, s.value)", "LEFT JOIN StringIds s ON s.id = n.textId"
	case c["text"]:
		name = "n.text"
	case c["textId"] && l.hasStrings():
		name, join = "s.value", "LEFT JOIN StringIds s ON s.id = n.textId"
	default:
		return fmt.Errorf("table %s has neither a text nor a textId column", tableNVTX)
	}
	thread := "0"
	if c["globalTid"] {
		thread = "COALESCE(n.globalTid, 0)"
	}
	var payloads []string
	for _, p := range []string{"int64Value", "uint64Value", "int32Value", "uint32Value"} {
		if c[p] {
			payloads = append(payloads, "n."+p)
		}
	}
	payload := "NULL"
	if len(payloads) > 0 {
		payload = "COALESCE(" + strings.Join(append(payloads, "NULL"), ", ") + ")"
	}
	eventType, where := "0", "1"
	if c["eventType"] {
		types, err := l.rangeEventTypes()
		if err != nil {
			return err
		}
		ids := make([]string, len(types))
		for i, id := range types {
			ids[i] = fmt.Sprint(id)
		}
		eventType = "n.eventType"
		where = "n.eventType IN (" + strings.Join(ids, ", ") + ")"
	}
	q := fmt.Sprintf(`SELECT n.start, n."end", %s, %s, %s, %s FROM NVTX_EVENTS n %s WHERE %s ORDER BY n.start, n."end" DESC`,
		name, thread, eventType, payload, join, where)
	rows, err := l.db.QueryContext(l.ctx, q)
	if err != nil {
		return fmt.Errorf("reading NVTX ranges: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r Range
		var text sql.NullString
		var end, pay sql.NullInt64
		if err := rows.Scan(&r.Start, &end, &text, &r.Thread, &r.EventType, &pay); err != nil {
			return fmt.Errorf("reading NVTX ranges: %w", err)
		}
		if !end.Valid {
			t.OpenRanges++
			continue
		}
		r.End, r.Name = end.Int64, text.String
		// A range named just "iteration" with an integer payload is
		// iteration{payload}: the cheap way to number ranges with NVTX.
		if r.Name == plan.IterationPrefix && pay.Valid && pay.Int64 >= 0 {
			r.Name = plan.IterationName(int(pay.Int64))
		}
		t.Ranges = append(t.Ranges, r)
	}
	return rows.Err()
}

// apiCall is a row of CUPTI_ACTIVITY_KIND_RUNTIME.
type apiCall struct {
	name       string
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

func (l *loader) backtraceClass() (int64, error) {
	c, err := l.columns("ENUM_NSYS_EVENT_CLASS")
	if err != nil || !c["id"] || !c["name"] {
		return eventClassBacktrace, err
	}
	var id int64
	err = l.db.QueryRowContext(l.ctx, `SELECT id FROM ENUM_NSYS_EVENT_CLASS WHERE name = 'TRACE_PROCESS_EVENT_CUDABACKTRACE'`).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return eventClassBacktrace, nil
	}
	return id, err
}

func (l *loader) launches(t *Trace) error {
	ops, err := l.gpuOps(t)
	if err != nil {
		return err
	}
	calls := map[int64][]*apiCall{}
	if t.APITable {
		c, err := l.need(tableRuntime, "start", "end", "correlationId")
		if err != nil {
			return err
		}
		name, join := "''", ""
		if c["nameId"] && l.hasStrings() {
			name, join = "COALESCE(s.value, '')", "LEFT JOIN StringIds s ON s.id = r.nameId"
		}
		thread := "0"
		if c["globalTid"] {
			thread = "COALESCE(r.globalTid, 0)"
		}
		backtrace := "0"
		if c["eventClass"] {
			id, err := l.backtraceClass()
			if err != nil {
				return err
			}
			backtrace = fmt.Sprintf("r.eventClass = %d", id)
		}
		q := fmt.Sprintf(`SELECT r.start, r."end", %s, r.correlationId, %s, %s FROM CUPTI_ACTIVITY_KIND_RUNTIME r %s WHERE r.correlationId IS NOT NULL AND r.correlationId != 0`,
			thread, name, backtrace, join)
		rows, err := l.db.QueryContext(l.ctx, q)
		if err != nil {
			return fmt.Errorf("reading CUDA API calls: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var a apiCall
			var corr int64
			if err := rows.Scan(&a.start, &a.end, &a.thread, &corr, &a.name, &a.backtrace); err != nil {
				return fmt.Errorf("reading CUDA API calls: %w", err)
			}
			calls[corr] = append(calls[corr], &a)
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	for _, op := range ops {
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

func (l *loader) gpuOps(t *Trace) ([]GPUOp, error) {
	var ops []GPUOp
	if t.KernelTable {
		c, err := l.need(tableKernel, "start", "end", "correlationId")
		if err != nil {
			return nil, err
		}
		name, join := "''", ""
		if l.hasStrings() {
			for _, col := range []string{"shortName", "demangledName", "mangledName"} {
				if c[col] {
					name, join = "COALESCE(s.value, '')", "LEFT JOIN StringIds s ON s.id = k."+col
					break
				}
			}
		}
		if name == "''" {
			return nil, fmt.Errorf("table %s has no kernel name column (shortName, demangledName or mangledName) resolvable through %s", tableKernel, tableStrings)
		}
		q := fmt.Sprintf(`SELECT k.start, k."end", COALESCE(k.correlationId, 0), %s, %s, %s, %s, 0 FROM CUPTI_ACTIVITY_KIND_KERNEL k %s`,
			optCol(c, "k", "globalPid"), optCol(c, "k", "deviceId"), optCol(c, "k", "streamId"), name, join)
		ops, err = l.scanOps(q, plan.Kernel, ops)
		if err != nil {
			return nil, fmt.Errorf("reading kernels: %w", err)
		}
	}
	if t.MemsetTable {
		c, err := l.need(tableMemset, "start", "end", "correlationId")
		if err != nil {
			return nil, err
		}
		q := fmt.Sprintf(`SELECT m.start, m."end", COALESCE(m.correlationId, 0), %s, %s, %s, '', %s FROM CUPTI_ACTIVITY_KIND_MEMSET m`,
			optCol(c, "m", "globalPid"), optCol(c, "m", "deviceId"), optCol(c, "m", "streamId"), optCol(c, "m", "bytes"))
		var err2 error
		ops, err2 = l.scanOps(q, plan.Memset, ops)
		if err2 != nil {
			return nil, fmt.Errorf("reading memsets: %w", err2)
		}
	}
	if t.GraphTable {
		c, err := l.need(tableGraph, "start", "end", "correlationId")
		if err != nil {
			return nil, err
		}
		q := fmt.Sprintf(`SELECT g.start, g."end", COALESCE(g.correlationId, 0), %s, %s, %s, 'graphExec ' || %s, 0 FROM CUPTI_ACTIVITY_KIND_GRAPH_TRACE g`,
			optCol(c, "g", "globalPid"), optCol(c, "g", "deviceId"), optCol(c, "g", "streamId"), optCol(c, "g", "graphExecId"))
		var err2 error
		ops, err2 = l.scanOps(q, plan.Graph, ops)
		if err2 != nil {
			return nil, fmt.Errorf("reading graph launches: %w", err2)
		}
	}
	return ops, nil
}

func optCol(have map[string]bool, alias, col string) string {
	if have[col] {
		return "COALESCE(" + alias + "." + col + ", 0)"
	}
	return "0"
}

func (l *loader) scanOps(q string, kind plan.OpKind, ops []GPUOp) ([]GPUOp, error) {
	rows, err := l.db.QueryContext(l.ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		op := GPUOp{Kind: kind}
		if err := rows.Scan(&op.Start, &op.End, &op.CorrelationID, &op.GlobalPid, &op.Device, &op.Stream, &op.Name, &op.Bytes); err != nil {
			return nil, err
		}
		ops = append(ops, op)
	}
	return ops, rows.Err()
}
