package tasktype_test

import (
	"testing"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/tasktype"
)

func TestOwnerOf(t *testing.T) {
	t.Parallel()
	for metadata, want := range map[string]string{
		`{"owner":"alice","timeout_seconds":3}`: "alice",
		`{"timeout_seconds":3}`:                 "local",
		``:                                      "local",
		`{"owner":`:                             "",
		`{"owner":7}`:                           "",
	} {
		require.Equal(t, want, tasktype.OwnerOf(&rivertype.JobRow{Kind: "unregistered", Metadata: []byte(metadata)}), metadata)
		// taskrunner's own jobs are no tenant's, whatever their metadata
		// says: they never count against one.
		require.Empty(t, tasktype.OwnerOf(&rivertype.JobRow{Kind: "taskrunner_callback", Metadata: []byte(metadata)}), metadata)
	}
	// A task without an owner is the local tenant's, whatever its type: a
	// server without keys stores none.
	require.Equal(t, "local", tasktype.OwnerOf(&rivertype.JobRow{Kind: "echo", Metadata: []byte(`{}`)}))
	require.Equal(t, "alice", tasktype.OwnerOf(&rivertype.JobRow{Kind: "echo", Metadata: []byte(`{"owner":"alice"}`)}))
}
