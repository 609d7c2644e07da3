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

// decisionStore is a DecisionStore that fails while down and refuses
// decisions of the device "poison" as a store refuses bad data.
type decisionStore struct {
	mu   sync.Mutex
	rows []clickhouse.DecisionRow
	down bool
}

func (s *decisionStore) WriteDecisions(_ context.Context, rows []clickhouse.DecisionRow) error {
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

// decisionMsg is a decision as engage.decisions carries it.
func decisionMsg(partition int, offset int64, fields map[string]any) bus.Message {
	v, err := json.Marshal(fields)
	if err != nil {
		panic(err)
	}
	return bus.Message{Topic: "engage.decisions", Key: fmt.Appendf(nil, "%v/%v", fields["app"], fields["device_id"]), Value: v, Partition: partition, Offset: offset}
}

func decisionFields(id, device string) map[string]any {
	return map[string]any{"id": id, "app": "game", "campaign": "stalled", "version": 42, "device_id": device, "occurrence": "once",
		"outcome": "capped", "reason": "cap of 2 push per day reached", "time": "2026-03-01T09:30:00Z"}
}

// Each kind of bad message is dead with its reason; the good ones around it
// are written; a store that is down is an error to retry, with no dead.
func TestDecisionWriterDeadLetters(t *testing.T) {
	with := func(id string, mod func(map[string]any)) map[string]any {
		f := decisionFields(id, "kim")
		mod(f)
		return f
	}
	msgs := []bus.Message{
		decisionMsg(0, 0, decisionFields("ok1", "kim")),
		{Topic: "engage.decisions", Value: []byte(`{"id":"x","app":`), Partition: 0, Offset: 1},
		{Topic: "engage.decisions", Value: []byte{0x01, 'K', 'i', 'm'}, Partition: 0, Offset: 2},
		decisionMsg(0, 3, with("noid", func(f map[string]any) { delete(f, "id") })),
		decisionMsg(0, 4, with("nodev", func(f map[string]any) { f["device_id"] = "" })),
		decisionMsg(0, 5, with("notime", func(f map[string]any) { delete(f, "time") })),
		decisionMsg(0, 6, with("old", func(f map[string]any) { f["time"] = "1969-12-31T23:59:59Z" })),
		decisionMsg(0, 7, with("far", func(f map[string]any) { f["send_at"] = "2200-01-01T00:00:00Z" })),
		decisionMsg(0, 8, with("typ", func(f map[string]any) { f["version"] = "42" })),
		decisionMsg(0, 9, decisionFields("p", "poison")),
		decisionMsg(1, 0, decisionFields("ok2", "bo")),
		decisionMsg(1, 1, with("future-field", func(f map[string]any) { f["cause"] = "config" })), // a field the sink does not know yet: kept
	}
	store := &decisionStore{}
	w := sinks.DecisionWriter{Store: store, Permanent: func(err error) bool { return errors.Is(err, errRefused) }}
	dead, err := w.Write(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, d := range dead {
		reasons[fmt.Sprintf("%d/%d", d.Msg.Partition, d.Msg.Offset)] = d.Reason
	}
	for at, want := range map[string]string{
		"0/1": "undecodable decision: unexpected end of JSON input",
		"0/2": "undecodable decision: invalid character",
		"0/3": "invalid decision: no id",
		"0/4": "invalid decision: no device_id",
		"0/5": "invalid decision: no time",
		"0/6": "invalid decision: time 1969-12-31T23:59:59Z is outside 1970-01-01T00:00:01Z..2105-12-31T23:59:59Z",
		"0/7": "invalid decision: send_at 2200-01-01T00:00:00Z is outside",
		"0/8": "undecodable decision: json: cannot unmarshal string into Go struct field",
		"0/9": "refused by the store: " + errRefused.Error(),
	} {
		if !strings.HasPrefix(reasons[at], want) {
			t.Errorf("%s: reason %q, want %q…", at, reasons[at], want)
		}
	}
	if len(dead) != 9 {
		t.Errorf("%d dead, want 9: %v", len(dead), reasons)
	}
	var ids []string
	for _, r := range store.rows {
		ids = append(ids, r.ID)
	}
	if fmt.Sprint(ids) != "[ok1 ok2 future-field]" {
		t.Errorf("stored %v", ids)
	}

	store.down = true
	if dead, err := w.Write(context.Background(), msgs[:1]); err == nil || len(dead) != 0 {
		t.Errorf("store down: %v, %d dead; want an error and none", err, len(dead))
	}
}

// decisionStream is a generated stream of decision messages: redeliveries
// (the same message at the same offset again), decisions the scheduler made
// again after a restart (the same id at a later offset, another time and
// reason) and undecodable messages.
type decisionStream struct {
	msgs []bus.Message
	// want is each id's latest copy (highest offset), as the table shows
	// it once merged; rows counts every good message.
	want  map[string]clickhouse.DecisionRow
	rows  int
	parts map[string]bool // id and month of every copy: rows left after a merge (it merges within a month)
	bad   map[string]bool // partition/offset of the undecodable messages
	lastP map[int]int64   // highest offset per partition
}

func genDecisions(seed uint64, n int) *decisionStream {
	rng := rand.New(rand.NewPCG(seed, 11))
	s := &decisionStream{want: map[string]clickhouse.DecisionRow{}, parts: map[string]bool{}, bad: map[string]bool{}, lastP: map[int]int64{}}
	outcomes := []string{"sent", "deferred", "control", "capped", "outranked", "repeat", "quiet", "expired", "ended", "left", "not_sampled", "skipped"}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	next := map[int]int64{}
	var made []clickhouse.DecisionRow
	emit := func(r clickhouse.DecisionRow, p int) {
		r.Partition, r.Offset = int32(p), next[p]
		next[p]++
		f := map[string]any{"id": r.ID, "app": r.App, "campaign": r.Campaign, "version": r.Version, "device_id": r.DeviceID, "occurrence": r.Occurrence,
			"outcome": r.Outcome, "reason": r.Reason, "time": r.Time}
		if !r.SendAt.IsZero() {
			f["send_at"] = r.SendAt
		}
		if r.Variant != "" {
			f["variant"] = r.Variant
		}
		s.msgs = append(s.msgs, decisionMsg(p, r.Offset, f))
		s.want[r.ID] = r // later offsets replace earlier ones
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
			s.msgs = append(s.msgs, bus.Message{Topic: "engage.decisions", Value: []byte(`{"id":`), Partition: p, Offset: next[p]})
			s.bad[fmt.Sprintf("%d/%d", p, next[p])] = true
			next[p]++
		case k < 10 && len(made) > 0: // redelivered: the same message again
			m := s.msgs[len(s.msgs)-1-rng.IntN(min(len(s.msgs), 50))]
			if !s.bad[fmt.Sprintf("%d/%d", m.Partition, m.Offset)] {
				s.msgs = append(s.msgs, m)
				s.rows++
			}
		case k < 14 && len(made) > 0: // decided again after a restart
			r := made[rng.IntN(len(made))]
			r.Time = r.Time.Add(time.Duration(rng.IntN(7200)) * time.Second)
			r.Reason += " (again)"
			emit(r, int(r.Partition))
		default:
			r := clickhouse.DecisionRow{ID: fmt.Sprintf("%016x%016x", rng.Uint64(), i), App: []string{"game", "news"}[rng.IntN(2)],
				Campaign: fmt.Sprintf("camp-%d", rng.IntN(4)), Version: int64(rng.IntN(3) + 1), DeviceID: dev,
				Occurrence: fmt.Sprintf("entry:%x", rng.IntN(1000)), Outcome: outcomes[rng.IntN(len(outcomes))], Reason: fmt.Sprintf("reason %d 'quoted' \\ é", i),
				Time: t0.Add(time.Duration(rng.IntN(60*86400)) * time.Second)}
			if r.Outcome == "deferred" {
				r.SendAt = r.Time.Add(time.Duration(rng.IntN(86400)+1) * time.Second)
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

// The sink loop with DecisionWriter on the real ClickHouse: every good
// decision is stored, each id reads as its latest copy before the merge and
// after it, the undecodable messages are dead with their reason, and every
// partition is committed to its end.
func TestDecisionSinkRoundTrip(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	ctx := context.Background()
	s := genDecisions(5, 3000)
	src, dead := newSource(s.msgs), bus.NewMemory("dead", 1)
	scfg := sinks.DefaultConfig("dead")
	scfg.BatchRows, scfg.FlushInterval = 400, 20*time.Millisecond
	stop := run(t, scfg, src, sinks.DecisionWriter{Store: clickhouse.NewWriter(conn, cfg.Database), Permanent: clickhouse.IsPermanent}, dead)
	waitFor(t, "the commits", func() bool {
		for p, last := range s.lastP {
			if src.committedOffset(p) != last {
				return false
			}
		}
		return src.partitionsCommitted() == len(s.lastP)
	})
	stop()

	// Each id's latest copy, as the API reads it.
	latest := func() map[string]clickhouse.DecisionRow {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT id, t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8, t.9, t.10, t.11, t.12
			FROM (SELECT id, argMax(tuple(app, campaign, version, device_id, occurrence, outcome, reason, time, send_at, variant, kafka_partition, kafka_offset), kafka_offset) AS t
				FROM `+cfg.Database+`.decisions GROUP BY id)`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		got := map[string]clickhouse.DecisionRow{}
		for rows.Next() {
			var r clickhouse.DecisionRow
			var p uint32
			var o uint64
			if err := rows.Scan(&r.ID, &r.App, &r.Campaign, &r.Version, &r.DeviceID, &r.Occurrence, &r.Outcome, &r.Reason, &r.Time, &r.SendAt, &r.Variant, &p, &o); err != nil {
				t.Fatal(err)
			}
			r.Time, r.SendAt, r.Partition, r.Offset = r.Time.UTC(), r.SendAt.UTC(), int32(p), int64(o)
			if r.SendAt.Unix() == 0 {
				r.SendAt = time.Time{}
			}
			got[r.ID] = r
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return got
	}
	compare := func(when string, got map[string]clickhouse.DecisionRow) {
		t.Helper()
		if len(got) != len(s.want) {
			t.Errorf("%s: %d ids, want %d", when, len(got), len(s.want))
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
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".decisions").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	// Background merges may have collapsed some copies already.
	if stored < uint64(len(s.parts)) || stored > uint64(s.rows) {
		t.Errorf("%d rows stored, want %d (the good messages, copies included) or, after merges, down to %d", stored, s.rows, len(s.parts))
	}
	t.Logf("%d messages: %d decisions, %d good messages, %d rows stored before OPTIMIZE, %d undecodable", len(s.msgs), len(s.want), s.rows, stored, len(s.bad))

	var reasons []string
	for _, m := range dead.Messages("dead") {
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		if !s.bad[h["source_partition"]+"/"+h["source_offset"]] || h["source_topic"] != "engage.decisions" {
			t.Errorf("dead letter %v is not one of the undecodable messages", h)
		}
		reasons = append(reasons, h["reason"])
	}
	if len(reasons) != len(s.bad) || len(slices.Compact(slices.Sorted(slices.Values(reasons)))) != 1 || !strings.HasPrefix(reasons[0], "undecodable decision: ") {
		t.Errorf("%d dead letters, want %d, reasons %q", len(reasons), len(s.bad), slices.Compact(slices.Sorted(slices.Values(reasons))))
	}

	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+cfg.Database+".decisions FINAL"); err != nil {
		t.Fatal(err)
	}
	compare("after the merge", latest())
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".decisions").Scan(&stored); err != nil || stored != uint64(len(s.parts)) {
		t.Errorf("after the merge: %d rows (%v), want one per id and month, %d", stored, err, len(s.parts))
	}
}
