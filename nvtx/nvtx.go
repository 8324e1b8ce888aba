package nvtx

/*
// NVIDIA's CUDA installers put nvtx3 under /usr/local/cuda/include, Debian's
// packages under /usr/include; a missing -I directory is ignored.
#cgo CFLAGS: -I/usr/local/cuda/include
// Only libdl: NVTX v3 loads its tool with dlopen and needs no libnvToolsExt.
#cgo LDFLAGS: -ldl
// The hot calls never call back into Go and keep no Go pointer (they take
// only numbers), which lets the runtime skip part of a cgo call's work.
#cgo nocallback gbnvtx_push
#cgo nocallback gbnvtx_pop
#cgo nocallback gbnvtx_domain_push
#cgo nocallback gbnvtx_domain_pop
#cgo noescape gbnvtx_push
#cgo noescape gbnvtx_pop
#cgo noescape gbnvtx_domain_push
#cgo noescape gbnvtx_domain_pop
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"math"
	"strings"
	"unsafe"
)

// NoPushPopTracking is what Push and Pop return when no tool tracks
// push/pop ranges, which includes running without any tool attached.
const NoPushPopTracking = -2

// Values of nvtxMessageType_t and nvtxPayloadType_t, checked against the
// header by static assertions in shim.c.
const (
	messageASCII      = 1
	messageRegistered = 3

	payloadUint64  = 1
	payloadInt64   = 2
	payloadFloat64 = 3
)

// errNUL is returned for strings that C would silently truncate.
var errNUL = errors.New("nvtx: string contains a NUL byte")

// cString copies s into C memory, refusing embedded NULs rather than
// letting C cut the string short.
func cString(s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, errNUL
	}
	return C.CString(s), nil
}

// Color is an ARGB color, 0xAARRGGBB. The zero Color means no color.
type Color uint32

// ARGB returns the color with alpha a and red, green and blue components
// r, g and b.
func ARGB(a, r, g, b uint8) Color {
	return Color(a)<<24 | Color(r)<<16 | Color(g)<<8 | Color(b)
}

// RGB returns the opaque color with red, green and blue components r, g
// and b.
func RGB(r, g, b uint8) Color { return ARGB(0xff, r, g, b) }

// Category groups events; tools can filter on it and show the name given
// with NameCategory. The zero Category means no category.
type Category uint32

// RangeID identifies a range started by RangeStart, to be passed to
// RangeEnd.
type RangeID uint64

// Payload is a number attached to an event, such as the iteration number.
// The zero Payload means no payload.
type Payload struct {
	typ  int32
	bits uint64
}

// Uint64 returns an unsigned 64-bit payload.
func Uint64(v uint64) Payload { return Payload{payloadUint64, v} }

// Int64 returns a signed 64-bit payload.
func Int64(v int64) Payload { return Payload{payloadInt64, uint64(v)} }

// Float64 returns a floating-point payload.
func Float64(v float64) Payload { return Payload{payloadFloat64, math.Float64bits(v)} }

// Message is the text of an event: a *Text or a *RegisteredString.
type Message interface {
	// nvtxMessage returns the NVTX message type and the C pointer or
	// handle that goes into nvtxEventAttributes_t.message.
	nvtxMessage() (typ int32, p uintptr)
}

// Text is a message copied once into C memory, so that events carrying it
// need no conversion. Free it when no event will use it anymore.
type Text struct {
	p *C.char
	s string
}

// NewText copies s into C memory for use as a message.
func NewText(s string) (*Text, error) {
	p, err := cString(s)
	if err != nil {
		return nil, err
	}
	return &Text{p: p, s: s}, nil
}

// Free releases the C copy. Events that use t afterwards carry no message
// rather than a dangling pointer.
func (t *Text) Free() {
	if t == nil || t.p == nil {
		return
	}
	C.free(unsafe.Pointer(t.p))
	t.p = nil
}

// String returns the text.
func (t *Text) String() string { return t.s }

func (t *Text) nvtxMessage() (int32, uintptr) {
	if t == nil || t.p == nil {
		return 0, 0
	}
	return messageASCII, uintptr(unsafe.Pointer(t.p))
}

// RegisteredString is a message registered once with a domain, so that the
// tool need not copy the text on every event. Use it only with events of
// the domain that registered it.
type RegisteredString struct {
	h uintptr
	// p is the registered C copy. NVTX has no call to unregister a string
	// and a tool may keep the pointer, so it is never freed.
	p *C.char
	s string
}

// String returns the registered text.
func (r *RegisteredString) String() string { return r.s }

func (r *RegisteredString) nvtxMessage() (int32, uintptr) {
	if r == nil {
		return 0, 0
	}
	if r.h == 0 {
		// No tool, or a tool that does not register strings: a NULL
		// handle would reach it as a NULL message, the text would not.
		return messageASCII, uintptr(unsafe.Pointer(r.p))
	}
	return messageRegistered, r.h
}

// Attributes describe an event. Prepare them once and reuse them; between
// pushes only Payload needs to change.
type Attributes struct {
	Message  Message
	Color    Color
	Category Category
	Payload  Payload
}

func (a *Attributes) message() (C.int32_t, C.uintptr_t) {
	if a.Message == nil {
		return 0, 0
	}
	t, p := a.Message.nvtxMessage()
	return C.int32_t(t), C.uintptr_t(p)
}

// Initialize loads the tool now, if one is configured, instead of on the
// first NVTX call, so that the loading cost stays out of a timed region.
func Initialize() { C.gbnvtx_initialize() }

// Push starts a nested range on the calling OS thread. It returns the
// zero-based nesting level of the new range, NoPushPopTracking, or another
// negative value if the tool reports an error.
func Push(a *Attributes) int {
	t, m := a.message()
	return int(C.gbnvtx_push(t, m, C.uint32_t(a.Color), C.uint32_t(a.Category),
		C.int32_t(a.Payload.typ), C.uint64_t(a.Payload.bits)))
}

// Pop ends the innermost range pushed on the calling OS thread. It returns
// the nesting level of the ended range, NoPushPopTracking, or another
// negative value if the tool reports an error.
func Pop() int { return int(C.gbnvtx_pop()) }

// Mark records an instantaneous event.
func Mark(a *Attributes) {
	t, m := a.message()
	C.gbnvtx_mark(t, m, C.uint32_t(a.Color), C.uint32_t(a.Category),
		C.int32_t(a.Payload.typ), C.uint64_t(a.Payload.bits))
}

// RangeStart starts a range that is not tied to a thread and may overlap
// others. With no tool attached it returns 0.
func RangeStart(a *Attributes) RangeID {
	t, m := a.message()
	return RangeID(C.gbnvtx_range_start(t, m, C.uint32_t(a.Color), C.uint32_t(a.Category),
		C.int32_t(a.Payload.typ), C.uint64_t(a.Payload.bits)))
}

// RangeEnd ends the range id returned by RangeStart, on any thread.
func RangeEnd(id RangeID) { C.gbnvtx_range_end(C.uint64_t(id)) }

// RegisterString registers s with the global domain.
func RegisterString(s string) (*RegisteredString, error) {
	var d *Domain
	return d.RegisterString(s)
}

// NameCategory names category c of the global domain.
func NameCategory(c Category, name string) error {
	p, err := cString(name)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(p))
	C.gbnvtx_name_category(C.uint32_t(c), p)
	return nil
}

// NameOSThread names the calling OS thread. Call it from a goroutine locked
// with runtime.LockOSThread, or the name lands on whichever thread the
// goroutine happens to run on.
func NameOSThread(name string) error {
	p, err := cString(name)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(p))
	C.gbnvtx_name_current_thread(p)
	return nil
}

// Domain scopes events, categories and registered strings, and keeps its
// own push/pop stack per thread. A nil *Domain is the global domain.
type Domain struct {
	h uintptr
	// name stays allocated until Destroy because a tool may keep the
	// pointer it was given.
	name *C.char
}

// NewDomain creates the domain called name.
func NewDomain(name string) (*Domain, error) {
	p, err := cString(name)
	if err != nil {
		return nil, err
	}
	return &Domain{h: uintptr(C.gbnvtx_domain_create(p)), name: p}, nil
}

// handle returns the C handle; NULL selects the global domain.
func (d *Domain) handle() C.uintptr_t {
	if d == nil {
		return 0
	}
	return C.uintptr_t(d.h)
}

// Destroy unregisters the domain. Do not use d, or strings registered
// with it, afterwards.
func (d *Domain) Destroy() {
	if d == nil || d.name == nil {
		return
	}
	C.gbnvtx_domain_destroy(C.uintptr_t(d.h))
	C.free(unsafe.Pointer(d.name))
	d.name = nil
}

// RegisterString registers s with d. The copy of s handed to the tool is
// never freed: NVTX cannot unregister a string, so register each string
// once and reuse it.
func (d *Domain) RegisterString(s string) (*RegisteredString, error) {
	p, err := cString(s)
	if err != nil {
		return nil, err
	}
	h := C.gbnvtx_register_string(d.handle(), p)
	return &RegisteredString{h: uintptr(h), p: p, s: s}, nil
}

// NameCategory names category c of d.
func (d *Domain) NameCategory(c Category, name string) error {
	p, err := cString(name)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(p))
	C.gbnvtx_domain_name_category(d.handle(), C.uint32_t(c), p)
	return nil
}

// Push starts a nested range of d on the calling OS thread. It returns the
// zero-based nesting level of the new range within d, NoPushPopTracking, or
// another negative value if the tool reports an error.
func (d *Domain) Push(a *Attributes) int {
	t, m := a.message()
	return int(C.gbnvtx_domain_push(d.handle(), t, m, C.uint32_t(a.Color), C.uint32_t(a.Category),
		C.int32_t(a.Payload.typ), C.uint64_t(a.Payload.bits)))
}

// Pop ends the innermost range of d pushed on the calling OS thread. It
// returns the nesting level of the ended range, NoPushPopTracking, or
// another negative value if the tool reports an error.
func (d *Domain) Pop() int { return int(C.gbnvtx_domain_pop(d.handle())) }

// Mark records an instantaneous event in d.
func (d *Domain) Mark(a *Attributes) {
	t, m := a.message()
	C.gbnvtx_domain_mark(d.handle(), t, m, C.uint32_t(a.Color), C.uint32_t(a.Category),
		C.int32_t(a.Payload.typ), C.uint64_t(a.Payload.bits))
}

// RangeStart starts a range of d that is not tied to a thread and may
// overlap others. With no tool attached it returns 0.
func (d *Domain) RangeStart(a *Attributes) RangeID {
	t, m := a.message()
	return RangeID(C.gbnvtx_domain_range_start(d.handle(), t, m, C.uint32_t(a.Color), C.uint32_t(a.Category),
		C.int32_t(a.Payload.typ), C.uint64_t(a.Payload.bits)))
}

// RangeEnd ends the range id of d returned by RangeStart, on any thread.
func (d *Domain) RangeEnd(id RangeID) { C.gbnvtx_domain_range_end(d.handle(), C.uint64_t(id)) }
