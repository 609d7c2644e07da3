package httpserve

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openengage/engage/pipeline/httpserve/tlstest"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveTLS serves h with the TLS of files on a loopback port until the
// test ends; it returns the base URL.
func serveTLS(t *testing.T, files TLSFiles, log *slog.Logger, h http.Handler) string {
	t.Helper()
	tc, err := files.Config(log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Handler: h, TLS: tc, Log: log}).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "https://" + ln.Addr().String()
}

func ok(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

// cn asks url with client and returns the common name of the server's
// certificate.
func cn(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return tlstest.PeerCN(resp)
}

func TestCertificateReloadedWhenFilesChangeAndKeptWhenBroken(t *testing.T) {
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.WritePair("first", certFile, keyFile)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	url := serveTLS(t, TLSFiles{Cert: certFile, Key: keyFile, CheckEvery: 20 * time.Millisecond}, log, http.HandlerFunc(ok))
	client := ca.Client()
	if got := cn(t, client, url); got != "first" {
		t.Fatalf("certificate %q served, want first", got)
	}

	ca.WritePair("second", certFile, keyFile)
	waitCN(t, client, url, "second")
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("the reload is not logged:\n%s", logs.String())
	}

	// A garbage certificate, then a certificate whose key is not the one
	// in the key file (a renewal written halfway): the pair served stays.
	tlstest.WriteFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"))
	stays(t, client, url, "second")
	other, _ := ca.Issue("third")
	tlstest.WriteFile(t, certFile, other)
	stays(t, client, url, "second")
	if n := strings.Count(logs.String(), "TLS certificate not reloaded"); n != 2 {
		t.Errorf("each broken pair must be logged once: %d logs\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), certFile) {
		t.Errorf("the log must name the file:\n%s", logs.String())
	}

	// Then a good pair again is taken.
	ca.WritePair("fourth", certFile, keyFile)
	waitCN(t, client, url, "fourth")
}

func waitCN(t *testing.T, client *http.Client, url, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for got := cn(t, client, url); got != want; got = cn(t, client, url) {
		if time.Now().After(deadline) {
			t.Fatalf("certificate %q still served 30 s after %q was written", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stays checks, over many more checks of the files than CheckEvery
// allows, that the certificate served is want.
func stays(t *testing.T, client *http.Client, url, want string) {
	t.Helper()
	for range 20 {
		if got := cn(t, client, url); got != want {
			t.Fatalf("certificate %q served, want %q kept", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTLSRefusesOldVersionsAndAsksClientCertificates(t *testing.T) {
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	ca.WritePair("server", certFile, keyFile)
	tlstest.WriteFile(t, caFile, ca.PEM)

	url := serveTLS(t, TLSFiles{Cert: certFile, Key: keyFile}, nil, http.HandlerFunc(ok))
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("a TLS 1.1 client was served")
	}
	// Plain HTTP gets Go's 400 (an HTTP request to an HTTPS server).
	if resp, err := http.Get("http" + strings.TrimPrefix(url, "https")); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP on the TLS port: %s", resp.Status)
		}
	}

	mtls := serveTLS(t, TLSFiles{Cert: certFile, Key: keyFile, ClientCA: caFile}, nil, http.HandlerFunc(ok))
	if resp, err := ca.Client().Get(mtls); err == nil {
		resp.Body.Close()
		t.Fatal("a client without a certificate was served with -tls.client-ca")
	}
	cc, ck := ca.Issue("client")
	pair, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{pair}}}}
	resp, err := withCert.Get(mtls)
	if err != nil {
		t.Fatalf("a client with a certificate of the CA: %v", err)
	}
	resp.Body.Close()
}

func TestTLSFilesErrorsNameWhatIsWrong(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	tlstest.WriteFile(t, bad, []byte("not PEM"))
	ca := tlstest.NewCA(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.WritePair("x", certFile, keyFile)
	for _, c := range []struct {
		files TLSFiles
		want  string
	}{
		{TLSFiles{Cert: certFile}, "-tls.key"},
		{TLSFiles{Key: keyFile}, "-tls.cert"},
		{TLSFiles{Cert: filepath.Join(dir, "missing.pem"), Key: keyFile}, "missing.pem"},
		{TLSFiles{Cert: bad, Key: keyFile}, "bad.pem"},
		{TLSFiles{Cert: certFile, Key: keyFile, ClientCA: bad}, "bad.pem: no PEM certificate"},
	} {
		if _, err := c.files.Config(nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %q", c.files, err, c.want)
		}
	}
	if tc, err := (TLSFiles{}).Config(nil); tc != nil || err != nil {
		t.Errorf("no files: %v %v, want plain HTTP", tc, err)
	}
}

func TestReadyRecoversByItselfAndCachesItsAnswer(t *testing.T) {
	var down atomic.Bool
	var calls atomic.Int64
	down.Store(true)
	r := &Ready{TTL: 50 * time.Millisecond}
	r.Add("kafka", func(ctx context.Context) error {
		calls.Add(1)
		if down.Load() {
			return errors.New("dial tcp 127.0.0.1:1:\nconnection refused")
		}
		return nil
	})
	mux := Mux(prometheus.NewRegistry(), r)
	get := func(path string) (int, string) {
		rec := &recorder{h: http.Header{}, code: 200}
		req, _ := http.NewRequest("GET", path, nil)
		mux.ServeHTTP(rec, req)
		return rec.code, rec.body.String()
	}
	if code, body := get("/readyz"); code != 503 || body != "kafka: dial tcp 127.0.0.1:1: connection refused\n" {
		t.Fatalf("readyz %d %q, want 503 naming kafka on one line", code, body)
	}
	for range 10 {
		get("/readyz")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d checks for 11 probes within the TTL, want 1", n)
	}
	down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for code, _ := get("/readyz"); code != 200; code, _ = get("/readyz") {
		if time.Now().After(deadline) {
			t.Fatal("readyz still 503 10 s after the check passes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz %d %q", code, body)
	}
	if code, _ := get("/metrics"); code != 200 {
		t.Errorf("metrics %d", code)
	}
}

func TestReadyCheckIsBounded(t *testing.T) {
	r := &Ready{Timeout: 50 * time.Millisecond}
	r.Add("clickhouse", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	err := r.Err(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "clickhouse: ") || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("a check that hangs: %v, want clickhouse: … deadline exceeded", err)
	}
}

type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

func TestServeFinishesRequestsInFlightAtShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- (&Server{Handler: h, ShutdownTimeout: 30 * time.Second}).Serve(ctx, ln) }()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	cancel()
	// The listener closes at once: no new connection is served.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 10 s after the shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if b := <-got; b != "done" {
		t.Fatalf("the request in flight got %q, want done", b)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
