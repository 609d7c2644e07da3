package collector_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// The bounds on what one request may cost (docs/collector.md, Limits).

func records(n int, rec string) []byte {
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(rec)
	}
	return []byte(b.String() + "]")
}

const goodRecord = `{"type":"event","deviceId":"d","name":"level_up"}`

// client is an HTTP client that gives up long after any answer the
// collector should give: a request it has to give up on hung.
var client = &http.Client{Timeout: 20 * time.Second}

// An app whose rate limit has no token left is refused before its body is
// read: a body that never arrives gets its 429 all the same.
func TestRateLimitRefusesBeforeReadingTheBody(t *testing.T) {
	const slowKey = "slow-write-key-1"
	apps, err := collector.NewApps(&collector.App{ID: "slow", WriteKeys: []string{slowKey}, RateLimit: 0.01, Burst: 5})
	if err != nil {
		t.Fatal(err)
	}
	mem := bus.NewMemory("tags", 1)
	s, err := collector.New(collector.DefaultConfig(), apps, mem, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	post := func(body io.Reader, path, contentType string) (int, string, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, body)
		req.Header.Set("Content-Type", contentType)
		req.SetBasicAuth(slowKey, "")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v (the collector waited for the body)", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), b
	}
	if code, _, body := post(bytes.NewReader(records(5, goodRecord)), "/v1/tags", "application/json"); code != http.StatusOK {
		t.Fatalf("first batch: %d %s", code, body)
	}
	for _, path := range []string{"/v1/tags", "/v1/batch"} {
		resp := postStalled(t, srv.URL, path, slowKey)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !bytes.Contains(b, []byte(`"rate_limited"`)) {
			t.Fatalf("%s with the bucket empty: %d %s (Retry-After %q)", path, resp.StatusCode, b, resp.Header.Get("Retry-After"))
		}
	}
	if n := len(mem.Messages("tags")); n != 5 {
		t.Fatalf("stored %d, want 5", n)
	}
}

// postStalled sends a request whose body stops half way and returns the
// answer, failing the test if none comes within 20 s.
func postStalled(t *testing.T, url, path, writeKey string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	half := `[{"type":"session_start","deviceId":"d"},{"type":"sess`
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\nX-Write-Key: %s\r\nContent-Length: %d\r\n\r\n%s", path, writeKey, 2*len(half), half)
	conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // a hung collector fails the test
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: no answer to a stalled body: %v", path, err)
	}
	return resp
}

// A body that does not arrive within the read timeout gets a 408, and
// nothing of it is stored.
func TestSlowBodyGets408(t *testing.T) {
	f := newFixture(t, func(c *collector.Config) { c.ReadTimeout = 300 * time.Millisecond })
	resp := postStalled(t, f.srv.URL, "/v1/tags", key)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !bytes.Contains(b, []byte(`"body_timeout"`)) {
		t.Fatalf("stalled body: %d %s", resp.StatusCode, b)
	}
	if n := len(f.stored()); n != 0 {
		t.Fatalf("%d records stored from a body that never finished", n)
	}
}

// When the requests in flight hold the whole memory budget, the next one
// gets a 503 at once, before its body is read; once they finish, requests
// are served again.
func TestMemoryBudgetRefusesAtOnce(t *testing.T) {
	apps, _ := collector.NewApps(&collector.App{ID: "news", WriteKeys: []string{key}})
	cfg := collector.DefaultConfig()
	cfg.MaxBodyBytes, cfg.MaxSegmentBatch, cfg.MaxSegmentSingle = 64<<10, 16<<10, 8<<10
	cfg.MemoryBudget = 6 * 64 << 10 // one native request of unknown length
	mem := bus.NewMemory("tags", 1)
	slow := &enteredLog{Producer: mem, entered: make(chan struct{}, 8), release: make(chan struct{})}
	s, err := collector.New(cfg, apps, slow, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	post := func(body io.Reader) (int, http.Header, []byte) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/tags", body)
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth(key, "")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	first := make(chan int, 1)
	go func() {
		// No Content-Length: weighed at the body limit, the whole budget.
		code, _, _ := post(io.MultiReader(bytes.NewReader(records(3, goodRecord))))
		first <- code
	}()
	// The first request holds the budget while its records wait for Kafka.
	select {
	case <-slow.entered:
	case code := <-first:
		t.Fatalf("the first request was answered %d before reaching Kafka", code)
	case <-time.After(10 * time.Second):
		t.Fatal("the first request never reached Kafka")
	}
	code, h, b := post(strings.NewReader(`not even JSON`))
	if code != http.StatusServiceUnavailable || !bytes.Contains(b, []byte(`"memory_budget"`)) || h.Get("Retry-After") == "" {
		t.Fatalf("while the budget is held: %d %s (Retry-After %q)", code, b, h.Get("Retry-After"))
	}
	close(slow.release)
	if code := <-first; code != http.StatusOK {
		t.Fatalf("the request holding the budget: %d", code)
	}
	if code, _, b := post(bytes.NewReader(records(2, goodRecord))); code != http.StatusOK {
		t.Fatalf("after the budget was released: %d %s", code, b)
	}
	if n := len(mem.Messages("tags")); n != 5 {
		t.Fatalf("stored %d, want 5", n)
	}
}

// enteredLog says when a Produce starts and holds it until released.
type enteredLog struct {
	bus.Producer
	entered, release chan struct{}
}

func (l *enteredLog) Produce(ctx context.Context, m []bus.Message) error {
	l.entered <- struct{}{}
	<-l.release
	return l.Producer.Produce(ctx, m)
}

// A request of more records than the limit is refused whole, as JSON
// array, NDJSON or Segment batch, before its records are decoded.
func TestTooManyRecords(t *testing.T) {
	f := newFixture(t, func(c *collector.Config) { c.MaxRecords = 100 })
	ndjson := strings.Repeat(goodRecord+"\n", 101)
	msgs := make([]string, 101)
	for i := range msgs {
		msgs[i] = `{"type":"track","event":"e","userId":"u"}`
	}
	for _, tc := range []struct {
		path, contentType string
		body              []byte
	}{
		{"/v1/tags", "application/json", records(101, goodRecord)},
		{"/v1/tags", "application/json", records(101, "1")},
		{"/v1/tags", "application/x-ndjson", []byte(ndjson)},
		{"/v1/batch", "application/json", []byte(`{"batch":[` + strings.Join(msgs, ",") + `]}`)},
	} {
		r := f.post(tc.path, tc.contentType, key, tc.body)
		if r.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s %s of 101 records: %d %s", tc.path, tc.contentType, r.status, r.body)
		}
		if e := r.errorBody(t); e.Error.Code != "too_many_records" {
			t.Fatalf("error %+v", e.Error)
		}
	}
	if r := f.post("/v1/tags", "application/json", key, records(100, goodRecord)); r.status != http.StatusOK {
		t.Fatalf("100 records: %d %s", r.status, r.body)
	}
	if n := len(f.stored()); n != 100 {
		t.Fatalf("stored %d, want 100", n)
	}
}

// An answer lists at most 1000 rejections, the first by index, and counts
// the others: a body of tiny bad records cannot get an answer (and hold
// memory) many times its size.
func TestRejectionsListedAreBounded(t *testing.T) {
	f := newFixture(t, nil)
	body := strings.Repeat(`{"type":"event","deviceId":"d","name":"level_up"}`+"\n", 3) + strings.Repeat("1\n", 1500)
	r := f.post("/v1/tags", "application/x-ndjson", key, []byte(body))
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	var resp struct {
		Accepted int
		Rejected []collector.Rejection
		Unlisted int `json:"rejectedUnlisted"`
	}
	if err := json.Unmarshal(r.body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Accepted != 3 || len(resp.Rejected) != 1000 || resp.Unlisted != 500 {
		t.Fatalf("accepted %d, %d rejections listed, %d unlisted; want 3, 1000, 500", resp.Accepted, len(resp.Rejected), resp.Unlisted)
	}
	for i, rj := range resp.Rejected {
		if rj.Index != 3+i {
			t.Fatalf("rejection %d has index %d, want %d", i, rj.Index, 3+i)
		}
	}
	if len(r.body) > 200<<10 {
		t.Fatalf("answer of %d bytes to a body of %d", len(r.body), len(body))
	}
}
