package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/task"
)

// taskrunner's own jobs are no tenant's tasks, whatever their metadata
// says: a callback delivery tagged with alice's name is not found by her
// (nor by an admin) on any task route, is not listed, and no bulk action
// matches it; her own task beside it is.
func TestInternalJobsAreNoTenantsTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{apiKeys: tenantKeys})
	r := b.doAs(t, aliceKey, http.MethodPost, "/tasks", echoTask)
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.raw)
	own := decode[struct {
		ID int64 `json:"id"`
	}](t, r.raw).ID
	var internal int64
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `INSERT INTO river_job (args, kind, max_attempts, queue, state, scheduled_at, metadata)
		VALUES ('{"task_id":1,"event":"task.completed"}', $1, 5, $2, 'scheduled', now() + interval '1 hour', '{"owner":"alice"}') RETURNING id`,
		jobs.CallbackArgs{}.Kind(), jobs.InternalQueue).Scan(&internal))

	for _, key := range []string{aliceKey, opsKey} {
		for _, req := range [][2]string{
			{http.MethodGet, "/tasks/%d"}, {http.MethodPost, "/tasks/%d/cancel"}, {http.MethodGet, "/tasks/%d/events"},
			{http.MethodGet, "/tasks/%d/artifacts"}, {http.MethodGet, "/tasks/%d/callbacks"},
		} {
			path := fmt.Sprintf(req[1], internal)
			r = b.doAs(t, key, req[0], path, nil)
			require.Equal(t, http.StatusNotFound, r.status, "%s %s: %s", req[0], path, r.raw)
			require.Equal(t, taskrunner.CodeNotFound, errorCode(t, r))
		}
		r = b.doAs(t, key, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/x.txt", internal), "hello", "Content-Type", "text/plain")
		require.Equal(t, http.StatusNotFound, r.status, "an artifact on an internal job: %s", r.raw)
		require.NotContains(t, listIDs(t, b, key, "?limit=500"), internal, "an internal job is not listed")
		require.EqualValues(t, 1, b.bulk(t, key, task.ActionCancel, map[string]any{}, true).Matched, "only alice's own task matches")
	}
	r = b.doAs(t, aliceKey, http.MethodGet, fmt.Sprintf("/tasks/%d", own), nil)
	require.Equal(t, http.StatusOK, r.status, "her own task: %s", r.raw)

	var state string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT state FROM river_job WHERE id = $1`, internal).Scan(&state))
	require.Equal(t, "scheduled", state, "no route touched it")
}
