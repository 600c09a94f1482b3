package httpapi

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/task"
)

var quickDecodeSeeds = []string{
	`{"type":"echo","params":{"msg":"hello"}}`,
	` { "params" : { "a" : [1, {"b": "}\"{"}], "c": null } , "type" : "sleep" } `,
	`{"type":"echo","params":{"msg":"hello"}}}`,
	`{"type":"echo","params":{"a":1}}x`,
	`{"type":"echo","type":"sleep","params":{},"params":{"seconds":1}}`,
	`{"Type":"echo"}`, `{}`, `{"type":"é"}`, `{"type":"a\"b"}`, `{"type":"echo","params":null}`,
	`{"type":"echo","params":{"a":}}`, `{"type":"echo","params":{"a":[}}`, `{"type":"echo",}`,
	`{"type":"echo","params":{"msg":"hi"},"priority":2}`,
	`{"tasks":[{"type":"echo","params":{"msg":"hello"}},{"type":"sleep","params":{"seconds":1}}]}`,
	`{"tasks":[]}`, `{"tasks":[{}]}`, `{"tasks":[{"type":"echo"},]}`, `{"tasks":[{"type":"echo"} {"type":"echo"}]}`,
	`{"tasks":[{"type":"echo"}]} `, `{"tasks":[{"type":"echo"}]}]`, `{"tasks":null}`, `{"tasks":[null]}`,
	`{"type":"echo","params":{},"timeout_seconds":1.5,"max_retries":2,"priority":-1,"queue":"q","callback_url":"https://x/"}`,
	`{"type":"echo","max_retries":1.5}`, `{"type":"echo","priority":99999999999999999999}`, `{"type":"echo","timeout_seconds":null}`,
	`{"type":"echo","run_at":"2030-01-01T00:00:00Z"}`, `{"type":"echo","ParamsInBody":true}`, `{"tasks":[{"type":"a"}],"tasks":[]}`,
}

// FuzzQuickTaskRequest: the decoders of POST /tasks and /tasks/batch
// accept and refuse as decodeStrict does, whether their fast decoding
// takes a body or not.
func FuzzQuickTaskRequest(f *testing.F) {
	for _, s := range quickDecodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		requireDecodedAsDecodeStrict(t, body)
	})
}

func requireDecodedAsDecodeStrict(t *testing.T, body []byte) {
	var want task.Request
	wantErr := decodeStrict(body, &want)
	got, err := decodeTaskRequest(body)
	require.Equal(t, wantErr, err, "%q", body)
	if err == nil {
		require.Equal(t, want, *got, "%q", body)
	}
	var wantBatch batchRequest
	wantErr = decodeStrict(body, &wantBatch)
	gotBatch, err := decodeBatchRequest(body)
	require.Equal(t, wantErr, err, "%q", body)
	if err == nil {
		require.Equal(t, wantBatch, *gotBatch, "%q", body)
	}
}

// The decoders of POST /tasks and /tasks/batch refuse and accept as
// decodeStrict does, whether the fast decoding takes a body or not.
func TestQuickDecodeRefusesAsDecodeStrict(t *testing.T) {
	t.Parallel()
	for _, s := range append(quickDecodeSeeds, "", "  ", "[1]", "{\"type\":\"echo\",\"params\":{\"msg\":\"a\x00\"}}",
		"{\"params\":{\"\":[{\"\xd9\":\"\"}]}}") {
		requireDecodedAsDecodeStrict(t, []byte(s))
	}
	// The fast decoding takes the usual bodies.
	var req task.Request
	require.True(t, taskRequests.Decode([]byte(quickDecodeSeeds[0]), &req))
	require.True(t, taskRequests.Decode([]byte(`{"type":"echo","params":{},"timeout_seconds":1.5,"max_retries":2,"queue":"q"}`), &req))
	var batch batchRequest
	require.True(t, batchRequests.Decode([]byte(quickDecodeSeeds[14]), &batch))
	require.Len(t, batch.Tasks, 2)
}

func BenchmarkDecodeTaskRequest(b *testing.B) {
	body := []byte(`{"type":"echo","params":{"msg":"hello"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeTaskRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBatchRequest(b *testing.B) {
	body := []byte(`{"tasks":[` + strings.Repeat(`{"type":"echo","params":{"msg":"hello"}},`, 49) + `{"type":"echo","params":{"msg":"hello"}}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeBatchRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}
