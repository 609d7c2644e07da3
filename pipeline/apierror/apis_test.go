package apierror_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/pipeline/apierror"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/sinks/analytics"
	"github.com/openengage/engage/triggers/scheduler"
)

const (
	writeKey   = "news-write-key-1"
	adminToken = "admin-token-0123456789"
	newsToken  = "news-token-0123456789"
)

// noConn is a ClickHouse connection the error cases never reach: any
// query would panic.
type noConn struct{ driver.Conn }

// The four APIs, each as its command serves it.
func apis(t *testing.T) map[string]http.Handler {
	t.Helper()
	toks, err := apiauth.ParseTokens("-api.tokens", adminToken+":* "+newsToken+":news")
	if err != nil {
		t.Fatal(err)
	}
	noPlans := func(string) (*tagplan.Plan, bool) { return nil, false }

	apps, err := collector.NewApps(&collector.App{ID: "news", WriteKeys: []string{writeKey}})
	if err != nil {
		t.Fatal(err)
	}
	col, err := collector.New(collector.DefaultConfig(), apps, bus.NewMemory("tags", 1), nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	segs := processor.NewStore()
	v, _ := json.Marshal(processor.Definition{App: "news", Name: "readers", Text: `did event "read"`})
	if _, err := segs.Apply(bus.Message{Key: processor.ConfigKey("news", "readers"), Value: v}); err != nil {
		t.Fatal(err)
	}
	proc := &processor.API{Store: segs, Tokens: toks, Plans: noPlans}

	camp := &scheduler.CampaignAPI{Campaigns: scheduler.NewStore(), Segments: segs, Tokens: toks, Plans: noPlans}

	acfg := analytics.DefaultConfig()
	acfg.Tokens = toks
	an, err := analytics.New(noConn{}, "engage", acfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]http.Handler{"collector": col.Handler(), "segments": proc.Handler(), "campaigns": camp.Handler(), "analytics": an.Handler()}
}

// Every API answers its errors in one shape, {"error": {"code",
// "message", …}}, as application/json: each case's body is read by the
// one strict decoder (unknown fields refused).
func TestOneErrorShape(t *testing.T) {
	h := apis(t)
	for _, c := range []struct {
		api, name, method, path, auth, ctype, body string
		status                                     int
		code, param                                string
	}{
		{"collector", "no write key", "POST", "/v1/tags", "", "application/json", "[]", 401, "missing_write_key", ""},
		{"collector", "unknown write key", "POST", "/v1/tags", "Basic " + basic("not-a-key-of-any-app"), "application/json", "[]", 401, "unknown_write_key", ""},
		{"collector", "bad parameter", "POST", "/v1/tags", "Basic " + basic(writeKey), "text/csv", "a,b", 415, "unsupported_content_type", ""},
		{"collector", "malformed JSON", "POST", "/v1/tags", "Basic " + basic(writeKey), "application/json", `[{"kind": }]`, 400, "malformed_json", ""},
		{"collector", "not served", "GET", "/v1/inapp?device=d1", "Basic " + basic(writeKey), "", "", 404, "inapp_not_served", ""},
		{"collector", "no such route", "GET", "/v1/nothing", "", "", "", 404, "not_found", ""},
		{"collector", "method not allowed", "GET", "/v1/tags", "", "", "", 405, "method_not_allowed", ""},

		{"segments", "no token", "GET", "/v1/segments", "", "", "", 401, "unauthorized", ""},
		{"segments", "unknown token", "GET", "/v1/segments", "Bearer not-a-token-0123456789", "", "", 401, "unauthorized", ""},
		{"segments", "another app's token", "GET", "/v1/segments/game/readers", "Bearer " + newsToken, "", "", 403, "forbidden", "app"},
		{"segments", "unknown app", "PUT", "/v1/segments/nope/readers", "Bearer " + adminToken, "text/plain", `did event "read"`, 404, "unknown_app", "app"},
		{"segments", "unknown segment", "GET", "/v1/segments/news/nothing", "Bearer " + adminToken, "", "", 404, "unknown_segment", ""},
		{"segments", "missing parameter", "GET", "/v1/segments/news/readers/explain", "Bearer " + adminToken, "", "", 400, "missing_param", "device"},
		{"segments", "bad parameter", "GET", "/v1/segments/news/readers/explain?device=" + strings.Repeat("d", 300), "Bearer " + adminToken, "", "", 400, "invalid_param", "device"},
		{"segments", "user token between instances", "GET", "/v1/local/statuses?apps=news", "Bearer " + adminToken, "", "", 403, "forbidden", ""},
		{"segments", "no such route", "GET", "/v1/nothing", "Bearer " + adminToken, "", "", 404, "not_found", ""},
		{"segments", "method not allowed", "POST", "/v1/segments", "Bearer " + adminToken, "", "", 405, "method_not_allowed", ""},

		{"campaigns", "no token", "GET", "/v1/campaigns", "", "", "", 401, "unauthorized", ""},
		{"campaigns", "unknown token", "GET", "/v1/campaigns", "Bearer not-a-token-0123456789", "", "", 401, "unauthorized", ""},
		{"campaigns", "another app's token", "GET", "/v1/campaigns/game/welcome", "Bearer " + newsToken, "", "", 403, "forbidden", "app"},
		{"campaigns", "unknown campaign", "GET", "/v1/campaigns/news/welcome", "Bearer " + adminToken, "", "", 404, "unknown_campaign", ""},
		{"campaigns", "campaign with mistakes", "PUT", "/v1/campaigns/news/welcome", "Bearer " + adminToken, "application/yaml", "name: [", 400, "invalid_campaign", ""},
		{"campaigns", "no such route", "GET", "/v1/nothing", "Bearer " + adminToken, "", "", 404, "not_found", ""},
		{"campaigns", "method not allowed", "POST", "/v1/campaigns", "Bearer " + adminToken, "", "", 405, "method_not_allowed", ""},

		{"analytics", "no token", "GET", "/v1/apps/news/active?from=2026-03-02&to=2026-03-03", "", "", "", 401, "unauthorized", ""},
		{"analytics", "unknown token", "GET", "/v1/apps/news/active?from=2026-03-02&to=2026-03-03", "Bearer not-a-token-0123456789", "", "", 401, "unauthorized", ""},
		{"analytics", "another app's token", "GET", "/v1/apps/game/active?from=2026-03-02&to=2026-03-03", "Bearer " + newsToken, "", "", 403, "forbidden", "app"},
		{"analytics", "app without a plan", "GET", "/v1/apps/news/coverage?from=2026-03-02&to=2026-03-03", "Bearer " + adminToken, "", "", 404, "no_plan", "app"},
		{"analytics", "bad parameter", "GET", "/v1/apps/news/active?from=2026-3-2&to=2026-03-03", "Bearer " + adminToken, "", "", 400, "invalid_param", "from"},
		{"analytics", "missing parameter", "GET", "/v1/apps/news/active?to=2026-03-03", "Bearer " + adminToken, "", "", 400, "missing_param", "from"},
		{"analytics", "no such endpoint", "GET", "/v1/apps/news/nothing", "Bearer " + adminToken, "", "", 404, "not_found", ""},
		{"analytics", "method not allowed", "POST", "/v1/apps/news/active", "Bearer " + adminToken, "", "", 405, "method_not_allowed", ""},
	} {
		t.Run(c.api+"/"+c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			rec := httptest.NewRecorder()
			h[c.api].ServeHTTP(rec, req)
			resp := rec.Result()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json: %s", ct, body)
			}
			d, err := apierror.DecodeBytes(body)
			if err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if d.Code != c.code || d.Param != c.param {
				t.Errorf("code %q param %q, want %q %q: %s", d.Code, d.Param, c.code, c.param, body)
			}
			switch c.code {
			case "malformed_json":
				if d.Offset == nil {
					t.Errorf("no offset: %s", body)
				}
			case "invalid_campaign":
				if len(d.Errors) == 0 || !strings.Contains(d.Errors[0], ":") {
					t.Errorf("no mistakes at their line:column: %s", body)
				}
			case "method_not_allowed":
				if resp.Header.Get("Allow") == "" {
					t.Errorf("no Allow header")
				}
			case "unauthorized":
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("no WWW-Authenticate header")
				}
			}
		})
	}
}

// The decoder refuses what is not the shape.
func TestDecodeStrict(t *testing.T) {
	for _, body := range []string{
		`{"error": "unknown bearer token"}`,
		`{"error": {"code": "x", "message": "y", "extra": 1}}`,
		`{"error": {"code": "x", "message": "y"}, "errors": ["a"]}`,
		`{"error": {"code": "", "message": "y"}}`,
		`{"error": {"code": "x", "message": ""}}`,
		`{"error": {"code": "x", "message": "y"}} {}`,
		`{}`,
		`404 page not found`,
	} {
		if d, err := apierror.DecodeBytes([]byte(body)); err == nil {
			t.Errorf("%s: accepted as %+v", body, d)
		}
	}
	d, err := apierror.DecodeBytes([]byte(`{"error": {"code": "malformed_json", "message": "m", "offset": 7}}` + "\n"))
	if err != nil || d.Code != "malformed_json" || d.Offset == nil || *d.Offset != 7 {
		t.Fatalf("%+v %v", d, err)
	}
}

func basic(user string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":"))
}
