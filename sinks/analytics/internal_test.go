package analytics

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// TestQueriesAreReadOnly checks the second line of defence: even a
// statement that reached the server through the API's query path could
// not write, because every query runs with readonly=2.
func TestQueriesAreReadOnly(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	acfg := DefaultConfig()
	acfg.Tokens = mustTokens(t, map[string][]string{"0123456789abcdef": {"*"}})
	a, err := New(conn, cfg.Database, acfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, sql := range []string{
		"CREATE TABLE " + cfg.Database + ".evil (a UInt8) ENGINE = Memory",
		"DROP TABLE " + cfg.Database + ".tags",
		"INSERT INTO " + cfg.Database + ".schema_migrations (version, description, applied_at) SELECT 99, 'x', now()",
	} {
		err := a.each(ctx, sql, nil, func(driver.Rows) error { return nil })
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "readonly") {
			t.Errorf("%s: %v, want a readonly refusal", sql, err)
		}
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = 'tags'", cfg.Database).Scan(&n); err != nil || n != 1 {
		t.Fatalf("tags table: %d, %v", n, err)
	}
}

func TestRoute(t *testing.T) {
	for _, tc := range []struct {
		path, app, endpoint, args string
		ok                        bool
	}{
		{"/v1/apps/news/active", "news", "active", "map[]", true},
		{"/v1/apps/a%2Fb/top", "a/b", "top", "map[]", true},
		{"/v1/apps/../top", "..", "top", "map[]", true},
		{"/v1/apps/o%27r%20x/jobs", "o'r x", "jobs", "map[]", true},
		{"/v1/apps/news/active/x", "", "", "", false},
		{"/v1/apps/news", "", "", "", false},
		{"/v2/apps/news/active", "", "", "", false},
		{"/v1/apps/news/campaigns/welcome/decisions", "news", campaignDecisions, "map[campaign:welcome]", true},
		{"/v1/apps/a%2Fb/campaigns/welcome/stats", "a/b", campaignStats, "map[campaign:welcome]", true},
		{"/v1/apps/news/campaigns/welcome/stats/x", "", "", "", false},
		{"/v1/apps/news/campaigns/welcome/devices/d%2F1/decisions", "news", deviceDecisions, "map[campaign:welcome device:d/1]", true},
		{"/v1/apps/news/campaigns/welcome/devices/d1", "", "", "", false},
		{"/v1/apps/news/campaigns/welcome/devices/d1/decisions/x", "", "", "", false},
		{"/v1/apps/news/campaigns/welcome/deliveries", "", "", "", false},
		// The campaign routes' names are not endpoints of the short form.
		{"/v1/apps/news/campaigns%2F%7Bcampaign%7D%2Fdecisions", "news", "campaigns%2F%7Bcampaign%7D%2Fdecisions", "map[]", true},
	} {
		app, ep, args, ok := route(httptest.NewRequest("GET", tc.path, nil))
		if ok != tc.ok || ok && (app != tc.app || ep != tc.endpoint || fmt.Sprint(args) != tc.args) {
			t.Errorf("%s: %q %q %v %v, want %q %q %s %v", tc.path, app, ep, args, ok, tc.app, tc.endpoint, tc.args, tc.ok)
		}
	}
}

// TestSummarize holds the one-line answer to its wording, case by case:
// occurrences end with their last decision, a rate deferral belongs to its
// send's occurrence.
func TestSummarize(t *testing.T) {
	at := func(hhmm string) time.Time {
		t, _ := time.Parse(time.RFC3339, "2026-03-01T"+hhmm+":00Z")
		return t
	}
	due := at("12:30")
	for _, tc := range []struct {
		name  string
		decs  []Decision
		sent  int
		occs  string
		wants string
	}{
		{"none", nil, 0, "", "no decisions for this device in this campaign"},
		{"deferred then sent", []Decision{
			{Time: at("09:30"), Occurrence: "entry:1", Outcome: "deferred", Reason: "waits until 2026-03-01T12:30:00Z (quiet hours)", SendAt: &due},
			{Time: at("12:30"), Occurrence: "entry:1", Outcome: "sent", Reason: "sent", Variant: "bonus"},
		}, 1, "entry:1=sent/2", "sent at 2026-03-01T12:30:00Z"},
		{"rate deferral then sent", []Decision{
			{Time: at("09:30"), Occurrence: "entry:1/rate@1772357460", Outcome: "deferred", Reason: "the campaign's rate of 100/s: waits until …"},
			{Time: at("09:31"), Occurrence: "entry:1", Outcome: "sent", Reason: "sent"},
		}, 1, "entry:1=sent/2", "sent at 2026-03-01T09:31:00Z"},
		{"still deferred", []Decision{
			{Time: at("09:30"), Occurrence: "entry:1", Outcome: "deferred", Reason: "waits until 2026-03-01T12:30:00Z", SendAt: &due},
		}, 0, "entry:1=deferred/1", "not sent yet: deferred at 2026-03-01T09:30:00Z: waits until 2026-03-01T12:30:00Z"},
		{"capped", []Decision{
			{Time: at("09:30"), Occurrence: "day:2026-03-01", Outcome: "capped", Reason: "cap of 2 push per day reached"},
		}, 0, "day:2026-03-01=capped/1", "not sent: capped at 2026-03-01T09:30:00Z: cap of 2 push per day reached"},
		{"never sent, two occurrences", []Decision{
			{Time: at("09:00"), Occurrence: "entry:1", Outcome: "control", Reason: "held out as control group"},
			{Time: at("10:00"), Occurrence: "entry:2", Outcome: "deferred", Reason: "waits"},
			{Time: at("11:00"), Occurrence: "entry:2", Outcome: "left", Reason: "left the audience before the send"},
		}, 0, "entry:1=control/1 entry:2=left/2",
			"not sent: left at 2026-03-01T11:00:00Z: left the audience before the send (none of 2 occurrences was sent)"},
		{"sent twice", []Decision{
			{Time: at("09:00"), Occurrence: "day:1", Outcome: "sent", Reason: "sent"},
			{Time: at("10:00"), Occurrence: "day:2", Outcome: "sent", Reason: "sent"},
		}, 2, "day:1=sent/1 day:2=sent/1", "sent 2 times, last at 2026-03-01T10:00:00Z"},
		{"sent once of three", []Decision{
			{Time: at("09:00"), Occurrence: "day:1", Outcome: "sent", Reason: "sent"},
			{Time: at("10:00"), Occurrence: "day:2", Outcome: "quiet", Reason: "fell in quiet hours"},
			{Time: at("11:00"), Occurrence: "day:3", Outcome: "outranked", Reason: "a higher-priority campaign took the last slot"},
		}, 1, "day:1=sent/1 day:2=quiet/1 day:3=outranked/1",
			"sent 1 of 3 times, last at 2026-03-01T09:00:00Z; latest not sent: outranked at 2026-03-01T11:00:00Z: a higher-priority campaign took the last slot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			occs, sent, summary := summarize(tc.decs)
			var got []string
			for _, o := range occs {
				got = append(got, fmt.Sprintf("%s=%s/%d", o.Occurrence, o.Outcome, o.Decisions))
			}
			if sent != tc.sent || strings.Join(got, " ") != tc.occs || summary != tc.wants {
				t.Errorf("sent %d, occurrences %q,\nsummary %q;\nwant %d, %q,\n        %q", sent, got, summary, tc.sent, tc.occs, tc.wants)
			}
		})
	}
}

// FuzzParams feeds raw query strings to the parameter parsers: they must
// not panic, and what they accept must keep their promises.
func FuzzParams(f *testing.F) {
	for _, s := range []string{
		"from=2026-01-01&to=2026-01-31", "steps=event:a,activity:b", "steps=job:x:y,error:z&window=60",
		"steps=event:a,event:a", "days=30", "from=2026-02-30", "steps=%00", "steps=event:,event:b", "from=9999-12-31",
		"within=24h", "within=7d", "within=1.5s", "within=-1h", "within=9223372036854775807d", "within=90d", "within=2160h0m1s",
	} {
		f.Add(s)
	}
	all := []string{"from", "to", "steps", "days", "window", "kind", "name", "key", "limit", "period", "within"}
	f.Fuzz(func(t *testing.T, raw string) {
		q, e := parseQuery(raw, all)
		if e != nil {
			if e.status != 400 || e.code == "" {
				t.Fatalf("error %+v", e)
			}
			return
		}
		if steps, e := q.steps(); e == nil {
			if len(steps) < minSteps || len(steps) > maxSteps {
				t.Fatalf("%d steps accepted", len(steps))
			}
			seen := map[Step]bool{}
			for _, s := range steps {
				if stepKinds[s.Kind] == nil || checkText(s.Name, maxNameLen) != "" || strings.Contains(s.Name, ",") || seen[s] {
					t.Fatalf("step %+v accepted", s)
				}
				seen[s] = true
			}
		}
		if from, to, e := q.dateRange(DefaultMaxRange); e == nil {
			if from.After(to) || to.Sub(from) >= DefaultMaxRange || from.Before(minDate) || to.After(maxDate) {
				t.Fatalf("range %s..%s accepted", from, to)
			}
			if from.Location() != time.UTC || from.Hour() != 0 {
				t.Fatalf("from %s is not a UTC day", from)
			}
		}
		if d, e := q.duration("within", 24*time.Hour, maxWithin); e == nil && (d < time.Second || d > maxWithin || d%time.Second != 0) {
			t.Fatalf("within %s accepted", d)
		} else if e != nil && e.param != "within" {
			t.Fatalf("within refused as %+v", e)
		}
		if n, e := q.integer("days", 30, 1, 90); e == nil && (n < 1 || n > 90) {
			t.Fatalf("days %d accepted", n)
		}
		if s, e := q.text("name", maxNameLen, ""); e == nil && checkText(s, maxNameLen) != "" {
			t.Fatalf("name %q accepted", s)
		}
	})
}

// TestQueryTimeout checks that a query running past QueryTimeout ends with
// an error the handler answers as 504 (its context is done, or
// ClickHouse reports a timeout).
func TestQueryTimeout(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	acfg := DefaultConfig()
	acfg.Tokens = mustTokens(t, map[string][]string{"0123456789abcdef": {"*"}})
	acfg.QueryTimeout = time.Second
	a, err := New(conn, cfg.Database, acfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), acfg.QueryTimeout)
	defer cancel()
	start := time.Now()
	err = a.each(ctx, "SELECT count() FROM system.numbers WHERE sipHash64(number) = 0", nil, func(driver.Rows) error { return nil })
	if err == nil || !timedOut(ctx, err) {
		t.Fatalf("error %v after %s, want a timeout", err, time.Since(start))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to stop", d)
	}
}

func mustTokens(t testing.TB, m map[string][]string) *apiauth.Tokens {
	t.Helper()
	toks, err := apiauth.NewTokens("tokens", m)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}
