package analytics_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/sinks/analytics"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// TestClickHouseStalledOrDown checks what a request gets when ClickHouse
// stops answering (504 once the connection's query timeout passes, not a
// hang) or is unreachable (503 with Retry-After once the connection's
// retries are spent), in the shared error shape, and that the API answers
// again when ClickHouse is back. ClickHouse is the real one, behind a
// proxy that stalls or drops the connections.
func TestClickHouseStalledOrDown(t *testing.T) {
	_, cfg, _ := chtest.Database(t) // a migrated database
	proxy := chtest.StartProxy(t, cfg.Addr[0])
	ccfg := cfg
	ccfg.Addr = []string{proxy.Addr()}
	ccfg.QueryTimeout, ccfg.QueryAttempts = time.Second, 2
	conn, _, err := clickhouse.Open(context.Background(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const token = "stalled-or-down-token-0123456789"
	acfg := analytics.DefaultConfig()
	if acfg.Tokens, err = apiauth.NewTokens("tokens", map[string][]string{token: {"*"}}); err != nil {
		t.Fatal(err)
	}
	api, err := analytics.New(conn, cfg.Database, acfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func() *httptest.ResponseRecorder {
		t.Helper()
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			req := httptest.NewRequest("GET", "/v1/apps/news/active?"+rangeQ, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			api.Handler().ServeHTTP(rec, req)
		}()
		select {
		case <-done:
		case <-time.After(time.Minute): // acfg.QueryTimeout is 30 s: the connection's 1 s must end it first
			t.Fatal("request still running after a minute")
		}
		return rec
	}
	expect := func(what string, rec *httptest.ResponseRecorder, status int, code, inMessage string) {
		t.Helper()
		if rec.Code != status {
			t.Fatalf("%s: status %d (%s), want %d", what, rec.Code, rec.Body, status)
		}
		if code == "" {
			return
		}
		var e apiErr
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != code || !strings.Contains(e.Error.Message, inMessage) {
			t.Fatalf("%s: body %s (%v), want code %q with %q", what, rec.Body, err, code, inMessage)
		}
	}

	expect("ClickHouse up", get(), http.StatusOK, "", "")

	proxy.Stall(true)
	expect("ClickHouse stalled", get(), http.StatusGatewayTimeout, "timeout", "1s")
	proxy.Stall(false)

	proxy.Drop()
	rec := get()
	expect("ClickHouse down", rec, http.StatusServiceUnavailable, "unavailable", "try again")
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}

	proxy.Restore()
	expect("ClickHouse back", get(), http.StatusOK, "", "")
}
