package processor_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments/processor"
)

// The segments API against a processor on the real broker: create with
// checks against the tag plan, live size, members, explain, update,
// delete, and the token rules.
func TestSegmentsAPI(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	cfg := topics(t, brokers, 2)
	cfg.FlushInterval = 20 * time.Millisecond
	cfg.SimulatedClock = false // the wall clock, and the engine's batch path
	plan, err := tagplan.ParseFile("../testdata/plans/game.yaml")
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, cfg.ChangesTopic), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	store := processor.NewStore()
	proc, err := processor.New(cfg, store, prod, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	api := &processor.API{Proc: proc, Store: store, Config: prod, Topic: cfg.ConfigTopic,
		Tokens: map[string][]string{"admin-token": {"*"}, "game-token": {"game"}, "other-token": {"news"}},
		Plans: func(app string) (*tagplan.Plan, bool) {
			if app == "game" {
				return plan, true
			}
			return nil, false
		}}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()

	call := func(method, path, token, ctype, body string) (int, string) {
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
		b, _ := io.ReadAll(resp.Body)
		var e struct{ Error string }
		if resp.StatusCode >= 400 && json.Unmarshal(b, &e) == nil && e.Error != "" {
			return resp.StatusCode, e.Error // the message, unescaped
		}
		return resp.StatusCode, string(b)
	}
	expect := func(status int, want string, gotStatus int, body string) {
		t.Helper()
		if gotStatus != status || !strings.Contains(body, want) {
			t.Fatalf("got %d %s, want %d containing %q", gotStatus, body, status, want)
		}
	}

	// Tokens.
	code, body := call("GET", "/v1/segments", "", "", "")
	expect(401, "missing bearer token", code, body)
	code, body = call("GET", "/v1/segments", "nope", "", "")
	expect(401, "unknown bearer token", code, body)
	code, body = call("PUT", "/v1/segments/game/high", "other-token", "text/plain", `app_info "level" >= 3`)
	expect(403, `may not manage app "game"`, code, body)

	// Checks: syntax with line:column, the plan's names and types.
	code, body = call("PUT", "/v1/segments/game/high", "game-token", "text/plain", `app_info "level" >=`)
	expect(422, "1:20", code, body)
	code, body = call("PUT", "/v1/segments/game/high", "game-token", "text/plain", `did event "level_complete"`)
	expect(422, `level_completed`, code, body) // the suggestion
	code, body = call("PUT", "/v1/segments/game/high", "game-token", "text/plain", `app_info "level" >= "five"`)
	expect(422, "number", code, body)
	code, body = call("PUT", "/v1/segments/game/bad name", "game-token", "text/plain", `app_info "level" >= 3`)
	expect(422, `segment name "bad name"`, code, body)
	code, body = call("PUT", "/v1/segments/news/x", "admin-token", "text/plain", `app_info "level" >= 3`)
	expect(404, `unknown app "news"`, code, body)

	// Create (text), then the same through the JSON form.
	code, body = call("PUT", "/v1/segments/game/high", "game-token", "text/plain", `app_info "level" >= 3`)
	expect(200, `"name":"high"`, code, body)
	code, body = call("PUT", "/v1/segments/game/buyers", "game-token", "application/json",
		`{"expr": {"did": {"kind": "event", "name": "purchase", "count": {"op": ">=", "n": 2}}}}`)
	expect(200, `"text":"did event \"purchase\" at least 2 times"`, code, body)
	code, body = call("PUT", "/v1/segments/game/both", "game-token", "application/json", `{"text": "segment \"high\" and segment \"buyers\""}`)
	expect(200, `"name":"both"`, code, body)

	// Data: three devices.
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var msgs []bus.Message
	add := func(r tag.Record) {
		r.AppID, r.MessageID = "game", r.DeviceID+"-"+r.Time.Format("150405.000")
		msgs = append(msgs, bus.Message{Key: r.Key(), Value: r.AppendBinary(nil)})
	}
	add(tag.Record{Kind: tag.KindAppInfo, DeviceID: "d1", Time: t0, AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(5)}}})
	add(tag.Record{Kind: tag.KindAppInfo, DeviceID: "d2", Time: t0, AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(1)}}})
	add(tag.Record{Kind: tag.KindAppInfo, DeviceID: "d3", Time: t0, AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(4)}}})
	for i := range 2 {
		add(tag.Record{Kind: tag.KindEvent, DeviceID: "d1", Name: "purchase", Time: t0.Add(time.Duration(i+1) * time.Minute)})
	}
	add(tag.Record{Kind: tag.KindEvent, DeviceID: "d3", Name: "purchase", Time: t0.Add(time.Minute)})
	produce(t, brokers, cfg.Topic, msgs)

	// Live sizes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body = call("GET", "/v1/segments?app=game", "game-token", "", "")
		var resp struct {
			Segments []processor.SegmentInfo `json:"segments"`
		}
		_ = json.Unmarshal([]byte(body), &resp)
		sizes := map[string]int{}
		for _, s := range resp.Segments {
			if s.Size != nil {
				sizes[s.Name] = *s.Size
			}
		}
		if code == 200 && sizes["high"] == 2 && sizes["buyers"] == 1 && sizes["both"] == 1 {
			if len(resp.Segments[0].Partitions) != 2 {
				t.Fatalf("partitions listed: %v", resp.Segments[0].Partitions)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sizes %v after 30 s: %s", sizes, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body = call("GET", "/v1/segments/game/high/members", "game-token", "", "")
	if code != 200 || body != "d1\nd3\n" && body != "d3\nd1\n" {
		t.Fatalf("members: %d %q", code, body)
	}
	code, body = call("GET", "/v1/segments/game/both/explain?device=d3", "game-token", "", "")
	expect(200, `"member":false`, code, body)
	if !strings.Contains(body, `{"clause":"segment \"buyers\"","detail":"not a member","value":false}`) {
		t.Fatalf("explain lacks the failing clause: %s", body)
	}
	code, body = call("GET", "/v1/segments/game/both/explain", "game-token", "", "")
	expect(400, "?device=", code, body)
	code, body = call("GET", "/v1/segments/game/both/explain?device=nobody", "game-token", "", "")
	expect(404, "not on the partitions", code, body)

	// Update: the members change at once, from the state already held.
	code, body = call("PUT", "/v1/segments/game/high", "game-token", "text/plain", `app_info "level" >= 5`)
	expect(200, `"size":1`, code, body)

	// Delete: refused while referenced, then accepted.
	code, body = call("DELETE", "/v1/segments/game/high", "game-token", "", "")
	expect(409, `"both" refers to "high"`, code, body)
	code, body = call("DELETE", "/v1/segments/game/both", "game-token", "", "")
	expect(200, `"deleted":true`, code, body)
	code, body = call("GET", "/v1/segments/game/both", "game-token", "", "")
	expect(404, "has no segment", code, body)
}
