package mock

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Apple's limits ("Sending notification requests to APNs").
const (
	apnsMaxPayload     = 4096
	apnsMaxVoIPPayload = 5120
	apnsMaxCollapseID  = 64
	// DefaultMaxConcurrentStreams is the HTTP/2 stream limit the APNs mock
	// advertises per connection. Apple documents no number ("don't assume a
	// specific number of streams"); 1000 lets one connection carry 25k
	// requests a second at a 40 ms round trip.
	DefaultMaxConcurrentStreams = 1000
)

// apnsPushTypes are the values of apns-push-type Apple documents, each with
// the suffix its topic must have ("" for the bundle id itself).
var apnsPushTypes = map[string]string{
	"alert":        "",
	"background":   "",
	"location":     ".location-query",
	"voip":         ".voip",
	"complication": ".complication",
	"fileprovider": ".pushkit.fileprovider",
	"mdm":          "",
	"liveactivity": ".push-type.liveactivity",
	"pushtotalk":   ".voip-ptt",
	"widgets":      ".push-type.widgets",
	"controls":     ".push-type.controls",
}

// APNsConfig configures an APNs mock. The zero value is usable.
type APNsConfig struct {
	// Addr is the address to listen on; "" is a free port on 127.0.0.1.
	Addr string
	// Development adds the apns-unique-id header Apple sends only from its
	// development environment.
	Development bool
	// MaxConcurrentStreams per HTTP/2 connection; 0 is
	// DefaultMaxConcurrentStreams.
	MaxConcurrentStreams int
	// Latency is added to every request before it is answered (SetLatency
	// changes it); requests wait concurrently.
	Latency time.Duration
	// KeepRecords is how many full records to keep, the newest; 0 is
	// DefaultKeepRecords, negative keeps none (counts are always kept).
	KeepRecords int
	// OnRecord, if set, is called with every record, from the request's
	// goroutine (so concurrently) before the answer is written.
	OnRecord func(APNsRecord)
	// TokenUpdateInterval is the least time between two different provider
	// tokens on one connection; 0 is DefaultTokenUpdateInterval, negative
	// does not check.
	TokenUpdateInterval time.Duration
	// RequireRegisteredDevices answers BadDeviceToken for a device token
	// not registered with RegisterDevice.
	RequireRegisteredDevices bool
	// Now is the clock for provider tokens; nil is time.Now.
	Now func() time.Time
	// Connect makes the mock reachable as Apple's hosts by a client that
	// cannot be given another host but can be given a proxy (gorush's
	// core.http_proxy): the mock makes its own CA (CAPEM) and serves, on its
	// TLS port and through tunnels, a certificate from it naming
	// api.push.apple.com, api.sandbox.push.apple.com, localhost, 127.0.0.1
	// and ::1; and it listens on ConnectAddr for plain-HTTP CONNECT requests
	// to those two hosts (port 443 or 2197), answers 200, and terminates TLS
	// on the tunnelled connection in process, serving it as its TLS port
	// (same checks, rules, latency, records and stats). Other targets are
	// answered 403, other methods 405.
	Connect bool
	// ConnectAddr is the address of the CONNECT listener; "" is a free port
	// on 127.0.0.1.
	ConnectAddr string
}

// APNsRecord is one request the APNs mock answered.
type APNsRecord struct {
	Time  time.Time
	Token string // the device token in the path
	// Header holds the request's apns-* headers (authorization left out).
	Header  http.Header
	Payload []byte
	// Auth is how the request authenticated: "token" (TeamID, KeyID),
	// "certificate" (CertSerial) or "" when it did not.
	Auth            string
	TeamID, KeyID   string
	CertSerial      string
	Status          int
	Reason          string // "" when accepted
	ApnsID          string // the apns-id answered
	ByRule          bool   // the answer came from a rule
	RemoteAddr      string
	Proto           string // HTTP/2.0
	Topic, PushType string
	Priority        int // the effective priority (10 when the header is absent)
	CollapseID      string
	Expiration      int64 // apns-expiration, -1 when absent
	// Host is the request's authority (:authority): 127.0.0.1:port on the
	// TLS port, api.sandbox.push.apple.com (say) through a tunnel.
	Host string
	// Tunnel is the CONNECT target of the request's connection
	// (api.sandbox.push.apple.com:443, say), "" when it came to the TLS port.
	Tunnel             string
	ContentAvailable   bool
	MutableContent     bool
	HasAlert, HasSound bool
}

// APNsRule makes the mock answer Answer to requests for Token and Topic
// ("" = any), the next Times matching requests or always when Times <= 0.
// Rules apply to requests that authenticated and are well formed, in the
// order they were added.
type APNsRule struct {
	Token, Topic string
	Answer       APNsAnswer
	Times        int
}

// APNs is a mock of Apple's push service: HTTP/2 over TLS, POST
// /3/device/{token}. Safe for concurrent use.
type APNs struct {
	cfg     APNsConfig
	srv     *httptest.Server
	auth    *apnsAuth
	rules   ruleSet[APNsAnswer]
	latency latency
	rec     *recorder[APNsRecord]
	count   counters

	devMu   sync.RWMutex
	devices map[string]string // device token → topic

	pki          *serverPKI    // with Connect
	proxy        *connectProxy // with Connect
	tunnelServed chan struct{} // closed when the server stops serving tunnels
}

// StartAPNs starts an APNs mock listening with TLS and HTTP/2.
func StartAPNs(cfg APNsConfig) (*APNs, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if cfg.TokenUpdateInterval == 0 {
		cfg.TokenUpdateInterval = DefaultTokenUpdateInterval
	}
	auth, err := newAPNsAuth(cfg.Now, cfg.TokenUpdateInterval)
	if err != nil {
		return nil, fmt.Errorf("start APNs mock: %w", err)
	}
	l, err := listen(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("start APNs mock: %w", err)
	}
	m := &APNs{cfg: cfg, auth: auth, rec: newRecorder(cfg.KeepRecords, cfg.OnRecord), devices: make(map[string]string)}
	m.latency.set(cfg.Latency)
	m.srv = newServer(l, http.HandlerFunc(m.serve))
	m.srv.EnableHTTP2 = true
	m.srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: cfg.MaxConcurrentStreams}
	m.srv.Config.ConnContext = withConnState
	m.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	if cfg.Connect {
		if m.pki, err = newServerPKI(cfg.Now()); err != nil {
			l.Close()
			return nil, fmt.Errorf("start APNs mock: %w", err)
		}
		m.srv.TLS.Certificates = []tls.Certificate{m.pki.cert}
		if m.proxy, err = startConnectProxy(cfg.ConnectAddr); err != nil {
			l.Close()
			return nil, fmt.Errorf("start APNs mock: CONNECT listener: %w", err)
		}
	}
	m.srv.StartTLS()
	if m.proxy != nil {
		m.tunnelServed = make(chan struct{})
		tl := tls.NewListener(m.proxy.tunnels, m.srv.TLS)
		go func() {
			defer close(m.tunnelServed)
			_ = m.srv.Config.Serve(tl)
		}()
	}
	return m, nil
}

// Close stops the mock, waiting for requests in flight.
func (m *APNs) Close() {
	if m.proxy != nil {
		m.proxy.close()
		<-m.tunnelServed
	}
	m.srv.Close()
}

// URL is the mock's base URL (https://127.0.0.1:port), to use as an apns2
// client's Host.
func (m *APNs) URL() string { return m.srv.URL }

// CertPool holds the certificate of the mock's server (and, with
// APNsConfig.Connect, the CA that signed it), for clients' RootCAs.
func (m *APNs) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(m.srv.Certificate())
	if m.pki != nil {
		if ca, err := x509.ParseCertificate(m.pki.caDER); err == nil {
			p.AddCert(ca)
		}
	}
	return p
}

// CertificatePEM is the mock server's certificate in PEM, for a client in
// another process to trust (a CA file).
func (m *APNs) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.srv.Certificate().Raw})
}

// TLSConfig is a client configuration that trusts the mock (and offers no
// client certificate).
func (m *APNs) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: m.CertPool(), MinVersion: tls.VersionTLS12}
}

// RegisterKey registers the public half of a team's signing key (.p8): the
// mock accepts provider tokens with kid keyID and iss teamID signed by it,
// for topics (none = any topic).
func (m *APNs) RegisterKey(teamID, keyID string, pub *ecdsa.PublicKey, topics ...string) {
	m.auth.registerKey(teamID, keyID, pub, topics)
}

// NewKey generates a signing key for a team, registers it and returns it in
// .p8 form, as Apple's developer site hands it out.
func (m *APNs) NewKey(teamID, keyID string, topics ...string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	p8, err := EncodeP8(key)
	if err != nil {
		return nil, err
	}
	m.RegisterKey(teamID, keyID, &key.PublicKey, topics...)
	return p8, nil
}

// RevokeKey revokes a team's key: tokens it signed are answered 403
// InvalidProviderToken from now on. False if no such key is registered.
func (m *APNs) RevokeKey(teamID, keyID string) bool { return m.auth.revokeKey(teamID, keyID) }

// IssueCertificate makes a client certificate for certificate-based
// authentication, valid for topics (the first is its bundle id).
func (m *APNs) IssueCertificate(topics ...string) (tls.Certificate, error) {
	return m.auth.issue(topics)
}

// RevokeCertificate makes requests over connections authenticated with c
// answered 403 BadCertificate. False if the mock did not issue c.
func (m *APNs) RevokeCertificate(c tls.Certificate) bool { return m.auth.revokeCert(c) }

// RegisterDevice says that token belongs to an app with topic: a request
// for it with another topic is answered DeviceTokenNotForTopic.
func (m *APNs) RegisterDevice(token, topic string) {
	m.devMu.Lock()
	m.devices[token] = topic
	m.devMu.Unlock()
}

// AddRule adds a rule; see APNsRule.
func (m *APNs) AddRule(r APNsRule) { m.rules.add(r.Token, r.Topic, r.Answer, r.Times) }

// ClearRules removes every rule.
func (m *APNs) ClearRules() { m.rules.clear() }

// SetLatency sets the delay added to every request.
func (m *APNs) SetLatency(d time.Duration) { m.latency.set(d) }

// Records returns the kept records, oldest first.
func (m *APNs) Records() []APNsRecord { return m.rec.snapshot() }

// ResetRecords forgets the kept records (not the counts).
func (m *APNs) ResetRecords() { m.rec.reset() }

// Stats returns the counts since the mock started.
func (m *APNs) Stats() Stats { return m.count.stats() }

func (m *APNs) serve(w http.ResponseWriter, r *http.Request) {
	m.count.enter()
	defer m.count.leave()
	rec := APNsRecord{Time: time.Now(), RemoteAddr: r.RemoteAddr, Proto: r.Proto, Expiration: -1, Header: apnsHeaders(r.Header), Host: r.Host}
	if cs, _ := r.Context().Value(connKey{}).(*connState); cs != nil {
		rec.Tunnel = cs.tunnel
	}
	if !m.latency.wait(r.Context()) {
		return
	}
	ans, forced := m.decide(r, &rec)
	m.answer(w, &rec, ans, forced)
}

// decide checks a request as APNs does: method and path, authentication,
// headers, device token, payload; then the rules. A zero answer accepts.
func (m *APNs) decide(r *http.Request, rec *APNsRecord) (APNsAnswer, bool) {
	if r.Method != http.MethodPost {
		return APNsReject(ReasonMethodNotAllowed), false
	}
	const prefix = "/3/device/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		return APNsReject(ReasonBadPath), false
	}
	rec.Token = r.URL.Path[len(prefix):]
	if strings.Contains(rec.Token, "/") {
		return APNsReject(ReasonBadPath), false
	}
	body, err := readBody(r, 64<<10)
	if err != nil {
		return APNsReject(ReasonIdleTimeout), false
	}
	rec.Payload = body
	if rec.Token == "" {
		return APNsReject(ReasonMissingDeviceToken), false
	}
	p, reason := m.auth.authenticate(r)
	if reason != "" {
		return APNsReject(reason), false
	}
	switch {
	case p.keyID != "":
		rec.Auth, rec.TeamID, rec.KeyID = "token", p.team, p.keyID
	default:
		rec.Auth, rec.CertSerial = "certificate", p.certSerial
	}
	if reason := m.checkHeaders(r.Header, p, rec); reason != "" {
		return APNsReject(reason), false
	}
	if reason := m.checkDevice(rec.Token, rec.Topic); reason != "" {
		return APNsReject(reason), false
	}
	if reason := checkPayload(body, rec); reason != "" {
		return APNsReject(reason), false
	}
	if a, ok := m.rules.match(rec.Token, rec.Topic); ok {
		return a, true
	}
	return APNsAnswer{}, false
}

// checkHeaders checks the apns-* headers and fills the record from them.
func (m *APNs) checkHeaders(h http.Header, p principal, rec *APNsRecord) string {
	for name, v := range h {
		if strings.HasPrefix(strings.ToLower(name), "apns-") && len(v) > 1 {
			return ReasonDuplicateHeaders
		}
	}
	rec.Topic = h.Get("apns-topic")
	switch {
	case rec.Topic == "" && len(p.certTopics) == 1:
		rec.Topic = p.certTopics[0]
	case rec.Topic == "":
		return ReasonMissingTopic
	case p.certSerial != "" && !contains(p.certTopics, rec.Topic),
		p.keyTopics != nil && !p.keyTopics[rec.Topic]:
		return ReasonTopicDisallowed
	}
	if id := h.Get("apns-id"); id != "" && !isUUID(id) {
		return ReasonBadMessageID
	}
	rec.Priority = 10
	if v := h.Get("apns-priority"); v != "" {
		switch v {
		case "10", "5", "1":
			rec.Priority, _ = strconv.Atoi(v)
		default:
			return ReasonBadPriority
		}
	}
	if v := h.Get("apns-expiration"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return ReasonBadExpirationDate
		}
		rec.Expiration = n
	}
	rec.CollapseID = h.Get("apns-collapse-id")
	if len(rec.CollapseID) > apnsMaxCollapseID {
		return ReasonBadCollapseID
	}
	rec.PushType = h.Get("apns-push-type")
	if rec.PushType != "" {
		suffix, ok := apnsPushTypes[rec.PushType]
		if !ok || !strings.HasSuffix(rec.Topic, suffix) {
			return ReasonInvalidPushType
		}
	}
	return ""
}

func (m *APNs) checkDevice(token, topic string) string {
	if len(token) < 64 || len(token) > 200 || len(token)%2 != 0 {
		return ReasonBadDeviceToken
	}
	for i := 0; i < len(token); i++ {
		if !isHex(token[i]) {
			return ReasonBadDeviceToken
		}
	}
	m.devMu.RLock()
	t, ok := m.devices[token]
	m.devMu.RUnlock()
	switch {
	case !ok && m.cfg.RequireRegisteredDevices:
		return ReasonBadDeviceToken
	case ok && t != topic:
		return ReasonDeviceTokenNotForTopic
	}
	return ""
}

// checkPayload checks the body: present, within Apple's size limit, a JSON
// object with an aps dictionary, and a background push made as Apple says
// (content-available 1, priority 5).
func checkPayload(body []byte, rec *APNsRecord) string {
	if len(body) == 0 {
		return ReasonPayloadEmpty
	}
	limit := apnsMaxPayload
	if rec.PushType == "voip" {
		limit = apnsMaxVoIPPayload
	}
	if len(body) > limit {
		return ReasonPayloadTooLarge
	}
	var payload struct {
		Aps map[string]json.RawMessage `json:"aps"`
	}
	// Apple documents no reason for a body that is not a JSON object with an
	// aps dictionary; the mock answers PayloadEmpty, the nearest it lists.
	if err := json.Unmarshal(body, &payload); err != nil || payload.Aps == nil {
		return ReasonPayloadEmpty
	}
	aps := payload.Aps
	rec.ContentAvailable = string(aps["content-available"]) == "1"
	rec.MutableContent = string(aps["mutable-content"]) == "1"
	_, rec.HasAlert = aps["alert"]
	_, rec.HasSound = aps["sound"]
	if rec.PushType == "background" {
		if !rec.ContentAvailable {
			return ReasonInvalidPushType
		}
		if rec.Priority != 5 {
			return ReasonBadPriority
		}
	}
	return ""
}

func (m *APNs) answer(w http.ResponseWriter, rec *APNsRecord, a APNsAnswer, forced bool) {
	rec.ApnsID = rec.Header.Get("apns-id")
	if rec.ApnsID == "" {
		rec.ApnsID = newUUID()
	}
	h := w.Header()
	h.Set("apns-id", rec.ApnsID)
	if m.cfg.Development {
		h.Set("apns-unique-id", newUUID())
	}
	rec.ByRule = forced
	if a.Reason == "" && (a.Status == 0 || a.Status == http.StatusOK) {
		rec.Status = http.StatusOK
		m.count.count(rec.Status, "", forced)
		m.rec.add(*rec)
		w.WriteHeader(http.StatusOK)
		return
	}
	rec.Status, rec.Reason = a.status(), a.Reason
	m.count.count(rec.Status, rec.Reason, forced)
	m.rec.add(*rec)
	body := map[string]any{"reason": a.Reason}
	if rec.Status == http.StatusGone {
		ts := a.Timestamp
		if ts.IsZero() {
			ts = rec.Time
		}
		body["timestamp"] = ts.UnixMilli()
	}
	if a.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((a.RetryAfter+time.Second-1)/time.Second), 10))
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(rec.Status)
	_ = json.NewEncoder(w).Encode(body)
}

// apnsHeaders copies the request's apns-* headers.
func apnsHeaders(h http.Header) http.Header {
	out := make(http.Header, 6)
	for name, v := range h {
		if strings.HasPrefix(strings.ToLower(name), "apns-") {
			out[name] = append([]string(nil), v...)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
