package httpapi_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/metrics"
)

// Keys of the tenant tests: two clients, alice (with a second key, as
// while rotating) and bob, and an admin, ops.
const (
	aliceKey  = "alice-key-0123456789abcdef"
	alice2Key = "alice-key-rotated-0123456789"
	bobKey    = "bob-key-0123456789abcdef"
	opsKey    = "ops-key-0123456789abcdef"
)

var tenantKeys = []config.APIKey{
	{Name: "alice", Key: aliceKey}, {Name: "alice", Key: alice2Key},
	{Name: "bob", Key: bobKey}, {Name: "ops", Key: opsKey, Admin: true},
}

// tenants is a server with alice's and bob's keys and ops's, and a task
// of alice's holding one artifact.
type tenants struct {
	*bundle
	aliceTask int64
	aliceArt  string
	bobTask   int64
}

func setupTenants(t *testing.T, opts setupOpts) *tenants {
	t.Helper()
	opts.apiKeys = tenantKeys
	b := setup(t, opts)
	ts := &tenants{bundle: b}
	r := b.doAs(t, aliceKey, http.MethodPost, "/tasks", echoTask)
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.raw)
	ts.aliceTask = r.task(t).ID
	require.Equal(t, "alice", r.task(t).Owner)
	r = b.doAs(t, bobKey, http.MethodPost, "/tasks", echoTask)
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.raw)
	ts.bobTask = r.task(t).ID
	require.Equal(t, "bob", r.task(t).Owner)
	put := b.doAs(t, aliceKey, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/secret.txt", ts.aliceTask), "alice's secret")
	require.Equal(t, http.StatusCreated, put.status, "body: %s", put.raw)
	ts.aliceArt = put.artifact(t).ID
	return ts
}

// notFoundAsUnknown requires got, an answer about another tenant's id, to
// be the answer about an id that names nothing: the same status, code and
// message (the id aside).
func notFoundAsUnknown(t *testing.T, what string, got, unknown response, id, unknownID string) {
	t.Helper()
	require.Equal(t, http.StatusNotFound, got.status, "%s: %s", what, got.raw)
	require.Equal(t, unknown.status, got.status, "%s", what)
	g, u := got.apiError(t), unknown.apiError(t)
	require.Equal(t, u.Code, g.Code, "%s", what)
	require.Equal(t, strings.ReplaceAll(u.Message, unknownID, id), g.Message, "%s", what)
	require.Equal(t, u.Field, g.Field, "%s", what)
}

// Every task and artifact route, tried by bob on alice's ids, answers as
// it does for an id that names nothing, and changes nothing.
func TestTenantsSeeOnlyTheirOwn(t *testing.T) {
	t.Parallel()
	ts := setupTenants(t, setupOpts{})
	b := ts.bundle
	aliceID, unknownID := strconv.FormatInt(ts.aliceTask, 10), "987654321"
	unknownArt := uuid.NewString()
	artifactBody := func(id string) string {
		return `{"task_id":` + id + `,"name":"x.txt","data_base64":"` + base64.StdEncoding.EncodeToString([]byte("bob was here")) + `"}`
	}
	for _, tc := range []struct {
		name, method, path string // path holds {id}
		body               func(id string) string
		artifact           bool // {id} is an artifact's
	}{
		{"read", "GET", "/tasks/{id}", nil, false},
		{"long poll", "GET", "/tasks/{id}?wait=2s", nil, false},
		{"events", "GET", "/tasks/{id}/events", nil, false},
		{"cancel", "POST", "/tasks/{id}/cancel", nil, false},
		{"artifact list", "GET", "/tasks/{id}/artifacts", nil, false},
		{"upload", "PUT", "/tasks/{id}/artifacts/x.txt", func(string) string { return "bob was here" }, false},
		{"upload as JSON", "POST", "/artifacts", artifactBody, false},
		{"artifact meta", "GET", "/artifacts/{id}/meta", nil, true},
		{"download", "GET", "/artifacts/{id}", nil, true},
	} {
		id, unknown := aliceID, unknownID
		if tc.artifact {
			id, unknown = ts.aliceArt, unknownArt
		}
		call := func(id string) response {
			var body any
			if tc.body != nil {
				body = tc.body(id)
			}
			return b.doAs(t, bobKey, tc.method, strings.ReplaceAll(tc.path, "{id}", id), body)
		}
		notFoundAsUnknown(t, tc.name, call(id), call(unknown), id, unknown)
	}

	// Nothing of alice's changed: her task is still queued, and holds its
	// one artifact alone.
	r := b.doAs(t, aliceKey, "GET", "/tasks/"+aliceID, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, taskrunner.StatusAvailable, r.task(t).Status)
	require.False(t, r.task(t).CancelRequested)
	require.Equal(t, []string{ts.aliceArt}, r.task(t).ArtifactIDs)
	require.Equal(t, 1, b.artifactRows(t))
	require.Equal(t, 1, b.objectCount(t), "refused uploads left no object")

	// Lists: each client sees its own tasks; naming another owner gives
	// nothing.
	require.Equal(t, []int64{ts.bobTask}, listIDs(t, b, bobKey, ""))
	require.Empty(t, listIDs(t, b, bobKey, "?owner=alice"))
	require.Equal(t, []int64{ts.bobTask}, listIDs(t, b, bobKey, "?owner=bob"))
	require.Equal(t, []int64{ts.aliceTask}, listIDs(t, b, aliceKey, ""))
}

// listIDs is the ids of GET /tasks as key, with query.
func listIDs(t *testing.T, b *bundle, key, query string) []int64 {
	t.Helper()
	r := b.doAs(t, key, "GET", "/tasks"+query, nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	ids := []int64{}
	for _, task := range decode[listBody](t, r.raw).Tasks {
		ids = append(ids, task.ID)
	}
	return ids
}

// The admin sees and acts on every tenant's tasks and artifacts, and
// filters the list by owner; jobs taskrunner enqueues itself (no owner)
// are local's, which only admins see.
func TestAdminSeesAllAndFiltersByOwner(t *testing.T) {
	t.Parallel()
	ts := setupTenants(t, setupOpts{})
	b := ts.bundle
	// A job inserted by taskrunner itself: a context without a tenant.
	res, err := b.client.Insert(context.Background(), builtin.EchoArgs{Msg: "internal"}, nil)
	require.NoError(t, err)
	internal := res.Job.ID

	require.Equal(t, []int64{internal, ts.bobTask, ts.aliceTask}, listIDs(t, b, opsKey, ""))
	require.Equal(t, []int64{ts.aliceTask}, listIDs(t, b, opsKey, "?owner=alice"))
	require.Equal(t, []int64{ts.bobTask}, listIDs(t, b, opsKey, "?owner=bob"))
	require.Equal(t, []int64{internal}, listIDs(t, b, opsKey, "?owner=local"))
	require.Empty(t, listIDs(t, b, opsKey, "?owner=nobody"))
	page := decode[listBody](t, b.doAs(t, opsKey, "GET", "/tasks", nil).raw)
	require.Equal(t, []string{"local", "bob", "alice"}, []string{page.Tasks[0].Owner, page.Tasks[1].Owner, page.Tasks[2].Owner})

	r := b.doAs(t, opsKey, "GET", fmt.Sprintf("/tasks/%d", ts.aliceTask), nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "alice", r.task(t).Owner)
	require.Equal(t, http.StatusOK, b.doAs(t, opsKey, "GET", "/artifacts/"+ts.aliceArt+"/meta", nil).status)
	dl, body := b.raw(t, "GET", "/artifacts/"+ts.aliceArt, "", nil, 0, "Authorization", "Bearer "+opsKey)
	require.Equal(t, http.StatusOK, dl.StatusCode)
	require.Equal(t, "alice's secret", string(body))

	// An artifact the admin attaches to alice's task is alice's.
	put := b.doAs(t, opsKey, "PUT", fmt.Sprintf("/tasks/%d/artifacts/by-ops.txt", ts.aliceTask), "from ops")
	require.Equal(t, http.StatusCreated, put.status, "body: %s", put.raw)
	require.Equal(t, http.StatusOK, b.doAs(t, aliceKey, "GET", "/artifacts/"+put.artifact(t).ID+"/meta", nil).status)
	var owner string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT owner FROM artifacts WHERE id = $1", put.artifact(t).ID).Scan(&owner))
	require.Equal(t, "alice", owner)

	// The internal job: the admin's, no client's.
	iid := strconv.FormatInt(internal, 10)
	r = b.doAs(t, opsKey, "GET", "/tasks/"+iid, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "local", r.task(t).Owner)
	require.Equal(t, http.StatusNotFound, b.doAs(t, bobKey, "GET", "/tasks/"+iid, nil).status)
	require.Equal(t, http.StatusNotFound, b.doAs(t, bobKey, "POST", "/tasks/"+iid+"/cancel", nil).status)

	// The admin cancels bob's task.
	c := b.doAs(t, opsKey, "POST", fmt.Sprintf("/tasks/%d/cancel", ts.bobTask), nil)
	require.Equal(t, http.StatusOK, c.status, "body: %s", c.raw)
	require.Equal(t, taskrunner.StatusCancelled, c.task(t).Status)
}

// River UI and /metrics show every tenant's work: 403 forbidden to a
// client key, in the error shape; 200 to an admin.
func TestRiverUIAndMetricsAreForAdmins(t *testing.T) {
	t.Parallel()
	ts := setupTenants(t, setupOpts{riverUI: true, metrics: metrics.New()})
	b := ts.bundle
	for _, path := range []string{"/metrics", "/riverui/", "/riverui", "/riverui/api/jobs?state=available"} {
		for _, auth := range []string{"Bearer " + bobKey, "Basic " + basic("bob", bobKey)} {
			resp, body := b.raw(t, "GET", path, "", nil, 0, "Authorization", auth)
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s as bob: %s", path, body)
			e := response{status: resp.StatusCode, raw: body}.apiError(t)
			require.Equal(t, taskrunner.CodeForbidden, e.Code)
		}
	}
	for _, path := range []string{"/metrics", "/riverui/", "/riverui/api/jobs?state=available"} {
		resp, body := b.raw(t, "GET", path, "", nil, 0, "Authorization", "Basic "+basic("ops", opsKey))
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s as ops: %s", path, body)
	}
	resp, _ := b.raw(t, "GET", "/metrics", "", nil, 0, "Authorization", "Bearer "+opsKey)
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// Every route with an id, called by bob on alice's ids, answers 404 (or
// 403): the test walks the router, so a new route that skips the
// ownership check fails here. Alice's task and artifact are unchanged.
func TestEveryIDRouteChecksTheOwner(t *testing.T) {
	t.Parallel()
	ts := setupTenants(t, setupOpts{riverUI: true, metrics: metrics.New()})
	b := ts.bundle
	tasks, artifacts := offlineServices(t, testLoggerOf(t))
	api, err := httpapi.New(httpapi.Config{Tasks: tasks, Artifacts: artifacts, Metrics: metrics.New(), RiverUI: http.NotFoundHandler(), Logger: testLoggerOf(t)})
	require.NoError(t, err)

	checked := 0
	err = chi.Walk(api.Routes(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !strings.Contains(route, "{") && !strings.HasSuffix(route, "/*") {
			return nil
		}
		path := route
		switch {
		case strings.HasPrefix(route, "/tasks/{id}"):
			path = strings.Replace(path, "{id}", strconv.FormatInt(ts.aliceTask, 10), 1)
		case strings.HasPrefix(route, "/artifacts/{id}"):
			path = strings.Replace(path, "{id}", ts.aliceArt, 1)
		case strings.HasSuffix(route, "/*"):
			path = strings.TrimSuffix(route, "*") + "api/jobs/" + strconv.FormatInt(ts.aliceTask, 10)
		}
		path = strings.Replace(path, "{name}", "x.txt", 1)
		require.NotContains(t, path, "{", "%s %s: a parameter this test does not know; teach it which tenant's ids it takes", method, route)
		for _, suffix := range []string{"", "?wait=1s"} {
			resp, body := b.raw(t, method, path+suffix, "", []byte("bob"), 3, "Authorization", "Bearer "+bobKey)
			require.Contains(t, []int{http.StatusNotFound, http.StatusForbidden}, resp.StatusCode,
				"%s %s as bob on alice's id: %d %s", method, route, resp.StatusCode, body)
			if method != http.MethodHead {
				e := response{status: resp.StatusCode, raw: body}.apiError(t)
				require.Contains(t, []taskrunner.Code{taskrunner.CodeNotFound, taskrunner.CodeForbidden}, e.Code, "%s %s", method, route)
			}
		}
		checked++
		return nil
	})
	require.NoError(t, err)
	require.GreaterOrEqual(t, checked, 7, "the walk found the routes with ids")

	r := b.doAs(t, aliceKey, "GET", fmt.Sprintf("/tasks/%d", ts.aliceTask), nil)
	require.Equal(t, taskrunner.StatusAvailable, r.task(t).Status)
	require.False(t, r.task(t).CancelRequested)
	require.Equal(t, []string{ts.aliceArt}, r.task(t).ArtifactIDs)
	require.Equal(t, 1, b.objectCount(t))
}

// Two keys of one tenant are one tenant: they see the same tasks, share
// one enqueue limit and one space of idempotency keys; another tenant has
// its own of each. Log lines name the tenant, never a key.
func TestRotatedKeysShareTasksAndLimit(t *testing.T) {
	t.Parallel()
	const perMinute = 5 // three tasks, then an idempotency key sent twice
	b := setup(t, setupOpts{apiKeys: tenantKeys, perMinute: perMinute})
	var ids []int64
	for i, key := range []string{aliceKey, alice2Key, aliceKey} {
		r := b.doAs(t, key, "POST", "/tasks", echoTask)
		require.Equal(t, http.StatusAccepted, r.status, "enqueue %d: %s", i, r.raw)
		require.Equal(t, "alice", r.task(t).Owner)
		ids = append([]int64{r.task(t).ID}, ids...)
	}
	require.Equal(t, ids, listIDs(t, b, aliceKey, ""))
	require.Equal(t, ids, listIDs(t, b, alice2Key, ""))
	for _, id := range ids {
		require.Equal(t, http.StatusOK, b.doAs(t, alice2Key, "GET", fmt.Sprintf("/tasks/%d", id), nil).status)
	}

	// An idempotency key is the tenant's, whichever of its keys sends it.
	first := b.doAs(t, alice2Key, "POST", "/tasks", echoTask, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusAccepted, first.status, "body: %s", first.raw)
	again := b.doAs(t, aliceKey, "POST", "/tasks", echoTask, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusOK, again.status, "body: %s", again.raw)
	require.Equal(t, first.task(t).ID, again.task(t).ID)

	// Five enqueues by two keys: the tenant's limit is spent for both.
	for _, key := range []string{aliceKey, alice2Key} {
		over := b.doAs(t, key, "POST", "/tasks", echoTask)
		require.Equal(t, http.StatusTooManyRequests, over.status, "body: %s", over.raw)
		require.Equal(t, `"enqueue";q=5;w=60`, over.header.Get("RateLimit-Policy"))
	}
	// Bob has his own limit and his own idempotency keys.
	bob := b.doAs(t, bobKey, "POST", "/tasks", echoTask, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusAccepted, bob.status, "body: %s", bob.raw)
	require.NotEqual(t, first.task(t).ID, bob.task(t).ID)
	require.Equal(t, "bob", bob.task(t).Owner)

	var tenantsLogged []string
	for _, ev := range b.logs.Events("http_request") {
		tenantsLogged = append(tenantsLogged, fmt.Sprint(ev["tenant"]))
	}
	require.Contains(t, tenantsLogged, "alice")
	require.Contains(t, tenantsLogged, "bob")
	for _, ev := range b.logs.Events("rate_limited") {
		require.Equal(t, "alice", ev["tenant"])
	}
	for _, key := range []string{aliceKey, alice2Key, bobKey, opsKey} {
		require.NotContains(t, b.logs.String(), key, "keys never reach the log")
	}
}

// Without keys every request acts for local, an admin: it sees every
// task, whoever enqueued it, and River UI and /metrics are open.
func TestWithoutKeysEverythingIsLocal(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{riverUI: true, metrics: metrics.New()})
	res, err := b.client.Insert(context.Background(), builtin.EchoArgs{Msg: "internal"}, nil)
	require.NoError(t, err)
	id := b.submit(t, echoTask)
	r := b.do(t, "GET", fmt.Sprintf("/tasks/%d", id), nil)
	require.Equal(t, "local", r.task(t).Owner)
	require.Equal(t, []int64{id, res.Job.ID}, listIDs(t, b, "", ""))
	for _, path := range []string{"/metrics", "/riverui/"} {
		resp, _ := b.raw(t, "GET", path, "", nil, 0)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
}

// Without API keys every task is the local tenant's and stores no owner
// (River's metadata index holds no entry for it), yet shows owner local
// in the API and SQL, and a local schedule's task carries its owner, so
// the database still refuses a second task for one tick.
func TestLocalTasksStoreNoOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{work: true})
	resp := b.do(t, http.MethodPost, "/tasks", echoTask)
	require.Equal(t, http.StatusAccepted, resp.status, "body: %s", resp.raw)
	id := resp.task(t).TaskID
	require.Equal(t, "local", resp.task(t).Owner)
	var stored bool
	var owner string
	require.NoError(t, b.db.Pool.QueryRow(ctx, "SELECT j.metadata ? 'owner', t.owner FROM river_job j JOIN tasks t USING (id) WHERE j.id = $1", id).Scan(&stored, &owner))
	require.False(t, stored, "a local task stores no owner")
	require.Equal(t, "local", owner, "the tasks view shows it as local's")

	r := b.do(t, http.MethodPost, "/schedules", yearly("nightly"))
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	tick := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	b.fireTick(t, "local", "nightly", tick)
	require.Equal(t, 1, scheduleTasks(t, b, "local", "nightly"), "the tick's task names its owner")
	_, err := b.db.Pool.Exec(ctx, `
		INSERT INTO river_job (args, kind, max_attempts, metadata, priority, queue, state, scheduled_at)
		SELECT args, kind, max_attempts, metadata, priority, queue, state, scheduled_at FROM river_job
		WHERE metadata ->> 'schedule' = 'nightly'`)
	require.ErrorContains(t, err, "taskrunner_river_job_schedule_tick_idx", "a second task for the tick is refused")
}
