package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/taskrunner/taskrunner/artifact"
)

const (
	// maxArtifactMB bounds -artifact-mb: the bench holds the body in memory.
	maxArtifactMB = 1024
	// bareBucket and serverBucket are the buckets of the two sides, in the
	// bench's own MinIO.
	bareBucket   = "taskrunner-bench-bare"
	serverBucket = "taskrunner-bench-server"
	// artifactName is the bare side's object key and the taskrunner side's
	// artifact name.
	artifactName = "bench.bin"
	// chunkedPartSize is the part size of an upload of unknown length, as
	// the artifact service sets it (unknownSizePartSize).
	chunkedPartSize = 5 << 20
	// artifactOpTimeout bounds one upload or download.
	artifactOpTimeout = 2 * time.Minute
	// bucketTimeout bounds checking and creating the bare side's bucket.
	bucketTimeout = 10 * time.Second
)

// artifactBench measures uploading and downloading one artifact: bare
// minio-go against the bench's MinIO, and the same bytes through a
// `taskrunner serve` process of its own (one per round) whose peak RSS it
// reads from /proc.
type artifactBench struct {
	env      *env
	opts     *options
	endpoint string // the bench's MinIO, host:port
	user     string // its credentials (secret: never shown)
	password string
	store    *artifact.Store // the bare side's client, built as the service builds its own
	body     []byte
	sum      string // hex sha256 of body
	base64   []byte // body in base64, made for the first concurrent-upload figure
	bin      string // absolute path of the taskrunner binary
	http     *http.Client
}

// newArtifactBench checks what the artifact figures need (the bench's
// MinIO from BENCH_MINIO_ENDPOINT, BENCH_MINIO_USER and
// BENCH_MINIO_PASSWORD, and the taskrunner binary), creates the bare
// side's bucket and makes the random body.
func newArtifactBench(ctx context.Context, e *env, opts *options, getenv func(string) string) (*artifactBench, error) {
	a := &artifactBench{
		env:      e,
		opts:     opts,
		endpoint: getenv("BENCH_MINIO_ENDPOINT"),
		user:     getenv("BENCH_MINIO_USER"),
		password: getenv("BENCH_MINIO_PASSWORD"),
	}
	if a.endpoint == "" || a.user == "" || a.password == "" {
		return nil, errors.New("the artifact figures need a MinIO of the bench's own in BENCH_MINIO_ENDPOINT, BENCH_MINIO_USER and BENCH_MINIO_PASSWORD " +
			"(scripts/bench.sh starts one; -artifact-mb 0 skips the figures)")
	}
	bin, err := filepath.Abs(opts.taskrunnerBin)
	if err != nil {
		return nil, fmt.Errorf("-taskrunner-bin: %w", err)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("-taskrunner-bin: %s is not an executable file (`make build` builds it; -artifact-mb 0 skips the artifact figures)", opts.taskrunnerBin)
	}
	a.bin = bin
	a.store, err = artifact.NewStore(artifact.Config{Endpoint: a.endpoint, User: a.user, Password: a.password, Bucket: bareBucket})
	if err != nil {
		return nil, fmt.Errorf("artifacts: bench MinIO: %w", err)
	}
	bctx, cancel := context.WithTimeout(ctx, bucketTimeout)
	defer cancel()
	if err := a.store.EnsureBucket(bctx); err != nil {
		return nil, fmt.Errorf("artifacts: the bench's MinIO at %s (-artifact-mb 0 skips the figures): %w", a.endpoint, err)
	}
	a.body = make([]byte, opts.artifactMB<<20)
	_, _ = rand.Read(a.body) // random: nothing on the way can compress it
	h := sha256.Sum256(a.body)
	a.sum = hex.EncodeToString(h[:])

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DisableCompression = true // as minio-go's transport
	a.http = &http.Client{Transport: transport}
	e.p.linef("artifacts: MinIO %s (minio-go %s), bucket %s for bare minio-go; %d MiB random body; taskrunner binary %s",
		a.endpoint, moduleVersion("github.com/minio/minio-go/v7"), bareBucket, opts.artifactMB, opts.taskrunnerBin)
	return a, nil
}

// settings is the line the final output describes the artifact figures with.
func (a *artifactBench) settings() string {
	chunked := ""
	if a.opts.chunked {
		chunked = fmt.Sprintf(" and %d of unknown length (minio-go PutObject with size -1 and %d MiB parts, as the service uses; chunked HTTP)", a.opts.artifactReps, chunkedPartSize>>20)
	}
	return fmt.Sprintf("artifact settings: %d MiB (%d bytes) random body; per side and round %d uploads of known length (minio-go PutObject with DisableMultipart, as the service uses; HTTP PUT /tasks/{id}/artifacts/%s with Content-Length)%s "+
		"and %d downloads (GetObject + io.Copy to io.Discard; HTTP GET /artifacts/{id}); each kind starts with one transfer per side not counted, then the sides alternate transfer by transfer; "+
		"MB/s is 10^6 bytes/s over the counted ones; "+
		"taskrunner: a `taskrunner serve` process of its own per round (TASK_MAX_ARTIFACT_MB %d, WORKER_CONCURRENCY %d, DB_MAX_CONNS %d) over loopback HTTP; "+
		"server peak RSS is its VmHWM after the transfers, the largest across rounds%s",
		a.opts.artifactMB, len(a.body), a.opts.artifactReps, artifactName, chunked, a.opts.artifactReps,
		a.opts.artifactMB+1, a.opts.serverWorkers, a.opts.serverConns, a.base64Settings())
}

// measure measures one round: it starts a serve process, creates the task
// to attach artifacts to, measures both sides, reads the server's peak
// RSS, stops it and removes the round's objects.
func (a *artifactBench) measure(ctx context.Context, figs *figures, bareFirst bool) error {
	if err := a.env.reset(ctx); err != nil {
		return err
	}
	if _, err := a.env.conn.Exec(ctx, "TRUNCATE artifacts"); err != nil {
		return fmt.Errorf("empty the artifacts table: %w", err)
	}
	env, err := a.serverEnv()
	if err != nil {
		return err
	}
	srv, err := startServer(ctx, a.bin, env, a.env.p)
	if err != nil {
		return err
	}
	defer func() { _ = srv.stop() }()
	base := "http://" + srv.addr
	taskID, err := a.createTask(ctx, base)
	if err != nil {
		return err
	}
	rssStart, err := srv.status("VmRSS")
	if err != nil {
		return err
	}
	a.env.p.linef("artifacts: taskrunner serve (pid %d) listening on %s, task %d created; server RSS %s",
		srv.pid(), srv.addr, taskID, formatMB(rssStart))

	if err := a.transferKinds(ctx, figs, base, taskID, bareFirst); err != nil {
		return err
	}

	peak, err := srv.status("VmHWM")
	if err != nil {
		return err
	}
	rssEnd, err := srv.status("VmRSS")
	if err != nil {
		return err
	}
	figs.serverRSS.add(peak)
	a.env.p.linef("artifacts: server RSS %s before the transfers, %s after, peak (VmHWM) %s", formatMB(rssStart), formatMB(rssEnd), formatMB(peak))
	if err := srv.stop(); err != nil {
		return err
	}
	a.env.p.linef("artifacts: taskrunner serve (pid %d) stopped with SIGTERM", srv.pid())
	if err := a.removeObjects(ctx); err != nil {
		return err
	}
	if a.opts.base64Uploads > 0 {
		return a.measureBase64(ctx, figs)
	}
	return nil
}

// base64Settings describes the concurrent base64 figure, if measured.
func (a *artifactBench) base64Settings() string {
	if a.opts.base64Uploads == 0 {
		return ""
	}
	return fmt.Sprintf("; concurrent base64 uploads: %d clients at once each POST /artifacts the same body as JSON with data_base64 (Content-Length set) "+
		"to a serve process of its own per round (MAX_CONCURRENT_UPLOADS and TENANT_MAX_UPLOADS %d), whose VmHWM is read after them", a.opts.base64Uploads, a.opts.base64Uploads)
}

// measureBase64 starts a serve process of its own, has -base64-uploads
// clients each POST /artifacts the body base64-encoded at once, and adds
// the server's peak RSS to the figure.
func (a *artifactBench) measureBase64(ctx context.Context, figs *figures) error {
	if a.base64 == nil {
		a.base64 = []byte(base64.StdEncoding.EncodeToString(a.body))
	}
	env, err := a.serverEnv()
	if err != nil {
		return err
	}
	n := a.opts.base64Uploads
	// One client sends them all: its share of the slots is the whole.
	srv, err := startServer(ctx, a.bin, append(env, "MAX_CONCURRENT_UPLOADS="+strconv.Itoa(n), "TENANT_MAX_UPLOADS="+strconv.Itoa(n)), a.env.p)
	if err != nil {
		return err
	}
	defer func() { _ = srv.stop() }()
	base := "http://" + srv.addr
	taskID, err := a.createTask(ctx, base)
	if err != nil {
		return err
	}
	start := time.Now()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			opCtx, cancel := context.WithTimeout(ctx, artifactOpTimeout)
			defer cancel()
			errs <- a.postBase64(opCtx, base, taskID, fmt.Sprintf("base64-%d.bin", i))
		}()
	}
	var failed []error
	for range n {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	if err := errors.Join(failed...); err != nil {
		return fmt.Errorf("artifacts: concurrent POST /artifacts: %w", err)
	}
	took := time.Since(start)
	peak, err := srv.status("VmHWM")
	if err != nil {
		return err
	}
	figs.base64RSS.add(peak)
	a.env.p.linef("artifacts: %d concurrent POST /artifacts of %d MiB in base64 (%d bytes of JSON each) took %s; server peak RSS (VmHWM) %s",
		n, a.opts.artifactMB, len(a.base64)+base64Overhead, took.Round(time.Millisecond), formatMB(peak))
	if err := srv.stop(); err != nil {
		return err
	}
	return a.removeObjects(ctx)
}

// base64Overhead bounds the JSON around the base64 of a POST /artifacts
// body.
const base64Overhead = 128

// postBase64 POSTs the body as the JSON form of an artifact named name,
// checking the size and sha256 the API answers.
func (a *artifactBench) postBase64(ctx context.Context, base string, taskID int64, name string) error {
	prefix := fmt.Sprintf(`{"task_id":%d,"type":"file","name":%q,"content_type":"application/octet-stream","data_base64":"`, taskID, name)
	suffix := `"}`
	body := io.MultiReader(strings.NewReader(prefix), bytes.NewReader(a.base64), strings.NewReader(suffix))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/artifacts", body)
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(prefix) + len(a.base64) + len(suffix))
	req.Header.Set("Content-Type", "application/json")
	var view struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	}
	if err := a.do(req, http.StatusCreated, &view); err != nil {
		return err
	}
	if view.Size != int64(len(a.body)) || view.SHA256 != a.sum {
		return fmt.Errorf("stored %d bytes with sha256 %s, want %d with %s", view.Size, view.SHA256, len(a.body), a.sum)
	}
	return nil
}

// serverEnv is the serve process's environment: the bench's own, with
// the bench database, the bench's MinIO (a bucket of its own), a loopback
// port of the kernel's choosing and limits that let the figure through.
func (a *artifactBench) serverEnv() ([]string, error) {
	prefix, err := benchKeyPrefix()
	if err != nil {
		return nil, err
	}
	// Later entries win over the inherited ones.
	return append(os.Environ(),
		"DATABASE_URL="+a.env.url,
		"REDIS_URL="+a.env.cfg.RedisURL,
		"REDIS_KEY_PREFIX="+prefix, // its rate-limit keys, apart from any other server's
		"MINIO_ENDPOINT="+a.endpoint,
		"MINIO_ROOT_USER="+a.user,
		"MINIO_ROOT_PASSWORD="+a.password,
		"MINIO_BUCKET="+serverBucket,
		"MINIO_SECURE=false",
		"HTTP_ADDR=127.0.0.1:0",
		"API_KEYS=", // loopback without keys
		// api_listening, which names the port, is an info line; the bench
		// shows only the WARN and ERROR ones.
		"LOG_LEVEL=info",
		"LOG_FORMAT=json",
		"TASK_MAX_ARTIFACT_MB="+strconv.Itoa(a.opts.artifactMB+1),
		"TASKS_PER_MINUTE=1000000",
		"WORKER_CONCURRENCY="+strconv.Itoa(a.opts.serverWorkers),
		"DB_MAX_CONNS="+strconv.Itoa(a.opts.serverConns),
		"SHUTDOWN_GRACE_SECONDS=10",
	), nil
}

// createTask submits the echo task the artifacts are attached to.
func (a *artifactBench) createTask(ctx context.Context, base string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/tasks", bytes.NewReader([]byte(echoBody)))
	if err != nil {
		return 0, fmt.Errorf("build POST /tasks: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	var view struct {
		ID int64 `json:"id"`
	}
	if err := a.do(req, http.StatusAccepted, &view); err != nil {
		return 0, fmt.Errorf("artifacts: POST /tasks: %w", err)
	}
	if view.ID <= 0 {
		return 0, errors.New("artifacts: POST /tasks: no task id in the response")
	}
	return view.ID, nil
}

// transferKind is one kind of transfer, done by both sides.
type transferKind struct {
	name      string
	bareLabel string
	trLabel   string
	bare, tr  func(context.Context) error
	fig       *figure
	bareTook  []time.Duration // of the counted transfers
	trTook    []time.Duration
}

// transferKinds measures every kind of transfer in turn: upload of known
// length, download, then upload of unknown length. Each kind starts with
// one transfer of each side that is not counted, then alternates the
// sides transfer by transfer (bare first in the first pair when
// bareFirst, then the other way round in the next, and so on), so both
// see the same moments of a busy machine.
func (a *artifactBench) transferKinds(ctx context.Context, figs *figures, base string, taskID int64, bareFirst bool) error {
	client := a.store.Client()
	uploadURL := base + "/tasks/" + strconv.FormatInt(taskID, 10) + "/artifacts/" + artifactName
	var id string // the artifact the downloads read: the last one uploaded with a known length
	kinds := []*transferKind{
		{
			name: "upload", bareLabel: "minio-go PutObject", trLabel: "PUT /tasks/{id}/artifacts/{name}",
			bare: a.barePut(client, int64(len(a.body)), minio.PutObjectOptions{DisableMultipart: true}),
			tr:   a.httpPut(uploadURL, false, &id),
			fig:  figs.artifactPut,
		},
		{
			name: "download", bareLabel: "minio-go GetObject", trLabel: "GET /artifacts/{id}",
			bare: func(ctx context.Context) error {
				obj, err := client.GetObject(ctx, bareBucket, artifactName, minio.GetObjectOptions{})
				if err != nil {
					return err
				}
				defer obj.Close()
				return a.drain(obj)
			},
			tr:  func(ctx context.Context) error { return a.httpGet(ctx, base+"/artifacts/"+id) },
			fig: figs.artifactGet,
		},
	}
	if a.opts.chunked {
		var chunkedID string // not downloaded
		kinds = append(kinds, &transferKind{
			name: "upload of unknown length", bareLabel: "minio-go PutObject, size -1", trLabel: "PUT, chunked",
			bare: a.barePut(client, -1, minio.PutObjectOptions{PartSize: chunkedPartSize}),
			tr:   a.httpPut(uploadURL, true, &chunkedID),
			fig:  figs.artifactChunked,
		})
	}
	for _, k := range kinds {
		if err := a.transfers(ctx, k, bareFirst); err != nil {
			return err
		}
	}
	return nil
}

// transfers runs one transfer of each side, not counted, then
// -artifact-reps pairs, alternating which side goes first, and adds each
// side's rate to the kind's figure.
func (a *artifactBench) transfers(ctx context.Context, k *transferKind, bareFirst bool) error {
	timed := func(label string, op func(context.Context) error) (time.Duration, error) {
		opCtx, cancel := context.WithTimeout(ctx, artifactOpTimeout)
		defer cancel()
		start := time.Now()
		if err := op(opCtx); err != nil {
			return 0, fmt.Errorf("artifacts: %s: %w", label, err)
		}
		return time.Since(start), nil
	}
	bare := func(count bool) error {
		d, err := timed("bare "+k.bareLabel, k.bare)
		if count {
			k.bareTook = append(k.bareTook, d)
		}
		return err
	}
	tr := func(count bool) error {
		d, err := timed("taskrunner "+k.trLabel, k.tr)
		if count {
			k.trTook = append(k.trTook, d)
		}
		return err
	}
	k.bareTook, k.trTook = nil, nil
	first, second := bare, tr
	if !bareFirst {
		first, second = tr, bare
	}
	for i := range a.opts.artifactReps + 1 {
		if err := first(i > 0); err != nil {
			return err
		}
		if err := second(i > 0); err != nil {
			return err
		}
		first, second = second, first
	}
	size := int64(len(a.body))
	bareRate, trRate := transferRate(size, k.bareTook), transferRate(size, k.trTook)
	k.fig.addBare(bareRate)
	k.fig.addTaskrunner(trRate)
	a.env.p.linef("artifacts: %s, %d × %d MiB each side: bare %s %s (each %s to %s), taskrunner %s %s (each %s to %s); ratio %s",
		k.name, len(k.trTook), a.opts.artifactMB,
		k.bareLabel, formatMBps(bareRate), slices.Min(k.bareTook).Round(time.Millisecond), slices.Max(k.bareTook).Round(time.Millisecond),
		k.trLabel, formatMBps(trRate), slices.Min(k.trTook).Round(time.Millisecond), slices.Max(k.trTook).Round(time.Millisecond),
		formatRatio(trRate/bareRate))
	return nil
}

// barePut is minio-go's PutObject of the body into the bare bucket, with
// the options the artifact service gives size. Its body hides
// bytes.Reader's Seek and ReadAt, as the service's does (a request body
// behind a hashing reader), so minio-go takes the same path for both.
func (a *artifactBench) barePut(client *minio.Client, size int64, opts minio.PutObjectOptions) func(context.Context) error {
	opts.ContentType = "application/octet-stream"
	opts.UserMetadata = map[string]string{"task-id": "0"}
	return func(ctx context.Context) error {
		info, err := client.PutObject(ctx, bareBucket, artifactName, readerOnly{bytes.NewReader(a.body)}, size, opts)
		if err != nil {
			return err
		}
		if info.Size != int64(len(a.body)) {
			return fmt.Errorf("stored %d bytes, want %d", info.Size, len(a.body))
		}
		return nil
	}
}

// httpPut is PUT url of the body, with a Content-Length or chunked,
// checking the size and sha256 the API answers and keeping the new
// artifact's id in id.
func (a *artifactBench) httpPut(url string, chunked bool, id *string) func(context.Context) error {
	return func(ctx context.Context) error {
		var body io.Reader = bytes.NewReader(a.body)
		if chunked {
			body = readerOnly{body}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, body)
		if err != nil {
			return err
		}
		if chunked {
			req.ContentLength = -1 // Transfer-Encoding: chunked
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		var view struct {
			ID     string `json:"id"`
			Size   int64  `json:"size"`
			SHA256 string `json:"sha256"`
		}
		if err := a.do(req, http.StatusCreated, &view); err != nil {
			return err
		}
		if view.Size != int64(len(a.body)) || view.SHA256 != a.sum || view.ID == "" {
			return fmt.Errorf("stored %d bytes with sha256 %s (id %q), want %d with %s", view.Size, view.SHA256, view.ID, len(a.body), a.sum)
		}
		*id = view.ID
		return nil
	}
}

// httpGet downloads url to io.Discard, checking it is the whole body.
func (a *artifactBench) httpGet(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return a.drain(resp.Body)
}

// do sends req, expects status want and decodes the JSON answer into v.
func (a *artifactBench) do(req *http.Request, want int, v any) error {
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("response %s: %w", bytes.TrimSpace(body), err)
	}
	return nil
}

// drain reads r to its end and checks it held the whole body.
func (a *artifactBench) drain(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if n != int64(len(a.body)) {
		return fmt.Errorf("read %d bytes, want %d", n, len(a.body))
	}
	return nil
}

// transferRate is bytes per second for transfers of size bytes that each
// took one of took.
func transferRate(size int64, took []time.Duration) float64 {
	var total time.Duration
	for _, d := range took {
		total += d
	}
	if total <= 0 {
		return 0
	}
	return float64(size) * float64(len(took)) / total.Seconds()
}

// removeObjects removes the round's objects: the bare side's one and
// every artifact the serve process stored (their rows are gone with the
// bench database).
func (a *artifactBench) removeObjects(ctx context.Context) error {
	client := a.store.Client()
	if err := client.RemoveObject(ctx, bareBucket, artifactName, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("artifacts: remove %s/%s: %w", bareBucket, artifactName, err)
	}
	var keys []string
	for o := range client.ListObjects(ctx, serverBucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			return fmt.Errorf("artifacts: list %s: %w", serverBucket, o.Err)
		}
		keys = append(keys, o.Key)
	}
	objects := make(chan minio.ObjectInfo, len(keys))
	for _, k := range keys {
		objects <- minio.ObjectInfo{Key: k}
	}
	close(objects)
	for e := range client.RemoveObjects(ctx, serverBucket, objects, minio.RemoveObjectsOptions{}) {
		if e.Err != nil {
			return fmt.Errorf("artifacts: remove %s/%s: %w", serverBucket, e.ObjectName, e.Err)
		}
	}
	a.env.p.linef("artifacts: the round's objects removed (%d of taskrunner's, 1 bare)", len(keys))
	return nil
}

// readerOnly hides every method of its reader but Read (Seek, ReadAt,
// Len), as a request body is.
type readerOnly struct{ r io.Reader }

func (r readerOnly) Read(p []byte) (int, error) { return r.r.Read(p) }
