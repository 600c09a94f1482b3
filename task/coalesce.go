package task

import (
	"context"
	"fmt"
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

// coalescer inserts the tasks of concurrent single submissions together:
// a request that arrives while inserts are in flight waits for the next
// one, which takes every task waiting then (group commit). Each insert is
// one transaction, so every task in it is committed before any of its
// requests is answered, as with an insert of its own. An idle server
// inserts a lone task at once: nothing waits for company. When an insert
// of several fails for what one task holds, each is inserted again alone,
// so a request gets its own task's error and no other's.
type coalescer struct {
	insertMany func(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	insertOne  func(ctx context.Context, p river.InsertManyParams) (*rivertype.JobInsertResult, error)
	maxActive  int

	mu      sync.Mutex
	pending []*coalesced
	active  int // inserts in flight
}

// coalesced is one request's task, waiting to be inserted.
type coalesced struct {
	params river.InsertManyParams
	taken  bool // by an insert (under coalescer.mu)
	done   chan struct{}
	res    *rivertype.JobInsertResult
	err    error
}

// newCoalescer returns a coalescer inserting with client on pool, with up
// to maxActive inserts in flight.
func newCoalescer(client *river.Client[pgx.Tx], pool *pgxpool.Pool, maxActive int) *coalescer {
	return &coalescer{
		insertMany: func(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
			var results []*rivertype.JobInsertResult
			err := db.WithTx(ctx, pool, func(tx pgx.Tx) error {
				var err error
				results, err = client.InsertManyTx(ctx, tx, params)
				return err
			})
			return results, err
		},
		insertOne: func(ctx context.Context, p river.InsertManyParams) (*rivertype.JobInsertResult, error) {
			return client.Insert(ctx, p.Args, p.InsertOpts)
		},
		maxActive: maxActive,
	}
}

// insert inserts p, alone or with other requests' tasks, and returns its
// result. A request whose ctx ends while its task waits leaves without it;
// once an insert has taken the task, it waits for that insert's outcome.
func (c *coalescer) insert(ctx context.Context, p river.InsertManyParams) (*rivertype.JobInsertResult, error) {
	w := &coalesced{params: p, done: make(chan struct{})}
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

// takeLocked removes up to coalesceMaxBatch waiting tasks, oldest first.
func (c *coalescer) takeLocked() []*coalesced {
	n := min(len(c.pending), coalesceMaxBatch)
	batch := make([]*coalesced, n)
	copy(batch, c.pending)
	for _, w := range batch {
		w.taken = true
	}
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

// insertBatch inserts batch's tasks in one transaction and tells each
// waiter; on a failure that is not the database being unavailable, it
// inserts each task alone.
func (c *coalescer) insertBatch(batch []*coalesced) {
	ctx, cancel := context.WithTimeout(context.Background(), coalesceTimeout)
	defer cancel()
	if len(batch) == 1 {
		w := batch[0]
		w.res, w.err = c.insertOne(ctx, w.params)
		close(w.done)
		return
	}
	params := make([]river.InsertManyParams, len(batch))
	for i, w := range batch {
		params[i] = w.params
	}
	results, err := c.insertMany(ctx, params)
	if err == nil && len(results) != len(batch) {
		err = fmt.Errorf("insert of %d tasks returned %d results", len(batch), len(results))
	}
	for i, w := range batch {
		switch {
		case err == nil:
			w.res = results[i]
		case db.IsUnavailable(err):
			w.err = err
		default:
			w.res, w.err = c.insertOne(ctx, w.params)
		}
		close(w.done)
	}
}
