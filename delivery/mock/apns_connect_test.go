package mock_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"

	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/delivery/mock/gorush"
)

// caPool is a pool holding only what CAPEM exports, as a client in another
// process would have it from SSL_CERT_FILE.
func caPool(t *testing.T, m *mock.APNs) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(m.CAPEM()) {
		t.Fatalf("CAPEM is not a PEM certificate: %q", m.CAPEM())
	}
	return p
}

// proxiedClient is an apns2 client with token authentication whose
// transport goes through the mock's CONNECT port and trusts only its CA:
// gorush's transport when core.http_proxy is set (an http.Transport made
// for HTTP/2, its Proxy the URL). The host stays Apple's.
func proxiedClient(t *testing.T, m *mock.APNs, p8 []byte, teamID, kid string) *apns2.Client {
	t.Helper()
	c, _ := tokenClient(t, m, p8, teamID, kid)
	proxy, err := url.Parse(m.ConnectURL())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{
		Proxy:             http.ProxyURL(proxy),
		TLSClientConfig:   &tls.Config{RootCAs: caPool(t, m), MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	c.HTTPClient = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return c
}

func TestAPNsConnectTunnel(t *testing.T) {
	m := startAPNs(t, mock.APNsConfig{Connect: true})
	if !strings.HasPrefix(m.ConnectURL(), "http://127.0.0.1:") {
		t.Fatalf("ConnectURL = %q", m.ConnectURL())
	}
	p8, err := m.NewKey(team, keyID, topic)
	if err != nil {
		t.Fatal(err)
	}
	c := proxiedClient(t, m, p8, team, keyID)

	// apns2's own hosts, unchanged: the client never resolves them.
	dev := *c
	dev.Development()
	if res := push(t, &dev, alert(devToken(1))); !res.Sent() || !uuidRE.MatchString(res.ApnsID) {
		t.Fatalf("development host through the tunnel: %+v, want 200", res)
	}
	prod := *c
	prod.Production()
	if res := push(t, &prod, alert(devToken(2))); !res.Sent() {
		t.Fatalf("production host through the tunnel: %+v, want 200", res)
	}
	// The same checks and rules as the TLS port.
	m.AddRule(mock.APNsRule{Token: devToken(3), Answer: mock.APNsReject(mock.ReasonUnregistered)})
	if res := push(t, &dev, alert(devToken(3))); res.StatusCode != 410 || res.Reason != apns2.ReasonUnregistered {
		t.Errorf("rule through the tunnel: %+v, want 410 Unregistered", res)
	}
	if res := push(t, &dev, &apns2.Notification{DeviceToken: devToken(4), Topic: "com.other.app", Payload: payload.NewPayload().Alert("x")}); res.StatusCode != 400 || res.Reason != apns2.ReasonTopicDisallowed {
		t.Errorf("other topic through the tunnel: %+v, want 400 TopicDisallowed", res)
	}
	// The TLS port still serves clients pointed at it, with the new
	// certificate (it names 127.0.0.1).
	direct, _ := tokenClient(t, m, p8, team, keyID)
	if res := push(t, direct, alert(devToken(5))); !res.Sent() {
		t.Fatalf("TLS port: %+v, want 200", res)
	}

	recs := m.Records()
	if len(recs) != 5 {
		t.Fatalf("records = %d, want 5", len(recs))
	}
	want := []struct{ host, tunnel string }{
		{mock.APNsHostDevelopment, mock.APNsHostDevelopment + ":443"},
		{mock.APNsHostProduction, mock.APNsHostProduction + ":443"},
		{mock.APNsHostDevelopment, mock.APNsHostDevelopment + ":443"},
		{mock.APNsHostDevelopment, mock.APNsHostDevelopment + ":443"},
		{strings.TrimPrefix(m.URL(), "https://"), ""},
	}
	for i, r := range recs {
		if r.Host != want[i].host || r.Tunnel != want[i].tunnel || r.Proto != "HTTP/2.0" || r.TeamID != team || r.KeyID != keyID || r.Token != devToken(i+1) {
			t.Errorf("record %d: host %q tunnel %q proto %s team %s key %s token %s; want host %q tunnel %q",
				i, r.Host, r.Tunnel, r.Proto, r.TeamID, r.KeyID, r.Token, want[i].host, want[i].tunnel)
		}
	}
	if s := m.Stats(); s.Requests != 5 || s.Accepted != 3 || s.ByReason[mock.ReasonUnregistered] != 1 || s.ByReason[mock.ReasonTopicDisallowed] != 1 {
		t.Errorf("stats = %+v", s)
	}
}

// Requests through a tunnel wait the latency concurrently, many streams on
// one connection.
func TestAPNsConnectLatencyIsConcurrent(t *testing.T) {
	const n, lat = 200, 100 * time.Millisecond
	m := startAPNs(t, mock.APNsConfig{Connect: true, Latency: lat, KeepRecords: -1})
	p8, err := m.NewKey(team, keyID)
	if err != nil {
		t.Fatal(err)
	}
	c := proxiedClient(t, m, p8, team, keyID).Development()
	push(t, c, alert(devToken(0))) // one connection, then many streams on it
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			res, err := c.Push(alert(devToken(i)))
			if err != nil || !res.Sent() {
				errs <- fmt.Errorf("push %d: %v %v", i, res, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if took := time.Since(start); took > 10*lat {
		t.Errorf("%d requests at %v each took %v: not concurrent", n, lat, took)
	}
	if s := m.Stats(); s.Accepted != n+1 || s.MaxInFlight < n/2 {
		t.Errorf("stats = %+v, want %d accepted, most of them in flight at once", s, n+1)
	}
}

// connectRaw sends one request line and headers to the CONNECT port and
// returns the status line of the answer and the connection.
func connectRaw(t *testing.T, m *mock.APNs, request string) (string, net.Conn) {
	t.Helper()
	u, _ := url.Parse(m.ConnectURL())
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprint(c, request); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	_ = c.SetDeadline(time.Time{})
	return strings.TrimSpace(line), c
}

func TestAPNsConnectRefusesOtherTargets(t *testing.T) {
	m := startAPNs(t, mock.APNsConfig{Connect: true})
	for req, want := range map[string]string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n":                                                           "HTTP/1.1 405 Method Not Allowed",
		"GET https://api.push.apple.com/ HTTP/1.1\r\nHost: api.push.apple.com\r\n\r\n":                "HTTP/1.1 405 Method Not Allowed",
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n":                           "HTTP/1.1 403 Forbidden",
		"CONNECT api.push.apple.com:80 HTTP/1.1\r\nHost: api.push.apple.com:80\r\n\r\n":               "HTTP/1.1 403 Forbidden",
		"CONNECT api.push.apple.com:2197 HTTP/1.1\r\nHost: api.push.apple.com:2197\r\n\r\n":           "HTTP/1.1 200 Connection established",
		"CONNECT api.sandbox.push.apple.com:443 HTTP/1.1\r\nHost: api.sandbox.push.apple.com\r\n\r\n": "HTTP/1.1 200 Connection established",
	} {
		if got, _ := connectRaw(t, m, req); got != want {
			t.Errorf("%q: answered %q, want %q", req, got, want)
		}
	}
	if s := m.Stats(); s.Requests != 0 {
		t.Errorf("stats = %+v: the proxy's refusals are not APNs requests", s)
	}
}

// Close returns with a tunnel open but its TLS not begun, and with a client
// that has not finished its CONNECT request (goleak checks the goroutines).
func TestAPNsConnectCloseWithOpenTunnels(t *testing.T) {
	m, err := mock.StartAPNs(mock.APNsConfig{Connect: true})
	if err != nil {
		t.Fatal(err)
	}
	line, _ := connectRaw(t, m, "CONNECT api.sandbox.push.apple.com:443 HTTP/1.1\r\nHost: api.sandbox.push.apple.com:443\r\n\r\n")
	if line != "HTTP/1.1 200 Connection established" {
		t.Fatalf("CONNECT answered %q", line)
	}
	u, _ := url.Parse(m.ConnectURL())
	half, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	_, _ = fmt.Fprint(half, "CONNECT api.sandbox.push.apple.com:443 HTTP/1.1\r\n")
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked by open tunnels")
	}
	if m.ConnectURL() == "" {
		t.Error("ConnectURL empty after Close")
	}
}

// Without Connect nothing changes: no CONNECT port, CAPEM is the server's
// own certificate.
func TestAPNsWithoutConnect(t *testing.T) {
	m := startAPNs(t, mock.APNsConfig{})
	if m.ConnectURL() != "" {
		t.Errorf("ConnectURL = %q, want none", m.ConnectURL())
	}
	if string(m.CAPEM()) != string(m.CertificatePEM()) {
		t.Error("CAPEM differs from CertificatePEM without Connect")
	}
}

// The real gorush v1.22 binary, configured as deploy/gorush/README.md says,
// reaches the mock through the CONNECT port; skipped when it is not built.
func TestAPNsConnectGorush(t *testing.T) {
	bin, err := gorush.Binary()
	if err != nil {
		t.Skip(err)
	}
	m := startAPNs(t, mock.APNsConfig{Connect: true})
	const gTeam, gKey, gTopic = "TEAMGORUSH", "KEYGORUSH1", "com.example.gorush"
	p8, err := m.NewKey(gTeam, gKey, gTopic)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := gorush.Start(ctx, gorush.Config{Bin: bin, Dir: t.TempDir(), Proxy: m.ConnectURL(), CAPEM: m.CAPEM(), KeyP8: p8, KeyID: gKey, TeamID: gTeam})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := g.Stop(); err != nil {
			t.Error(err)
		}
	}()
	tokens := []string{devToken(1), devToken(2), devToken(3)}
	if err := g.Push(ctx, []gorush.Notification{{Platform: 1, Topic: gTopic, Title: "Hello", Message: "World", Tokens: tokens}}); err != nil {
		t.Fatal(err)
	}
	for {
		s, err := g.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.IOS.PushSuccess+s.IOS.PushError >= int64(len(tokens)) {
			if s.IOS.PushSuccess != int64(len(tokens)) {
				t.Fatalf("gorush stats %+v, want %d successes; log:\n%s", s, len(tokens), g.LogTail(20))
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gorush stats %+v after a minute; log:\n%s", s, g.LogTail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
	recs := m.Records()
	if len(recs) != len(tokens) {
		t.Fatalf("mock records = %d, want %d", len(recs), len(tokens))
	}
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.Token] = true
		var p struct {
			Aps struct {
				Alert struct{ Title, Body string } `json:"alert"`
			} `json:"aps"`
		}
		_ = json.Unmarshal(r.Payload, &p)
		if r.Status != 200 || r.Host != mock.APNsHostDevelopment || r.Tunnel != mock.APNsHostDevelopment+":443" || r.Proto != "HTTP/2.0" ||
			r.Auth != "token" || r.TeamID != gTeam || r.KeyID != gKey || r.Topic != gTopic || r.PushType != "alert" ||
			p.Aps.Alert.Title != "Hello" || p.Aps.Alert.Body != "World" {
			t.Errorf("record from gorush: %+v payload %s", r, r.Payload)
		}
	}
	for _, tok := range tokens {
		if !seen[tok] {
			t.Errorf("token %s not received", tok)
		}
	}
}
