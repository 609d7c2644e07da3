package clickhouse_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// TestMigrationAddsResults takes a database at schema version 5, with rows
// in tags and decisions, to version 6: the delivery_results table, its
// engine, keys and column types; the old rows stay; a second run applies
// nothing; and a run interrupted after the table was made but before the
// version was recorded completes.
func TestMigrationAddsResults(t *testing.T) {
	ctx := context.Background()
	cfg := clickhouse.DefaultConfig(chtest.Addr(t)...)
	cfg.Database = fmt.Sprintf("test_m6_%d", time.Now().UnixNano()%1e9)
	conn, f, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database)
		_ = conn.Close()
	})
	all := clickhouse.Migrations
	if all[5].Version != 6 {
		t.Fatalf("migration 6 is not the sixth: %v", all[5].Version)
	}
	clickhouse.Migrations = all[:5]
	applied, err := clickhouse.Migrate(ctx, conn, cfg, f)
	clickhouse.Migrations = all
	if err != nil || len(applied) != 5 {
		t.Fatalf("applied %v (%v), want 1..5", applied, err)
	}
	exec := func(sql string) {
		t.Helper()
		if err := conn.Exec(ctx, strings.ReplaceAll(sql, "DB.", cfg.Database+".")); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`INSERT INTO DB.tags (app, kind, device_id, message_id, event_date, event_time)
		SELECT 'news', 'event', 'd1', 'm1', toDate('2026-11-20'), toDateTime('2026-11-20 09:00:00')`)
	exec(`INSERT INTO DB.decisions (app, campaign, device_id, id, outcome, day, time, kafka_offset)
		SELECT 'news', 'welcome', 'd1', 'x1', 'sent', toDate('2026-11-20'), toDateTime('2026-11-20 09:00:00'), 3`)

	applied, err = clickhouse.Migrate(ctx, conn, cfg, f)
	if newest := all[len(all)-1].Version; err != nil || len(applied) != int(newest)-5 || applied[0] != 6 {
		t.Fatalf("applied %v (%v), want 6..%d", applied, err, newest)
	}
	if again, err := clickhouse.Migrate(ctx, conn, cfg, f); err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v (%v)", again, err)
	}
	var engine, sortingKey, partitionKey string
	if err := conn.QueryRow(ctx, "SELECT engine_full, sorting_key, partition_key FROM system.tables WHERE database = ? AND name = 'delivery_results'", cfg.Database).
		Scan(&engine, &sortingKey, &partitionKey); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", f, engine)
	if !strings.HasPrefix(engine, "ReplacingMergeTree(kafka_offset)") || sortingKey != "app, campaign, device_id, delivery_id, id" || partitionKey != "toYYYYMM(day)" {
		t.Errorf("delivery_results: engine %q, sorting key %q, partition key %q", engine, sortingKey, partitionKey)
	}
	lc, tm := "String", "DateTime"
	if f.LowCardinality {
		lc = "LowCardinality(String)"
	}
	if f.DateTime64 {
		tm = "DateTime64(3, 'UTC')"
	}
	want := strings.Join([]string{"app " + lc, "campaign " + lc, "device_id String", "delivery_id String", "id String", "version Int64",
		"variant " + lc, "channel " + lc, "provider " + lc, "outcome " + lc, "reason String", "provider_id String", "attempts UInt32",
		"day Date", "time " + tm, "kafka_partition UInt32", "kafka_offset UInt64", "inserted_at DateTime"}, ", ")
	var cols []string
	rows, err := conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = 'delivery_results'", cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, name+" "+typ)
	}
	rows.Close()
	if got := strings.Join(cols, ", "); got != want {
		t.Errorf("columns:\n got %s\nwant %s", got, want)
	}
	for table, n := range map[string]uint64{"tags": 1, "decisions": 1} {
		var got uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+"."+table).Scan(&got); err != nil || got != n {
			t.Errorf("%s after migration 6: %d rows (%v), want %d", table, got, err, n)
		}
	}

	// Interrupted: the table is there, the version is not recorded.
	exec(`ALTER TABLE DB.schema_migrations DELETE WHERE version = 6`)
	for deadline := time.Now().Add(30 * time.Second); ; {
		v, err := clickhouse.SchemaVersion(ctx, conn, cfg.Database)
		if err != nil {
			t.Fatal(err)
		}
		if v == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("schema version %d 30 s after deleting version 6", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if applied, err := clickhouse.Migrate(ctx, conn, cfg, f); err != nil || len(applied) != 1 || applied[0] != 6 {
		t.Fatalf("migrate after an interrupted migration 6 applied %v (%v), want [6]", applied, err)
	}
}

// TestWriteResults stores every field of a result, a second copy of one at
// its own offset (a redelivery) and one written again at a later offset
// with another time (the dispatcher read its delivery again after a
// restart): the copies are there until the merge, argMax per delivery
// reads the latest before it, and the merge keeps the copy of the highest
// offset.
func TestWriteResults(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	ctx := context.Background()
	w := clickhouse.NewWriter(conn, cfg.Database)
	t0 := time.Date(2026, 3, 31, 23, 59, 59, 0, time.UTC)
	rows := []clickhouse.ResultRow{
		{ID: "r1", DeliveryID: "d1", App: "game", Campaign: "stalled", Version: 42, Variant: "bonus", DeviceID: `kim's "phone"`, Channel: "push", Provider: "apns",
			Outcome: "accepted", ProviderID: "1f2e3d4c-0000-4000-8000-000000000001", Attempts: 2, Time: t0, Partition: 3, Offset: 7},
		{ID: "r2", DeliveryID: "d2", App: "game", Campaign: "stalled", Version: 42, DeviceID: "bo", Channel: "data", Provider: "fcm",
			Outcome: "failed", Reason: "the push token is dead: UNREGISTERED", Attempts: 1, Time: t0.Add(-time.Hour), Partition: 1, Offset: 2},
		{ID: "r3", DeliveryID: "d3", App: "news", Campaign: "welcome", Version: 1, DeviceID: "ana", Channel: "in_app",
			Outcome: "unreachable", Reason: "the device sent no push token", Time: t0.Add(-2 * time.Hour), Partition: 0, Offset: 0},
	}
	if err := w.WriteResults(ctx, rows); err != nil {
		t.Fatal(err)
	}
	again := rows[1]
	again.Offset = 9
	later := again
	later.Time, later.Offset = t0.Add(time.Second), 12 // the next day, the next month
	if err := w.WriteResults(ctx, []clickhouse.ResultRow{again, later}); err != nil {
		t.Fatal(err)
	}
	ts := func(t time.Time) string { return fmt.Sprint(t.Unix()) }
	read := func(sql string) []string {
		t.Helper()
		r, err := conn.Query(ctx, strings.ReplaceAll(sql, "DB.", cfg.Database+"."))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out []string
		for r.Next() {
			var s string
			if err := r.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	const all = `SELECT concat(id, '|', delivery_id, '|', app, '|', campaign, '|', toString(version), '|', variant, '|', device_id, '|', channel, '|', provider, '|',
			outcome, '|', reason, '|', provider_id, '|', toString(attempts), '|', toString(day), '|', toString(toUnixTimestamp(time)), '|',
			toString(kafka_partition), '|', toString(kafka_offset), '|', toString(abs(toInt64(now()) - toInt64(inserted_at)) < 3600))
		FROM DB.delivery_results ORDER BY id, kafka_offset`
	want := []string{
		`r1|d1|game|stalled|42|bonus|kim's "phone"|push|apns|accepted||1f2e3d4c-0000-4000-8000-000000000001|2|2026-03-31|` + ts(t0) + "|3|7|1",
		"r2|d2|game|stalled|42||bo|data|fcm|failed|the push token is dead: UNREGISTERED||1|2026-03-31|" + ts(t0.Add(-time.Hour)) + "|1|2|1",
		"r2|d2|game|stalled|42||bo|data|fcm|failed|the push token is dead: UNREGISTERED||1|2026-03-31|" + ts(t0.Add(-time.Hour)) + "|1|9|1",
		"r2|d2|game|stalled|42||bo|data|fcm|failed|the push token is dead: UNREGISTERED||1|2026-04-01|" + ts(t0.Add(time.Second)) + "|1|12|1",
		"r3|d3|news|welcome|1||ana|in_app||unreachable|the device sent no push token||0|2026-03-31|" + ts(t0.Add(-2*time.Hour)) + "|0|0|1",
	}
	if got := read(all); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	const latest = `SELECT concat(delivery_id, '|', toString(d), '|', toString(o))
		FROM (SELECT delivery_id, argMax(day, kafka_offset) AS d, max(kafka_offset) AS o FROM DB.delivery_results GROUP BY device_id, delivery_id)
		ORDER BY delivery_id`
	wantLatest := []string{"d1|2026-03-31|7", "d2|2026-04-01|12", "d3|2026-03-31|0"}
	if got := read(latest); strings.Join(got, "\n") != strings.Join(wantLatest, "\n") {
		t.Errorf("latest per delivery before the merge: %v, want %v", got, wantLatest)
	}
	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+cfg.Database+".delivery_results PARTITION 202603 FINAL"); err != nil {
		t.Fatal(err)
	}
	// The copies at offsets 2 and 9 are in March and merge into the one at
	// 9; the copy of the next day is in April's partition and stays.
	want = []string{want[0], want[2], want[3], want[4]}
	if got := read(all); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after the merge:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := read(latest); strings.Join(got, "\n") != strings.Join(wantLatest, "\n") {
		t.Errorf("latest per delivery after the merge: %v, want %v", got, wantLatest)
	}
}
