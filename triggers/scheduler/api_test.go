package scheduler

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/segments/processor"
)

const apiCampaignYAML = `
app: game
name: stalled
what:
  content:
    en: {title: "Stuck?", body: "Boosters."}
  default_locale: en
who:
  segments: [stalled]
when:
  on_entry: {delay: 30m}
`

const apiCampaignJSON = `{"app": "game", "name": "lapsed",
 "what": {"content": {"en": {"title": "We miss you", "body": "Come back"}}, "default_locale": "en"},
 "who": {"segments": ["lapsed"], "control": "10%"},
 "when": {"on_entry": {"delay": "2d", "at": "10:00"}}}`

// The tests' tokens.
const (
	gameToken  = "game-token-0123456789"
	otherToken = "other-token-0123456789"
	adminToken = "admin-token-0123456789"
)

func testTokens(t *testing.T) *apiauth.Tokens {
	t.Helper()
	toks, err := apiauth.ParseTokens("-api.tokens", gameToken+":game "+otherToken+":news "+adminToken+":*")
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

func newTestAPI(t *testing.T) (*CampaignAPI, *bus.Memory, *httptest.Server) {
	t.Helper()
	segs := processor.NewStore()
	for i, name := range []string{"stalled", "lapsed"} {
		v, _ := json.Marshal(processor.Definition{App: "game", Name: name, Text: `did event "play"`})
		if _, err := segs.Apply(bus.Message{Key: processor.ConfigKey("game", name), Value: v, Offset: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	log := bus.NewMemory("config", 1)
	a := &CampaignAPI{Campaigns: NewStore(), Segments: segs, Config: log, Topic: "config",
		Tokens: testTokens(t),
		Now:    func() time.Time { return time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC) }}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return a, log, srv
}

func call(t *testing.T, srv *httptest.Server, method, path, token, ctype, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s %s: %s: %v", method, path, data, err)
	}
	return resp.StatusCode, v
}

// The campaigns API stores what it checked (YAML or JSON), refuses each
// mistake at its line:column, scopes tokens to apps, lists and deletes.
func TestCampaignAPI(t *testing.T) {
	a, log, srv := newTestAPI(t)
	sync := func() {
		for i, m := range log.Messages("config") {
			m.Offset = int64(100 + i)
			if _, err := a.Campaigns.Apply(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if code, v := call(t, srv, "PUT", "/v1/campaigns/game/stalled", gameToken, "application/yaml", apiCampaignYAML); code != 200 || v["stored"] != true {
		t.Fatalf("PUT YAML: %d %v", code, v)
	}
	if code, v := call(t, srv, "PUT", "/v1/campaigns/game/lapsed", gameToken, "application/json", apiCampaignJSON); code != 200 || v["stored"] != true {
		t.Fatalf("PUT JSON: %d %v", code, v)
	}
	sync()
	set, _ := a.Campaigns.Current()
	if len(set.Campaigns) != 2 || len(set.Errors) != 0 {
		t.Fatalf("stored set: %d campaigns, errors %v", len(set.Campaigns), set.Errors)
	}
	if c := set.Campaigns[0]; c.Name != "lapsed" || c.Who.Control != 10 || c.When.Delay != 48*time.Hour || c.Version != 101 {
		t.Errorf("the JSON campaign as stored: %+v", c)
	}
	code, v := call(t, srv, "GET", "/v1/campaigns?app=game", gameToken, "", "")
	if list, _ := v["campaigns"].([]any); code != 200 || len(list) != 2 {
		t.Errorf("list: %d %v", code, v)
	}
	if code, v := call(t, srv, "GET", "/v1/campaigns/game/stalled", adminToken, "", ""); code != 200 || v["source"] != apiCampaignYAML || v["when"] != "on_entry" {
		t.Errorf("get: %d %v", code, v)
	}

	// Mistakes, each at its line:column; nothing stored.
	before := len(log.Messages("config"))
	bad := strings.Replace(strings.Replace(apiCampaignYAML, "[stalled]", "[stalld]", 1), "default_locale: en", "default_locale: de", 1)
	code, v = call(t, srv, "PUT", "/v1/campaigns/game/stalled", gameToken, "application/yaml", bad)
	errs, _ := errorOf(v)["errors"].([]any)
	if all := strings.Join(toStrings(errs), "\n"); code != 400 || len(errs) != 2 || !strings.Contains(all, `request.yaml:9:14: unknown segment "stalld"`) || !strings.Contains(all, `request.yaml:6:5: content has no message for the default locale "de"`) {
		t.Errorf("bad YAML: %d %v", code, v)
	}
	code, v = call(t, srv, "PUT", "/v1/campaigns/game/lapsed", gameToken, "application/json", strings.Replace(apiCampaignJSON, `["lapsed"]`, `["lapsd"]`, 1))
	errs, _ = errorOf(v)["errors"].([]any)
	if code != 400 || len(errs) != 1 || !strings.Contains(toStrings(errs)[0], `request.json:3:`) || !strings.Contains(toStrings(errs)[0], `"lapsd"`) {
		t.Errorf("unknown segment in JSON: %d %v", code, v)
	}
	if code, v = call(t, srv, "PUT", "/v1/campaigns/game/other", gameToken, "application/yaml", apiCampaignYAML); code != 400 || !strings.Contains(fmt.Sprint(errorOf(v)["message"]), `the path says "other"`) {
		t.Errorf("name differs from the path: %d %v", code, v)
	}
	if n := len(log.Messages("config")); n != before {
		t.Errorf("refused campaigns were stored: %d messages, %d before", n, before)
	}

	// Tokens.
	if code, _ := call(t, srv, "PUT", "/v1/campaigns/game/stalled", "", "application/yaml", apiCampaignYAML); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, _ := call(t, srv, "PUT", "/v1/campaigns/game/stalled", otherToken, "application/yaml", apiCampaignYAML); code != 403 {
		t.Errorf("another app's token: %d", code)
	}
	if code, v := call(t, srv, "GET", "/v1/campaigns", otherToken, "", ""); code != 200 || len(v["campaigns"].([]any)) != 0 {
		t.Errorf("another app's token lists: %d %v", code, v)
	}
	// A token is looked up whole (by its hash): a wrong one with the right
	// prefix, a prefix, one with a byte more.
	for _, tok := range []string{gameToken[:len(gameToken)-1] + "X", gameToken[:len(gameToken)-1], gameToken + "0", adminToken[:16]} {
		if code, _ := call(t, srv, "GET", "/v1/campaigns?app=game", tok, "", ""); code != 401 {
			t.Errorf("token %q: %d", tok, code)
		}
	}

	// Delete.
	if code, v := call(t, srv, "DELETE", "/v1/campaigns/game/stalled", gameToken, "", ""); code != 200 || v["deleted"] != true {
		t.Errorf("delete: %d %v", code, v)
	}
	msgs := log.Messages("config")
	if last := msgs[len(msgs)-1]; string(last.Key) != "campaign/game/stalled" || last.Value != nil {
		t.Errorf("delete wrote %q %q, want a tombstone", last.Key, last.Value)
	}
	if code, _ := call(t, srv, "DELETE", "/v1/campaigns/game/nothing", gameToken, "", ""); code != 404 {
		t.Errorf("delete a missing campaign: %d", code)
	}
}

func toStrings(xs []any) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i], _ = x.(string)
	}
	return out
}

// errorOf is the content of an error body, {"error": {...}}.
func errorOf(v map[string]any) map[string]any {
	e, _ := v["error"].(map[string]any)
	return e
}
