package collector_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
)

const siteKey = "site-write-key-1"

// corsServer serves two apps: "news" with no origins set (any origin on the
// tracking endpoints, none on /v1/inapp), and "site" whose pages are on
// https://www.example.com only.
func corsServer(t *testing.T, mutate func(*collector.Config)) (*httptest.Server, *bus.Memory) {
	t.Helper()
	apps, err := collector.NewApps(
		&collector.App{ID: "news", WriteKeys: []string{key}},
		&collector.App{ID: "site", WriteKeys: []string{siteKey}, Origins: []string{"https://www.example.com"}, RateLimit: 1000},
	)
	if err != nil {
		t.Fatal(err)
	}
	cfg := collector.DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	log := bus.NewMemory("tags", 1)
	s, err := collector.New(cfg, apps, log, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetInbox(anyInbox{})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, log
}

func do(t *testing.T, method, url, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// The tracking endpoints, the ones analytics.js calls included (/v1/t, /v1/p,
// /v1/i… and /v1/b), answer a browser's preflight from any origin, without
// a write key: 204 with the methods and headers they take, for 2 hours, and
// never credentials. /v1/inapp answers only origins an app lists.
func TestCORSPreflight(t *testing.T) {
	srv, _ := corsServer(t, nil)
	post := []string{"/v1/tags", "/v1/batch", "/v1/track", "/v1/screen", "/v1/page", "/v1/identify", "/v1/group", "/v1/alias",
		"/v1/b", "/v1/t", "/v1/s", "/v1/p", "/v1/i", "/v1/g", "/v1/a"}
	for _, path := range append(post, "/v1/projects/"+key+"/settings") {
		method := "POST"
		if strings.HasSuffix(path, "/settings") {
			method = "GET"
		}
		resp, body := do(t, "OPTIONS", srv.URL+path, "", "Origin", "https://shop.example.org",
			"Access-Control-Request-Method", method, "Access-Control-Request-Headers", "authorization,content-type")
		h := resp.Header
		if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
			t.Errorf("%s: %d %q", path, resp.StatusCode, body)
		}
		if h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Access-Control-Allow-Methods") != method ||
			h.Get("Access-Control-Max-Age") != "7200" || h.Get("Access-Control-Allow-Credentials") != "" || !hasVary(h) {
			t.Errorf("%s: headers %v", path, h)
		}
		allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
		for _, want := range []string{"content-type", "authorization", "x-write-key", "content-encoding", "x-sent-at", "x-retry-count"} {
			if !strings.Contains(allowed, want) {
				t.Errorf("%s: %s not in Access-Control-Allow-Headers %q", path, want, allowed)
			}
		}
	}

	// /v1/inapp: only the origins an app lists.
	resp, _ := do(t, "OPTIONS", srv.URL+"/v1/inapp", "", "Origin", "https://shop.example.org", "Access-Control-Request-Method", "GET")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("inapp preflight from an origin no app lists: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = do(t, "OPTIONS", srv.URL+"/v1/inapp", "", "Origin", "https://www.example.com", "Access-Control-Request-Method", "GET")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://www.example.com" || resp.Header.Get("Access-Control-Allow-Methods") != "GET" {
		t.Errorf("inapp preflight from a listed origin: %d %v", resp.StatusCode, resp.Header)
	}

	// An OPTIONS that is no preflight says what the path takes.
	resp, _ = do(t, "OPTIONS", srv.URL+"/v1/t", "")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Allow") != "POST, OPTIONS" || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("plain OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}
}

// A preflight costs nothing: it is answered at once without reading the
// body it announces, and the connection is closed.
func TestCORSPreflightReadsNothing(t *testing.T) {
	srv, _ := corsServer(t, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, "OPTIONS /v1/batch HTTP/1.1\r\nHost: collector\r\nOrigin: https://a.example\r\n"+
		"Access-Control-Request-Method: POST\r\nContent-Length: 100000000\r\n\r\nfirst bytes of a body that never ends")
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" || !resp.Close {
		t.Fatalf("%d close=%v %v", resp.StatusCode, resp.Close, resp.Header)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("answered after %s", d)
	}
}

// The answers to a browser's requests: any origin may send with the keys of
// an app that lists none ("*"); an app that lists origins gets those
// echoed, and a browser request from any other origin is refused with 403
// before its body is read (or, the key being in the body, before it is
// decoded); requests without an Origin (servers, mobile SDKs) are not
// concerned. A 401 is readable by a page of an origin some app allows.
func TestCORSRequests(t *testing.T) {
	srv, log := corsServer(t, nil)
	track := `{"anonymousId":"web-1","event":"article_read"}`
	type tc struct {
		name, method, path, body string
		headers                  []string
		status                   int
		allowOrigin              string
	}
	basic := func(k string) string {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(k, "")
		return r.Header.Get("Authorization")
	}
	for _, c := range []tc{
		{"any origin, app without origins", "POST", "/v1/t", track, []string{"Origin", "https://a.example", "Content-Type", "text/plain", "Authorization", basic(key)}, 200, "*"},
		{"listed origin", "POST", "/v1/t", track, []string{"Origin", "https://www.example.com", "Content-Type", "text/plain", "Authorization", basic(siteKey)}, 200, "https://www.example.com"},
		{"other origin", "POST", "/v1/t", track, []string{"Origin", "https://a.example", "Content-Type", "text/plain", "Authorization", basic(siteKey)}, 403, ""},
		{"other origin, key in the body", "POST", "/v1/t", `{"writeKey":"` + siteKey + `","anonymousId":"web-1","event":"e"}`, []string{"Origin", "https://a.example", "Content-Type", "text/plain"}, 403, ""},
		{"listed origin, key in the body", "POST", "/v1/b", `{"writeKey":"` + siteKey + `","batch":[{"type":"page","anonymousId":"web-1","name":"home"}]}`, []string{"Origin", "https://www.example.com", "Content-Type", "text/plain"}, 200, "https://www.example.com"},
		{"other origin, native", "POST", "/v1/tags", `[{"type":"event","deviceId":"web-1","name":"e"}]`, []string{"Origin", "http://www.example.com", "Content-Type", "application/json", "X-Write-Key", siteKey}, 403, ""},
		{"listed origin, native", "POST", "/v1/tags", `[{"type":"event","deviceId":"web-1","name":"e"}]`, []string{"Origin", "https://www.example.com", "Content-Type", "application/json", "X-Write-Key", siteKey}, 200, "https://www.example.com"},
		{"no origin: not a browser", "POST", "/v1/track", track, []string{"Content-Type", "application/json", "Authorization", basic(siteKey)}, 200, ""},
		{"settings, any origin", "GET", "/v1/projects/" + key + "/settings", "", []string{"Origin", "https://a.example"}, 200, "*"},
		{"settings, other origin", "GET", "/v1/projects/" + siteKey + "/settings", "", []string{"Origin", "https://a.example"}, 403, ""},
		{"inapp, app without origins", "GET", "/v1/inapp?device=web-1", "", []string{"Origin", "https://a.example", "X-Write-Key", key}, 403, ""},
		{"inapp, listed origin", "GET", "/v1/inapp?device=web-1", "", []string{"Origin", "https://www.example.com", "Authorization", "Bearer " + siteKey}, 200, "https://www.example.com"},
		{"inapp, no origin", "GET", "/v1/inapp?device=web-1", "", []string{"X-Write-Key", key}, 200, ""},
		{"unknown key from a browser", "POST", "/v1/t", track, []string{"Origin", "https://a.example", "Content-Type", "text/plain", "Authorization", basic("nobody-key-1")}, 401, "*"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, c.method, srv.URL+c.path, c.body, c.headers...)
			h := resp.Header
			if resp.StatusCode != c.status || h.Get("Access-Control-Allow-Origin") != c.allowOrigin || h.Get("Access-Control-Allow-Credentials") != "" || !hasVary(h) {
				t.Fatalf("%d %q, Access-Control-Allow-Origin %q; want %d %q\n%s", resp.StatusCode, h.Get("Access-Control-Allow-Origin"), h.Get("Vary"), c.status, c.allowOrigin, body)
			}
			if c.allowOrigin != "" && h.Get("Access-Control-Expose-Headers") != "Retry-After" {
				t.Errorf("Access-Control-Expose-Headers %q", h.Get("Access-Control-Expose-Headers"))
			}
			if c.status == 403 {
				var e collector.ErrorBody
				if json.Unmarshal(body, &e); e.Error.Code != "origin_not_allowed" || !strings.Contains(e.Error.Message, "https://a.example") && !strings.Contains(e.Error.Message, "http://www.example.com") {
					t.Errorf("403 body %s", body)
				}
				if !resp.Close {
					t.Errorf("the connection of a refused request stays open")
				}
			}
		})
	}
	for _, m := range log.Messages("tags") {
		if strings.HasPrefix(string(m.Key), "site/") && !strings.Contains(string(m.Value), "web-1") {
			t.Errorf("unexpected record %q", m.Key)
		}
	}
}

// The settings point analytics.js at the collector: apiHost, and the
// protocol when the public URL says it.
func TestSettingsProtocol(t *testing.T) {
	for _, c := range []struct{ public, host, protocol string }{
		{"", "", ""},
		{"http://collector.internal:8080", "collector.internal:8080/v1", "http"},
		{"https://collect.example.com/", "collect.example.com/v1", "https"},
		{"collect.example.com", "collect.example.com/v1", ""},
	} {
		srv, _ := corsServer(t, func(cfg *collector.Config) { cfg.PublicURL = c.public })
		_, body := do(t, "GET", srv.URL+"/v1/projects/"+key+"/settings", "", "Origin", "https://a.example")
		var s struct {
			Integrations map[string]map[string]any `json:"integrations"`
		}
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatal(err)
		}
		seg := s.Integrations["Segment.io"]
		host := c.host
		if host == "" {
			host = strings.TrimPrefix(srv.URL, "http://") + "/v1"
		}
		if seg["apiHost"] != host || seg["protocol"] != nil && seg["protocol"] != c.protocol || seg["protocol"] == nil && c.protocol != "" {
			t.Errorf("public URL %q: %v", c.public, seg)
		}
	}
}

// The apps file's origins are checked and written as browsers send them.
func TestAppsOrigins(t *testing.T) {
	good := `
apps:
  - id: site
    write_keys: [site-write-key-1]
    origins: ["HTTPS://WWW.Example.com:443/", "http://localhost:3000", "*"]
`
	if _, err := collector.ParseApps("apps.yaml", []byte(good), nil); err != nil {
		t.Fatal(err)
	}
	apps, err := collector.ParseApps("apps.yaml", []byte(strings.Replace(good, `, "*"`, "", 1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := collector.New(collector.DefaultConfig(), apps, bus.NewMemory("tags", 1), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for origin, want := range map[string]int{"https://www.example.com": 200, "http://localhost:3000": 200, "https://example.com": 403, "http://localhost:3001": 403} {
		resp, _ := do(t, "POST", srv.URL+"/v1/t", `{"anonymousId":"w","event":"e"}`, "Origin", origin, "X-Write-Key", "site-write-key-1", "Content-Type", "text/plain")
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", origin, resp.StatusCode, want)
		}
	}
	for _, bad := range []string{`"null"`, `"https://*.example.com"`, `"https://www.example.com/app"`, `"www.example.com"`, `""`, `"https://www.example.com?x=1"`} {
		_, err := collector.ParseApps("apps.yaml", []byte(strings.Replace(good, `"HTTPS://WWW.Example.com:443/"`, bad, 1)), nil)
		if err == nil || !strings.Contains(err.Error(), "origins") {
			t.Errorf("origin %s: %v", bad, err)
		}
	}
}

func hasVary(h http.Header) bool {
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "Origin") {
				return true
			}
		}
	}
	return false
}
