package task

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/jobs"
)

// withOwner adds the owner to Validate's metadata without decoding it, and
// the result decodes to the same metadata with the owner set, whatever
// the metadata held.
func TestWithOwner(t *testing.T) {
	tick := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, m := range []jobs.Metadata{
		{},
		{TimeoutSeconds: 1.5},
		{TimeoutSeconds: 600, CallbackURL: "https://example.com/hook?a=1&b=\"2\""},
		{Owner: "someone-else", Schedule: "nightly", ScheduleTick: &tick},
	} {
		in, err := json.Marshal(m)
		require.NoError(t, err)
		for _, meta := range [][]byte{in, nil} {
			out, err := withOwner(meta, `team "a" \ b`)
			require.NoError(t, err)
			var got jobs.Metadata
			require.NoError(t, json.Unmarshal(out, &got), "%s", out)
			want := m
			if meta == nil {
				want = jobs.Metadata{}
			}
			want.Owner = `team "a" \ b`
			require.Equal(t, want, got, "%s", out)
			require.True(t, json.Valid(out))
		}
	}
	_, err := withOwner([]byte(`{"owner":`), "x")
	require.Error(t, err)
}

// appendJSONString writes a name as json.Marshal does, quoting a plain one
// without encoding it.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "team-a", "acme.io_1", `team "a" \ b`, "<b>&", "é\u2028\x00\x7f"} {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		got, err := appendJSONString([]byte("x"), s)
		require.NoError(t, err)
		require.Equal(t, "x"+string(want), string(got), "%q", s)
	}
}
