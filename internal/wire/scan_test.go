package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
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

// FuzzObjectKey: what follows the key ObjectKey finds is what follows
// that key's colon in the object encoding/json reads.
func FuzzObjectKey(f *testing.F) {
	for _, s := range []string{`{"tasks": [1]}`, ` {"tasks":1}`, `{ "msg" : "x"}`, `{"ms\u0067":1}`, `{"msg"`, `[]`} {
		f.Add([]byte(s), "msg")
	}
	f.Fuzz(func(t *testing.T, b []byte, key string) {
		rest, ok := ObjectKey(b, key)
		if !ok {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			return // the caller's reader refuses what follows
		}
		v, found := m[key]
		if !found {
			t.Fatalf("found key %q in %q, which encoding/json does not", key, b)
		}
		var want, got any
		if json.Unmarshal(v, &want) == nil && json.NewDecoder(bytes.NewReader(rest)).Decode(&got) == nil &&
			fmt.Sprint(want) != fmt.Sprint(got) && len(m) == 1 {
			t.Fatalf("value after %q in %q: %v, encoding/json reads %v", key, b, got, want)
		}
	})
}

// FuzzAppendPlainString: a string AppendPlainString takes is written as
// encoding/json writes it with HTML escaping off.
func FuzzAppendPlainString(f *testing.F) {
	for _, s := range []string{"alice", "a<b>&c", `q"`, "é", "\x00", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := AppendPlainString([]byte("x"), s)
		if !ok {
			if string(got) != "x" {
				t.Fatalf("left %q changed: %q", s, got)
			}
			return
		}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if "x"+strings.TrimSuffix(want.String(), "\n") != string(got) {
			t.Fatalf("wrote %q for %q; encoding/json writes %q", got, s, want.String())
		}
	})
}
