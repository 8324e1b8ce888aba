package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gpubench/gpubench/internal/cli"
	"github.com/gpubench/gpubench/internal/config"
	"github.com/gpubench/gpubench/internal/cudrv"
	"github.com/gpubench/gpubench/internal/cuexec"
	"github.com/gpubench/gpubench/internal/gpu"
	"github.com/gpubench/gpubench/internal/memplan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/internal/report"
	"github.com/gpubench/gpubench/internal/telemetry"
	"github.com/gpubench/gpubench/model"
	"github.com/gpubench/gpubench/model/cuda"
	"github.com/gpubench/gpubench/model/ref"
	"github.com/gpubench/gpubench/nvtx"
	"gorgonia.org/cu"
)

// runBenchmark is the Nsight Systems template, natively:
//
//	cudaProfilerStart()
//	for i in range(iters):
//	    push("iteration{i}")
//	    push("forward");  model(data);     pop()
//	    push("backward"); loss.backward(); pop()
//	    pop()
//	cudaProfilerStop()
//
// with warm-up iterations before the window and CUDA events around every
// forward and backward pass.
func runBenchmark(args []string, stdout, stderr io.Writer) (err error) {
	r, err := config.ParseRun(args)
	if err != nil {
		if errors.Is(err, config.ErrHelp) {
			return err
		}
		return cli.UsageError{Err: err}
	}
	// A rank of a data-parallel run (--gpus) learns its rank and device
	// from its parent (cli.RunParallel); nil for a plain run.
	rk, err := rankOf(&r, stderr)
	if err != nil {
		return err
	}
	// The flaws' buffers count too (unfused's GELU scratch).
	need, err := memplan.NewWith(r.Dims, r.Mode, model.Options{DType: r.DType, Flaws: r.Flaws})
	if err != nil {
		return cli.UsageError{Err: err}
	}

	// From here on every CUDA and NVTX call runs on this goroutine's
	// thread (gpu.Open locks it): the context and the NVTX range stack
	// belong to the thread.
	dev, err := gpu.Open(r.Device)
	if err != nil {
		return err
	}
	defer dev.Close()
	opts := cli.OptionsOf(r, dev.Info.SMs, 10*dev.Info.CCMajor+dev.Info.CCMinor)
	opts.SharedOptIn = dev.Info.SharedOptIn
	// The world is the parent's (a --scaling baseline runs one rank of a
	// --gpus=N command line).
	opts.DataParallel = rk.dataParallel()
	prog := model.Program(r.Dims, r.Mode, opts)
	// The memory the program on this GPU needs (its tier's buffers).
	if need, err = memplan.NewWith(r.Dims, r.Mode, opts); err != nil {
		return cli.UsageError{Err: err}
	}
	if err := prog.CheckDevice(model.Device{Name: dev.Info.Name, Major: dev.Info.CCMajor, Minor: dev.Info.CCMinor, SharedOptIn: dev.Info.SharedOptIn}); err != nil {
		return cli.UsageError{Err: err}
	}
	if err := preflight(dev, r, need); err != nil {
		return err
	}
	// A decode step is bound by memory bandwidth: measure the card's copy
	// bandwidth once, before the model is allocated, to compare with.
	var copyGBps float64
	if r.Mode == config.Generate {
		if copyGBps, err = dev.CopyBandwidth(CopyProbeBytes); err != nil {
			fmt.Fprintf(stderr, "gpubench: %v (the decode bandwidth is reported without its share)\n", err)
		}
	}
	nvtx.Initialize()
	nvtx.NameOSThread("gpubench main")

	x, err := cuexec.New(dev)
	if err != nil {
		return err
	}
	defer x.Close()
	x.SyncEachLaunch = r.SyncLaunches
	if err := rk.join(); err != nil {
		return err
	}
	defer func() { rk.close(err != nil) }()
	x.Comm = rk.communicator()
	if r.NVTXDomain != "" {
		d, err := nvtx.NewDomain(r.NVTXDomain)
		if err != nil {
			return err
		}
		defer d.Destroy()
		x.Domain = d
	}
	if err := x.NameCategories(); err != nil {
		return err
	}
	m, err := cuda.New(x, r.Dims, r.Mode, opts, r.Seed)
	if err != nil {
		return err
	}
	defer m.Free()
	if r.Rank > 0 {
		// Each rank trains on its own batch: rank r's is drawn from
		// seed+r, so rank 0's is the single-GPU run's, and every rank
		// starts from the same parameters (drawn from the seed).
		tokens, targets := ref.Inputs(r.Dims, r.Seed+uint64(r.Rank))
		if err := m.SetInputs(tokens, targets); err != nil {
			return err
		}
	}

	res := &report.Result{StartedAt: time.Now(), Config: report.ConfigOf(r), Device: deviceOf(dev.Info), Kernels: prog.KernelPath()}
	if r.Mode == config.Generate {
		res.Generate = &report.Generate{CopyGBps: copyGBps}
	}
	sampler, terr := telemetry.OpenPCI(dev.Info.PCIDomain, dev.Info.PCIBus, dev.Info.PCIDevice)
	if terr != nil {
		res.TelemetryError = terr.Error()
	} else {
		defer sampler.Close()
		res.Telemetry = &report.Telemetry{Static: sampler.Static()}
		res.Device.DriverVersion = sampler.Static().DriverVersion
	}

	if r.Dump != "" {
		if err := dump(m, r.Dump); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "gpubench: wrote one step's tensors to %s\n", r.Dump)
	}

	// Warm-up: module JIT, first-touch and clock ramp stay outside the
	// window and the statistics.
	for i := 0; i < r.Warmup; i++ {
		if err := step(m); err != nil {
			return fmt.Errorf("warm-up iteration %d: %w", i, err)
		}
	}
	if err := dev.Synchronize(); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	timer, err := newTimer(r.Iters, m.Passes())
	if err != nil {
		return err
	}
	defer timer.destroy()
	ranges, err := newIterationNames(x, r.Iters)
	if err != nil {
		return err
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(stop)

	if sampler != nil {
		before := sampler.Sample()
		res.Telemetry.Before = &before
		sampler.Start(100 * time.Millisecond)
	}
	progress := newProgress(stderr, r.Iters)
	win, err := newWindows(x, r.Windows())
	if err != nil {
		return err
	}
	var (
		loopErr error
		caught  os.Signal
		wall    = make([]time.Duration, 0, r.Iters)
		losses  = make([]float32, 0, r.Iters)
	)
	for i := 0; i < r.Iters && loopErr == nil && caught == nil; i++ {
		if loopErr = win.open(i); loopErr != nil {
			break
		}
		t0 := time.Now()
		x.Domain.Push(&ranges.iteration[i])
		loopErr = timedStep(m, dev.Stream, timer, i)
		x.Domain.Pop() // iteration{i}
		if loopErr == nil {
			var loss float32
			loss, loopErr = m.Loss() // waits for the iteration to finish
			wall = append(wall, time.Since(t0))
			losses = append(losses, loss)
		}
		if loopErr == nil && r.CheckNumerics {
			loopErr = m.CheckNumerics()
		}
		if err := win.close(i); err != nil && loopErr == nil {
			loopErr = err
		}
		progress.update(i + 1)
		select {
		case caught = <-stop:
		default:
		}
	}
	if err := win.stop(); err != nil && loopErr == nil { // a window an error or a signal left open
		loopErr = err
	}
	progress.done()
	if sampler != nil {
		res.Telemetry.During = sampler.Stop()
		after := sampler.Sample()
		res.Telemetry.After = &after
	}
	if loopErr != nil {
		return loopErr
	}

	if err := timer.fill(res, wall, losses, r.Mode); err != nil {
		return err
	}
	res.Partial = caught != nil
	if err := rk.report(res, res.Partial); err != nil {
		return fmt.Errorf("rank %d: report to the parent: %w", r.Rank, err)
	}
	res.Memory.PeakBytes = dev.PeakAllocated()
	if err := res.Finalize(); err != nil {
		return err
	}
	if err := report.WriteTable(stdout, res); err != nil {
		return err
	}
	if r.JSON != "" {
		if err := report.WriteJSON(r.JSON, res); err != nil {
			return err
		}
	}
	if caught != nil {
		return cli.Interrupted{Err: fmt.Errorf("interrupted by %v after %d of %d iterations; the statistics above are partial", caught, len(wall), r.Iters)}
	}
	return nil
}

// CopyProbeBytes is the size of the copy that measures the device's
// bandwidth in generate mode: large enough that the copy runs at the
// card's steady rate (over 50 µs on an H200), small beside any model.
const CopyProbeBytes = 256 << 20

// preflight refuses a run that would not fit before anything is allocated.
func preflight(dev *gpu.Device, r config.Run, need memplan.Plan) error {
	free, _, err := dev.MemInfo()
	if err != nil {
		return fmt.Errorf("cuMemGetInfo: %w", err)
	}
	if err := memplan.Refuse(r.Model(), r.Dims, r.Mode, r.DType, need, free); err != nil {
		return cli.UsageError{Err: err}
	}
	return nil
}

func deviceOf(i gpu.Info) report.Device {
	return report.Device{Index: i.Ordinal, Name: i.Name, CCMajor: i.CCMajor, CCMinor: i.CCMinor, SMs: i.SMs,
		MemoryBytes: i.TotalMemory, MaxSMClockMHz: i.ClockMHz, CUDAVersion: i.CUDAVersion()}
}

// step runs one untimed iteration.
func step(m *cuda.Model) error {
	if err := m.Prologue(); err != nil {
		return err
	}
	for k := 0; k < m.Passes(); k++ {
		if err := m.Pass(k); err != nil {
			return err
		}
	}
	return nil
}

// iterationNames are the NVTX attributes of every iteration range, made
// before the loop so that a push converts no string: each name registered
// with the executor's domain, the iteration's class, and the iteration
// number as the payload. (The program's own ranges are the executor's.)
type iterationNames struct {
	iteration []nvtx.Attributes
}

func newIterationNames(x *cuexec.Executor, iters int) (iterationNames, error) {
	var rn iterationNames
	class := cuexec.RangeClassOf(&program.Range{Name: program.IterationTemplate})
	for i := 0; i < iters; i++ {
		s, err := x.Register(program.IterationName(i))
		if err != nil {
			return rn, err
		}
		rn.iteration = append(rn.iteration, nvtx.Attributes{Message: s, Color: class.Color, Category: class.Category,
			Payload: nvtx.Int64(int64(i))})
	}
	return rn, nil
}

// timedStep is one iteration of the template with its events recorded:
// the iteration's own operations (a planted flaw's, before the first
// pass), then each of the program's passes (forward and backward, or
// prefill and the decode steps), an event after each. The caller pushes
// and pops the iteration range around it. The step time includes the
// prologue: a flaw's cost is part of the step.
func timedStep(m *cuda.Model, s cu.Stream, t *timer, i int) error {
	if err := t.events[i][0].Record(s); err != nil {
		return err
	}
	if err := m.Prologue(); err != nil {
		return err
	}
	for k := 0; k < m.Passes(); k++ {
		if err := m.Pass(k); err != nil {
			return err
		}
		if err := t.events[i][k+1].Record(s); err != nil {
			return err
		}
	}
	return nil
}

// timer holds the CUDA events of every iteration, created before the
// loop: events[i][0] at the start, events[i][k+1] after pass k.
type timer struct {
	events [][]cu.Event
}

func newTimer(iters, passes int) (*timer, error) {
	t := &timer{}
	for i := 0; i < iters; i++ {
		evs := make([]cu.Event, 0, passes+1)
		for k := 0; k <= passes; k++ {
			e, err := cu.MakeEvent(cu.DefaultEvent)
			if err != nil {
				t.events = append(t.events, evs)
				t.destroy()
				return nil, fmt.Errorf("create CUDA event: %w", err)
			}
			evs = append(evs, e)
		}
		t.events = append(t.events, evs)
	}
	return t, nil
}

func (t *timer) destroy() {
	for _, evs := range t.events {
		for i := range evs {
			cu.DestroyEvent(&evs[i])
		}
	}
}

// fill reads the events of the completed iterations into res: the passes'
// times, named by the mode (forward and backward; prefill and decode
// steps), and the step from the first event to the last.
func (t *timer) fill(res *report.Result, wall []time.Duration, losses []float32, mode config.Mode) error {
	for i := range wall {
		evs := t.events[i]
		passes := make([]float64, len(evs)-1)
		for k := range passes {
			ms, err := evs[k].Elapsed(evs[k+1])
			if err != nil {
				return fmt.Errorf("read the events of iteration %d, pass %d: %w", i, k, err)
			}
			passes[k] = ms
		}
		stepMs, err := evs[0].Elapsed(evs[len(evs)-1])
		if err != nil {
			return fmt.Errorf("read the events of iteration %d: %w", i, err)
		}
		it := report.Iteration{Index: i, ForwardMs: passes[0], StepMs: stepMs,
			WallMs: float64(wall[i].Nanoseconds()) / 1e6, Loss: report.Float(losses[i])}
		switch mode {
		case config.Train:
			it.BackwardMs = passes[1]
		case config.Generate:
			it.PrefillMs, it.DecodeMs = passes[0], passes[1:]
		}
		res.Iterations = append(res.Iterations, it)
	}
	return nil
}

// windows opens and closes the run's profiler windows around the measured
// iterations: cuProfilerStart, then an NVTX range called "profile" (for
// nsys -c nvtx -p profile), at each window's first iteration; the range's
// pop and cuProfilerStop after its last.
type windows struct {
	x       *cuexec.Executor
	ws      []config.Window
	profile *nvtx.Attributes
	inside  bool
}

func newWindows(x *cuexec.Executor, ws []config.Window) (*windows, error) {
	w := &windows{x: x, ws: ws}
	if len(ws) > 0 {
		s, err := x.Register(config.ProfileRange)
		if err != nil {
			return nil, err
		}
		class := cuexec.RangeClassOf(&program.Range{Name: config.ProfileRange})
		w.profile = &nvtx.Attributes{Message: s, Color: class.Color, Category: class.Category}
	}
	return w, nil
}

func (w *windows) open(i int) error {
	for _, win := range w.ws {
		if win.First == i {
			if err := cudrv.ProfilerStart(); err != nil {
				return err
			}
			w.x.Domain.Push(w.profile)
			w.inside = true
		}
	}
	return nil
}

func (w *windows) close(i int) error {
	for _, win := range w.ws {
		if win.Last == i && w.inside {
			return w.stop()
		}
	}
	return nil
}

// stop closes the open window, if any.
func (w *windows) stop() error {
	if !w.inside {
		return nil
	}
	w.inside = false
	w.x.Domain.Pop()
	return cudrv.ProfilerStop()
}
