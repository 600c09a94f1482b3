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

// FuzzQuickMetadata: what quickMetadata reads of metadata, encoding/json
// decodes the same, with no output.
func FuzzQuickMetadata(f *testing.F) {
	for _, s := range []string{`{}`, ` { } `, `{"owner": "team-a"}`, `{"owner": "a", "timeout_seconds": 30}`,
		`{"callback_url": "https://x/?a=1&b", "timeout_seconds": 1.5e-3, "owner": "é"}`, `{"owner": "a\"b"}`,
		`{"timeout_seconds": -0, "owner": "a", "owner": "b"}`, `{"timeout_seconds": 01}`, `{"timeout_seconds": 1e400}`,
		`{"OWNER": "x"}`, `{"owner": "x",}`, `{"owner": "x"} x`, `{"output": {"a": 1}}`, `{"schedule": "n", "schedule_tick": "2026-01-01T00:00:00Z"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, meta []byte) {
		timeout, owner, ok := quickMetadata(meta)
		if !ok {
			return
		}
		var m struct {
			jobs.Metadata
			Output json.RawMessage `json:"output"`
		}
		require.NoError(t, json.Unmarshal(meta, &m), "%q", meta)
		require.Equal(t, m.TimeoutSeconds, timeout, "%q", meta)
		require.Equal(t, m.Owner, owner, "%q", meta)
		require.Empty(t, m.Output, "%q", meta)
	})
}
