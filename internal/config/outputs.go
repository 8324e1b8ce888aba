package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// This file checks a run's output paths before any GPU call, so that a
// long run cannot end by failing to write its result: --json (the report,
// written atomically through a temporary file beside it, see
// report.WriteJSON) and --dump (a directory, created if missing, see
// ref.WriteDump).

// CheckOutputs checks that the run can write its outputs: for --json, that
// the directory the file goes into exists and a file can be created in it,
// and that the path is no directory; for --dump, that the path is a
// directory or can be made one, and that files can be created in it. It
// returns one line naming the flag, the path and what is wrong, and leaves
// nothing behind.
func (r Run) CheckOutputs() error {
	if r.JSON != "" {
		if err := checkJSONPath(r.JSON); err != nil {
			return fmt.Errorf("--json: %s: %w", r.JSON, err)
		}
	}
	if r.Dump != "" {
		if err := checkDumpDir(r.Dump); err != nil {
			return fmt.Errorf("--dump: %s: %w", r.Dump, err)
		}
	}
	return nil
}

// checkJSONPath checks a file path that report.WriteJSON will replace: its
// directory must exist (WriteJSON makes none), so that the temporary file
// can be created there and renamed onto the path.
func checkJSONPath(path string) error {
	if os.IsPathSeparator(path[len(path)-1]) {
		return errors.New("names a directory, not a file (give the file name, e.g. result.json)")
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return errors.New("is a directory, not a file (give the file name, e.g. result.json)")
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("the directory %s does not exist (create it first: gpubench creates no directory for --json)", dir)
	case err != nil:
		return fmt.Errorf("cannot reach the directory %s: %w", dir, unwrapPath(err))
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	return probeWritable(dir)
}

// checkDumpDir checks a directory that ref.WriteDump will create if need
// be (os.MkdirAll) and write files into.
func checkDumpDir(path string) error {
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return probeWritable(path)
	case err == nil:
		return errors.New("is a file, not a directory (--dump writes several files into a directory)")
	case !missing(err):
		return fmt.Errorf("cannot reach it: %w", unwrapPath(err))
	}
	// Missing: the nearest existing parent must be a directory in which
	// the missing ones can be created.
	dir := path
	for {
		parent := filepath.Dir(dir)
		if parent == dir {
			return errors.New("no parent directory of it exists")
		}
		dir = parent
		st, err := os.Stat(dir)
		switch {
		case missing(err):
			continue
		case err != nil:
			return fmt.Errorf("cannot reach %s: %w", dir, unwrapPath(err))
		case !st.IsDir():
			return fmt.Errorf("%s is a file, so no directory can be created under it", dir)
		}
		if err := probeWritable(dir); err != nil {
			return fmt.Errorf("cannot be created: %w", err)
		}
		return nil
	}
}

// missing reports whether a Stat error means the path is not there: it
// does not exist, or a file stands where a parent directory should (the
// nearest existing parent then says what is wrong).
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// probeWritable creates and removes a temporary file in dir: the test that
// answers for permissions, read-only mounts and ACLs alike, and the same
// call report.WriteJSON makes.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".gpubench-probe-*")
	if err != nil {
		return fmt.Errorf("the directory %s is not writable: %w", dir, unwrapPath(err))
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("the directory %s lets files be created but not removed: %w", dir, unwrapPath(err))
	}
	return nil
}

// unwrapPath drops the *fs.PathError's operation and path, which the
// messages above already name, and keeps the reason ("permission denied").
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
