package quickjson

import (
	"encoding/json"
	"testing"
)

// FuzzPlainString: a string PlainString takes is the one encoding/json
// reads, and what follows it is left as it was.
func FuzzPlainString(f *testing.F) {
	for _, s := range []string{`"hello", 1`, `"a\"b"`, `"é"`, "\"\xff\"", `"x`, `""`, `1`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		content, rest, ok := PlainString(b)
		if !ok {
			return
		}
		var want string
		if err := json.Unmarshal(b[:len(b)-len(rest)], &want); err != nil {
			t.Fatalf("took %q, which encoding/json refuses: %v", b, err)
		}
		if want != string(content) {
			t.Fatalf("read %q from %q; encoding/json reads %q", content, b, want)
		}
	})
}

// FuzzNumberLength: a number NumberLength finds is a JSON number.
func FuzzNumberLength(f *testing.F) {
	for _, s := range []string{`0`, `-1.5e+3,`, `01`, `1.`, `-`, `2E9}`, `.5`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := NumberLength(b)
		if n == 0 {
			return
		}
		var v json.Number
		if err := json.Unmarshal(b[:n], &v); err != nil {
			t.Fatalf("found %q in %q, which encoding/json refuses: %v", b[:n], b, err)
		}
	})
}

// FuzzObjectLength: an object ObjectLength finds, when valid JSON, is all
// of the first value encoding/json reads.
func FuzzObjectLength(f *testing.F) {
	for _, s := range []string{`{"a":{"b":"}"}} x`, `{"a":"\"}"}`, `{`, `[]`, `{}{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := ObjectLength(b)
		if n == 0 || !json.Valid(b[:n]) {
			return
		}
		var v map[string]any
		if err := json.Unmarshal(b[:n], &v); err != nil {
			t.Fatalf("found %q in %q, not an object: %v", b[:n], b, err)
		}
	})
}
