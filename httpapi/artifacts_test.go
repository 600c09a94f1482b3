package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

// raw sends a request with a raw body; size < 0 sends it chunked, with no
// declared length.
func (b *bundle) raw(t *testing.T, method, path, contentType string, body []byte, size int64, header ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader = bytes.NewReader(body)
	if size < 0 {
		rd = io.MultiReader(bytes.NewReader(body)) // hides the length: sent chunked
	}
	req, err := http.NewRequest(method, b.server.URL+path, rd)
	require.NoError(t, err)
	if size >= 0 {
		req.ContentLength = size
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, out
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestArtifactUploadBothWaysAndDownload(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	data := randomBytes(t, 100_000)

	// Raw streaming upload.
	put := b.do(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/report.bin?type=output", id), data)
	require.Equal(t, http.StatusCreated, put.status, "body: %s", put.raw)
	putArt := put.artifact(t)
	require.EqualValues(t, len(data), putArt.Size)
	require.Equal(t, sha(data), putArt.SHA256)
	require.Equal(t, "report.bin", putArt.Name)
	require.Equal(t, "output", putArt.Type)
	putID := putArt.ID

	// The JSON form, bytes in base64.
	post := b.do(t, http.MethodPost, "/artifacts", map[string]any{
		"task_id": id, "type": "log", "content_type": "text/plain", "data_base64": base64.StdEncoding.EncodeToString([]byte("Hello world")),
	})
	require.Equal(t, http.StatusCreated, post.status, "body: %s", post.raw)
	postArt := post.artifact(t)
	postID := postArt.ArtifactID
	require.EqualValues(t, 11, postArt.Size)

	// Metadata.
	meta := b.do(t, http.MethodGet, "/artifacts/"+postID+"/meta", nil)
	require.Equal(t, http.StatusOK, meta.status)
	metaArt := meta.artifact(t)
	require.Equal(t, "text/plain", metaArt.ContentType)
	require.Equal(t, sha([]byte("Hello world")), metaArt.SHA256)
	require.EqualValues(t, id, metaArt.TaskID)

	// Download, whole.
	resp, body := b.raw(t, http.MethodGet, "/artifacts/"+putID, "", nil, 0)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, data, body)
	require.Equal(t, "application/json", put.header.Get("Content-Type"))
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "PUT without Content-Type came from do()'s JSON header")
	require.Equal(t, fmt.Sprint(len(data)), resp.Header.Get("Content-Length"))
	etag := resp.Header.Get("ETag")
	require.Equal(t, `"`+sha(data)+`"`, etag)
	require.Equal(t, `attachment; filename=report.bin`, resp.Header.Get("Content-Disposition"))

	resp, body = b.raw(t, http.MethodGet, "/artifacts/"+postID, "", nil, 0)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "Hello world", string(body))
	require.Equal(t, "text/plain", resp.Header.Get("Content-Type"))

	// Download, a range.
	resp, body = b.raw(t, http.MethodGet, "/artifacts/"+putID, "", nil, 0, "Range", "bytes=1000-1999")
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.Equal(t, data[1000:2000], body)
	require.Equal(t, fmt.Sprintf("bytes 1000-1999/%d", len(data)), resp.Header.Get("Content-Range"))
	resp, body = b.raw(t, http.MethodGet, "/artifacts/"+putID, "", nil, 0, "Range", "bytes=-10")
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.Equal(t, data[len(data)-10:], body)

	// A client that has it already.
	resp, _ = b.raw(t, http.MethodGet, "/artifacts/"+putID, "", nil, 0, "If-None-Match", etag)
	require.Equal(t, http.StatusNotModified, resp.StatusCode)

	// Listed by task, and in the task.
	list := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d/artifacts", id), nil)
	require.Equal(t, http.StatusOK, list.status)
	arts := decode[artifactListBody](t, list.raw).Artifacts
	require.Len(t, arts, 2)
	require.Equal(t, putID, arts[0].ID)
	require.Equal(t, postID, arts[1].ID)
	got := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d", id), nil)
	require.Equal(t, []string{putID, postID}, got.task(t).ArtifactIDs)

	require.Equal(t, 2, b.objectCount(t))
	require.Len(t, b.logs.Events("artifact_stored"), 2)
}

func TestArtifactTypesAndNamesShowSafely(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})

	resp, out := b.raw(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/r%%C3%%A9sum%%C3%%A9%%20%%22v2%%22.txt", id), "text/plain; charset=utf-8", []byte("hi"), 2)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "body: %s", out)
	meta := decode[artifactView](t, out)
	require.Equal(t, `résumé "v2".txt`, meta.Name)
	resp, _ = b.raw(t, http.MethodGet, "/artifacts/"+meta.ID, "", nil, 0)
	require.Equal(t, `attachment; filename*=utf-8''r%C3%A9sum%C3%A9%20%22v2%22.txt`, resp.Header.Get("Content-Disposition"))
	require.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
}

func TestArtifactSizeLimitLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	over := randomBytes(t, testMaxArtifactBytes+1)
	path := fmt.Sprintf("/tasks/%d/artifacts/big.bin", id)

	cases := []struct {
		name string
		send func() (int, []byte)
	}{
		{"declared length over the limit", func() (int, []byte) {
			resp, out := b.raw(t, http.MethodPut, path, "application/octet-stream", over, int64(len(over)))
			return resp.StatusCode, out
		}},
		{"chunked, found while streaming", func() (int, []byte) {
			resp, out := b.raw(t, http.MethodPut, path, "application/octet-stream", over, -1)
			return resp.StatusCode, out
		}},
		{"chunked, well over the limit", func() (int, []byte) {
			big := randomBytes(t, 3*testMaxArtifactBytes)
			resp, out := b.raw(t, http.MethodPut, path, "application/octet-stream", big, -1)
			return resp.StatusCode, out
		}},
		{"base64 over the limit", func() (int, []byte) {
			r := b.do(t, http.MethodPost, "/artifacts", map[string]any{"task_id": id, "type": "log", "data_base64": base64.StdEncoding.EncodeToString(over)})
			return r.status, r.raw
		}},
		{"base64 body far over the limit", func() (int, []byte) {
			huge := base64.StdEncoding.EncodeToString(randomBytes(t, 2*testMaxArtifactBytes))
			r := b.do(t, http.MethodPost, "/artifacts", map[string]any{"task_id": id, "type": "log", "data_base64": huge})
			return r.status, r.raw
		}},
	}
	for _, tc := range cases {
		status, out := tc.send()
		require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s: %s", tc.name, out)
		require.Contains(t, string(out), `"code":"artifact_size_exceeded"`, tc.name)
	}
	require.Zero(t, b.artifactRows(t), "a refused artifact has no row")
	require.Zero(t, b.objectCount(t), "a refused artifact leaves no object or part")
	require.GreaterOrEqual(t, len(b.logs.Events("artifact_rejected")), 4)

	// Exactly at the limit is fine.
	exact := randomBytes(t, testMaxArtifactBytes)
	resp, out := b.raw(t, http.MethodPut, path, "application/octet-stream", exact, -1)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "body: %s", out)
	require.Equal(t, 1, b.objectCount(t))
}

func TestArtifactRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})

	for _, tc := range []struct {
		name, path string
		status     int
		code       string
	}{
		{"unknown task", "/tasks/999999/artifacts/a.txt", 404, "not_found"},
		{"non-numeric task", "/tasks/abc/artifacts/a.txt", 404, "not_found"},
		{"dot dot", fmt.Sprintf("/tasks/%d/artifacts/..", id), 0, ""},
		{"encoded dot dot", fmt.Sprintf("/tasks/%d/artifacts/%%2e%%2e", id), 0, ""},
		{"encoded slash", fmt.Sprintf("/tasks/%d/artifacts/a%%2Fb", id), 0, ""},
		{"backslash", fmt.Sprintf("/tasks/%d/artifacts/a%%5Cb", id), 400, "artifact_rejected_invalid"},
		{"control character", fmt.Sprintf("/tasks/%d/artifacts/a%%01b", id), 400, "artifact_rejected_invalid"},
		{"newline", fmt.Sprintf("/tasks/%d/artifacts/a%%0Ab", id), 400, "artifact_rejected_invalid"},
		{"very long", fmt.Sprintf("/tasks/%d/artifacts/%s", id, strings.Repeat("n", 300)), 400, "artifact_rejected_invalid"},
		{"bad type", fmt.Sprintf("/tasks/%d/artifacts/a.txt?type=../../x", id), 400, "artifact_rejected_invalid"},
	} {
		resp, out := b.raw(t, http.MethodPut, tc.path, "text/plain", []byte("data"), 4)
		if tc.status == 0 {
			// Refused by the router or by the name check: either way nothing is stored.
			require.Contains(t, []int{400, 404}, resp.StatusCode, "%s: %s", tc.name, out)
		} else {
			require.Equal(t, tc.status, resp.StatusCode, "%s: %s", tc.name, out)
			require.Contains(t, string(out), `"code":"`+tc.code+`"`, tc.name)
		}
	}
	for _, tc := range []struct {
		name, body, code string
		status           int
	}{
		{"bad base64", fmt.Sprintf(`{"task_id":%d,"type":"log","data_base64":"not base64!!"}`, id), "artifact_rejected_invalid", 400},
		{"no task id", `{"type":"log","data_base64":"aGk="}`, "artifact_rejected_invalid", 400},
		{"unknown task", `{"task_id":424242,"type":"log","data_base64":"aGk="}`, "not_found", 404},
		{"task id of wrong type", `{"task_id":"one","data_base64":"aGk="}`, "task_rejected_invalid_params", 400},
		{"unknown field", fmt.Sprintf(`{"task_id":%d,"data_base64":"aGk=","colour":1}`, id), "task_rejected_invalid_params", 400},
		{"malformed", `{"task_id":`, "invalid_json", 400},
	} {
		r := b.do(t, http.MethodPost, "/artifacts", tc.body)
		require.Equal(t, tc.status, r.status, "%s: %s", tc.name, r.raw)
		require.Equal(t, taskrunner.Code(tc.code), errorCode(t, r), tc.name)
	}
	for _, path := range []string{"/artifacts/not-a-uuid", "/artifacts/6f1c0d6e-4f0c-4a55-9a3b-1d2e3f4a5b6c", "/artifacts/6f1c0d6e-4f0c-4a55-9a3b-1d2e3f4a5b6c/meta"} {
		r := b.do(t, http.MethodGet, path, nil)
		require.Equal(t, http.StatusNotFound, r.status, path)
		require.Equal(t, taskrunner.CodeNotFound, errorCode(t, r))
	}
	r := b.do(t, http.MethodGet, "/tasks/999999/artifacts", nil)
	require.Equal(t, http.StatusNotFound, r.status)

	require.Zero(t, b.artifactRows(t))
	require.Zero(t, b.objectCount(t))
}

func TestArtifactWithMinIODownIsUnavailableAndWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{minioEndpoint: "127.0.0.1:1"})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})

	resp, out := b.raw(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/a.txt", id), "text/plain", []byte("data"), 4)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "body: %s", out)
	require.Contains(t, string(out), `"code":"dependency_unavailable"`)
	require.NotContains(t, string(out), "127.0.0.1:1", "the cause stays in the log")
	r := b.do(t, http.MethodPost, "/artifacts", map[string]any{"task_id": id, "type": "log", "data_base64": "aGk="})
	require.Equal(t, http.StatusServiceUnavailable, r.status, "body: %s", r.raw)
	require.Zero(t, b.artifactRows(t))
	require.NotContains(t, b.logs.String(), testenvPassword(t), "MinIO credentials never reach the log")
}

func TestArtifactRowWithoutObjectIsNeverVisible(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	// The row insert fails (its task's rows are locked out by a constraint
	// we add for this test): the object written before it is removed.
	_, err := b.db.Pool.Exec(context.Background(), "ALTER TABLE artifacts ADD CONSTRAINT no_logs CHECK (type <> 'log')")
	require.NoError(t, err)
	r := b.do(t, http.MethodPost, "/artifacts", map[string]any{"task_id": id, "type": "log", "data_base64": "aGk="})
	require.Equal(t, http.StatusInternalServerError, r.status, "body: %s", r.raw)
	require.Zero(t, b.artifactRows(t))
	require.Zero(t, b.objectCount(t), "the object whose row failed was removed")
}

// A Range of more ranges than a download may ask for is answered with the
// whole artifact, never with a request to MinIO per range; a few ranges
// are still served.
func TestArtifactDownloadManyRanges(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	data := randomBytes(t, 100_000)
	put := b.do(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/r.bin", id), data)
	require.Equal(t, http.StatusCreated, put.status, "body: %s", put.raw)
	path := "/artifacts/" + put.artifact(t).ID

	ranges := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("%d-%d", 2*i, 2*i)
		}
		return "bytes=" + strings.Join(parts, ",")
	}
	for _, n := range []int{9, 1000} {
		resp, body := b.raw(t, http.MethodGet, path, "", nil, 0, "Range", ranges(n))
		require.Equal(t, http.StatusOK, resp.StatusCode, "%d ranges", n)
		require.Equal(t, data, body, "%d ranges: the whole artifact", n)
		require.Empty(t, resp.Header.Get("Content-Range"))
	}
	resp, body := b.raw(t, http.MethodGet, path, "", nil, 0, "Range", ranges(8))
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges"), resp.Header.Get("Content-Type"))
	require.Less(t, len(body), 4000, "eight one-byte parts")
	resp, body = b.raw(t, http.MethodGet, path, "", nil, 0, "Range", "bytes=10-19")
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.Equal(t, data[10:20], body)
}

// POST /artifacts reads its JSON as a stream: fields in any order, task_id
// as a number or a string of digits, \/ and line breaks in the base64;
// whatever is refused, before or after the data was stored, leaves
// nothing in MinIO or PostgreSQL.
func TestArtifactJSONStream(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	data := randomBytes(t, 200_000)
	enc := base64.StdEncoding.EncodeToString(data)
	// 76-character lines, sent as \n, and every / escaped: JSON encoders
	// may write either.
	var lines []string
	for s := enc; len(s) > 0; s = s[min(76, len(s)):] {
		lines = append(lines, s[:min(76, len(s))])
	}
	wrapped := strings.ReplaceAll(strings.Join(lines, `\n`), "/", `\/`)

	for _, tc := range []struct{ name, body, wantName string }{
		{"task_id as a string of digits", fmt.Sprintf(`{"task_id":"%d","type":"log","data_base64":%q}`, id, enc), "log"},
		{"task_id after the data", fmt.Sprintf(`{"data_base64":%q,"name":"late.bin","task_id":%d}`, enc, id), "late.bin"},
		{"escapes and white space", fmt.Sprintf(" {\n \"task_id\" : %d ,\"name\":\"wrapped.bin\", \"data_base64\" : \"%s\" }\n", id, wrapped), "wrapped.bin"},
	} {
		r := b.do(t, http.MethodPost, "/artifacts", tc.body)
		require.Equal(t, http.StatusCreated, r.status, "%s: %s", tc.name, r.raw)
		art := r.artifact(t)
		require.Equal(t, sha(data), art.SHA256, tc.name)
		require.EqualValues(t, len(data), art.Size, tc.name)
		require.Equal(t, tc.wantName, art.Name, tc.name)
		require.EqualValues(t, id, art.TaskID, tc.name)
	}
	require.Equal(t, 3, b.artifactRows(t))
	require.Equal(t, 3, b.objectCount(t))

	for _, tc := range []struct {
		name, body, code, field string
		status                  int
	}{
		{"unknown task after the data", fmt.Sprintf(`{"data_base64":%q,"task_id":424242}`, enc), "not_found", "", 404},
		{"no task id", fmt.Sprintf(`{"data_base64":%q,"name":"x"}`, enc), "artifact_rejected_invalid", "task_id", 400},
		{"unknown field after the data", fmt.Sprintf(`{"task_id":%d,"data_base64":%q,"colour":1}`, id, enc), "task_rejected_invalid_params", "colour", 400},
		{"bad name after the data", fmt.Sprintf(`{"task_id":%d,"data_base64":%q,"name":"../x"}`, id, enc), "artifact_rejected_invalid", "name", 400},
		{"wrong type after the data", fmt.Sprintf(`{"task_id":%d,"data_base64":%q,"type":7}`, id, enc), "task_rejected_invalid_params", "type", 400},
		{"data twice", fmt.Sprintf(`{"task_id":%d,"data_base64":"aGk=","data_base64":"aGk="}`, id), "task_rejected_invalid_params", "data_base64", 400},
		{"an escape base64 has no use for", fmt.Sprintf(`{"task_id":%d,"data_base64":"aGk\u003d"}`, id), "artifact_rejected_invalid", "data_base64", 400},
		{"bad base64 late in the data", fmt.Sprintf(`{"task_id":%d,"data_base64":"%s!!!!"}`, id, enc), "artifact_rejected_invalid", "data_base64", 400},
		{"cut short inside the data", fmt.Sprintf(`{"task_id":%d,"data_base64":"%s`, id, enc[:1000]), "invalid_json", "", 400},
		{"data not a string", fmt.Sprintf(`{"task_id":%d,"data_base64":12}`, id), "task_rejected_invalid_params", "data_base64", 400},
		{"task_id not digits", `{"task_id":"12a","data_base64":"aGk="}`, "task_rejected_invalid_params", "task_id", 400},
		{"task_id a fraction", `{"task_id":1.5,"data_base64":"aGk="}`, "task_rejected_invalid_params", "task_id", 400},
		{"trailing data", fmt.Sprintf(`{"task_id":%d,"data_base64":"aGk="} {}`, id), "invalid_json", "", 400},
	} {
		r := b.do(t, http.MethodPost, "/artifacts", tc.body)
		require.Equal(t, tc.status, r.status, "%s: %s", tc.name, r.raw)
		require.Equal(t, taskrunner.Code(tc.code), errorCode(t, r), tc.name)
		if tc.field != "" {
			require.Equal(t, tc.field, r.apiError(t).Field, tc.name)
		}
	}
	require.Equal(t, 3, b.artifactRows(t), "a refused upload wrote a row")
	require.Equal(t, 3, b.objectCount(t), "a refused upload left an object or a part")
}

// Storing a task's artifact under a name it has already replaces it: one
// row, one object, the second upload's bytes; the first id is gone.
func TestArtifactSameNameReplaces(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	path := fmt.Sprintf("/tasks/%d/artifacts/report.txt", id)

	first := b.do(t, http.MethodPut, path, []byte("first"))
	require.Equal(t, http.StatusCreated, first.status, "body: %s", first.raw)
	second := b.do(t, http.MethodPut, path, []byte("second"))
	require.Equal(t, http.StatusCreated, second.status, "body: %s", second.raw)
	firstID, secondID := first.artifact(t).ID, second.artifact(t).ID
	require.NotEqual(t, firstID, secondID)

	require.Equal(t, 1, b.artifactRows(t))
	require.Equal(t, 1, b.objectCount(t), "the replaced artifact's object was removed")
	resp, body := b.raw(t, http.MethodGet, "/artifacts/"+secondID, "", nil, 0)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "second", string(body))
	r := b.do(t, http.MethodGet, "/artifacts/"+firstID+"/meta", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	list := b.do(t, http.MethodGet, fmt.Sprintf("/tasks/%d/artifacts", id), nil)
	require.Len(t, decode[artifactListBody](t, list.raw).Artifacts, 1)

	// The JSON form, whose name defaults to its type, likewise.
	for _, msg := range []string{"one", "two"} {
		r := b.do(t, http.MethodPost, "/artifacts", map[string]any{"task_id": id, "type": "log", "data_base64": base64.StdEncoding.EncodeToString([]byte(msg))})
		require.Equal(t, http.StatusCreated, r.status, "body: %s", r.raw)
	}
	require.Equal(t, 2, b.artifactRows(t))
	require.Equal(t, 2, b.objectCount(t))
}

// MAX_CONCURRENT_UPLOADS bounds the uploads received at once: with one
// upload still sending its body, another (of either form) is refused with
// 503 too_many_uploads and Retry-After, and takes the slot once it is free.
func TestArtifactUploadsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{maxUploads: 1})
	id := b.submit(t, map[string]any{"type": "echo", "params": map[string]any{"msg": "x"}})
	path := fmt.Sprintf("/tasks/%d/artifacts/slow.bin", id)

	// The first upload's body comes through a pipe, after 100-continue: the
	// client sends no byte of it until the handler reads the body, which it
	// does only once it holds the slot. So when the first write returns,
	// the slot is taken.
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPut, b.server.URL+path, pr)
	require.NoError(t, err)
	req.ContentLength = -1
	req.Header.Set("Expect", "100-continue")
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ExpectContinueTimeout = time.Hour
	t.Cleanup(transport.CloseIdleConnections)
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := (&http.Client{Transport: transport}).Do(req)
		if err != nil {
			pr.CloseWithError(err)
			close(done)
			return
		}
		done <- resp
	}()
	_, err = pw.Write([]byte("first part "))
	require.NoError(t, err)

	resp, out := b.raw(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/other.bin", id), "application/octet-stream", []byte("x"), 1)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "body: %s", out)
	require.Contains(t, string(out), `"code":"too_many_uploads"`)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	r := b.do(t, http.MethodPost, "/artifacts", map[string]any{"task_id": id, "data_base64": "aGk="})
	require.Equal(t, http.StatusServiceUnavailable, r.status, "body: %s", r.raw)
	require.Equal(t, taskrunner.CodeTooManyUploads, errorCode(t, r))

	_, err = pw.Write([]byte("and the rest"))
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	first, ok := <-done
	require.True(t, ok, "the first upload failed")
	firstBody, err := io.ReadAll(first.Body)
	require.NoError(t, err)
	first.Body.Close()
	require.Equal(t, http.StatusCreated, first.StatusCode, "body: %s", firstBody)

	resp, out = b.raw(t, http.MethodPut, fmt.Sprintf("/tasks/%d/artifacts/other.bin", id), "application/octet-stream", []byte("x"), 1)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "the slot was given back: %s", out)
	require.Equal(t, 2, b.artifactRows(t))
}
