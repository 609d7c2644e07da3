package mock

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// FCMConfig configures an FCM mock. The zero value is usable.
type FCMConfig struct {
	// Addr is the address to listen on; "" is a free port on 127.0.0.1.
	Addr string
	// TLS serves HTTPS with HTTP/2 instead of plain HTTP/1.1. The Admin SDK
	// built with option.WithEndpoint trusts only the system's roots, so it
	// needs plain HTTP, or TLS and a client of its own (option.WithHTTPClient).
	TLS bool
	// Latency is added to every send before it is answered (SetLatency
	// changes it); sends wait concurrently. The token endpoint has none.
	Latency time.Duration
	// KeepRecords is how many full records to keep, the newest; 0 is
	// DefaultKeepRecords, negative keeps none (counts are always kept).
	KeepRecords int
	// OnRecord, if set, is called with every record of a send, from the
	// request's goroutine (so concurrently) before the answer is written.
	OnRecord func(FCMRecord)
	// AccessTokenLifetime is how long issued access tokens are valid; 0 is
	// DefaultAccessTokenLifetime.
	AccessTokenLifetime time.Duration
	// Now is the clock for assertions and access tokens; nil is time.Now.
	Now func() time.Time
}

// FCMRecord is one send the FCM mock answered.
type FCMRecord struct {
	Time       time.Time
	RemoteAddr string
	Proto      string // HTTP/1.1, or HTTP/2.0 over TLS
	Project    string // from the path
	Account    string // client_email of the access token; "" if none was valid
	// Header holds the request's headers (Authorization left out).
	Header http.Header
	// Body is the request body; Message its "message" object.
	Body                    []byte
	Message                 json.RawMessage
	Token, Topic, Condition string
	ValidateOnly            bool
	Status                  int
	// Code is the FcmError errorCode answered, else the google.rpc status
	// (UNAUTHENTICATED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED…); "" when
	// accepted.
	Code   string
	Name   string // the message name answered
	ByRule bool
}

// FCMRule makes the mock answer Answer to sends to Token or Topic ("" =
// any), the next Times matching sends or always when Times <= 0. Rules apply
// to sends that authenticated and are well formed, in the order they were
// added.
type FCMRule struct {
	Token, Topic string
	Answer       FCMAnswer
	Times        int
}

// FCM is a mock of Firebase Cloud Messaging's HTTP v1 API (POST
// /v1/projects/{project}/messages:send) and of Google's OAuth 2.0 token
// endpoint for service accounts (POST /token). Safe for concurrent use.
type FCM struct {
	cfg     FCMConfig
	srv     *httptest.Server
	auth    *fcmAuth
	rules   ruleSet[FCMAnswer]
	latency latency
	rec     *recorder[FCMRecord]
	count   counters
	seq     atomic.Uint64
}

// StartFCM starts an FCM mock.
func StartFCM(cfg FCMConfig) (*FCM, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AccessTokenLifetime == 0 {
		cfg.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	l, err := listen(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("start FCM mock: %w", err)
	}
	m := &FCM{
		cfg: cfg,
		auth: &fcmAuth{now: cfg.Now, lifetime: cfg.AccessTokenLifetime,
			accounts: make(map[string]*serviceAccount), tokens: make(map[string]*accessToken)},
		rec: newRecorder(cfg.KeepRecords, cfg.OnRecord),
	}
	m.latency.set(cfg.Latency)
	mux := http.NewServeMux()
	mux.HandleFunc("/token", m.serveToken)
	mux.HandleFunc("/", m.serveSend)
	m.srv = newServer(l, mux)
	if cfg.TLS {
		m.srv.EnableHTTP2 = true
		m.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		m.srv.StartTLS()
	} else {
		m.srv.Start()
	}
	return m, nil
}

// Close stops the mock, waiting for requests in flight.
func (m *FCM) Close() { m.srv.Close() }

// URL is the mock's base URL.
func (m *FCM) URL() string { return m.srv.URL }

// Endpoint is the URL to give the Admin SDK with option.WithEndpoint: the
// mock's base URL and /v1, as the SDK's default is https://fcm.googleapis.com/v1.
func (m *FCM) Endpoint() string { return m.srv.URL + "/v1" }

// TokenURL is the mock's OAuth 2.0 token endpoint, the token_uri of the
// service accounts it makes.
func (m *FCM) TokenURL() string { return m.srv.URL + "/token" }

// CertPool holds the mock's server certificate when it serves TLS; nil
// otherwise.
func (m *FCM) CertPool() *x509.CertPool {
	if m.srv.Certificate() == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AddCert(m.srv.Certificate())
	return p
}

// TLSConfig is a client configuration that trusts the mock when it serves
// TLS.
func (m *FCM) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: m.CertPool(), MinVersion: tls.VersionTLS12}
}

// NewServiceAccount generates a service account of project, registers it and
// returns its key file (JSON), its token_uri pointing at the mock, for
// option.WithCredentialsJSON.
func (m *FCM) NewServiceAccount(project string) ([]byte, error) {
	sa, pub, err := newServiceAccount(project, m.TokenURL())
	if err != nil {
		return nil, err
	}
	m.RegisterServiceAccount(project, sa.ClientEmail, sa.PrivateKeyID, pub)
	return json.Marshal(sa)
}

// RegisterServiceAccount registers a key of a service account that may send
// to project.
func (m *FCM) RegisterServiceAccount(project, email, keyID string, pub *rsa.PublicKey) {
	m.auth.register(project, email, keyID, pub)
}

// RevokeServiceAccountKey deletes a service account's key: assertions it
// signs are refused (invalid_grant) from now on; access tokens already
// issued stay valid until they expire, as Google's do.
func (m *FCM) RevokeServiceAccountKey(email, keyID string) bool {
	return m.auth.revokeKey(email, keyID)
}

// ExpireAccessTokens makes every access token issued so far expired: sends
// with them are answered 401 UNAUTHENTICATED.
func (m *FCM) ExpireAccessTokens() { m.auth.expireTokens() }

// AccessTokensIssued is how many access tokens the token endpoint issued.
func (m *FCM) AccessTokensIssued() int64 {
	m.auth.mu.RLock()
	defer m.auth.mu.RUnlock()
	return m.auth.grants
}

// AddRule adds a rule; see FCMRule.
func (m *FCM) AddRule(r FCMRule) { m.rules.add(r.Token, r.Topic, r.Answer, r.Times) }

// ClearRules removes every rule.
func (m *FCM) ClearRules() { m.rules.clear() }

// SetLatency sets the delay added to every send.
func (m *FCM) SetLatency(d time.Duration) { m.latency.set(d) }

// Records returns the kept records, oldest first.
func (m *FCM) Records() []FCMRecord { return m.rec.snapshot() }

// ResetRecords forgets the kept records (not the counts).
func (m *FCM) ResetRecords() { m.rec.reset() }

// Stats returns the counts since the mock started.
func (m *FCM) Stats() Stats { return m.count.stats() }

func (m *FCM) serveSend(w http.ResponseWriter, r *http.Request) {
	m.count.enter()
	defer m.count.leave()
	rec := FCMRecord{Time: time.Now(), RemoteAddr: r.RemoteAddr, Proto: r.Proto, Header: r.Header.Clone()}
	rec.Header.Del("Authorization")
	if !m.latency.wait(r.Context()) {
		return
	}
	e, forced, retryAfter := m.decide(r, &rec)
	rec.ByRule = forced
	if e == nil {
		rec.Status = http.StatusOK
		rec.Name = "projects/" + rec.Project + "/messages/fake_message_id"
		if !rec.ValidateOnly {
			rec.Name = "projects/" + rec.Project + "/messages/0:" +
				strconv.FormatInt(rec.Time.UnixMicro(), 10) + "%" + strconv.FormatUint(m.seq.Add(1), 16)
		}
		m.count.count(rec.Status, "", forced)
		m.rec.add(rec)
		writeJSON(w, http.StatusOK, map[string]string{"name": rec.Name})
		return
	}
	rec.Status, rec.Code = e.code, e.key()
	m.count.count(rec.Status, rec.Code, forced)
	m.rec.add(rec)
	e.write(w, retryAfter)
}

// decide checks a send as FCM does: path, access token, body, message; then
// the rules. A nil error accepts.
func (m *FCM) decide(r *http.Request, rec *FCMRecord) (*googleError, bool, time.Duration) {
	const prefix, suffix = "/v1/projects/", "/messages:send"
	p := r.URL.Path
	if !strings.HasPrefix(p, prefix) || !strings.HasSuffix(p, suffix) || len(p) <= len(prefix)+len(suffix) ||
		strings.Contains(p[len(prefix):len(p)-len(suffix)], "/") || r.Method != http.MethodPost {
		return &googleError{code: http.StatusNotFound, status: "NOT_FOUND", message: "The requested URL " + p + " was not found on this server."}, false, 0
	}
	rec.Project = p[len(prefix) : len(p)-len(suffix)]
	body, err := readBody(r, 1<<20)
	if err != nil {
		return &googleError{code: http.StatusBadRequest, status: "INVALID_ARGUMENT", message: "Invalid JSON payload received."}, false, 0
	}
	rec.Body = body
	tok, e := m.auth.check(r.Header.Get("Authorization"), rec.Project)
	if e != nil {
		return e, false, 0
	}
	rec.Account = tok.account.email
	message, validateOnly, v := decodeTop(body)
	rec.Message, rec.ValidateOnly = message, validateOnly
	if v != nil {
		return violationError(v), false, 0
	}
	target, v := checkMessage(message)
	rec.Token, rec.Topic, rec.Condition = target.Token, target.Topic, target.Condition
	if v != nil {
		return violationError(v), false, 0
	}
	if a, ok := m.rules.match(rec.Token, rec.Topic); ok {
		if a.accepts() {
			return nil, true, 0
		}
		return answerError(a, rec.Project), true, a.RetryAfter
	}
	return nil, false, 0
}
