package jobs

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/metrics"
)

// Defaults of the run writer.
const (
	// runGatherWindow is how long the writer waits after the first record
	// of a batch for more to arrive.
	runGatherWindow = 2 * time.Millisecond
	// runMaxBatch bounds the records written in one transaction.
	runMaxBatch = 2000
	// runMaxPending bounds records held while the database is down.
	runMaxPending = 200_000
	// runRetryBackoff is the longest wait between failed writes.
	runRetryBackoff = 2 * time.Second
)

// runWriter writes run records in batches (group commit): many workers'
// records go to PostgreSQL in one transaction, instead of a round trip and
// a commit per task. An attempt is written once, when it ends, and its
// worker waits for the write, so the record is committed before River
// marks the task finished (see db.RecordRuns). Of two records of one
// attempt waiting in the same batch (an attempt interrupted by a shutdown
// and started again), the newer is written.
type runWriter struct {
	pool    *pgxpool.Pool
	logger  *slog.Logger
	metrics *metrics.Metrics

	mu      sync.Mutex
	pending map[attemptKey]*pendingRun
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

type attemptKey struct {
	taskID  int64
	attempt int
}

type pendingRun struct {
	rec     db.RunRecord
	waiters []chan error
}

func newRunWriter(pool *pgxpool.Pool, logger *slog.Logger, m *metrics.Metrics) *runWriter {
	w := &runWriter{
		pool: pool, logger: logger, metrics: m, pending: map[attemptKey]*pendingRun{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go w.run()
	return w
}

// record queues rec; the returned channel receives the outcome of the
// write that includes it.
func (w *runWriter) record(rec db.RunRecord) <-chan error {
	errc := make(chan error, 1)
	w.mu.Lock()
	key := attemptKey{rec.TaskID, rec.Attempt}
	if p, ok := w.pending[key]; ok {
		p.rec = rec
		p.waiters = append(p.waiters, errc)
	} else {
		if len(w.pending) >= runMaxPending {
			w.mu.Unlock()
			w.metrics.RunRecordDropped()
			w.logger.Error("run records are not being written; dropping one", slog.String("event", "run_record_dropped"),
				slog.Int64("task_id", rec.TaskID), slog.Int("attempt", rec.Attempt), slog.String("reason", "backlog"))
			errc <- errRunBacklog
			return errc
		}
		w.pending[key] = &pendingRun{rec: rec, waiters: []chan error{errc}}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return errc
}

// take removes up to runMaxBatch pending records.
func (w *runWriter) take() []*pendingRun {
	w.mu.Lock()
	defer w.mu.Unlock()
	batch := make([]*pendingRun, 0, min(len(w.pending), runMaxBatch))
	for key, p := range w.pending {
		if len(batch) == runMaxBatch {
			break
		}
		batch = append(batch, p)
		delete(w.pending, key)
	}
	return batch
}

// putBack returns a failed batch's records for the next try, unless a
// newer record of the same attempt arrived meanwhile.
func (w *runWriter) putBack(batch []*pendingRun) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range batch {
		key := attemptKey{p.rec.TaskID, p.rec.Attempt}
		if _, ok := w.pending[key]; ok {
			continue
		}
		w.pending[key] = &pendingRun{rec: p.rec}
	}
}

func (w *runWriter) run() {
	defer close(w.done)
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			w.drain()
			return
		}
		time.Sleep(runGatherWindow)
		for {
			batch := w.take()
			if len(batch) == 0 {
				break
			}
			if err := w.flush(batch); err != nil {
				select {
				case <-time.After(backoff):
				case <-w.stop:
					w.drain()
					return
				}
				backoff = min(backoff*2, runRetryBackoff)
				continue
			}
			backoff = 50 * time.Millisecond
		}
	}
}

// flush writes a batch. When the database refuses it for what a record
// holds (a constraint, bytes it cannot store), and not because it is down,
// the records are written one by one and the ones it refuses are dropped,
// logged and counted: one bad record must not hold up the others, nor every
// record after it. Records that could not be written because the database
// is unavailable go back to pending (their waiters are told, and stop
// waiting), and the error is returned.
func (w *runWriter) flush(batch []*pendingRun) error {
	err := w.write(batch)
	if err == nil {
		return nil
	}
	if db.IsUnavailable(err) {
		w.logger.Error("run records not written; will retry", slog.String("event", "run_record_failed"),
			slog.Int("records", len(batch)), slog.String("error", err.Error()))
		w.tell(batch, err)
		w.putBack(batch)
		return err
	}
	for i, p := range batch {
		err := w.write(batch[i : i+1])
		switch {
		case err == nil:
		case db.IsUnavailable(err):
			w.logger.Error("run records not written; will retry", slog.String("event", "run_record_failed"),
				slog.Int("records", len(batch)-i), slog.String("error", err.Error()))
			w.tell(batch[i:], err)
			w.putBack(batch[i:])
			return err
		default:
			w.metrics.RunRecordDropped()
			w.logger.Error("the database refused a run record; dropped", slog.String("event", "run_record_dropped"),
				slog.Int64("task_id", p.rec.TaskID), slog.Int("attempt", p.rec.Attempt), slog.String("reason", "refused"),
				slog.String("error", err.Error()))
			w.tell(batch[i:i+1], errRunDropped)
		}
	}
	return nil
}

// write records a batch in one transaction and, when it is written, tells
// its waiters.
func (w *runWriter) write(batch []*pendingRun) error {
	recs := make([]db.RunRecord, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	ctx, cancel := context.WithTimeout(context.Background(), runWriteTimeout)
	err := db.RecordRuns(ctx, w.pool, recs)
	cancel()
	if err == nil {
		w.tell(batch, nil)
	}
	return err
}

// tell gives the outcome of its write to each waiter of batch.
func (w *runWriter) tell(batch []*pendingRun, err error) {
	for _, p := range batch {
		for _, c := range p.waiters {
			c <- err
		}
		p.waiters = nil
	}
}

// drain writes what is pending, trying a few times.
func (w *runWriter) drain() {
	for range 3 {
		batch := w.take()
		if len(batch) == 0 {
			return
		}
		for len(batch) > 0 {
			if err := w.flush(batch); err != nil {
				time.Sleep(100 * time.Millisecond)
				break
			}
			batch = w.take()
		}
	}
}

// close writes what is pending and stops the writer.
func (w *runWriter) close(ctx context.Context) error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
