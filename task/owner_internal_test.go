package task

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/tasktype"
)

// withOwner adds the owner to Validate's metadata without decoding it, and
// the result decodes to the same metadata with the owner set, whatever
// the metadata held.
func TestWithOwner(t *testing.T) {
	tick := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, m := range []tasktype.Metadata{
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
			var got tasktype.Metadata
			require.NoError(t, json.Unmarshal(out, &got), "%s", out)
			want := m
			if meta == nil {
				want = tasktype.Metadata{}
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

// FuzzQuickMetadata: what metadataDecoder takes of metadata,
// encoding/json decodes the same.
func FuzzQuickMetadata(f *testing.F) {
	for _, s := range []string{`{}`, ` { } `, `{"owner": "team-a"}`, `{"owner": "a", "timeout_seconds": 30}`,
		`{"callback_url": "https://x/?a=1&b", "timeout_seconds": 1.5e-3, "owner": "é"}`, `{"owner": "a\"b"}`,
		`{"timeout_seconds": -0, "owner": "a", "owner": "b"}`, `{"timeout_seconds": 01}`, `{"timeout_seconds": 1e400}`,
		`{"OWNER": "x"}`, `{"owner": "x",}`, `{"owner": "x"} x`, `{"output": {"a": 1}}`, `{"output": [1]}`,
		`{"schedule": "n", "schedule_tick": "2026-01-01T00:00:00Z"}`, `{"callback_queue": "callbacks_1", "owner": null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, meta []byte) {
		var got jobMetadata
		if !metadataDecoder.Decode(meta, &got) {
			return
		}
		var want jobMetadata
		require.NoError(t, json.Unmarshal(meta, &want), "%q", meta)
		require.Equal(t, want, got, "%q", meta)
	})
}

// The metadata an insert stores, as PostgreSQL gives it back, is read
// without encoding/json.
func TestMetadataDecoderTakesInsertedMetadata(t *testing.T) {
	in := []byte(`{"owner": "team-a", "schedule": "nightly", "callback_url": "https://example.com/hook?a=1&b=2", ` +
		`"callback_queue": "callbacks", "timeout_seconds": 1.5}`)
	var m jobMetadata
	require.True(t, metadataDecoder.Decode(in, &m), "%s", in)
	require.Equal(t, jobMetadata{Metadata: tasktype.Metadata{TimeoutSeconds: 1.5, Owner: "team-a", CallbackURL: "https://example.com/hook?a=1&b=2",
		CallbackQueue: "callbacks", Schedule: "nightly"}}, m)
}

func BenchmarkFromJobRow(b *testing.B) {
	j := &rivertype.JobRow{ID: 1, Kind: "echo", EncodedArgs: []byte(`{"msg": "hello"}`), State: rivertype.JobStateAvailable,
		Metadata: []byte(`{"owner": "team-a", "timeout_seconds": 30}`)}
	b.ReportAllocs()
	for b.Loop() {
		_ = FromJobRow(j)
	}
}
