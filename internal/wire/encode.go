package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unsafe"
)

// Encoder writes a T as encoding/json writes it with HTML escaping off,
// from T's fields and tags, read once: without reflection on each value,
// for the answers that hold many (a batch answer holds fifty task views).
type Encoder[T any] struct{ s *encStruct }

// encStruct is a struct as the Encoder writes it: each member's kind
// beside its offset, so that writing one reads a single slice.
type encStruct []encField

type encField struct {
	lead    string // what precedes the value (field.lead)
	offset  uintptr
	kind    kind
	pointer bool       // the member points to its value; nil is null
	size    uintptr    // intKind
	sub     *encStruct // structKind
}

// encStructOf is c's encStruct, for a struct codec c the Encoder writes.
func encStructOf(c *codec) *encStruct {
	s := make(encStruct, len(c.fields))
	for i, f := range c.fields {
		fc := f.codec
		e := encField{lead: f.lead, offset: f.offset}
		if fc.kind == pointerKind {
			e.pointer, fc = true, fc.elem
		}
		e.kind, e.size = fc.kind, fc.size
		if fc.kind == structKind {
			e.sub = encStructOf(fc)
		}
		s[i] = e
	}
	return &s
}

// NewEncoder is T's Encoder. It panics for a T holding what it does not
// write: T must be a struct whose members are strings, bools, signed
// integers, float64s, json.RawMessages, time.Times, structs or pointers
// to them, with no tag options (omitempty), and no type with JSON or
// text methods of its own but those two.
func NewEncoder[T any]() *Encoder[T] {
	c := structCodec[T]()
	if why := c.unwritable(); why != "" {
		panic("wire: NewEncoder: " + why)
	}
	return &Encoder[T]{s: encStructOf(c)}
}

// unwritable says what of c the Encoder does not write; "" when it
// writes all of it.
func (c *codec) unwritable() string {
	switch c.kind {
	case unsupported:
		return c.why
	case sliceKind:
		return fmt.Sprintf("%s is a slice, which only the Decoder reads", c.typ)
	case pointerKind:
		if c.elem.kind == pointerKind {
			return fmt.Sprintf("%s is a pointer to a pointer", c.typ)
		}
		return c.elem.unwritable()
	case structKind:
		for _, f := range c.fields {
			if f.opts != "" {
				return fmt.Sprintf("member %q has the JSON options %q", f.name, f.opts)
			}
			if why := f.codec.unwritable(); why != "" {
				return why
			}
		}
	}
	return ""
}

// Append appends v encoded to b. ok is false, and b is not to be used,
// when v holds what it leaves to encoding/json: a string needing an
// escape, a float written with an exponent, a time MarshalJSON refuses,
// or a json.RawMessage that is not valid JSON.
func (e *Encoder[T]) Append(b []byte, v *T) (_ []byte, ok bool) {
	return e.s.append(b, unsafe.Pointer(v))
}

// append appends the struct at p. Its members are written here,
// pointers followed in place, so that only a member that is itself a
// struct costs a call: a task view has twenty-odd members.
func (s *encStruct) append(b []byte, p unsafe.Pointer) (_ []byte, ok bool) {
	if len(*s) == 0 {
		return append(b, "{}"...), true
	}
	for i := range *s {
		f := &(*s)[i]
		b = append(b, f.lead...)
		q := at(p, f.offset)
		if f.pointer {
			if q = *(*unsafe.Pointer)(q); q == nil {
				b = append(b, "null"...)
				continue
			}
		}
		switch f.kind {
		case stringKind:
			b, ok = AppendPlainString(b, *(*string)(q))
		case boolKind:
			b, ok = strconv.AppendBool(b, *(*bool)(q)), true
		case intKind:
			b, ok = strconv.AppendInt(b, intAt(q, f.size), 10), true
		case float64Kind:
			b, ok = appendPlainFloat(b, *(*float64)(q))
		case rawKind:
			b, ok = appendRaw(b, *(*json.RawMessage)(q))
		case timeKind:
			b, ok = appendTime(b, *(*time.Time)(q))
		case structKind:
			b, ok = f.sub.append(b, q)
		default:
			ok = false // NewEncoder refuses the rest
		}
		if !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// intAt is the signed integer of size bytes at p.
func intAt(p unsafe.Pointer, size uintptr) int64 {
	switch size {
	case 1:
		return int64(*(*int8)(p))
	case 2:
		return int64(*(*int16)(p))
	case 4:
		return int64(*(*int32)(p))
	}
	return *(*int64)(p)
}

// Marshal is v as the API writes it, and as the Encoder writes it when
// it takes v on: encoding/json with HTML escaping off.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// appendRaw appends raw JSON compacted, as encoding/json writes a
// json.RawMessage; null for none.
func appendRaw(b []byte, raw json.RawMessage) ([]byte, bool) {
	if raw == nil {
		return append(b, "null"...), true
	}
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, raw); err != nil {
		return b, false
	}
	return buf.Bytes(), true
}

// appendPlainFloat appends f as encoding/json writes a float64 it shows
// without an exponent.
func appendPlainFloat(b []byte, f float64) ([]byte, bool) {
	if a := math.Abs(f); math.IsNaN(f) || math.IsInf(f, 0) || (a != 0 && (a < 1e-6 || a >= 1e21)) {
		return b, false
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64), true
}

// appendTime appends t as time.Time.MarshalJSON writes it, when that
// accepts it: a four-digit year and a zone offset under a day, checked on
// what it wrote as MarshalJSON checks it.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	n0 := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	if len(b) < n0+len("9999-01-01T00:00:00Z") || b[n0+len("9999")] != '-' {
		return b, false
	}
	if b[len(b)-1] != 'Z' {
		zone := b[len(b)-len("Z07:00"):]
		if c := zone[0]; '0' <= c && c <= '9' || 10*(zone[1]-'0')+zone[2]-'0' >= 24 {
			return b, false
		}
	}
	return append(b, '"'), true
}
