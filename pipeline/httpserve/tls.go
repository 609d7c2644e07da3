package httpserve

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultCheckEvery is how often, at most, the certificate files are read
// again to see whether they changed.
const DefaultCheckEvery = 2 * time.Second

// TLSFiles names the PEM files of a server's TLS.
type TLSFiles struct {
	Cert, Key string // certificate (chain) and private key; both or neither
	// ClientCA, when set, is a PEM bundle of the CAs whose client
	// certificates are accepted: every client must present one.
	ClientCA string
	// CheckEvery: how often, at most, Cert and Key are read again
	// (0: DefaultCheckEvery).
	CheckEvery time.Duration
}

// Enabled reports whether TLS is asked for.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" || f.ClientCA != "" }

// Config returns the server TLS configuration of the files (nil, nil when
// none are set): TLS 1.2 at least, the certificate from Certs (read again
// when the files change). The pair must be valid at start.
func (f TLSFiles) Config(log *slog.Logger) (*tls.Config, error) {
	if !f.Enabled() {
		return nil, nil
	}
	if f.Cert == "" || f.Key == "" {
		return nil, fmt.Errorf("TLS needs both a certificate and a key file (-tls.cert %q, -tls.key %q)", f.Cert, f.Key)
	}
	certs, err := NewCerts(f.Cert, f.Key, f.CheckEvery, log)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
	if f.ClientCA != "" {
		pem, err := os.ReadFile(f.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA file %s: no PEM certificate in it", f.ClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Certs holds a certificate and key read from two PEM files and reads
// them again, at most every CheckEvery, when a handshake asks for the
// certificate: a changed pair that parses and matches replaces the one
// served; a broken one (a half-written file, a key of another
// certificate) is logged and the previous pair stays in use.
type Certs struct {
	certFile, keyFile string
	every             time.Duration
	log               *slog.Logger
	now               func() time.Time

	mu        sync.Mutex
	cur       *tls.Certificate
	certPEM   []byte // the contents cur was made of
	keyPEM    []byte
	checked   time.Time
	badDigest [32]byte // of the last pair refused, so that it is logged once
}

// NewCerts reads the pair; an error names the file that is wrong.
func NewCerts(certFile, keyFile string, every time.Duration, log *slog.Logger) (*Certs, error) {
	if every <= 0 {
		every = DefaultCheckEvery
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certs{certFile: certFile, keyFile: keyFile, every: every, log: log, now: time.Now}
	certPEM, keyPEM, cert, err := c.read()
	if err != nil {
		return nil, err
	}
	c.cur, c.certPEM, c.keyPEM, c.checked = cert, certPEM, keyPEM, c.now()
	subject, notAfter := describe(cert)
	log.Info("TLS certificate loaded", "cert", certFile, "subject", subject, "not_after", notAfter)
	return c, nil
}

// describe returns the subject and expiry of a pair's leaf certificate.
func describe(cert *tls.Certificate) (string, time.Time) {
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return "", time.Time{}
		}
	}
	return leaf.Subject.String(), leaf.NotAfter
}

func (c *Certs) read() (certPEM, keyPEM []byte, cert *tls.Certificate, err error) {
	if certPEM, err = os.ReadFile(c.certFile); err != nil {
		return nil, nil, nil, fmt.Errorf("TLS certificate file: %w", err)
	}
	if keyPEM, err = os.ReadFile(c.keyFile); err != nil {
		return nil, nil, nil, fmt.Errorf("TLS key file: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return certPEM, keyPEM, nil, fmt.Errorf("TLS certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	return certPEM, keyPEM, &pair, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.checked) >= c.every {
		c.checked = now
		c.reload()
	}
	return c.cur, nil
}

// Current returns the pair served now.
func (c *Certs) Current() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// reload reads the files and takes a changed pair that is valid. Called
// with mu held.
func (c *Certs) reload() {
	certPEM, keyPEM, cert, err := c.read()
	if certPEM != nil && keyPEM != nil && bytes.Equal(certPEM, c.certPEM) && bytes.Equal(keyPEM, c.keyPEM) {
		return
	}
	if err != nil {
		h := sha256.New()
		h.Write(certPEM)
		h.Write([]byte{0})
		h.Write(keyPEM)
		var d [32]byte
		copy(d[:], h.Sum(nil))
		if d != c.badDigest {
			c.badDigest = d
			c.log.Error("TLS certificate not reloaded: the files changed but do not make a valid pair; still serving the previous one",
				"cert", c.certFile, "key", c.keyFile, "err", err)
		}
		return
	}
	c.cur, c.certPEM, c.keyPEM = cert, certPEM, keyPEM
	c.badDigest = [32]byte{}
	subject, notAfter := describe(cert)
	c.log.Info("TLS certificate reloaded", "cert", c.certFile, "subject", subject, "not_after", notAfter)
}
