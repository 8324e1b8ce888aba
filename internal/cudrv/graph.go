package cudrv

/*
#include <cuda.h>
*/
import "C"

import (
	"unsafe"
)

// The CUDA graph calls gorgonia.org/cu lacks: stream capture, instantiation
// and launch. A Graph is made by capturing what one stream enqueues between
// BeginCapture and EndCapture; its instantiation (GraphExec) replays every
// captured operation with one launch.

// Stream is a CUstream handle. It has the layout of gorgonia.org/cu's
// Stream (one CUstream field), so StreamOf converts one without cu here.
type Stream struct{ s C.CUstream }

// StreamOf returns the handle of a gorgonia.org/cu Stream (passed as a
// pointer to it: cu.Stream is a struct holding one CUstream).
func StreamOf(cuStream unsafe.Pointer) Stream { return Stream{*(*C.CUstream)(cuStream)} }

// BeginCapture starts capturing the stream's work into a graph instead of
// running it (cuStreamBeginCapture, thread-local mode: only this thread's
// unsafe calls, such as a synchronisation, invalidate the capture).
func BeginCapture(s Stream) error {
	return check("cuStreamBeginCapture", C.cuStreamBeginCapture(s.s, C.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL))
}

// Graph is a captured graph.
type Graph struct{ g C.CUgraph }

// EndCapture ends the capture and returns the graph it made
// (cuStreamEndCapture). An invalidated capture returns its error and no
// graph.
func EndCapture(s Stream) (Graph, error) {
	var g C.CUgraph
	err := check("cuStreamEndCapture", C.cuStreamEndCapture(s.s, &g))
	return Graph{g}, err
}

// Nodes is the number of nodes in the graph.
func (g Graph) Nodes() (int, error) {
	var n C.size_t
	err := check("cuGraphGetNodes", C.cuGraphGetNodes(g.g, nil, &n))
	return int(n), err
}

// Destroy frees the graph; a zero Graph is ignored.
func (g Graph) Destroy() error {
	if g.g == nil {
		return nil
	}
	return check("cuGraphDestroy", C.cuGraphDestroy(g.g))
}

// GraphExec is an instantiated graph, ready to launch.
type GraphExec struct{ e C.CUgraphExec }

// Instantiate makes an executable graph (cuGraphInstantiateWithFlags, no
// flags).
func Instantiate(g Graph) (GraphExec, error) {
	var e C.CUgraphExec
	err := check("cuGraphInstantiateWithFlags", C.cuGraphInstantiateWithFlags(&e, g.g, 0))
	return GraphExec{e}, err
}

// Launch enqueues one replay of the graph on the stream (cuGraphLaunch).
func (e GraphExec) Launch(s Stream) error { return check("cuGraphLaunch", C.cuGraphLaunch(e.e, s.s)) }

// Destroy frees the executable graph; a zero GraphExec is ignored.
func (e GraphExec) Destroy() error {
	if e.e == nil {
		return nil
	}
	return check("cuGraphExecDestroy", C.cuGraphExecDestroy(e.e))
}
