package collector

import (
	"cmp"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/semaphore"

	"github.com/openengage/engage/pipeline/apierror"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/httpserve"
	"github.com/openengage/engage/pipeline/tag"
)

// Server is the collector. Create it with New; it is safe for concurrent
// requests.
type Server struct {
	cfg      Config
	apps     *Apps
	prod     bus.Producer
	log      *slog.Logger
	m        *metrics
	buf      *buffer
	reg      *prometheus.Registry
	now      func() time.Time
	failed   atomic.Int64                // unix nanos of the last produce failure not followed by a success or a probe answered
	probe    func(context.Context) error // asks whether Kafka answers again (SetProbe)
	probeErr atomic.Pointer[string]      // the probe's last failure, until it answers again
	inbox    Inbox                       // in-app messages; nil: not served
	budget   *semaphore.Weighted
}

// New returns a collector writing to prod. reg receives the metrics and is
// served on /metrics (nil: a private registry). log may be nil.
func New(cfg Config, apps *Apps, prod bus.Producer, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if apps == nil || len(apps.List()) == 0 {
		return nil, errors.New("collector: no apps configured")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, apps: apps, prod: prod, log: log, reg: reg, now: time.Now}
	s.buf = &buffer{capacity: cfg.BufferBytes}
	s.budget = semaphore.NewWeighted(cfg.MemoryBudget)
	s.m = newMetrics(reg, s.buf)
	s.buf.full = s.m.bufferFull.Inc
	return s, nil
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// route serves an endpoint that browsers may call, and its preflight.
	route := func(method, path, name string, c corsClass, h http.HandlerFunc) {
		mux.Handle(method+" "+path, s.endpoint(name, s.cors(c, h)))
		mux.Handle("OPTIONS "+path, s.endpoint("preflight", s.preflight(c, method)))
	}
	route("POST", "/v1/tags", "tags", classTracking, s.handleTags)
	for _, call := range []string{"batch", "track", "screen", "page", "identify", "group", "alias"} {
		h := s.segmentHandler(call)
		route("POST", "/v1/"+call, call, classTracking, h)
		// analytics.js (Segment's browser SDK) posts to the call's
		// initial: /v1/t, /v1/p, /v1/i…, and its batches to /v1/b.
		route("POST", "/v1/"+call[:1], call, classTracking, h)
	}
	route("GET", "/v1/projects/{writeKey}/settings", "settings", classTracking, s.handleSettings)
	route("GET", "/v1/inapp", "inapp", classInApp, s.handleInApp)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.handleReady)
	return apierror.Routes(mux)
}

// Run serves plain HTTP on ln until ctx ends (RunTLS with no TLS).
func (s *Server) Run(ctx context.Context, ln net.Listener) error { return s.RunTLS(ctx, ln, nil) }

// RunTLS serves on ln, HTTPS when tc is not nil (httpserve.TLSFiles makes
// it), until ctx ends, then shuts down gracefully: requests in flight
// finish (and get their Kafka acknowledgement) before it returns. It asks
// the brokers, through the probe SetProbe gave, every ProbeEvery, and
// every RecoverEvery while Kafka is marked failed (a write was not
// acknowledged, or the probe failed), and clears the mark once they
// answer: /readyz follows Kafka without traffic.
func (s *Server) RunTLS(ctx context.Context, ln net.Listener, tc *tls.Config) error {
	hs := &httpserve.Server{Handler: s.Handler(), TLS: tc, Log: s.log, Name: "collector",
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10*time.Second + s.cfg.ReadTimeout, IdleTimeout: 2 * time.Minute,
		ShutdownTimeout: s.cfg.ProduceTimeout + 5*time.Second}
	s.log.Info("collector listening", "addr", ln.Addr().String(), "scheme", hs.Scheme())
	rctx, stopRecover := context.WithCancel(ctx)
	defer stopRecover()
	go s.recoverLoop(rctx)
	return hs.Serve(ctx, ln)
}

// How often the collector asks Kafka whether it answers: ProbeEvery while
// all is well, RecoverEvery while Kafka is marked failed.
const (
	ProbeEvery   = 5 * time.Second
	RecoverEvery = time.Second
)

// SetProbe sets how the collector asks whether Kafka answers
// (kafkabus.Ping on the brokers and the topic): fn returns nil when it
// does. Without a probe, /readyz follows the writes only, and only a write
// that succeeds clears a failure. Call it before Run.
func (s *Server) SetProbe(fn func(context.Context) error) { s.probe = fn }

func (s *Server) recoverLoop(ctx context.Context) {
	if s.probe == nil {
		return
	}
	tick := time.NewTicker(RecoverEvery)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t, down := s.failed.Load(), s.probeErr.Load() != nil
		if t == 0 && !down && time.Since(last) < ProbeEvery-RecoverEvery/2 {
			continue
		}
		last = time.Now()
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.probe(pctx)
		cancel()
		if err != nil {
			msg := strings.Join(strings.Fields(err.Error()), " ")
			if !down {
				s.log.Warn("kafka does not answer: not ready", "err", msg)
			}
			s.probeErr.Store(&msg)
			continue
		}
		s.probeErr.Store(nil)
		if t != 0 && s.failed.CompareAndSwap(t, 0) || t == 0 && down {
			s.log.Info("kafka answers again: ready")
		}
	}
}

// handleReady answers /readyz: ready when Kafka acknowledged the last
// write (or answered the probe since one failed), answered the last probe,
// and the buffer of records waiting for Kafka has room.
func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if t := s.failed.Load(); t != 0 {
		msg := "kafka: did not acknowledge a write at " + time.Unix(0, t).UTC().Format(time.RFC3339)
		if p := s.probeErr.Load(); p != nil {
			msg += "; still failing: " + *p
		}
		http.Error(w, msg, http.StatusServiceUnavailable)
		return
	}
	if p := s.probeErr.Load(); p != nil {
		http.Error(w, "kafka: "+*p, http.StatusServiceUnavailable)
		return
	}
	if s.buf.inUse() >= s.buf.capacity {
		http.Error(w, fmt.Sprintf("buffer: full (%d bytes wait for Kafka)", s.buf.capacity), http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

// statusWriter records the status code for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (the deadlines
// of a request are set through it).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) endpoint(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		// Every read of the request ends by the read timeout, also the
		// server's own reading of a body left unread.
		_ = http.NewResponseController(sw).SetReadDeadline(start.Add(s.cfg.ReadTimeout))
		h(sw, r)
		s.m.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
		s.m.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	})
}

// Rejection says why one record was refused.
type Rejection struct {
	Index  int    `json:"index"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Response is the body of a 2xx answer (and of a 400 when every record was
// refused).
type Response struct {
	Accepted int         `json:"accepted"`
	Rejected []Rejection `json:"rejected,omitempty"`
	Unlisted int         `json:"rejectedUnlisted,omitempty"` // rejections beyond the first 1000, not listed
	Warnings []string    `json:"warnings,omitempty"`
}

// ErrorBody is the body of an answer that refuses the whole request: the
// shape every API of the platform answers errors with (pipeline/apierror).
type ErrorBody = apierror.Body

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, format string, args ...any) {
	apierror.Writef(w, status, code, format, args...)
}

func writeSyntaxError(w http.ResponseWriter, err error) {
	d := apierror.Detail{Code: "malformed_json", Message: "malformed JSON: " + err.Error()}
	if off, ok := tag.SyntaxOffset(err); ok {
		o := int64(off)
		d.Offset = &o
		d.Message = fmt.Sprintf("malformed JSON in the body: %v", err)
	}
	apierror.Write(w, http.StatusBadRequest, d)
}

// writeKey reads the write key: HTTP Basic (the key as user name, as Segment
// does), a Bearer token, or the X-Write-Key header.
func writeKey(r *http.Request) string {
	h := r.Header.Get("Authorization")
	switch {
	case len(h) > 6 && strings.EqualFold(h[:6], "basic "):
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[6:]))
		if err != nil {
			return ""
		}
		user, _, _ := strings.Cut(string(raw), ":")
		return user
	case len(h) > 7 && strings.EqualFold(h[:7], "bearer "):
		return strings.TrimSpace(h[7:])
	}
	return r.Header.Get("X-Write-Key")
}

func (s *Server) authenticate(w http.ResponseWriter, key string) (*App, bool) {
	if key == "" {
		noBody(w)
		w.Header().Set("WWW-Authenticate", `Basic realm="engage"`)
		writeError(w, http.StatusUnauthorized, "missing_write_key", "no write key: send it as the HTTP Basic user name (Segment style), a Bearer token or the X-Write-Key header")
		return nil, false
	}
	app, ok := s.apps.ByKey(key)
	if !ok {
		noBody(w)
		w.Header().Set("WWW-Authenticate", `Basic realm="engage"`)
		writeError(w, http.StatusUnauthorized, "unknown_write_key", "the write key %s is not the key of any app", maskKey(key))
		return nil, false
	}
	return app, true
}

// maskKey shows only the start of a key: keys are secrets.
func maskKey(k string) string {
	if len(k) <= 4 {
		return "****"
	}
	return k[:4] + "…"
}

var errTooLarge = errors.New("body too large")

// request is one request that was admitted: it holds its share of the
// memory budget until release, and its processing must end by deadline.
type request struct {
	s        *Server
	weight   int64
	limit    int64
	gzip     bool
	mt       string
	ctx      context.Context
	deadline time.Time // of the processing, set when the body has arrived
	steps    int
}

func (q *request) release() { q.s.budget.Release(q.weight) }

// checkEvery is how many records a loop handles between two looks at the
// deadline.
const checkEvery = 64

// expired reports, every checkEvery calls, whether the request's processing
// is over its deadline or its client has gone.
func (q *request) expired() bool {
	q.steps++
	if q.steps%checkEvery != 0 {
		return false
	}
	return q.ctx.Err() != nil || q.s.now().After(q.deadline)
}

// timedOut answers a request whose processing ran out of time: nothing of
// it was handed to Kafka, so nothing is acknowledged.
func (q *request) timedOut(w http.ResponseWriter) {
	q.s.m.overload.WithLabelValues("processing_timeout").Inc()
	w.Header().Set("Retry-After", strconv.Itoa(int(q.s.cfg.RetryAfter.Seconds())))
	writeError(w, http.StatusServiceUnavailable, "processing_timeout", "the request was not processed within %s; nothing of it is acknowledged: retry it, in smaller batches if it is large", q.s.cfg.ProcessTimeout)
}

// rateEmpty refuses, before its body is read, a request of an app whose
// rate limit has not one token left.
func (s *Server) rateEmpty(w http.ResponseWriter, app *App) bool {
	empty, wait := app.bucket.empty(s.now())
	if !empty {
		return false
	}
	s.rateLimited(w, app, wait)
	return true
}

func (s *Server) rateLimited(w http.ResponseWriter, app *App, wait time.Duration) {
	s.m.rateLimited.WithLabelValues(app.ID).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	noBody(w)
	writeError(w, http.StatusTooManyRequests, "rate_limited", "app %q is over its rate limit of %g records/s: retry after %s", app.ID, app.RateLimit, wait.Round(time.Millisecond))
}

// noBody closes the connection after an answer that refuses a request
// before its body was read: the body is not read, not even to reuse the
// connection.
func noBody(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// admit does what can be done before the body is read, cheapest first: it
// checks the content type and encoding, the app's rate limit (app nil: not
// known yet) and the announced size, takes the request's share of the
// memory budget (weighed by the body limit, or by Content-Length when the
// body is not compressed) without waiting for it, and sets the deadline by
// which the body must have arrived. It answers a refusal itself.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, app *App, limit int64, segment bool, types ...string) (*request, bool) {
	ct := r.Header.Get("Content-Type")
	mt, err := "", error(nil)
	if ct != "" {
		mt, _, err = mime.ParseMediaType(ct)
	}
	if err != nil || !contains(types, mt) {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_content_type", "content type %q is not accepted here: use %s", ct, typeList(types))
		return nil, false
	}
	q := &request{s: s, limit: limit, mt: mt, ctx: r.Context()}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		q.gzip = true
	default:
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_content_encoding", "content encoding %q is not accepted: use gzip or none", enc)
		return nil, false
	}
	if app != nil && s.rateEmpty(w, app) {
		return nil, false
	}
	size := limit
	if !q.gzip && r.ContentLength >= 0 {
		if r.ContentLength > limit {
			noBody(w)
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "the body is larger than %d bytes (after decompression): send smaller batches", limit)
			return nil, false
		}
		size = r.ContentLength
	}
	q.weight = requestWeight(max(size, 512), segment)
	if !s.budget.TryAcquire(q.weight) {
		s.m.overload.WithLabelValues("memory_budget").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.RetryAfter.Seconds())))
		noBody(w)
		writeError(w, http.StatusServiceUnavailable, "memory_budget", "the collector is at its memory budget of %d bytes with the requests in flight: retry later", s.cfg.MemoryBudget)
		return nil, false
	}
	rc := http.NewResponseController(w)
	now := time.Now()
	_ = rc.SetReadDeadline(now.Add(s.cfg.ReadTimeout))
	_ = rc.SetWriteDeadline(now.Add(s.cfg.ReadTimeout + s.cfg.ProcessTimeout + s.cfg.ProduceTimeout + 10*time.Second))
	return q, true
}

// read reads the body within the limit (after gunzip) and starts the
// processing deadline. It answers the error itself when it returns false.
func (q *request) read(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	var rd io.Reader = http.MaxBytesReader(w, r.Body, q.limit)
	hint := q.limit
	if q.gzip {
		zr, err := gzip.NewReader(rd)
		switch {
		case isTimeout(err):
			q.bodyTimeout(w)
			return nil, false
		case err != nil:
			writeError(w, http.StatusBadRequest, "malformed_gzip", "Content-Encoding is gzip but the body is not: %v", err)
			return nil, false
		}
		defer zr.Close()
		rd = zr
		hint = min(q.limit, max(r.ContentLength, 0)*4) // a first guess
	} else if r.ContentLength >= 0 {
		hint = r.ContentLength
	}
	body, err := readLimited(rd, q.limit, hint)
	switch {
	case errors.Is(err, errTooLarge) || errors.As(err, new(*http.MaxBytesError)):
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "the body is larger than %d bytes (after decompression): send smaller batches", q.limit)
		return nil, false
	case isTimeout(err):
		q.bodyTimeout(w)
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, "unreadable_body", "reading the body: %v", err)
		return nil, false
	}
	q.deadline = q.s.now().Add(q.s.cfg.ProcessTimeout)
	return body, true
}

func (q *request) bodyTimeout(w http.ResponseWriter) {
	q.s.m.overload.WithLabelValues("body_timeout").Inc()
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestTimeout, "body_timeout", "the body did not arrive within %s; nothing of it is acknowledged", q.s.cfg.ReadTimeout)
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout())
}

// readLimited reads r to its end, at most limit bytes, into a buffer sized
// by hint (the announced length): one allocation when the length is known.
func readLimited(r io.Reader, limit, hint int64) ([]byte, error) {
	buf := make([]byte, 0, min(max(hint, 512), limit)+1)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return nil, errTooLarge
			}
			buf = slices.Grow(buf, int(min(int64(cap(buf)), limit+1-int64(cap(buf)))))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// typeList says which content types are accepted, for a 415.
func typeList(types []string) string {
	var named []string
	none := ""
	for _, t := range types {
		if t == "" {
			none = ", or no Content-Type"
		} else {
			named = append(named, t)
		}
	}
	return strings.Join(named, " or ") + none
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// batch gathers what a request keeps: the records the tag plan accepts,
// encoded at once for Kafka (a decoded record is not kept: its encoded form
// is several times smaller), and the rejections in index order.
type batch struct {
	app       *App
	arena     []byte // key and value of each kept record, one after the other
	ends      []span
	msgs      []bus.Message // made of arena and ends (messages)
	rejected  []Rejection
	unlisted  int // rejections beyond maxListed
	unplanned int
}

type span struct{ keyEnd, end int }

// newBatch takes the buffers of a finished request from pooled, or makes
// them: an arena of at least the body's size, as records encoded for
// Kafka are usually smaller than their JSON (tiny records are larger, and
// grow it; a Segment message whose every 7 bytes make an extra grows it to
// 2.5 times the body).
func newBatch(app *App, bodyLen int) *batch {
	b := &batch{app: app}
	if p, ok := pooled.Get().(*buffers); ok {
		b.ends, b.msgs = p.ends[:0], p.msgs[:0]
		if cap(p.arena) >= bodyLen {
			b.arena = p.arena[:0]
		}
	}
	if b.arena == nil {
		b.arena = make([]byte, 0, bodyLen)
	}
	return b
}

// buffers are what a batch builds its messages in.
type buffers struct {
	arena []byte
	ends  []span
	msgs  []bus.Message
}

// pooled holds the buffers of finished requests for the next ones: an
// arena grown by records larger than their JSON was, for each request,
// 1.2 MB of garbage on a 500 KB Segment batch, and the ends and messages
// of 10,000 tiny records 1.9 MB. Only buffers that no producer can still
// read go back (release).
var pooled sync.Pool

// maxPooled bounds the buffers pooled keeps, in bytes each: a larger one
// is left to the garbage collector.
const maxPooled = 16 << 20

// release gives b's buffers back to pooled. b's records, and the messages
// made of them, must not be read after.
func (b *batch) release() {
	p := &buffers{}
	if cap(b.arena) <= maxPooled {
		p.arena = b.arena[:0]
	}
	if cap(b.ends)*int(unsafe.Sizeof(span{})) <= maxPooled {
		p.ends = b.ends[:0]
	}
	if cap(b.msgs)*int(unsafe.Sizeof(bus.Message{})) <= maxPooled {
		clear(b.msgs) // they point into an arena that may not come back
		p.msgs = b.msgs[:0]
	}
	pooled.Put(p)
	b.arena, b.ends, b.msgs = nil, nil, nil
}

// maxListed bounds the rejections an answer lists: a body of many tiny bad
// records would otherwise get an answer, and hold memory, many times its
// size. The others are only counted.
const maxListed = 1000

func (b *batch) reject(rj Rejection) {
	if len(b.rejected) < maxListed {
		b.rejected = append(b.rejected, rj)
	} else {
		b.unlisted++
	}
}

// add applies the tag plan to rec and keeps it, or refuses it.
func (b *batch) add(index int, rec *tag.Record) {
	before := len(rec.Unplanned)
	if err := b.app.Plan.Apply(rec); err != nil {
		b.reject(rejectionOf(index, err))
		return
	}
	if len(rec.Unplanned) > before {
		b.unplanned++
	}
	b.encode(rec)
}

// addGroup keeps the records of one message (several may come from one
// Segment message), or none of them when the tag plan refuses any.
func (b *batch) addGroup(index int, recs []tag.Record) {
	unplanned := 0
	for i := range recs {
		before := len(recs[i].Unplanned)
		if err := b.app.Plan.Apply(&recs[i]); err != nil {
			b.reject(rejectionOf(index, err))
			return
		}
		if len(recs[i].Unplanned) > before {
			unplanned++
		}
	}
	for i := range recs {
		b.encode(&recs[i])
	}
	b.unplanned += unplanned
}

func (b *batch) encode(rec *tag.Record) {
	if room := cap(b.arena) - len(b.arena); room < 4096 {
		// Double rather than let append grow large slices by a quarter:
		// fewer copies, less garbage.
		b.arena = slices.Grow(b.arena, max(cap(b.arena), 64<<10))
	}
	b.arena = append(b.arena, rec.AppID...)
	b.arena = append(b.arena, '/')
	b.arena = append(b.arena, rec.DeviceID...)
	keyEnd := len(b.arena)
	b.arena = rec.AppendBinary(b.arena)
	b.ends = append(b.ends, span{keyEnd, len(b.arena)})
}

func (b *batch) messages() []bus.Message {
	if cap(b.msgs) < len(b.ends) {
		b.msgs = make([]bus.Message, len(b.ends))
	}
	msgs := b.msgs[:len(b.ends)]
	start := 0
	for i, e := range b.ends {
		msgs[i] = bus.Message{Key: b.arena[start:e.keyEnd:e.keyEnd], Value: b.arena[e.keyEnd:e.end:e.end]}
		start = e.end
	}
	b.msgs = msgs
	return msgs
}

// finish applies the rate limit and the buffer, hands the kept records to
// the log and answers.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, b *batch, warnings []string) {
	app := b.app
	kept := len(b.ends)
	// Once Produce has failed, the producer may still hold the messages
	// (a write cut short by the deadline): the arena is left to the
	// garbage collector. Otherwise nothing reads it past this call.
	held := false
	defer func() {
		if !held {
			b.release()
		}
	}()
	rejected := orderRejections(b.rejected)
	s.m.records.WithLabelValues(app.ID, "rejected").Add(float64(len(rejected) + b.unlisted))
	if kept == 0 {
		resp := Response{Rejected: rejected, Unlisted: b.unlisted, Warnings: warnings}
		code := http.StatusBadRequest
		if len(rejected) == 0 {
			code = http.StatusOK // an empty batch
		}
		writeJSON(w, code, resp)
		return
	}
	if ok, wait := app.bucket.take(s.now(), kept); !ok {
		s.rateLimited(w, app, wait)
		return
	}
	n := int64(len(b.arena))
	if !s.buf.tryAcquire(n) {
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.RetryAfter.Seconds())))
		writeError(w, http.StatusServiceUnavailable, "buffer_full", "the collector already holds %d bytes waiting for Kafka: retry later", s.buf.capacity)
		return
	}
	defer s.buf.release(n)
	msgs := b.messages()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ProduceTimeout)
	defer cancel()
	start := time.Now()
	err := s.prod.Produce(ctx, msgs)
	if err != nil {
		held = true
		s.failed.Store(time.Now().UnixNano())
		s.m.produceErrors.Inc()
		s.m.records.WithLabelValues(app.ID, "failed").Add(float64(kept))
		s.log.Warn("produce failed", "app", app.ID, "records", kept, "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.RetryAfter.Seconds())))
		cause := "the broker refused or failed the write"
		if ctx.Err() != nil {
			cause = "no acknowledgement within " + s.cfg.ProduceTimeout.String()
		}
		writeError(w, http.StatusServiceUnavailable, "kafka_unavailable", "Kafka did not acknowledge the %d records (%s); nothing of this request is acknowledged: retry it (message ids make the retry safe)", kept, cause)
		return
	}
	s.failed.Store(0)
	s.probeErr.Store(nil) // Kafka answered
	s.m.produce.Observe(time.Since(start).Seconds())
	s.m.records.WithLabelValues(app.ID, "accepted").Add(float64(kept))
	if b.unplanned > 0 {
		s.m.records.WithLabelValues(app.ID, "unplanned").Add(float64(b.unplanned))
		warnings = append(warnings, fmt.Sprintf("%d records carry tags that are not in the tag plan of app %q (marked unplanned)", b.unplanned, app.ID))
	}
	writeJSON(w, http.StatusOK, Response{Accepted: kept, Rejected: rejected, Unlisted: b.unlisted, Warnings: warnings})
}

// indexed is a decoded record and its position in the request.
type indexed struct {
	index int
	rec   tag.Record
}

func rejectionOf(index int, err error) Rejection {
	var fe *tag.FieldError
	if errors.As(err, &fe) {
		return Rejection{Index: index, Field: fe.Field, Reason: fe.Reason}
	}
	return Rejection{Index: index, Field: "record", Reason: err.Error()}
}

// orderSteps counts the steps of orderRejections, for the test of its cost.
var orderSteps atomic.Int64

// orderRejections puts the rejections in index order, keeping the order of
// those of one index, in time linear in their number: the handlers gather
// them in order, and when they did not (a caller that appended a second
// sorted run), a counting sort by index puts them in order. (An insertion
// sort here was quadratic: plan-refused records followed by many invalid
// ones cost minutes.)
func orderRejections(rs []Rejection) []Rejection {
	maxIndex, sorted := -1, true
	for i, r := range rs {
		orderSteps.Add(1)
		if i > 0 && r.Index < rs[i-1].Index {
			sorted = false
		}
		maxIndex = max(maxIndex, r.Index)
	}
	if sorted {
		return rs
	}
	if maxIndex > 4*len(rs)+1024 || slices.ContainsFunc(rs, func(r Rejection) bool { return r.Index < 0 }) {
		// Indexes are positions in the request: never this sparse. Stay
		// n log n all the same.
		slices.SortStableFunc(rs, func(a, b Rejection) int { return cmp.Compare(a.Index, b.Index) })
		return rs
	}
	at := make([]int, maxIndex+2)
	for _, r := range rs {
		orderSteps.Add(1)
		at[r.Index+1]++
	}
	for i := 1; i < len(at); i++ {
		orderSteps.Add(1)
		at[i] += at[i-1]
	}
	out := make([]Rejection, len(rs))
	for _, r := range rs {
		orderSteps.Add(1)
		out[at[r.Index]] = r
		at[r.Index]++
	}
	return out
}
