package httpapi

import (
	"bytes"
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

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/task"
)

// artifactView is an artifact's metadata as the API shows it.
type artifactView struct {
	ID          string `json:"id"`
	ArtifactID  string `json:"artifact_id"` // id, under the name earlier clients read
	TaskID      int64  `json:"task_id"`
	Type        string `json:"type"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	CreatedAt   string `json:"created_at"`
	URL         string `json:"url"`
}

func artifactViewOf(a *taskrunner.Artifact) artifactView {
	id := a.ID.String()
	return artifactView{
		ID: id, ArtifactID: id, TaskID: a.TaskID, Type: a.Type, Name: a.Name, ContentType: a.ContentType,
		Size: a.Size, SHA256: a.SHA256, CreatedAt: a.CreatedAt.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		URL: "/artifacts/" + id,
	}
}

// base64BodyLimit bounds a POST /artifacts body for artifacts of at most
// maxBytes: their base64, with room for a line break every 76 characters
// (sent as \n) and for the other fields.
func base64BodyLimit(maxBytes int64) int64 {
	encoded := (maxBytes + 2) / 3 * 4
	return encoded + encoded/32 + 64<<10
}

// createArtifact stores an artifact sent as JSON with its bytes in
// base64, decoding as it reads: the bytes stream into MinIO and are never
// held whole. The fields may come in any order, so the object is stored
// as data_base64 arrives and its row is written once the body has been
// read and checked; a refusal at any point removes the object. When
// task_id comes before data_base64 (as clients send it), the task and the
// fields seen so far are checked before any byte is stored.
func (s *Server) createArtifact(w http.ResponseWriter, r *http.Request) error {
	release, err := s.takeUploadSlot(w, r)
	if err != nil {
		return err
	}
	defer release()
	if err := requireJSON(r); err != nil {
		return err
	}
	svc := s.deps.Artifacts
	limit := base64BodyLimit(svc.MaxBytes())
	if r.ContentLength > limit {
		return svc.TooLarge()
	}
	// The decoded bytes are counted against the tenant's byte rate, and
	// at least minUploadCost even when there are none.
	meter := s.meterUpload(w, r, nil, -1)
	if err := meter.begin(); err != nil {
		return err
	}
	ctx := r.Context()
	body := s.idleCut(w, r)
	var staged *artifact.Staged
	fields, err := decodeArtifactStream(http.MaxBytesReader(nil, io.NopCloser(body), limit), func(f *artifactFields, decoded io.Reader) error {
		var taskID int64
		if f.TaskID != nil {
			n := f.New()
			n.NameLater = f.Name == "" // the name may come after the data
			if err := svc.Check(ctx, &n); err != nil {
				return err
			}
			taskID = n.TaskID
		}
		var err error
		meter.body = decoded
		staged, err = svc.Stage(ctx, taskID, meter)
		return err
	})
	err = body.result(meter.result(err))
	if err == nil && fields.TaskID == nil {
		err = &taskrunner.Error{Code: taskrunner.CodeArtifactInvalid, Field: "task_id", Message: "task_id is required"}
	}
	if err == nil && staged == nil { // no data_base64: an empty artifact
		staged, err = svc.Stage(ctx, *fields.TaskID, bytes.NewReader(nil))
	}
	if err != nil {
		if staged != nil {
			staged.Discard(ctx)
		}
		return artifactJSONError(err, svc)
	}
	a, err := staged.Commit(ctx, fields.New())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/artifacts/"+a.ID.String())
	writeJSON(w, http.StatusCreated, artifactViewOf(a))
	return nil
}

// artifactJSONError is the answer to a failure while reading a POST
// /artifacts body.
func artifactJSONError(err error, svc *artifact.Service) error {
	var tooLarge *http.MaxBytesError
	var syntax *jsonSyntaxError
	switch {
	case errors.As(err, &tooLarge):
		return svc.TooLarge()
	case errors.As(err, &syntax):
		return &taskrunner.Error{Code: taskrunner.CodeInvalidJSON, Message: syntax.Error()}
	case errors.Is(err, errBadBase64), errors.Is(err, errDataEscape):
		msg := errBadBase64.Error()
		if errors.Is(err, errDataEscape) {
			msg = errDataEscape.Error()
		}
		return &taskrunner.Error{Code: taskrunner.CodeArtifactInvalid, Field: "data_base64", Message: msg}
	}
	return err
}

// uploadArtifact streams a raw body into MinIO: nothing is held whole in
// memory, and the sha256 is computed on the way.
func (s *Server) uploadArtifact(w http.ResponseWriter, r *http.Request) error {
	release, err := s.takeUploadSlot(w, r)
	if err != nil {
		return err
	}
	defer release()
	taskID, err := task.ParseID(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	contentType := r.Header.Get("Content-Type")
	if contentType != "" {
		if _, _, err := mime.ParseMediaType(contentType); err != nil {
			return &taskrunner.Error{Code: taskrunner.CodeArtifactInvalid, Field: "content_type", Message: "Content-Type is not a media type"}
		}
	}
	body := s.idleCut(w, r)
	meter := s.meterUpload(w, r, body, r.ContentLength)
	if err := meter.begin(); err != nil {
		return err
	}
	a, err := s.deps.Artifacts.Put(r.Context(), artifact.New{
		TaskID: taskID, Type: r.URL.Query().Get("type"), Name: pathParam(r, "name"), ContentType: contentType,
		Size: r.ContentLength, Body: meter,
	})
	if err != nil {
		return body.result(meter.result(err))
	}
	w.Header().Set("Location", "/artifacts/"+a.ID.String())
	writeJSON(w, http.StatusCreated, artifactViewOf(a))
	return nil
}

func (s *Server) artifactFromPath(r *http.Request) (*taskrunner.Artifact, error) {
	raw := chi.URLParam(r, "id")
	id, err := uuid.Parse(raw)
	if err != nil {
		return nil, &taskrunner.Error{Code: taskrunner.CodeNotFound, Message: "no artifact with id " + strconv.Quote(raw)}
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
	if tooManyRanges(r.Header.Get("Range")) {
		// Each range would be a request to MinIO: many of them are served
		// as the whole artifact, which RFC 9110 lets a server do.
		r.Header.Del("Range")
	}
	cw := &countingWriter{ResponseWriter: w, r: r, logger: s.deps.Logger}
	http.ServeContent(cw, r, "", a.CreatedAt, obj)
	s.deps.Metrics.ArtifactBytes("out", cw.n)
	return nil
}

// maxRanges is the most ranges a download's Range header may ask for;
// more are answered with the whole artifact.
const maxRanges = 8

// tooManyRanges reports whether a Range header asks for more than
// maxRanges ranges.
func tooManyRanges(h string) bool {
	return strings.Count(h, ",") >= maxRanges
}

type artifactList struct {
	Artifacts  []artifactView `json:"artifacts"`
	NextCursor *string        `json:"next_cursor"`
}

// taskArtifacts lists a page of a task's artifacts, oldest first, with the
// cursor of the next page.
func (s *Server) taskArtifacts(w http.ResponseWriter, r *http.Request) error {
	taskID, err := task.ParseID(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	q := r.URL.Query()
	pq := artifact.PageQuery{Cursor: q.Get("cursor")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			return taskrunner.Invalid("limit", "must be a positive whole number")
		}
		pq.Limit = n
	}
	list, next, err := s.deps.Artifacts.ForTask(r.Context(), taskID, pq)
	if err != nil {
		return err
	}
	out := artifactList{Artifacts: make([]artifactView, len(list))}
	for i := range list {
		out.Artifacts[i] = artifactViewOf(&list[i])
	}
	if next != "" {
		out.NextCursor = &next
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
var serveContentErrors = map[int]*taskrunner.Error{
	http.StatusRequestedRangeNotSatisfiable: {Code: taskrunner.CodeRangeNotSatisfiable,
		Message: "the range is outside the artifact"},
	http.StatusPreconditionFailed: {Code: taskrunner.CodePreconditionFailed,
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
