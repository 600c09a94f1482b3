package jobs

import (
	"context"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/storable"
)

// Bounds of progress reports.
const (
	// ProgressEvery is the shortest time between two stored progress
	// reports of one attempt: reports in between are dropped, so a task
	// costs at most a few writes a second however often it reports.
	ProgressEvery = 250 * time.Millisecond
	// maxProgressMessage caps a progress message, in characters.
	maxProgressMessage = 200
	// progressWriteTimeout bounds one progress write.
	progressWriteTimeout = 2 * time.Second
)

// progressState is one attempt's progress reporting.
type progressState struct {
	pool    *pgxpool.Pool
	logger  *slog.Logger
	taskID  int64
	attempt int
	seq     int64
	// last is when the last report was stored, or the attempt started:
	// nothing is stored in an attempt's first ProgressEvery.
	last time.Time
}

// Progress records a running task's progress (tasktype.ReportProgress):
// done out of total (0 when the total is not known) with a short message. The task view shows
// it, and its event stream sends it, in every process. Reports come at
// most every ProgressEvery per attempt, the first one ProgressEvery after
// the attempt started; Progress drops those that come sooner, so a
// worker may call it as often as it likes. A task that never calls it, or
// that is done within ProgressEvery (a cached search, a small fetch),
// costs no write.
func (r *recorder) Progress(ctx context.Context, done, total int64, message string) {
	if r.progress.pool == nil || ctx.Err() != nil {
		return
	}
	p := &r.progress
	r.mu.Lock()
	now := time.Now()
	if !p.last.IsZero() && now.Sub(p.last) < ProgressEvery {
		r.mu.Unlock()
		return
	}
	p.last = now
	p.seq++
	report := taskrunner.Progress{Done: done, Total: total, Message: progressMessage(message),
		Attempt: p.attempt, Seq: p.seq, UpdatedAt: now.UTC()}
	r.mu.Unlock()

	wctx, cancel := context.WithTimeout(ctx, progressWriteTimeout)
	defer cancel()
	if err := db.SetProgress(wctx, p.pool, p.taskID, report); err != nil && ctx.Err() == nil {
		// Progress is a courtesy: the task goes on without it.
		p.logger.LogAttrs(ctx, slog.LevelWarn, "progress not stored", slog.String("event", "progress_write_failed"),
			slog.Int64("task_id", p.taskID), slog.String("error", err.Error()))
	}
}

// progressMessage is message made storable and cut to maxProgressMessage
// characters.
func progressMessage(message string) string {
	message = storable.Text(message)
	if utf8.RuneCountInString(message) <= maxProgressMessage {
		return message
	}
	return string([]rune(message)[:maxProgressMessage])
}
