package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/minio/minio-go/v7"

	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/metrics"
)

// Stable error codes of artifact refusals.
const (
	CodeSizeExceeded = "artifact_size_exceeded"
	CodeInvalid      = "artifact_rejected_invalid"
	CodeNotFound     = "not_found"
)

// Limits on names and types.
const (
	maxNameBytes = 255
	// unknownSizePartSize is the part size of uploads whose length is not
	// declared: minio-go holds one part in memory at a time.
	unknownSizePartSize = 5 << 20
	// cleanupTimeout bounds removing an object after a failed upload; with
	// MinIO down the removal fails fast, and nothing was stored anyway.
	cleanupTimeout = 3 * time.Second
)

var typePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// Error is a refusal with a stable code, safe to show the client.
type Error struct {
	Code    string
	Message string
	Field   string
	cause   error // what the uploader's body failed with, if that was it
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap is the failure of the body being stored, when that was the cause.
func (e *Error) Unwrap() error { return e.cause }

// ErrUnavailable wraps failures of MinIO itself: the API answers 503.
var ErrUnavailable = errors.New("artifact store unavailable")

// errTooLarge is what the size-limiting reader returns past the limit.
var errTooLarge = errors.New("artifact larger than the limit")

// Service stores artifacts: the object in MinIO first, then its row in
// PostgreSQL; an object whose row cannot be written is removed again, so a
// row always has its object and an object always has its row.
type Service struct {
	store    *Store
	pool     *pgxpool.Pool
	maxBytes int64
	logger   *slog.Logger
	// Metrics counts artifact bytes in and out; nil counts nothing.
	Metrics *metrics.Metrics
}

// NewService returns a Service keeping artifacts of at most maxBytes.
func NewService(store *Store, pool *pgxpool.Pool, maxBytes int64, logger *slog.Logger) *Service {
	return &Service{store: store, pool: pool, maxBytes: maxBytes, logger: logger}
}

// MaxBytes is the largest artifact accepted (TASK_MAX_ARTIFACT_MB).
func (s *Service) MaxBytes() int64 { return s.maxBytes }

// New describes an artifact to store.
type New struct {
	TaskID      int64
	Type        string // e.g. "log", "file", "search_result"
	Name        string // a file name: no path separators, no control characters
	ContentType string
	// Size is the declared length, or -1 when unknown (a chunked upload).
	Size int64
	Body io.Reader
}

// CheckName refuses names that are not a plain file name.
func CheckName(name string) error {
	switch {
	case name == "":
		return invalid("name", "is required")
	case len(name) > maxNameBytes:
		return invalid("name", "must be at most %d bytes", maxNameBytes)
	case !utf8.ValidString(name):
		return invalid("name", "must be UTF-8 text")
	case name == "." || name == ".." || strings.ContainsAny(name, `/\`):
		return invalid("name", "must be a file name, without path separators or dot segments")
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }):
		return invalid("name", "must not contain control characters")
	}
	return nil
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: field + " " + fmt.Sprintf(format, args...)}
}

// TooLarge is the refusal of an artifact over the limit.
func (s *Service) TooLarge() *Error {
	return &Error{Code: CodeSizeExceeded, Message: fmt.Sprintf("artifacts are limited to %d MB (TASK_MAX_ARTIFACT_MB)", s.maxBytes>>20)}
}

// Put stores an artifact of an existing task. Refusals are *Error; a
// failure of MinIO wraps ErrUnavailable; nothing is left behind by either.
func (s *Service) Put(ctx context.Context, n New) (*db.Artifact, error) {
	if err := CheckName(n.Name); err != nil {
		return nil, err
	}
	if n.Type == "" {
		n.Type = "file"
	}
	if !typePattern.MatchString(n.Type) {
		return nil, invalid("type", "must be 1 to 64 of a-z, 0-9, _, . and -, starting with a letter or digit")
	}
	if n.ContentType == "" {
		n.ContentType = "application/octet-stream"
	}
	if len(n.ContentType) > 255 {
		return nil, invalid("content_type", "must be at most 255 bytes")
	}
	if n.Size > s.maxBytes {
		s.rejected(ctx, n, n.Size, "declared size over the limit")
		return nil, s.TooLarge()
	}
	if _, err := db.GetTask(ctx, s.pool, n.TaskID); err != nil {
		if errors.Is(err, db.ErrNotFound) {
			return nil, &Error{Code: CodeNotFound, Message: fmt.Sprintf("no task with id %d", n.TaskID)}
		}
		return nil, err
	}

	id := uuid.New()
	key := ObjectKey(n.TaskID, id)
	body := &limitedHashReader{r: n.Body, remaining: s.maxBytes, hash: sha256.New()}
	opts := minio.PutObjectOptions{ContentType: n.ContentType, UserMetadata: map[string]string{"task-id": strconv.FormatInt(n.TaskID, 10)}}
	if n.Size >= 0 {
		opts.DisableMultipart = true // one streamed PUT, nothing buffered
	} else {
		opts.PartSize = unknownSizePartSize
	}
	info, err := s.store.client.PutObject(ctx, s.store.bucket, key, body, n.Size, opts)
	if err != nil || (n.Size >= 0 && body.read != n.Size) {
		s.removeObject(ctx, key)
		if errors.Is(err, errTooLarge) || body.tooLarge {
			s.rejected(ctx, n, body.read, "over the limit while streaming")
			return nil, s.TooLarge()
		}
		if body.readErr != nil {
			return nil, &Error{Code: CodeInvalid, Field: "body", Message: "the upload was cut short", cause: body.readErr}
		}
		if err == nil {
			return nil, &Error{Code: CodeInvalid, Field: "body", Message: "the body is shorter than its declared length"}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: store %s: %w", ErrUnavailable, key, err)
	}

	a, err := db.InsertArtifact(ctx, s.pool, db.Artifact{
		ID: id, TaskID: n.TaskID, Type: n.Type, Name: n.Name, ContentType: n.ContentType, Size: info.Size,
		SHA256: hex.EncodeToString(body.hash.Sum(nil)), Bucket: s.store.bucket, ObjectKey: key,
	})
	if err != nil {
		s.removeObject(ctx, key) // no object without its row
		return nil, err
	}
	s.Metrics.ArtifactBytes("in", a.Size)
	s.logger.LogAttrs(ctx, slog.LevelInfo, "artifact stored", slog.String("event", "artifact_stored"),
		slog.String("artifact_id", a.ID.String()), slog.Int64("task_id", a.TaskID), slog.String("type", a.Type),
		slog.Int64("size", a.Size), slog.String("sha256", a.SHA256))
	return a, nil
}

func (s *Service) rejected(ctx context.Context, n New, size int64, why string) {
	s.logger.LogAttrs(ctx, slog.LevelWarn, "artifact rejected", slog.String("event", "artifact_rejected"),
		slog.String("code", CodeSizeExceeded), slog.Int64("task_id", n.TaskID), slog.Int64("size", size),
		slog.Int64("limit", s.maxBytes), slog.String("reason", why))
}

// removeObject deletes what a failed upload may have left, parts included.
func (s *Service) removeObject(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := s.store.client.RemoveObject(ctx, s.store.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		s.logger.WarnContext(ctx, "could not remove object of a failed upload", slog.String("event", "artifact_cleanup_failed"),
			slog.String("object_key", key), slog.String("error", err.Error()))
	}
	_ = s.store.client.RemoveIncompleteUpload(ctx, s.store.bucket, key)
}

// Get returns an artifact's metadata.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (*db.Artifact, error) {
	a, err := db.GetArtifact(ctx, s.pool, id)
	if errors.Is(err, db.ErrNotFound) {
		return nil, &Error{Code: CodeNotFound, Message: fmt.Sprintf("no artifact with id %s", id)}
	}
	return a, err
}

// ForTask returns a task's artifacts; 404 for a task that does not exist
// and has none.
func (s *Service) ForTask(ctx context.Context, taskID int64) ([]db.Artifact, error) {
	list, err := db.ArtifactsForTask(ctx, s.pool, taskID)
	if err != nil || len(list) > 0 {
		return list, err
	}
	if _, err := db.GetTask(ctx, s.pool, taskID); errors.Is(err, db.ErrNotFound) {
		return nil, &Error{Code: CodeNotFound, Message: fmt.Sprintf("no task with id %d", taskID)}
	} else if err != nil {
		return nil, err
	}
	return []db.Artifact{}, nil
}

// Open returns the artifact's bytes as a ReadSeeker that fetches ranges
// from MinIO as they are read. Close it.
func (s *Service) Open(ctx context.Context, a *db.Artifact) (*minio.Object, error) {
	obj, err := s.store.client.GetObject(ctx, a.Bucket, a.ObjectKey, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrUnavailable, a.ObjectKey, err)
	}
	if _, err := obj.Stat(); err != nil {
		_ = obj.Close()
		return nil, fmt.Errorf("%w: open %s: %w", ErrUnavailable, a.ObjectKey, err)
	}
	return obj, nil
}

// ObjectKey is where an artifact's bytes live: under its task, by id, so
// no client-chosen name ever reaches the key.
func ObjectKey(taskID int64, id uuid.UUID) string {
	return "tasks/" + strconv.FormatInt(taskID, 10) + "/" + id.String()
}

// limitedHashReader hashes what it reads and fails past its limit.
type limitedHashReader struct {
	r         io.Reader
	remaining int64
	read      int64
	hash      hash.Hash
	tooLarge  bool
	readErr   error // the uploader's failure, as opposed to MinIO's
}

func (l *limitedHashReader) Read(p []byte) (int, error) {
	if l.remaining < int64(len(p)) {
		p = p[:l.remaining+1] // one byte past the limit tells "over" from "exactly"
	}
	n, err := l.r.Read(p)
	if int64(n) > l.remaining {
		l.tooLarge = true
		return 0, errTooLarge
	}
	l.remaining -= int64(n)
	l.read += int64(n)
	l.hash.Write(p[:n])
	if err != nil && !errors.Is(err, io.EOF) {
		l.readErr = err
	}
	return n, err
}

// RemoveExpired deletes artifacts created before cutoff, rows and objects
// together, batch rows at a time: a batch's rows are deleted in a
// transaction that commits only once its objects are removed, so a failure
// leaves both for the next run. It returns how many it removed.
func (s *Service) RemoveExpired(ctx context.Context, cutoff time.Time, batch int) (int, error) {
	total := 0
	for {
		n := 0
		err := db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
			objs, err := db.DeleteExpiredArtifacts(ctx, tx, cutoff, batch)
			if err != nil {
				return err
			}
			n = len(objs)
			keys := make(chan minio.ObjectInfo, len(objs))
			for _, o := range objs {
				keys <- minio.ObjectInfo{Key: o.ObjectKey}
			}
			close(keys)
			for rerr := range s.store.client.RemoveObjects(ctx, s.store.bucket, keys, minio.RemoveObjectsOptions{}) {
				return fmt.Errorf("%w: remove %s: %w", ErrUnavailable, rerr.ObjectName, rerr.Err)
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < batch {
			return total, nil
		}
	}
}
