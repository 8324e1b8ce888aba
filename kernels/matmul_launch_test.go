package kernels

import (
	"testing"

	"github.com/gpubench/gpubench/internal/gemmplan"
	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// TestMatmulOptionsLaunches runs on CI: the launches a planted flaw's
// MatmulOptions make are the clean launches with exactly the flaw's
// change. NoPad renames the forward to matmul_forward_nopad (an entry of
// matmul.ptx with matmul_forward's parameters) and keeps its tile, grid,
// block, split and arguments; gemmplan.Largest gives every product the
// 128×128 tile and one slice, with the same operands.
func TestMatmulOptionsLaunches(t *testing.T) {
	f32 := program.F32
	for _, sh := range [][3]int{{512, 128, 384}, {512, 128, 128}, {512, 512, 128}, {37, 96, 288}, {4096, 768, 2304}} {
		n, c, oc := sh[0], sh[1], sh[2]
		inp, w, bias, out := view("inp", f32, n*c), view("w", f32, oc*c), view("bias", f32, oc), view("out", f32, n*oc)
		ws := MatmulScratch{Partials: view("partials", f32, 1<<22), Counters: view("counters", program.I32, 1<<12)}
		for _, sms := range []int{1, 132} {
			clean := MatmulForwardWith(out, inp, w, bias, ws, n, c, oc, sms, MatmulOptions{})
			nopad := MatmulForwardWith(out, inp, w, bias, ws, n, c, oc, sms, MatmulOptions{NoPad: true})
			if nopad.Name != MatmulForwardNoPad || nopad.Module != clean.Module {
				t.Fatalf("%v: NoPad launches %s/%s", sh, nopad.Module, nopad.Name)
			}
			matchesPTX(t, nopad)
			nopad.Name = clean.Name
			if !sameOp(nopad, clean) {
				t.Errorf("%v sms %d: NoPad changes more than the name: %+v vs %+v", sh, sms, nopad, clean)
			}

			big := gemmplan.Tiles[0]
			low := MatmulForwardWith(out, inp, w, bias, ws, n, c, oc, sms, MatmulOptions{Choice: gemmplan.Largest})
			if low.Name != clean.Name || low.Grid != program.D1(big.Blocks(n, oc)) || low.Block != program.D1(big.Threads()) || tileArg(low) != big.Code {
				t.Errorf("%v sms %d: Largest forward %s<<<%v, %v>>> tile %d", sh, sms, low.Name, low.Grid, low.Block, tileArg(low))
			}
			dinp, dw, dbias, dout := view("dinp", f32, n*c), view("dw", f32, oc*c), view("dbias", f32, oc), view("dout", f32, n*oc)
			cb := MatmulBackward(dinp, dw, dbias, dout, inp, w, ws, n, c, oc, sms)
			lb := MatmulBackwardWith(dinp, dw, dbias, dout, inp, w, ws, n, c, oc, sms, MatmulOptions{Choice: gemmplan.Largest})
			if len(lb) != len(cb) {
				t.Fatalf("%v: %d backward launches, clean %d", sh, len(lb), len(cb))
			}
			for i := range lb {
				if lb[i].Name != cb[i].Name {
					t.Errorf("%v: backward launch %d is %s, clean %s", sh, i, lb[i].Name, cb[i].Name)
				}
				matchesPTX(t, lb[i])
			}
			if g := lb[0].Grid; g != program.D1(big.Blocks(n, c)) || tileArg(lb[0]) != big.Code || intArg(lb[0], "splits") != 1 {
				t.Errorf("%v: Largest input gradient grid %v tile %d", sh, g, tileArg(lb[0]))
			}
			if g := lb[1].Grid; g != program.D2(big.Blocks(oc, c), 1) || tileArg(lb[1]) != big.Code || intArg(lb[1], "splits") != 1 || intArg(lb[1], "slice_k") != n {
				t.Errorf("%v: Largest weight gradient grid %v tile %d splits %d", sh, g, tileArg(lb[1]), intArg(lb[1], "splits"))
			}
			if !sameOp(lb[2], cb[2]) {
				t.Errorf("%v: Largest changes the bias gradient", sh)
			}
		}
	}
}

func tileArg(op program.Op) int { return intArg(op, "tile") }

func intArg(op program.Op, name string) int {
	for _, a := range op.Args {
		if a.Param == name {
			return int(a.Int)
		}
	}
	return -1
}

// sameOp compares two launches' entry, shape and arguments.
func sameOp(a, b program.Op) bool {
	if a.Module != b.Module || a.Name != b.Name || a.Grid != b.Grid || a.Block != b.Block || len(a.Args) != len(b.Args) || a.FLOPs != b.FLOPs || a.Bytes != b.Bytes {
		return false
	}
	for i := range a.Args {
		x, y := a.Args[i], b.Args[i]
		if x.Param != y.Param || x.Kind != y.Kind || x.Int != y.Int || x.View != y.View {
			return false
		}
	}
	return true
}

// TestBiasSplit runs on CI: bias_backward_bf16's row split covers the rows
// with no empty slice, fits the workspace, fills gpt2-124m's GPU (the
// split the GPU tests run at their own shapes), falls back to one block a
// column block without a workspace, and its launch matches the PTX entry.
func TestBiasSplit(t *testing.T) {
	bf16 := program.BF16
	big := MatmulScratch{Partials: view("partials", program.F32, 1<<22), Counters: view("counters", program.I32, 1<<12)}
	small := MatmulScratch{Partials: view("partials", program.F32, 3*768), Counters: view("counters", program.I32, 12)}
	for _, sh := range [][2]int{{1, 1}, {64, 768}, {200, 300}, {8192, 768}, {8192, 2304}, {8192, 3072}, {1000, 50257}} {
		n, oc := sh[0], sh[1]
		for _, ws := range []MatmulScratch{{}, small, big} {
			for _, sms := range []int{1, 132} {
				splits, rows := BiasSplit(n, oc, sms, ws)
				cols := ceilDiv(oc, ptx.BiasBackwardBF16Cols)
				switch {
				case splits < 1 || rows < 1 || splits*rows < n || (splits-1)*rows >= max(n, 1):
					t.Fatalf("n=%d oc=%d sms=%d: %d slices of %d rows do not cover the rows exactly", n, oc, sms, splits, rows)
				case splits > 1 && (int64(splits*oc) > ws.Partials.Elems || int64(cols) > ws.Counters.Elems):
					t.Fatalf("n=%d oc=%d: %d slices do not fit the workspace %v", n, oc, splits, ws)
				case splits > 1 && rows < 2*ptx.BiasBackwardBF16Rows:
					t.Fatalf("n=%d oc=%d: slices of %d rows, fewer than two a thread", n, oc, rows)
				case ws.Partials.IsNull() && splits != 1:
					t.Fatalf("n=%d oc=%d: %d slices without a workspace", n, oc, splits)
				}
				if n == 8192 && sms == 132 && ws == big && cols*splits < biasBlocksPerSM*sms {
					t.Fatalf("n=%d oc=%d: %d blocks for %d SMs", n, oc, cols*splits, sms)
				}
				matchesPTX(t, BiasBackwardBF16(view("dbias", bf16, oc), view("dout", bf16, n*oc), ws, n, oc, oc, sms))
			}
		}
	}
}
