package taskrunner_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

func TestProgressOfIsTheCurrentAttempts(t *testing.T) {
	t.Parallel()
	meta := json.RawMessage(`{"owner":"alice","progress":{"done":2,"total":3,"message":"seconds slept","attempt":1,"seq":3,"updated_at":"2030-01-01T00:00:00Z"}}`)
	p := taskrunner.ProgressOf(&taskrunner.Task{Attempt: 1, Metadata: meta})
	require.NotNil(t, p)
	require.Equal(t, taskrunner.Progress{Done: 2, Total: 3, Message: "seconds slept", Attempt: 1, Seq: 3, UpdatedAt: p.UpdatedAt}, *p)
	require.Nil(t, taskrunner.ProgressOf(&taskrunner.Task{Attempt: 2, Metadata: meta}), "an earlier attempt's progress is stale")
	require.Nil(t, taskrunner.ProgressOf(&taskrunner.Task{Attempt: 1, Metadata: json.RawMessage(`{"owner":"alice"}`)}))
	require.Nil(t, taskrunner.ProgressOf(&taskrunner.Task{Attempt: 1, Metadata: json.RawMessage(`{"progress":`)}))
	require.Nil(t, taskrunner.ProgressOf(&taskrunner.Task{Attempt: 1}))
}
