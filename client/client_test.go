package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

const testKey = "client-test-key-0123456789"

// fakeAPI serves handler, requiring the test key on every request.
func fakeAPI(t *testing.T, handler http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testKey {
			apiError(w, http.StatusUnauthorized, "unauthorized", "a valid API key is required")
			return
		}
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL+"/", testKey, srv.Client())
	require.NoError(t, err)
	return c
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":%q,"request_id":"req-1"}}`, code, msg)
}

func taskJSON(status string, attempt int) string {
	return fmt.Sprintf(`{"id":1,"task_id":1,"type":"sleep","status":%q,"attempt":%d,"max_attempts":1,"params":{"seconds":1},"result":null,"error":null,"runs":[],"artifact_ids":[]}`, status, attempt)
}

// statuses records the states a wait reported.
type statuses struct {
	mu  sync.Mutex
	got []string
}

func (s *statuses) add(t *Task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, fmt.Sprintf("%s/%d", t.Status, t.Attempt))
}

func TestWaitFollowsEvents(t *testing.T) {
	t.Parallel()
	var polls int
	c := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/tasks/1/events":
			assert.Equal(t, "text/event-stream", r.Header.Get("Accept"))
			w.Header().Set("Content-Type", "text/event-stream")
			fl := w.(http.Flusher)
			fmt.Fprint(w, ": keep-alive\n\n")
			for _, ev := range []string{
				"event: state\ndata: " + taskJSON("available", 0) + "\n\n",
				"event: state\ndata: " + taskJSON("running", 1) + "\n\n",
				"retry: 1000\n\n", // a field the client ignores
				"event: state\ndata: " + taskJSON("completed", 1) + "\n\n",
				"event: end\ndata: {\"status\":\"completed\"}\n\n",
			} {
				fmt.Fprint(w, ev)
				fl.Flush()
				time.Sleep(10 * time.Millisecond)
			}
		default:
			polls++
			http.NotFound(w, r)
		}
	})
	var s statuses
	got, err := c.Wait(context.Background(), 1, s.add)
	require.NoError(t, err)
	require.Equal(t, taskrunner.StatusCompleted, got.Status)
	require.True(t, got.Finished())
	require.JSONEq(t, taskJSON("completed", 1), string(got.Raw))
	require.Equal(t, []string{"available/0", "running/1", "completed/1"}, s.got)
	require.Zero(t, polls)
}

// Progress events reach onProgress once each; a stream that ends early is
// followed again from the last event's id.
func TestWaitReportsProgressAndResumes(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var streams []string // the Last-Event-ID of each stream
	progress := func(seq int) string {
		return fmt.Sprintf(`{"done":%d,"total":3,"message":"seconds slept","attempt":1,"seq":%d,"updated_at":"2030-01-01T00:00:00Z"}`, seq, seq)
	}
	c := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		streams = append(streams, r.Header.Get("Last-Event-ID"))
		n := len(streams)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		events := []string{
			"event: state\nid: 1-0-running\ndata: " + taskJSON("running", 1) + "\n\n",
			"event: progress\nid: 1-1-running\ndata: " + progress(1) + "\n\n",
		} // then the stream breaks
		if n > 1 {
			events = []string{
				"event: progress\nid: 1-2-running\ndata: " + progress(2) + "\n\n",
				"event: progress\nid: 1-2-running\ndata: " + progress(2) + "\n\n", // a repeat is reported once
				"event: state\nid: 1-2-completed\ndata: " + taskJSON("completed", 1) + "\n\n",
				"event: end\nid: 1-2-completed\ndata: {\"status\":\"completed\"}\n\n",
			}
		}
		for _, ev := range events {
			fmt.Fprint(w, ev)
		}
	})
	var s statuses
	var seqs []int64
	got, err := c.WaitProgress(context.Background(), 1, s.add, func(p Progress) { seqs = append(seqs, p.Seq) })
	require.NoError(t, err)
	require.Equal(t, taskrunner.StatusCompleted, got.Status)
	require.Equal(t, []string{"running/1", "completed/1"}, s.got)
	require.Equal(t, []int64{1, 2}, seqs)
	require.Equal(t, []string{"", "1-1-running"}, streams)
}

// A server whose stream is refused (too many waiters, a proxy that does
// not stream) is long-polled instead.
func TestWaitFallsBackToLongPolls(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"503", "not a stream", "broken stream"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var waits []string
			c := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/tasks/1/events":
					switch name {
					case "503":
						apiError(w, http.StatusServiceUnavailable, "too_many_waiters", "too many")
					case "not a stream":
						w.Header().Set("Content-Type", "text/html")
						fmt.Fprint(w, "<html>proxy</html>")
					case "broken stream":
						w.Header().Set("Content-Type", "text/event-stream")
						fmt.Fprint(w, "event: error\ndata: {\"code\":\"dependency_unavailable\",\"message\":\"db down\"}\n\n")
					}
				case "/tasks/1":
					mu.Lock()
					waits = append(waits, r.URL.Query().Get("wait"))
					n := len(waits)
					mu.Unlock()
					w.Header().Set("Content-Type", "application/json")
					switch n {
					case 1:
						fmt.Fprint(w, taskJSON("running", 1))
					case 2:
						apiError(w, http.StatusBadGateway, "http_502", "a blip") // survived
					default:
						fmt.Fprint(w, taskJSON("completed", 1))
					}
				}
			})
			var s statuses
			got, err := c.Wait(context.Background(), 1, s.add)
			require.NoError(t, err)
			require.Equal(t, taskrunner.StatusCompleted, got.Status)
			require.Equal(t, []string{"running/1", "completed/1"}, s.got)
			require.Equal(t, []string{"30s", "30s", "30s"}, waits)
		})
	}
}

func TestWaitRefusals(t *testing.T) {
	t.Parallel()
	c := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "not_found", "no task with id 1")
	})
	got, err := c.Wait(context.Background(), 1, nil)
	require.Nil(t, got)
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	require.Equal(t, "not_found: no task with id 1", err.Error())
	require.Equal(t, "req-1", apiErr.RequestID)

	// A wrong key: refused at once, and the key is nowhere in the error.
	other, err := New(c.BaseURL(), "wrong-key-that-is-secret", nil)
	require.NoError(t, err)
	_, err = other.Wait(context.Background(), 1, nil)
	require.True(t, IsCode(err, "unauthorized"), "%v", err)
	require.NotContains(t, fmt.Sprintf("%+v %#v", err, err), "wrong-key-that-is-secret")
}

// When the context ends first, Wait returns the task as last seen.
func TestWaitDeadline(t *testing.T) {
	t.Parallel()
	c := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: state\ndata: "+taskJSON("running", 1)+"\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	got, err := c.Wait(ctx, 1, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotNil(t, got)
	require.Equal(t, taskrunner.StatusRunning, got.Status)
}

func TestErrorsThatAreNotTheAPIs(t *testing.T) {
	t.Parallel()
	c := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "<html>\n  <body>bad gateway</body>\n</html>")
	})
	_, err := c.Get(context.Background(), 1)
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "http_502", apiErr.Code)
	require.Equal(t, 7*time.Second, apiErr.RetryAfter)
	require.Equal(t, "http_502: 502 Bad Gateway that is not a taskrunner API error: <html> <body>bad gateway</body> </html>", err.Error())
}

func TestNewChecksItsArguments(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "ftp://h", "localhost:8000", "http://", "http://h/?q=1", "://x"} {
		_, err := New(u, "", nil)
		require.Error(t, err, "%q", u)
	}
	_, err := New("http://h", "key with space", nil)
	require.ErrorIs(t, err, ErrInvalidAPIKey)
	require.NotContains(t, err.Error(), "key with space")

	c, err := New(" https://user:pw@api.example.com/prefix/ ", "", nil)
	require.NoError(t, err)
	require.Equal(t, "https://api.example.com/prefix", c.BaseURL())
}

func TestSubmitAndSearch(t *testing.T) {
	t.Parallel()
	c := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		assert.Equal(t, "key-1", r.Header.Get("Idempotency-Key"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		switch r.URL.Path {
		case "/tasks":
			assert.JSONEq(t, `{"type":"sleep","params":{"seconds":1},"max_retries":2,"run_at":"2030-01-01T09:00:00Z"}`, string(body))
		case "/search":
			assert.JSONEq(t, `{"query":"q","sources":["brave"],"recency_days":0}`, string(body))
		}
		fmt.Fprint(w, taskJSON("available", 0))
	})
	retries, at, zero := 2, time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC), 0
	task, err := c.Submit(context.Background(), SubmitRequest{Type: "sleep", Params: []byte(`{"seconds":1}`), MaxRetries: &retries, RunAt: &at, IdempotencyKey: "key-1"})
	require.NoError(t, err)
	require.Equal(t, int64(1), task.ID)
	require.JSONEq(t, `{"seconds":1}`, string(task.Params))
	_, err = c.Search(context.Background(), SearchRequest{Query: "q", Sources: []string{"brave"}, RecencyDays: &zero, IdempotencyKey: "key-1"})
	require.NoError(t, err)
}

func TestArtifacts(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("0123456789"), 10_000)
	sum := sha256.Sum256(data)
	etag := hex.EncodeToString(sum[:])
	c := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut:
			assert.Equal(t, "/tasks/5/artifacts/a%20b%2Fc.txt", r.URL.EscapedPath())
			assert.Equal(t, "report", r.URL.Query().Get("type"))
			assert.Equal(t, "text/plain", r.Header.Get("Content-Type"))
			assert.Equal(t, int64(len(data)), r.ContentLength, "the size is declared")
			got, _ := io.ReadAll(r.Body)
			assert.Equal(t, data, got)
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"id":"a1","task_id":5,"name":"a b/c.txt","size":%d,"sha256":%q,"created_at":"2030-01-01T09:00:00.000000Z"}`, len(got), etag)
		case r.URL.Path == "/artifacts/good":
			w.Header().Set("ETag", `"`+etag+`"`)
			_, _ = w.Write(data)
		case r.URL.Path == "/artifacts/corrupt":
			w.Header().Set("ETag", `"`+etag+`"`)
			_, _ = w.Write(append([]byte("x"), data[1:]...))
		case r.URL.Path == "/artifacts/good/meta":
			fmt.Fprintf(w, `{"id":"good","size":%d}`, len(data))
		default:
			apiError(w, http.StatusNotFound, "not_found", "no artifact")
		}
	})
	ctx := context.Background()
	// A reader the client cannot see the size of: Content-Length comes from
	// the size argument.
	a, err := c.PutArtifact(ctx, 5, "a b/c.txt", io.MultiReader(bytes.NewReader(data)), int64(len(data)), PutArtifactOptions{Type: "report", ContentType: "text/plain"})
	require.NoError(t, err)
	require.Equal(t, "a1", a.ID)
	require.Equal(t, etag, a.SHA256)
	require.Contains(t, string(a.Raw), `"name":"a b/c.txt"`)

	_, err = c.PutArtifact(ctx, 5, "x", strings.NewReader("short"), 10, PutArtifactOptions{})
	require.Error(t, err, "a body shorter than its size is not sent as if whole")

	var buf bytes.Buffer
	n, err := c.GetArtifact(ctx, "good", &buf)
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), n)
	require.Equal(t, data, buf.Bytes())

	_, err = c.GetArtifact(ctx, "corrupt", io.Discard)
	require.ErrorIs(t, err, ErrChecksumMismatch)

	meta, err := c.ArtifactMeta(ctx, "good")
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), meta.Size)

	_, err = c.GetArtifact(ctx, "missing", io.Discard)
	require.True(t, IsCode(err, "not_found"), "%v", err)
	require.False(t, errors.Is(err, ErrChecksumMismatch))
}

func TestTaskArtifactsPages(t *testing.T) {
	t.Parallel()
	c := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/tasks/5/artifacts", r.URL.Path)
		switch r.URL.Query().Get("cursor") {
		case "":
			assert.Equal(t, "2", r.URL.Query().Get("limit"))
			fmt.Fprint(w, `{"artifacts":[{"id":"a1","task_id":5},{"id":"a2","task_id":5}],"next_cursor":"1.x"}`)
		case "1.x":
			assert.Empty(t, r.URL.Query().Get("limit"), "the server's default")
			fmt.Fprint(w, `{"artifacts":[{"id":"a3","task_id":5}],"next_cursor":null}`)
		default:
			apiError(w, http.StatusBadRequest, "task_rejected_invalid_params", "cursor is not a cursor this API returned")
		}
	})
	ctx := context.Background()
	page, err := c.TaskArtifacts(ctx, 5, "", 2)
	require.NoError(t, err)
	require.Len(t, page.Artifacts, 2)
	require.Equal(t, "a2", page.Artifacts[1].ID)
	require.JSONEq(t, `{"id":"a2","task_id":5}`, string(page.Artifacts[1].Raw))
	require.Equal(t, "1.x", page.NextCursor)
	page, err = c.TaskArtifacts(ctx, 5, page.NextCursor, 0)
	require.NoError(t, err)
	require.Len(t, page.Artifacts, 1)
	require.Empty(t, page.NextCursor)
	_, err = c.TaskArtifacts(ctx, 5, "bad", 0)
	require.True(t, IsCode(err, "task_rejected_invalid_params"), "%v", err)
}
