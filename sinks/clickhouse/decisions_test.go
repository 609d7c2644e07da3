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

// TestMigrationAddsDecisions takes a database at schema version 4, with a
// row in tags, to version 5: the decisions table, its engine and sorting
// key; a second run applies nothing.
func TestMigrationAddsDecisions(t *testing.T) {
	ctx := context.Background()
	cfg := clickhouse.DefaultConfig(chtest.Addr(t)...)
	cfg.Database = fmt.Sprintf("test_m5_%d", time.Now().UnixNano()%1e9)
	conn, f, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database)
		_ = conn.Close()
	})
	all := clickhouse.Migrations
	clickhouse.Migrations = all[:4]
	applied, err := clickhouse.Migrate(ctx, conn, cfg, f)
	clickhouse.Migrations = all
	if err != nil || len(applied) != 4 {
		t.Fatalf("applied %v (%v), want 1..4", applied, err)
	}
	if err := conn.Exec(ctx, `INSERT INTO `+cfg.Database+`.tags (app, kind, device_id, message_id, event_date, event_time)
		SELECT 'news', 'event', 'd1', 'm1', toDate('2026-11-20'), toDateTime('2026-11-20 09:00:00')`); err != nil {
		t.Fatal(err)
	}
	applied, err = clickhouse.Migrate(ctx, conn, cfg, f)
	if newest := clickhouse.Migrations[len(clickhouse.Migrations)-1].Version; err != nil || len(applied) != int(newest)-4 || applied[0] != 5 {
		t.Fatalf("applied %v (%v), want 5..%d", applied, err, newest)
	}
	if again, err := clickhouse.Migrate(ctx, conn, cfg, f); err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v (%v)", again, err)
	}
	var engine, sortingKey, partitionKey string
	if err := conn.QueryRow(ctx, "SELECT engine_full, sorting_key, partition_key FROM system.tables WHERE database = ? AND name = 'decisions'", cfg.Database).
		Scan(&engine, &sortingKey, &partitionKey); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", f, engine)
	if !strings.HasPrefix(engine, "ReplacingMergeTree(kafka_offset)") || sortingKey != "app, campaign, device_id, id" || partitionKey != "toYYYYMM(day)" {
		t.Errorf("decisions: engine %q, sorting key %q, partition key %q", engine, sortingKey, partitionKey)
	}
	var tags uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".tags").Scan(&tags); err != nil || tags != 1 {
		t.Errorf("tags after migration 5: %d rows (%v)", tags, err)
	}
}

// TestWriteDecisions stores every field of a decision, a second copy of one
// (a redelivery) and a later copy with another time (decided again): both
// copies are there until the merge, which keeps the one of the highest
// offset.
func TestWriteDecisions(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	ctx := context.Background()
	w := clickhouse.NewWriter(conn, cfg.Database)
	t0 := time.Date(2026, 3, 1, 23, 59, 59, 0, time.UTC)
	due := t0.Add(12*time.Hour + 31*time.Second)
	rows := []clickhouse.DecisionRow{
		{ID: "3b", App: "game", Campaign: "stalled", Version: 42, DeviceID: "kim", Occurrence: "entry:0123", Outcome: "deferred",
			Reason: "quiet hours 22:00-09:00 in Asia/Tokyo", Time: t0, SendAt: due, Variant: "bonus", Partition: 3, Offset: 7},
		{ID: "4c", App: "game", Campaign: "lapsed", Version: 7, DeviceID: "bo", Occurrence: "day:2026-03-01", Outcome: "capped",
			Reason: "cap of 2 push per day reached", Time: t0.Add(-time.Hour), Partition: 1, Offset: 2},
	}
	if err := w.WriteDecisions(ctx, rows); err != nil {
		t.Fatal(err)
	}
	again := rows[1]
	again.Offset = 9
	later := again
	later.Time, later.Offset = t0.Add(time.Second), 12 // the next day, the next month
	if err := w.WriteDecisions(ctx, []clickhouse.DecisionRow{again, later}); err != nil {
		t.Fatal(err)
	}
	read := func() []string {
		t.Helper()
		r, err := conn.Query(ctx, `SELECT concat(id, '|', app, '|', campaign, '|', toString(version), '|', device_id, '|', occurrence, '|', outcome, '|', reason, '|',
				toString(day), '|', toString(toUnixTimestamp(time)), '|', toString(toUnixTimestamp(send_at)), '|', variant, '|',
				toString(kafka_partition), '|', toString(kafka_offset)), inserted_at
			FROM `+cfg.Database+`.decisions ORDER BY id, kafka_offset`)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out []string
		for r.Next() {
			var s string
			var ins time.Time
			if err := r.Scan(&s, &ins); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(ins); d < -time.Minute || d > time.Hour {
				t.Errorf("inserted_at %s, not about now", ins)
			}
			out = append(out, s)
		}
		return out
	}
	ts := func(t time.Time) string { return fmt.Sprint(t.Unix()) }
	want := []string{
		"3b|game|stalled|42|kim|entry:0123|deferred|quiet hours 22:00-09:00 in Asia/Tokyo|2026-03-01|" + ts(t0) + "|" + ts(due) + "|bonus|3|7",
		"4c|game|lapsed|7|bo|day:2026-03-01|capped|cap of 2 push per day reached|2026-03-01|" + ts(t0.Add(-time.Hour)) + "|0||1|2",
		"4c|game|lapsed|7|bo|day:2026-03-01|capped|cap of 2 push per day reached|2026-03-01|" + ts(t0.Add(-time.Hour)) + "|0||1|9",
		"4c|game|lapsed|7|bo|day:2026-03-01|capped|cap of 2 push per day reached|2026-03-02|" + ts(t0.Add(time.Second)) + "|0||1|12",
	}
	if got := read(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+cfg.Database+".decisions FINAL"); err != nil {
		t.Fatal(err)
	}
	// The copies at offsets 2 and 9 are in one partition (March) and
	// merge into the one at 9; the copy of the next day is in March too.
	want = []string{want[0], want[3]}
	if got := read(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after the merge:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
