package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/db"
	"github.com/taskrunner/taskrunner/internal/testenv"
	"github.com/taskrunner/taskrunner/jobs"
)

// coalesceBundle is a coalescer of one insert in flight over a fresh
// database whose first insert of a single task waits for release, so the
// submissions after it wait together; it counts the inserts of many and
// of one.
type coalesceBundle struct {
	c       *coalescer
	svc     *Service
	pool    *pgxpool.Pool
	release chan struct{}
	mu      sync.Mutex
	many    []int // tasks of each insert of many
	ones    int
}

func newCoalesceBundle(t *testing.T, pool *pgxpool.Pool) *coalesceBundle {
	t.Helper()
	types := builtin.Registry(builtin.Config{})
	client, err := jobs.NewClient(jobs.ClientConfig{Pool: pool, Types: types, Queues: []string{"default"}})
	require.NoError(t, err)
	svc, err := NewService(ServiceConfig{Pool: pool, Client: client, Types: types, CoalesceInserts: -1})
	require.NoError(t, err)
	b := &coalesceBundle{c: newCoalescer(client, pool, 1), svc: svc, pool: pool, release: make(chan struct{})}
	insertMany, insertOne := b.c.insertMany, b.c.insertOne
	first := true
	b.c.insertMany = func(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
		b.mu.Lock()
		b.many = append(b.many, len(params))
		b.mu.Unlock()
		return insertMany(ctx, params)
	}
	b.c.insertOne = func(ctx context.Context, p river.InsertManyParams) (*rivertype.JobInsertResult, error) {
		b.mu.Lock()
		b.ones++
		wait := first
		first = false
		b.mu.Unlock()
		if wait {
			<-b.release
		}
		return insertOne(ctx, p)
	}
	return b
}

// params are an echo task's insert parameters.
func (b *coalesceBundle) params(t *testing.T, msg string) river.InsertManyParams {
	t.Helper()
	p, err := b.svc.Validate(&Request{Type: "echo", Params: json.RawMessage(`{"msg":` + strconv.Quote(msg) + `}`)})
	require.NoError(t, err)
	return p.p
}

// waiting waits until n submissions wait behind the held first insert.
func (b *coalesceBundle) waiting(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		b.c.mu.Lock()
		defer b.c.mu.Unlock()
		return len(b.c.pending) == n
	}, 10*time.Second, time.Millisecond)
}

func (b *coalesceBundle) jobs(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM river_job").Scan(&n))
	return n
}

type insertOutcome struct {
	msg string
	res *rivertype.JobInsertResult
	err error
}

// submitAll inserts each of ps from a goroutine of its own, the first
// alone (it is held), the rest once it is in flight.
func (b *coalesceBundle) submitAll(t *testing.T, ctxs []context.Context, ps []river.InsertManyParams, msgs []string) chan insertOutcome {
	t.Helper()
	out := make(chan insertOutcome, len(ps))
	for i := range ps {
		go func() {
			res, err := b.c.insert(ctxs[i], []river.InsertManyParams{ps[i]})
			var one *rivertype.JobInsertResult
			if err == nil && len(res) != 1 {
				err = fmt.Errorf("%d results for one task", len(res))
			} else if err == nil {
				one = res[0]
			}
			out <- insertOutcome{msgs[i], one, err}
		}()
		if i == 0 {
			require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.ones == 1 }, 10*time.Second, time.Millisecond)
		}
	}
	b.waiting(t, len(ps)-1)
	return out
}

// Submissions that arrive while an insert is in flight are inserted
// together, in one insert, and each gets its own task back.
func TestCoalescerInsertsWaitingTogether(t *testing.T) {
	t.Parallel()
	b := newCoalesceBundle(t, testenv.NewDB(t).Pool)
	var ps []river.InsertManyParams
	var msgs []string
	var ctxs []context.Context
	for i := range 20 {
		msgs = append(msgs, "m"+strconv.Itoa(i))
		ps = append(ps, b.params(t, msgs[i]))
		ctxs = append(ctxs, context.Background())
	}
	out := b.submitAll(t, ctxs, ps, msgs)
	close(b.release)
	ids := map[int64]bool{}
	for range ps {
		o := <-out
		require.NoError(t, o.err)
		require.JSONEq(t, `{"msg":`+strconv.Quote(o.msg)+`}`, string(o.res.Job.EncodedArgs), "a submission got another's task")
		ids[o.res.Job.ID] = true
	}
	require.Len(t, ids, 20)
	require.Equal(t, []int{19}, b.many, "the 19 that waited went in one insert")
	require.Equal(t, 1, b.ones)
	require.Equal(t, 20, b.jobs(t))
}

// A task the database refuses fails its own submission only: the others
// of its insert are inserted again one by one.
func TestCoalescerFailsOnlyTheRefusedTask(t *testing.T) {
	t.Parallel()
	b := newCoalesceBundle(t, testenv.NewDB(t).Pool)
	msgs := []string{"first", "a", "refused", "b"}
	var ps []river.InsertManyParams
	for _, m := range msgs {
		ps = append(ps, b.params(t, m))
	}
	bad := *ps[2].InsertOpts
	bad.Queue = "no such queue!" // River refuses the name as it inserts
	ps[2].InsertOpts = &bad
	out := b.submitAll(t, []context.Context{context.Background(), context.Background(), context.Background(), context.Background()}, ps, msgs)
	close(b.release)
	for range ps {
		o := <-out
		if o.msg == "refused" {
			require.ErrorContains(t, o.err, "queue")
			require.False(t, db.IsUnavailable(o.err))
			continue
		}
		require.NoError(t, o.err, o.msg)
		require.JSONEq(t, `{"msg":`+strconv.Quote(o.msg)+`}`, string(o.res.Job.EncodedArgs))
	}
	require.Equal(t, []int{3}, b.many)
	require.Equal(t, 1+3, b.ones, "the held one, then the three of the failed insert alone")
	require.Equal(t, 3, b.jobs(t))
}

// A submission whose context ends while it waits leaves without its task,
// and no insert takes it afterwards.
func TestCoalescerLeavesOnCancel(t *testing.T) {
	t.Parallel()
	b := newCoalesceBundle(t, testenv.NewDB(t).Pool)
	ctx, cancel := context.WithCancel(context.Background())
	out := b.submitAll(t, []context.Context{context.Background(), ctx, context.Background()},
		[]river.InsertManyParams{b.params(t, "first"), b.params(t, "gone"), b.params(t, "kept")}, []string{"first", "gone", "kept"})
	cancel()
	b.waiting(t, 1)
	close(b.release)
	for range 3 {
		o := <-out
		if o.msg == "gone" {
			require.ErrorIs(t, o.err, context.Canceled)
			continue
		}
		require.NoError(t, o.err)
	}
	require.Equal(t, 2, b.jobs(t))
	var gone int
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE args->>'msg' = 'gone'`).Scan(&gone))
	require.Zero(t, gone)
}

// When the database is unavailable, every submission of the insert gets
// that error at once, and none is tried again alone.
func TestCoalescerUnavailable(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), testenv.NewDB(t).URL)
	require.NoError(t, err)
	b := newCoalesceBundle(t, pool)
	p := b.params(t, "x")
	pool.Close()
	batch := []*coalesced{{params: []river.InsertManyParams{p}, done: make(chan struct{})}, {params: []river.InsertManyParams{p, p}, done: make(chan struct{})}}
	b.c.insertBatch(batch)
	for _, w := range batch {
		<-w.done
		require.True(t, db.IsUnavailable(w.err), "%v", w.err)
	}
	require.Equal(t, []int{3}, b.many)
	require.Zero(t, b.ones)
}

// Batches wait and go in with single tasks like any submission; a batch
// with a task the database refuses fails whole, alone, and the others of
// its insert are inserted.
func TestCoalescerKeepsBatchesWhole(t *testing.T) {
	t.Parallel()
	b := newCoalesceBundle(t, testenv.NewDB(t).Pool)
	batch := func(prefix string, n int) []river.InsertManyParams {
		var ps []river.InsertManyParams
		for i := range n {
			ps = append(ps, b.params(t, prefix+strconv.Itoa(i)))
		}
		return ps
	}
	refused := batch("refused", 3)
	bad := *refused[1].InsertOpts
	bad.Queue = "no such queue!"
	refused[1].InsertOpts = &bad
	subs := [][]river.InsertManyParams{batch("first", 1), batch("good", 4), refused, batch("single", 1)}
	type outcome struct {
		i   int
		res []*rivertype.JobInsertResult
		err error
	}
	out := make(chan outcome, len(subs))
	for i, ps := range subs {
		go func() {
			res, err := b.c.insert(context.Background(), ps)
			out <- outcome{i, res, err}
		}()
		if i == 0 {
			require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.ones == 1 }, 10*time.Second, time.Millisecond)
		}
	}
	b.waiting(t, 3)
	close(b.release)
	for range subs {
		o := <-out
		if o.i == 2 {
			require.ErrorContains(t, o.err, "queue")
			continue
		}
		require.NoError(t, o.err)
		require.Len(t, o.res, len(subs[o.i]))
		for j, r := range o.res {
			want, err := json.Marshal(subs[o.i][j].Args)
			require.NoError(t, err)
			require.Equal(t, msgOf(t, want), msgOf(t, r.Job.EncodedArgs), "a task of another submission, or out of order")
		}
	}
	require.Len(t, b.many, 3)
	require.Equal(t, 8, b.many[0], "all three together")
	require.ElementsMatch(t, []int{4, 3}, b.many[1:], "then the two batches alone, in the order they arrived")
	require.Equal(t, 2, b.ones, "the held one, then the single alone")
	require.Equal(t, 1+4+1, b.jobs(t), "none of the refused batch")
}

func msgOf(t *testing.T, args []byte) string {
	t.Helper()
	var v struct{ Msg string }
	require.NoError(t, json.Unmarshal(args, &v))
	return v.Msg
}

// A panic in an insert fails the submissions of that insert, and the
// coalescer goes on inserting.
func TestCoalescerSurvivesAPanic(t *testing.T) {
	t.Parallel()
	b := newCoalesceBundle(t, testenv.NewDB(t).Pool)
	close(b.release)
	insertOne := b.c.insertOne
	var panicked atomic.Bool
	b.c.insertOne = func(ctx context.Context, p river.InsertManyParams) (*rivertype.JobInsertResult, error) {
		if panicked.CompareAndSwap(false, true) {
			panic("boom")
		}
		return insertOne(ctx, p)
	}
	_, err := b.c.insert(context.Background(), []river.InsertManyParams{b.params(t, "a")})
	require.ErrorContains(t, err, "panicked: boom")
	res, err := b.c.insert(context.Background(), []river.InsertManyParams{b.params(t, "b")})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, 1, b.jobs(t))
}

// A panic partway through an insert's submissions fails only those not yet
// told: one already inserted keeps its task.
func TestCoalescerPanicSparesTheToldSubmissions(t *testing.T) {
	t.Parallel()
	b := newCoalesceBundle(t, testenv.NewDB(t).Pool)
	close(b.release)
	// The shared insert is refused, so each submission goes in alone; the
	// second of those panics.
	b.c.insertMany = func(context.Context, []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
		return nil, errors.New("refused")
	}
	insertOne := b.c.insertOne
	var calls atomic.Int32
	b.c.insertOne = func(ctx context.Context, p river.InsertManyParams) (*rivertype.JobInsertResult, error) {
		if calls.Add(1) == 2 {
			panic("boom")
		}
		return insertOne(ctx, p)
	}
	batch := []*coalesced{
		{params: []river.InsertManyParams{b.params(t, "a")}, done: make(chan struct{})},
		{params: []river.InsertManyParams{b.params(t, "b")}, done: make(chan struct{})},
		{params: []river.InsertManyParams{b.params(t, "c")}, done: make(chan struct{})},
	}
	b.c.insertBatch(batch)
	for _, w := range batch {
		<-w.done
	}
	require.NoError(t, batch[0].err)
	require.Len(t, batch[0].res, 1)
	require.JSONEq(t, `{"msg":"a"}`, string(batch[0].res[0].Job.EncodedArgs))
	for _, w := range batch[1:] {
		require.ErrorContains(t, w.err, "panicked: boom")
	}
	require.Equal(t, 1, b.jobs(t))
}
