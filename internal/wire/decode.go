package wire

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"unsafe"
)

// Decoder reads a T as encoding/json decodes it with unknown fields
// disallowed, from T's fields and tags, read once: without reflection on
// each value, for the bodies read on every request (POST /tasks) and the
// metadata of every task inserted.
type Decoder[T any] struct{ c *codec }

// NewDecoder is T's Decoder, for a struct T. A member of a type it does
// not read (a map, a time, a type with JSON methods of its own) is left
// to encoding/json: a document holding it is not taken.
func NewDecoder[T any]() *Decoder[T] {
	return &Decoder[T]{c: structCodec[T]()}
}

// Decode decodes doc, one JSON object with JSON whitespace around it,
// into v and reports true when it is plain: each key one of T's members
// exactly as its tag names it, once; each string without escapes; each
// number one its member holds; each json.RawMessage an object (kept as
// a slice of doc, not copied); no null. It reports false, leaving v as
// it was, for any other doc, which encoding/json is to decode (or
// refuse).
func (d *Decoder[T]) Decode(doc []byte, v *T) bool {
	b := SkipSpace(doc)
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	var decoded T
	b, ok := d.c.decode(b, unsafe.Pointer(&decoded))
	if !ok || len(SkipSpace(b)) != 0 {
		return false
	}
	*v = decoded
	return true
}

// decode decodes the value b starts with into the value at p, and
// returns what follows it.
func (c *codec) decode(b []byte, p unsafe.Pointer) (rest []byte, ok bool) {
	switch c.kind {
	case stringKind:
		var s []byte
		if s, b, ok = PlainString(b); ok {
			*(*string)(p) = string(s)
		}
		return b, ok
	case boolKind:
		switch {
		case len(b) >= len("true") && string(b[:len("true")]) == "true":
			*(*bool)(p) = true
			return b[len("true"):], true
		case len(b) >= len("false") && string(b[:len("false")]) == "false":
			*(*bool)(p) = false
			return b[len("false"):], true
		}
		return nil, false
	case intKind:
		n := NumberLength(b)
		if n == 0 {
			return nil, false
		}
		i, err := strconv.ParseInt(string(b[:n]), 10, 64)
		if err != nil || !c.setInt(p, i) {
			return nil, false
		}
		return b[n:], true
	case float64Kind:
		n := NumberLength(b)
		if n == 0 {
			return nil, false
		}
		f, err := strconv.ParseFloat(string(b[:n]), 64)
		if err != nil {
			return nil, false
		}
		*(*float64)(p) = f
		return b[n:], true
	case rawKind:
		n := ObjectLength(b)
		if n == 0 || !json.Valid(b[:n]) {
			return nil, false
		}
		*(*json.RawMessage)(p) = json.RawMessage(b[:n:n])
		return b[n:], true
	case pointerKind:
		if len(b) == 0 || b[0] == 'n' {
			return nil, false // null, which encoding/json sets the pointer to nil for
		}
		q := reflect.New(c.typ).UnsafePointer()
		if b, ok = c.elem.decode(b, q); ok {
			*(*unsafe.Pointer)(p) = q
		}
		return b, ok
	case structKind:
		return c.decodeObject(b, p)
	case sliceKind:
		return c.decodeSlice(b, p)
	}
	return nil, false
}

// setInt stores i at p, when it fits.
func (c *codec) setInt(p unsafe.Pointer, i int64) bool {
	switch c.size {
	case 1:
		if i < math.MinInt8 || i > math.MaxInt8 {
			return false
		}
		*(*int8)(p) = int8(i)
	case 2:
		if i < math.MinInt16 || i > math.MaxInt16 {
			return false
		}
		*(*int16)(p) = int16(i)
	case 4:
		if i < math.MinInt32 || i > math.MaxInt32 {
			return false
		}
		*(*int32)(p) = int32(i)
	default:
		*(*int64)(p) = i
	}
	return true
}

// decodeObject decodes the object b starts with into the zero struct at
// p: each member once, so that none is decoded over another.
func (c *codec) decodeObject(b []byte, p unsafe.Pointer) (rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	if b = SkipSpace(b[1:]); len(b) > 0 && b[0] == '}' {
		return b[1:], true
	}
	var seen uint64
	for {
		var key []byte
		if key, b, ok = PlainString(b); !ok {
			return nil, false
		}
		i, f := c.field(key)
		if f == nil || seen&(1<<i) != 0 {
			return nil, false
		}
		seen |= 1 << i
		if b = SkipSpace(b); len(b) == 0 || b[0] != ':' {
			return nil, false
		}
		if b, ok = f.codec.decode(SkipSpace(b[1:]), at(p, f.offset)); !ok {
			return nil, false
		}
		switch b = SkipSpace(b); {
		case len(b) > 0 && b[0] == ',':
			b = SkipSpace(b[1:])
		case len(b) > 0 && b[0] == '}':
			return b[1:], true
		default:
			return nil, false
		}
	}
}

// decodeSlice decodes the array of objects b starts with into the nil
// slice at p, in one allocation: its objects are counted first.
func (c *codec) decodeSlice(b []byte, p unsafe.Pointer) (rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '[' {
		return nil, false
	}
	n := 0
	for e := SkipSpace(b[1:]); len(e) == 0 || e[0] != ']'; n++ {
		if n > 0 {
			if e[0] != ',' {
				return nil, false
			}
			e = SkipSpace(e[1:])
		}
		l := ObjectLength(e)
		if l == 0 {
			return nil, false
		}
		e = SkipSpace(e[l:])
		if len(e) == 0 {
			return nil, false
		}
	}
	data, size := reflect.MakeSlice(c.typ, n, n).UnsafePointer(), c.typ.Elem().Size()
	b = SkipSpace(b[1:])
	for i := range n {
		if i > 0 {
			if len(b) == 0 || b[0] != ',' {
				return nil, false
			}
			b = SkipSpace(b[1:])
		}
		if b, ok = c.elem.decode(b, at(data, uintptr(i)*size)); !ok {
			return nil, false
		}
		b = SkipSpace(b)
	}
	if len(b) == 0 || b[0] != ']' {
		return nil, false
	}
	*(*sliceHeader)(p) = sliceHeader{data: data, len: n, cap: n}
	return b[1:], true
}

// sliceHeader is how a slice is laid out: the slices decodeSlice makes
// are stored through it.
type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}
