package artifact

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/minio/minio-go/v7"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/metrics"
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

// ErrUnavailable wraps failures of MinIO itself, which are
// dependency_unavailable errors: the API answers 503.
var ErrUnavailable = errors.New("artifact store unavailable")

// unavailable is the error of a failure of MinIO, or of the database when
// it cannot be reached.
func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return taskrunner.Unavailable(err)
	}
	return db.AsUnavailable(err)
}

// errTooLarge is what the size-limiting reader returns past the limit.
var errTooLarge = errors.New("artifact larger than the limit")

// Service stores artifacts: the object in MinIO first, then its row in
// PostgreSQL; an object whose row cannot be written is removed again, so a
// row always has its object and an object always has its row.
type Service struct {
	store      *Store
	pool       *pgxpool.Pool
	maxBytes   int64
	maxPerTask int
	logger     *slog.Logger
	metrics    *metrics.Metrics
	orphanAge  time.Duration
	orphanScan int

	orphanMu     sync.Mutex
	orphanCursor string // the key RemoveOrphans goes on after
}

// DefaultMaxBytes is the artifact limit when ServiceConfig.MaxBytes is 0:
// TASK_MAX_ARTIFACT_MB's default, 25 MB.
const DefaultMaxBytes = 25 << 20

// DefaultMaxPerTask is the cap on a task's artifacts when
// ServiceConfig.MaxPerTask is 0: TASK_MAX_ARTIFACTS's default.
const DefaultMaxPerTask = 1000

// ServiceConfig is what a Service is built from.
type ServiceConfig struct {
	// Store is the MinIO bucket the objects go to. Required.
	Store *Store
	// Pool is the database of the artifact rows. Required.
	Pool *pgxpool.Pool
	// MaxBytes is the largest artifact accepted (TASK_MAX_ARTIFACT_MB);
	// DefaultMaxBytes when 0.
	MaxBytes int64
	// MaxPerTask is how many artifacts one task may have
	// (TASK_MAX_ARTIFACTS); DefaultMaxPerTask when 0.
	MaxPerTask int
	// Logger gets artifact_stored, artifact_rejected and the sweeps' lines;
	// nil logs nothing.
	Logger *slog.Logger
	// Metrics counts artifact bytes in and out; nil counts nothing.
	Metrics *metrics.Metrics
	// OrphanAge is how old an object without a row must be for
	// RemoveOrphans to remove it; DefaultOrphanAge when 0.
	OrphanAge time.Duration
	// OrphanScan is how many objects one RemoveOrphans call lists at most;
	// DefaultOrphanScan when 0.
	OrphanScan int
}

// withDefaults is cfg with every unset optional field at its default.
func (cfg ServiceConfig) withDefaults() ServiceConfig {
	cfg.MaxBytes = cmp.Or(cfg.MaxBytes, DefaultMaxBytes)
	cfg.MaxPerTask = cmp.Or(cfg.MaxPerTask, DefaultMaxPerTask)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.OrphanAge = cmp.Or(cfg.OrphanAge, DefaultOrphanAge)
	cfg.OrphanScan = cmp.Or(cfg.OrphanScan, DefaultOrphanScan)
	return cfg
}

// validate names the first field that is missing or out of range.
func (cfg ServiceConfig) validate() error {
	switch {
	case cfg.Store == nil:
		return errors.New("artifact service: Store is required")
	case cfg.Pool == nil:
		return errors.New("artifact service: Pool is required")
	case cfg.MaxBytes < 0:
		return fmt.Errorf("artifact service: MaxBytes must not be negative, got %d", cfg.MaxBytes)
	case cfg.MaxPerTask < 0:
		return fmt.Errorf("artifact service: MaxPerTask must not be negative, got %d", cfg.MaxPerTask)
	case cfg.OrphanAge < 0:
		return fmt.Errorf("artifact service: OrphanAge must not be negative, got %s", cfg.OrphanAge)
	case cfg.OrphanScan < 0:
		return fmt.Errorf("artifact service: OrphanScan must not be negative, got %d", cfg.OrphanScan)
	}
	return nil
}

// NewService returns a Service built from cfg, or an error naming the
// field of cfg that is missing or wrong.
func NewService(cfg ServiceConfig) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Service{
		store: cfg.Store, pool: cfg.Pool, maxBytes: cfg.MaxBytes, maxPerTask: cfg.MaxPerTask, logger: cfg.Logger,
		metrics: cfg.Metrics, orphanAge: cfg.OrphanAge, orphanScan: cfg.OrphanScan,
	}, nil
}

// MaxBytes is the largest artifact accepted (TASK_MAX_ARTIFACT_MB).
func (s *Service) MaxBytes() int64 { return s.maxBytes }

// MaxPerTask is how many artifacts one task may have (TASK_MAX_ARTIFACTS).
func (s *Service) MaxPerTask() int { return s.maxPerTask }

// New describes an artifact to store.
type New struct {
	TaskID      int64
	Type        string // e.g. "log", "file", "search_result"
	Name        string // a file name: no path separators, no control characters
	ContentType string
	// Size is the declared length, or -1 when unknown (a chunked upload).
	Size int64
	Body io.Reader
	// NameLater: Name may still change (a JSON body's name may come after
	// its data), so Check leaves the cap on the task's artifacts, which a
	// new artifact of an existing name does not count against, to Commit.
	NameLater bool

	// owner is the task's owner, which the artifact gets; Check fills it in.
	owner string
}

// CheckName refuses names that are not a plain file name.
func CheckName(name string) error {
	switch {
	case name == "":
		return taskrunner.FieldError(taskrunner.CodeArtifactInvalid, "name", "is required")
	case len(name) > maxNameBytes:
		return taskrunner.FieldError(taskrunner.CodeArtifactInvalid, "name", "must be at most %d bytes", maxNameBytes)
	case !utf8.ValidString(name):
		return taskrunner.FieldError(taskrunner.CodeArtifactInvalid, "name", "must be UTF-8 text")
	case name == "." || name == ".." || strings.ContainsAny(name, `/\`):
		return taskrunner.FieldError(taskrunner.CodeArtifactInvalid, "name", "must be a file name, without path separators or dot segments")
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }):
		return taskrunner.FieldError(taskrunner.CodeArtifactInvalid, "name", "must not contain control characters")
	}
	return nil
}

// TooLarge is the refusal of an artifact over the limit.
func (s *Service) TooLarge() *taskrunner.Error {
	return &taskrunner.Error{Code: taskrunner.CodeArtifactSizeExceeded, Message: fmt.Sprintf("artifacts are limited to %d MB (TASK_MAX_ARTIFACT_MB)", s.maxBytes>>20)}
}

// Put stores an artifact of an existing task, replacing the task's
// artifact of the same name. Refusals are *taskrunner.Error; a failure of
// MinIO is dependency_unavailable and wraps ErrUnavailable; nothing is left behind by either.
func (s *Service) Put(ctx context.Context, n New) (*taskrunner.Artifact, error) {
	if err := s.Check(ctx, &n); err != nil {
		return nil, err
	}
	st, err := s.stage(ctx, n.TaskID, n.ContentType, n.Size, n.Body)
	if err != nil {
		return nil, err
	}
	return st.commit(ctx, n)
}

// TooMany is the refusal of a new artifact for a task that has
// TASK_MAX_ARTIFACTS already.
func (s *Service) TooMany(taskID int64) *taskrunner.Error {
	return &taskrunner.Error{Code: taskrunner.CodeTooManyArtifacts, Field: "name", Message: fmt.Sprintf(
		"task %d has its maximum of %d artifacts (TASK_MAX_ARTIFACTS); an artifact of a name it has replaces that one", taskID, s.maxPerTask)}
}

// Check fills in n's defaults and refuses what Put would refuse before
// reading the body: a bad name, type or content type, a declared size over
// the limit, a task that does not exist, a new name for a task that has
// its maximum of artifacts.
func (s *Service) Check(ctx context.Context, n *New) error {
	if err := CheckName(n.Name); err != nil {
		return err
	}
	if n.Type == "" {
		n.Type = "file"
	}
	if !typePattern.MatchString(n.Type) {
		return taskrunner.FieldError(taskrunner.CodeArtifactInvalid, "type", "must be 1 to 64 of a-z, 0-9, _, . and -, starting with a letter or digit")
	}
	if n.ContentType == "" {
		n.ContentType = "application/octet-stream"
	}
	if len(n.ContentType) > 255 {
		return taskrunner.FieldError(taskrunner.CodeArtifactInvalid, "content_type", "must be at most 255 bytes")
	}
	if n.Size > s.maxBytes {
		s.rejected(ctx, n.TaskID, n.Size, "declared size over the limit")
		return s.TooLarge()
	}
	t, err := db.GetTask(ctx, s.pool, n.TaskID)
	if errors.Is(err, db.ErrNotFound) || (err == nil && !taskrunner.Visible(ctx, t.Owner)) {
		return noTask(n.TaskID) // another tenant's task, exactly as an unknown one
	}
	if err != nil {
		return unavailable(err)
	}
	n.owner = t.Owner
	if n.NameLater {
		return nil
	}
	// Before any byte is read; Commit checks again, under the task's lock.
	count, hasName, err := db.ArtifactRoom(ctx, s.pool, n.TaskID, n.Name)
	if err != nil {
		return unavailable(err)
	}
	if count >= s.maxPerTask && !hasName {
		s.tooMany(ctx, n.TaskID)
		return s.TooMany(n.TaskID)
	}
	return nil
}

// noTask is the refusal of a task id that names no task the caller may see.
func noTask(id int64) *taskrunner.Error {
	return &taskrunner.Error{Code: taskrunner.CodeNotFound, Message: fmt.Sprintf("no task with id %d", id)}
}

// Staged is an object stored before the artifact it belongs to is fully
// described: Commit checks the description and writes the row, Discard
// removes the object. Exactly one of them must be called.
type Staged struct {
	s      *Service
	id     uuid.UUID
	taskID int64 // the task whose key the object has; 0 when it was not known
	key    string
	size   int64
	sha256 string
}

// Stage streams body, of unknown length, into a new object, for an upload
// whose description may come after its bytes (a JSON body's fields in any
// order). taskID places the object under its task when it is already
// known; 0 places it under task 0, which no task has. Refusals and
// failures are those of Put, and leave nothing behind.
func (s *Service) Stage(ctx context.Context, taskID int64, body io.Reader) (*Staged, error) {
	return s.stage(ctx, taskID, "application/octet-stream", -1, body)
}

// Commit checks n (its Size and Body are not used: the staged bytes are
// its body), records the artifact, replacing the task's artifact of the
// same name, and removes the object on any failure.
func (st *Staged) Commit(ctx context.Context, n New) (*taskrunner.Artifact, error) {
	n.Size = -1
	n.NameLater = false
	if err := st.s.Check(ctx, &n); err != nil {
		st.Discard(ctx)
		return nil, err
	}
	if st.taskID != 0 && st.taskID != n.TaskID {
		st.Discard(ctx)
		return nil, fmt.Errorf("object %s was staged for task %d, not %d", st.key, st.taskID, n.TaskID)
	}
	return st.commit(ctx, n)
}

// Discard removes the staged object.
func (st *Staged) Discard(ctx context.Context) { st.s.removeObject(ctx, st.s.store.bucket, st.key) }

// stage stores body as a new object of taskID; size is its declared
// length, or -1.
func (s *Service) stage(ctx context.Context, taskID int64, contentType string, size int64, body io.Reader) (*Staged, error) {
	id := uuid.New()
	key := ObjectKey(taskID, id)
	lr := &limitedHashReader{r: body, remaining: s.maxBytes, hash: sha256.New()}
	opts := minio.PutObjectOptions{ContentType: contentType, UserMetadata: map[string]string{"task-id": strconv.FormatInt(taskID, 10)}}
	if size >= 0 {
		opts.DisableMultipart = true // one streamed PUT, nothing buffered
	} else {
		opts.PartSize = unknownSizePartSize
	}
	info, err := s.store.client.PutObject(ctx, s.store.bucket, key, lr, size, opts)
	if err != nil || (size >= 0 && lr.read != size) {
		s.removeObject(ctx, s.store.bucket, key)
		if errors.Is(err, errTooLarge) || lr.tooLarge {
			s.rejected(ctx, taskID, lr.read, "over the limit while streaming")
			return nil, s.TooLarge()
		}
		if lr.readErr != nil {
			return nil, &taskrunner.Error{Code: taskrunner.CodeArtifactInvalid, Field: "body", Message: "the upload was cut short", Err: lr.readErr}
		}
		if err == nil {
			return nil, &taskrunner.Error{Code: taskrunner.CodeArtifactInvalid, Field: "body", Message: "the body is shorter than its declared length"}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, unavailable(fmt.Errorf("%w: store %s: %w", ErrUnavailable, key, err))
	}
	return &Staged{s: s, id: id, taskID: taskID, key: key, size: info.Size, sha256: hex.EncodeToString(lr.hash.Sum(nil))}, nil
}

// commit writes the row of a checked artifact, then removes the object of
// the artifact it replaced, if any. A crash between the two leaves that
// object without a row, for RemoveOrphans.
func (st *Staged) commit(ctx context.Context, n New) (*taskrunner.Artifact, error) {
	s := st.s
	a, replaced, err := db.StoreArtifact(ctx, s.pool, taskrunner.Artifact{
		ID: st.id, TaskID: n.TaskID, Type: n.Type, Name: n.Name, ContentType: n.ContentType, Size: st.size,
		SHA256: st.sha256, Bucket: s.store.bucket, ObjectKey: st.key, Owner: n.owner,
	}, s.maxPerTask)
	if err != nil {
		st.Discard(ctx) // no object without its row
		if errors.Is(err, db.ErrTooManyArtifacts) {
			s.tooMany(ctx, n.TaskID)
			return nil, s.TooMany(n.TaskID)
		}
		return nil, unavailable(err)
	}
	if replaced != nil {
		s.removeObject(ctx, replaced.Bucket, replaced.ObjectKey)
	}
	s.metrics.ArtifactBytes("in", a.Size)
	attrs := []slog.Attr{slog.String("event", "artifact_stored"),
		slog.String("artifact_id", a.ID.String()), slog.Int64("task_id", a.TaskID), slog.String("type", a.Type),
		slog.Int64("size", a.Size), slog.String("sha256", a.SHA256)}
	if replaced != nil {
		attrs = append(attrs, slog.Bool("replaced", true))
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "artifact stored", attrs...)
	return a, nil
}

func (s *Service) tooMany(ctx context.Context, taskID int64) {
	s.logger.LogAttrs(ctx, slog.LevelInfo, "artifact rejected", slog.String("event", "artifact_rejected"),
		slog.String("code", string(taskrunner.CodeTooManyArtifacts)), slog.Int64("task_id", taskID), slog.Int("limit", s.maxPerTask))
}

func (s *Service) rejected(ctx context.Context, taskID, size int64, why string) {
	s.logger.LogAttrs(ctx, slog.LevelWarn, "artifact rejected", slog.String("event", "artifact_rejected"),
		slog.String("code", string(taskrunner.CodeArtifactSizeExceeded)), slog.Int64("task_id", taskID), slog.Int64("size", size),
		slog.Int64("limit", s.maxBytes), slog.String("reason", why))
}

// removeObject deletes what a failed upload may have left, parts
// included, or the object of a replaced artifact.
func (s *Service) removeObject(ctx context.Context, bucket, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := s.store.client.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}); err != nil {
		s.logger.WarnContext(ctx, "could not remove object", slog.String("event", "artifact_cleanup_failed"),
			slog.String("bucket", bucket), slog.String("object_key", key), slog.String("error", err.Error()))
	}
	_ = s.store.client.RemoveIncompleteUpload(ctx, bucket, key)
}

// Get returns an artifact's metadata. A client tenant gets only its own
// artifacts: another tenant's id is not found, exactly as an unknown one.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (*taskrunner.Artifact, error) {
	a, err := db.GetArtifact(ctx, s.pool, id)
	if errors.Is(err, db.ErrNotFound) || (err == nil && !taskrunner.Visible(ctx, a.Owner)) {
		return nil, &taskrunner.Error{Code: taskrunner.CodeNotFound, Message: fmt.Sprintf("no artifact with id %s", id)}
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return a, nil
}

// Page sizes of ForTask.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// PageQuery selects a page of a task's artifacts.
type PageQuery struct {
	Cursor string // the previous page's next cursor; "" for the first
	Limit  int    // DefaultPageSize when 0
}

// ForTask returns a page of a task's artifacts, oldest first, and the
// cursor of the next page ("" on the last); 404 for a task that does not
// exist and has none, or that the tenant ctx acts for does not own.
// (Artifacts outlive their task: once retention removed it, theirs is the
// owner.)
func (s *Service) ForTask(ctx context.Context, taskID int64, q PageQuery) (list []taskrunner.Artifact, next string, err error) {
	limit := q.Limit
	switch {
	case limit == 0:
		limit = DefaultPageSize
	case limit < 0 || limit > MaxPageSize:
		return nil, "", taskrunner.Invalid("limit", "must be between 1 and %d", MaxPageSize)
	}
	dq := db.ArtifactPageQuery{TaskID: taskID, Limit: limit + 1} // one more tells whether a page follows
	if q.Cursor != "" {
		c, err := ParseCursor(q.Cursor)
		if err != nil {
			return nil, "", err
		}
		dq.Paged, dq.AfterCreatedAt, dq.AfterID = true, c.CreatedAt, c.ID
	}
	list, err = db.ArtifactsForTaskPage(ctx, s.pool, dq)
	if err != nil {
		return nil, "", unavailable(err)
	}
	if len(list) > 0 {
		if !taskrunner.Visible(ctx, list[0].Owner) {
			return nil, "", noTask(taskID)
		}
		if len(list) > limit {
			list = list[:limit]
			last := list[limit-1]
			next = Cursor{CreatedAt: last.CreatedAt, ID: last.ID}.String()
		}
		return list, next, nil
	}
	t, err := db.GetTask(ctx, s.pool, taskID)
	if errors.Is(err, db.ErrNotFound) || (err == nil && !taskrunner.Visible(ctx, t.Owner)) {
		return nil, "", noTask(taskID)
	}
	if err != nil {
		return nil, "", unavailable(err)
	}
	return []taskrunner.Artifact{}, "", nil
}

// Open returns the artifact's bytes as a ReadSeeker that fetches ranges
// from MinIO as they are read. Close it.
func (s *Service) Open(ctx context.Context, a *taskrunner.Artifact) (*minio.Object, error) {
	obj, err := s.store.client.GetObject(ctx, a.Bucket, a.ObjectKey, minio.GetObjectOptions{})
	if err != nil {
		return nil, unavailable(fmt.Errorf("%w: open %s: %w", ErrUnavailable, a.ObjectKey, err))
	}
	if _, err := obj.Stat(); err != nil {
		_ = obj.Close()
		return nil, unavailable(fmt.Errorf("%w: open %s: %w", ErrUnavailable, a.ObjectKey, err))
	}
	return obj, nil
}

// ObjectKey is where an artifact's bytes live: under its task, by id, so
// no client-chosen name ever reaches the key. Task 0 (no task has it)
// holds objects staged before their task was known.
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
// transaction that commits only once its objects are removed, each from
// its row's own bucket, so a failure leaves both for the next run. It
// returns how many it removed.
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
			return s.removeStored(ctx, objs)
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

// RemoveForTasksTx deletes the artifact rows of the tasks in tx and
// removes their objects before it returns: should an object not go, the
// error rolls tx back, and the rows (and whatever else tx deleted) stay
// with their objects. It returns how many it removed.
func (s *Service) RemoveForTasksTx(ctx context.Context, tx pgx.Tx, taskIDs []int64) (int, error) {
	if len(taskIDs) == 0 {
		return 0, nil
	}
	objs, err := db.DeleteArtifactsForTasks(ctx, tx, taskIDs)
	if err != nil {
		return 0, err
	}
	if err := s.removeStored(ctx, objs); err != nil {
		return 0, err
	}
	return len(objs), nil
}

// removeStored removes the objects of deleted rows, each from its row's
// own bucket, and returns every failure.
func (s *Service) removeStored(ctx context.Context, objs []db.ObjectRef) error {
	byBucket := map[string][]string{}
	for _, o := range objs {
		byBucket[o.Bucket] = append(byBucket[o.Bucket], o.ObjectKey)
	}
	var errs []error
	for _, bucket := range slices.Sorted(maps.Keys(byBucket)) {
		errs = append(errs, s.removeObjects(ctx, bucket, byBucket[bucket]))
	}
	return errors.Join(errs...)
}

// removeObjects removes keys from bucket, reading every result minio-go
// sends (it blocks until they are read), and returns every failure. A
// bucket that no longer exists holds none of them: that is no failure.
func (s *Service) removeObjects(ctx context.Context, bucket string, keys []string) error {
	objects := make(chan minio.ObjectInfo, len(keys))
	for _, k := range keys {
		objects <- minio.ObjectInfo{Key: k}
	}
	close(objects)
	var errs []error
	for res := range s.store.client.RemoveObjects(ctx, bucket, objects, minio.RemoveObjectsOptions{}) {
		if res.Err != nil && minio.ToErrorResponse(res.Err).Code != "NoSuchBucket" {
			errs = append(errs, fmt.Errorf("%w: remove %s/%s: %w", ErrUnavailable, bucket, res.ObjectName, res.Err))
		}
	}
	return errors.Join(errs...)
}

// Defaults of the sweep of objects without a row.
const (
	// DefaultOrphanAge is how old an object without a row must be before
	// it is removed: far longer than any upload takes between storing its
	// object and writing its row.
	DefaultOrphanAge = time.Hour
	// DefaultOrphanScan is how many objects one RemoveOrphans call lists
	// at most.
	DefaultOrphanScan = 10_000
	// orphanBatch is how many listed objects are looked up at once.
	orphanBatch = 1000
)

// RemoveOrphans removes objects under tasks/ in the service's bucket that
// have no artifact row and are older than ServiceConfig.OrphanAge: what a crash between storing an object and writing its row, or
// between replacing an artifact and removing its old object, left behind.
// Each call lists at most ServiceConfig.OrphanScan objects,
// going on from where the last call stopped and starting over at the end,
// so the work of a run is bounded however large the bucket. It returns how
// many it removed.
func (s *Service) RemoveOrphans(ctx context.Context) (int, error) {
	scan := s.orphanScan
	cutoff := time.Now().Add(-s.orphanAge)
	s.orphanMu.Lock()
	defer s.orphanMu.Unlock()
	bucket := s.store.bucket
	listCtx, stopListing := context.WithCancel(ctx)
	defer stopListing()
	listed := s.store.client.ListObjects(listCtx, bucket, minio.ListObjectsOptions{
		Prefix: "tasks/", Recursive: true, StartAfter: s.orphanCursor,
	})
	removed, scanned := 0, 0
	var candidates []string
	flush := func() error {
		if len(candidates) == 0 {
			return nil
		}
		stored, err := db.StoredKeys(ctx, s.pool, bucket, candidates)
		if err != nil {
			return err
		}
		var orphans []string
		for _, k := range candidates {
			if !stored[k] {
				orphans = append(orphans, k)
			}
		}
		candidates = candidates[:0]
		if len(orphans) == 0 {
			return nil
		}
		if err := s.removeObjects(ctx, bucket, orphans); err != nil {
			return err
		}
		removed += len(orphans)
		s.logger.LogAttrs(ctx, slog.LevelInfo, "objects without a row removed", slog.String("event", "artifact_orphans_removed"),
			slog.String("bucket", bucket), slog.Int("count", len(orphans)))
		return nil
	}
	cursor := ""
	for obj := range listed {
		if obj.Err != nil {
			return removed, fmt.Errorf("%w: list %s: %w", ErrUnavailable, bucket, obj.Err)
		}
		scanned++
		cursor = obj.Key
		if obj.LastModified.Before(cutoff) {
			candidates = append(candidates, obj.Key)
		}
		if len(candidates) == orphanBatch {
			if err := flush(); err != nil {
				return removed, err
			}
		}
		if scanned == scan {
			break
		}
	}
	if err := flush(); err != nil {
		return removed, err
	}
	if scanned < scan {
		cursor = "" // the end of the bucket: start over next time
	}
	s.orphanCursor = cursor
	return removed, nil
}
