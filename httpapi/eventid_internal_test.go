package httpapi

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEventIDRoundTrips(t *testing.T) {
	t.Parallel()
	e := eventID{attempt: 2, seq: 17, status: "running"}
	require.Equal(t, "2-17-running", e.String())
	back, ok := parseEventID(e.String())
	require.True(t, ok)
	require.Equal(t, e, back)
	for _, bad := range []string{"", "1", "1-2", "a-1-running", "1-b-running", "-1-0-running", "1--1-running", "1-0-"} {
		_, ok := parseEventID(bad)
		require.False(t, ok, "%q", bad)
	}
}

// A Last-Event-ID is outside input: any header value is either refused or
// read as an id that prints back to itself.
func FuzzParseEventID(f *testing.F) {
	for _, s := range []string{"1-0-running", "3-12-completed", "0-0-available", "", "x", "1-2", "99999999999999999999-1-x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		e, ok := parseEventID(v)
		if !ok {
			return
		}
		again, ok := parseEventID(e.String())
		if !ok || again != e {
			t.Fatalf("%q read as %+v, which prints as %q and reads back as %+v (%v)", v, e, e.String(), again, ok)
		}
	})
}
