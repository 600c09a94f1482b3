package db

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner"
)

// taskStateChannel is where the taskrunner_task_state trigger announces
// state changes (migration 00003).
const taskStateChannel = "taskrunner_task_state"

// ErrTooManyWatchers is returned when a process already holds its maximum
// of waiting requests.
var ErrTooManyWatchers = taskrunner.Errorf(taskrunner.CodeTooManyWaiters, "too many requests are waiting on tasks; retry shortly or poll")

// TaskWatcher wakes requests waiting on a task (long polls, event streams)
// when its state changes, whichever process changed it: it LISTENs on one
// dedicated connection for the trigger's notifications.
type TaskWatcher struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	max    int

	mu    sync.Mutex
	subs  map[int64]map[*Watch]struct{}
	count int
}

// NewTaskWatcher returns a watcher allowing at most max waiters at once.
// Run must be running for it to wake anyone.
func NewTaskWatcher(pool *pgxpool.Pool, max int, logger *slog.Logger) *TaskWatcher {
	return &TaskWatcher{pool: pool, logger: logger, max: max, subs: map[int64]map[*Watch]struct{}{}}
}

// Watch is one waiter's subscription to a task. C receives a value when the
// task's state may have changed; read the task again then.
type Watch struct {
	C  <-chan struct{}
	c  chan struct{}
	id int64
	w  *TaskWatcher
}

// Watch subscribes to task id's changes. Close the Watch when done.
func (w *TaskWatcher) Watch(id int64) (*Watch, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.count >= w.max {
		return nil, ErrTooManyWatchers
	}
	c := make(chan struct{}, 1)
	s := &Watch{C: c, c: c, id: id, w: w}
	if w.subs[id] == nil {
		w.subs[id] = map[*Watch]struct{}{}
	}
	w.subs[id][s] = struct{}{}
	w.count++
	return s, nil
}

// Subscribe is Watch for callers that know nothing of this package: wake
// receives when the task may have changed, and stop ends the
// subscription.
func (w *TaskWatcher) Subscribe(id int64) (wake <-chan struct{}, stop func(), err error) {
	s, err := w.Watch(id)
	if err != nil {
		return nil, nil, err
	}
	return s.C, s.Close, nil
}

// Close ends the subscription.
func (s *Watch) Close() {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.subs[s.id][s]; !ok {
		return
	}
	delete(w.subs[s.id], s)
	if len(w.subs[s.id]) == 0 {
		delete(w.subs, s.id)
	}
	w.count--
}

// Waiting is how many waiters there are now.
func (w *TaskWatcher) Waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default: // already woken; one read covers both
	}
}

func (w *TaskWatcher) wakeTask(id int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := range w.subs[id] {
		wake(s.c)
	}
}

func (w *TaskWatcher) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, subs := range w.subs {
		for s := range subs {
			wake(s.c)
		}
	}
}

// Run listens until ctx is done, reconnecting after a lost connection.
// After every (re)connect all waiters are woken to read their task again,
// since changes may have passed unannounced meanwhile.
func (w *TaskWatcher) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := w.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		w.logger.Warn("task watcher lost its connection; reconnecting", slog.String("event", "task_watcher_reconnect"),
			slog.String("error", errString(err)), slog.Duration("backoff", backoff))
		w.wakeAll()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (w *TaskWatcher) listen(ctx context.Context) error {
	return listen(ctx, w.pool, taskStateChannel, w.wakeAll, func(payload string) {
		for item := range strings.SplitSeq(payload, ",") {
			idText, _, _ := strings.Cut(item, ":")
			if id, err := strconv.ParseInt(idText, 10, 64); err == nil {
				w.wakeTask(id)
			}
		}
	})
}

// listen LISTENs on channel on a connection of its own until ctx is done
// or the connection fails: listening is called once it listens, notified
// with each notification's payload.
func listen(ctx context.Context, pool *pgxpool.Pool, channel string, listening func(), notified func(payload string)) error {
	pooled, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A LISTENing session is not given back to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx)) //nolint:errcheck
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	listening()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		notified(n.Payload)
	}
}

// ListenSchedules calls changed whenever the schedules may have changed,
// whichever process changed them, until ctx is done: once it listens
// (changes may have passed before), on each change, and after each
// reconnection.
func ListenSchedules(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, changed func()) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := listen(ctx, pool, schedulesChannel, changed, func(string) { changed() })
		if ctx.Err() != nil {
			return
		}
		logger.Warn("schedule listener lost its connection; reconnecting", slog.String("event", "schedule_listener_reconnect"),
			slog.String("error", errString(err)), slog.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
