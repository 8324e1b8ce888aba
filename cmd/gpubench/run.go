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
func runBenchmark(args []string, stdout, stderr io.Writer) error {
	r, err := config.ParseRun(args)
	if err != nil {
		if errors.Is(err, config.ErrHelp) {
			return err
		}
		return cli.UsageError{Err: err}
	}
	need, err := memplan.New(r.Dims, r.Mode, r.DType)
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
	opts := cli.OptionsOf(r, dev.Info.SMs)
	opts.SharedOptIn = dev.Info.SharedOptIn
	prog := model.Program(r.Dims, r.Mode, opts)
	if err := prog.CheckDevice(model.Device{Name: dev.Info.Name, Major: dev.Info.CCMajor, Minor: dev.Info.CCMinor, SharedOptIn: dev.Info.SharedOptIn}); err != nil {
		return cli.UsageError{Err: err}
	}
	if err := preflight(dev, r, need); err != nil {
		return err
	}
	nvtx.Initialize()
	nvtx.NameOSThread("gpubench main")

	x, err := cuexec.New(dev)
	if err != nil {
		return err
	}
	defer x.Close()
	x.SyncEachLaunch = r.SyncLaunches
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

	res := &report.Result{StartedAt: time.Now(), Config: report.ConfigOf(r), Device: deviceOf(dev.Info), Kernels: prog.KernelPath()}
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
		if err := step(m, r.Mode); err != nil {
			return fmt.Errorf("warm-up iteration %d: %w", i, err)
		}
	}
	if err := dev.Synchronize(); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	timer, err := newTimer(r.Iters)
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

// preflight refuses a run that would not fit before anything is allocated.
func preflight(dev *gpu.Device, r config.Run, need memplan.Plan) error {
	free, _, err := dev.MemInfo()
	if err != nil {
		return fmt.Errorf("cuMemGetInfo: %w", err)
	}
	if need.Fits(free) {
		return nil
	}
	msg := fmt.Sprintf("--batch-size: %s at batch %d needs %s of device memory, %s is free",
		r.Model(), r.Dims.B, report.HumanBytes(need.Required), report.HumanBytes(free))
	if b := memplan.LargestBatchThatFits(r.Dims, r.Mode, r.DType, free); b > 0 {
		return cli.UsageError{Err: fmt.Errorf("%s (the largest batch that fits is %d)", msg, b)}
	}
	return cli.UsageError{Err: fmt.Errorf("%s (not even batch 1 fits)", msg)}
}

func deviceOf(i gpu.Info) report.Device {
	return report.Device{Index: i.Ordinal, Name: i.Name, CCMajor: i.CCMajor, CCMinor: i.CCMinor, SMs: i.SMs,
		MemoryBytes: i.TotalMemory, MaxSMClockMHz: i.ClockMHz, CUDAVersion: i.CUDAVersion()}
}

// step runs one untimed iteration.
func step(m *cuda.Model, mode config.Mode) error {
	if err := m.Prologue(); err != nil {
		return err
	}
	if err := m.Forward(); err != nil {
		return err
	}
	if mode == config.Train {
		return m.Backward()
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
// the iteration's own operations (a planted flaw's, before the forward),
// the program's forward range, then its backward range in train mode. The
// caller pushes and pops the iteration range around it. The step time
// includes the prologue: a flaw's cost is part of the step.
func timedStep(m *cuda.Model, s cu.Stream, t *timer, i int) error {
	if err := t.start[i].Record(s); err != nil {
		return err
	}
	if err := m.Prologue(); err != nil {
		return err
	}
	if err := m.Forward(); err != nil {
		return err
	}
	if err := t.forwardEnd[i].Record(s); err != nil {
		return err
	}
	if m.Mode != config.Train {
		return nil
	}
	if err := m.Backward(); err != nil {
		return err
	}
	return t.backwardEnd[i].Record(s)
}

// timer holds three CUDA events per iteration, created before the loop.
type timer struct {
	start, forwardEnd, backwardEnd []cu.Event
}

func newTimer(iters int) (*timer, error) {
	t := &timer{}
	for _, evs := range []*[]cu.Event{&t.start, &t.forwardEnd, &t.backwardEnd} {
		for i := 0; i < iters; i++ {
			e, err := cu.MakeEvent(cu.DefaultEvent)
			if err != nil {
				t.destroy()
				return nil, fmt.Errorf("create CUDA event: %w", err)
			}
			*evs = append(*evs, e)
		}
	}
	return t, nil
}

func (t *timer) destroy() {
	for _, evs := range [][]cu.Event{t.start, t.forwardEnd, t.backwardEnd} {
		for i := range evs {
			cu.DestroyEvent(&evs[i])
		}
	}
}

// fill reads the events of the completed iterations into res.
func (t *timer) fill(res *report.Result, wall []time.Duration, losses []float32, mode config.Mode) error {
	for i := range wall {
		fwd, err := t.start[i].Elapsed(t.forwardEnd[i])
		if err != nil {
			return fmt.Errorf("read forward events of iteration %d: %w", i, err)
		}
		it := report.Iteration{Index: i, ForwardMs: fwd, StepMs: fwd,
			WallMs: float64(wall[i].Nanoseconds()) / 1e6, Loss: report.Float(losses[i])}
		if mode == config.Train {
			bwd, err := t.forwardEnd[i].Elapsed(t.backwardEnd[i])
			if err != nil {
				return fmt.Errorf("read backward events of iteration %d: %w", i, err)
			}
			it.BackwardMs = bwd
			if it.StepMs, err = t.start[i].Elapsed(t.backwardEnd[i]); err != nil {
				return err
			}
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
