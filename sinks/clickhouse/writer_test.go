package clickhouse_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

func TestWriterRoundTrip(t *testing.T) {
	for _, name := range []string{"native-protocol", "http-native"} {
		t.Run(name, func(t *testing.T) {
			conn, cfg, _ := chtest.Database(t)
			testWriterRoundTrip(t, conn, cfg, chtest.Writers(t, conn, cfg)[name])
		})
	}
}

func testWriterRoundTrip(t *testing.T, conn driver.Conn, cfg clickhouse.Config, w clickhouse.RowWriter) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	rec := func(kind tag.Kind, dev, id string, at time.Duration) tag.Record {
		return tag.Record{Kind: kind, AppID: "news", DeviceID: dev, MessageID: id, Time: t0.Add(at), ReceivedAt: t0.Add(at), AppVersion: "2.3.1"}
	}
	var rows []clickhouse.Row
	add := func(r tag.Record) {
		rows = append(rows, clickhouse.Row{Rec: r, Partition: 1, Offset: int64(len(rows))})
	}
	s1 := rec(tag.KindSessionStart, "d1", "s1-start", 0)
	s1.SessionID = "s1"
	add(s1)
	ev := rec(tag.KindEvent, "d1", "e1", time.Minute)
	ev.Name, ev.Extras = "article_read", []tag.Extra{{Key: "category", Value: tag.String("sport")}, {Key: "words", Value: tag.Number(640)}}
	add(ev)
	job := rec(tag.KindJob, "d2", "j1", 2*time.Minute)
	job.Name, job.Duration = "login", 1830*time.Millisecond
	add(job)
	dev := rec(tag.KindDevice, "d1", "dv1", 0)
	dev.Device = &tag.DeviceInfo{Platform: "ios", AppVersion: "2.3.1", Locale: "fr-FR", TimeZone: "Europe/Paris", PushToken: "ab", PushProvider: tag.ProviderAPNs}
	add(dev)
	newer := rec(tag.KindDevice, "d1", "dv2", time.Hour)
	newer.Device = &tag.DeviceInfo{Platform: "ios", AppVersion: "2.4.0"}
	add(newer)
	info := rec(tag.KindAppInfo, "d1", "i1", 0)
	info.AppInfo = []tag.Extra{{Key: "logged_in", Value: tag.Bool(true)}, {Key: "level", Value: tag.Number(7)}}
	add(info)
	s1end := rec(tag.KindSessionEnd, "d1", "s1-end", 5*time.Minute)
	s1end.SessionID, s1end.Duration = "s1", 5*time.Minute
	add(s1end)
	if err := w.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}
	// A redelivery of the same batch.
	if err := w.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}
	q := func(sql string, args ...any) string {
		t.Helper()
		var s string
		if err := conn.QueryRow(ctx, fmt.Sprintf(sql, cfg.Database), args...).Scan(&s); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return s
	}
	for _, tc := range []struct{ sql, want string }{
		{"SELECT toString(count()) FROM %s.tags", "14"},              // stored twice…
		{"SELECT toString(uniqExact(message_id)) FROM %s.tags", "7"}, // …counted once
		{"SELECT toString(count()) FROM %s.tags FINAL", "7"},         // and collapsed by FINAL
		{"SELECT extra_strings[indexOf(extra_keys, 'category')] FROM %s.tags WHERE message_id = 'e1' LIMIT 1", "sport"},
		{"SELECT toString(extra_numbers[indexOf(extra_keys, 'words')]) FROM %s.tags WHERE message_id = 'e1' LIMIT 1", "640"},
		{"SELECT toString(any(duration_ms)) FROM %s.tags WHERE message_id = 'j1'", "1830"},
		{"SELECT argMax(app_version, updated_at) FROM %s.devices WHERE device_id = 'd1'", "2.4.0"},
		{"SELECT value FROM %s.app_info FINAL WHERE key = 'logged_in'", "true"},
		{"SELECT toString(uniqExactMerge(records)) FROM %s.counts_daily WHERE name = 'article_read'", "1"},
		{"SELECT toString(uniqExactMerge(devices)) FROM %s.active_daily", "2"},
		{"SELECT toString(maxMerge(ended) - minMerge(started)) FROM %s.sessions WHERE session_id = 's1'", "300"},
		{"SELECT toString(count()) FROM %s.funnel_events", "4"}, // the two named records, written twice
		{"SELECT toString(count()) FROM %s.funnel_events WHERE tag = cityHash64('event', 'article_read') AND device_key = cityHash64('d1')", "2"},
	} {
		if got := q(tc.sql); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.sql, got, tc.want)
		}
	}
}
