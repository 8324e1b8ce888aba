package nsyscheck

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/plan"
)

// This file feeds Check what `gpubench check` may be given instead of a
// good export: files cut short, tables dropped, columns of the wrong type,
// NULLs, huge text, duplicate ids, events out of order, ranges that never
// close, other schemas, and what the fuzzer makes of them all. Each must
// give a report, or one line that starts with the path and says what is
// wrong (the CLI prints it and exits 1), in bounded time and memory.

// badReport is a file made from a real export (testdata/nsys) or from
// nothing, and the outcome Check must give.
type badReport struct {
	name string
	data func(tb testing.TB) []byte
	// want is a piece of the one-line error when refused; with mismatch,
	// a piece of one of the failures of a report that was read. Empty:
	// the check passes. anyOutcome: whatever it is, it is well-formed.
	want     string
	mismatch bool
	// notSeed keeps a case out of the fuzzer's seeds (too large to mutate
	// fast, or a limit lowered for the test).
	notSeed bool
	// rows lowers maxRows for the case.
	rows int64
}

const anyOutcome = "\x00any"

// realTiny is the export the mutations start from: 3 iterations of the
// tiny train plan.
const realTiny = "tiny-h200.sqlite"

func badReports() []badReport {
	bytesOf := func(b []byte) func(testing.TB) []byte { return func(testing.TB) []byte { return b } }
	real := func(name string) func(testing.TB) []byte {
		return func(tb testing.TB) []byte { return readReal(tb, name) }
	}
	cut := func(f func(b []byte) []byte) func(testing.TB) []byte {
		return func(tb testing.TB) []byte { return f(readReal(tb, realTiny)) }
	}
	sqlOn := func(stmts ...string) func(testing.TB) []byte {
		return func(tb testing.TB) []byte { return mutant(tb, realTiny, stmts...) }
	}
	// loosen rebuilds a table without its constraints (NOT NULL, PRIMARY
	// KEY) and with its columns' type affinity, rows in the order given.
	loosen := func(table, order string) string {
		return fmt.Sprintf(`CREATE TABLE loose AS SELECT * FROM %[1]s ORDER BY %[2]s; DROP TABLE %[1]s; ALTER TABLE loose RENAME TO %[1]s;`, table, order)
	}
	const version = "written by nsys 2025.3.2.0 (export schema 3.20.3); gpubench check reads the schema of nsys 2025.3 (export schema 3.20.3)"
	return []badReport{
		// Not an export at all.
		{name: "empty file", data: bytesOf(nil), want: "the file is empty (0 bytes), not an Nsight Systems SQLite export"},
		{name: "text file", data: bytesOf([]byte("root:x:0:0:root:/root:/bin/bash\n")),
			want: `not an SQLite database: it starts with "root:x:0:0:root:", an nsys SQLite export with "SQLite format 3"`},
		{name: "SQLite header and garbage", data: func(tb testing.TB) []byte {
			return append([]byte(sqliteMagic), bytes.Repeat([]byte{0xA5}, 4000)...)
		}, want: "damaged SQLite header: page size 42405"},
		{name: "SQLite file that is no export", data: func(tb testing.TB) []byte {
			return sqliteFile(tb, `CREATE TABLE results (x INTEGER); CREATE TABLE notes (y TEXT)`)
		}, want: "not an Nsight Systems SQLite export: it has none of the tables NVTX_EVENTS, CUPTI_ACTIVITY_KIND_KERNEL, CUPTI_ACTIVITY_KIND_RUNTIME, StringIds (its tables: notes, results;"},

		// Truncation.
		{name: "truncated to half", data: cut(func(b []byte) []byte { return b[:len(b)/2] }),
			want: "the file was cut short: its SQLite header says 90 pages of 4096 bytes (368640 bytes), the file has 184320"},
		{name: "truncated inside the header", data: cut(func(b []byte) []byte { return b[:50] }),
			want: "the file was cut short: 50 bytes, less than the 100-byte SQLite header"},
		{name: "truncated to the first page", data: cut(func(b []byte) []byte { return b[:4096] }),
			want: "the file was cut short: its SQLite header says 90 pages"},
		{name: "truncated by a few bytes", data: cut(func(b []byte) []byte { return b[:len(b)-7] }),
			want: "the file was cut short"},
		{name: "truncated, page count unknown", data: cut(func(b []byte) []byte {
			b = append([]byte(nil), b[:len(b)-1000]...)
			b[92]++ // the header's page count no longer counts
			return b
		}), want: "the file was cut short: 367640 bytes is not a whole number of 4096-byte SQLite pages"},
		{name: "pages zeroed in the middle", data: cut(func(b []byte) []byte {
			b = append([]byte(nil), b...)
			clear(b[40960:81920])
			return b
		}), want: anyOutcome},

		// Dropped tables: read where they can be.
		{name: "no NVTX table", data: sqlOn(`DROP TABLE NVTX_EVENTS`), mismatch: true, want: NoNVTXMessage},
		{name: "no kernel or memset table", data: sqlOn(`DROP TABLE CUPTI_ACTIVITY_KIND_KERNEL; DROP TABLE CUPTI_ACTIVITY_KIND_MEMSET`),
			mismatch: true, want: "no GPU kernels found in the capture: was it made with -t cuda?"},
		{name: "no runtime table", data: sqlOn(`DROP TABLE CUPTI_ACTIVITY_KIND_RUNTIME`),
			mismatch: true, want: "no CUDA API calls found (the export has no CUPTI_ACTIVITY_KIND_RUNTIME table)"},
		{name: "no StringIds table", data: sqlOn(`DROP TABLE StringIds`),
			want: "table CUPTI_ACTIVITY_KIND_KERNEL has no kernel name column (shortName, demangledName or mangledName) resolvable through StringIds: " + version},
		{name: "no enum, meta or thread tables", data: sqlOn(`DROP TABLE ENUM_NSYS_EVENT_TYPE; DROP TABLE ENUM_NSYS_EVENT_CLASS; DROP TABLE META_DATA_EXPORT; DROP TABLE ThreadNames`)},

		// Other schemas.
		{name: "NVTX_EVENTS without end", data: sqlOn(`ALTER TABLE NVTX_EVENTS DROP COLUMN end`),
			want: "table NVTX_EVENTS lacks column(s) end (it has binaryData, category, color, domainId, doubleValue, endGlobalTid, eventType, floatValue, globalTid, int32Value, int64Value, jsonText and 7 more): " + version},
		{name: "another nsys without kernel correlation ids", data: sqlOn(
			`UPDATE META_DATA_EXPORT SET value = '2023.1.1.127' WHERE name = 'EXPORT_PRODUCT_VERSION'`,
			`UPDATE META_DATA_EXPORT SET value = '3.5.0' WHERE name = 'EXPORT_SCHEMA_VERSION'`,
			`ALTER TABLE CUPTI_ACTIVITY_KIND_KERNEL DROP COLUMN correlationId`),
			want: "table CUPTI_ACTIVITY_KIND_KERNEL lacks column(s) correlationId (it has "},
		{name: "a schema without versions", data: sqlOn(`DROP TABLE META_DATA_EXPORT; ALTER TABLE CUPTI_ACTIVITY_KIND_RUNTIME DROP COLUMN correlationId`),
			want: "table CUPTI_ACTIVITY_KIND_RUNTIME lacks column(s) correlationId (it has callchainId, end, eventClass, globalTid, nameId, returnValue, start): the export names no nsys version (it has no META_DATA_EXPORT table); gpubench check reads the schema of nsys 2025.3 (export schema 3.20.3)"},
		{name: "NVTX_EVENTS without text or textId", data: sqlOn(`ALTER TABLE NVTX_EVENTS DROP COLUMN text; ALTER TABLE NVTX_EVENTS DROP COLUMN textId`),
			want: "table NVTX_EVENTS has neither a text nor a textId column: " + version},
		{name: "older schema without optional columns", data: sqlOn(
			`ALTER TABLE NVTX_EVENTS DROP COLUMN int64Value; ALTER TABLE NVTX_EVENTS DROP COLUMN uint64Value`,
			`ALTER TABLE CUPTI_ACTIVITY_KIND_KERNEL DROP COLUMN globalPid; ALTER TABLE CUPTI_ACTIVITY_KIND_KERNEL DROP COLUMN streamId`,
			`ALTER TABLE CUPTI_ACTIVITY_KIND_MEMSET DROP COLUMN globalPid; ALTER TABLE CUPTI_ACTIVITY_KIND_RUNTIME DROP COLUMN eventClass`)},
		{name: "a generated end column", data: sqlOn(`ALTER TABLE NVTX_EVENTS DROP COLUMN end; ALTER TABLE NVTX_EVENTS ADD COLUMN end INTEGER AS (start + 1)`),
			want: "table NVTX_EVENTS lacks column(s) end"},
		{name: "NVTX_EVENTS is a view", data: sqlOn(`ALTER TABLE NVTX_EVENTS RENAME TO nvtx; CREATE VIEW NVTX_EVENTS AS SELECT * FROM nvtx`),
			want: "NVTX_EVENTS is a view, not a table: not an Nsight Systems SQLite export"},
		{name: "an endless view", data: sqlOn(`DROP TABLE CUPTI_ACTIVITY_KIND_KERNEL; CREATE VIEW CUPTI_ACTIVITY_KIND_KERNEL AS
			WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i AS start, i AS end, i AS correlationId, 1 AS shortName FROM n ORDER BY i DESC`),
			want: "CUPTI_ACTIVITY_KIND_KERNEL is a view, not a table"},

		// Columns of the wrong type.
		{name: "text start", data: sqlOn(loosen("NVTX_EVENTS", "rowid"), `UPDATE NVTX_EVENTS SET start = 'soon' WHERE text = 'forward'`),
			want: "NVTX_EVENTS row 3: start is text, expected an integer"},
		{name: "real correlation ids", data: sqlOn(loosen("CUPTI_ACTIVITY_KIND_KERNEL", "rowid"), `UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET correlationId = correlationId + 0.5`),
			want: "CUPTI_ACTIVITY_KIND_KERNEL row 1: correlationId is a real number, expected an integer"},
		{name: "blob kernel end", data: sqlOn(loosen("CUPTI_ACTIVITY_KIND_KERNEL", "rowid"), `UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET end = zeroblob(10000) WHERE rowid = 1`),
			want: "CUPTI_ACTIVITY_KIND_KERNEL row 1: end is a blob, expected an integer"},
		{name: "blob NVTX text", data: sqlOn(`UPDATE NVTX_EVENTS SET text = CAST(text AS BLOB) WHERE text = 'backward'`),
			want: "NVTX_EVENTS row 4: text is a blob, expected text"},
		{name: "blob names", data: sqlOn(loosen("StringIds", "id"), `UPDATE StringIds SET value = CAST(value AS BLOB)`),
			want: "StringIds row 15: value is a blob, expected text"},

		// NULLs.
		{name: "NULL API call start", data: sqlOn(loosen("CUPTI_ACTIVITY_KIND_RUNTIME", "rowid"), `UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET start = NULL`),
			want: "start is NULL, expected an integer"},
		{name: "NULL names", data: sqlOn(loosen("StringIds", "id"), `UPDATE StringIds SET value = NULL`),
			mismatch: true, want: "iteration0/forward: kernel encoder_forward launched 0 times, plan says 1"},
		{name: "NULL NVTX text", data: sqlOn(`UPDATE NVTX_EVENTS SET text = NULL`),
			mismatch: true, want: "capture holds 0 iteration ranges, expected 3"},
		{name: "NULL correlation ids", data: sqlOn(`UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET correlationId = NULL`),
			mismatch: true, want: "has no CUDA API launch record (correlationId 0), so it cannot be placed in any range"},

		// Huge text.
		{name: "a megabyte of NVTX text", data: sqlOn(`UPDATE NVTX_EVENTS SET text = printf('%.*c', 1000000, 'x') WHERE text = 'forward'`),
			mismatch: true, want: `iteration0: unexpected NVTX range "(1000000 bytes of text, not read)" inside it`},
		{name: "a kernel name over SQLite's limit", notSeed: true, data: sqlOn(`UPDATE StringIds SET value = printf('%.*c', 20000000, 'k') WHERE value = 'gelu_forward'`),
			mismatch: true, want: "kernel (20000000 bytes of text, not read) launched"},
		{name: "line breaks in a name", data: sqlOn(`UPDATE NVTX_EVENTS SET text = 'forward' || char(10) || 'result: OK' WHERE text = 'forward'`),
			mismatch: true, want: `unexpected NVTX range "\"forward\\nresult: OK\"" inside it`},
		{name: "line breaks in a kernel name", data: sqlOn(`UPDATE StringIds SET value = 'gelu' || char(13, 10) || 'forward' WHERE value = 'gelu_forward'`),
			mismatch: true, want: `kernel "gelu\r\nforward" launched`},

		// Duplicate ids.
		{name: "one correlation id for every call", data: sqlOn(`UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET correlationId = 7`),
			want: "CUPTI_ACTIVITY_KIND_RUNTIME: correlationId 7 is on more than 64 API calls"},
		{name: "one correlation id for every kernel", data: sqlOn(`UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET correlationId = (SELECT min(correlationId) FROM CUPTI_ACTIVITY_KIND_KERNEL)`),
			mismatch: true, want: "no CUDA API launch record"},
		{name: "duplicate StringIds ids", data: sqlOn(loosen("StringIds", "id"), `INSERT INTO StringIds SELECT id, 'duplicate' FROM StringIds`)},
		{name: "duplicate NVTX ranges", data: sqlOn(`INSERT INTO NVTX_EVENTS SELECT * FROM NVTX_EVENTS WHERE text = 'forward'`),
			mismatch: true, want: `iteration0/forward: unexpected NVTX range "forward" inside it`},

		// Order and nesting.
		{name: "events out of order", data: sqlOn(loosen("NVTX_EVENTS", "start DESC"), loosen("CUPTI_ACTIVITY_KIND_KERNEL", "start DESC"),
			loosen("CUPTI_ACTIVITY_KIND_RUNTIME", "random()"), loosen("StringIds", "id DESC"))},
		{name: "ranges that never close", data: sqlOn(`UPDATE NVTX_EVENTS SET end = NULL WHERE text = 'backward'`),
			mismatch: true, want: "iteration0: no backward range inside it"},
		{name: "an iteration that never closes", data: sqlOn(`UPDATE NVTX_EVENTS SET end = NULL WHERE text = 'iteration2'`),
			mismatch: true, want: "capture holds 2 iteration ranges, expected 3"},
		{name: "ranges that end before they start", data: sqlOn(`UPDATE NVTX_EVENTS SET end = start - 1000`),
			mismatch: true, want: "lies outside every iteration range"},
		{name: "iterations that overlap", data: sqlOn(`UPDATE NVTX_EVENTS SET end = end + 100000000 WHERE text = 'iteration0'`),
			mismatch: true, want: "iteration1 starts at"},
		{name: "timestamps at the ends of int64", data: sqlOn(`UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET start = -9223372036854775808, end = 9223372036854775807`),
			mismatch: true, want: anyOutcome},

		// Size limits.
		{name: "more rows than read", rows: 100, data: real(realTiny),
			want: "CUPTI_ACTIVITY_KIND_KERNEL has more than 100 rows, more than gpubench check reads"},
		{name: "many ranges", notSeed: true, data: sqlOn(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
			INSERT INTO NVTX_EVENTS (start, end, eventType, text, globalTid) SELECT 1000 + i, 2000 + i, 59, 'iteration' || i, 7 FROM n`),
			mismatch: true, want: "more than 100 problems: the check stopped here"},
	}
}

// TestBadReports: each bad input gives its one line, or its report.
func TestBadReports(t *testing.T) {
	p := plan.For(tinyDims, config.Train)
	for _, c := range badReports() {
		t.Run(c.name, func(t *testing.T) {
			if c.rows > 0 {
				defer func(n int64) { maxRows = n }(maxRows)
				maxRows = c.rows
			}
			path := filepath.Join(t.TempDir(), "report.sqlite")
			if err := os.WriteFile(path, c.data(t), 0o644); err != nil {
				t.Fatal(err)
			}
			rep, err := checkBounded(t, path, p)
			var me *MismatchError
			switch {
			case c.want == anyOutcome:
				t.Logf("%v", err)
			case c.want == "":
				if err != nil {
					t.Fatalf("want a passing check, got: %v", err)
				}
			case c.mismatch:
				if !errors.As(err, &me) {
					t.Fatalf("want a report that fails with %q, got: %v", c.want, err)
				}
				if !strings.Contains(strings.Join(me.Failures, "\n"), c.want) {
					t.Errorf("the failures lack %q:\n%v", c.want, err)
				}
				t.Logf("%d failures, the first: %s", len(me.Failures), me.Failures[0])
			default:
				if err == nil || errors.As(err, &me) || rep != nil {
					t.Fatalf("want the file refused with %q, got: %v", c.want, err)
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Errorf("error lacks %q:\n%v", c.want, err)
				}
				t.Logf("%v", err)
			}
		})
	}
}

// FuzzCheck: whatever the file, Check gives a report or one line naming
// the file, in bounded time and memory. The seeds are the real exports
// and the bad reports above; crashers found are kept in
// testdata/fuzz/FuzzCheck.
func FuzzCheck(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "nsys", "*.sqlite"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no real exports in testdata/nsys: %v", err)
	}
	for _, path := range files {
		f.Add(readReal(f, filepath.Base(path)))
		// The same export with only the tables Load reads, so that more
		// of the fuzzer's mutations land in them.
		f.Add(reduced(f, filepath.Base(path)))
	}
	for _, c := range badReports() {
		if !c.notSeed && c.rows == 0 {
			f.Add(c.data(f))
		}
	}
	p := plan.For(tinyDims, config.Train)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "report.sqlite")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		checkBounded(t, path, p)
	})
}

// Bounds on one Check of a file of at most a few megabytes: the Go memory
// it may allocate and the time it may take. The time bound catches
// quadratic work (200000 ranges would take hours), not slowness: on a
// 2-core CI machine, with go test running the model package's tests
// beside this one, the many-ranges case took 6.3 s where it takes 2 s
// alone, so the bound is far above both.
const (
	checkAllocLimit = 512 << 20
	checkTimeLimit  = 30 * time.Second
)

// checkBounded checks the file at path against p for 3 iterations, fails
// t unless the outcome is well-formed, in bounds, and returns it.
func checkBounded(t *testing.T, path string, p plan.Plan) (*Report, error) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	rep, err := Check(path, p, 3)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > checkAllocLimit {
		t.Errorf("Check allocated %d MiB", alloc>>20)
	}
	if took > checkTimeLimit {
		t.Errorf("Check took %v", took)
	}
	var me *MismatchError
	switch {
	case errors.As(err, &me):
		if rep == nil || rep.OK() || me.Path != path {
			t.Fatalf("a mismatch must come with its failed report: %v", err)
		}
		if len(me.Failures) > maxFailures+1 {
			t.Errorf("%d failures, more than %d", len(me.Failures), maxFailures+1)
		}
		for _, f := range me.Failures {
			if strings.ContainsAny(f, "\r\n") || f == "" {
				t.Errorf("failure %q is not one line", f)
			}
		}
		var text bytes.Buffer
		if werr := rep.WriteText(&text); werr != nil {
			t.Fatal(werr)
		}
	case err != nil:
		msg := err.Error()
		if rep != nil {
			t.Errorf("an unreadable file gave a report and %q", msg)
		}
		if !strings.HasPrefix(msg, path+": ") || len(msg) <= len(path)+2 {
			t.Errorf("the error does not start with the path %s: %q", path, msg)
		}
		if strings.ContainsAny(msg, "\r\n") || len(msg) > 2000 {
			t.Errorf("the error is not one short line: %q", msg)
		}
	default:
		if rep == nil || !rep.OK() {
			t.Fatalf("no error and no passing report")
		}
	}
	return rep, err
}

// readReal returns the bytes of a real export in testdata/nsys.
func readReal(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "nsys", name))
	if err != nil {
		tb.Fatalf("no real export %s: %v", name, err)
	}
	return b
}

// mutant runs the statements on a copy of a real export and returns the
// copy's bytes.
func mutant(tb testing.TB, name string, stmts ...string) []byte {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, readReal(tb, name), 0o644); err != nil {
		tb.Fatal(err)
	}
	return sqliteFileAt(tb, path, stmts...)
}

// reduced is a real export without the tables Load does not read.
func reduced(tb testing.TB, name string) []byte {
	tb.Helper()
	keep := map[string]bool{}
	for _, t := range []string{tableNVTX, tableRuntime, tableKernel, tableMemset, tableGraph, tableStrings, tableThreads, tableEventType, tableEventClass, tableMeta} {
		keep[t] = true
	}
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, readReal(tb, name), 0o644); err != nil {
		tb.Fatal(err)
	}
	db := mustOpen(tb, path)
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		tb.Fatal(err)
	}
	var drop []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			tb.Fatal(err)
		}
		if !keep[t] {
			drop = append(drop, fmt.Sprintf(`DROP TABLE "%s";`, t))
		}
	}
	rows.Close()
	db.Close()
	return sqliteFileAt(tb, path, append(drop, "VACUUM")...)
}

// sqliteFile makes a new SQLite file with the statements and returns its
// bytes.
func sqliteFile(tb testing.TB, stmts ...string) []byte {
	tb.Helper()
	return sqliteFileAt(tb, filepath.Join(tb.TempDir(), "new.sqlite"), stmts...)
}

func sqliteFileAt(tb testing.TB, path string, stmts ...string) []byte {
	tb.Helper()
	db := mustOpen(tb, path)
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			db.Close()
			tb.Fatalf("%s: %v", s, err)
		}
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
