package clickhouse

import (
	"context"
	"errors"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/pipeline/backoff"
)

// timedConn is the connection Open returns: every call gets the configured
// deadline (unless the caller's is shorter), held until the call's result
// is consumed (Rows.Close, Row.Scan, Batch.Send or Abort), and reads that
// fail on a transient error are tried again, a bounded number of times
// with jittered backoff. Exec and inserts are not retried here: a DDL
// statement that timed out may have run, and the sink retries its batches
// itself (sinks.Sink, with Transient).
type timedConn struct {
	driver.Conn
	cfg Config
}

// deadline returns ctx bounded by d (0, or a ctx marked Long: unbounded).
func deadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 || ctx.Value(longKey{}) != nil {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// ownDeadline reports whether call's deadline, the connection's own, has
// passed and was not the parent's: the driver's socket deadline is set to
// it and may fire a moment before the context's timer does.
func ownDeadline(parent, call context.Context) bool {
	dl, ok := call.Deadline()
	if !ok || time.Now().Before(dl) {
		return false
	}
	pdl, pok := parent.Deadline()
	return !pok || pdl.After(dl)
}

type longKey struct{}

// Long marks ctx for calls that may rightly run longer than the query
// timeout: a migration's backfill, a history reader streaming a range of
// devices for as long as its consumer takes. Calls under it get no
// deadline of the connection's (the caller's own still holds), only the
// driver's ReadTimeout: a server that stops answering for that long still
// ends them.
func Long(ctx context.Context) context.Context { return context.WithValue(ctx, longKey{}, true) }

// queryBackoff paces the retries of reads: short, since a reader (an API
// request) is waiting; equal jitter, so that readers that failed together
// do not come back together.
var queryBackoff = backoff.Policy{Min: 100 * time.Millisecond, Max: 2 * time.Second, Floor: 0.5}

// retry runs try until it succeeds, fails on an error that is not
// transient, runs out of its own deadline (a read that used its whole time
// would likely do so again, and the caller has waited long enough), or has
// been tried cfg.QueryAttempts times.
func (c *timedConn) retry(ctx context.Context, try func(ctx context.Context) (release func(), err error)) (func(), error) {
	attempts := max(c.cfg.QueryAttempts, 1)
	b := backoff.New(queryBackoff)
	for i := 1; ; i++ {
		actx, cancel := deadline(ctx, c.cfg.QueryTimeout)
		release, err := try(actx)
		if err == nil {
			return func() { release(); cancel() }, nil
		}
		timedOut := ownDeadline(ctx, actx)
		cancel()
		if timedOut {
			return nil, &TimeoutError{Op: "query", After: c.cfg.QueryTimeout, Err: err}
		}
		if i >= attempts || !Transient(err) || ctx.Err() != nil {
			return nil, err
		}
		if b.Wait(ctx) != nil {
			return nil, err
		}
	}
}

// TimeoutError is a call that ran out of its configured deadline
// (-clickhouse.query-timeout or -clickhouse.insert-timeout). It unwraps to
// context.DeadlineExceeded as well as to the driver's error.
type TimeoutError struct {
	Op    string
	After time.Duration
	Err   error
}

func (e *TimeoutError) Error() string {
	return "clickhouse " + e.Op + " timed out after " + e.After.String() + ": " + e.Err.Error()
}

func (e *TimeoutError) Unwrap() []error { return []error{context.DeadlineExceeded, e.Err} }

func (c *timedConn) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	var (
		rows driver.Rows
		qctx context.Context
	)
	done, err := c.retry(ctx, func(actx context.Context) (func(), error) {
		r, err := c.Conn.Query(actx, query, args...)
		if err != nil {
			return nil, err
		}
		rows, qctx = r, actx
		return func() {}, nil
	})
	if err != nil {
		return nil, err
	}
	return &timedRows{Rows: rows, ctx: ctx, qctx: qctx, done: done, timeout: c.cfg.QueryTimeout}, nil
}

func (c *timedConn) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	var (
		row  driver.Row
		qctx context.Context
	)
	done, err := c.retry(ctx, func(actx context.Context) (func(), error) {
		row, qctx = c.Conn.QueryRow(actx, query, args...), actx
		if err := row.Err(); err != nil {
			return nil, err
		}
		return func() {}, nil
	})
	if err != nil {
		return errRow{err}
	}
	return &timedRow{Row: row, ctx: ctx, qctx: qctx, done: done, timeout: c.cfg.QueryTimeout}
}

func (c *timedConn) Select(ctx context.Context, dest any, query string, args ...any) error {
	done, err := c.retry(ctx, func(ctx context.Context) (func(), error) {
		return func() {}, c.Conn.Select(ctx, dest, query, args...)
	})
	if err == nil {
		done()
	}
	return err
}

func (c *timedConn) Exec(ctx context.Context, query string, args ...any) error {
	ectx, cancel := deadline(ctx, c.cfg.QueryTimeout)
	defer cancel()
	return c.timedOut(ctx, ectx, "statement", c.cfg.QueryTimeout, c.Conn.Exec(ectx, query, args...))
}

func (c *timedConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	bctx, cancel := deadline(ctx, c.cfg.InsertTimeout)
	b, err := c.Conn.PrepareBatch(bctx, query, opts...)
	if err != nil {
		cancel()
		return nil, c.timedOut(ctx, bctx, "insert", c.cfg.InsertTimeout, err)
	}
	return &timedBatch{Batch: b, ctx: ctx, bctx: bctx, cancel: cancel, timeout: c.cfg.InsertTimeout}, nil
}

// timedOut wraps err in a *TimeoutError when the call's own deadline (not
// the caller's) ended it.
func (c *timedConn) timedOut(ctx, callCtx context.Context, op string, after time.Duration, err error) error {
	if err != nil && ownDeadline(ctx, callCtx) {
		return &TimeoutError{Op: op, After: after, Err: err}
	}
	return err
}

type timedRows struct {
	driver.Rows
	ctx, qctx context.Context // the caller's, the query's
	done      func()
	timeout   time.Duration
}

func (r *timedRows) Close() error {
	err := r.Rows.Close()
	r.done()
	return err
}

func (r *timedRows) Err() error {
	err := r.Rows.Err()
	var te *TimeoutError
	if err != nil && !errors.As(err, &te) && ownDeadline(r.ctx, r.qctx) {
		return &TimeoutError{Op: "query", After: r.timeout, Err: err}
	}
	return err
}

type timedRow struct {
	driver.Row
	ctx, qctx context.Context // the caller's, the query's
	done      func()
	timeout   time.Duration
}

func (r *timedRow) Scan(dest ...any) error {
	defer r.done()
	return r.wrap(r.Row.Scan(dest...))
}

func (r *timedRow) ScanStruct(dest any) error {
	defer r.done()
	return r.wrap(r.Row.ScanStruct(dest))
}

func (r *timedRow) wrap(err error) error {
	if err != nil && ownDeadline(r.ctx, r.qctx) {
		return &TimeoutError{Op: "query", After: r.timeout, Err: err}
	}
	return err
}

// errRow is a row whose query failed.
type errRow struct{ err error }

func (r errRow) Err() error           { return r.err }
func (r errRow) Scan(...any) error    { return r.err }
func (r errRow) ScanStruct(any) error { return r.err }

type timedBatch struct {
	driver.Batch
	ctx, bctx context.Context
	cancel    context.CancelFunc
	timeout   time.Duration
}

func (b *timedBatch) Send() error {
	defer b.cancel()
	err := b.Batch.Send()
	if err != nil && ownDeadline(b.ctx, b.bctx) {
		return &TimeoutError{Op: "insert", After: b.timeout, Err: err}
	}
	return err
}

func (b *timedBatch) Abort() error {
	defer b.cancel()
	return b.Batch.Abort()
}
