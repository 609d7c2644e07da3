package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/deploy/servicetest"
	chstore "github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// within runs f and fails the test if it has not returned after bound: a
// generous bound, there to turn a hang into a failure, not to measure.
func within(t *testing.T, bound time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		t.Logf("%s ended after %s", what, time.Since(start).Round(time.Millisecond))
		return err
	case <-time.After(bound):
		t.Fatalf("%s still running after %s", what, bound)
		return nil
	}
}

// TestQueryTimeout checks that queries, statements and inserts that run
// past their configured timeout end with a *TimeoutError, on a server that
// is slow (sleep) and on one that stops answering mid-session.
func TestQueryTimeout(t *testing.T) {
	addr := chtest.Addr(t)[0]
	proxy := chtest.StartProxy(t, addr)
	cfg := chstore.DefaultConfig(proxy.Addr())
	cfg.QueryTimeout, cfg.InsertTimeout = time.Second, time.Second
	ctx := context.Background()
	conn, _, err := chstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	isTimeout := func(what string, err error) {
		t.Helper()
		var te *chstore.TimeoutError
		if !errors.As(err, &te) || te.After != time.Second || !errors.Is(err, context.DeadlineExceeded) || !chstore.Transient(err) {
			t.Fatalf("%s: %v, want a TimeoutError after 1s", what, err)
		}
	}

	// The server is slow: sleep(3) outlasts the 1 s timeout (18.16 allows 3 s at most).
	var x uint8
	isTimeout("QueryRow sleep(3)", within(t, time.Minute, "QueryRow", func() error {
		return conn.QueryRow(ctx, "SELECT sleep(3)").Scan(&x)
	}))
	isTimeout("Exec sleep(3)", within(t, time.Minute, "Exec", func() error {
		return conn.Exec(ctx, "SELECT sleep(3)")
	}))
	isTimeout("Query sleep(3)", within(t, time.Minute, "Query", func() error {
		rows, err := conn.Query(ctx, "SELECT sleep(3)")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
		}
		return rows.Err()
	}))
	// A quick query still works on the same connection.
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&x); err != nil || x != 1 {
		t.Fatalf("SELECT 1 after the timeouts: %v, %d", err, x)
	}

	// The server stops answering with connections open: reads and inserts end too.
	proxy.Stall(true)
	isTimeout("QueryRow on a stalled server", within(t, time.Minute, "QueryRow", func() error {
		return conn.QueryRow(ctx, "SELECT 1").Scan(&x)
	}))
	isTimeout("insert on a stalled server", within(t, time.Minute, "insert", func() error {
		b, err := conn.PrepareBatch(ctx, "INSERT INTO system.numbers")
		if err != nil {
			return err
		}
		return b.Send()
	}))
	proxy.Stall(false)

	// A listener that accepts and never answers: Open gives up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	hung := chstore.DefaultConfig(ln.Addr().String())
	hung.DialTimeout, hung.QueryTimeout = time.Second, time.Second
	if err := within(t, time.Minute, "Open", func() error { _, _, err := chstore.Open(ctx, hung); return err }); err == nil {
		t.Fatal("Open of a server that never answers succeeded")
	}
	if err := within(t, time.Minute, "NewHTTPWriter", func() error { _, err := chstore.NewHTTPWriter(ctx, nil, hung, ln.Addr().String()); return err }); err == nil {
		t.Fatal("NewHTTPWriter of a server that never answers succeeded")
	}
}

// TestQueryRetriedAcrossRestart stops a ClickHouse of the test's own: a
// read fails on the transient error with one attempt, and with enough
// attempts it outlasts the restart and succeeds. A query that is wrong is
// not retried.
func TestQueryRetriedAcrossRestart(t *testing.T) {
	own := servicetest.Start(t, "clickhouse")
	ctx := context.Background()
	open := func(attempts int) driver.Conn {
		cfg := chstore.DefaultConfig(own.Addr())
		cfg.QueryAttempts = attempts
		conn, _, err := chstore.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	// Waits of up to 2 s: 60 attempts last a minute and more, for a slow
	// start on a busy machine.
	once, retrying := open(1), open(60)
	count := func(conn driver.Conn) error {
		var n uint64
		err := conn.QueryRow(ctx, "SELECT count() FROM system.one").Scan(&n)
		if err == nil && n != 1 {
			err = fmt.Errorf("count %d, want 1", n)
		}
		return err
	}
	if err := count(retrying); err != nil {
		t.Fatalf("before the restart: %v", err)
	}

	own.Run("down", "clickhouse")
	if err := within(t, time.Minute, "QueryRow", func() error { return count(once) }); err == nil || !chstore.Transient(err) {
		t.Fatalf("one attempt, server down: %v, want a transient error", err)
	}
	result := make(chan error, 1)
	start := time.Now()
	go func() { result <- count(retrying) }()
	time.Sleep(300 * time.Millisecond) // the first attempts fail
	own.Run("up", "clickhouse")
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("read across the restart: %v", err)
		}
		t.Logf("the read outlasted the restart: it succeeded after %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(3 * time.Minute):
		t.Fatal("read across the restart still running after 3 minutes")
	}

	// Not transient: an unknown table fails at once, whatever the attempts.
	var n uint64
	err := retrying.QueryRow(ctx, "SELECT count() FROM no_such_table_h2").Scan(&n)
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || ex.Code != 60 || chstore.Transient(err) {
		t.Fatalf("unknown table: %v, want code 60, not transient", err)
	}
}

// TestTransient checks the classification the retry loops share.
func TestTransient(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "x"}}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused", fmt.Errorf("insert: %w", &net.OpError{Op: "read", Err: syscall.ECONNREFUSED}), true},
		{"connection reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		{"dial", refused, true},
		{"EOF", fmt.Errorf("read: %w", io.EOF), true},
		{"deadline", context.DeadlineExceeded, true},
		{"timeout error", &chstore.TimeoutError{Op: "query", After: time.Second, Err: errors.New("i/o timeout")}, true},
		{"cancelled", fmt.Errorf("stop: %w", context.Canceled), false},
		{"TIMEOUT_EXCEEDED", &clickhouse.Exception{Code: 159}, true},
		{"TOO_MANY_SIMULTANEOUS_QUERIES", &clickhouse.Exception{Code: 202}, true},
		{"SOCKET_TIMEOUT", &clickhouse.Exception{Code: 209}, true},
		{"NETWORK_ERROR", &clickhouse.Exception{Code: 210}, true},
		{"MEMORY_LIMIT_EXCEEDED", &clickhouse.Exception{Code: 241}, true},
		{"TOO_MANY_PARTS", &clickhouse.Exception{Code: 252}, true},
		{"SYNTAX_ERROR", &clickhouse.Exception{Code: 62}, false},
		{"UNKNOWN_TABLE", &clickhouse.Exception{Code: 60}, false},
		{"WRONG_PASSWORD", &clickhouse.Exception{Code: 193}, false},
		{"AUTHENTICATION_FAILED", &clickhouse.Exception{Code: 516}, false},
		{"HTTP 503", &chstore.HTTPStatusError{Status: 503}, true},
		{"HTTP 502", &chstore.HTTPStatusError{Status: 502}, true},
		{"HTTP 429", &chstore.HTTPStatusError{Status: 429}, true},
		{"HTTP 400", &chstore.HTTPStatusError{Status: 400}, false},
		{"HTTP 401", &chstore.HTTPStatusError{Status: 401}, false},
		{"HTTP 403", &chstore.HTTPStatusError{Status: 403}, false},
		{"other", errors.New("column 3: cannot convert"), false},
	} {
		if got := chstore.Transient(c.err); got != c.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
