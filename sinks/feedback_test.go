package sinks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/sinks"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// resultStore is a ResultStore that fails while down and refuses results
// of the device "poison" as a store refuses bad data.
type resultStore struct {
	mu   sync.Mutex
	rows []clickhouse.ResultRow
	down bool
}

func (s *resultStore) WriteResults(_ context.Context, rows []clickhouse.ResultRow) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("store unavailable")
	}
	for _, r := range rows {
		if r.DeviceID == "poison" {
			return errRefused
		}
	}
	s.rows = append(s.rows, rows...)
	return nil
}

// feedbackMsg is a delivery result as engage.feedback carries it.
func feedbackMsg(partition int, offset int64, fields map[string]any) bus.Message {
	v, err := json.Marshal(fields)
	if err != nil {
		panic(err)
	}
	return bus.Message{Topic: "engage.feedback", Key: fmt.Appendf(nil, "%v/%v", fields["app"], fields["device_id"]), Value: v, Partition: partition, Offset: offset}
}

func feedbackFields(id, device string) map[string]any {
	return map[string]any{"id": id, "delivery_id": "del-" + id, "app": "game", "campaign": "stalled", "version": 42, "device_id": device,
		"channel": "push", "provider": "apns", "outcome": "failed", "reason": "the push token is dead: BadDeviceToken", "attempts": 1, "time": "2026-03-01T09:30:00Z"}
}

// Each kind of bad message is dead with its reason; the good ones around it
// are written; a store that is down is an error to retry, with no dead.
func TestFeedbackWriterDeadLetters(t *testing.T) {
	with := func(id string, mod func(map[string]any)) map[string]any {
		f := feedbackFields(id, "kim")
		mod(f)
		return f
	}
	msgs := []bus.Message{
		feedbackMsg(0, 0, feedbackFields("ok1", "kim")),
		{Topic: "engage.feedback", Value: []byte(`{"id":"x","app":`), Partition: 0, Offset: 1},
		{Topic: "engage.feedback", Value: []byte{0x01, 'K', 'i', 'm'}, Partition: 0, Offset: 2},
		feedbackMsg(0, 3, with("noid", func(f map[string]any) { delete(f, "id") })),
		feedbackMsg(0, 4, with("nodel", func(f map[string]any) { f["delivery_id"] = "" })),
		feedbackMsg(0, 5, with("nocamp", func(f map[string]any) { delete(f, "campaign") })),
		feedbackMsg(0, 6, with("nodev", func(f map[string]any) { f["device_id"] = "" })),
		feedbackMsg(0, 7, with("nooutcome", func(f map[string]any) { delete(f, "outcome") })),
		feedbackMsg(0, 8, with("notime", func(f map[string]any) { delete(f, "time") })),
		feedbackMsg(0, 9, with("old", func(f map[string]any) { f["time"] = "1969-12-31T23:59:59Z" })),
		feedbackMsg(0, 10, with("neg", func(f map[string]any) { f["attempts"] = -1 })),
		feedbackMsg(0, 11, with("typ", func(f map[string]any) { f["attempts"] = "1" })),
		feedbackMsg(0, 12, feedbackFields("p", "poison")),
		feedbackMsg(0, 13, with("noapp", func(f map[string]any) { f["app"] = "" })),
		feedbackMsg(1, 0, feedbackFields("ok2", "bo")),
		feedbackMsg(1, 1, with("future-field", func(f map[string]any) { f["token_hash"] = "ab12" })), // a field the sink does not know yet: kept
		feedbackMsg(1, 2, with("accepted", func(f map[string]any) {
			f["outcome"], f["provider_id"], f["variant"] = "accepted", "1f2e3d4c-0000-4000-8000-000000000001", "bonus"
			delete(f, "reason")
		})),
	}
	store := &resultStore{}
	w := sinks.FeedbackWriter{Store: store, Permanent: func(err error) bool { return errors.Is(err, errRefused) }}
	dead, err := w.Write(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, d := range dead {
		reasons[fmt.Sprintf("%d/%d", d.Msg.Partition, d.Msg.Offset)] = d.Reason
	}
	want := map[string]string{
		"0/1":  "undecodable feedback: unexpected end of JSON input",
		"0/2":  "undecodable feedback: invalid character",
		"0/3":  "invalid feedback: no id",
		"0/4":  "invalid feedback: no delivery_id",
		"0/5":  "invalid feedback: no campaign",
		"0/6":  "invalid feedback: no device_id",
		"0/7":  "invalid feedback: no outcome",
		"0/8":  "invalid feedback: no time",
		"0/9":  "invalid feedback: time 1969-12-31T23:59:59Z is outside 1970-01-01T00:00:01Z..2105-12-31T23:59:59Z",
		"0/10": "invalid feedback: attempts -1 is not in 0..4294967295",
		"0/11": "undecodable feedback: json: cannot unmarshal string into Go struct field",
		"0/12": "refused by the store: " + errRefused.Error(),
		"0/13": "invalid feedback: no app",
	}
	for at, w := range want {
		if !strings.HasPrefix(reasons[at], w) {
			t.Errorf("%s: reason %q, want %q…", at, reasons[at], w)
		}
	}
	if len(dead) != len(want) {
		t.Errorf("%d dead, want %d: %v", len(dead), len(want), reasons)
	}
	var ids []string
	for _, r := range store.rows {
		ids = append(ids, r.ID)
	}
	if fmt.Sprint(ids) != "[ok1 ok2 future-field accepted]" {
		t.Errorf("stored %v", ids)
	}
	if r := store.rows[3]; r.Outcome != "accepted" || r.ProviderID != "1f2e3d4c-0000-4000-8000-000000000001" || r.Variant != "bonus" || r.Reason != "" ||
		r.DeliveryID != "del-accepted" || r.Channel != "push" || r.Provider != "apns" || r.Attempts != 1 || r.Version != 42 ||
		!r.Time.Equal(time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)) || r.Partition != 1 || r.Offset != 2 {
		t.Errorf("accepted row %+v", r)
	}

	store.down = true
	if dead, err := w.Write(context.Background(), msgs[:1]); err == nil || len(dead) != 0 {
		t.Errorf("store down: %v, %d dead; want an error and none", err, len(dead))
	}
}

// resultStream is a generated stream of result messages: redeliveries (the
// same message at the same offset again), results the dispatcher wrote
// again after a restart (the same id at a later offset, a later time) and
// undecodable messages.
type resultStream struct {
	msgs  []bus.Message
	want  map[string]clickhouse.ResultRow // per delivery, its latest copy (highest offset)
	rows  int                             // good messages, copies included
	parts map[string]bool                 // id and month of every copy: rows left after a merge
	bad   map[string]bool                 // partition/offset of the undecodable messages
	lastP map[int]int64
}

func genResults(seed uint64, n int) *resultStream {
	rng := rand.New(rand.NewPCG(seed, 13))
	s := &resultStream{want: map[string]clickhouse.ResultRow{}, parts: map[string]bool{}, bad: map[string]bool{}, lastP: map[int]int64{}}
	outcomes := []string{"accepted", "accepted", "accepted", "failed", "unreachable", "expired", "unknown"}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	next := map[int]int64{}
	var made []clickhouse.ResultRow
	emit := func(r clickhouse.ResultRow, p int) {
		r.Partition, r.Offset = int32(p), next[p]
		next[p]++
		f := map[string]any{"id": r.ID, "delivery_id": r.DeliveryID, "app": r.App, "campaign": r.Campaign, "version": r.Version, "device_id": r.DeviceID,
			"channel": r.Channel, "outcome": r.Outcome, "attempts": r.Attempts, "time": r.Time}
		for k, v := range map[string]string{"variant": r.Variant, "provider": r.Provider, "reason": r.Reason, "provider_id": r.ProviderID} {
			if v != "" {
				f[k] = v
			}
		}
		s.msgs = append(s.msgs, feedbackMsg(p, r.Offset, f))
		s.want[r.DeliveryID] = r
		s.parts[r.ID+r.Time.Format(" 2006-01")] = true
		s.rows++
		made = append(made, r)
	}
	for i := range n {
		dev := fmt.Sprintf("dev-%03d", rng.IntN(150))
		p := len(dev) % 4
		if rng.IntN(4) == 0 {
			p = 3
		}
		switch k := rng.IntN(100); {
		case k < 4: // undecodable
			s.msgs = append(s.msgs, bus.Message{Topic: "engage.feedback", Value: []byte(`{"id":`), Partition: p, Offset: next[p]})
			s.bad[fmt.Sprintf("%d/%d", p, next[p])] = true
			next[p]++
		case k < 10 && len(made) > 0: // redelivered: the same message again
			m := s.msgs[len(s.msgs)-1-rng.IntN(min(len(s.msgs), 50))]
			if !s.bad[fmt.Sprintf("%d/%d", m.Partition, m.Offset)] {
				s.msgs = append(s.msgs, m)
				s.rows++
			}
		case k < 14 && len(made) > 0: // written again after a restart
			r := made[rng.IntN(len(made))]
			r.Time = r.Time.Add(time.Duration(rng.IntN(7200)) * time.Second)
			emit(r, int(r.Partition))
		default:
			id := fmt.Sprintf("%016x%016x", rng.Uint64(), i)
			r := clickhouse.ResultRow{ID: "r" + id, DeliveryID: "d" + id, App: []string{"game", "news"}[rng.IntN(2)], Campaign: fmt.Sprintf("camp-%d", rng.IntN(4)),
				Version: int64(rng.IntN(3) + 1), DeviceID: dev, Channel: "push", Provider: []string{"apns", "fcm", ""}[rng.IntN(3)],
				Outcome: outcomes[rng.IntN(len(outcomes))], Attempts: uint32(rng.IntN(4)), Time: t0.Add(time.Duration(rng.IntN(60*86400)) * time.Second)}
			if r.Outcome == "accepted" {
				r.ProviderID = fmt.Sprintf("%x", rng.Uint64())
			} else {
				r.Reason = fmt.Sprintf("reason %d 'quoted' \\ é", rng.IntN(5))
			}
			if rng.IntN(3) == 0 {
				r.Variant = "v" + fmt.Sprint(rng.IntN(2))
			}
			emit(r, p)
		}
	}
	for _, m := range s.msgs {
		s.lastP[m.Partition] = max(s.lastP[m.Partition], m.Offset)
	}
	return s
}

// The sink loop with FeedbackWriter on the real ClickHouse: every good
// result is stored, each delivery reads as its latest copy before the merge
// and after it, the undecodable messages are dead with their reason, and
// every partition is committed to its end.
func TestFeedbackSinkRoundTrip(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	ctx := context.Background()
	s := genResults(9, 3000)
	src, dead := newSource(s.msgs), bus.NewMemory("dead", 1)
	scfg := sinks.DefaultConfig("dead")
	scfg.BatchRows, scfg.FlushInterval = 400, 20*time.Millisecond
	stop := run(t, scfg, src, sinks.FeedbackWriter{Store: clickhouse.NewWriter(conn, cfg.Database), Permanent: clickhouse.IsPermanent}, dead)
	waitFor(t, "the commits", func() bool {
		for p, last := range s.lastP {
			if src.committedOffset(p) != last {
				return false
			}
		}
		return src.partitionsCommitted() == len(s.lastP)
	})
	stop()

	latest := func() map[string]clickhouse.ResultRow {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT delivery_id, t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8, t.9, t.10, t.11, t.12, t.13, t.14, t.15
			FROM (SELECT delivery_id, argMax(tuple(id, app, campaign, version, variant, device_id, channel, provider, outcome, reason, provider_id, attempts,
					time, kafka_partition, kafka_offset), kafka_offset) AS t
				FROM `+cfg.Database+`.delivery_results GROUP BY device_id, delivery_id)`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		got := map[string]clickhouse.ResultRow{}
		for rows.Next() {
			var r clickhouse.ResultRow
			var p uint32
			var o uint64
			if err := rows.Scan(&r.DeliveryID, &r.ID, &r.App, &r.Campaign, &r.Version, &r.Variant, &r.DeviceID, &r.Channel, &r.Provider, &r.Outcome, &r.Reason,
				&r.ProviderID, &r.Attempts, &r.Time, &p, &o); err != nil {
				t.Fatal(err)
			}
			r.Time, r.Partition, r.Offset = r.Time.UTC(), int32(p), int64(o)
			got[r.DeliveryID] = r
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return got
	}
	compare := func(when string, got map[string]clickhouse.ResultRow) {
		t.Helper()
		if len(got) != len(s.want) {
			t.Errorf("%s: %d deliveries, want %d", when, len(got), len(s.want))
		}
		bad := 0
		for id, w := range s.want {
			if g := got[id]; g != w && bad < 5 {
				bad++
				t.Errorf("%s: %s\n got %+v\nwant %+v", when, id, g, w)
			}
		}
	}
	compare("before the merge", latest())
	var stored uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".delivery_results").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored < uint64(len(s.parts)) || stored > uint64(s.rows) {
		t.Errorf("%d rows stored, want %d (the good messages, copies included) or, after merges, down to %d", stored, s.rows, len(s.parts))
	}
	t.Logf("%d messages: %d deliveries, %d good messages, %d rows stored before OPTIMIZE, %d undecodable", len(s.msgs), len(s.want), s.rows, stored, len(s.bad))

	var reasons []string
	for _, m := range dead.Messages("dead") {
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		if !s.bad[h["source_partition"]+"/"+h["source_offset"]] || h["source_topic"] != "engage.feedback" {
			t.Errorf("dead letter %v is not one of the undecodable messages", h)
		}
		reasons = append(reasons, h["reason"])
	}
	if len(reasons) != len(s.bad) || len(s.bad) == 0 || len(slices.Compact(slices.Sorted(slices.Values(reasons)))) != 1 || !strings.HasPrefix(reasons[0], "undecodable feedback: ") {
		t.Errorf("%d dead letters, want %d, reasons %q", len(reasons), len(s.bad), slices.Compact(slices.Sorted(slices.Values(reasons))))
	}

	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+cfg.Database+".delivery_results FINAL"); err != nil {
		t.Fatal(err)
	}
	compare("after the merge", latest())
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".delivery_results").Scan(&stored); err != nil || stored != uint64(len(s.parts)) {
		t.Errorf("after the merge: %d rows (%v), want one per id and month, %d", stored, err, len(s.parts))
	}
}
