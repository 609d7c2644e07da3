package mock

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Apple's rules for provider tokens ("Establishing a token-based connection
// to APNs"): a token is valid for one hour from its iat; a provider should
// not change tokens more often than every 20 minutes.
const (
	apnsTokenLifetime = time.Hour
	// apnsTokenSkew is how far in the future an iat may be (clock skew); a
	// later one is refused as InvalidProviderToken (the mock's choice: Apple
	// documents no rule for it).
	apnsTokenSkew = time.Minute
	// DefaultTokenUpdateInterval is the least time between two different
	// valid tokens on one connection; a quicker change is answered 429
	// TooManyProviderTokenUpdates.
	DefaultTokenUpdateInterval = 20 * time.Minute
	jwtCacheSize               = 4096
)

// oidUID is the userId attribute Apple puts the bundle id in, in the subject
// of push certificates.
var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

type apnsKey struct {
	team, id string
	pub      *ecdsa.PublicKey
	topics   map[string]bool // nil: any topic
	revoked  bool
}

type apnsCert struct {
	topics  []string
	revoked bool
}

type cachedToken struct {
	key *apnsKey
	iat int64
}

// apnsAuth checks provider tokens against the registered keys and client
// certificates against the mock's certificate authority; safe for concurrent
// use.
type apnsAuth struct {
	now            func() time.Time
	updateInterval time.Duration

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	pool  *x509.CertPool

	mu    sync.RWMutex
	keys  map[string]*apnsKey  // by key id
	certs map[string]*apnsCert // by serial number, hex
	cache map[string]cachedToken
}

func newAPNsAuth(now func() time.Time, updateInterval time.Duration) (*apnsAuth, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Mock Apple Worldwide Developer Relations CA"},
		NotBefore:             now().Add(-time.Hour),
		NotAfter:              now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &apnsAuth{
		now: now, updateInterval: updateInterval,
		ca: ca, caKey: key, pool: pool,
		keys: make(map[string]*apnsKey), certs: make(map[string]*apnsCert),
		cache: make(map[string]cachedToken),
	}, nil
}

func (a *apnsAuth) registerKey(team, keyID string, pub *ecdsa.PublicKey, topics []string) {
	k := &apnsKey{team: team, id: keyID, pub: pub}
	if len(topics) > 0 {
		k.topics = make(map[string]bool, len(topics))
		for _, t := range topics {
			k.topics[t] = true
		}
	}
	a.mu.Lock()
	a.keys[keyID] = k
	a.mu.Unlock()
}

func (a *apnsAuth) revokeKey(team, keyID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := a.keys[keyID]
	if k == nil || k.team != team {
		return false
	}
	k.revoked = true
	return true
}

// issue makes a client certificate for topics signed by the mock's CA, in
// the form Apple issues them (RSA 2048, the bundle id as the subject's UID).
func (a *apnsAuth) issue(topics []string) (tls.Certificate, error) {
	if len(topics) == 0 {
		return tls.Certificate{}, fmt.Errorf("issue certificate: no topic")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName: "Apple Push Services: " + topics[0],
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidUID, Value: topics[0]}},
		},
		NotBefore:   a.now().Add(-time.Hour),
		NotAfter:    a.now().Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.ca, &key.PublicKey, a.caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create client certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse client certificate: %w", err)
	}
	a.mu.Lock()
	a.certs[serial.Text(16)] = &apnsCert{topics: append([]string(nil), topics...)}
	a.mu.Unlock()
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func (a *apnsAuth) revokeCert(c tls.Certificate) bool {
	if len(c.Certificate) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	rec := a.certs[leaf.SerialNumber.Text(16)]
	if rec == nil {
		return false
	}
	rec.revoked = true
	return true
}

// principal is who a request was authenticated as.
type principal struct {
	team, keyID string          // token authentication
	certSerial  string          // certificate authentication
	certTopics  []string        // the certificate's topics
	keyTopics   map[string]bool // the key's topics; nil: any
}

// authenticate checks a request's provider token, or its connection's client
// certificate when it has no authorization header; reason is "" when the
// request may go on.
func (a *apnsAuth) authenticate(r *http.Request) (p principal, reason string) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			return a.certificate(r.TLS.PeerCertificates)
		}
		return p, ReasonMissingProviderToken
	}
	const scheme = "bearer "
	if len(authz) <= len(scheme) || !strings.EqualFold(authz[:len(scheme)], scheme) {
		return p, ReasonInvalidProviderToken
	}
	tok := authz[len(scheme):]
	key, iat, reason := a.token(tok)
	if reason != "" {
		return p, reason
	}
	now := a.now()
	if now.Sub(time.Unix(iat, 0)) > apnsTokenLifetime {
		return p, ReasonExpiredProviderToken
	}
	if cs, _ := r.Context().Value(connKey{}).(*connState); cs != nil && a.updateInterval > 0 {
		if !cs.use(tok, now, a.updateInterval) {
			return p, ReasonTooManyProviderTokenUpdates
		}
	}
	return principal{team: key.team, keyID: key.id, keyTopics: key.topics}, ""
}

// token verifies a provider token (ES256, kid of a registered key, iss its
// team, iat present), once per distinct token: verified tokens are cached.
func (a *apnsAuth) token(tok string) (*apnsKey, int64, string) {
	a.mu.RLock()
	c, ok := a.cache[tok]
	revoked := ok && c.key.revoked
	a.mu.RUnlock()
	if ok {
		if revoked {
			return nil, 0, ReasonInvalidProviderToken
		}
		return c.key, c.iat, ""
	}
	t, err := parseJWT(tok)
	if err != nil || t.header.Alg != "ES256" || t.header.Kid == "" {
		return nil, 0, ReasonInvalidProviderToken
	}
	a.mu.RLock()
	key := a.keys[t.header.Kid]
	revoked = key != nil && key.revoked
	a.mu.RUnlock()
	iat, hasIat := t.num("iat")
	switch {
	case key == nil, revoked, t.str("iss") != key.team, !hasIat:
		return nil, 0, ReasonInvalidProviderToken
	case time.Unix(iat, 0).After(a.now().Add(apnsTokenSkew)):
		return nil, 0, ReasonInvalidProviderToken
	case !t.verifyES256(key.pub):
		return nil, 0, ReasonInvalidProviderToken
	}
	a.mu.Lock()
	if len(a.cache) >= jwtCacheSize {
		clear(a.cache)
	}
	a.cache[tok] = cachedToken{key: key, iat: iat}
	a.mu.Unlock()
	return key, iat, ""
}

func (a *apnsAuth) certificate(chain []*x509.Certificate) (principal, string) {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: a.pool, Intermediates: inter, CurrentTime: a.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return principal{}, ReasonBadCertificate
	}
	serial := leaf.SerialNumber.Text(16)
	a.mu.RLock()
	rec := a.certs[serial]
	a.mu.RUnlock()
	if rec == nil || rec.revoked {
		return principal{}, ReasonBadCertificate
	}
	return principal{certSerial: serial, certTopics: rec.topics}, ""
}

// connState is what the mock remembers of one connection: the provider
// token in use and since when.
type connState struct {
	tunnel string // the CONNECT target it came through, "" for the TLS port

	mu     sync.Mutex
	bearer string
	since  time.Time
}

type connKey struct{}

func withConnState(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &connState{tunnel: tunnelTarget(c)})
}

// use records that tok is used on the connection; false if it replaces
// another token sooner than interval after that one came.
func (c *connState) use(tok string, now time.Time, interval time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bearer == tok {
		return true
	}
	if c.bearer != "" && now.Sub(c.since) < interval {
		return false
	}
	c.bearer, c.since = tok, now
	return true
}

// EncodeP8 encodes an ECDSA private key as Apple's .p8 files hold it: PKCS #8
// in a "PRIVATE KEY" PEM block.
func EncodeP8(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode p8 key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EncodeCertificatePEM encodes a client certificate and its key as the PEM
// file a provider makes from Apple's .p12 (certificate, then the RSA key in
// PKCS #1).
func EncodeCertificatePEM(c tls.Certificate) ([]byte, error) {
	key, ok := c.PrivateKey.(*rsa.PrivateKey)
	if !ok || len(c.Certificate) == 0 {
		return nil, fmt.Errorf("encode certificate: want an RSA key and a certificate")
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})...), nil
}
