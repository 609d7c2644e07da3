package collector_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
)

const (
	key        = "news-write-key-1"
	enforceKey = "shop-write-key-1"
	limitedKey = "game-write-key-1"
)

const newsPlan = `
app: news
mode: warn
activities:
  home: {}
events:
  article_read:
    extras: {category: string, words: number}
jobs:
  login: {}
app_info:
  logged_in: bool
`

const shopPlan = `
app: shop
mode: enforce
events:
  add_to_cart:
    extras: {sku: string}
`

type fixture struct {
	t   *testing.T
	log *bus.Memory
	srv *httptest.Server
}

func newFixture(t *testing.T, mutate func(*collector.Config)) *fixture {
	t.Helper()
	news, err := tagplan.Parse("news.yaml", []byte(newsPlan))
	if err != nil {
		t.Fatal(err)
	}
	shop, err := tagplan.Parse("shop.yaml", []byte(shopPlan))
	if err != nil {
		t.Fatal(err)
	}
	apps, err := collector.NewApps(
		&collector.App{ID: "news", WriteKeys: []string{key}, Plan: news},
		&collector.App{ID: "shop", WriteKeys: []string{enforceKey}, Plan: shop},
		&collector.App{ID: "game", WriteKeys: []string{limitedKey}, RateLimit: 10, Burst: 10},
	)
	if err != nil {
		t.Fatal(err)
	}
	cfg := collector.DefaultConfig()
	cfg.ProduceTimeout = 500 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	log := bus.NewMemory("tags", 4)
	s, err := collector.New(cfg, apps, log, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &fixture{t: t, log: log, srv: srv}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) post(path, contentType, writeKey string, body []byte, headers ...string) reply {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if writeKey != "" {
		req.SetBasicAuth(writeKey, "")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func (r reply) response(t *testing.T) collector.Response {
	t.Helper()
	var resp collector.Response
	if err := json.Unmarshal(r.body, &resp); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return resp
}

func (r reply) errorBody(t *testing.T) collector.ErrorBody {
	t.Helper()
	var e collector.ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not an error body: %s", r.body)
	}
	return e
}

func (f *fixture) stored() []tag.Record {
	f.t.Helper()
	var out []tag.Record
	for _, m := range f.log.Messages("tags") {
		var r tag.Record
		if err := r.UnmarshalBinary(m.Value); err != nil {
			f.t.Fatal(err)
		}
		if string(m.Key) != r.AppID+"/"+r.DeviceID {
			f.t.Fatalf("key %q for record of %s/%s", m.Key, r.AppID, r.DeviceID)
		}
		out = append(out, r)
	}
	return out
}

func TestAcceptsArrayAndStoresExactly(t *testing.T) {
	f := newFixture(t, nil)
	body := `[{"type":"session_start","deviceId":"d1","messageId":"m1","time":"2026-11-28T09:00:00Z"},
	{"type":"event","deviceId":"d1","messageId":"m2","name":"article_read","extras":{"category":"sport","words":640}}]`
	r := f.post("/v1/tags", "application/json", key, []byte(body))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if resp := r.response(t); resp.Accepted != 2 || len(resp.Rejected) != 0 {
		t.Fatalf("response %+v", resp)
	}
	got := f.stored()
	if len(got) != 2 || got[0].MessageID != "m1" || got[1].Name != "article_read" || got[1].AppID != "news" {
		t.Fatalf("stored %+v", got)
	}
	if w, ok := got[1].Extra("words"); !ok || w.Num != 640 {
		t.Fatalf("extras %+v", got[1].Extras)
	}
}

func TestNDJSONGzip(t *testing.T) {
	f := newFixture(t, nil)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for i := 0; i < 50; i++ {
		io.WriteString(zw, `{"type":"activity_start","deviceId":"d2","name":"home"}`+"\n\n")
	}
	zw.Close()
	r := f.post("/v1/tags", "application/x-ndjson", key, buf.Bytes(), "Content-Encoding", "gzip")
	if r.status != http.StatusOK || r.response(t).Accepted != 50 || len(f.stored()) != 50 {
		t.Fatalf("status %d body %s stored %d", r.status, r.body, len(f.stored()))
	}
}

func TestMixedBatchRefusesOnlyBadRecords(t *testing.T) {
	f := newFixture(t, nil)
	body := `[
	{"type":"event","deviceId":"d1","name":"article_read"},
	{"type":"event","deviceId":"d1"},
	{"type":"event","deviceId":"d1","name":"article_read","extras":{"words":"many"}},
	{"type":"event","name":"article_read"},
	{"type":"event","deviceId":"d1","name":"article_read","extras":{"9":1}},
	{"type":"event","deviceId":"d1","name":"not_planned"},
	{"type":"sesion_start","deviceId":"d1"},
	{"type":"event","deviceId":"d1","name":"article_read","extras":{"big":"` + strings.Repeat("x", 2000) + `"}}
	]`
	r := f.post("/v1/tags", "application/json", key, []byte(body))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	resp := r.response(t)
	want := []collector.Rejection{
		{Index: 1, Field: "name", Reason: "an event record needs a name"},
		{Index: 3, Field: "device", Reason: "missing"},
		{Index: 4, Field: `extras."9"`},
		{Index: 6, Field: "type", Reason: `"sesion_start" is not a record type`},
		{Index: 7, Field: "extras.big", Reason: "string of 2000 bytes, more than the limit of 1024"},
	}
	if resp.Accepted != 3 || len(resp.Rejected) != len(want) {
		t.Fatalf("accepted %d, rejected %+v", resp.Accepted, resp.Rejected)
	}
	for i, w := range want {
		g := resp.Rejected[i]
		if g.Index != w.Index || g.Field != w.Field || !strings.Contains(g.Reason, w.Reason) {
			t.Errorf("rejection %d: got %+v, want %+v", i, g, w)
		}
	}
	// Warn mode: the wrongly typed extra and the unplanned event are kept, marked.
	got := f.stored()
	if len(got) != 3 || len(got[1].Unplanned) == 0 || len(got[2].Unplanned) == 0 || len(got[0].Unplanned) != 0 {
		t.Fatalf("stored %+v", got)
	}
	if len(resp.Warnings) == 0 {
		t.Fatal("no warning about unplanned records")
	}
}

func TestEnforcedPlanRefusesUnplanned(t *testing.T) {
	f := newFixture(t, nil)
	body := `[{"type":"event","deviceId":"d","name":"add_to_cart","extras":{"sku":"A1"}},
	{"type":"event","deviceId":"d","name":"wishlist"},
	{"type":"event","deviceId":"d","name":"add_to_cart","extras":{"colour":"red"}}]`
	r := f.post("/v1/tags", "application/json", enforceKey, []byte(body))
	resp := r.response(t)
	if r.status != http.StatusOK || resp.Accepted != 1 || len(resp.Rejected) != 2 {
		t.Fatalf("status %d %+v", r.status, resp)
	}
	if resp.Rejected[0].Index != 1 || !strings.Contains(resp.Rejected[0].Reason, "wishlist") ||
		resp.Rejected[1].Index != 2 || !strings.Contains(resp.Rejected[1].Field, "colour") {
		t.Fatalf("rejections %+v", resp.Rejected)
	}
	// All refused: 400, nothing stored beyond the first request.
	r = f.post("/v1/tags", "application/json", enforceKey, []byte(`[{"type":"event","deviceId":"d","name":"wishlist"}]`))
	if r.status != http.StatusBadRequest || len(f.stored()) != 1 {
		t.Fatalf("status %d stored %d", r.status, len(f.stored()))
	}
}

func TestWholeRequestErrors(t *testing.T) {
	good := []byte(`[{"type":"session_start","deviceId":"d"}]`)
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write([]byte("["))
	zw.Write(bytes.Repeat([]byte(" "), 5<<20))
	zw.Close()
	for _, tc := range []struct {
		name        string
		contentType string
		writeKey    string
		body        []byte
		headers     []string
		status      int
		code        string
		contains    string
	}{
		{"no key", "application/json", "", good, nil, 401, "missing_write_key", "Basic"},
		{"wrong key", "application/json", "wrong-key-123", good, nil, 401, "unknown_write_key", "wron…"},
		{"malformed JSON", "application/json", key, []byte(`[{"type":"session_start",}]`), nil, 400, "malformed_json", "at byte 25"},
		{"not JSON at all", "application/json", key, []byte(`hello`), nil, 400, "malformed_json", "at byte 0"},
		{"wrong content type", "text/csv", key, good, nil, 415, "unsupported_content_type", "text/csv"},
		{"no content type", "", key, good, nil, 415, "unsupported_content_type", "application/json"},
		{"unknown encoding", "application/json", key, good, []string{"Content-Encoding", "br"}, 415, "unsupported_content_encoding", "br"},
		{"not gzip", "application/json", key, good, []string{"Content-Encoding", "gzip"}, 400, "malformed_gzip", "gzip"},
		{"too large", "application/json", key, append(append([]byte("["), bytes.Repeat([]byte(" "), 5<<20)...), ']'), nil, 413, "body_too_large", "4194304"},
		{"gzip bomb", "application/json", key, bomb.Bytes(), []string{"Content-Encoding", "gzip"}, 413, "body_too_large", "after decompression"},
		{"bad X-Sent-At", "application/json", key, good, []string{"X-Sent-At", "now"}, 400, "bad_sent_at", "RFC 3339"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			r := f.post("/v1/tags", tc.contentType, tc.writeKey, tc.body, tc.headers...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			e := r.errorBody(t)
			if e.Error.Code != tc.code || !strings.Contains(e.Error.Message, tc.contains) {
				t.Fatalf("error %+v, want code %s containing %q", e.Error, tc.code, tc.contains)
			}
			if tc.code == "malformed_json" && e.Error.Offset == nil {
				t.Fatal("no byte offset")
			}
			if n := len(f.stored()); n != 0 {
				t.Fatalf("%d records stored by a refused request", n)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t, nil)
	batch := func(n int) []byte {
		var b strings.Builder
		b.WriteString("[")
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`{"type":"event","deviceId":"d","name":"level_up"}`)
		}
		return []byte(b.String() + "]")
	}
	if r := f.post("/v1/tags", "application/json", limitedKey, batch(8)); r.status != 200 {
		t.Fatalf("first batch: %d %s", r.status, r.body)
	}
	r := f.post("/v1/tags", "application/json", limitedKey, batch(8))
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("second batch: %d %s (Retry-After %q)", r.status, r.body, r.header.Get("Retry-After"))
	}
	if e := r.errorBody(t); e.Error.Code != "rate_limited" || !strings.Contains(e.Error.Message, `"game"`) {
		t.Fatalf("error %+v", e)
	}
	if n := len(f.stored()); n != 8 {
		t.Fatalf("stored %d, want 8", n)
	}
	// Other apps are not limited by it.
	if r := f.post("/v1/tags", "application/json", key, batch(50)); r.status != 200 {
		t.Fatalf("other app: %d", r.status)
	}
}

func TestKafkaDownAnswers503AndStoresNothing(t *testing.T) {
	f := newFixture(t, nil)
	f.log.SetDown(true)
	r := f.post("/v1/tags", "application/json", key, []byte(`[{"type":"session_start","deviceId":"d"}]`))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if e := r.errorBody(t); e.Error.Code != "kafka_unavailable" {
		t.Fatalf("error %+v", e)
	}
	ready, _ := http.Get(f.srv.URL + "/readyz")
	ready.Body.Close()
	if ready.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d while Kafka is down", ready.StatusCode)
	}
	f.log.SetDown(false)
	if r := f.post("/v1/tags", "application/json", key, []byte(`[{"type":"session_start","deviceId":"d"}]`)); r.status != 200 {
		t.Fatalf("after recovery: %d", r.status)
	}
	if n := len(f.stored()); n != 1 {
		t.Fatalf("stored %d", n)
	}
	ready, _ = http.Get(f.srv.URL + "/readyz")
	ready.Body.Close()
	if ready.StatusCode != http.StatusOK {
		t.Fatalf("readyz %d after recovery", ready.StatusCode)
	}
}

// slowLog holds every Produce until released, like a broker that is slow
// to acknowledge.
type slowLog struct {
	bus.Producer
	release chan struct{}
}

func (s *slowLog) Produce(ctx context.Context, m []bus.Message) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Producer.Produce(ctx, m)
}

func TestBufferFullAnswers503(t *testing.T) {
	news, _ := tagplan.Parse("news.yaml", []byte(newsPlan))
	apps, _ := collector.NewApps(&collector.App{ID: "news", WriteKeys: []string{key}, Plan: news})
	cfg := collector.DefaultConfig()
	cfg.MaxBodyBytes, cfg.BufferBytes = 64<<10, 100<<10 // one request (~79 KB as stored) fits, two do not
	mem := bus.NewMemory("tags", 1)
	slow := &slowLog{Producer: mem, release: make(chan struct{})}
	s, err := collector.New(cfg, apps, slow, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	f := &fixture{t: t, log: mem, srv: srv}
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i < 450; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"type":"event","deviceId":"device-with-a-long-identifier","name":"article_read","extras":{"category":"sport-and-more-sport"}}`)
	}
	b.WriteString("]")
	first := make(chan reply)
	go func() { first <- f.post("/v1/tags", "application/json", key, []byte(b.String())) }()
	// Wait until the first request holds the buffer (the gauge says so).
	deadline := time.Now().Add(10 * time.Second)
	for strings.Contains(metricsText(t, srv.URL), "engage_collector_buffer_bytes 0\n") {
		if time.Now().After(deadline) {
			t.Fatal("the first request never reached the buffer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	second := f.post("/v1/tags", "application/json", key, []byte(b.String()))
	if second.status != http.StatusServiceUnavailable || second.errorBody(t).Error.Code != "buffer_full" || second.header.Get("Retry-After") == "" {
		t.Fatalf("second request: %d %s", second.status, second.body)
	}
	close(slow.release)
	if r := <-first; r.status != 200 {
		t.Fatalf("first request: %d %s", r.status, r.body)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	f := newFixture(t, nil)
	f.post("/v1/tags", "application/json", key, []byte(`[{"type":"session_start","deviceId":"d"},{"type":"nope","deviceId":"d"}]`))
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  "ready",
		"/metrics": `engage_collector_records_total{app="news",outcome="accepted"} 1`,
	} {
		resp, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d, body lacks %q:\n%.2000s", path, resp.StatusCode, want, b)
		}
	}
}

func metricsText(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
