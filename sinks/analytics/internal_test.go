package analytics

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// TestQueriesAreReadOnly checks the second line of defence: even a
// statement that reached the server through the API's query path could
// not write, because every query runs with readonly=2.
func TestQueriesAreReadOnly(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	acfg := DefaultConfig()
	acfg.Tokens = map[string][]string{"0123456789abcdef": {"*"}}
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
		path, app, endpoint string
		ok                  bool
	}{
		{"/v1/apps/news/active", "news", "active", true},
		{"/v1/apps/a%2Fb/top", "a/b", "top", true},
		{"/v1/apps/../top", "..", "top", true},
		{"/v1/apps/o%27r%20x/jobs", "o'r x", "jobs", true},
		{"/v1/apps/news/active/x", "", "", false},
		{"/v1/apps/news", "", "", false},
		{"/v2/apps/news/active", "", "", false},
	} {
		app, ep, ok := route(httptest.NewRequest("GET", tc.path, nil))
		if ok != tc.ok || ok && (app != tc.app || ep != tc.endpoint) {
			t.Errorf("%s: %q %q %v, want %q %q %v", tc.path, app, ep, ok, tc.app, tc.endpoint, tc.ok)
		}
	}
}

// FuzzParams feeds raw query strings to the parameter parsers: they must
// not panic, and what they accept must keep their promises.
func FuzzParams(f *testing.F) {
	for _, s := range []string{
		"from=2026-01-01&to=2026-01-31", "steps=event:a,activity:b", "steps=job:x:y,error:z&window=60",
		"steps=event:a,event:a", "days=30", "from=2026-02-30", "steps=%00", "steps=event:,event:b", "from=9999-12-31",
	} {
		f.Add(s)
	}
	all := []string{"from", "to", "steps", "days", "window", "kind", "name", "key", "limit", "period"}
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
	acfg.Tokens = map[string][]string{"0123456789abcdef": {"*"}}
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
