package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress prints an updating "iteration i/n" line on stderr, only when
// stderr is a terminal and only once a run has lasted a couple of seconds:
// short runs and redirected output stay clean.
type progress struct {
	w       io.Writer
	n       int
	started time.Time
	shown   bool
	enabled bool
}

const progressDelay = 2 * time.Second

func newProgress(w io.Writer, n int) *progress {
	p := &progress{w: w, n: n, started: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.enabled = true
		}
	}
	return p
}

func (p *progress) update(done int) {
	if !p.enabled || time.Since(p.started) < progressDelay {
		return
	}
	p.shown = true
	elapsed := time.Since(p.started)
	left := time.Duration(float64(elapsed) / float64(done) * float64(p.n-done))
	fmt.Fprintf(p.w, "\riteration %d/%d, %s elapsed, about %s left ", done, p.n,
		elapsed.Round(time.Second), left.Round(time.Second))
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
