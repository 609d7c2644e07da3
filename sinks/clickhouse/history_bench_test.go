package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/engine"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// BenchmarkHistoryRead: a fill reading an app's history back from the real
// ClickHouse, 1M rows (ENGAGE_BENCH_HISTORY_ROWS) over 10k devices on one
// partition: typical events with two extras, a device record per device.
// "ranges" is the reader as configured by default (device ranges of 256k
// rows), "one-query" sorts everything in one query, "events-since" reads
// one event name over the newer half.
func BenchmarkHistoryRead(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("ENGAGE_BENCH_HISTORY_ROWS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	conn, cfg, _ := chtest.Database(b)
	ctx := context.Background()
	hw, err := clickhouse.NewHTTPWriter(ctx, conn, cfg, chtest.HTTPAddr(b))
	if err != nil {
		b.Fatal(err)
	}
	const devices = 10_000
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	rows := make([]clickhouse.Row, 0, 100_000)
	for i := 0; i < n; i++ {
		rec := tag.Record{Kind: tag.KindEvent, AppID: "bench", DeviceID: fmt.Sprintf("device-%06d", i%devices),
			MessageID: fmt.Sprintf("m-%09d", i), Time: t0.Add(time.Duration(i) * time.Second), ReceivedAt: t0.Add(time.Duration(i) * time.Second),
			AppVersion: "2.3.1", SessionID: "s1", Name: []string{"article_read", "video_play"}[i/devices%2], Activity: "article",
			Extras: []tag.Extra{{Key: "category", Value: tag.String("sport")}, {Key: "words", Value: tag.Number(float64(i % 2000))}}}
		if i < devices {
			rec.Kind, rec.Name, rec.Activity, rec.Extras = tag.KindDevice, "", "", nil
			rec.Device = &tag.DeviceInfo{Platform: "android", AppVersion: "2.3.1", OSVersion: "14", Model: "Pixel 8", Manufacturer: "Google", Locale: "fr-FR", TimeZone: "Europe/Paris", Country: "FR"}
		}
		rows = append(rows, clickhouse.Row{Rec: rec, Offset: int64(i)})
		if len(rows) == cap(rows) || i == n-1 {
			if err := hw.Write(ctx, rows); err != nil {
				b.Fatal(err)
			}
			rows = rows[:0]
		}
	}
	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+cfg.Database+".tags FINAL"); err != nil {
		b.Fatal(err)
	}
	all := engine.HistoryQuery{App: "bench", Before: int64(n)}
	for _, bc := range []struct {
		name  string
		chunk int
		q     engine.HistoryQuery
	}{
		{"ranges", clickhouse.DefaultHistoryChunkRows, all},
		{"one-query", 2 * n, all},
		{"events-since", clickhouse.DefaultHistoryChunkRows, engine.HistoryQuery{App: "bench", Before: int64(n), Since: t0.Add(time.Duration(n/2) * time.Second),
			Kinds: []tag.Kind{tag.KindEvent}, Names: map[tag.Kind][]string{tag.KindEvent: {"article_read"}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := clickhouse.NewHistoryReader(conn, cfg.Database)
			h.ChunkRows = bc.chunk
			want, err := h.Rows(ctx, 0, bc.q)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			chPID := servicetest.ClickHousePID()
			chCPU := servicetest.ProcCPU(chPID)
			ownCPU := servicetest.ProcCPU(os.Getpid())
			var read, devs int64
			start := time.Now()
			for b.Loop() {
				err := h.Read(ctx, 0, bc.q, func(_ string, recs []engine.HistoryRecord) error {
					read += int64(len(recs))
					devs++
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			if read != want*int64(b.N) {
				b.Fatalf("read %d rows in %d runs, want %d per run", read, b.N, want)
			}
			b.ReportMetric(float64(read)/time.Since(start).Seconds(), "rows/s")
			b.ReportMetric(float64(want), "rows/run")
			b.ReportMetric(float64(devs)/float64(b.N), "devices/run")
			b.ReportMetric((servicetest.ProcCPU(chPID)-chCPU).Seconds()*1e6/float64(read), "clickhouse-cpu-µs/row")
			// The reader's CPU (this process): what a fill costs the
			// processor, and a figure that holds on a busy machine.
			b.ReportMetric((servicetest.ProcCPU(os.Getpid())-ownCPU).Seconds()*1e6/float64(read), "reader-cpu-µs/row")
		})
	}
}
