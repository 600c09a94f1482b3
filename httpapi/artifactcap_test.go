package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
)

// A task has at most TASK_MAX_ARTIFACTS artifacts: a new name past them is
// refused with 409 too_many_artifacts in either form, whether the name
// comes before the bytes (refused before any is read) or after them (the
// stored object is removed); an artifact of a name the task has replaces
// it and is not refused.
func TestArtifactsPerTaskAreCapped(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{maxArtifactsPerTask: 3})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	put := func(name string) response {
		return b.do(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/%s", id, name), []byte("bytes of "+name))
	}
	for _, name := range []string{"a", "b", "c"} {
		r := put(name)
		require.Equal(t, http.StatusCreated, r.status, "%s: %s", name, r.raw)
	}

	r := put("d")
	require.Equal(t, http.StatusConflict, r.status, "%s", r.raw)
	require.Equal(t, taskrunner.CodeTooManyArtifacts, errorCode(t, r))
	require.Contains(t, string(r.raw), "TASK_MAX_ARTIFACTS")
	for _, body := range []string{
		fmt.Sprintf(`{"task_id":%d,"name":"e","data_base64":"aGk="}`, id), // refused before the data
		fmt.Sprintf(`{"task_id":%d,"data_base64":"aGk=","name":"e"}`, id), // refused once the name comes
		fmt.Sprintf(`{"task_id":%d,"type":"log"}`, id),                    // named after its type
	} {
		r = b.do(t, http.MethodPost, "/artifacts", body)
		require.Equal(t, http.StatusConflict, r.status, "%s: %s", body, r.raw)
		require.Equal(t, taskrunner.CodeTooManyArtifacts, errorCode(t, r))
	}
	require.Equal(t, 3, b.artifactRows(t))
	require.Equal(t, 3, b.objectCount(t), "a refused artifact left its object")

	// Replacing one of the three adds none.
	r = put("a")
	require.Equal(t, http.StatusCreated, r.status, "%s", r.raw)
	r = b.do(t, http.MethodPost, "/artifacts", fmt.Sprintf(`{"task_id":%d,"data_base64":"aGk=","name":"b"}`, id))
	require.Equal(t, http.StatusCreated, r.status, "%s", r.raw)
	require.Equal(t, 3, b.artifactRows(t))
	require.Equal(t, 3, b.objectCount(t))

	got := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d", id), nil).task(t)
	require.Equal(t, 3, got.ArtifactCount)
	require.Len(t, got.ArtifactIDs, 3)

	// The cap is per task.
	other := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "y"}})
	r = b.do(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/d", other), []byte("d"))
	require.Equal(t, http.StatusCreated, r.status, "%s", r.raw)

	rejected := b.logs.Events("artifact_rejected")
	require.Len(t, rejected, 4)
	for _, e := range rejected {
		require.Equal(t, "too_many_artifacts", e["code"])
	}
}

// The cap holds under concurrent uploads: all of them are past the check
// made before the body (their handlers read it), then all send their
// bytes at once; exactly the cap's worth are stored, rows and objects.
func TestArtifactCapHoldsUnderConcurrentUploads(t *testing.T) {
	t.Parallel()
	const maxPerTask, uploads = 4, 24
	b := setup(t, setupOpts{maxArtifactsPerTask: maxPerTask, maxUploads: uploads, tenantMaxUploads: uploads})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})

	readers := make([]*bufio.Reader, uploads)
	conns := make([]io.Writer, uploads)
	for i := range uploads {
		conn := b.dialServer(t)
		require.NoError(t, conn.SetDeadline(time.Now().Add(time.Minute)))
		_, err := fmt.Fprintf(conn, "PUT /tasks/%d/artifacts/file-%d HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n"+
			"Expect: 100-continue\r\n\r\n", id, i)
		require.NoError(t, err)
		readers[i], conns[i] = bufio.NewReader(conn), conn
	}
	for i := range uploads {
		resp, err := http.ReadResponse(readers[i], nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusContinue, resp.StatusCode, "upload %d was answered before its body", i)
	}
	for i := range uploads {
		_, err := io.WriteString(conns[i], "bytes")
		require.NoError(t, err)
	}
	statuses := map[int]int{}
	for i := range uploads {
		resp, err := http.ReadResponse(readers[i], nil)
		require.NoError(t, err)
		out, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		statuses[resp.StatusCode]++
		if resp.StatusCode != http.StatusCreated {
			require.Equal(t, http.StatusConflict, resp.StatusCode, "%s", out)
			require.Contains(t, string(out), `"too_many_artifacts"`)
		}
	}
	require.Equal(t, map[int]int{http.StatusCreated: maxPerTask, http.StatusConflict: uploads - maxPerTask}, statuses)
	require.Equal(t, maxPerTask, b.artifactRows(t))
	require.Equal(t, maxPerTask, b.objectCount(t), "a refused upload left its object")
}

// At the default TASK_MAX_ARTIFACTS (1000) a real upload is refused, and
// a task with 1000 artifacts shows their count and the first 100 ids; its
// artifact list comes in pages that together hold each artifact once, in
// order. (The 1000 rows are written directly: the cap counts rows.)
func TestArtifactCapAtTheDefaultAndPages(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	// Pairs share a creation time: the order, and the cursor, then go by id.
	_, err := b.db.Pool.Exec(context.Background(), `
		INSERT INTO artifacts (id, task_id, type, name, content_type, size_bytes, sha256, bucket, object_key, owner, created_at)
		SELECT gen_random_uuid(), $1::bigint, 'file', 'f' || i, 'application/octet-stream', 0, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', $2, 'tasks/' || $1::bigint || '/row-' || i, 'local',
		       now() - ((1000 - i) / 2) * interval '1 millisecond'
		FROM generate_series(1, $3::int) i`, id, b.store.Bucket(), artifact.DefaultMaxPerTask)
	require.NoError(t, err)
	var want []string
	rows, err := b.db.Pool.Query(context.Background(), "SELECT id::text FROM artifacts WHERE task_id = $1 ORDER BY created_at, id", id)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		want = append(want, s)
	}
	require.NoError(t, rows.Err())
	require.Len(t, want, 1000)

	r := b.do(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/one-more.txt", id), []byte("one more"))
	require.Equal(t, http.StatusConflict, r.status, "%s", r.raw)
	require.Equal(t, taskrunner.CodeTooManyArtifacts, errorCode(t, r))
	require.Equal(t, 0, b.objectCount(t), "the refused upload left an object")
	lim := decode[map[string]any](t, b.do(t, http.MethodGet, "/limits", nil).raw)
	require.EqualValues(t, 1000, lim["task_max_artifacts"])

	got := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d", id), nil).task(t)
	require.Equal(t, 1000, got.ArtifactCount)
	require.Equal(t, want[:100], got.ArtifactIDs, "the first 100, oldest first")
	events := b.firstEvents(t, id, 1)
	var state struct {
		ArtifactCount int      `json:"artifact_count"`
		ArtifactIDs   []string `json:"artifact_ids"`
	}
	require.NoError(t, json.Unmarshal(events[0].data, &state))
	require.Equal(t, 1000, state.ArtifactCount)
	require.Equal(t, want[:100], state.ArtifactIDs)

	list := func(query string) artifactListBody {
		r := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d/artifacts%s", id, query), nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", query, r.raw)
		return decode[artifactListBody](t, r.raw)
	}
	ids := func(l artifactListBody) []string {
		out := make([]string, len(l.Artifacts))
		for i, a := range l.Artifacts {
			out[i] = a.ID
		}
		return out
	}
	// A client that does not page gets the first page, in the same shape.
	first := list("")
	require.Equal(t, want[:artifact.DefaultPageSize], ids(first))
	require.NotNil(t, first.NextCursor)
	for _, limit := range []int{7, 300, 1000} {
		var all []string
		pages := 0
		for cursor := ""; ; pages++ {
			q := fmt.Sprintf("?limit=%d", limit)
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			page := list(q)
			require.LessOrEqual(t, len(page.Artifacts), limit)
			all = append(all, ids(page)...)
			if page.NextCursor == nil {
				break
			}
			cursor = *page.NextCursor
		}
		require.Equal(t, want, all, "limit %d", limit)
		require.Equal(t, (1000+limit-1)/limit, pages+1, "limit %d", limit)
	}
	for _, q := range []string{"?limit=1001", "?limit=0", "?limit=x", "?cursor=x", "?cursor=1.2"} {
		r := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d/artifacts%s", id, q), nil)
		require.Equal(t, http.StatusBadRequest, r.status, "%s: %s", q, r.raw)
		require.Equal(t, taskrunner.CodeInvalidParams, errorCode(t, r), q)
	}

	// Replacing one of the 1000 is no new artifact.
	r = b.do(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/f1", id), []byte("new bytes"))
	require.Equal(t, http.StatusCreated, r.status, "%s", r.raw)
	require.Equal(t, 1000, b.artifactRows(t))
	require.Equal(t, 1, b.objectCount(t))
}
