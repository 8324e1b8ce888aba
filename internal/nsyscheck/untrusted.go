package nsyscheck

// This file is how Load reads a file that may come from anywhere: a report
// copied from a colleague, attached to a bug, cut short, or made to hurt.
// Every input gives a trace or one line saying what is wrong, in bounded
// time and memory:
//
//   - The header is checked before SQLite sees the file, so that a text
//     file, an empty file and a truncated export are named as such.
//   - Only plain tables are read (no views, no virtual tables: nothing that
//     computes rows), each in one full scan without WHERE or ORDER BY, so
//     that every row SQLite visits is counted, and at most maxRows of each.
//     Sorting and filtering happen in Go.
//   - Each column is read through typeof() and octet_length(), which SQLite
//     answers from the record header: a value of the wrong type or a huge
//     string is described, never loaded. SQLite itself refuses any value
//     over maxValue.
//   - Names are kept once each, up to maxNameTotal bytes in all; a name
//     over maxName bytes is replaced by a note of its size.

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on what Load reads.
const (
	// maxName is the longest name (NVTX text, kernel, API call, thread)
	// read, in bytes.
	maxName = 4096
	// maxNameTotal bounds the bytes of all distinct names kept.
	maxNameTotal = 64 << 20
	// maxValue is SQLITE_LIMIT_LENGTH for the connection: the largest
	// string or blob SQLite loads at all.
	maxValue = 16 << 20
	// maxCallsPerCorrelation bounds the API calls that share one
	// correlationId: one per call and process, two with --cudabacktrace.
	maxCallsPerCorrelation = 64
	// loadTimeout stops a read that takes far longer than any real export
	// of maxRows rows would.
	loadTimeout = 5 * time.Minute
)

// maxRows is the most rows read from one table: a thousand iterations of
// gpt2-124m with backtraces fit. (A variable, for the tests.)
var maxRows int64 = 2_000_000

// sqliteMagic starts every SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

// exportHint says how to make a file that Load reads.
const exportHint = "make one with: nsys export --type sqlite REPORT.nsys-rep"

// sniff checks the SQLite header of the file at path, of size bytes, so
// that what is not an SQLite database, or an export cut short, is named as
// such rather than by SQLite's "file is not a database".
func sniff(path string, size int64) error {
	if size == 0 {
		return fmt.Errorf("the file is empty (0 bytes), not an Nsight Systems SQLite export (%s)", exportHint)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var h [100]byte
	n, err := io.ReadFull(f, h[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	if n < len(sqliteMagic) || string(h[:len(sqliteMagic)]) != sqliteMagic {
		return fmt.Errorf("not an SQLite database: it starts with %q, an nsys SQLite export with %q (an .nsys-rep report must be exported first; %s)",
			h[:min(n, 16)], strings.TrimSuffix(sqliteMagic, "\x00"), exportHint)
	}
	if n < len(h) {
		return fmt.Errorf("the file was cut short: %d bytes, less than the 100-byte SQLite header", n)
	}
	pageSize := int64(binary.BigEndian.Uint16(h[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize&(pageSize-1) != 0 {
		return fmt.Errorf("damaged SQLite header: page size %d is not a power of two from 512 to 65536", pageSize)
	}
	// The page count at offset 28 is valid when the change counter
	// (offset 24) matches the version-valid-for number (offset 92).
	pages := int64(binary.BigEndian.Uint32(h[28:32]))
	if pages > 0 && bytes.Equal(h[24:28], h[92:96]) {
		if pages*pageSize > size {
			return fmt.Errorf("the file was cut short: its SQLite header says %d pages of %d bytes (%d bytes), the file has %d (copied before nsys export finished?)",
				pages, pageSize, pages*pageSize, size)
		}
	} else if size%pageSize != 0 {
		return fmt.Errorf("the file was cut short: %d bytes is not a whole number of %d-byte SQLite pages", size, pageSize)
	}
	return nil
}

// column is one column read from an untrusted table.
type column struct {
	name     string
	text     bool
	required bool // NULL is an error
	absent   bool // the table has no such column: reads as NULL
}

func intCol(name string) column  { return column{name: name} }
func textCol(name string) column { return column{name: name, text: true} }

// sql reads the column as its type, then the value only when it has the
// type expected and, for text, at most maxName bytes. typeof() and
// octet_length() of a column are answered from the record header, without
// loading the value.
func (c column) sql() string {
	if c.absent {
		if c.text {
			return "NULL, NULL, NULL"
		}
		return "NULL, NULL"
	}
	q := `t."` + c.name + `"`
	if c.text {
		return fmt.Sprintf("typeof(%[1]s), octet_length(%[1]s), CASE WHEN typeof(%[1]s) = 'text' AND octet_length(%[1]s) <= %[2]d THEN %[1]s END", q, maxName)
	}
	return fmt.Sprintf("typeof(%[1]s), CASE WHEN typeof(%[1]s) = 'integer' THEN %[1]s END", q)
}

// row is the current row of a scan.
type row struct {
	table string
	n     int64 // 1-based position in the table's order
	cols  []column
	types []sql.NullString
	ints  []sql.NullInt64 // the value of an integer column, the length of a text column
	texts []sql.NullString
}

func (r *row) errorf(i int, format string, args ...any) error {
	return fmt.Errorf("%s row %d: %s %s", r.table, r.n, r.cols[i].name, fmt.Sprintf(format, args...))
}

// typ is the SQLite type of column i's value: integer, real, text, blob
// or null.
func (r *row) typ(i int) string {
	if !r.types[i].Valid {
		return "null"
	}
	return r.types[i].String
}

// int returns integer column i, ok false when it is NULL.
func (r *row) int(i int) (v int64, ok bool, err error) {
	switch t := r.typ(i); t {
	case "integer":
		return r.ints[i].Int64, true, nil
	case "null":
		if r.cols[i].required {
			return 0, false, r.errorf(i, "is NULL, expected an integer")
		}
		return 0, false, nil
	default:
		return 0, false, r.errorf(i, "is %s, expected an integer", article(t))
	}
}

// text returns text column i, ok false when it is NULL, and a note of its
// size when it is longer than maxName.
func (r *row) text(i int) (s string, ok bool, err error) {
	switch t := r.typ(i); t {
	case "text":
		if !r.texts[i].Valid {
			return fmt.Sprintf("(%d bytes of text, not read)", r.ints[i].Int64), true, nil
		}
		return r.texts[i].String, true, nil
	case "null":
		if r.cols[i].required {
			return "", false, r.errorf(i, "is NULL, expected text")
		}
		return "", false, nil
	default:
		return "", false, r.errorf(i, "is %s, expected text", article(t))
	}
}

func article(sqlType string) string {
	switch sqlType {
	case "integer":
		return "an integer"
	case "real":
		return "a real number"
	case "blob":
		return "a blob"
	case "text":
		return "text"
	}
	return strconv.Quote(sqlType)
}

// scan reads every row of table, at most maxRows, calling fn with each.
// Columns the table lacks read as NULL.
func (l *loader) scan(table string, cols []column, fn func(r *row) error) error {
	have, err := l.columns(table)
	if err != nil {
		return err
	}
	r := &row{table: table, cols: make([]column, len(cols))}
	var exprs []string
	var dest []any
	r.types = make([]sql.NullString, len(cols))
	r.ints = make([]sql.NullInt64, len(cols))
	r.texts = make([]sql.NullString, len(cols))
	for i, c := range cols {
		c.absent = !have[c.name]
		r.cols[i] = c
		exprs = append(exprs, c.sql())
		dest = append(dest, &r.types[i], &r.ints[i])
		if c.text {
			dest = append(dest, &r.texts[i])
		}
	}
	q := fmt.Sprintf(`SELECT %s FROM "%s" AS t`, strings.Join(exprs, ", "), table)
	rows, err := l.conn.QueryContext(l.ctx, q)
	if err != nil {
		return l.sqlError(table, err)
	}
	defer rows.Close()
	for rows.Next() {
		if r.n++; r.n > maxRows {
			return fmt.Errorf("%s has more than %d rows, more than gpubench check reads (profile fewer iterations)", table, maxRows)
		}
		if err := rows.Scan(dest...); err != nil {
			return l.sqlError(table, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return l.sqlError(table, err)
	}
	return nil
}

// sqlError describes an error of the SQLite driver while reading table.
func (l *loader) sqlError(table string, err error) error {
	if l.ctx.Err() != nil {
		return fmt.Errorf("reading %s took more than %v; stopped (a corrupt file, or far larger than an export gpubench check reads)", table, loadTimeout)
	}
	return fmt.Errorf("reading %s: %s", table, describeSQLite(err))
}

// describeSQLite turns SQLite's messages about a damaged file into words
// that say so.
func describeSQLite(err error) string {
	msg := oneLine(err.Error())
	switch {
	case strings.Contains(msg, "malformed"):
		return "the SQLite file is damaged (" + msg + "): truncated or corrupted"
	case strings.Contains(msg, "not a database"):
		return "not an SQLite database (" + msg + ")"
	case strings.Contains(msg, "too big"):
		return fmt.Sprintf("a value is larger than %d bytes (%s): not an nsys export", maxValue, msg)
	}
	return msg
}

// oneLine keeps a message of the driver on one short line: SQLite quotes
// the damaged schema text in some, which may be anything.
func oneLine(s string) string {
	if strings.ContainsAny(s, "\r\n\t") {
		s = strings.Join(strings.Fields(s), " ")
	}
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return printable(s)
}

// names keeps each distinct name once, within maxNameTotal bytes, made
// printable.
type names struct {
	m     map[string]string
	bytes int
}

func (n *names) intern(s string) (string, error) {
	if v, ok := n.m[s]; ok {
		return v, nil
	}
	if n.m == nil {
		n.m = map[string]string{}
	}
	if n.bytes += len(s); n.bytes > maxNameTotal {
		return "", fmt.Errorf("the names in the export add up to more than %d MiB, more than gpubench check reads", maxNameTotal>>20)
	}
	v := printable(s)
	n.m[s] = v
	return v, nil
}

// short is printable(s) cut to 64 bytes, for names listed in messages.
func short(s string) string {
	if len(s) > 64 {
		s = strings.ToValidUTF8(s[:64], "") + "…"
	}
	return printable(s)
}

// printable returns s when it is valid UTF-8 without control characters,
// and s quoted otherwise, so that a name never breaks a message's line.
func printable(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, c := range s {
		if unicode.IsControl(c) || c == '\u2028' || c == '\u2029' {
			return strconv.Quote(s)
		}
	}
	return s
}
