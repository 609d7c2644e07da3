package collector_test

// The browser test: Segment's analytics.js in headless Chromium, on a page
// of another origin, against the collector.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/inbox"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
)

// missing skips the test loudly, or fails it under ENGAGE_REQUIRE_SERVICES=1
// (as `make test` sets), as the other integration tests do.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := "NOT RUN: " + fmt.Sprintf(format, args...) + ". deploy/deps.sh installs it (`make test` runs it)"
	if os.Getenv("ENGAGE_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// chromium finds a Chromium to drive: $ENGAGE_CHROMIUM, else the first of
// the usual names on the PATH.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ENGAGE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-headless-shell", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	missing(t, "NO CHROMIUM on the PATH (Debian package chromium), so analytics.js was not run in a browser")
	return ""
}

// anyInbox gives every device one in-app message named after it.
type anyInbox struct{}

func (anyInbox) Get(app, device, activity string, now time.Time) []inbox.Message {
	return []inbox.Message{{DeliveryID: "d-" + device, Campaign: "welcome", Title: "Hello " + device, Time: now, Expires: now.Add(time.Hour)}}
}

// browserReport is what the page posts when it is done (page.js).
type browserReport struct {
	OK          bool   `json:"ok"`
	AnonymousID string `json:"anonymousId"`
	Fetches     []struct {
		Method string `json:"method"`
		URL    string `json:"url"`
		Status int    `json:"status"`
		Error  string `json:"error"`
	} `json:"fetches"`
	Native *struct {
		Status int                `json:"status"`
		Body   collector.Response `json:"body"`
	} `json:"native"`
	InApp *struct {
		Status int `json:"status"`
		Body   struct {
			Messages []inbox.Message `json:"messages"`
		} `json:"body"`
	} `json:"inapp"`
	Errors []string `json:"errors"`
}

// Segment's analytics.js 2.0 (@segment/analytics-next from npm, its UMD
// build), in headless Chromium, on a page served from another origin than
// the collector's, configured only with the write key and the collector as
// its cdnURL: it fetches the settings from the collector, which point it
// at the collector, and sends page, track and identify, each after a CORS
// preflight (it sends an Authorization header). The page's own calls to
// /v1/tags and /v1/inapp are preflighted too. Every answer must be readable
// by the page, and the records land in Kafka (in the collector's in-memory
// bus when no Kafka is given) with the names, properties and traits sent,
// the anonymousId as their device. Without CORS the browser refuses the
// settings answer and analytics.js never loads.
func TestAnalyticsJSInChromium(t *testing.T) {
	start := time.Now()
	browser := chromium(t)
	harness, err := filepath.Abs("../../examples/analytics-js")
	if err != nil {
		t.Fatal(err)
	}
	umd := filepath.Join(harness, "node_modules", "@segment", "analytics-next", "dist", "umd")
	if _, err := os.Stat(filepath.Join(umd, "index.js")); err != nil {
		missing(t, "@segment/analytics-next is not installed in examples/analytics-js (%v)", err)
	}

	// The log: a fresh topic of the real Kafka when there is one, else the
	// in-process bus.
	var (
		prod    bus.Producer
		memory  *bus.Memory
		brokers []string
		topic   string
	)
	if os.Getenv("ENGAGE_KAFKA_BROKERS") != "" || os.Getenv("ENGAGE_REQUIRE_SERVICES") == "1" {
		brokers = kafkatest.RealBrokers(t)
		topic = kafkatest.NewTopic(t, brokers, 4)
		pcfg := kafkabus.DefaultProducerConfig(brokers, topic)
		pcfg.MaxAttempts = 2
		pcfg.WriteTimeout = 5 * time.Second
		p, err := kafkabus.NewProducer(pcfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		prod = p
	} else {
		t.Log("no ENGAGE_KAFKA_BROKERS: the records are read from the collector's in-process bus")
		memory = bus.NewMemory("tags", 4)
		prod = memory
	}

	// Two origins on loopback: the page's and the collector's.
	pageLn := listen(t)
	collLn := listen(t)
	pageOrigin := "http://" + pageLn.Addr().String()
	collURL := "http://" + collLn.Addr().String()

	apps, err := collector.NewApps(&collector.App{ID: "news", WriteKeys: []string{key}, Origins: []string{pageOrigin}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := collector.DefaultConfig()
	cfg.PublicURL = collURL
	s, err := collector.New(cfg, apps, prod, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetInbox(anyInbox{})
	var preflights sync.Map // paths the browser sent a preflight for
	h := s.Handler()
	serve(t, collLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			preflights.Store(r.URL.Path, true)
		}
		h.ServeHTTP(w, r)
	}))

	reports := make(chan []byte, 1)
	var served sync.Map // path → true, what the browser fetched from the page's origin
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(harness, "index.html"))
	})
	mux.HandleFunc("GET /page.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, filepath.Join(harness, "page.js")) })
	mux.Handle("GET /analytics-next/", http.StripPrefix("/analytics-next/", http.FileServer(http.Dir(umd))))
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case reports <- b:
		default:
		}
	})
	serve(t, pageLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Store(r.URL.Path, true)
		mux.ServeHTTP(w, r)
	}))

	// Chromium, headless, with a profile of its own and no name resolution
	// at all: nothing but the two loopback servers can be reached.
	page := pageOrigin + "/?collector=" + collURL + "&writeKey=" + key
	var stderr lockedBuffer
	cmd := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--no-first-run", "--no-default-browser-check",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--enable-logging=stderr", "--log-level=0", page)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers in its process group, ended with it
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	t.Logf("%s started on %s (collector at %s) in %s", filepath.Base(browser), page, collURL, time.Since(start).Round(time.Millisecond))

	var raw []byte
	select {
	case raw = <-reports:
	case err := <-exited:
		t.Fatalf("Chromium exited before the page reported: %v\n%s", err, stderr.String())
	case <-time.After(45 * time.Second):
		t.Fatalf("no report from the page within 45 s; Chromium's output:\n%s", stderr.String())
	}
	var rep browserReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("report %s: %v", raw, err)
	}
	if !rep.OK {
		t.Fatalf("the page could not use the collector: %s\nreport: %s\nChromium's output:\n%s", strings.Join(rep.Errors, "; "), raw, consoleLines(stderr.String()))
	}
	t.Logf("page reported after %s: %d fetches", time.Since(start).Round(time.Millisecond), len(rep.Fetches))

	// analytics.js fetched its settings and sent each call where the
	// settings said, each answered 2xx.
	var calls []string
	for _, f := range rep.Fetches {
		calls = append(calls, f.Method+" "+strings.TrimPrefix(f.URL, collURL))
	}
	for _, want := range []string{"GET /v1/projects/" + key + "/settings", "POST /v1/p", "POST /v1/t", "POST /v1/i", "POST /v1/tags"} {
		if !slices.Contains(calls, want) {
			t.Errorf("the page did not call %s; its calls: %v", want, calls)
		}
	}
	for _, p := range []string{"/v1/p", "/v1/t", "/v1/i", "/v1/tags", "/v1/inapp"} {
		if _, ok := preflights.Load(p); !ok {
			t.Errorf("the browser sent no preflight for %s", p)
		}
	}
	if _, ok := served.Load("/analytics-next/index.js"); !ok {
		t.Errorf("analytics.js was not loaded from the page's origin")
	}
	dev := rep.AnonymousID
	if dev == "" {
		t.Fatalf("no anonymousId in the report: %s", raw)
	}
	if rep.Native == nil || rep.Native.Status != 200 || rep.Native.Body.Accepted != 1 {
		t.Errorf("POST /v1/tags from the page: %+v", rep.Native)
	}
	if rep.InApp == nil || rep.InApp.Status != 200 || len(rep.InApp.Body.Messages) != 1 || rep.InApp.Body.Messages[0].Title != "Hello "+dev {
		t.Errorf("GET /v1/inapp from the page: %+v", rep.InApp)
	}

	// The records: page → activity, track → event, identify → app-info,
	// each request with a device record (the browser's locale and time
	// zone), and the page's native event; all of the browser's device.
	const wantRecords = 7
	var recs []tag.Record
	if memory != nil {
		for _, m := range memory.Messages("tags") {
			var r tag.Record
			if err := r.UnmarshalBinary(m.Value); err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
		}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		msgs, err := kafkabus.ReadTopic(ctx, brokers, topic, wantRecords)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			var r tag.Record
			if err := r.UnmarshalBinary(m.Value); err != nil {
				t.Fatal(err)
			}
			if string(m.Key) != "news/"+dev {
				t.Errorf("record under key %q, want news/%s", m.Key, dev)
			}
			recs = append(recs, r)
		}
	}
	if len(recs) != wantRecords {
		t.Errorf("%d records, want %d", len(recs), wantRecords)
	}
	byKind := map[tag.Kind][]tag.Record{}
	for _, r := range recs {
		if r.AppID != "news" || r.DeviceID != dev {
			t.Errorf("%s record of %s/%s, want news/%s (the anonymousId)", r.Kind, r.AppID, r.DeviceID, dev)
		}
		byKind[r.Kind] = append(byKind[r.Kind], r)
		t.Logf("%s %q user %q extras %v app-info %v device %+v", r.Kind, r.Name, r.UserID, r.Extras, r.AppInfo, r.Device)
	}
	str, num := tag.String, tag.Number
	if a := byKind[tag.KindActivityStart]; len(a) != 1 || a[0].Name != "Getting started" || extra(a[0], "section") != str("intro") ||
		extra(a[0], "url") != str(pageOrigin+"/?collector="+collURL+"&writeKey="+key) {
		t.Errorf("page: activity records %+v", a)
	}
	events := map[string]tag.Record{}
	for _, e := range byKind[tag.KindEvent] {
		events[e.Name] = e
	}
	if e, ok := events["article_read"]; !ok || !slices.Equal(e.Extras, []tag.Extra{{Key: "category", Value: str("sport")}, {Key: "premium", Value: tag.Bool(false)}, {Key: "words", Value: num(640)}}) {
		t.Errorf("track: article_read %+v (events %v)", e, byKind[tag.KindEvent])
	}
	if e, ok := events["native_call"]; !ok || e.UserID != "user-42" || !slices.Equal(e.Extras, []tag.Extra{{Key: "from", Value: str("browser")}}) {
		t.Errorf("native call: %+v", e)
	}
	if a := byKind[tag.KindAppInfo]; len(a) != 1 || a[0].UserID != "user-42" ||
		!slices.Equal(a[0].AppInfo, []tag.Extra{{Key: "logged_in", Value: tag.Bool(true)}, {Key: "plan", Value: str("premium")}}) {
		t.Errorf("identify: app-info records %+v", a)
	}
	if len(byKind[tag.KindDevice]) != 3 {
		t.Errorf("%d device records, want 3 (one a request)", len(byKind[tag.KindDevice]))
	}
	for _, d := range byKind[tag.KindDevice] {
		if d.Device.Locale == "" || d.Device.TimeZone == "" {
			t.Errorf("device record without the browser's locale and time zone: %+v", d.Device)
		}
	}
	t.Logf("done in %s", time.Since(start).Round(time.Millisecond))
}

func extra(r tag.Record, k string) tag.Value {
	for _, e := range r.Extras {
		if e.Key == k {
			return e.Value
		}
	}
	return tag.Value{}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func serve(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Log(err)
		}
		_ = srv.Close()
	})
}

// consoleLines keeps, of Chromium's log, the page's console and network
// messages (the rest is about the browser itself).
func consoleLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "CONSOLE") || strings.Contains(l, "Access-Control") || strings.Contains(l, "CORS") {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return log
	}
	return strings.Join(out, "\n")
}

// lockedBuffer is a buffer the child's output goroutines and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
