package clickhouse_test

import (
	"context"
	"testing"

	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

func TestMigrateIsIdempotent(t *testing.T) {
	conn, cfg, f := chtest.Database(t)
	ctx := context.Background()
	t.Logf("server: %s", f)
	v, err := clickhouse.SchemaVersion(ctx, conn, cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	if want := clickhouse.Migrations[len(clickhouse.Migrations)-1].Version; v != want {
		t.Fatalf("schema version %d, want %d", v, want)
	}
	again, err := clickhouse.Migrate(ctx, conn, cfg, f)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v (%v)", again, err)
	}
	for _, table := range []string{"tags", "devices", "app_info", "sessions", "active_hourly", "active_daily", "counts_daily", "job_durations_daily", "funnel_events"} {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", cfg.Database, table).Scan(&n); err != nil || n != 1 {
			t.Errorf("table %s: %d (%v)", table, n, err)
		}
	}
}

func TestFeaturesOf(t *testing.T) {
	for _, tc := range []struct {
		major, minor uint64
		lc, dt64     bool
	}{{18, 16, false, false}, {19, 9, true, false}, {20, 1, true, true}, {24, 8, true, true}} {
		f := clickhouse.FeaturesOf(tc.major, tc.minor)
		if f.LowCardinality != tc.lc || f.DateTime64 != tc.dt64 {
			t.Errorf("%d.%d: %+v", tc.major, tc.minor, f)
		}
	}
}
