package storable_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/storable"
)

var cases = []struct {
	name   string
	doc    string
	path   string // "" with reason "": storable
	key    bool
	reason string
}{
	{"plain", `{"type":"echo","params":{"msg":"hello"}}`, "", false, ""},
	{"other escapes", `{"a":"\n\t\"\\ \u0001 \u00e9 \uFFFD"}`, "", false, ""},
	{"escaped backslash then u0000 text", `{"a":"\\u0000"}`, "", false, ""},
	{"surrogate pair", `{"a":"\ud83d\ude00","b":"\uD83D\uDE00"}`, "", false, ""},
	{"utf-8", `{"a":"héllo 😀"}`, "", false, ""},
	{"nul in value", `{"type":"echo","params":{"msg":"a\u0000b"}}`, "params.msg", false, storable.ReasonNUL},
	{"nul in batch", `{"tasks":[{"type":"echo","params":{"msg":"a"}},{},{"params":{"x":[1,{"msg":"\u0000"}]}}]}`, "tasks[2].params.x[1].msg", false, storable.ReasonNUL},
	{"nul after empty containers", `{"a":{},"b":[],"c":[[],{}, "\u0000"]}`, "c[2]", false, storable.ReasonNUL},
	{"nul in key", `{"params":{"a\u0000":1}}`, "params", true, storable.ReasonNUL},
	{"nul in top-level key", `{"\u0000":1}`, "", true, storable.ReasonNUL},
	{"nul at top level", `"\u0000"`, "", false, storable.ReasonNUL},
	{"upper-case hex", `{"a":"\u0000","b":1}`, "a", false, storable.ReasonNUL},
	{"lone high surrogate", `{"q":"\ud800"}`, "q", false, storable.ReasonSurrogate},
	{"high surrogate then text", `{"q":"\ud800x"}`, "q", false, storable.ReasonSurrogate},
	{"two high surrogates", `{"q":"\ud800\ud800"}`, "q", false, storable.ReasonSurrogate},
	{"lone low surrogate", `{"q":["ok","\udc00"]}`, "q[1]", false, storable.ReasonSurrogate},
	{"invalid utf-8", "{\"q\":\"a\xffb\"}", "q", false, storable.ReasonUTF8},
	{"encoded surrogate in utf-8", "{\"q\":\"\xed\xa0\x80\"}", "q", false, storable.ReasonUTF8},
	{"key with escapes names the path", `{"a\"b":{"c":"\u0000"}}`, `a"b.c`, false, storable.ReasonNUL},
	{"numbers and literals", `{"a":[1,-2.5e3,true,false,null],"b":"\u0000"}`, "b", false, storable.ReasonNUL},
	{"spaces", " { \"a\" : [ 1 , \"x\" ] , \"b\" :\n\"\\u0000\" } ", "b", false, storable.ReasonNUL},
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := storable.Check([]byte(tc.doc))
			if tc.reason == "" {
				require.Nil(t, p)
				require.Equal(t, tc.doc, string(storable.JSON([]byte(tc.doc))), "nothing to repair")
				return
			}
			require.NotNil(t, p)
			require.Equal(t, storable.Problem{Path: tc.path, Key: tc.key, Reason: tc.reason}, *p)
			repaired := storable.JSON([]byte(tc.doc))
			require.Nil(t, storable.Check(repaired), "repaired: %s", repaired)
			require.True(t, json.Valid(repaired), "repaired: %s", repaired)
		})
	}
}

// What Check refuses is what PostgreSQL's jsonb refuses, and what JSON
// repairs it takes.
func TestCheckAgreesWithPostgres(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDB(t)
	ctx := context.Background()
	stores := func(doc []byte) error {
		_, err := tdb.Pool.Exec(ctx, "SELECT $1::text::jsonb", string(doc))
		return err
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := stores([]byte(tc.doc))
			if tc.reason == "" {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
			require.NoError(t, stores(storable.JSON([]byte(tc.doc))))
		})
	}
	for _, s := range []string{"plain", "a\x00b", "a\xffb", "\xed\xa0\x80", "é"} {
		_, err := tdb.Pool.Exec(ctx, "SELECT $1::text", storable.Text(s))
		require.NoError(t, err, "%q", s)
		_, err = tdb.Pool.Exec(ctx, "SELECT $1::text", s)
		require.Equal(t, storable.CheckText(s) == "", err == nil, "%q: %v", s, err)
	}
}

func TestText(t *testing.T) {
	t.Parallel()
	require.Equal(t, "plain", storable.Text("plain"))
	require.Equal(t, "a\uFFFDb", storable.Text("a\x00b"))
	require.Equal(t, "a\uFFFDb", storable.Text("a\xffb"))
	require.Equal(t, storable.ReasonNUL, storable.CheckText("\x00"))
	require.Equal(t, storable.ReasonUTF8, storable.CheckText("\xff"))
}

// FuzzCheck: Check never panics; a document it passes JSON leaves alone;
// JSON's repair of valid JSON is valid JSON that Check passes; Text's
// result is always storable text.
func FuzzCheck(f *testing.F) {
	for _, tc := range cases {
		f.Add([]byte(tc.doc))
	}
	f.Add([]byte(`{"a":"\u00`))
	f.Add([]byte(`{"a":"\ud800\u`))
	f.Add([]byte(`[[[[`))
	f.Add([]byte(`{"a" "b"}`))
	f.Add([]byte(`{,}`))
	f.Add([]byte(`{"a":1,"`))
	f.Add([]byte(`{"a":"x`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		p := storable.Check(doc)
		repaired := storable.JSON(doc)
		if !json.Valid(doc) {
			return
		}
		if p == nil && !bytes.Equal(repaired, doc) {
			t.Fatalf("Check passed %q but JSON changed it to %q", doc, repaired)
		}
		if !json.Valid(repaired) {
			t.Fatalf("JSON(%q) = %q is not JSON", doc, repaired)
		}
		if q := storable.Check(repaired); q != nil {
			t.Fatalf("JSON(%q) = %q still fails: %+v", doc, repaired, q)
		}
		var v any
		if err := json.Unmarshal(repaired, &v); err == nil {
			if enc, _ := json.Marshal(v); storable.Check(enc) != nil {
				t.Fatalf("JSON(%q) decodes to what cannot be stored", doc)
			}
		}
		if p != nil && p.Reason == "" {
			t.Fatalf("problem without a reason: %+v", p)
		}
		s := storable.Text(string(doc))
		if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
			t.Fatalf("Text(%q) = %q", doc, s)
		}
	})
}
