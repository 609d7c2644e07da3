package analytics_test

import (
	"context"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/openengage/engage/sinks/analytics"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// BenchmarkQueries loads ENGAGE_ANALYTICS_BENCH_RECORDS synthetic records
// (default 1,000,000; the product target is 10,000,000) into a fresh
// database through the sink's writer, then times each endpoint through the
// HTTP handler, once the server's background merges of the fresh parts
// have settled. Each sub-benchmark reports ms/op and its p95.
//
//	ENGAGE_ANALYTICS_BENCH_RECORDS=10000000 go test -run '^$' -bench Queries -benchtime 20x ./sinks/analytics/
func BenchmarkQueries(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("ENGAGE_ANALYTICS_BENCH_RECORDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("ENGAGE_ANALYTICS_BENCH_RECORDS=%q: want a positive integer", v)
		}
	}
	conn, cfg, _ := chtest.Database(b)
	s := analytics.DefaultSynthetic(n)
	st, err := analytics.LoadSynthetic(context.Background(), clickhouse.NewWriter(conn, cfg.Database), s)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d records of %d devices in %s: %.0f records/s", st.Records, st.Devices, st.Elapsed.Round(time.Millisecond), float64(st.Records)/st.Elapsed.Seconds())
	// Measure the steady state: background merges of the fresh parts
	// would otherwise share the two cores with the queries.
	settle := time.Now()
	for time.Since(settle) < 10*time.Minute {
		var merges uint64
		if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.merges WHERE database = ?", cfg.Database).Scan(&merges); err != nil {
			b.Fatal(err)
		}
		if merges == 0 {
			break
		}
		time.Sleep(time.Second) // polling the server, not waiting for our own goroutines
	}
	b.Logf("merges settled after %s", time.Since(settle).Round(time.Second))
	h := newAPI(b, conn, cfg.Database)
	first := s.Start.Format(layout)
	last := s.Start.AddDate(0, 0, s.Days-1).Format(layout)
	for _, q := range []struct{ name, endpoint string }{
		{"DAU", "active?period=day"},
		{"WAU", "active?period=week"},
		{"NewDevices", "new-devices?"},
		{"Sessions", "sessions?"},
		{"Retention30", "retention?days=30"},
		{"Funnel4", "funnel?window=3600&steps=activity:home,event:e0,event:e1,event:e2"},
		{"TopEvents", "top?kind=event&limit=20"},
		{"JobPercentiles", "jobs?name=sync"},
		{"Coverage", "coverage?"},
	} {
		path := "/v1/apps/" + s.App + "/" + q.endpoint + "&from=" + first + "&to=" + last
		b.Run(q.name, func(b *testing.B) {
			var ds []time.Duration
			for b.Loop() {
				t0 := time.Now()
				code, body := get(h, allToken, path)
				ds = append(ds, time.Since(t0))
				if code != http.StatusOK {
					b.Fatalf("%s: %d %s", path, code, body)
				}
			}
			slices.Sort(ds)
			b.ReportMetric(float64(ds[len(ds)*95/100].Microseconds())/1000, "p95-ms")
			b.ReportMetric(float64(st.Records)/1e6, "Mrecords")
		})
	}
}
