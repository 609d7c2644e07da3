package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/engine"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// Names that would break SQL built as text.
const (
	evilApp    = `it's "news" \' \\`
	evilDevice = `dev'"\x\\'`
	evilName   = `sp'ort" \'); DROP TABLE tags; --\`
)

// historyData is a random history written to the tags table: what was
// written, row by row in the order of the inserts, and the precision the
// server keeps times at.
type historyData struct {
	rows []clickhouse.Row // every row written, duplicates included
	prec time.Duration    // of the time columns
}

// writeHistory writes a few thousand random records of every kind, over
// several apps and devices and two partitions, some rows twice (a
// redelivered batch) and some records again at a later offset (a client's
// retry): most with the HTTP writer (the sink's default), the rest with
// clickhouse-go's. Merges of the tags table are stopped, so that every
// row stays as written.
func writeHistory(t testing.TB, seed uint64) (*clickhouse.HistoryReader, *historyData, func(string)) {
	conn, cfg, f := chtest.Database(t)
	ctx := context.Background()
	exec := func(sql string) {
		t.Helper()
		if err := conn.Exec(ctx, strings.ReplaceAll(sql, "DB.", cfg.Database+".")); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("SYSTEM STOP MERGES DB.tags")
	t.Cleanup(func() { _ = conn.Exec(ctx, "SYSTEM START MERGES "+cfg.Database+".tags") })
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	d := &historyData{prec: time.Second}
	if f.DateTime64 {
		d.prec = time.Millisecond
	}
	type device struct {
		app, id string
		part    int32 // a device stays on its partition
	}
	var devices []device
	for _, app := range []string{"news", "game", evilApp} {
		for i := range 5 {
			devices = append(devices, device{app, fmt.Sprintf("%s-d%d", app[:4], i), int32(i % 2)})
		}
		devices = append(devices, device{app, evilDevice, 1})
	}
	var offsets [2]int64
	next := func(part int32) int64 {
		o := offsets[part]
		offsets[part] += 1 + int64(rng.IntN(3)) // gaps: other apps' records
		return o
	}
	g := recordGen{rng: rng, t0: time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)}
	var rows []clickhouse.Row
	for i := range 4000 {
		dv := devices[rng.IntN(len(devices))]
		rec := g.record(dv.app, dv.id, i)
		if err := rec.Validate(); err != nil {
			t.Fatalf("generated record %d: %v", i, err)
		}
		rows = append(rows, clickhouse.Row{Rec: rec, Partition: dv.part, Offset: next(dv.part)})
	}
	for range 100 { // a client's retries: the same records (message ids) later
		r := rows[rng.IntN(4000)]
		r.Offset = next(r.Partition)
		rows = append(rows, r)
	}
	w := chtest.Writers(t, conn, cfg)
	for i := 0; i < len(rows); i += 500 {
		batch := rows[i:min(i+500, len(rows))]
		writer := w["http-native"]
		if i/500%4 == 3 {
			writer = w["native-protocol"]
		}
		for range 1 + i/500%3/2 { // every third batch redelivered
			if err := writer.Write(ctx, batch); err != nil {
				t.Fatal(err)
			}
			d.rows = append(d.rows, batch...)
		}
	}
	return clickhouse.NewHistoryReader(conn, cfg.Database), d, exec
}

// merged is the history once ReplacingMergeTree has collapsed the rows of
// each record (app, device, message id) into the last inserted.
func (d *historyData) merged() *historyData {
	type key struct{ app, dev, id string }
	last := map[key]int{}
	for i, r := range d.rows {
		last[key{r.Rec.AppID, r.Rec.DeviceID, r.Rec.MessageID}] = i
	}
	m := &historyData{prec: d.prec}
	for i, r := range d.rows {
		if last[key{r.Rec.AppID, r.Rec.DeviceID, r.Rec.MessageID}] == i {
			m.rows = append(m.rows, r)
		}
	}
	return m
}

type recordGen struct {
	rng *rand.Rand
	t0  time.Time
}

func (g *recordGen) pick(xs ...string) string { return xs[g.rng.IntN(len(xs))] }

func (g *recordGen) text() string {
	return g.pick("", "a", "sport", "économie", `quo'te`, `back\slash`, "tab\tnew\nline", "nul\x00byte", `\'`, strings.Repeat("x", 300))
}

func (g *recordGen) values(n int) []tag.Extra {
	if n == 0 {
		return nil
	}
	keys := map[string]bool{}
	var xs []tag.Extra
	for len(xs) < n {
		k := g.pick("category", "words", "premium", "published", "level", "score", "a", "Z_9")
		if keys[k] {
			continue
		}
		keys[k] = true
		var v tag.Value
		switch g.rng.IntN(4) {
		case 0:
			v = tag.String(g.text())
		case 1:
			v = tag.Number(g.pick2(float64(g.rng.IntN(1000)), g.rng.NormFloat64()*1e6, -0.1, 1e300, math.SmallestNonzeroFloat64))
		case 2:
			v = tag.Bool(g.rng.IntN(2) == 0)
		case 3:
			v = tag.Date(time.UnixMilli(g.rng.Int64N(4e12) - 1e12)) // 1938 to 2096, to the millisecond
		}
		xs = append(xs, tag.Extra{Key: k, Value: v})
	}
	return xs
}

func (g *recordGen) pick2(xs ...float64) float64 { return xs[g.rng.IntN(len(xs))] }

func (g *recordGen) record(app, dev string, i int) tag.Record {
	kinds := tag.Kinds()
	r := tag.Record{
		Kind: kinds[g.rng.IntN(len(kinds))], AppID: app, DeviceID: dev, MessageID: fmt.Sprintf("m-%d", i),
		Time: g.t0.Add(time.Duration(g.rng.Int64N(int64(60 * 24 * time.Hour)))),
	}
	r.ReceivedAt = r.Time.Add(time.Duration(g.rng.Int64N(int64(time.Hour))))
	if g.rng.IntN(3) > 0 {
		r.SentAt = r.ReceivedAt.Add(-time.Duration(g.rng.Int64N(int64(time.Second))))
	}
	if g.rng.IntN(2) == 0 {
		r.UserID = g.pick("u1", `u'2`, "user-3")
	}
	r.AppVersion = g.pick("", "2.3.1", "2.4.0")
	r.SessionID = g.pick("", "s1", "s2")
	if r.Kind.Named() {
		r.Name = g.pick("article_read", "login", "home", evilName)
	}
	if r.Kind == tag.KindEvent || r.Kind == tag.KindError || r.Kind == tag.KindJob {
		r.Activity = g.pick("", "home", `art"icle`)
	}
	if r.Kind == tag.KindJobStart || r.Kind == tag.KindJobEnd {
		r.JobID = g.pick("", "j1")
	}
	switch r.Kind {
	case tag.KindSessionEnd, tag.KindActivityEnd, tag.KindJobEnd, tag.KindJob:
		r.Duration = time.Duration(g.rng.Int64N(int64(24*time.Hour))) + 1
		if g.rng.IntN(2) == 0 {
			r.Duration = r.Duration.Truncate(time.Millisecond) + time.Millisecond
		}
	}
	r.Extras = g.values(g.rng.IntN(4))
	switch r.Kind {
	case tag.KindAppInfo:
		r.AppInfo = g.values(1 + g.rng.IntN(3))
	case tag.KindDevice:
		r.Device = &tag.DeviceInfo{
			Platform: g.pick("ios", "android", ""), AppVersion: g.pick("2.3.1", "2.4.0", ""), AppBuild: g.pick("231", ""),
			OSVersion: g.pick("17.1", "14"), Model: g.pick("iPhone15,2", `Pixel "8"`), Manufacturer: g.pick("Apple", "Google", "", `O'Neil`),
			Locale: g.pick("fr-FR", "en", ""), TimeZone: g.pick("Europe/Paris", "America/New_York", ""), Country: g.pick("FR", "US", ""),
		}
		switch g.rng.IntN(3) {
		case 0:
			r.Device.PushToken, r.Device.PushProvider = strings.Repeat("ab12", 16), tag.ProviderAPNs
		case 1:
			r.Device.PushToken, r.Device.PushProvider = "fcm:token-"+fmt.Sprint(i), tag.ProviderFCM
		}
	case tag.KindPush:
		r.Push = &tag.Push{Action: tag.PushAction(g.pick("received", "opened", "clicked", "dismissed")), DeliveryID: fmt.Sprintf("dl-%d", i), CampaignID: g.pick("", "c1")}
	}
	if g.rng.IntN(10) == 0 {
		r.Unplanned = []string{"event:" + r.Name, "extra:bogus"}
	}
	return r
}

// want returns what Read must give for q on a partition: per device (in
// device order), the rows it matches, in offset order, as the server keeps
// them.
func (d *historyData) want(partition int, q engine.HistoryQuery) ([]string, map[string][]engine.HistoryRecord) {
	byDev := map[string][]engine.HistoryRecord{}
	since := q.Since.Truncate(d.prec)
	for _, r := range d.rows {
		rec := d.stored(r.Rec)
		if rec.AppID != q.App || int(r.Partition) != partition || r.Offset >= q.Before ||
			!q.Since.IsZero() && rec.Time.Before(since) || !q.Wants(&rec) {
			continue
		}
		byDev[rec.DeviceID] = append(byDev[rec.DeviceID], engine.HistoryRecord{Record: &rec, Offset: r.Offset, Arrived: rec.ReceivedAt})
	}
	var devs []string
	for dev, recs := range byDev {
		devs = append(devs, dev)
		slices.SortStableFunc(recs, func(a, b engine.HistoryRecord) int { return int(a.Offset - b.Offset) })
	}
	slices.Sort(devs)
	return devs, byDev
}

// stored is a record as the server keeps it: times truncated to the time
// columns' precision.
func (d *historyData) stored(r tag.Record) tag.Record {
	trunc := func(t time.Time) time.Time {
		if t.IsZero() {
			return t
		}
		return t.UTC().Truncate(d.prec)
	}
	r.Time, r.SentAt, r.ReceivedAt = trunc(r.Time), trunc(r.SentAt), trunc(r.ReceivedAt)
	return r
}

func TestHistoryReader(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	h, d, exec := writeHistory(t, seed)
	mid := d.rows[len(d.rows)/2].Rec.Time.Add(123456789 * time.Nanosecond)
	all := int64(math.MaxInt64)
	queries := []struct {
		name string
		q    engine.HistoryQuery
	}{
		{"all kinds", engine.HistoryQuery{App: "news", Before: all}},
		{"quoted app", engine.HistoryQuery{App: evilApp, Before: all}},
		{"kinds and names", engine.HistoryQuery{App: "news", Before: all,
			Kinds: []tag.Kind{tag.KindEvent, tag.KindError, tag.KindSessionStart, tag.KindAppInfo, tag.KindEvent},
			Names: map[tag.Kind][]string{tag.KindEvent: {"article_read", evilName}, tag.KindError: {}}}},
		{"quoted name only", engine.HistoryQuery{App: evilApp, Before: all,
			Kinds: []tag.Kind{tag.KindEvent, tag.KindJob}, Names: map[tag.Kind][]string{tag.KindEvent: {evilName}, tag.KindJob: {evilName}}}},
		{"since", engine.HistoryQuery{App: "game", Before: all, Since: mid}},
		{"before", engine.HistoryQuery{App: "news", Before: d.rows[len(d.rows)/3].Offset}},
		{"since, before, kinds", engine.HistoryQuery{App: "news", Before: d.rows[len(d.rows)/2].Offset, Since: mid,
			Kinds: []tag.Kind{tag.KindDevice, tag.KindPush, tag.KindJob}}},
		{"no kinds", engine.HistoryQuery{App: "news", Before: all, Kinds: []tag.Kind{}}},
		{"no such name", engine.HistoryQuery{App: "news", Before: all, Kinds: []tag.Kind{tag.KindEvent}, Names: map[tag.Kind][]string{tag.KindEvent: {"article_read'"}}}},
		{"no such app", engine.HistoryQuery{App: "news' OR 1 = 1 OR app = '", Before: all}},
		{"nothing before 0", engine.HistoryQuery{App: "news", Before: 0}},
	}
	run := func(t *testing.T, d *historyData) {
		ctx := context.Background()
		for _, chunk := range []int{clickhouse.DefaultHistoryChunkRows, 37} {
			h.ChunkRows = chunk
			for _, tc := range queries {
				for partition := range 2 {
					t.Run(fmt.Sprintf("%s/chunk-%d/partition-%d", tc.name, chunk, partition), func(t *testing.T) {
						devs, want := d.want(partition, tc.q)
						var got []string
						visited := 0
						err := h.Read(ctx, partition, tc.q, func(dev string, recs []engine.HistoryRecord) error {
							got = append(got, dev)
							visited += len(recs)
							checkDevice(t, dev, want[dev], recs)
							return nil
						})
						if err != nil {
							t.Fatal(err)
						}
						if !slices.Equal(got, devs) {
							t.Errorf("devices %q, want %q", got, devs)
						}
						n, err := h.Rows(ctx, partition, tc.q)
						if err != nil || n != int64(visited) {
							t.Errorf("Rows: %d (%v), Read visited %d", n, err, visited)
						}
						switch tc.name {
						case "all kinds", "quoted app", "kinds and names", "quoted name only", "since", "before":
							if visited == 0 {
								t.Errorf("no rows: the query tests nothing")
							}
						}
					})
				}
			}
		}
	}
	t.Run("as written", func(t *testing.T) { run(t, d) })
	exec("SYSTEM START MERGES DB.tags")
	exec("OPTIMIZE TABLE DB.tags FINAL")
	m := d.merged()
	t.Logf("%d rows written, %d once merged", len(d.rows), len(m.rows))
	t.Run("merged", func(t *testing.T) { run(t, m) })
}

// checkDevice compares a device's records with the expected ones, field by
// field.
func checkDevice(t *testing.T, dev string, want, got []engine.HistoryRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("device %q: %d records, want %d", dev, len(got), len(want))
		return
	}
	for i := range got {
		w, g := want[i], got[i]
		if g.Offset != w.Offset || !g.Arrived.Equal(w.Arrived) {
			t.Errorf("device %q record %d: offset %d arrived %v, want %d %v", dev, i, g.Offset, g.Arrived, w.Offset, w.Arrived)
		}
		if diff := recordDiff(w.Record, g.Record); diff != "" {
			t.Errorf("device %q offset %d (%s %s): %s", dev, w.Offset, w.Record.Kind, w.Record.MessageID, diff)
		}
	}
}

// recordDiff lists the fields in which two records differ.
func recordDiff(want, got *tag.Record) string {
	var b strings.Builder
	field := func(name string, w, g any) {
		if w != g {
			fmt.Fprintf(&b, "%s %q, want %q; ", name, fmt.Sprint(g), fmt.Sprint(w))
		}
	}
	field("kind", want.Kind, got.Kind)
	field("app", want.AppID, got.AppID)
	field("device", want.DeviceID, got.DeviceID)
	field("user", want.UserID, got.UserID)
	field("message id", want.MessageID, got.MessageID)
	for _, tm := range []struct {
		name string
		w, g time.Time
	}{{"time", want.Time, got.Time}, {"sent at", want.SentAt, got.SentAt}, {"received at", want.ReceivedAt, got.ReceivedAt}} {
		if !tm.w.Equal(tm.g) || tm.w.IsZero() != tm.g.IsZero() || !tm.g.IsZero() && tm.g.Location() != time.UTC {
			fmt.Fprintf(&b, "%s %v, want %v; ", tm.name, tm.g, tm.w)
		}
	}
	field("app version", want.AppVersion, got.AppVersion)
	field("session", want.SessionID, got.SessionID)
	field("name", want.Name, got.Name)
	field("activity", want.Activity, got.Activity)
	field("job id", want.JobID, got.JobID)
	field("duration", want.Duration, got.Duration)
	extrasDiff(&b, "extras", want.Extras, got.Extras)
	extrasDiff(&b, "app-info", want.AppInfo, got.AppInfo)
	switch {
	case (want.Device == nil) != (got.Device == nil):
		fmt.Fprintf(&b, "device %+v, want %+v; ", got.Device, want.Device)
	case want.Device != nil:
		field("device info", *want.Device, *got.Device)
	}
	switch {
	case (want.Push == nil) != (got.Push == nil):
		fmt.Fprintf(&b, "push %+v, want %+v; ", got.Push, want.Push)
	case want.Push != nil:
		field("push", *want.Push, *got.Push)
	}
	if !slices.Equal(want.Unplanned, got.Unplanned) || (want.Unplanned == nil) != (got.Unplanned == nil) {
		fmt.Fprintf(&b, "unplanned %q, want %q; ", got.Unplanned, want.Unplanned)
	}
	return b.String()
}

func extrasDiff(b *strings.Builder, name string, want, got []tag.Extra) {
	if (want == nil) != (got == nil) || len(want) != len(got) {
		fmt.Fprintf(b, "%s %v, want %v; ", name, got, want)
		return
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.Key != g.Key || !w.Value.Equal(g.Value) || math.Signbit(w.Value.Num) != math.Signbit(g.Value.Num) ||
			w.Value.Type == tag.TypeDate && g.Value.Date.Location() != time.UTC {
			fmt.Fprintf(b, "%s[%d] %s=%+v, want %s=%+v; ", name, i, g.Key, g.Value, w.Key, w.Value)
		}
	}
}

// TestHistoryReaderStops: an error from fn, or a cancelled context, stops
// Read after the device at hand, and the reader (and its connections) go
// on working.
func TestHistoryReaderStops(t *testing.T) {
	h, d, _ := writeHistory(t, 1)
	ctx := context.Background()
	q := engine.HistoryQuery{App: "news", Before: math.MaxInt64}
	devs, _ := d.want(0, q)
	if len(devs) < 3 {
		t.Fatalf("%d devices", len(devs))
	}
	for _, chunk := range []int{clickhouse.DefaultHistoryChunkRows, 10} {
		h.ChunkRows = chunk
		stop := errors.New("stop")
		calls := 0
		err := h.Read(ctx, 0, q, func(string, []engine.HistoryRecord) error {
			if calls++; calls == 2 {
				return stop
			}
			return nil
		})
		if err != stop || calls != 2 {
			t.Errorf("chunk %d: fn's error: Read returned %v after %d calls", chunk, err, calls)
		}
		cctx, cancel := context.WithCancel(ctx)
		calls = 0
		err = h.Read(cctx, 0, q, func(string, []engine.HistoryRecord) error {
			if calls++; calls == 2 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || calls != 2 {
			t.Errorf("chunk %d: cancelled: Read returned %v after %d calls", chunk, err, calls)
		}
	}
	calls := 0
	if err := h.Read(ctx, 0, q, func(string, []engine.HistoryRecord) error { calls++; return nil }); err != nil || calls != len(devs) {
		t.Errorf("after the stops: %d calls (%v), want %d", calls, err, len(devs))
	}
}

// TestHistoryReaderUnmigrated: a database without schema version 4 gets an
// error that says what to do.
func TestHistoryReaderUnmigrated(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, "ALTER TABLE "+cfg.Database+".tags DROP COLUMN manufacturer"); err != nil {
		t.Fatal(err)
	}
	h := clickhouse.NewHistoryReader(conn, cfg.Database)
	_, err := h.Rows(ctx, 0, engine.HistoryQuery{App: "news", Before: 10})
	if err == nil || !strings.Contains(err.Error(), "no column manufacturer: run engage migrate") {
		t.Errorf("got %v", err)
	}
}
