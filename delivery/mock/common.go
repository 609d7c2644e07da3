package mock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultKeepRecords is how many full records a mock keeps when its
// configuration says 0: the newest ones, older ones dropped (counts are kept
// for all).
const DefaultKeepRecords = 10000

// Stats counts every request a mock answered since it started. Safe to read
// while the mock serves; the numbers are a consistent snapshot only when no
// request is in flight.
type Stats struct {
	Requests int64 // every request answered, accepted or refused
	Accepted int64 // answered 200
	Refused  int64 // answered anything else
	// ByReason counts refusals by APNs reason, or by FCM error code (the
	// FcmError detail's errorCode, else the google.rpc.Status status).
	ByReason map[string]int64
	// ByRule counts the answers that a rule forced (successes not included).
	ByRule int64
	// MaxInFlight is the most requests that were inside the handler at once
	// (latency included): it shows whether requests overlapped.
	MaxInFlight int64
}

// counters holds a mock's statistics; safe for concurrent use.
type counters struct {
	requests, accepted, refused, byRule atomic.Int64
	inFlight, maxInFlight               atomic.Int64

	mu       sync.Mutex
	byReason map[string]int64
}

func (c *counters) enter() {
	n := c.inFlight.Add(1)
	for {
		m := c.maxInFlight.Load()
		if n <= m || c.maxInFlight.CompareAndSwap(m, n) {
			return
		}
	}
}

func (c *counters) leave() { c.inFlight.Add(-1) }

func (c *counters) count(status int, reason string, byRule bool) {
	c.requests.Add(1)
	if status == http.StatusOK {
		c.accepted.Add(1)
		return
	}
	c.refused.Add(1)
	if byRule {
		c.byRule.Add(1)
	}
	c.mu.Lock()
	if c.byReason == nil {
		c.byReason = make(map[string]int64)
	}
	c.byReason[reason]++
	c.mu.Unlock()
}

func (c *counters) stats() Stats {
	s := Stats{
		Requests:    c.requests.Load(),
		Accepted:    c.accepted.Load(),
		Refused:     c.refused.Load(),
		ByRule:      c.byRule.Load(),
		MaxInFlight: c.maxInFlight.Load(),
		ByReason:    make(map[string]int64),
	}
	c.mu.Lock()
	for k, v := range c.byReason {
		s.ByReason[k] = v
	}
	c.mu.Unlock()
	return s
}

// recorder keeps the newest records in a ring and hands each one to an
// optional hook; safe for concurrent use.
type recorder[R any] struct {
	hook func(R)
	keep int

	mu   sync.Mutex
	buf  []R
	next int
	full bool
}

func newRecorder[R any](keep int, hook func(R)) *recorder[R] {
	if keep == 0 {
		keep = DefaultKeepRecords
	}
	if keep < 0 {
		keep = 0
	}
	return &recorder[R]{hook: hook, keep: keep, buf: make([]R, 0, min(keep, 1024))}
}

func (r *recorder[R]) add(rec R) {
	if keep := r.keep; keep > 0 {
		r.mu.Lock()
		if len(r.buf) < keep {
			r.buf = append(r.buf, rec)
		} else {
			r.buf[r.next] = rec
			r.full = true
		}
		r.next = (r.next + 1) % keep
		r.mu.Unlock()
	}
	if r.hook != nil {
		r.hook(rec)
	}
}

// snapshot returns the kept records, oldest first.
func (r *recorder[R]) snapshot() []R {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]R, 0, len(r.buf))
	if r.full {
		out = append(out, r.buf[r.next:]...)
		out = append(out, r.buf[:r.next]...)
		return out
	}
	return append(out, r.buf...)
}

func (r *recorder[R]) reset() {
	r.mu.Lock()
	r.buf = r.buf[:0]
	r.next = 0
	r.full = false
	r.mu.Unlock()
}

// rule is one entry of a ruleSet: requests matching token and topic (empty =
// any) get answer, the next left times or always when left < 0.
type rule[A any] struct {
	token, topic string
	answer       A
	left         int
}

// ruleSet holds the rules of a mock in the order they were added; the first
// rule that matches a request and has uses left answers it. Safe for
// concurrent use; free when empty.
type ruleSet[A any] struct {
	n     atomic.Int32
	mu    sync.Mutex
	rules []*rule[A]
}

func (s *ruleSet[A]) add(token, topic string, a A, times int) {
	left := times
	if times <= 0 {
		left = -1
	}
	s.mu.Lock()
	s.rules = append(s.rules, &rule[A]{token: token, topic: topic, answer: a, left: left})
	s.n.Store(int32(len(s.rules)))
	s.mu.Unlock()
}

func (s *ruleSet[A]) clear() {
	s.mu.Lock()
	s.rules = nil
	s.n.Store(0)
	s.mu.Unlock()
}

// match returns the answer of the first matching rule with uses left, using
// one of its uses; spent rules are dropped.
func (s *ruleSet[A]) match(token, topic string) (A, bool) {
	var zero A
	if s.n.Load() == 0 {
		return zero, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.rules {
		if (r.token != "" && r.token != token) || (r.topic != "" && r.topic != topic) {
			continue
		}
		a := r.answer
		if r.left > 0 {
			r.left--
			if r.left == 0 {
				s.rules = append(s.rules[:i:i], s.rules[i+1:]...)
				s.n.Store(int32(len(s.rules)))
			}
		}
		return a, true
	}
	return zero, false
}

// latency is a delay added to every request; safe for concurrent use.
type latency struct{ d atomic.Int64 }

func (l *latency) set(d time.Duration) { l.d.Store(int64(d)) }

// wait sleeps for the latency without holding anything, so that requests
// overlap; false if the request was cancelled meanwhile.
func (l *latency) wait(ctx context.Context) bool {
	d := time.Duration(l.d.Load())
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// readBody reads a request body of at most limit bytes (more is cut), in one
// allocation when the length is known.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= limit {
		b := make([]byte, n)
		_, err := io.ReadFull(r.Body, b)
		return b, err
	}
	return io.ReadAll(io.LimitReader(r.Body, limit))
}

// listen opens the mock's listener: addr, or a free port on 127.0.0.1.
func listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	return net.Listen("tcp", addr)
}

// newServer wraps a listener and handler in an unstarted httptest.Server.
func newServer(l net.Listener, h http.Handler) *httptest.Server {
	return &httptest.Server{Listener: l, Config: &http.Server{
		Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0), // TLS handshakes refused on purpose in tests
	}}
}

// newUUID returns a random (version 4) UUID in canonical upper-case form, as
// APNs generates them.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	for i, c := range s {
		if c >= 'a' && c <= 'f' {
			s[i] = c - 'a' + 'A'
		}
	}
	return string(s[:])
}

// isUUID reports whether s is a UUID in the 8-4-4-4-12 hexadecimal form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
