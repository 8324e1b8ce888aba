// Package safetensors reads and writes the safetensors file format:
//
//	8 bytes    N, the header length, unsigned little-endian
//	N bytes    a JSON object, padded with spaces to a multiple of 8 bytes:
//	           {"NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]},
//	            ..., "__metadata__": {"key": "value", ...}}
//	rest       the tensor data, little-endian, row-major; offsets are relative
//	           to the start of this section
//
// Only the dtypes F32, F64, BF16, I32 and I64 are supported. The writer emits
// the header keys sorted, lays the data out contiguously (8-byte dtypes first,
// then 4-byte, then 2-byte ones, each group by name, so that every tensor is aligned to its
// element size), with no gaps, as the reference Python/Rust implementation
// requires when it loads a file.
package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/gpubench/gpubench/internal/bf16"
)

// DType is a safetensors element type.
type DType string

// Supported dtypes.
const (
	F32 DType = "F32"
	F64 DType = "F64"
	I32 DType = "I32"
	I64 DType = "I64"
	// BF16 is bfloat16, held as its 16 bits (internal/bf16).
	BF16 DType = "BF16"
)

// Size returns the size in bytes of one element, or 0 for an unsupported dtype.
func (t DType) Size() int {
	switch t {
	case F32, I32:
		return 4
	case F64, I64:
		return 8
	case BF16:
		return 2
	}
	return 0
}

// MetadataKey is the reserved header key of the string-to-string metadata.
const MetadataKey = "__metadata__"

// MaxHeaderSize bounds the header length a reader accepts (as the reference
// implementation does).
const MaxHeaderSize = 100 << 20

// Tensor is one tensor: its dtype, shape (nil or empty for a scalar) and its
// raw little-endian data.
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte
}

// NumElements is the product of the shape (1 for a scalar).
func (t Tensor) NumElements() int {
	n := 1
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

func (t Tensor) check() error {
	es := t.DType.Size()
	if es == 0 {
		return fmt.Errorf("unsupported dtype %q", t.DType)
	}
	n := 1
	for _, s := range t.Shape {
		if s < 0 {
			return fmt.Errorf("negative dimension in shape %v", t.Shape)
		}
		if s > 0 && n > math.MaxInt/es/s {
			return fmt.Errorf("shape %v too large", t.Shape)
		}
		n *= s
	}
	if want := t.NumElements() * es; len(t.Data) != want {
		return fmt.Errorf("shape %v of %s needs %d bytes, data has %d", t.Shape, t.DType, want, len(t.Data))
	}
	return nil
}

// FromFloat32 makes an F32 tensor. It panics if shape does not match len(v).
func FromFloat32(shape []int, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return mustTensor(F32, shape, b)
}

// FromFloat64 makes an F64 tensor. It panics if shape does not match len(v).
func FromFloat64(shape []int, v []float64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return mustTensor(F64, shape, b)
}

// FromInt32 makes an I32 tensor. It panics if shape does not match len(v).
func FromInt32(shape []int, v []int32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return mustTensor(I32, shape, b)
}

// FromInt64 makes an I64 tensor. It panics if shape does not match len(v).
func FromInt64(shape []int, v []int64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return mustTensor(I64, shape, b)
}

func mustTensor(dt DType, shape []int, data []byte) Tensor {
	t := Tensor{DType: dt, Shape: slices.Clone(shape), Data: data}
	if err := t.check(); err != nil {
		panic("safetensors: " + err.Error())
	}
	return t
}

// FromBF16 makes a BF16 tensor of bfloat16 bits. It panics if shape does
// not match len(v).
func FromBF16(shape []int, v []uint16) Tensor {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return mustTensor(BF16, shape, b)
}

// Float32 decodes an F32 tensor, or a BF16 one widened (exactly) to float32.
func (t Tensor) Float32() ([]float32, error) {
	if t.DType == BF16 {
		v := make([]float32, len(t.Data)/2)
		for i := range v {
			v[i] = bf16.ToFloat32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
		return v, nil
	}
	if t.DType != F32 {
		return nil, fmt.Errorf("safetensors: tensor is %s, not F32", t.DType)
	}
	v := make([]float32, len(t.Data)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return v, nil
}

// Float64 decodes an F64 tensor, or an F32 or BF16 one widened to float64.
func (t Tensor) Float64() ([]float64, error) {
	switch t.DType {
	case F64:
		v := make([]float64, len(t.Data)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
		return v, nil
	case F32, BF16:
		f, _ := t.Float32()
		v := make([]float64, len(f))
		for i, x := range f {
			v[i] = float64(x)
		}
		return v, nil
	}
	return nil, fmt.Errorf("safetensors: tensor is %s, not F32, BF16 or F64", t.DType)
}

// Int32 decodes an I32 tensor.
func (t Tensor) Int32() ([]int32, error) {
	if t.DType != I32 {
		return nil, fmt.Errorf("safetensors: tensor is %s, not I32", t.DType)
	}
	v := make([]int32, len(t.Data)/4)
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return v, nil
}

// Int64 decodes an I64 tensor.
func (t Tensor) Int64() ([]int64, error) {
	if t.DType != I64 {
		return nil, fmt.Errorf("safetensors: tensor is %s, not I64", t.DType)
	}
	v := make([]int64, len(t.Data)/8)
	for i := range v {
		v[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return v, nil
}

// headerEntry is one tensor's header record.
type headerEntry struct {
	DType       DType    `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// dataOrder returns the tensor names in the order their data is laid out:
// larger elements first (so each tensor is aligned to its element size, given
// that the data section starts 8-aligned), then by name.
func dataOrder(tensors map[string]Tensor) []string {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		si, sj := tensors[names[i]].DType.Size(), tensors[names[j]].DType.Size()
		if si != sj {
			return si > sj
		}
		return names[i] < names[j]
	})
	return names
}

// Header builds the padded JSON header (without the 8-byte length) that Write
// emits for tensors and metadata.
func Header(tensors map[string]Tensor, metadata map[string]string) ([]byte, error) {
	fields := make(map[string]any, len(tensors)+1)
	var off int64
	for _, name := range dataOrder(tensors) {
		t := tensors[name]
		if name == "" {
			return nil, errors.New("safetensors: empty tensor name")
		}
		if name == MetadataKey {
			return nil, fmt.Errorf("safetensors: tensor name %q is reserved", name)
		}
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		n := int64(len(t.Data))
		fields[name] = headerEntry{DType: t.DType, Shape: shape, DataOffsets: [2]int64{off, off + n}}
		off += n
	}
	if len(metadata) > 0 {
		fields[MetadataKey] = metadata
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // encoding/json writes map keys sorted
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	h := bytes.TrimRight(buf.Bytes(), "\n")
	if pad := (8 - len(h)%8) % 8; pad > 0 {
		h = append(h, strings.Repeat(" ", pad)...)
	}
	return h, nil
}

// Write writes tensors (by name) and optional metadata in safetensors format.
func Write(w io.Writer, tensors map[string]Tensor, metadata map[string]string) error {
	h, err := Header(tensors, metadata)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	bw.Write(n[:])
	bw.Write(h)
	for _, name := range dataOrder(tensors) {
		bw.Write(tensors[name].Data)
	}
	return bw.Flush()
}

// WriteFile writes a safetensors file at path.
func WriteFile(path string, tensors map[string]Tensor, metadata map[string]string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, tensors, metadata); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// File is a decoded safetensors file.
type File struct {
	Tensors  map[string]Tensor
	Metadata map[string]string
}

// Names returns the tensor names, sorted.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Tensors))
	for n := range f.Tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Parse decodes a whole safetensors file held in b. It checks that every
// tensor's byte range matches its dtype and shape, and that the ranges tile
// the data section exactly, without gaps or overlaps.
func Parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, errors.New("safetensors: file shorter than 8 bytes")
	}
	hl := binary.LittleEndian.Uint64(b[:8])
	if hl > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: header length %d too large", hl)
	}
	if hl > uint64(len(b)-8) {
		return nil, fmt.Errorf("safetensors: header length %d beyond end of file (%d bytes)", hl, len(b))
	}
	hdr := b[8 : 8+hl]
	data := b[8+hl:]
	if len(hdr) == 0 || hdr[0] != '{' {
		return nil, errors.New("safetensors: header is not a JSON object")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &raw); err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	f := &File{Tensors: make(map[string]Tensor, len(raw))}
	type span struct {
		name       string
		begin, end int64
	}
	var spans []span
	for name, msg := range raw {
		if name == MetadataKey {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("safetensors: %s: %w", MetadataKey, err)
			}
			continue
		}
		var e struct {
			DType       *DType    `json:"dtype"`
			Shape       *[]int    `json:"shape"`
			DataOffsets *[2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		if e.DType == nil || e.Shape == nil || e.DataOffsets == nil {
			return nil, fmt.Errorf("safetensors: tensor %q: dtype, shape and data_offsets are required", name)
		}
		b0, b1 := e.DataOffsets[0], e.DataOffsets[1]
		if b0 < 0 || b1 < b0 || b1 > int64(len(data)) {
			return nil, fmt.Errorf("safetensors: tensor %q: data_offsets %v outside data of %d bytes", name, *e.DataOffsets, len(data))
		}
		t := Tensor{DType: *e.DType, Shape: *e.Shape, Data: data[b0:b1:b1]}
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		f.Tensors[name] = t
		spans = append(spans, span{name, b0, b1})
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		return spans[i].end < spans[j].end
	})
	var pos int64
	for _, s := range spans {
		if s.begin != pos {
			return nil, fmt.Errorf("safetensors: tensor %q starts at %d, want %d (gap or overlap)", s.name, s.begin, pos)
		}
		pos = s.end
	}
	if pos != int64(len(data)) {
		return nil, fmt.Errorf("safetensors: tensors cover %d of %d data bytes", pos, len(data))
	}
	return f, nil
}

// Read decodes a safetensors stream.
func Read(r io.Reader) (*File, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// ReadFile decodes the safetensors file at path.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}
