package schedule

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/jobs"
)

// DefaultResync is how often a Syncer reads every schedule again, besides
// when told of a change: a hedge against a notification lost with its
// connection.
const DefaultResync = 30 * time.Second

// Grace is how late a tick may fire and still count as on time: the ticks
// that passed while the River leader changed fire, all of them, when at
// most this late (a change takes a second or two after a resignation, and
// River's elect interval, 5 s, when none was heard), and a tick of a
// schedule whose missed policy is skip fires when at most this late, and
// is dropped after.
const Grace = 10 * time.Second

// enqueuerMargin is how early River's periodic job enqueuer fires a due
// job (maintenance.PeriodicJobEnqueuer's nowWithMargin).
const enqueuerMargin = 100 * time.Millisecond

// Syncer keeps a River client's periodic jobs in step with the schedules
// table: one periodic job per active schedule, with the ID
// "schedule:<owner>/<name>". Run it in every process whose River client
// works: River fires periodic jobs in its elected leader only, and any of
// them may be elected.
type Syncer struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	logger *slog.Logger
	resync time.Duration
	// tenants are those whose own tick queue the working clients serve.
	tenants map[string]bool

	mu   sync.Mutex
	jobs map[string]string // periodic job ID -> what it was made from
}

// NewSyncer returns a Syncer for client's periodic jobs, reading pool
// every resync (DefaultResync when 0) and when the schedules change. The
// ticks of tenants go to each one's own tick queue
// (jobs.ScheduleTickQueueFor), which every working client serves for the
// tenants it knows (the names of API_KEYS, as jobs.ClientConfig.Tenants);
// the ticks of any other owner go to the internal queue.
func NewSyncer(pool *pgxpool.Pool, client *river.Client[pgx.Tx], tenants []string, resync time.Duration, logger *slog.Logger) *Syncer {
	known := make(map[string]bool, len(tenants))
	for _, t := range tenants {
		known[t] = true
	}
	return &Syncer{pool: pool, client: client, tenants: known, resync: cmp.Or(resync, DefaultResync),
		logger: cmp.Or(logger, slog.New(slog.DiscardHandler)), jobs: map[string]string{}}
}

// Run syncs until ctx is done: when told a schedule changed, and every
// resync interval. It returns once its listener has stopped.
func (s *Syncer) Run(ctx context.Context) {
	changed := make(chan struct{}, 1)
	var listener sync.WaitGroup
	defer listener.Wait()
	listener.Go(func() {
		db.ListenSchedules(ctx, s.pool, s.logger, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	})
	ticker := time.NewTicker(s.resync)
	defer ticker.Stop()
	for {
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("schedules not synced; retrying", slog.String("event", "schedule_sync_failed"), slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-ticker.C:
		}
	}
}

// Sync reads every active schedule and adds, replaces or removes the
// client's periodic jobs to match.
func (s *Syncer) Sync(ctx context.Context) error {
	active, err := db.ActiveScheduleTimings(ctx, s.pool)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[string]*taskrunner.Schedule, len(active))
	for i := range active {
		want[periodicID(&active[i])] = &active[i]
	}
	periodic := s.client.PeriodicJobs()
	for id, made := range s.jobs {
		if sch, ok := want[id]; !ok || fingerprint(sch) != made {
			periodic.RemoveByID(id)
			delete(s.jobs, id)
		}
	}
	added := 0
	for id, sch := range want {
		if _, ok := s.jobs[id]; ok {
			continue
		}
		timing, err := TimingOf(sch)
		if err != nil {
			s.logger.Warn("schedule cannot tick", slog.String("event", "schedule_invalid"),
				slog.String("tenant", sch.Owner), slog.String("schedule", sch.Name), slog.String("error", err.Error()))
			continue
		}
		p := &periodicSchedule{timing: timing, owner: sch.Owner, name: sch.Name, missed: sch.Missed, queue: jobs.InternalQueue}
		if s.tenants[sch.Owner] {
			p.queue = jobs.ScheduleTickQueueFor(sch.Owner)
		}
		if _, err := periodic.AddSafely(river.NewPeriodicJob(p, p.construct, &river.PeriodicJobOpts{ID: id, RunOnStart: true})); err != nil {
			return fmt.Errorf("schedule %s/%s: %w", sch.Owner, sch.Name, err)
		}
		s.jobs[id] = fingerprint(sch)
		added++
	}
	s.logger.Debug("schedules synced", slog.String("event", "schedules_synced"), slog.Int("active", len(s.jobs)), slog.Int("added", added))
	return nil
}

func periodicID(s *taskrunner.Schedule) string { return "schedule:" + s.Owner + "/" + s.Name }

// fingerprint is what a periodic job is made from: a schedule deleted and
// created again, or resumed, gets a new one.
func fingerprint(s *taskrunner.Schedule) string {
	return fmt.Sprintf("%s|%d|%s|%s|%d", s.Cron, s.Every, s.TimeZone, s.Missed, s.ActiveSince.UnixNano())
}

// periodicSchedule is one schedule as a River periodic job: its
// PeriodicSchedule and its constructor. River's enqueuer calls both from
// its one goroutine; the mutex is for the race detector's peace.
type periodicSchedule struct {
	timing Timing
	owner  string
	name   string
	missed string
	queue  string // of its ticks

	mu sync.Mutex
	// due is the tick Next returned last: the one the enqueuer fires next.
	due time.Time
	// restarted says Next was last called with the time of a start (a
	// leader starting its enqueuer, or the job just added), not with a
	// tick of its own: the next construct is RunOnStart's.
	restarted bool
}

// Next is the first tick after t (after now, when t has passed: ticks
// missed are construct's business).
func (p *periodicSchedule) Next(t time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.restarted = !t.Equal(p.due)
	next := p.timing.Next(maxTime(t, time.Now()))
	if next.IsZero() {
		next = river.NeverSchedule().Next(t)
	}
	p.due = next
	return next
}

// construct is the tick job of the tick due: never blocking, it reads
// nothing but the clock. On a start it is the latest tick at or before
// now, which the leader before may have fired already (the tick job then
// finds it claimed) or which was missed; a tick more than Grace late is
// the latest due too, so a backlog fires once. Under the skip policy a
// tick more than Grace late is dropped.
func (p *periodicSchedule) construct() (river.JobArgs, *river.InsertOpts) {
	now := time.Now()
	p.mu.Lock()
	tick, restarted := p.due, p.restarted
	p.restarted = false
	p.mu.Unlock()
	if restarted || now.Sub(tick) > Grace || tick.After(now.Add(enqueuerMargin)) {
		tick = p.timing.Prev(now)
	}
	if tick.IsZero() || (p.missed == taskrunner.MissedSkip && now.Sub(tick) > Grace) {
		return nil, nil
	}
	return jobs.ScheduleTickArgs{Owner: p.owner, Name: p.name, Tick: tick.UTC()}, &river.InsertOpts{Queue: p.queue}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
