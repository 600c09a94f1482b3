package wire

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unsafe"
)

// kind is how a codec writes or reads a value.
type kind uint8

const (
	// unsupported is a value the Decoder leaves to encoding/json; the
	// Encoder refuses to be built for a type holding one.
	unsupported kind = iota
	stringKind
	boolKind
	intKind // a signed integer of size bytes
	float64Kind
	rawKind  // json.RawMessage
	timeKind // time.Time, as its MarshalJSON writes it
	pointerKind
	structKind
	sliceKind // of structs; read only
)

// codec writes or reads one Go type, found once from its reflect.Type;
// the values themselves are reached through their addresses.
type codec struct {
	kind   kind
	size   uintptr      // intKind: the integer's size in bytes
	typ    reflect.Type // pointerKind: the element type; sliceKind: the slice type
	elem   *codec       // pointerKind and sliceKind
	fields []field      // structKind, embedded structs' fields in place
	why    string       // unsupported: what encoding/json is left to do
}

// field is a member of a struct's object.
type field struct {
	name   string
	lead   string // what precedes its value: `{"name":` for the first, `,"name":` after
	opts   string // the options of its tag: omitempty and the like
	offset uintptr
	codec  *codec
}

// maxFields bounds a struct's members, so the Decoder can mark the ones
// it has seen in a uint64.
const maxFields = 64

// maxDepth bounds how deep a codec's types nest.
const maxDepth = 16

var (
	rawType             = reflect.TypeFor[json.RawMessage]()
	timeType            = reflect.TypeFor[time.Time]()
	marshalerType       = reflect.TypeFor[json.Marshaler]()
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// hasMethods says whether encoding/json hands t, or a pointer to it, to
// its own methods rather than to its kind.
func hasMethods(t reflect.Type) bool {
	for _, m := range []reflect.Type{marshalerType, unmarshalerType, textMarshalerType, textUnmarshalerType} {
		if t.Implements(m) || reflect.PointerTo(t).Implements(m) {
			return true
		}
	}
	return false
}

// codecOf is t's codec; a type the codecs do not know is unsupported
// where it stands, and why says why. depth counts the types t is within,
// so that a type holding itself ends.
func codecOf(t reflect.Type, depth int) *codec {
	if depth > maxDepth {
		return unsupportedCodec("%s is nested more than %d deep", t, maxDepth)
	}
	depth++
	switch {
	case t == rawType:
		return &codec{kind: rawKind}
	case t == timeType:
		return &codec{kind: timeKind}
	case t.Kind() == reflect.Pointer && t.Name() == "":
		// The element's methods, if any, are its codec's to refuse.
		return &codec{kind: pointerKind, typ: t.Elem(), elem: codecOf(t.Elem(), depth)}
	case hasMethods(t):
		return unsupportedCodec("%s has JSON or text methods of its own", t)
	}
	switch t.Kind() {
	case reflect.String:
		return &codec{kind: stringKind}
	case reflect.Bool:
		return &codec{kind: boolKind}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &codec{kind: intKind, size: t.Size()}
	case reflect.Float64:
		return &codec{kind: float64Kind}
	case reflect.Slice:
		if t.Elem().Kind() != reflect.Struct {
			return unsupportedCodec("%s is a slice of other than structs", t)
		}
		return &codec{kind: sliceKind, typ: t, elem: codecOf(t.Elem(), depth)}
	case reflect.Struct:
		c := &codec{kind: structKind}
		c.addFields(t, 0, depth)
		if len(c.fields) > maxFields {
			return unsupportedCodec("%s has more than %d members", t, maxFields)
		}
		return c
	}
	return unsupportedCodec("%s is of kind %s", t, t.Kind())
}

func unsupportedCodec(format string, args ...any) *codec {
	return &codec{why: fmt.Sprintf(format, args...)}
}

// addFields adds t's members at offset base, as encoding/json lists
// them: in order, an untagged embedded struct's members in its place.
func (c *codec) addFields(t reflect.Type, base uintptr, depth int) {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" {
			if sf.Type.Kind() == reflect.Struct && !hasMethods(sf.Type) {
				c.addFields(sf.Type, base+sf.Offset, depth)
				continue
			}
			if !sf.IsExported() {
				continue
			}
			name = sf.Name
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		fc := codecOf(sf.Type, depth)
		switch {
		case !plainName(name):
			fc = unsupportedCodec("%s.%s is named %q, which is not a plain JSON key", t, sf.Name, name)
		case sf.Anonymous:
			fc = unsupportedCodec("%s.%s is embedded other than as a plain struct", t, sf.Name)
		case slices.Contains(strings.Split(opts, ","), "string"):
			fc = unsupportedCodec("%s.%s has the JSON option string", t, sf.Name)
		}
		for j := range c.fields {
			if c.fields[j].name == name {
				// encoding/json picks one by depth and tags, or neither.
				fc = unsupportedCodec("%s has two members named %q", t, name)
				c.fields[j].codec = fc
			}
		}
		lead := `,"` + name + `":`
		if len(c.fields) == 0 {
			lead = "{" + lead[1:]
		}
		c.fields = append(c.fields, field{name: name, lead: lead, opts: opts, offset: base + sf.Offset, codec: fc})
	}
}

// plainName says whether name is a key encoding/json takes from a tag
// and writes without an escape.
func plainName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return name != ""
}

// structCodec is T's codec, for a struct type T.
func structCodec[T any]() *codec {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("wire: %s is not a struct", t))
	}
	return codecOf(t, 0)
}

// field is the member of c named name; nil for none.
func (c *codec) field(name []byte) (int, *field) {
	for i := range c.fields {
		if c.fields[i].name == string(name) {
			return i, &c.fields[i]
		}
	}
	return -1, nil
}

// at is the address offset bytes past p.
func at(p unsafe.Pointer, offset uintptr) unsafe.Pointer { return unsafe.Add(p, offset) }
