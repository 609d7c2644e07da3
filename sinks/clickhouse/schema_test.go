package clickhouse_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
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
	for _, table := range []string{"tags", "devices", "app_info", "sessions", "active_hourly", "active_daily", "counts_daily", "job_durations_daily", "funnel_events", "decisions", "delivery_results"} {
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

// TestMigrationAddsDeviceColumns takes a database at schema version 3 with
// a row in tags, one of the four new columns already added (a migration
// interrupted half-way), to the newest version.
func TestMigrationAddsDeviceColumns(t *testing.T) {
	ctx := context.Background()
	cfg := clickhouse.DefaultConfig(chtest.Addr(t)...)
	cfg.Database = fmt.Sprintf("test_m4_%d", time.Now().UnixNano()%1e9)
	conn, f, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database)
		_ = conn.Close()
	})
	all := clickhouse.Migrations
	clickhouse.Migrations = all[:3]
	_, err = clickhouse.Migrate(ctx, conn, cfg, f)
	clickhouse.Migrations = all
	if err != nil {
		t.Fatal(err)
	}
	exec := func(sql string) {
		t.Helper()
		if err := conn.Exec(ctx, strings.ReplaceAll(sql, "DB", cfg.Database)); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`INSERT INTO DB.tags (app, kind, device_id, message_id, event_date, event_time, platform, model)
		SELECT 'news', 'device', 'd1', 'm1', toDate('2026-11-20'), toDateTime('2026-11-20 09:00:00'), 'ios', 'iPhone15,2'`)
	exec(`ALTER TABLE DB.tags ADD COLUMN manufacturer String AFTER model`)

	applied, err := clickhouse.Migrate(ctx, conn, cfg, f)
	if newest := clickhouse.Migrations[len(clickhouse.Migrations)-1].Version; err != nil || len(applied) != int(newest)-3 || applied[0] != 4 {
		t.Fatalf("applied %v (%v), want 4..%d", applied, err, newest)
	}
	var got string
	if err := conn.QueryRow(ctx, "SELECT concat(platform, '|', device_app_version, '|', app_build, '|', model, '|', manufacturer, '|', push_token) FROM "+cfg.Database+".tags").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "ios|||iPhone15,2||"; got != want {
		t.Errorf("old row: %q, want %q", got, want)
	}
	if again, err := clickhouse.Migrate(ctx, conn, cfg, f); err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v (%v)", again, err)
	}
	// Both writers fill the new columns.
	w := chtest.Writers(t, conn, cfg)
	for name, off := range map[string]int64{"native-protocol": 1, "http-native": 2} {
		rec := tag.Record{Kind: tag.KindDevice, AppID: "news", DeviceID: "d2", MessageID: name, Time: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC),
			Device: &tag.DeviceInfo{Platform: "android", AppVersion: "2.4.0", AppBuild: "240", Manufacturer: "Google", PushToken: "tok", PushProvider: tag.ProviderFCM}}
		if err := w[name].Write(ctx, []clickhouse.Row{{Rec: rec, Offset: off}}); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT concat(device_app_version, '|', app_build, '|', manufacturer, '|', push_token) FROM "+cfg.Database+".tags WHERE message_id = ?", name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := "2.4.0|240|Google|tok"; got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
