package kernels

import (
	"fmt"
	"testing"

	"github.com/gpubench/gpubench/internal/program"
	"github.com/gpubench/gpubench/ptx"
)

// These run without a GPU: the decode attention's launches, split rule
// and scratch bound.

// decodeShape is a decode step: B sequences, NH query and NKV key/value
// heads of size hs, a cache of MaxT positions.
type decodeShape struct{ b, nh, nkv, hs, maxT int }

func (s decodeShape) String() string {
	return fmt.Sprintf("B%d_NH%d_NKV%d_hs%d_MaxT%d", s.b, s.nh, s.nkv, s.hs, s.maxT)
}

// decodeOps builds the launches of shape s at pos, tensors stored as e,
// with the scratch DecodeAttentionScratchSize gives.
func decodeOps(s decodeShape, e program.Elem, pos, sms int) []program.Op {
	W, KV := (s.nh+2*s.nkv)*s.hs, s.nkv*s.hs
	return DecodeAttention(view("out", e, s.b*s.nh*s.hs), view("qkv", e, s.b*W),
		view("kcache", e, s.b*s.maxT*KV), view("vcache", e, s.b*s.maxT*KV),
		view("scratch", program.F32, DecodeAttentionScratchSize(s.b, s.nh, s.hs, s.maxT, sms)),
		s.b, pos, s.nh, s.nkv, s.hs, s.maxT, sms)
}

// TestDecodeAttentionOps: at every position of several caches, both
// launches validate, pass the parameters their PTX entries declare, cover
// every position with non-empty splits, fit the scratch bound and the
// default dynamic shared memory, and count the traffic of the positions
// read (0..pos only).
func TestDecodeAttentionOps(t *testing.T) {
	for _, s := range []decodeShape{{1, 4, 4, 64, 300}, {3, 8, 2, 128, 520}, {8, 32, 32, 128, 4096}, {8, 32, 8, 128, 4096}, {2, 12, 1, 32, 70}, {1, 5, 1, 16, 2100}} {
		for _, e := range []program.Elem{program.F32, program.BF16} {
			for _, sms := range []int{1, 108, 132} {
				for pos := 0; pos < s.maxT; pos += 1 + pos/7 {
					ops := decodeOps(s, e, pos, sms)
					if len(ops) != 2 {
						t.Fatalf("%v pos %d: %d ops, want the split and the combine", s, pos, len(ops))
					}
					sp, cb := ops[0], ops[1]
					for _, op := range ops {
						if err := program.Validate(&op); err != nil {
							t.Fatalf("%v pos %d: %v", s, pos, err)
						}
						params, ok := ptx.Params(op.Module, op.Name)
						if !ok || len(params) != len(op.Args) {
							t.Fatalf("%v: %s.%s has PTX parameters %v (%v), the launch passes %d", s, op.Module, op.Name, params, ok, len(op.Args))
						}
					}
					arg := func(op program.Op, name string) int {
						for _, a := range op.Args {
							if a.Param == name {
								return int(a.Int)
							}
						}
						t.Fatalf("%s has no argument %s", op.Name, name)
						return 0
					}
					splits, chunk := arg(sp, "splits"), arg(sp, "chunk")
					L := pos + 1
					if splits < 1 || chunk < 1 || (splits-1)*chunk >= L || splits*chunk < L || chunk > decodeMaxChunk {
						t.Fatalf("%v pos %d: %d splits of %d positions do not cover 0..%d with none empty", s, pos, splits, chunk, pos)
					}
					if arg(cb, "splits") != splits {
						t.Fatalf("%v pos %d: the combine merges %d splits, the split kernel writes %d", s, pos, arg(cb, "splits"), splits)
					}
					if need, have := decodeScratch(s.b, s.nh, s.hs, splits), DecodeAttentionScratchSize(s.b, s.nh, s.hs, s.maxT, sms); need > have {
						t.Fatalf("%v pos %d SMs %d: %d splits need %d scratch floats, DecodeAttentionScratchSize gives %d", s, pos, sms, splits, need, have)
					}
					if sp.SharedBytes > program.DefaultDynamicShared {
						t.Fatalf("%v pos %d: %d B of dynamic shared memory", s, pos, sp.SharedBytes)
					}
					g := ceilDiv(s.nh/s.nkv, ptx.DecodeHeads)
					if sp.Grid != program.D3(splits*g, s.nkv, s.b) || cb.Grid != program.D1(s.b*s.nh) {
						t.Fatalf("%v pos %d: grids %v and %v", s, pos, sp.Grid, cb.Grid)
					}
					size := e.Size()
					cache := int64(s.b*L*s.nkv*s.hs) * size
					scratch := int64(decodeScratch(s.b, s.nh, s.hs, splits)) * 4
					if want := 2*cache + int64(s.b*s.nh*s.hs)*size + scratch; sp.Bytes != want {
						t.Fatalf("%v pos %d: the split moves %d bytes, want %d", s, pos, sp.Bytes, want)
					}
				}
			}
		}
	}
}

// TestDecodeAttentionFillsTheGPU: at the LLaMA decode shapes of batch 8
// (llama2-7b's 32 kv heads, llama3-8b's 8) the split kernel gives every
// one of 132 SMs at least 2 blocks, at a short cache and at a full one.
// Batch 1 is logged: at pos 511 its 512 positions make at most 8 splits
// of decodeMinChunk.
func TestDecodeAttentionFillsTheGPU(t *testing.T) {
	const sms = 132
	for _, s := range []decodeShape{{8, 32, 32, 128, 4096}, {8, 32, 8, 128, 4096}, {1, 32, 8, 128, 4096}, {1, 32, 32, 128, 4096}} {
		for _, pos := range []int{511, 4095} {
			sp := decodeOps(s, program.BF16, pos, sms)[0]
			blocks := sp.Grid.X * sp.Grid.Y * sp.Grid.Z
			t.Logf("%v pos %d: %d blocks (%d splits)", s, pos, blocks, sp.Grid.X)
			if s.b == 8 && blocks < 2*sms {
				t.Errorf("%v pos %d: %d blocks for %d SMs", s, pos, blocks, sms)
			}
		}
	}
}

// TestDecodeAttentionRefuses: shapes the kernels cannot run panic when the
// launch is built, not on the GPU.
func TestDecodeAttentionRefuses(t *testing.T) {
	ok := decodeShape{2, 8, 2, 64, 100}
	cases := []struct {
		what string
		s    decodeShape
		e    program.Elem
		pos  int
	}{
		{"NKV not dividing NH", decodeShape{2, 8, 3, 64, 100}, program.F32, 5},
		{"pos past the cache", ok, program.F32, 100},
		{"negative pos", ok, program.F32, -1},
		{"head size over the limit", decodeShape{2, 2, 2, 2 * ptx.DecodeMaxHeadSize, 100}, program.BF16, 5},
		{"bf16 head size not a multiple of 8", decodeShape{2, 8, 2, 36, 100}, program.BF16, 5},
		{"f32 head size not a multiple of 4", decodeShape{2, 8, 2, 30, 100}, program.F32, 5},
	}
	for _, c := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: DecodeAttention did not panic", c.what)
				}
			}()
			decodeOps(c.s, c.e, c.pos, 132)
		}()
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("too small a scratch: decodeAttention did not panic")
			}
		}()
		s := ok
		W, KV := (s.nh+2*s.nkv)*s.hs, s.nkv*s.hs
		decodeAttention(view("out", program.F32, s.b*s.nh*s.hs), view("qkv", program.F32, s.b*W),
			view("kcache", program.F32, s.b*s.maxT*KV), view("vcache", program.F32, s.b*s.maxT*KV),
			view("scratch", program.F32, decodeScratch(s.b, s.nh, s.hs, 2)), s.b, 99, s.nh, s.nkv, s.hs, s.maxT, 3)
	}()
}
