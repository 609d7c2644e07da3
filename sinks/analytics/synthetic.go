package analytics

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks/clickhouse"
)

// Synthetic describes a generated load for benchmarks: Records tag records
// of one app over Days days from Start, sessions of devices that each
// start on a random day and come back on a day with probability Return.
// Each session is a session_start, an activity, events (e0…e19, the lower
// more likely, so that the funnel e0 → e1 → e2 narrows), a job with a
// duration, sometimes an error, and a session_end with its duration.
type Synthetic struct {
	App       string
	Records   int
	Days      int
	Start     time.Time // UTC midnight of the first day
	Return    float64   // probability that a device is active on a later day
	Seed      uint64
	BatchRows int // rows per insert
}

// DefaultSynthetic returns a load of n records of app "bench" over 30 days
// from 2026-01-05 (a Monday).
func DefaultSynthetic(n int) Synthetic {
	return Synthetic{App: "bench", Records: n, Days: 30, Start: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC),
		Return: 0.3, Seed: 1, BatchRows: 200_000}
}

// SyntheticStats says what LoadSynthetic wrote.
type SyntheticStats struct {
	Records int
	Devices int
	Elapsed time.Duration
}

// LoadSynthetic generates s and inserts it through w, BatchRows rows per
// columnar insert.
func LoadSynthetic(ctx context.Context, w *clickhouse.Writer, s Synthetic) (SyntheticStats, error) {
	if s.Records <= 0 || s.Days <= 0 || s.BatchRows <= 0 || s.App == "" {
		return SyntheticStats{}, fmt.Errorf("synthetic load: need positive Records, Days, BatchRows and an App, got %+v", s)
	}
	start := time.Now()
	rng := rand.New(rand.NewPCG(s.Seed, 0x5eed))
	batch := make([]clickhouse.Row, 0, s.BatchRows)
	st := SyntheticStats{}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := w.Write(ctx, batch); err != nil {
			return fmt.Errorf("synthetic load after %d records: %w", st.Records, err)
		}
		batch = batch[:0]
		return nil
	}
	for st.Records < s.Records {
		dev := fmt.Sprintf("dev-%07d", st.Devices)
		st.Devices++
		first := rng.IntN(s.Days)
		for d := first; d < s.Days && st.Records < s.Records; d++ {
			if d > first && rng.Float64() >= s.Return {
				continue
			}
			t := s.Start.AddDate(0, 0, d).Add(time.Duration(rng.IntN(20*3600)) * time.Second)
			for _, r := range session(rng, s.App, dev, d, t) {
				batch = append(batch, clickhouse.Row{Rec: r, Offset: int64(st.Records)})
				st.Records++
				if len(batch) == s.BatchRows {
					if err := flush(); err != nil {
						return st, err
					}
				}
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	st.Elapsed = time.Since(start)
	return st, nil
}

// session returns one session's records, starting at t.
func session(rng *rand.Rand, app, dev string, day int, t time.Time) []tag.Record {
	sid := fmt.Sprintf("s%d", day)
	n := 0
	rec := func(k tag.Kind, name string) tag.Record {
		t = t.Add(time.Duration(1+rng.IntN(60)) * time.Second)
		n++
		return tag.Record{Kind: k, AppID: app, DeviceID: dev, MessageID: fmt.Sprintf("%s-%d-%d", dev, day, n),
			Time: t, ReceivedAt: t, AppVersion: "1.0", SessionID: sid, Name: name}
	}
	start := t
	out := []tag.Record{rec(tag.KindSessionStart, ""), rec(tag.KindActivityStart, "home")}
	for range 3 + rng.IntN(8) {
		// e0 is the most frequent: the minimum of two uniform picks.
		out = append(out, rec(tag.KindEvent, fmt.Sprintf("e%d", min(rng.IntN(20), rng.IntN(20)))))
	}
	j := rec(tag.KindJob, "sync")
	j.Duration = time.Duration(1+rng.IntN(3000)) * time.Millisecond
	out = append(out, j)
	if rng.IntN(10) == 0 {
		out = append(out, rec(tag.KindError, "timeout"))
	}
	end := rec(tag.KindSessionEnd, "")
	end.Duration = t.Sub(start)
	return append(out, end)
}
