package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// BenchmarkWriter: typical tag records into the real ClickHouse, in batches
// of 100k, without Kafka. The ceiling of the sink.
func BenchmarkWriter(b *testing.B) {
	for _, w := range []string{"native-protocol", "http-native"} {
		b.Run(w+"/with-rollups", func(b *testing.B) { benchWriter(b, w, false) })
		b.Run(w+"/raw-only", func(b *testing.B) { benchWriter(b, w, true) })
	}
}

func benchWriter(b *testing.B, writer string, dropViews bool) {
	conn, cfg, _ := chtest.Database(b)
	if dropViews {
		for _, mv := range clickhouse.RollupViews {
			if err := conn.Exec(context.Background(), "DROP TABLE "+cfg.Database+"."+mv); err != nil {
				b.Fatal(err)
			}
		}
	}
	w := chtest.Writers(b, conn, cfg)[writer]
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	const batch = 100000
	rows := make([]clickhouse.Row, batch)
	for i := range rows {
		rows[i] = clickhouse.Row{Rec: tag.Record{Kind: tag.KindEvent, AppID: "bench", DeviceID: fmt.Sprintf("device-%06d", i%50000),
			MessageID: fmt.Sprintf("m-%09d", i), Time: t0.Add(time.Duration(i) * time.Second), AppVersion: "2.3.1", Name: "article_read", Activity: "article",
			Extras: []tag.Extra{{Key: "category", Value: tag.String("sport")}, {Key: "words", Value: tag.Number(float64(i % 2000))}}}, Offset: int64(i)}
	}
	if os.Getenv("ENGAGE_BENCH_STOP_MERGES") == "1" {
		if err := conn.Exec(context.Background(), "SYSTEM STOP MERGES"); err != nil {
			b.Fatal(err)
		}
		defer conn.Exec(context.Background(), "SYSTEM START MERGES")
	}
	b.ResetTimer()
	chPID := servicetest.ClickHousePID()
	chCPU := servicetest.ProcCPU(chPID)
	start := time.Now()
	written := 0
	for written < b.N {
		n := min(batch, b.N-written)
		if err := w.Write(context.Background(), rows[:n]); err != nil {
			b.Fatal(err)
		}
		written += n
	}
	b.ReportMetric(float64(written)/time.Since(start).Seconds(), "rows/s")
	b.ReportMetric((servicetest.ProcCPU(chPID)-chCPU).Seconds()*1e6/float64(written), "clickhouse-cpu-µs/row")
}
