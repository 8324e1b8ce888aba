// Package launch runs a data-parallel gpubench (--gpus=N): the parent
// process starts N children, one a GPU, and the children find each other
// through it.
//
// Each child is the same binary with the same arguments, re-executed with
// its rank in the environment (EnvRank, EnvWorld, EnvDevice), so that
// nsys, following the process tree, profiles every rank as its own
// process. The parent never touches a GPU: it runs from package startup,
// before cuInit, and this package imports nothing that does.
//
// NCCL's unique id goes through the parent, over pipes, never the
// network: rank 0 makes it and writes it on its id pipe (fd 3), the parent
// reads it and writes it to every other rank's id pipe (their fd 3), and
// each rank then joins the communicator. Every rank writes its measured
// step times, as one line of JSON, on its result pipe (fd 4).
//
// A child that fails makes the parent end the others (SIGTERM, then
// SIGKILL after a grace period: a rank blocked in a collective waits for
// the failed one forever) and return an error naming the rank and the last
// line it wrote on stderr. SIGINT and SIGTERM received by the parent are
// forwarded to every child, each of which closes its profiler window and
// reports its partial statistics. The children run in their own process
// group, so that a terminal's ^C reaches them once, through the parent.
package launch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The environment of a child.
const (
	EnvRank   = "GPUBENCH_RANK"
	EnvWorld  = "GPUBENCH_WORLD"
	EnvDevice = "GPUBENCH_DEVICE"
	// EnvNVLS is NCCL's switch for NVLink multicast (NVLS), which gpubench
	// keeps off in every rank: the team's machines lend GPUs whose fabric
	// does not support it.
	EnvNVLS = "NCCL_NVLS_ENABLE"
)

// The file descriptors a child inherits: its id pipe (rank 0 writes the
// id on it, the others read it) and its result pipe.
const (
	idFD     = 3
	resultFD = 4
)

// Child is this process's place in a data-parallel run, read from the
// environment the parent gave it.
type Child struct {
	Rank, World, Device int
	id, result          *os.File
}

// FromEnv returns the child this process is, or ok false when it is not
// one (no EnvRank): the parent, or a plain run.
func FromEnv() (c *Child, ok bool, err error) {
	rs, isChild := os.LookupEnv(EnvRank)
	if !isChild {
		return nil, false, nil
	}
	num := func(name string) (int, error) {
		v, err := strconv.Atoi(os.Getenv(name))
		if err != nil {
			return 0, fmt.Errorf("launch: %s=%q is no number (gpubench's parent sets it)", name, os.Getenv(name))
		}
		return v, nil
	}
	c = &Child{}
	if c.Rank, err = num(EnvRank); err != nil {
		return nil, true, err
	}
	if c.World, err = num(EnvWorld); err != nil {
		return nil, true, err
	}
	if c.Device, err = num(EnvDevice); err != nil {
		return nil, true, err
	}
	if c.World < 1 || c.Rank < 0 || c.Rank >= c.World {
		return nil, true, fmt.Errorf("launch: rank %s of %d is no rank", rs, c.World)
	}
	c.id = os.NewFile(idFD, "id pipe")
	c.result = os.NewFile(resultFD, "result pipe")
	return c, true, nil
}

// ExchangeID gives every rank the same id: rank 0 makes it with make and
// sends it to the parent, the others wait for the parent to send it on.
// An id is opaque text without newlines (nccl.UniqueID's hex form).
func (c *Child) ExchangeID(make func() (string, error)) (string, error) {
	defer c.id.Close()
	if c.Rank == 0 {
		id, err := make()
		if err != nil {
			return "", err
		}
		if strings.ContainsAny(id, "\n") || id == "" {
			return "", fmt.Errorf("launch: the id %q cannot go through the pipe", id)
		}
		if _, err := io.WriteString(c.id, id+"\n"); err != nil {
			return "", fmt.Errorf("launch: send the id to the parent: %w", err)
		}
		return id, nil
	}
	line, err := bufio.NewReader(c.id).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("launch: rank %d got no id from the parent (%v): rank 0 failed first?", c.Rank, err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// Report sends the rank's result to the parent.
func (c *Child) Report(r Result) error {
	r.Rank = c.Rank
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = c.result.Write(append(b, '\n'))
	return err
}

// Result is what a rank measured: the step time and loss of each iteration
// it completed, and whether a signal cut it short.
type Result struct {
	Rank    int       `json:"rank"`
	Device  int       `json:"device"`
	StepMs  []float64 `json:"step_ms"`
	Losses  []float64 `json:"losses"`
	Partial bool      `json:"partial"`
	// AllReduce says how the rank reduced its gradients: "nccl" (the
	// library's version) or "none" (--gpus=1 without NCCL).
	AllReduce string `json:"allreduce"`
}

// Spec is a data-parallel run to start.
type Spec struct {
	// Exe and Args are the children's command; each child gets the
	// parent's environment plus Env, its rank's variables and EnvNVLS=0.
	Exe  string
	Args []string
	Env  []string
	// World is the number of ranks; rank r runs on device r.
	World int
	// Stdout and Stderr receive the children's output, each line
	// prefixed with "rank r: ".
	Stdout, Stderr io.Writer
	// Grace is how long a child may take to end after SIGTERM before it
	// is killed (0: DefaultGrace).
	Grace time.Duration
}

// DefaultGrace is how long the parent waits for a rank to end after
// SIGTERM: long enough to close a profiler window and print, short beside
// NCCL's own timeouts.
const DefaultGrace = 10 * time.Second

// RankError is a rank that failed.
type RankError struct {
	Rank int
	Err  error  // its exit status, or why it could not start
	Last string // the last line it wrote on stderr
}

func (e *RankError) Error() string {
	s := fmt.Sprintf("rank %d failed: %v", e.Rank, e.Err)
	if e.Last != "" {
		s += ": " + e.Last
	}
	return s
}

func (e *RankError) Unwrap() error { return e.Err }

// ErrInterrupted is returned, with every rank's partial result, when the
// parent forwarded a signal.
var ErrInterrupted = errors.New("interrupted")

type child struct {
	rank   int
	cmd    *exec.Cmd
	id     *os.File // the parent's end of the child's id pipe
	stderr *lineWriter
	result *Result
	// exited is closed once the child's exit is on Run's channel.
	exited chan struct{}
}

type exit struct {
	rank int
	err  error
}

// Run starts spec's children and waits for them all. Signals received on
// sig are forwarded to every child. It returns every rank's result, in
// rank order, and: nil; a *RankError for the first rank that failed (the
// others ended); or ErrInterrupted after a forwarded signal.
func Run(spec Spec, sig <-chan os.Signal) ([]Result, error) {
	if spec.World < 1 {
		return nil, fmt.Errorf("launch: %d ranks", spec.World)
	}
	grace := spec.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	var mu sync.Mutex // the children's lines, whole, one at a time
	exits := make(chan exit, spec.World)
	kids := make([]*child, spec.World)
	for r := range kids {
		k, err := start(spec, r, &mu, exits)
		if err != nil {
			for _, o := range kids[:r] {
				o.kill()
				<-o.exited
			}
			return nil, &RankError{Rank: r, Err: err}
		}
		kids[r] = k
	}

	// The id: from rank 0's pipe to every other rank's. Should rank 0 end
	// without sending one, the others' pipes close only once its exit is
	// on the channel, so that the failure reported is rank 0's own, not
	// the others' missing id.
	go relayID(kids)

	var (
		failed      *RankError
		interrupted bool
		ending      <-chan time.Time
		left        = spec.World
	)
	endOthers := func() {
		for _, k := range kids {
			_ = k.cmd.Process.Signal(syscall.SIGTERM)
		}
		ending = time.After(grace)
	}
	for left > 0 {
		select {
		case e := <-exits:
			left--
			if e.err != nil && failed == nil && !interrupted {
				failed = &RankError{Rank: e.rank, Err: e.err, Last: kids[e.rank].stderr.last()}
				endOthers()
			}
		case s := <-sig:
			if !interrupted && failed == nil {
				interrupted = true
				for _, k := range kids {
					_ = k.cmd.Process.Signal(s)
				}
			}
		case <-ending:
			for _, k := range kids {
				k.kill()
			}
			ending = nil
		}
	}
	var out []Result
	for _, k := range kids {
		if k.result != nil {
			out = append(out, *k.result)
		}
	}
	switch {
	case failed != nil:
		return out, failed
	case interrupted:
		return out, ErrInterrupted
	}
	for _, k := range kids {
		if k.result == nil {
			return out, &RankError{Rank: k.rank, Err: errors.New("exited without reporting its result")}
		}
	}
	return out, nil
}

func start(spec Spec, rank int, mu *sync.Mutex, exits chan<- exit) (*child, error) {
	// The id pipe's direction depends on the rank: rank 0 writes it, the
	// others read it.
	idR, idW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		idR.Close()
		idW.Close()
		return nil, err
	}
	childID, parentID := idR, idW
	if rank == 0 {
		childID, parentID = idW, idR
	}
	cmd := exec.Command(spec.Exe, spec.Args...)
	cmd.Env = append(append(os.Environ(), spec.Env...),
		EnvRank+"="+strconv.Itoa(rank), EnvWorld+"="+strconv.Itoa(spec.World), EnvDevice+"="+strconv.Itoa(rank), EnvNVLS+"=0")
	cmd.ExtraFiles = []*os.File{childID, resW} // fds 3 and 4
	prefix := fmt.Sprintf("rank %d: ", rank)
	stdout, stderr := spec.Stdout, spec.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	k := &child{rank: rank, cmd: cmd, id: parentID, exited: make(chan struct{})}
	k.stderr = &lineWriter{prefix: prefix, out: stderr, mu: mu}
	outw := &lineWriter{prefix: prefix, out: stdout, mu: mu}
	cmd.Stdout, cmd.Stderr = outw, k.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		for _, f := range []*os.File{idR, idW, resR, resW} {
			f.Close()
		}
		return nil, err
	}
	childID.Close()
	resW.Close()
	resultDone := make(chan struct{})
	go func() {
		defer close(resultDone)
		defer resR.Close()
		sc := bufio.NewScanner(resR)
		sc.Buffer(make([]byte, 0, 1<<16), 1<<24)
		for sc.Scan() {
			var r Result
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				k.result = &r
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		<-resultDone
		outw.flush()
		k.stderr.flush()
		exits <- exit{rank, err}
		close(k.exited)
	}()
	return k, nil
}

func (k *child) kill() { _ = k.cmd.Process.Kill() }

// relayID reads rank 0's id and writes it to every other rank; a rank
// that has ended already is skipped (its exit is the error). Without an id
// from rank 0 it waits for rank 0's exit, then closes the others' pipes,
// which they read as the end of the run.
func relayID(kids []*child) {
	line, err := bufio.NewReader(kids[0].id).ReadString('\n')
	kids[0].id.Close()
	if err != nil {
		<-kids[0].exited
	}
	for _, k := range kids[1:] {
		if err == nil {
			_, _ = io.WriteString(k.id, line)
		}
		k.id.Close()
	}
}

// lineWriter writes whole lines to out, each after prefix, and keeps the
// last non-empty one.
type lineWriter struct {
	prefix string
	out    io.Writer
	mu     *sync.Mutex
	buf    []byte
	lastMu sync.Mutex
	lastLn string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) emit(line string) {
	line = strings.TrimSuffix(line, "\r")
	w.mu.Lock()
	fmt.Fprintf(w.out, "%s%s\n", w.prefix, line)
	w.mu.Unlock()
	if strings.TrimSpace(line) != "" {
		w.lastMu.Lock()
		w.lastLn = line
		w.lastMu.Unlock()
	}
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

func (w *lineWriter) last() string {
	w.lastMu.Lock()
	defer w.lastMu.Unlock()
	return w.lastLn
}
