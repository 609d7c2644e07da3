package kafkabus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/openengage/engage/pipeline/backoff"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Security says how the platform's Kafka clients reach the brokers: over
// TLS, and authenticated with SASL. The zero value is plaintext without
// authentication (a development broker on loopback).
type Security struct {
	// TLS turns TLS on. CAFile (PEM) holds the certificates that may sign
	// the brokers' ones; empty: the system's roots. CertFile and KeyFile
	// (both or neither) are a client certificate for brokers that ask for
	// one. ServerName is the name the brokers' certificates must carry;
	// empty: the host of the address dialled.
	TLS                       bool
	CAFile, CertFile, KeyFile string
	ServerName                string
	// SASLMechanism is "" (or "none"), "PLAIN", "SCRAM-SHA-256" or
	// "SCRAM-SHA-512"; User and Password are the credentials.
	SASLMechanism  string
	User, Password string
	// AllowPlaintextSASL lets PLAIN go without TLS (the password would
	// cross the network readable); refused otherwise.
	AllowPlaintextSASL bool
}

// Enabled says whether s turns TLS or SASL on.
func (s Security) Enabled() bool {
	m := strings.ToUpper(s.SASLMechanism)
	return s.TLS || m != "" && m != strings.ToUpper(SASLNone)
}

// SASL mechanisms Security accepts.
const (
	SASLNone        = "none"
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// secured is a Security made ready to use: the TLS configuration with its
// certificates loaded, the SASL mechanism with its credentials.
type secured struct {
	tls  *tls.Config
	mech sasl.Mechanism
	user string
	from Security // the settings, mechanism name normalized
}

// build checks s and loads its files. The errors name the setting at fault.
func (s Security) build() (*secured, error) {
	out := &secured{}
	switch s.SASLMechanism = strings.ToUpper(s.SASLMechanism); s.SASLMechanism {
	case "", strings.ToUpper(SASLNone):
		s.SASLMechanism = ""
		if s.User != "" || s.Password != "" {
			return nil, errors.New("kafka security: a SASL user or password is set but no SASL mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
	case SASLPlain:
		if s.User == "" || s.Password == "" {
			return nil, errors.New("kafka security: SASL PLAIN needs a user and a password")
		}
		if !s.TLS && !s.AllowPlaintextSASL {
			return nil, errors.New("kafka security: SASL PLAIN without TLS sends the password readable to anyone on the path; turn TLS on, or allow it explicitly (plaintext SASL allowed)")
		}
		out.mech = plain.Mechanism{Username: s.User, Password: s.Password}
	case SASLScramSHA256, SASLScramSHA512:
		if s.User == "" || s.Password == "" {
			return nil, fmt.Errorf("kafka security: SASL %s needs a user and a password", s.SASLMechanism)
		}
		algo := scram.SHA512
		if s.SASLMechanism == SASLScramSHA256 {
			algo = scram.SHA256
		}
		m, err := scram.Mechanism(algo, s.User, s.Password)
		if err != nil {
			return nil, fmt.Errorf("kafka security: SASL %s: %w", s.SASLMechanism, err)
		}
		out.mech = m
	default:
		return nil, fmt.Errorf("kafka security: SASL mechanism %q unknown; give none, PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASLMechanism)
	}
	out.user, out.from = s.User, s
	if !s.TLS {
		if s.CAFile != "" || s.CertFile != "" || s.KeyFile != "" || s.ServerName != "" {
			return nil, errors.New("kafka security: a TLS CA, certificate, key or server name is set but TLS is off")
		}
		return out, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.ServerName}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka security: TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka security: TLS CA file %s holds no PEM certificate", s.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case s.CertFile != "" && s.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka security: TLS client certificate %s with key %s: %w", s.CertFile, s.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case s.CertFile != "" || s.KeyFile != "":
		return nil, errors.New("kafka security: a TLS client certificate needs both its certificate file and its key file")
	}
	out.tls = cfg
	return out, nil
}

// The process's security, set once by Configure before any client is made
// and read by every client this package makes (and by Dialer and
// Transport for the few callers that use kafka-go directly). A service sets
// it at start from its flags; nil is plaintext.
var (
	security     atomic.Pointer[secured]
	securityUsed atomic.Bool
	configureMu  sync.Mutex
)

// Configure sets how every Kafka client of this process connects. Call it
// once at start, before any Kafka client is made. Setting what is already
// set does nothing (commands run again in one process, as tests do);
// changing it fails once a client was made (clients already made would
// keep the old setting) or when it was set before. The errors name the
// setting at fault.
func Configure(s Security) error {
	sc, err := s.build()
	if err != nil {
		return err
	}
	configureMu.Lock()
	defer configureMu.Unlock()
	was := security.Load()
	switch {
	case was == nil && sc.from == (Security{}) || was != nil && was.from == sc.from:
		return nil
	case was != nil:
		return errors.New("kafka security: configured twice with different settings (a bug: configure it once at start)")
	case securityUsed.Load():
		return errors.New("kafka security: configured after a Kafka client was made (a bug: configure it first thing at start)")
	}
	security.Store(sc)
	return nil
}

// current returns the process's security (nil: plaintext) and marks it used.
func current() *secured {
	securityUsed.Store(true)
	return security.Load()
}

// dialerFor returns a dialer with sc's settings (nil sc: kafka-go's default).
func dialerFor(sc *secured) *kafka.Dialer {
	if sc == nil || (sc.tls == nil && sc.mech == nil) {
		return kafka.DefaultDialer
	}
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: sc.tls, SASLMechanism: sc.mech}
}

// transportFor sets sc's settings on t and returns it.
func transportFor(sc *secured, t *kafka.Transport) *kafka.Transport {
	if sc != nil {
		t.TLS, t.SASL = sc.tls, sc.mech
	}
	return t
}

// Dialer returns a dialer with the process's security, for connections
// made with kafka-go directly (kafka.Conn).
func Dialer() *kafka.Dialer { return dialerFor(current()) }

// Transport sets the process's security on t and returns it, for clients
// and writers made with kafka-go directly.
func Transport(t *kafka.Transport) *kafka.Transport { return transportFor(current(), t) }

// NewClient returns a kafka-go client of the brokers with the process's
// security.
func NewClient(brokers []string, timeout time.Duration) *kafka.Client {
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: timeout}
	if sc := current(); sc != nil && (sc.tls != nil || sc.mech != nil) {
		c.Transport = transportFor(sc, &kafka.Transport{})
	}
	return c
}

// AuthError is a failure to set up a connection that trying again will not
// cure: the TLS handshake failed (a certificate not trusted, a name that
// does not match) or the brokers refused the SASL credentials. Transient
// says false to it.
type AuthError struct {
	What   string // "TLS handshake" or "SASL authentication"
	User   string
	Broker string
	Err    error
}

func (e *AuthError) Error() string {
	if e.User != "" {
		return fmt.Sprintf("kafka: %s failed for user %s at %s: %v", e.What, e.User, e.Broker, e.Err)
	}
	return fmt.Sprintf("kafka: %s failed at %s: %v", e.What, e.Broker, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// authFailure says whether err is a SASL or TLS failure, and which.
func authFailure(err error) (what string, ok bool) {
	var ke kafka.Error
	if errors.As(err, &ke) && (ke == kafka.SASLAuthenticationFailed || ke == kafka.UnsupportedSASLMechanism || ke == kafka.IllegalSASLState) {
		return "SASL authentication", true
	}
	var (
		verr  *tls.CertificateVerificationError
		unk   x509.UnknownAuthorityError
		host  x509.HostnameError
		inval x509.CertificateInvalidError
		alert tls.AlertError
		rec   tls.RecordHeaderError
	)
	if errors.As(err, &verr) || errors.As(err, &unk) || errors.As(err, &host) || errors.As(err, &inval) ||
		errors.As(err, &alert) || errors.As(err, &rec) {
		return "TLS handshake", true
	}
	return "", false
}

// CheckAuth connects to the brokers once with the process's security and
// asks for the cluster's metadata, so that a service finds wrong
// credentials or an untrusted certificate at start rather than in a retry
// loop. It returns an *AuthError when a broker refused the TLS handshake or
// the credentials; other failures (brokers not reachable) are returned as
// they are, and Transient says whether they may pass. With no security
// configured it does nothing.
func CheckAuth(ctx context.Context, brokers []string) error {
	sc := current()
	if sc == nil || (sc.tls == nil && sc.mech == nil) {
		return nil
	}
	return checkAuth(ctx, brokers, sc)
}

// checkAuth asks each broker in turn for metadata until one answers; an
// authentication failure at any of them ends the check. A broker that
// closes the connection before answering, three times over, is taken for
// a listener that expects other security settings (TLS to a plaintext
// port, no SASL on a SASL port): that ends the check too.
func checkAuth(ctx context.Context, brokers []string, sc *secured) error {
	if len(brokers) == 0 {
		return errors.New("kafka: no brokers to check")
	}
	var first error
	for _, b := range brokers {
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			c := &kafka.Client{Addr: kafka.TCP(b), Timeout: 10 * time.Second, Transport: transportFor(sc, &kafka.Transport{})}
			_, err = c.Metadata(ctx, &kafka.MetadataRequest{})
			c.Transport.(*kafka.Transport).CloseIdleConnections()
			if !closedAtOnce(err) || ctx.Err() != nil {
				break
			}
			_ = backoff.Sleep(ctx, 300*time.Millisecond) // ctx's end breaks the loop above
		}
		if err == nil {
			return nil
		}
		if what, ok := authFailure(err); ok {
			return &AuthError{What: what, User: sc.user, Broker: b, Err: err}
		}
		if closedAtOnce(err) {
			return &AuthError{What: "connection setup", User: sc.user, Broker: b,
				Err: fmt.Errorf("%w (the broker closed the connection before answering: does its listener at this address take %s?)", err, sc.describe())}
		}
		if first == nil {
			first = fmt.Errorf("kafka: %s: %w", b, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return first
}

// closedAtOnce says whether err is a connection closed by the other end.
func closedAtOnce(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// describe says what sc sets up, for messages: "TLS with SASL PLAIN".
func (sc *secured) describe() string {
	out := "plaintext"
	if sc.tls != nil {
		out = "TLS"
	}
	if sc.mech != nil {
		return out + " with SASL " + sc.mech.Name()
	}
	return out + " without SASL"
}

// isAuthError says whether err is (or wraps) an authentication or TLS
// failure; see AuthError.
func isAuthError(err error) bool {
	var ae *AuthError
	if errors.As(err, &ae) {
		return true
	}
	_, ok := authFailure(err)
	return ok
}
