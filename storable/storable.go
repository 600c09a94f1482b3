// Package storable knows what PostgreSQL refuses to store, and checks or
// repairs text and JSON before it gets there.
//
// PostgreSQL's text columns refuse the NUL character and bytes that are not
// UTF-8; its jsonb refuses the escape \u0000 and any \uD800-\uDFFF escape
// that is not half of a surrogate pair. Client input holding any of them is
// refused with the field named (Check); text that workers take from outside
// (a provider's error, a fetched header) is repaired instead (Text, JSON),
// each bad character becoming U+FFFD.
package storable

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Reasons a string cannot be stored.
const (
	ReasonNUL       = "holds a NUL character (\\u0000)"
	ReasonUTF8      = "is not valid UTF-8"
	ReasonSurrogate = "holds a lone UTF-16 surrogate escape"
)

// Problem is the first unstorable string of a JSON document.
type Problem struct {
	// Path names where it is: "params.msg", "tasks[2].params.msg"; empty
	// for the document itself.
	Path string
	// Key is set when an object key, not a value, is unstorable: Path then
	// names the object holding it.
	Key bool
	// Reason is one of the Reason constants.
	Reason string
}

// fine reports, cheaply, that doc holds nothing unstorable: no \u escape,
// no NUL byte and only UTF-8. Most documents are fine; the others are
// walked to find where.
func fine(doc []byte) bool {
	return !bytes.Contains(doc, []byte(`\u`)) && bytes.IndexByte(doc, 0) < 0 && utf8.Valid(doc)
}

// Check returns the first string value or key of the JSON document doc that
// PostgreSQL would refuse, or nil. doc is expected to be valid JSON; where
// it is not, Check stops and returns nil, leaving the syntax error to the
// decoder.
func Check(doc []byte) *Problem {
	if fine(doc) {
		return nil
	}
	type frame struct {
		array bool
		index int
		key   string
	}
	var stack []frame
	path := func(frames []frame) string {
		var b strings.Builder
		for _, f := range frames {
			if f.array {
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		}
		return b.String()
	}
	i, wantKey := 0, false
outer:
	for {
		i = skipSpace(doc, i)
		if i >= len(doc) {
			return nil
		}
		if wantKey {
			if doc[i] != '"' {
				return nil
			}
			end, reason := scanString(doc, i)
			if reason != "" {
				return &Problem{Path: path(stack[:len(stack)-1]), Key: true, Reason: reason}
			}
			if end < 0 {
				return nil
			}
			stack[len(stack)-1].key = unquote(doc[i:end])
			i = skipSpace(doc, end)
			if i >= len(doc) || doc[i] != ':' {
				return nil
			}
			i, wantKey = i+1, false
			continue
		}
		switch doc[i] {
		case '{', '[':
			open, closing := doc[i], byte('}')
			if open == '[' {
				closing = ']'
			}
			j := skipSpace(doc, i+1)
			if j < len(doc) && doc[j] == closing {
				i = j + 1
				break
			}
			stack = append(stack, frame{array: open == '['})
			i, wantKey = j, open == '{'
			continue
		case '"':
			end, reason := scanString(doc, i)
			if reason != "" {
				return &Problem{Path: path(stack), Reason: reason}
			}
			if end < 0 {
				return nil
			}
			i = end
		default:
			start := i
			for i < len(doc) && !endsLiteral(doc[i]) {
				i++
			}
			if i == start {
				return nil
			}
		}
		// After a value: the next element, or the end of containers.
		for {
			i = skipSpace(doc, i)
			if len(stack) == 0 || i >= len(doc) {
				return nil
			}
			top := &stack[len(stack)-1]
			switch doc[i] {
			case ',':
				i++
				if top.array {
					top.index++
				} else {
					wantKey = true
				}
				continue outer
			case ']', '}':
				stack = stack[:len(stack)-1]
				i++
			default:
				return nil
			}
		}
	}
}

// CheckText returns why PostgreSQL would refuse s as text, or "".
func CheckText(s string) string {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return ReasonNUL
	case !utf8.ValidString(s):
		return ReasonUTF8
	}
	return ""
}

// Text returns s with every NUL and every byte that is not UTF-8 replaced
// by U+FFFD, so a text column takes it.
func Text(s string) string {
	if CheckText(s) == "" {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// JSON returns the JSON document doc with every \u0000 escape, lone
// surrogate escape and byte that is not UTF-8 inside its strings replaced
// by U+FFFD, so jsonb takes it. A document with nothing to replace is
// returned as is.
func JSON(doc []byte) []byte {
	if fine(doc) {
		return doc
	}
	out := make([]byte, 0, len(doc))
	for i := 0; i < len(doc); {
		if doc[i] != '"' {
			out = append(out, doc[i])
			i++
			continue
		}
		// A string: copy it, replacing what jsonb refuses.
		out = append(out, '"')
		i++
		for i < len(doc) && doc[i] != '"' {
			n, reason := scanChar(doc, i)
			if reason == "" {
				out = append(out, doc[i:i+n]...)
			} else {
				out = append(out, `\ufffd`...)
			}
			i += n
		}
		if i < len(doc) {
			out = append(out, '"')
			i++
		}
	}
	return out
}

// endsLiteral reports whether c ends a number or a literal.
func endsLiteral(c byte) bool {
	switch c {
	case ',', ']', '}', ':', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

func skipSpace(doc []byte, i int) int {
	for i < len(doc) && (doc[i] == ' ' || doc[i] == '\t' || doc[i] == '\n' || doc[i] == '\r') {
		i++
	}
	return i
}

// scanString checks the string starting at doc[i] (its opening quote) and
// returns the index after its closing quote (-1 when there is none), or
// why it cannot be stored.
func scanString(doc []byte, i int) (end int, reason string) {
	for i++; i < len(doc); {
		if doc[i] == '"' {
			return i + 1, ""
		}
		n, reason := scanChar(doc, i)
		if reason != "" {
			return i, reason
		}
		i += n
	}
	return -1, ""
}

// scanChar reads one character of a JSON string at doc[i]: a byte, a UTF-8
// sequence or an escape (a surrogate pair is one). It returns its length
// and, when PostgreSQL would refuse it, why.
func scanChar(doc []byte, i int) (n int, reason string) {
	c := doc[i]
	switch {
	case c == 0:
		return 1, ReasonNUL
	case c < utf8.RuneSelf && c != '\\':
		return 1, ""
	case c >= utf8.RuneSelf:
		r, size := utf8.DecodeRune(doc[i:])
		if r == utf8.RuneError && size <= 1 {
			return 1, ReasonUTF8
		}
		return size, ""
	}
	// An escape.
	if i+1 >= len(doc) {
		return 1, ""
	}
	if doc[i+1] != 'u' {
		return 2, ""
	}
	r, ok := hex4(doc, i+2)
	switch {
	case !ok:
		return 2, ""
	case r == 0:
		return 6, ReasonNUL
	case r >= 0xDC00 && r <= 0xDFFF:
		return 6, ReasonSurrogate
	case r >= 0xD800 && r <= 0xDBFF:
		if i+7 < len(doc) && doc[i+6] == '\\' && doc[i+7] == 'u' {
			if low, ok := hex4(doc, i+8); ok && low >= 0xDC00 && low <= 0xDFFF {
				return 12, ""
			}
		}
		return 6, ReasonSurrogate
	}
	return 6, ""
}

// hex4 reads four hex digits at doc[i].
func hex4(doc []byte, i int) (rune, bool) {
	if i+4 > len(doc) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(doc[i:i+4]), 16, 32)
	return rune(v), err == nil
}

// unquote is a key's text, for naming a path.
func unquote(quoted []byte) string {
	if bytes.IndexByte(quoted, '\\') < 0 {
		return string(quoted[1 : len(quoted)-1])
	}
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return string(quoted[1 : len(quoted)-1])
	}
	return s
}
