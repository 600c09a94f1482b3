package task

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskrunner/taskrunner/db"
)

// Defaults of the insert coalescer.
const (
	// DefaultCoalesceInserts is how many coalesced inserts may be in
	// flight at once.
	DefaultCoalesceInserts = 2
	// coalesceMaxBatch bounds the tasks of one coalesced insert.
	coalesceMaxBatch = 500
	// coalesceTimeout bounds one coalesced insert: it runs for many
	// requests, so under no one request's context.
	coalesceTimeout = 30 * time.Second
)

// coalescer inserts the tasks of concurrent submissions together: a
// submission (one task, or a batch) that arrives while inserts are in
// flight waits for the next one, which takes every submission waiting then
// (group commit). Each insert is one transaction, so every task in it is
// committed before any of its submissions is answered, as with an insert
// of its own. An idle server inserts a lone submission at once: nothing
// waits for company. When an insert of several submissions fails for what
// one task holds, each submission is inserted again on its own, so a
// submission gets its own error and no other's, and a batch is still
// inserted whole or not at all.
type coalescer struct {
	insertMany func(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	insertOne  func(ctx context.Context, p river.InsertManyParams) (*rivertype.JobInsertResult, error)
	maxActive  int

	mu      sync.Mutex
	pending []*coalesced
	active  int // inserts in flight
}

// coalesced is one submission's tasks, waiting to be inserted.
type coalesced struct {
	params []river.InsertManyParams
	taken  bool // by an insert (under coalescer.mu)
	done   chan struct{}
	res    []*rivertype.JobInsertResult
	err    error
}

// tell gives the submission its outcome.
func (w *coalesced) tell() { close(w.done) }

// told reports whether the submission has its outcome. Only the goroutine
// running its insert tells it, so that goroutine may ask.
func (w *coalesced) told() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// newCoalescer returns a coalescer inserting with client on pool, with up
// to maxActive inserts in flight.
func newCoalescer(client *river.Client[pgx.Tx], pool *pgxpool.Pool, maxActive int) *coalescer {
	return &coalescer{
		insertMany: func(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
			return insertManyInTx(ctx, client, pool, params)
		},
		insertOne: func(ctx context.Context, p river.InsertManyParams) (*rivertype.JobInsertResult, error) {
			return client.Insert(ctx, p.Args, p.InsertOpts)
		},
		maxActive: maxActive,
	}
}

// insert inserts params, alone or with other submissions' tasks, in one
// transaction, and returns their results in order. A submission whose ctx
// ends while it waits leaves without its tasks; once an insert has taken
// them, it waits for that insert's outcome.
func (c *coalescer) insert(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	w := &coalesced{params: params, done: make(chan struct{})}
	c.mu.Lock()
	c.pending = append(c.pending, w)
	if c.active < c.maxActive {
		c.active++
		batch := c.takeLocked()
		c.mu.Unlock()
		go c.run(batch)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-w.done:
		return w.res, w.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if !w.taken {
		for i, o := range c.pending {
			if o == w {
				c.pending = append(c.pending[:i], c.pending[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		return nil, ctx.Err()
	}
	c.mu.Unlock()
	<-w.done // bounded by coalesceTimeout
	return w.res, w.err
}

// takeLocked removes the oldest waiting submissions, at least one, while
// their tasks stay within coalesceMaxBatch.
func (c *coalescer) takeLocked() []*coalesced {
	n, tasks := 0, 0
	for n < len(c.pending) && (n == 0 || tasks+len(c.pending[n].params) <= coalesceMaxBatch) {
		tasks += len(c.pending[n].params)
		c.pending[n].taken = true
		n++
	}
	batch := slices.Clone(c.pending[:n])
	rest := copy(c.pending, c.pending[n:])
	clear(c.pending[rest:])
	c.pending = c.pending[:rest]
	return batch
}

// run inserts batch, then whatever waits by then, until nothing does.
func (c *coalescer) run(batch []*coalesced) {
	for {
		c.insertBatch(batch)
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.active--
			c.mu.Unlock()
			return
		}
		batch = c.takeLocked()
		c.mu.Unlock()
	}
}

// insertBatch inserts batch's submissions in one transaction and tells
// each; on a failure that is not the database being unavailable, it
// inserts each submission on its own.
func (c *coalescer) insertBatch(batch []*coalesced) {
	ctx, cancel := context.WithTimeout(context.Background(), coalesceTimeout)
	defer cancel()
	defer func() {
		// A panic in an insert fails the submissions not yet told, as a
		// handler's panic fails its request, instead of the process.
		if v := recover(); v != nil {
			for _, w := range batch {
				if !w.told() {
					w.res, w.err = nil, fmt.Errorf("insert of %d submissions panicked: %v", len(batch), v)
					w.tell()
				}
			}
		}
	}()
	if len(batch) == 1 {
		c.insertAlone(ctx, batch[0])
		return
	}
	var params []river.InsertManyParams
	for _, w := range batch {
		params = append(params, w.params...)
	}
	results, err := c.insertMany(ctx, params)
	for _, w := range batch {
		switch {
		case err == nil:
			w.res, results = results[:len(w.params):len(w.params)], results[len(w.params):]
			w.tell()
		case db.IsUnavailable(err):
			w.err = err
			w.tell()
		default:
			c.insertAlone(ctx, w)
		}
	}
}

// insertAlone inserts one submission's tasks in a transaction of their
// own and tells it.
func (c *coalescer) insertAlone(ctx context.Context, w *coalesced) {
	if len(w.params) == 1 {
		var res *rivertype.JobInsertResult
		if res, w.err = c.insertOne(ctx, w.params[0]); w.err == nil {
			w.res = []*rivertype.JobInsertResult{res}
		}
	} else {
		w.res, w.err = c.insertMany(ctx, w.params)
	}
	w.tell()
}

// insertManyInTx inserts params with client in one transaction on pool,
// and returns a result per task, in order.
func insertManyInTx(ctx context.Context, client *river.Client[pgx.Tx], pool *pgxpool.Pool, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	var results []*rivertype.JobInsertResult
	err := db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		var err error
		results, err = client.InsertManyTx(ctx, tx, params)
		return err
	})
	if err == nil && len(results) != len(params) {
		err = fmt.Errorf("insert of %d tasks returned %d results", len(params), len(results))
	}
	return results, err
}
