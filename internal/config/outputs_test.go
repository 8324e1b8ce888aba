package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCheckOutputs: one row per way an output path can be wrong, each
// refused in one line that names the flag, the path and the reason, and
// the paths a run can write, accepted without leaving anything behind.
func TestCheckOutputs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // for the relative path
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o755))

	cases := []struct {
		name      string
		json      string
		dump      string
		want      []string // substrings of the error; none: accepted
		needsUser bool     // permissions do not bind root
	}{
		{name: "no outputs"},
		{name: "json in an existing directory", json: filepath.Join(dir, "result.json")},
		{name: "json replaces an existing file", json: file},
		{name: "json relative to the working directory", json: "result.json"},
		{name: "dump into an existing directory", dump: sub},
		{name: "dump into a directory to create", dump: filepath.Join(dir, "new", "deeper")},
		{name: "json in a missing directory", json: filepath.Join(dir, "missing", "x.json"),
			want: []string{"--json: " + filepath.Join(dir, "missing", "x.json") + ": ", "the directory " + filepath.Join(dir, "missing") + " does not exist"}},
		{name: "json under a file", json: filepath.Join(file, "x.json"),
			want: []string{"--json: " + filepath.Join(file, "x.json") + ": ", file + " is not a directory"}},
		{name: "json is a directory", json: sub, want: []string{"--json: " + sub + ": is a directory, not a file"}},
		{name: "json names a directory", json: dir + "/", want: []string{"--json: " + dir + "/: names a directory, not a file"}},
		{name: "dump is a file", dump: file, want: []string{"--dump: " + file + ": is a file, not a directory"}},
		{name: "dump under a file", dump: filepath.Join(file, "d"),
			want: []string{"--dump: " + filepath.Join(file, "d") + ": ", file + " is a file, so no directory can be created under it"}},
		{name: "json checked before dump", json: filepath.Join(dir, "missing", "x.json"), dump: file, want: []string{"--json: "}},
		{name: "json in a read-only directory", json: filepath.Join(dir, "ro", "x.json"), needsUser: true,
			want: []string{"--json: ", "the directory " + filepath.Join(dir, "ro") + " is not writable: permission denied"}},
		{name: "dump under a read-only directory", dump: filepath.Join(dir, "ro", "d"), needsUser: true,
			want: []string{"--dump: ", "cannot be created: the directory " + filepath.Join(dir, "ro") + " is not writable: permission denied"}},
	}
	ro := filepath.Join(dir, "ro")
	require.NoError(t, os.Mkdir(ro, 0o555))
	t.Cleanup(func() { os.Chmod(ro, 0o755) })
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.needsUser && os.Geteuid() == 0 {
				t.Skip("root writes into read-only directories; see TestCheckOutputsReadOnlyMount")
			}
			before := listTree(t, dir)
			err := Run{JSON: c.json, Dump: c.dump}.CheckOutputs()
			assert.Equal(t, before, listTree(t, dir), "the check left something behind")
			if len(c.want) == 0 {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			msg := err.Error()
			assert.NotContains(t, msg, "\n", "the error must be one line")
			for _, w := range c.want {
				assert.Contains(t, msg, w)
			}
		})
	}
}

// TestCheckOutputsReadOnlyMount: a directory nobody can write, root
// included, is refused; /proc is one on every Linux machine.
func TestCheckOutputsReadOnlyMount(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	for _, r := range []Run{{JSON: "/proc/gpubench.json"}, {Dump: "/proc/gpubench-dump"}} {
		err := r.CheckOutputs()
		require.Error(t, err, "%+v", r)
		assert.Contains(t, err.Error(), "the directory /proc is not writable")
		assert.NotContains(t, err.Error(), "\n")
	}
}

// TestParseRunChecksOutputs: a run's flags are refused over its output
// paths, before any GPU call; plan and check, which write neither, are
// not.
func TestParseRunChecksOutputs(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "missing", "x.json")
	_, err := ParseRun([]string{"--model=tiny", "--json=" + bad})
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "--json: "+bad+": "), err.Error())
	_, _, err = ParseCommand([]string{"--model=tiny", "--json=" + bad}, nil, 0)
	assert.NoError(t, err)
}

// listTree lists the paths under dir.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	require.NoError(t, err)
	return paths
}
