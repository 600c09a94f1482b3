package httpapi

import (
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzLoggable: whatever a client sends, what reaches a log line is at most
// the limit, valid UTF-8 and printable; text that needs nothing escaped is
// kept as is.
func FuzzLoggable(f *testing.F) {
	f.Add("/tasks/1", 256)
	f.Add("/x\n{\"event\":\"forged\"}\x1b[31m\x00", 256)
	f.Add(strings.Repeat("a", 1000), 256)
	f.Add("caf\u00e9 \u2028 \xff\xfe \\", 10)
	f.Add("", 0)
	f.Fuzz(func(t *testing.T, s string, limit int) {
		if limit < 0 || limit > 1<<16 {
			return
		}
		out := loggable(s, limit)
		if len(out) > max(limit, len(cutMarker(s))) {
			t.Fatalf("loggable(%q, %d) = %q: %d bytes", s, limit, out, len(out))
		}
		if !utf8.ValidString(out) {
			t.Fatalf("loggable(%q) = %q: not UTF-8", s, out)
		}
		for _, r := range out {
			if !unicode.IsPrint(r) {
				t.Fatalf("loggable(%q) = %q: holds %U", s, out, r)
			}
		}
		plain := utf8.ValidString(s) && !strings.ContainsRune(s, '\\') && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
		if plain && len(s) <= limit && out != s {
			t.Fatalf("loggable(%q) = %q: changed text that needs no escaping", s, out)
		}
	})
}

func cutMarker(s string) string { return loggable(s, 0) }

var requestIDToken = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// FuzzRequestIDToken: a client's X-Request-Id is taken exactly when it is
// 1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-'.
func FuzzRequestIDToken(f *testing.F) {
	f.Add("abc-123.X_y")
	f.Add(strings.Repeat("a", 65))
	f.Add("two words")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isRequestIDToken(s), requestIDToken.MatchString(s); got != want {
			t.Fatalf("isRequestIDToken(%q) = %v, want %v", s, got, want)
		}
	})
}
