package analytics_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/sinks/analytics"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Param   string `json:"param"`
	} `json:"error"`
}

const rangeQ = "from=2026-03-02&to=2026-04-10"

func testErrors(t *testing.T, f *fixture) {
	long := strings.Repeat("n", 257)
	steps11 := strings.Repeat("event:a,", 10) + "event:b"
	for _, tc := range []struct {
		name, token, method, path string
		status                    int
		code, param               string
	}{
		{"lower-case scheme", "-lower", "GET", "/v1/apps/news/active?" + rangeQ, 200, "", ""},
		{"no token", "", "GET", "/v1/apps/news/active?" + rangeQ, 401, "unauthorized", ""},
		{"unknown token", "not-a-token-at-all-000", "GET", "/v1/apps/news/active?" + rangeQ, 401, "unauthorized", ""},
		{"basic auth", "-basic", "GET", "/v1/apps/news/active?" + rangeQ, 401, "unauthorized", ""},
		{"other app", newsToken, "GET", "/v1/apps/other/active?" + rangeQ, 403, "forbidden", "app"},
		{"own app", newsToken, "GET", "/v1/apps/news/active?" + rangeQ, 200, "", ""},
		{"escaped app id", oddToken, "GET", appPath(oddApp, "active") + "?" + rangeQ, 200, "", ""},
		{"scoped token, unknown app", oddToken, "GET", "/v1/apps/news/top?" + rangeQ, 403, "forbidden", "app"},
		{"unknown endpoint", allToken, "GET", "/v1/apps/news/nope", 404, "not_found", ""},
		{"no endpoint", allToken, "GET", "/v1/apps/news", 404, "not_found", ""},
		{"POST", allToken, "POST", "/v1/apps/news/active?" + rangeQ, 405, "method_not_allowed", ""},
		{"app too long", allToken, "GET", "/v1/apps/" + strings.Repeat("a", 129) + "/active?" + rangeQ, 400, "invalid_param", "app"},
		{"app control char", allToken, "GET", "/v1/apps/a%01b/active?" + rangeQ, 400, "invalid_param", "app"},
		{"from missing", allToken, "GET", "/v1/apps/news/active?to=2026-04-10", 400, "missing_param", "from"},
		{"to missing", allToken, "GET", "/v1/apps/news/sessions?from=2026-04-10", 400, "missing_param", "to"},
		{"from bad", allToken, "GET", "/v1/apps/news/active?from=2026-3-2&to=2026-04-10", 400, "invalid_param", "from"},
		{"from no day", allToken, "GET", "/v1/apps/news/active?from=2026-02-30&to=2026-04-10", 400, "invalid_param", "from"},
		{"from after to", allToken, "GET", "/v1/apps/news/active?from=2026-04-11&to=2026-04-10", 400, "invalid_param", "from"},
		{"401 days", allToken, "GET", "/v1/apps/news/active?from=2025-03-06&to=2026-04-10", 400, "range_too_long", "to"},
		{"400 days", allToken, "GET", "/v1/apps/news/active?from=2025-03-07&to=2026-04-10", 200, "", ""},
		{"before 1970", allToken, "GET", "/v1/apps/news/active?from=1969-12-31&to=1970-01-02", 400, "invalid_param", "from"},
		{"period", allToken, "GET", "/v1/apps/news/active?period=year&" + rangeQ, 400, "invalid_param", "period"},
		{"unknown param", allToken, "GET", "/v1/apps/news/active?foo=1&" + rangeQ, 400, "unknown_param", "foo"},
		{"param of another endpoint", allToken, "GET", "/v1/apps/news/active?days=1&" + rangeQ, 400, "unknown_param", "days"},
		{"repeated param", allToken, "GET", "/v1/apps/news/active?from=2026-03-02&" + rangeQ, 400, "invalid_param", "from"},
		{"malformed query", allToken, "GET", "/v1/apps/news/active?from=%zz", 400, "malformed_query", ""},
		{"days 0", allToken, "GET", "/v1/apps/news/retention?days=0&" + rangeQ, 400, "invalid_param", "days"},
		{"days 91", allToken, "GET", "/v1/apps/news/retention?days=91&" + rangeQ, 400, "invalid_param", "days"},
		{"days text", allToken, "GET", "/v1/apps/news/retention?days=7d&" + rangeQ, 400, "invalid_param", "days"},
		{"steps missing", allToken, "GET", "/v1/apps/news/funnel?" + rangeQ, 400, "missing_param", "steps"},
		{"one step", allToken, "GET", "/v1/apps/news/funnel?steps=event:a&" + rangeQ, 400, "invalid_param", "steps"},
		{"11 steps", allToken, "GET", "/v1/apps/news/funnel?steps=" + steps11 + "&" + rangeQ, 400, "invalid_param", "steps"},
		{"step without kind", allToken, "GET", "/v1/apps/news/funnel?steps=a,event:b&" + rangeQ, 400, "invalid_param", "steps"},
		{"step kind", allToken, "GET", "/v1/apps/news/funnel?steps=screen:a,event:b&" + rangeQ, 400, "invalid_param", "steps"},
		{"step empty name", allToken, "GET", "/v1/apps/news/funnel?steps=event:,event:b&" + rangeQ, 400, "invalid_param", "steps"},
		{"step name too long", allToken, "GET", "/v1/apps/news/funnel?steps=event:" + long + ",event:b&" + rangeQ, 400, "invalid_param", "steps"},
		{"step name 256 bytes", allToken, "GET", "/v1/apps/news/funnel?steps=event:" + long[1:] + ",event:b&" + rangeQ, 200, "", ""},
		{"steps repeat", allToken, "GET", "/v1/apps/news/funnel?steps=event:a,event:b,event:a&" + rangeQ, 400, "invalid_param", "steps"},
		{"window 0", allToken, "GET", "/v1/apps/news/funnel?steps=event:a,event:b&window=0&" + rangeQ, 400, "invalid_param", "window"},
		{"window too long", allToken, "GET", "/v1/apps/news/funnel?steps=event:a,event:b&window=7776001&" + rangeQ, 400, "invalid_param", "window"},
		{"top kind", allToken, "GET", "/v1/apps/news/top?kind=session&" + rangeQ, 400, "invalid_param", "kind"},
		{"top limit 0", allToken, "GET", "/v1/apps/news/top?limit=0&" + rangeQ, 400, "invalid_param", "limit"},
		{"top limit 1001", allToken, "GET", "/v1/apps/news/top?limit=1001&" + rangeQ, 400, "invalid_param", "limit"},
		{"jobs name missing", allToken, "GET", "/v1/apps/news/jobs?" + rangeQ, 400, "missing_param", "name"},
		{"jobs name control", allToken, "GET", "/v1/apps/news/jobs?name=a%0Ab&" + rangeQ, 400, "invalid_param", "name"},
		{"jobs name too long", allToken, "GET", "/v1/apps/news/jobs?name=" + long + "&" + rangeQ, 400, "invalid_param", "name"},
		{"key missing", allToken, "GET", "/v1/apps/news/app-info", 400, "missing_param", "key"},
		{"key syntax", allToken, "GET", "/v1/apps/news/app-info?key=a-b", 400, "invalid_param", "key"},
		{"key too long", allToken, "GET", "/v1/apps/news/app-info?key=" + strings.Repeat("k", 65), 400, "invalid_param", "key"},
		{"no plan", allToken, "GET", "/v1/apps/other/coverage?" + rangeQ, 404, "no_plan", "app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			switch tc.token {
			case "":
			case "-basic":
				req.Header.Set("Authorization", "Basic "+allToken)
			case "-lower":
				req.Header.Set("Authorization", "bearer "+allToken)
			default:
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if tc.status == 200 {
				return
			}
			var e apiErr
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("%v: %s", err, rec.Body)
			}
			if e.Error.Code != tc.code || e.Error.Param != tc.param || e.Error.Message == "" {
				t.Errorf("error %+v, want code %q param %q", e.Error, tc.code, tc.param)
			}
			if tc.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			t.Logf("%d %s", rec.Code, e.Error.Message)
		})
	}
}

// payloads try to end the string literal they land in, or to smuggle a
// placeholder, a comment or a second statement.
var payloads = []string{
	`x' OR 1=1 --`, `'`, `\`, `\'`, `\\'`, `' OR ''='`, `x\' OR 1=1 --`, `news' --`, `news\`,
	`"; DROP TABLE tags; --`, `'); DROP DATABASE default; --`, `' UNION ALL SELECT 1 --`,
	`?`, `$1`, `{name:String}`, `%`, `_`, "\x00", "a\nb", "it's \u00e9 \U0001F600", `/*`, "`", "a/b", "x/../news", "..", " ",
}

// testInjection sends every payload in every string parameter. Each must
// be refused with 400 or read as a literal: the answer equals the
// reference for that literal (empty, as no such app or name exists).
func testInjection(t *testing.T, f *fixture) {
	from, to := date("2026-03-02"), date("2026-04-10")
	tr := f.tr
	// The payloads in parallel (the queries only read), all before the
	// rows are counted again.
	t.Run("payloads", func(t *testing.T) {
		for i, p := range payloads {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				injectOne(t, f, tr, p, from, to)
			})
		}
	})
	if n := f.count(t, "count()"); n != f.total {
		t.Fatalf("tags has %d rows after the injection attempts, had %d", n, f.total)
	}
}

// injectOne sends payload p in every string parameter.
func injectOne(t *testing.T, f *fixture, tr *truth, p string, from, to time.Time) {
	for _, tc := range []struct {
		path string
		want any
	}{
		{appPath(p, "active", "from", "2026-03-02", "to", "2026-04-10"), tr.active(p, from, to, "day")},
		{appPath(p, "retention", "from", "2026-03-02", "to", "2026-04-10", "days", "3"), tr.retention(p, from, to, 3)},
		{appPath(p, "top", "from", "2026-03-02", "to", "2026-04-10"), tr.top(p, from, to, "event", 20)},
		{appPath(p, "app-info", "key", "plan"), tr.appInfo(p, "plan", 100)},
		{appPath(newsApp, "jobs", "from", "2026-03-02", "to", "2026-04-10", "name", p), tr.jobs(newsApp, from, to, p)},
		{appPath(newsApp, "jobs", "from", "2026-03-02", "to", "2026-04-10", "name", "login"+p), tr.jobs(newsApp, from, to, "login"+p)},
		{appPath(newsApp, "funnel", "from", "2026-03-02", "to", "2026-04-10", "steps", "event:article_read,event:"+p),
			tr.funnel(newsApp, from, to, []analytics.Step{{Kind: "event", Name: "article_read"}, {Kind: "event", Name: p}}, 86400)},
		{appPath(newsApp, "app-info", "key", "plan"+p), tr.appInfo(newsApp, "plan"+p, 100)},
		{appPath(newsApp, "top", "from", "2026-03-02", "to", "2026-04-10", "kind", "event"+p), nil},
		{appPath(newsApp, "active", "from", "2026-03-02", "to", "2026-04-10", "period", "day"+p), nil},
		{appPath(newsApp, "active", "from", "2026-03-02"+p, "to", "2026-04-10"), nil},
	} {
		code, body := get(f.h, allToken, tc.path)
		switch {
		case code == http.StatusBadRequest:
		case code == http.StatusOK && tc.want != nil:
			compareJSON(t, tc.path, body, tc.want)
		case code == http.StatusForbidden && strings.HasPrefix(tc.path, "/v1/apps/news"):
		default:
			t.Errorf("%q: status %d: %s", tc.path, code, body)
		}
	}
	// A scoped token cannot widen its scope.
	if code, _ := get(f.h, newsToken, appPath(newsApp+p, "active", "from", "2026-03-02", "to", "2026-04-10")); code != 403 && code != 400 {
		t.Errorf("news token on %q: status %d", newsApp+p, code)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := analytics.DefaultConfig()
	ok.Tokens = mustTokens(t, map[string][]string{"0123456789abcdef": {"news", "*"}})
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*analytics.Config){
		"no tokens":     func(c *analytics.Config) { c.Tokens = nil },
		"empty tokens":  func(c *analytics.Config) { c.Tokens = &apiauth.Tokens{} },
		"range":         func(c *analytics.Config) { c.MaxRange = time.Hour },
		"retention":     func(c *analytics.Config) { c.MaxRetentionDays = 0 },
		"window":        func(c *analytics.Config) { c.MaxFunnelWindow = 0 },
		"limit":         func(c *analytics.Config) { c.MaxLimit = 0 },
		"query timeout": func(c *analytics.Config) { c.QueryTimeout = 0 },
	} {
		c := ok
		mod(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), "0123456789abcdef") {
			t.Errorf("%s: error shows the token: %v", name, err)
		}
	}
	if _, err := analytics.New(nil, "db", ok, nil, nil); err == nil {
		t.Error("New without a connection")
	}
}

func TestNewRefusesBadDatabase(t *testing.T) {
	cfg := analytics.DefaultConfig()
	cfg.Tokens = mustTokens(t, map[string][]string{"0123456789abcdef": {"*"}})
	conn, _, _ := chtest.Database(t)
	if _, err := analytics.New(conn, "db; DROP", cfg, nil, nil); err == nil {
		t.Error("database name with SQL accepted")
	}
}
