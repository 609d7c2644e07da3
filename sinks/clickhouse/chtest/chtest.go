// Package chtest gives tests a fresh database on the real ClickHouse server
// that `make services` starts (ENGAGE_CLICKHOUSE_ADDR).
package chtest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/sinks/clickhouse"
)

// Addr returns the address of the real ClickHouse server that `make
// services` started (ENGAGE_CLICKHOUSE_ADDR); see servicetest.Env.
func Addr(t testing.TB) []string {
	t.Helper()
	return servicetest.Env(t, "ENGAGE_CLICKHOUSE_ADDR", "CLICKHOUSE")
}

var seq atomic.Int64

// Database creates a fresh, migrated database for one test and drops it
// afterwards.
func Database(t testing.TB) (driver.Conn, clickhouse.Config, clickhouse.Features) {
	t.Helper()
	cfg := clickhouse.DefaultConfig(Addr(t)...)
	cfg.Database = fmt.Sprintf("test_%d_%d", time.Now().UnixNano()%1e9, seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, f, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clickhouse.Migrate(ctx, conn, cfg, f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database)
		_ = conn.Close()
	})
	return conn, cfg, f
}
