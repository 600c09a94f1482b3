package jobs_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/tasktype"
)

// A fetch task worked a second time (an operator's retry here; a rescue
// after a crash takes the same path) replaces its artifact: one artifact
// per task and name, holding what the last attempt fetched, and one
// object in MinIO.
func TestFetchWorkedAgainReplacesItsArtifact(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := testenv.NewDB(t)
	logger, _ := testenv.Logger(t)
	bucket := testenv.NewBucket(t, "fetch-retry-")
	store, err := artifact.NewStore(artifact.Config{Endpoint: bucket.Endpoint, User: bucket.User, Password: bucket.Password, Bucket: bucket.Name})
	require.NoError(t, err)
	arts, err := artifact.NewService(artifact.ServiceConfig{Store: store, Pool: tdb.Pool, MaxBytes: 1 << 20, Logger: logger})
	require.NoError(t, err)

	// The page says which time it was fetched.
	var fetches atomic.Int32
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "fetch %d", fetches.Add(1))
	}))
	t.Cleanup(site.Close)
	_, port, _ := net.SplitHostPort(site.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	types := builtin.Registry(builtin.Config{Fetch: fetch.Config{Allowlist: []string{"*"}, AllowedPorts: []int{p}, AllowPrivateNetworks: true, MaxBytes: 1 << 20}})

	runs, err := jobs.NewRunRecorder(jobs.RunRecorderConfig{Pool: tdb.Pool, Logger: logger})
	require.NoError(t, err)
	client, err := jobs.NewClient(jobs.ClientConfig{
		Pool: tdb.Pool, Logger: logger, Work: true, Runs: runs, Concurrency: 2,
		MaxRuntime: 30 * time.Second, FetchCooldown: 5 * time.Millisecond, FetchPoll: 50 * time.Millisecond,
		Types: types, Services: tasktype.Services{Artifacts: arts, Logger: logger},
	})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, client.Stop(stopCtx))
		require.NoError(t, runs.Close(stopCtx))
	})

	res, err := client.Insert(ctx, builtin.FetchArgs{URL: site.URL + "/page.txt"}, &river.InsertOpts{MaxAttempts: 3})
	require.NoError(t, err)
	id := res.Job.ID
	waitCompleted := func(attempt int) {
		t.Helper()
		require.Eventually(t, func() bool {
			job, err := client.JobGet(ctx, id)
			require.NoError(t, err)
			return job.State == rivertype.JobStateCompleted && job.Attempt == attempt
		}, 20*time.Second, 20*time.Millisecond, "attempt %d did not complete", attempt)
	}
	waitCompleted(1)
	first, err := db.ArtifactsForTaskPage(ctx, tdb.Pool, db.ArtifactPageQuery{TaskID: id, Limit: 10})
	require.NoError(t, err)
	require.Len(t, first, 1)

	_, err = client.JobRetry(ctx, id)
	require.NoError(t, err)
	waitCompleted(2)

	list, err := db.ArtifactsForTaskPage(ctx, tdb.Pool, db.ArtifactPageQuery{TaskID: id, Limit: 10})
	require.NoError(t, err)
	require.Len(t, list, 1, "one artifact per task and name")
	require.Equal(t, "page.txt", list[0].Name)
	require.NotEqual(t, first[0].ID, list[0].ID, "the second attempt's artifact replaced the first")
	obj, err := arts.Open(ctx, &list[0])
	require.NoError(t, err)
	defer obj.Close()
	body, err := io.ReadAll(obj)
	require.NoError(t, err)
	require.Equal(t, "fetch 2", string(body))
	require.Equal(t, 1, bucket.Count(t), "the first attempt's object is gone")
}
