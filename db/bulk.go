package db

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner/db/dbsqlc"
)

// bulkSlotSpace is added to a slot's number to make the second key of its
// advisory lock, so that the tenant's slots share no lock with another
// use of the two-key form.
const bulkSlotSpace = 0x62756c6b // "bulk"

// BulkSlot is one of a tenant's bulk action slots, held on a connection
// of the pool until Release: a session advisory lock, which PostgreSQL
// frees by itself should the connection or the process die. Conn runs the
// action's statements.
type BulkSlot struct {
	conn      *pgxpool.Conn
	tenantKey int32
	slot      int32
	released  bool
}

// AcquireBulkSlot takes the first free one of the n bulk action slots of
// tenant, in every process sharing the database, on a connection of its
// own. It returns nil, and no error, when all n are taken.
//
// Slots are keyed by a 32-bit hash of the tenant's name: two tenants
// whose names collide share their slots, which bounds them together and
// is never unsafe. A session lock needs a session of its own: behind a
// pooler in transaction mode, pool must connect directly.
func AcquireBulkSlot(ctx context.Context, pool *pgxpool.Pool, tenant string, n int) (*BulkSlot, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire a connection for a bulk action: %w", err)
	}
	h := fnv.New32a()
	h.Write([]byte(tenant)) //nolint:errcheck // a hash.Hash never fails
	key := int32(h.Sum32())
	for slot := range int32(n) {
		ok, err := queries.BulkSlotTryLock(ctx, conn, dbsqlc.BulkSlotTryLockParams{TenantKey: key, Slot: bulkSlotSpace + slot})
		if err != nil {
			// The lock may have been taken before the answer was lost:
			// the connection goes, and the lock with it.
			conn.Conn().Close(context.WithoutCancel(ctx)) //nolint:errcheck
			conn.Release()
			return nil, fmt.Errorf("take a bulk action slot: %w", err)
		}
		if ok {
			return &BulkSlot{conn: conn, tenantKey: key, slot: bulkSlotSpace + slot}, nil
		}
	}
	conn.Release()
	return nil, nil
}

// Conn is the slot's connection, for the action's statements.
func (s *BulkSlot) Conn() *pgxpool.Conn { return s.conn }

// Release frees the slot and gives the connection back to the pool; a
// connection whose lock cannot be released is closed, which releases it.
// Once released, Release does nothing.
func (s *BulkSlot) Release() {
	if s.released {
		return
	}
	s.released = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ok, err := queries.BulkSlotUnlock(ctx, s.conn, dbsqlc.BulkSlotUnlockParams{TenantKey: s.tenantKey, Slot: s.slot}); err != nil || !ok {
		s.conn.Conn().Close(ctx) //nolint:errcheck // closing the session releases the lock
	}
	s.conn.Release()
}

// ErrStatementTimeout is returned by WithStatementTimeout when a
// statement ran longer than its timeout.
var ErrStatementTimeout = errors.New("a statement ran longer than its timeout")

// WithStatementTimeout runs fn in a transaction on conn in which every
// statement may take at most timeout (PostgreSQL's statement_timeout, set
// for the transaction only). A statement that takes longer is cancelled,
// the transaction rolled back, and the error wraps ErrStatementTimeout.
func WithStatementTimeout(ctx context.Context, conn *pgxpool.Conn, timeout time.Duration, fn func(tx pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		ms := max(timeout.Milliseconds(), 1)
		if err := queries.StatementTimeoutSetLocal(ctx, tx, strconv.FormatInt(ms, 10)+"ms"); err != nil {
			return fmt.Errorf("set statement timeout: %w", err)
		}
		return fn(tx)
	})
	var pgErr *pgconn.PgError
	// query_canceled is also what a cancelled context gives; then the
	// context's error is the cause.
	if errors.As(err, &pgErr) && pgErr.Code == "57014" && strings.Contains(pgErr.Message, "statement timeout") && ctx.Err() == nil {
		return fmt.Errorf("%w (%s): %w", ErrStatementTimeout, timeout, err)
	}
	return err
}
