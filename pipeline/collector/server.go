package collector

import (
	"bytes"
	"compress/gzip"
	"context"
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/tag"
)

// Server is the collector. Create it with New; it is safe for concurrent
// requests.
type Server struct {
	cfg    Config
	apps   *Apps
	prod   bus.Producer
	log    *slog.Logger
	m      *metrics
	buf    *buffer
	reg    *prometheus.Registry
	now    func() time.Time
	failed atomic.Int64 // unix nanos of the last produce failure not followed by a success
	inbox  Inbox        // in-app messages; nil: not served
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
	s.m = newMetrics(reg, s.buf)
	s.buf.full = s.m.bufferFull.Inc
	return s, nil
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/tags", s.endpoint("tags", s.handleTags))
	for _, call := range []string{"batch", "track", "screen", "page", "identify", "group", "alias"} {
		mux.Handle("POST /v1/"+call, s.endpoint(call, s.segmentHandler(call)))
	}
	mux.Handle("GET /v1/projects/{writeKey}/settings", s.endpoint("settings", s.handleSettings))
	mux.Handle("GET /v1/inapp", s.endpoint("inapp", s.handleInApp))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.handleReady)
	return mux
}

// Run serves until ctx ends, then shuts down gracefully: requests in flight
// finish (and get their Kafka acknowledgement) before Run returns.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("collector listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("collector serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), s.cfg.ProduceTimeout+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("collector shutdown: %w", err)
	}
	return nil
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	if t := s.failed.Load(); t != 0 {
		http.Error(w, "kafka did not acknowledge the last write at "+time.Unix(0, t).UTC().Format(time.RFC3339), http.StatusServiceUnavailable)
		return
	}
	if s.buf.inUse() >= s.buf.capacity {
		http.Error(w, "buffer full", http.StatusServiceUnavailable)
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

func (s *Server) endpoint(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
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
	Warnings []string    `json:"warnings,omitempty"`
}

// ErrorBody is the body of an answer that refuses the whole request.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Offset  *int64 `json:"offset,omitempty"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, format string, args ...any) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, fmt.Sprintf(format, args...)
	writeJSON(w, status, b)
}

func writeSyntaxError(w http.ResponseWriter, err error) {
	var b ErrorBody
	b.Error.Code = "malformed_json"
	if off, ok := tag.SyntaxOffset(err); ok {
		o := int64(off)
		b.Error.Offset = &o
		b.Error.Message = fmt.Sprintf("malformed JSON in the body: %v", err)
	} else {
		b.Error.Message = "malformed JSON: " + err.Error()
	}
	writeJSON(w, http.StatusBadRequest, b)
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
		w.Header().Set("WWW-Authenticate", `Basic realm="engage"`)
		writeError(w, http.StatusUnauthorized, "missing_write_key", "no write key: send it as the HTTP Basic user name (Segment style), a Bearer token or the X-Write-Key header")
		return nil, false
	}
	app, ok := s.apps.ByKey(key)
	if !ok {
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

// readBody checks the content type, reads the body within limit (after
// gunzip) and answers the error itself when it returns ok=false. types are
// the media types accepted; "" among them accepts a request without
// Content-Type.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64, types ...string) (body []byte, mediaType string, ok bool) {
	ct := r.Header.Get("Content-Type")
	mt, err := "", error(nil)
	if ct != "" {
		mt, _, err = mime.ParseMediaType(ct)
	}
	if err != nil || !contains(types, mt) {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_content_type", "content type %q is not accepted here: use %s", ct, typeList(types))
		return nil, "", false
	}
	var rd io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			writeError(w, http.StatusBadRequest, "malformed_gzip", "Content-Encoding is gzip but the body is not: %v", err)
			return nil, "", false
		}
		defer zr.Close()
		rd = zr
	default:
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_content_encoding", "content encoding %q is not accepted: use gzip or none", enc)
		return nil, "", false
	}
	body, err = readLimited(rd, limit)
	switch {
	case errors.Is(err, errTooLarge) || errors.As(err, new(*http.MaxBytesError)):
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "the body is larger than %d bytes (after decompression): send smaller batches", limit)
		return nil, "", false
	case err != nil:
		writeError(w, http.StatusBadRequest, "unreadable_body", "reading the body: %v", err)
		return nil, "", false
	}
	return body, mt, true
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	buf := bodyPool.Get().(*bytes.Buffer)
	defer bodyPool.Put(buf)
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, errTooLarge
	}
	return bytes.Clone(buf.Bytes()), nil
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

// commit applies the app's tag plan, the rate limit and the buffer, hands
// the records to the log and answers. rejected holds the records already
// refused by the decoder.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, app *App, recs []indexed, rejected []Rejection, warnings []string) {
	kept := recs[:0]
	unplanned := 0
	for _, ir := range recs {
		before := len(ir.rec.Unplanned)
		if err := app.Plan.Apply(&ir.rec); err != nil {
			rejected = append(rejected, rejectionOf(ir.index, err))
			continue
		}
		if len(ir.rec.Unplanned) > before {
			unplanned++
		}
		kept = append(kept, ir)
	}
	sortRejections(rejected)
	s.m.records.WithLabelValues(app.ID, "rejected").Add(float64(len(rejected)))
	if len(kept) == 0 {
		resp := Response{Rejected: rejected, Warnings: warnings}
		code := http.StatusBadRequest
		if len(rejected) == 0 {
			code = http.StatusOK // an empty batch
		}
		writeJSON(w, code, resp)
		return
	}
	if ok, wait := app.bucket.take(s.now(), len(kept)); !ok {
		s.m.rateLimited.WithLabelValues(app.ID).Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeError(w, http.StatusTooManyRequests, "rate_limited", "app %q is over its rate limit of %g records/s: retry after %s", app.ID, app.RateLimit, wait.Round(time.Millisecond))
		return
	}
	msgs := make([]bus.Message, len(kept))
	size := 0
	for i := range kept {
		size += 64 + len(kept[i].rec.MessageID) + len(kept[i].rec.Name)
	}
	arena := make([]byte, 0, size*2)
	for i := range kept {
		rec := &kept[i].rec
		start := len(arena)
		arena = append(arena, rec.AppID...)
		arena = append(arena, '/')
		arena = append(arena, rec.DeviceID...)
		keyEnd := len(arena)
		arena = rec.AppendBinary(arena)
		msgs[i] = bus.Message{Key: arena[start:keyEnd:keyEnd], Value: arena[keyEnd:len(arena):len(arena)]}
	}
	n := int64(len(arena))
	if !s.buf.tryAcquire(n) {
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.RetryAfter.Seconds())))
		writeError(w, http.StatusServiceUnavailable, "buffer_full", "the collector already holds %d bytes waiting for Kafka: retry later", s.buf.capacity)
		return
	}
	defer s.buf.release(n)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ProduceTimeout)
	defer cancel()
	start := time.Now()
	if err := s.prod.Produce(ctx, msgs); err != nil {
		s.failed.Store(time.Now().UnixNano())
		s.m.produceErrors.Inc()
		s.m.records.WithLabelValues(app.ID, "failed").Add(float64(len(kept)))
		s.log.Warn("produce failed", "app", app.ID, "records", len(kept), "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.RetryAfter.Seconds())))
		cause := "the broker refused or failed the write"
		if ctx.Err() != nil {
			cause = "no acknowledgement within " + s.cfg.ProduceTimeout.String()
		}
		writeError(w, http.StatusServiceUnavailable, "kafka_unavailable", "Kafka did not acknowledge the %d records (%s); nothing of this request is acknowledged: retry it (message ids make the retry safe)", len(kept), cause)
		return
	}
	s.failed.Store(0)
	s.m.produce.Observe(time.Since(start).Seconds())
	s.m.records.WithLabelValues(app.ID, "accepted").Add(float64(len(kept)))
	if unplanned > 0 {
		s.m.records.WithLabelValues(app.ID, "unplanned").Add(float64(unplanned))
		warnings = append(warnings, fmt.Sprintf("%d records carry tags that are not in the tag plan of app %q (marked unplanned)", unplanned, app.ID))
	}
	writeJSON(w, http.StatusOK, Response{Accepted: len(kept), Rejected: rejected, Warnings: warnings})
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

func sortRejections(rs []Rejection) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j-1].Index > rs[j].Index; j-- {
			rs[j-1], rs[j] = rs[j], rs[j-1]
		}
	}
}
