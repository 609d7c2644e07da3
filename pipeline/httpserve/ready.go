package httpserve

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of Ready.
const (
	DefaultReadyTTL     = time.Second     // how long an answer is reused
	DefaultCheckTimeout = 2 * time.Second // bound of each check
)

// Ready answers /readyz from named checks, each bounded by a timeout. The
// answer is kept for TTL so that frequent probes cost one round of checks
// a second at most; since the checks run again once it is stale, a
// service becomes ready again by itself when what failed is back.
type Ready struct {
	TTL     time.Duration // 0: DefaultReadyTTL
	Timeout time.Duration // 0: DefaultCheckTimeout

	mu     sync.Mutex
	checks []check
	at     time.Time
	err    error
}

type check struct {
	name string
	fn   func(context.Context) error
}

// Add adds a check: fn returns nil when the part named is ready, else why
// not. Checks run in the order added; the first failure is the answer.
func (r *Ready) Add(name string, fn func(context.Context) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, check{name, fn})
	r.at = time.Time{}
}

// Err runs the checks (or reuses an answer younger than TTL) and returns
// the first failure as "name: reason", or nil.
func (r *Ready) Err(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ttl := orDefault(r.TTL, DefaultReadyTTL)
	if !r.at.IsZero() && time.Since(r.at) < ttl {
		return r.err
	}
	r.err = nil
	for _, c := range r.checks {
		cctx, cancel := context.WithTimeout(ctx, orDefault(r.Timeout, DefaultCheckTimeout))
		err := c.fn(cctx)
		cancel()
		if err != nil {
			r.err = fmt.Errorf("%s: %s", c.name, oneLine(err.Error()))
			break
		}
	}
	r.at = time.Now()
	return r.err
}

// ServeHTTP answers 200 "ready" or 503 and the reason, on one line.
func (r *Ready) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if err := r.Err(req.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ready\n")
}

// oneLine keeps a reason on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Healthz answers 200 "ok": the process is alive and serving.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, "ok\n")
}

// Mux returns a mux serving GET /metrics from g, GET /healthz, and GET
// /readyz from ready; the service adds its own routes.
func Mux(g prometheus.Gatherer, ready http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", Healthz)
	mux.Handle("GET /readyz", ready)
	return mux
}
