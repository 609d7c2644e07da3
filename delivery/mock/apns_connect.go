package mock

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"
)

// Apple's provider API hosts: production, then development. Apple also
// serves them on port 2197.
const (
	APNsHostProduction  = "api.push.apple.com"
	APNsHostDevelopment = "api.sandbox.push.apple.com"
)

// apnsServerNames are the names the mock's server certificate holds when it
// serves CONNECT tunnels.
var apnsServerNames = []string{APNsHostProduction, APNsHostDevelopment, "localhost"}

// connectHeaderTimeout bounds how long a client may take to send its
// CONNECT request.
const connectHeaderTimeout = 10 * time.Second

// serverPKI is the certificate authority the mock makes when it serves
// CONNECT tunnels, and the server certificate it signed.
type serverPKI struct {
	caDER []byte
	cert  tls.Certificate
}

// newServerPKI makes a CA and, signed by it, a server certificate naming
// Apple's hosts, localhost, 127.0.0.1 and ::1 (ECDSA P-256).
func newServerPKI(now time.Time) (*serverPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate server CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "OpenEngage APNs mock root CA", Organization: []string{"OpenEngage test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create server CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse server CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: APNsHostProduction, Organization: []string{"OpenEngage test"}},
		DNSNames:     append([]string(nil), apnsServerNames...),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse server certificate: %w", err)
	}
	return &serverPKI{caDER: caDER, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}, nil
}

// connectProxy accepts CONNECT requests to Apple's hosts on a plain-HTTP
// listener and hands each tunnelled connection, TLS not yet begun, to the
// mock's HTTP/2 server through tunnels.
type connectProxy struct {
	l       net.Listener
	tunnels *tunnelListener

	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{} // connections still in their CONNECT exchange
}

func startConnectProxy(addr string) (*connectProxy, error) {
	l, err := listen(addr)
	if err != nil {
		return nil, err
	}
	p := &connectProxy{l: l, tunnels: newTunnelListener(l.Addr()), conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

func (p *connectProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *connectProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *connectProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// handle reads one CONNECT request; for one of Apple's hosts it answers 200
// and passes the connection on, else it answers an error and closes it.
func (p *connectProxy) handle(c net.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	_ = c.SetReadDeadline(time.Now().Add(connectHeaderTimeout))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		c.Close()
		return
	}
	_ = req.Body.Close()
	refuse := func(status int, msg string) {
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			status, http.StatusText(status), len(msg), msg)
		c.Close()
	}
	if req.Method != http.MethodConnect {
		refuse(http.StatusMethodNotAllowed, "the APNs mock's proxy port accepts only CONNECT\n")
		return
	}
	host, port, err := net.SplitHostPort(req.Host)
	if err != nil || (port != "443" && port != "2197") || (host != APNsHostProduction && host != APNsHostDevelopment) {
		refuse(http.StatusForbidden, fmt.Sprintf("the APNs mock tunnels only to %s and %s, port 443 or 2197, not %q\n", APNsHostProduction, APNsHostDevelopment, req.Host))
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		c.Close()
		return
	}
	tc := &tunnelConn{Conn: c, target: req.Host}
	if n := br.Buffered(); n > 0 {
		// The client did not wait for the answer: keep what it sent.
		tc.pending, _ = br.Peek(n)
	}
	p.untrack(c)
	if !p.tunnels.hand(tc) {
		c.Close()
	}
}

// close stops accepting, closes connections still in their CONNECT exchange
// and waits for their goroutines; tunnels already handed over belong to the
// HTTP server.
func (p *connectProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.l.Close()
	p.tunnels.Close()
	p.wg.Wait()
}

// tunnelConn is a connection that came through CONNECT: target is the
// host:port the client asked for.
type tunnelConn struct {
	net.Conn
	target  string
	pending []byte // bytes read with the CONNECT request that belong to the tunnel
}

func (c *tunnelConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// tunnelListener is a net.Listener whose Accept returns the connections
// the proxy hands over.
type tunnelListener struct {
	addr  net.Addr
	ch    chan net.Conn
	done  chan struct{}
	close sync.Once
}

func newTunnelListener(addr net.Addr) *tunnelListener {
	return &tunnelListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *tunnelListener) hand(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *tunnelListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *tunnelListener) Close() error {
	l.close.Do(func() { close(l.done) })
	return nil
}

func (l *tunnelListener) Addr() net.Addr { return l.addr }

// tunnelTarget is the CONNECT target of the connection under c (a
// *tls.Conn over a tunnelConn), "" when it did not come through CONNECT.
func tunnelTarget(c net.Conn) string {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if t, ok := c.(*tunnelConn); ok {
		return t.target
	}
	return ""
}

// ConnectURL is the URL of the mock's CONNECT port (http://127.0.0.1:port),
// for a client's proxy setting (gorush's core.http_proxy); "" unless
// APNsConfig.Connect.
func (m *APNs) ConnectURL() string {
	if m.proxy == nil {
		return ""
	}
	return "http://" + m.proxy.l.Addr().String()
}

// CAPEM is the certificate, in PEM, that a client in another process trusts
// to reach the mock (SSL_CERT_FILE for a Go program): with
// APNsConfig.Connect, the mock's own CA, which signed a server certificate
// naming api.push.apple.com, api.sandbox.push.apple.com, localhost,
// 127.0.0.1 and ::1; without it, the server's self-signed certificate (as
// CertificatePEM).
func (m *APNs) CAPEM() []byte {
	if m.pki == nil {
		return m.CertificatePEM()
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.pki.caDER})
}
