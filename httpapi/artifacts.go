package httpapi

import (
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/task"
)

// artifactView is an artifact's metadata as the API shows it.
type artifactView struct {
	ID          string `json:"id"`
	ArtifactID  string `json:"artifact_id"` // the seed's name for id
	TaskID      int64  `json:"task_id"`
	Type        string `json:"type"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	CreatedAt   string `json:"created_at"`
	URL         string `json:"url"`
}

func artifactViewOf(a *db.Artifact) artifactView {
	id := a.ID.String()
	return artifactView{
		ID: id, ArtifactID: id, TaskID: a.TaskID, Type: a.Type, Name: a.Name, ContentType: a.ContentType,
		Size: a.Size, SHA256: a.SHA256, CreatedAt: a.CreatedAt.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		URL: "/artifacts/" + id,
	}
}

// createArtifactRequest is the seed's POST /artifacts body.
type createArtifactRequest struct {
	TaskID      *int64 `json:"task_id"`
	Type        string `json:"type"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	DataBase64  string `json:"data_base64"`
}

// decodeArtifactRequest decodes and checks a POST /artifacts body, returning
// the decoded bytes.
func decodeArtifactRequest(body []byte) (*createArtifactRequest, []byte, error) {
	var req createArtifactRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, nil, err
	}
	if req.TaskID == nil {
		return nil, nil, &artifact.Error{Code: artifact.CodeInvalid, Field: "task_id", Message: "task_id is required"}
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(req.DataBase64))
	if err != nil {
		return nil, nil, &artifact.Error{Code: artifact.CodeInvalid, Field: "data_base64", Message: "data_base64 is not valid base64"}
	}
	if req.Name == "" {
		req.Name = req.Type
		if req.Name == "" {
			req.Name = "artifact"
		}
	}
	return &req, data, nil
}

// createArtifact is the seed's JSON upload: the bytes come base64-encoded.
func (s *Server) createArtifact(w http.ResponseWriter, r *http.Request) error {
	// Base64 is 4/3 of the bytes; allow the JSON around it too.
	body, err := readBody(r, s.deps.Artifacts.MaxBytes()/3*4+64<<10)
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Code == CodeBodyTooLarge {
		return s.deps.Artifacts.TooLarge()
	}
	if err != nil {
		return err
	}
	req, data, err := decodeArtifactRequest(body)
	if err != nil {
		return err
	}
	a, err := s.deps.Artifacts.Put(r.Context(), artifact.New{
		TaskID: *req.TaskID, Type: req.Type, Name: req.Name, ContentType: req.ContentType,
		Size: int64(len(data)), Body: strings.NewReader(string(data)),
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/artifacts/"+a.ID.String())
	writeJSON(w, http.StatusCreated, artifactViewOf(a))
	return nil
}

// uploadArtifact streams a raw body into MinIO: nothing is held whole in
// memory, and the sha256 is computed on the way.
func (s *Server) uploadArtifact(w http.ResponseWriter, r *http.Request) error {
	taskID, err := task.ParseID(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	contentType := r.Header.Get("Content-Type")
	if contentType != "" {
		if _, _, err := mime.ParseMediaType(contentType); err != nil {
			return &artifact.Error{Code: artifact.CodeInvalid, Field: "content_type", Message: "Content-Type is not a media type"}
		}
	}
	a, err := s.deps.Artifacts.Put(r.Context(), artifact.New{
		TaskID: taskID, Type: r.URL.Query().Get("type"), Name: pathParam(r, "name"), ContentType: contentType,
		Size: r.ContentLength, Body: r.Body,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/artifacts/"+a.ID.String())
	writeJSON(w, http.StatusCreated, artifactViewOf(a))
	return nil
}

func (s *Server) artifactFromPath(r *http.Request) (*db.Artifact, error) {
	raw := chi.URLParam(r, "id")
	id, err := uuid.Parse(raw)
	if err != nil {
		return nil, &artifact.Error{Code: artifact.CodeNotFound, Message: "no artifact with id " + strconv.Quote(raw)}
	}
	return s.deps.Artifacts.Get(r.Context(), id)
}

func (s *Server) artifactMeta(w http.ResponseWriter, r *http.Request) error {
	a, err := s.artifactFromPath(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, artifactViewOf(a))
	return nil
}

// downloadArtifact streams the bytes with Content-Type, Content-Length, an
// ETag (the sha256), Range support and a safe file name.
func (s *Server) downloadArtifact(w http.ResponseWriter, r *http.Request) error {
	a, err := s.artifactFromPath(r)
	if err != nil {
		return err
	}
	obj, err := s.deps.Artifacts.Open(r.Context(), a)
	if err != nil {
		return err
	}
	defer obj.Close()
	h := w.Header()
	h.Set("Content-Type", a.ContentType)
	h.Set("ETag", `"`+a.SHA256+`"`)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Name}))
	h.Set("X-Content-Type-Options", "nosniff")
	cw := &countingWriter{ResponseWriter: w, r: r, logger: s.deps.Logger}
	http.ServeContent(cw, r, "", a.CreatedAt, obj)
	s.deps.Metrics.ArtifactBytes("out", cw.n)
	return nil
}

type artifactList struct {
	Artifacts []artifactView `json:"artifacts"`
}

func (s *Server) taskArtifacts(w http.ResponseWriter, r *http.Request) error {
	taskID, err := task.ParseID(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	list, err := s.deps.Artifacts.ForTask(r.Context(), taskID)
	if err != nil {
		return err
	}
	out := artifactList{Artifacts: make([]artifactView, len(list))}
	for i := range list {
		out.Artifacts[i] = artifactViewOf(&list[i])
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// pathParam is a path parameter decoded: chi matches on the escaped path
// when the request's path has escapes of its own (%2F, %2e), and then its
// parameters are still escaped.
func pathParam(r *http.Request, name string) string {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v
	}
	if un, err := url.PathUnescape(v); err == nil {
		return un
	}
	return v
}

// countingWriter counts the body bytes written, and copies downloads in
// large pieces: http.ServeContent's 32 KiB steps, each a hand-off inside
// minio-go, cost a third of the throughput on 25 MB objects.
//
// It also puts the errors http.ServeContent answers by itself (a range
// outside the artifact, a failed precondition) into the one error shape.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	r      *http.Request
	logger *slog.Logger
	failed bool // an error answer was written; ServeContent's own text is dropped
}

// serveContentErrors are the codes of ServeContent's own error answers.
var serveContentErrors = map[int]*Error{
	http.StatusRequestedRangeNotSatisfiable: {Status: http.StatusRequestedRangeNotSatisfiable, Code: CodeRangeNotSatisfiable,
		Message: "the range is outside the artifact"},
	http.StatusPreconditionFailed: {Status: http.StatusPreconditionFailed, Code: CodePreconditionFailed,
		Message: "an If-Match or If-Unmodified-Since precondition failed"},
}

func (c *countingWriter) WriteHeader(status int) {
	if e, ok := serveContentErrors[status]; ok {
		c.failed = true
		c.Header().Del("Content-Length")
		writeError(c.ResponseWriter, c.r, c.logger, e)
		return
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.failed {
		return len(p), nil
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// downloadBufferSize is the piece a download is copied in.
const downloadBufferSize = 512 << 10

var downloadBuffers = sync.Pool{New: func() any { b := make([]byte, downloadBufferSize); return &b }}

// ReadFrom copies r to the response through a pooled buffer.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.failed {
		return io.Copy(io.Discard, r)
	}
	buf := downloadBuffers.Get().(*[]byte)
	defer downloadBuffers.Put(buf)
	// writerOnly hides the ResponseWriter's own ReadFrom, which would copy
	// in small pieces again.
	n, err := io.CopyBuffer(writerOnly{c.ResponseWriter}, r, *buf)
	c.n += n
	return n, err
}

type writerOnly struct{ io.Writer }
