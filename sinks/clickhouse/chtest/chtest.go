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

// HTTPAddr returns the address of the same server's HTTP interface
// (ENGAGE_CLICKHOUSE_HTTP_ADDR).
func HTTPAddr(t testing.TB) string {
	t.Helper()
	return servicetest.Env(t, "ENGAGE_CLICKHOUSE_HTTP_ADDR", "CLICKHOUSE")[0]
}

// Writers returns both tag writers into the database of cfg: the native
// protocol's and the HTTP Native-format one, by name, for tests that must
// hold for each.
func Writers(t testing.TB, conn driver.Conn, cfg clickhouse.Config) map[string]clickhouse.RowWriter {
	t.Helper()
	hw, err := clickhouse.NewHTTPWriter(context.Background(), conn, cfg, HTTPAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]clickhouse.RowWriter{"native-protocol": clickhouse.NewWriter(conn, cfg.Database), "http-native": hw}
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
