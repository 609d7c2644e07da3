package apiauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// MinSecretLen is the shortest cluster secret accepted.
	MinSecretLen = 32
	// PeerScheme is the Authorization scheme of the cluster credential:
	// "Engage-Peer <hex HMAC-SHA256>".
	PeerScheme = "Engage-Peer"
	// PeerTimeHeader carries the Unix time (seconds) the credential was
	// made at.
	PeerTimeHeader = "Engage-Peer-Time"
	// PeerResponseHeader carries an answer's signature.
	PeerResponseHeader = "Engage-Peer-Response"
	// MaxSkew is how far a credential's time may be from the receiver's
	// clock, either way.
	MaxSkew = 60 * time.Second
)

// Cluster signs and checks the requests the instances of one deployment
// make to each other, and their answers, with a secret they share. A
// request's signature covers the method, the request target (path and
// query, as sent) and the time; the body is not covered (the peer calls
// are GETs without one). An answer's signature covers the request's
// signature, the status, the headers listed in ResponseHeaders and the
// body: an address announced by someone without the secret can neither
// call an instance nor answer one.
type Cluster struct {
	secret []byte
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// NewCluster checks the secret (at least MinSecretLen bytes); flag names
// it in errors, which never show it.
func NewCluster(flag, secret string) (*Cluster, error) {
	switch {
	case secret == "":
		return nil, fmt.Errorf("%s: no cluster secret: the instances authenticate each other with it; give the same one to every instance, at least %d bytes (e.g. `openssl rand -hex 32`)", flag, MinSecretLen)
	case len(secret) < MinSecretLen:
		return nil, fmt.Errorf("%s: the cluster secret (%s) has %d bytes: use at least %d (e.g. `openssl rand -hex 32`)", flag, Mask(secret), len(secret), MinSecretLen)
	}
	return &Cluster{secret: []byte(secret)}, nil
}

func (c *Cluster) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Cluster) mac(method, target, ts string) []byte {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte("engage-peer-v1\n" + method + "\n" + target + "\n" + ts))
	return m.Sum(nil)
}

// Sign sets the request's cluster credential. Call it last: the
// signature covers req.URL as it will be sent.
func (c *Cluster) Sign(req *http.Request) {
	ts := strconv.FormatInt(c.now().Unix(), 10)
	req.Header.Set(PeerTimeHeader, ts)
	req.Header.Set("Authorization", PeerScheme+" "+hex.EncodeToString(c.mac(req.Method, req.URL.RequestURI(), ts)))
}

// IsPeer reports whether a request presents a cluster credential (good or
// bad).
func IsPeer(r *http.Request) bool {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.EqualFold(scheme, PeerScheme)
}

// ErrNoPeerCredential: the request has no cluster credential.
var ErrNoPeerCredential = errors.New("no cluster credential (Authorization: " + PeerScheme + " …)")

// Verify checks a received request's cluster credential: its HMAC
// (compared in constant time) and its time, within MaxSkew of now.
func (c *Cluster) Verify(r *http.Request) error {
	scheme, sig, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, PeerScheme) {
		return ErrNoPeerCredential
	}
	got, err := hex.DecodeString(strings.TrimSpace(sig))
	if err != nil || len(got) != sha256.Size {
		return errors.New("malformed cluster credential")
	}
	ts := r.Header.Get(PeerTimeHeader)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("cluster credential without a valid %s header", PeerTimeHeader)
	}
	if !hmac.Equal(got, c.mac(r.Method, r.URL.RequestURI(), ts)) {
		return errors.New("wrong cluster credential: the instances must share the same cluster secret")
	}
	if d := c.now().Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
		return fmt.Errorf("cluster credential made %s from this instance's clock, more than %s: are the clocks synchronised?", d.Round(time.Second), MaxSkew)
	}
	return nil
}

// ResponseHeaders are the headers of an answer its signature covers.
var ResponseHeaders = []string{"Content-Type", "Engage-Partitions"}

func (c *Cluster) responseMAC(reqAuth string, status int, h http.Header, body []byte) []byte {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, c.secret)
	fmt.Fprintf(m, "engage-peer-response-v1\n%s\n%d\n", reqAuth, status)
	for _, k := range ResponseHeaders {
		fmt.Fprintf(m, "%s: %q\n", k, h.Values(k))
	}
	m.Write(sum[:])
	return m.Sum(nil)
}

// SignResponse sets the signature of the answer to r (whose credential
// Verify accepted): status, the headers h (ResponseHeaders of them) and
// the body.
func (c *Cluster) SignResponse(r *http.Request, status int, h http.Header, body []byte) {
	h.Set(PeerResponseHeader, hex.EncodeToString(c.responseMAC(r.Header.Get("Authorization"), status, h, body)))
}

// VerifyResponse checks the signature of the answer to req (as Sign
// signed it).
func (c *Cluster) VerifyResponse(req *http.Request, status int, h http.Header, body []byte) error {
	got, err := hex.DecodeString(h.Get(PeerResponseHeader))
	if err != nil || len(got) != sha256.Size {
		return errors.New("answer not signed with the cluster secret (no valid " + PeerResponseHeader + " header)")
	}
	if !hmac.Equal(got, c.responseMAC(req.Header.Get("Authorization"), status, h, body)) {
		return errors.New("answer not signed with the cluster secret (wrong " + PeerResponseHeader + ")")
	}
	return nil
}
