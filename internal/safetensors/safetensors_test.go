package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestHeaderBytes(t *testing.T) {
	tensors := map[string]Tensor{
		"b": FromInt32([]int{2}, []int32{-1, 7}),
		"a": FromFloat64(nil, []float64{1.5}),
	}
	var buf bytes.Buffer
	if err := Write(&buf, tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	n := binary.LittleEndian.Uint64(b[:8])
	// 8-byte types first: a (F64, 8 bytes) at [0,8), then b (I32, 8 bytes) at [8,16).
	wantJSON := `{"__metadata__":{"format":"pt"},` +
		`"a":{"dtype":"F64","shape":[],"data_offsets":[0,8]},` +
		`"b":{"dtype":"I32","shape":[2],"data_offsets":[8,16]}}`
	want := wantJSON + strings.Repeat(" ", (8-len(wantJSON)%8)%8)
	if got := string(b[8 : 8+n]); got != want {
		t.Fatalf("header\n got %q\nwant %q", got, want)
	}
	if n%8 != 0 {
		t.Fatalf("header length %d not a multiple of 8", n)
	}
	data := b[8+n:]
	if len(data) != 16 {
		t.Fatalf("data is %d bytes, want 16", len(data))
	}
	if got := math.Float64frombits(binary.LittleEndian.Uint64(data[0:])); got != 1.5 {
		t.Errorf("a = %v", got)
	}
	if got := int32(binary.LittleEndian.Uint32(data[8:])); got != -1 {
		t.Errorf("b[0] = %v", got)
	}
	if got := int32(binary.LittleEndian.Uint32(data[12:])); got != 7 {
		t.Errorf("b[1] = %v", got)
	}
}

func TestHeaderPaddingAndNoMetadata(t *testing.T) {
	for n := 1; n <= 9; n++ {
		name := strings.Repeat("x", n)
		h, err := Header(map[string]Tensor{name: FromFloat32([]int{1}, []float32{0})}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(h)%8 != 0 {
			t.Errorf("name length %d: header length %d not a multiple of 8", n, len(h))
		}
		trimmed := strings.TrimRight(string(h), " ")
		if len(h)-len(trimmed) >= 8 {
			t.Errorf("name length %d: %d bytes of padding", n, len(h)-len(trimmed))
		}
		if strings.Contains(trimmed, MetadataKey) {
			t.Errorf("empty metadata written: %s", trimmed)
		}
		var m map[string]any
		if err := json.Unmarshal(h, &m); err != nil {
			t.Errorf("padded header is not JSON: %v", err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	f32 := []float32{1, -2.5, float32(math.Inf(1)), math.SmallestNonzeroFloat32, 3.25, 0}
	f64 := []float64{math.Pi, math.Copysign(0, -1), 1e300, math.NaN()}
	i32 := []int32{math.MinInt32, 0, math.MaxInt32}
	i64 := []int64{math.MinInt64, 42, math.MaxInt64, -7}
	tensors := map[string]Tensor{
		"f32":    FromFloat32([]int{2, 3}, f32),
		"f64":    FromFloat64([]int{4}, f64),
		"i32":    FromInt32([]int{3, 1}, i32),
		"i64":    FromInt64([]int{2, 2}, i64),
		"scalar": FromFloat32([]int{}, []float32{7}),
		"empty":  FromFloat32([]int{0, 5}, nil),
		"odd":    FromFloat32([]int{1}, []float32{9}),                  // 4 bytes: would misalign a later F64
		"bf16":   FromBF16([]int{3}, []uint16{0x3f80, 0xc020, 0x7f80}), // 6 bytes: 1, -2.5, +Inf
	}
	meta := map[string]string{"seed": "1", "note": "<&> ünï"}
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := WriteFile(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Metadata, meta) {
		t.Errorf("metadata %v, want %v", f.Metadata, meta)
	}
	if got, want := f.Names(), []string{"bf16", "empty", "f32", "f64", "i32", "i64", "odd", "scalar"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	for name, want := range tensors {
		got := f.Tensors[name]
		if got.DType != want.DType || !bytes.Equal(got.Data, want.Data) || len(got.Shape) != len(want.Shape) {
			t.Errorf("%s: got %s %v %x, want %s %v %x", name, got.DType, got.Shape, got.Data, want.DType, want.Shape, want.Data)
		}
		for i := range want.Shape {
			if got.Shape[i] != want.Shape[i] {
				t.Errorf("%s: shape %v, want %v", name, got.Shape, want.Shape)
			}
		}
	}
	// Every tensor's data starts aligned to its element size.
	h, _ := Header(tensors, meta)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(h, &raw); err != nil {
		t.Fatal(err)
	}
	for name, msg := range raw {
		if name == MetadataKey {
			continue
		}
		var e headerEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			t.Fatal(err)
		}
		if e.DataOffsets[0]%int64(e.DType.Size()) != 0 {
			t.Errorf("%s (%s) starts at %d", name, e.DType, e.DataOffsets[0])
		}
	}
	gf32, _ := f.Tensors["f32"].Float32()
	if !reflect.DeepEqual(gf32, f32) {
		t.Errorf("f32 %v, want %v", gf32, f32)
	}
	gf64, _ := f.Tensors["f64"].Float64()
	if gf64[0] != math.Pi || !math.Signbit(gf64[1]) || gf64[2] != 1e300 || !math.IsNaN(gf64[3]) {
		t.Errorf("f64 %v, want %v", gf64, f64)
	}
	gi32, _ := f.Tensors["i32"].Int32()
	if !reflect.DeepEqual(gi32, i32) {
		t.Errorf("i32 %v, want %v", gi32, i32)
	}
	gi64, _ := f.Tensors["i64"].Int64()
	if !reflect.DeepEqual(gi64, i64) {
		t.Errorf("i64 %v, want %v", gi64, i64)
	}
	widened, err := f.Tensors["f32"].Float64()
	if err != nil || widened[1] != -2.5 {
		t.Errorf("F32 as float64: %v %v", widened, err)
	}
	if _, err := f.Tensors["i32"].Float32(); err == nil {
		t.Error("I32 decoded as F32")
	}
	gbf, err := f.Tensors["bf16"].Float64()
	if err != nil || gbf[0] != 1 || gbf[1] != -2.5 || !math.IsInf(gbf[2], 1) {
		t.Errorf("BF16 as float64: %v %v", gbf, err)
	}
}

func TestWriteErrors(t *testing.T) {
	cases := map[string]map[string]Tensor{
		"bad dtype":     {"x": {DType: "F16", Shape: []int{1}, Data: make([]byte, 2)}},
		"size mismatch": {"x": {DType: F32, Shape: []int{2}, Data: make([]byte, 4)}},
		"reserved name": {MetadataKey: FromFloat32([]int{1}, []float32{1})},
		"empty name":    {"": FromFloat32([]int{1}, []float32{1})},
		"negative dim":  {"x": {DType: F32, Shape: []int{-1}, Data: nil}},
	}
	for name, tensors := range cases {
		if err := Write(&bytes.Buffer{}, tensors, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseErrors(t *testing.T) {
	file := func(header string, data int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
		return append(append(b, header...), make([]byte, data)...)
	}
	good := `{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	if _, err := Parse(file(good, 8)); err != nil {
		t.Fatalf("good file rejected: %v", err)
	}
	cases := map[string][]byte{
		"short":          {1, 2, 3},
		"header too big": file(good, 8)[:20],
		"not json":       file("[1,2]", 0),
		"trailing data":  file(good, 12),
		"missing data":   file(good, 4),
		"wrong size":     file(`{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8),
		"gap":            file(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
		"overlap": file(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},`+
			`"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
		"bad dtype":   file(`{"x":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}`, 8),
		"no shape":    file(`{"x":{"dtype":"F32","data_offsets":[0,4]}}`, 4),
		"bad offsets": file(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`, 8),
	}
	for name, b := range cases {
		if _, err := Parse(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
