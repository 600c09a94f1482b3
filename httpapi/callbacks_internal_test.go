package httpapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

// A list page's task, its fields encoded first and its callback added
// after, is byte for byte the taskView's encoding.
func TestWithCallbackEncodesTheTaskView(t *testing.T) {
	t.Parallel()
	task := &taskrunner.Task{ID: 7, Type: "echo", Status: "completed", Params: json.RawMessage(`{"msg":"<a&b>"}`),
		Result: json.RawMessage(`{"msg":"<a&b>"}`), Attempt: 1, MaxAttempts: 3, Priority: 1, Queue: "default", Owner: "local",
		CreatedAt: time.Unix(1700000000, 0).UTC(), ScheduledAt: time.Unix(1700000000, 0).UTC()}
	for _, cb := range []*callbackSummary{
		nil,
		{URL: "https://a.example.com/cb?x=1&y=<2>", State: taskrunner.CallbackFailed, Attempts: 12},
	} {
		fields, err := encodeJSON(fieldsOf(task, time.Minute))
		require.NoError(t, err)
		got, err := withCallback(fields, cb)
		require.NoError(t, err)
		want, err := encodeJSON(taskView{taskFields: fieldsOf(task, time.Minute), Callback: cb})
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
}
