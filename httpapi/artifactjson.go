package httpapi

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/storable"
)

// A POST /artifacts body holds up to TASK_MAX_ARTIFACT_MB of base64 in one
// JSON string. encoding/json would hold the body, the string and the
// decoded bytes whole; artifactDecoder instead walks the one object by
// hand and hands data_base64 on as a stream of decoded bytes, so an upload
// costs a few buffers whatever its size. The other fields are small and
// decoded with encoding/json as they come, strictly: an unknown, repeated
// or wrongly typed field is refused, naming it.

// Bounds of the fields other than data_base64.
const (
	maxKeyBytes   = 256
	maxValueBytes = 64 << 10
	// artifactReadBuffer is the read buffer of a POST /artifacts body.
	artifactReadBuffer = 32 << 10
)

// artifactFields are the fields of a POST /artifacts body but its data.
type artifactFields struct {
	TaskID      *int64
	Type        string
	Name        string
	ContentType string
}

// New is the artifact the fields describe, with the default name.
func (f *artifactFields) New() artifact.New {
	name := f.Name
	if name == "" {
		name = f.Type
		if name == "" {
			name = "artifact"
		}
	}
	n := artifact.New{Type: f.Type, Name: name, ContentType: f.ContentType, Size: -1}
	if f.TaskID != nil {
		n.TaskID = *f.TaskID
	}
	return n
}

// jsonSyntaxError is a body that is not one JSON object; offset counts
// the bytes read before the fault.
type jsonSyntaxError struct {
	offset int64
	msg    string
}

func (e *jsonSyntaxError) Error() string {
	return fmt.Sprintf("request body is not valid JSON: %s at byte %d", e.msg, e.offset)
}

// errDataEscape is an escape in data_base64 other than \/, \n and \r,
// none of which base64 needs.
var errDataEscape = errors.New(`data_base64 may hold no escapes but \/, \n and \r`)

// errBadBase64 is data that is not standard base64.
var errBadBase64 = errors.New("data_base64 is not valid base64")

// artifactDecoder reads one POST /artifacts body.
type artifactDecoder struct {
	r   *bufio.Reader
	off int64 // bytes consumed
}

// decodeArtifactStream reads a POST /artifacts body from r. The fields
// are decoded as they come; when data_base64 comes, data is called with
// the fields seen so far and a reader of the decoded bytes, which it must
// read to the end (or fail). data is not called when the body has no
// data_base64. Fields may come in any order.
func decodeArtifactStream(r io.Reader, data func(f *artifactFields, decoded io.Reader) error) (*artifactFields, error) {
	d := &artifactDecoder{r: bufio.NewReaderSize(r, artifactReadBuffer)}
	var f artifactFields
	c, err := d.nonSpace()
	if errors.Is(err, io.EOF) {
		return nil, &taskrunner.Error{Code: taskrunner.CodeInvalidJSON, Message: "request body is empty; send a JSON object"}
	}
	if err != nil {
		return nil, err
	}
	if c != '{' {
		return nil, &taskrunner.Error{Code: taskrunner.CodeInvalidJSON, Message: "request body must be a JSON object"}
	}
	seen := map[string]bool{}
	for first := true; ; first = false {
		c, err := d.nonSpace()
		if err != nil {
			return nil, d.fault(err)
		}
		if c == '}' && first {
			break
		}
		if !first {
			if c == '}' {
				break
			}
			if c != ',' {
				return nil, d.syntax("expected , or }")
			}
			if c, err = d.nonSpace(); err != nil {
				return nil, d.fault(err)
			}
		}
		if c != '"' {
			return nil, d.syntax("expected a field name")
		}
		key, err := d.key()
		if err != nil {
			return nil, err
		}
		if c, err = d.nonSpace(); err != nil {
			return nil, d.fault(err)
		}
		if c != ':' {
			return nil, d.syntax("expected :")
		}
		if seen[key] {
			return nil, invalidField(key, fmt.Sprintf("%s appears twice", key))
		}
		seen[key] = true
		switch key {
		case "data_base64":
			if err := d.data(&f, data); err != nil {
				return nil, err
			}
		case "task_id":
			if f.TaskID, err = d.taskID(); err != nil {
				return nil, err
			}
		case "type":
			err = d.stringField(key, &f.Type)
		case "name":
			err = d.stringField(key, &f.Name)
		case "content_type":
			err = d.stringField(key, &f.ContentType)
		default:
			return nil, invalidField(key, fmt.Sprintf("unknown field %q", key))
		}
		if err != nil {
			return nil, err
		}
	}
	if _, err := d.nonSpace(); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, &taskrunner.Error{Code: taskrunner.CodeInvalidJSON, Message: "request body has data after the JSON object"}
	}
	return &f, nil
}

func invalidField(field, msg string) *taskrunner.Error {
	return &taskrunner.Error{Code: taskrunner.CodeInvalidParams, Field: field, Message: msg}
}

// readByte reads one byte, counting it.
func (d *artifactDecoder) readByte() (byte, error) {
	c, err := d.r.ReadByte()
	if err == nil {
		d.off++
	}
	return c, err
}

// nonSpace reads up to and including the next byte that is not JSON white
// space.
func (d *artifactDecoder) nonSpace() (byte, error) {
	for {
		c, err := d.readByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

func (d *artifactDecoder) syntax(msg string) error { return &jsonSyntaxError{offset: d.off, msg: msg} }

// fault turns a read error inside the object into the request's: the body
// ending early is a syntax error, the rest (too large, cut off) as is.
func (d *artifactDecoder) fault(err error) error {
	if errors.Is(err, io.EOF) {
		return d.syntax("unexpected end of input")
	}
	return err
}

// rawString reads the rest of a JSON string whose opening quote was read,
// escapes and all, up to max bytes, and returns it quoted.
func (d *artifactDecoder) rawString(max int, field string) ([]byte, error) {
	raw := []byte{'"'}
	for escaped := false; ; {
		c, err := d.readByte()
		if err != nil {
			return nil, d.fault(err)
		}
		raw = append(raw, c)
		if len(raw) > max {
			return nil, invalidField(field, fmt.Sprintf("%s is longer than %d bytes", field, max))
		}
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			return raw, nil
		}
	}
}

// key reads a field name whose opening quote was read.
func (d *artifactDecoder) key() (string, error) {
	raw, err := d.rawString(maxKeyBytes, "body")
	if err != nil {
		return "", err
	}
	var key string
	if err := json.Unmarshal(raw, &key); err != nil {
		return "", d.syntax("malformed field name")
	}
	return key, nil
}

// value reads one value that is not data_base64: a string, number, true,
// false or null, raw. An object or array is refused as the wrong type
// without being read.
func (d *artifactDecoder) value(field string) ([]byte, error) {
	c, err := d.nonSpace()
	if err != nil {
		return nil, d.fault(err)
	}
	switch {
	case c == '"':
		return d.rawString(maxValueBytes, field)
	case c == '{':
		return nil, invalidField(field, field+" has the wrong type: got JSON object")
	case c == '[':
		return nil, invalidField(field, field+" has the wrong type: got JSON array")
	}
	raw := []byte{c}
	for {
		b, err := d.r.Peek(1)
		if errors.Is(err, io.EOF) {
			return raw, nil // the missing } is found next
		}
		if err != nil {
			return nil, err
		}
		if !isLiteralByte(b[0]) {
			return raw, nil
		}
		raw = append(raw, b[0])
		_, _ = d.readByte()
		if len(raw) > maxValueBytes {
			return nil, invalidField(field, fmt.Sprintf("%s is longer than %d bytes", field, maxValueBytes))
		}
	}
}

// isLiteralByte reports whether c may be part of a JSON number, true,
// false or null.
func isLiteralByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}

// decodeValue decodes one raw value into v: a syntax error is invalid
// JSON, a type error names the field.
func (d *artifactDecoder) decodeValue(field string, raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return invalidField(field, fmt.Sprintf("%s has the wrong type: got JSON %s", field, typeErr.Value))
		}
		return d.syntax("malformed value of " + field)
	}
	return nil
}

func (d *artifactDecoder) stringField(field string, dst *string) error {
	raw, err := d.value(field)
	if err != nil {
		return err
	}
	if p := storable.Check(raw); p != nil {
		return invalidField(field, field+" "+p.Reason+", which cannot be stored")
	}
	return d.decodeValue(field, raw, dst) // null leaves it empty, as absent
}

// taskID reads task_id: a JSON number, or a string of digits (as clients
// that send every value quoted do). null is as absent.
func (d *artifactDecoder) taskID() (*int64, error) {
	raw, err := d.value("task_id")
	if err != nil {
		return nil, err
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, d.syntax("malformed value of task_id")
	}
	var text string
	switch v := v.(type) {
	case nil:
		return nil, nil
	case json.Number:
		text = v.String()
	case string:
		text = v
	}
	id, err := strconv.ParseInt(text, 10, 64)
	if err != nil || id <= 0 || text[0] == '+' {
		return nil, invalidField("task_id", "task_id must be a positive whole number (a JSON number or a string of digits)")
	}
	return &id, nil
}

// data streams data_base64's string to data, decoded.
func (d *artifactDecoder) data(f *artifactFields, data func(*artifactFields, io.Reader) error) error {
	c, err := d.nonSpace()
	if err != nil {
		return d.fault(err)
	}
	if c != '"' {
		if isLiteralByte(c) || c == '{' || c == '[' {
			return invalidField("data_base64", "data_base64 has the wrong type: it must be a string")
		}
		return d.syntax("expected a value")
	}
	sr := &dataString{d: d}
	if err := data(f, base64Reader{base64.NewDecoder(base64.StdEncoding, sr), sr}); err != nil {
		return err
	}
	if !sr.done {
		// data stopped early without failing: read the string out, so the
		// rest of the object can be checked.
		if _, err := io.Copy(io.Discard, sr); err != nil {
			return err
		}
	}
	return nil
}

// dataString reads the content of a JSON string whose opening quote was
// read, up to its closing quote: the base64 text, with \/ turned into /
// and \n and \r passed on (the base64 decoder skips line breaks).
type dataString struct {
	d    *artifactDecoder
	done bool
	err  error // the first failure: of the body, or of its JSON
}

func (s *dataString) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.read(p)
	s.err = err
	return n, err
}

func (s *dataString) read(p []byte) (int, error) {
	r := s.d.r
	n := 0
	for n < len(p) && !s.done {
		if r.Buffered() == 0 {
			if n > 0 {
				break // hand on what there is rather than wait for more
			}
			if _, err := r.Peek(1); err != nil {
				return n, s.d.fault(err)
			}
		}
		chunk, _ := r.Peek(min(r.Buffered(), len(p)-n))
		i := 0
		for i < len(chunk) && chunk[i] != '"' && chunk[i] != '\\' && chunk[i] >= 0x20 {
			i++
		}
		n += copy(p[n:], chunk[:i])
		_, _ = r.Discard(i)
		s.d.off += int64(i)
		if i == len(chunk) {
			continue
		}
		c, _ := s.d.readByte()
		switch {
		case c == '"':
			s.done = true
		case c < 0x20:
			return n, s.d.syntax("control character in a string")
		default: // a backslash
			e, err := s.d.readByte()
			if err != nil {
				return n, s.d.fault(err)
			}
			switch e {
			case '/':
				p[n] = '/'
			case 'n':
				p[n] = '\n'
			case 'r':
				p[n] = '\r'
			default:
				return n, errDataEscape
			}
			n++
		}
	}
	if s.done && n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// base64Reader is a base64 decoder of s whose errors, but those of s,
// all say the data is not base64.
type base64Reader struct {
	r io.Reader
	s *dataString
}

func (b base64Reader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		if b.s.err != nil && !errors.Is(b.s.err, io.EOF) {
			return n, b.s.err
		}
		return n, errBadBase64
	}
	return n, err
}
