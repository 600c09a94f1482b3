// Package wire is taskrunner's one fast path for JSON: the scanners
// below, and an Encoder and a Decoder that write and read a struct as
// encoding/json does, from the struct's own fields and tags, without
// reflection on each value. Each takes only the plain values it knows
// (strings without escapes, numbers it writes without an exponent,
// objects of known keys) and reports false for anything else, which is
// left to encoding/json; each is fuzzed against encoding/json.
package wire

import "unicode/utf8"

// SkipSpace is b after its leading JSON whitespace.
func SkipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// PlainString is the content of the JSON string b starts with and what
// follows it, when it holds no escape and is UTF-8; ok is false
// otherwise.
func PlainString(b []byte) (content, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			if !utf8.Valid(b[1:i]) {
				return nil, nil, false
			}
			return b[1:i], b[i+1:], true
		case c < 0x20 || c == '\\':
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// ObjectLength is the length of the object b starts with, found by its
// braces outside strings, not checked; 0 when b starts with none or it
// does not end.
func ObjectLength(b []byte) int {
	if len(b) == 0 || b[0] != '{' {
		return 0
	}
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth--; depth == 0 {
				return i + 1
			}
		}
	}
	return 0
}

// NumberLength is the length of the JSON number b starts with; 0 when it
// starts with none.
func NumberLength(b []byte) int {
	i := 0
	digits := func() int {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return 0
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return 0
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0
		}
	}
	return i
}

// ObjectKey is b after `{ "key" :` and the whitespace around it, when b
// starts with an object whose first member is key (written without
// escapes); ok is false otherwise.
func ObjectKey(b []byte, key string) (rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	k, b, ok := PlainString(SkipSpace(b[1:]))
	if !ok || string(k) != key {
		return nil, false
	}
	if b = SkipSpace(b); len(b) == 0 || b[0] != ':' {
		return nil, false
	}
	return SkipSpace(b[1:]), true
}

// AppendPlainString appends s quoted, as encoding/json writes it with
// HTML escaping off, when no byte of it needs an escape: printable ASCII
// but for the quote and the backslash. ok is false, and b as it was,
// otherwise.
func AppendPlainString(b []byte, s string) (_ []byte, ok bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return b, false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
}
