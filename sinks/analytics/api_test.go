package analytics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/sinks/analytics"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// Tokens of the tests' API.
const (
	allToken  = "all-apps-token-000001"
	newsToken = "news-only-token-00001"
	oddToken  = "odd-app-token-0000001"
)

var plans = analytics.PlanSourceFunc(func(app string) (analytics.PlannedTags, bool) {
	switch app {
	case newsApp:
		return newsPlanned, true
	case oddApp:
		return oddPlanned, true
	case "bench":
		return analytics.PlannedTags{Tags: []analytics.PlannedTag{{"activity", "home"}, {"event", "e0"}, {"event", "e1"}, {"job", "sync"}}}, true
	}
	return analytics.PlannedTags{}, false
})

func mustTokens(t testing.TB, m map[string][]string) *apiauth.Tokens {
	t.Helper()
	toks, err := apiauth.NewTokens("tokens", m)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

func newAPI(t testing.TB, conn driver.Conn, db string) http.Handler {
	t.Helper()
	cfg := analytics.DefaultConfig()
	cfg.Tokens = mustTokens(t, map[string][]string{allToken: {"*"}, newsToken: {newsApp}, oddToken: {oddApp, otherApp}})
	log := slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := analytics.New(conn, db, cfg, log, plans)
	if err != nil {
		t.Fatal(err)
	}
	return a.Handler()
}

// tlog writes the API's log lines to the test's log.
type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// fixture is one database loaded with the seeded dataset, shared by the
// tests of this package.
type fixture struct {
	conn  driver.Conn
	db    string
	ds    *dataset
	tr    *truth
	h     http.Handler
	total uint64 // rows stored, duplicates included
}

// loaded builds the fixture in a fresh database that lives as long as t;
// the tests that share it run as subtests of TestAPI.
func loaded(t *testing.T) *fixture {
	t.Helper()
	conn, cfg, _ := chtest.Database(t)
	start := time.Now()
	ds := generate(t, 20260302, map[string]int{newsApp: 400, oddApp: 30, otherApp: 50}, 40)
	ds.load(t, clickhouse.NewWriter(conn, cfg.Database))
	t.Logf("dataset: %d records, %d rows with redeliveries, loaded in %s", len(ds.recs), len(ds.rows), time.Since(start).Round(time.Millisecond))
	f := &fixture{conn: conn, db: cfg.Database, ds: ds, tr: &truth{recs: ds.recs}, h: newAPI(t, conn, cfg.Database)}
	f.total = f.count(t, "count()")
	if distinct := f.count(t, "uniqExact(app, device_id, message_id)"); distinct != uint64(len(ds.recs)) || f.total == distinct {
		t.Fatalf("stored %d rows, %d distinct: want %d distinct and some duplicates", f.total, distinct, len(ds.recs))
	}
	return f
}

func (f *fixture) count(t testing.TB, expr string) uint64 {
	t.Helper()
	var n uint64
	if err := f.conn.QueryRow(context.Background(), "SELECT "+expr+" FROM "+f.db+".tags").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// get calls the handler and returns the status and body.
func get(h http.Handler, token, path string) (int, []byte) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func appPath(app, endpoint string, params ...string) string {
	p := "/v1/apps/" + url.PathEscape(app) + "/" + endpoint
	if len(params) > 0 {
		v := url.Values{}
		for i := 0; i+1 < len(params); i += 2 {
			v.Set(params[i], params[i+1])
		}
		p += "?" + v.Encode()
	}
	return p
}

// check asks the API and compares its answer with want, as JSON, floats
// within a relative 1e-9 (means are summed in another order).
func check(t *testing.T, h http.Handler, path string, want any) {
	t.Helper()
	code, body := get(h, allToken, path)
	if code != http.StatusOK {
		t.Fatalf("%s: status %d: %s", path, code, body)
	}
	compareJSON(t, path, body, want)
}

// compareJSON compares an answer of the API with want as check does.
func compareJSON(t *testing.T, path string, body []byte, want any) {
	t.Helper()
	var got, exp any
	wb, _ := json.Marshal(want)
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	_ = json.Unmarshal(wb, &exp)
	if diffs := diff("", got, exp, nil); len(diffs) > 0 {
		t.Errorf("%s: %d differences, first: %s\n got: %.600s\nwant: %.600s", path, len(diffs), strings.Join(diffs[:min(5, len(diffs))], "; "), body, wb)
	}
}

func diff(path string, got, want any, out []string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return append(out, fmt.Sprintf("%s: got %v, want %v", path, got, want))
		}
		for k := range w {
			out = diff(path+"."+k, g[k], w[k], out)
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return append(out, fmt.Sprintf("%s: got %d items, want %d", path, lenOf(got), len(w)))
		}
		for i := range w {
			out = diff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i], out)
		}
	case float64:
		g, ok := got.(float64)
		if !ok || math.Abs(g-w) > 1e-9*math.Max(1, math.Abs(w)) {
			return append(out, fmt.Sprintf("%s: got %v, want %v", path, got, want))
		}
	default:
		if got != want {
			return append(out, fmt.Sprintf("%s: got %v, want %v", path, got, want))
		}
	}
	return out
}

func lenOf(v any) int {
	if s, ok := v.([]any); ok {
		return len(s)
	}
	return -1
}

func date(s string) time.Time {
	d, err := time.Parse(layout, s)
	if err != nil {
		panic(err) // test constants only
	}
	return d
}

// ranges exercise the whole dataset, a middle stretch starting mid-week,
// one day, and a range with no data.
var ranges = [][2]string{{"2026-03-02", "2026-04-10"}, {"2026-03-11", "2026-03-29"}, {"2026-03-17", "2026-03-17"}, {"2025-01-01", "2025-02-01"}}

var funnels = []string{
	"event:article_read,event:shared",
	"activity:home,event:article_read,event:shared,job:sync",
	"activity:login,job:login,event:logged_in",
	"event:" + oddEvent + ",job:" + oddJob + ",crash:NullPointer",
	"error:timeout,error:connection_failure,activity:settings,event:foo",
}

// TestAPI compares every endpoint with the reference computed in Go from
// the generated records, on the real ClickHouse, before and after the
// tables merge the redeliveries away.
func TestAPI(t *testing.T) {
	f := loaded(t)
	t.Run("Reference", func(t *testing.T) { f.compareAll(t) })
	t.Run("Errors", func(t *testing.T) { testErrors(t, f) })
	t.Run("Injection", func(t *testing.T) { testInjection(t, f) })
	t.Run("AfterMerge", func(t *testing.T) {
		for _, table := range []string{"tags", "app_info", "devices", "sessions", "active_daily"} {
			if err := f.conn.Exec(context.Background(), "OPTIMIZE TABLE "+f.db+"."+table+" FINAL"); err != nil {
				t.Fatal(err)
			}
		}
		if n := f.count(t, "count()"); n != uint64(len(f.ds.recs)) {
			t.Fatalf("after OPTIMIZE FINAL: %d rows, want %d", n, len(f.ds.recs))
		}
		f.compareAll(t)
	})
}

// compareAll compares every endpoint of every app with the reference, the
// apps in parallel (the queries only read; the reference is computed once
// per app).
func (f *fixture) compareAll(t *testing.T) {
	for _, app := range []string{newsApp, oddApp, otherApp} {
		t.Run(app, func(t *testing.T) {
			t.Parallel()
			f.compareApp(t, app)
		})
	}
}

func (f *fixture) compareApp(t *testing.T, app string) {
	tr, h := f.tr, f.h
	for _, r := range ranges {
		from, to := date(r[0]), date(r[1])
		p := func(endpoint string, kv ...string) string {
			return appPath(app, endpoint, append([]string{"from", r[0], "to", r[1]}, kv...)...)
		}
		for _, period := range []string{"day", "week", "month"} {
			check(t, h, p("active", "period", period), tr.active(app, from, to, period))
		}
		check(t, h, p("new-devices"), tr.newDevices(app, from, to))
		check(t, h, p("sessions"), tr.sessions(app, from, to))
		for _, days := range []int{1, 7, 30} {
			check(t, h, p("retention", "days", fmt.Sprint(days)), tr.retention(app, from, to, days))
		}
		for _, steps := range funnels {
			for _, window := range []int{60, 600, 86400} {
				check(t, h, p("funnel", "steps", steps, "window", fmt.Sprint(window)), tr.funnel(app, from, to, parseSteps(steps), window))
			}
		}
		for _, kind := range []string{"event", "activity", "job", "error", "crash"} {
			check(t, h, p("top", "kind", kind, "limit", "3"), tr.top(app, from, to, kind, 3))
			check(t, h, p("top", "kind", kind, "limit", "1000"), tr.top(app, from, to, kind, 1000))
		}
		for _, name := range append(jobNames, "never") {
			check(t, h, p("jobs", "name", name), tr.jobs(app, from, to, name))
		}
		if app != otherApp {
			check(t, h, p("coverage"), tr.coverage(app, from, to, map[string]analytics.PlannedTags{newsApp: newsPlanned, oddApp: oddPlanned}[app]))
		}
	}
	for _, key := range []string{"plan", "logged_in", "level", "nickname", "absent"} {
		check(t, h, appPath(app, "app-info", "key", key), tr.appInfo(app, key, 100))
		check(t, h, appPath(app, "app-info", "key", key, "limit", "2"), tr.appInfo(app, key, 2))
	}
}

func parseSteps(s string) []analytics.Step {
	var out []analytics.Step
	for _, p := range strings.Split(s, ",") {
		k, n, _ := strings.Cut(p, ":")
		out = append(out, analytics.Step{Kind: k, Name: n})
	}
	return out
}
