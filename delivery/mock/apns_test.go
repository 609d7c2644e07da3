package mock_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/certificate"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"

	"github.com/openengage/engage/delivery/mock"
)

const (
	team  = "TEAM123456"
	keyID = "KEY1234567"
	topic = "com.example.app"
)

var uuidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

func startAPNs(t testing.TB, cfg mock.APNsConfig) *mock.APNs {
	t.Helper()
	m, err := mock.StartAPNs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// pointAt points an apns2 client at the mock: its host, and its HTTP/2
// transport's roots (keeping the client certificate it may have).
func pointAt(t testing.TB, c *apns2.Client, m *mock.APNs) *apns2.Client {
	t.Helper()
	c.Host = m.URL()
	tr := c.HTTPClient.Transport.(*http2.Transport)
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = m.TLSConfig()
	} else {
		tr.TLSClientConfig.RootCAs = m.CertPool()
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// tokenClient is an apns2 client with token authentication by a .p8 key.
func tokenClient(t testing.TB, m *mock.APNs, p8 []byte, teamID, kid string) (*apns2.Client, *token.Token) {
	t.Helper()
	key, err := token.AuthKeyFromBytes(p8)
	if err != nil {
		t.Fatal(err)
	}
	tok := &token.Token{AuthKey: key, KeyID: kid, TeamID: teamID}
	return pointAt(t, apns2.NewTokenClient(tok), m), tok
}

func push(t *testing.T, c *apns2.Client, n *apns2.Notification) *apns2.Response {
	t.Helper()
	res, err := c.Push(n)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return res
}

func alert(tok string) *apns2.Notification {
	return &apns2.Notification{DeviceToken: tok, Topic: topic, Payload: payload.NewPayload().AlertTitle("Hello").AlertBody("World")}
}

func TestAPNsTokenAuthAccepts(t *testing.T) {
	m := startAPNs(t, mock.APNsConfig{Development: true})
	p8, err := m.NewKey(team, keyID)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := tokenClient(t, m, p8, team, keyID)

	exp := time.Unix(time.Now().Add(time.Hour).Unix(), 0)
	n := &apns2.Notification{
		ApnsID:      "8B0A3D2F-7E6C-4F1A-9B5D-2C3E4F5A6B7C",
		CollapseID:  "news-1",
		DeviceToken: devToken(1),
		Topic:       topic,
		Expiration:  exp,
		Priority:    apns2.PriorityHigh,
		PushType:    apns2.PushTypeAlert,
		Payload:     payload.NewPayload().AlertTitle("Hello").AlertBody("World").Badge(3).Sound("default").MutableContent().Custom("delivery_id", "d-1"),
	}
	res := push(t, c, n)
	if !res.Sent() || res.ApnsID != n.ApnsID || res.Reason != "" {
		t.Fatalf("response = %+v, want 200 with the request's apns-id", res)
	}
	if !uuidRE.MatchString(res.ApnsUniqueID) {
		t.Errorf("apns-unique-id = %q, want a UUID in the development environment", res.ApnsUniqueID)
	}
	// Without an apns-id, APNs makes one.
	res2 := push(t, c, alert(devToken(2)))
	if !res2.Sent() || !uuidRE.MatchString(res2.ApnsID) || res2.ApnsID == n.ApnsID {
		t.Fatalf("second response = %+v, want 200 with a new UUID", res2)
	}

	recs := m.Records()
	if len(recs) != 2 {
		t.Fatalf("records = %d, want 2", len(recs))
	}
	r := recs[0]
	if r.Token != devToken(1) || r.Topic != topic || r.PushType != "alert" || r.Priority != 10 ||
		r.Expiration != exp.Unix() || r.CollapseID != "news-1" || r.Auth != "token" || r.TeamID != team ||
		r.KeyID != keyID || r.Status != 200 || r.ApnsID != n.ApnsID || r.Proto != "HTTP/2.0" || !r.MutableContent ||
		!r.HasAlert || !r.HasSound || r.ContentAvailable {
		t.Errorf("record = %+v", r)
	}
	if r.Header.Get("authorization") != "" {
		t.Error("the record keeps the authorization header")
	}
	var p struct {
		Aps struct {
			Alert struct{ Title, Body string } `json:"alert"`
			Badge int                          `json:"badge"`
		} `json:"aps"`
		DeliveryID string `json:"delivery_id"`
	}
	if err := json.Unmarshal(r.Payload, &p); err != nil {
		t.Fatal(err)
	}
	if p.Aps.Alert.Title != "Hello" || p.Aps.Alert.Body != "World" || p.Aps.Badge != 3 || p.DeliveryID != "d-1" {
		t.Errorf("recorded payload = %s", r.Payload)
	}
	if recs[1].Priority != 10 || recs[1].Header.Get("apns-priority") != "" {
		t.Errorf("absent apns-priority: record %+v, want the effective 10", recs[1])
	}
	if s := m.Stats(); s.Requests != 2 || s.Accepted != 2 || s.Refused != 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestAPNsCertificateAuth(t *testing.T) {
	m := startAPNs(t, mock.APNsConfig{})
	cert, err := m.IssueCertificate(topic)
	if err != nil {
		t.Fatal(err)
	}
	pemFile, err := mock.EncodeCertificatePEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := certificate.FromPemBytes(pemFile, "")
	if err != nil {
		t.Fatal(err)
	}
	c := pointAt(t, apns2.NewClient(loaded), m)

	// The certificate's one topic stands for an absent apns-topic.
	res := push(t, c, &apns2.Notification{DeviceToken: devToken(1), Payload: []byte(`{"aps":{"alert":"hi"}}`)})
	if !res.Sent() {
		t.Fatalf("response = %+v, want 200", res)
	}
	r := m.Records()[0]
	if r.Auth != "certificate" || r.CertSerial == "" || r.Topic != topic || r.TeamID != "" {
		t.Errorf("record = %+v", r)
	}
	res = push(t, c, &apns2.Notification{DeviceToken: devToken(1), Topic: "com.other.app", Payload: `{"aps":{}}`})
	if res.StatusCode != 400 || res.Reason != apns2.ReasonTopicDisallowed {
		t.Errorf("other topic: %+v, want 400 TopicDisallowed", res)
	}

	// A certificate from another authority.
	other := startAPNs(t, mock.APNsConfig{})
	foreign, err := other.IssueCertificate(topic)
	if err != nil {
		t.Fatal(err)
	}
	fc := pointAt(t, apns2.NewClient(foreign), m)
	if res := push(t, fc, alert(devToken(1))); res.StatusCode != 403 || res.Reason != apns2.ReasonBadCertificate {
		t.Errorf("foreign certificate: %+v, want 403 BadCertificate", res)
	}

	if !m.RevokeCertificate(loaded) {
		t.Fatal("RevokeCertificate: not found")
	}
	if res := push(t, c, alert(devToken(1))); res.StatusCode != 403 || res.Reason != apns2.ReasonBadCertificate {
		t.Errorf("revoked certificate: %+v, want 403 BadCertificate", res)
	}
}

// rawClient sends requests of its own making over HTTP/2 to the mock.
func rawClient(t *testing.T, m *mock.APNs) *http.Client {
	tr := &http2.Transport{TLSClientConfig: m.TLSConfig()}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type apnsReply struct {
	status int
	header http.Header
	body   struct {
		Reason    string `json:"reason"`
		Timestamp int64  `json:"timestamp"`
	}
}

func rawPush(t *testing.T, hc *http.Client, method, url string, header http.Header, body []byte) apnsReply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := apnsReply{status: resp.StatusCode, header: resp.Header}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, b)
		}
	}
	return r
}

func TestAPNsProviderTokenErrors(t *testing.T) {
	m := startAPNs(t, mock.APNsConfig{})
	p8, err := m.NewKey(team, keyID)
	if err != nil {
		t.Fatal(err)
	}
	key := parseP8(t, p8)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	es := func(kid string, claims map[string]any, k *ecdsa.PrivateKey) string {
		if k == nil {
			k = key
		}
		return jwtSign(t, map[string]any{"alg": "ES256", "kid": kid}, claims, es256(t, k))
	}
	cases := []struct {
		name, bearer, reason string
		status               int
	}{
		{"valid", es(keyID, map[string]any{"iss": team, "iat": now}, nil), "", 200},
		{"iat two hours old", es(keyID, map[string]any{"iss": team, "iat": now - 7200}, nil), apns2.ReasonExpiredProviderToken, 403},
		{"iat in the future", es(keyID, map[string]any{"iss": team, "iat": now + 3600}, nil), apns2.ReasonInvalidProviderToken, 403},
		{"no iat", es(keyID, map[string]any{"iss": team}, nil), apns2.ReasonInvalidProviderToken, 403},
		{"signed by another key", es(keyID, map[string]any{"iss": team, "iat": now}, otherKey), apns2.ReasonInvalidProviderToken, 403},
		{"unknown kid", es("KEY0000000", map[string]any{"iss": team, "iat": now}, nil), apns2.ReasonInvalidProviderToken, 403},
		{"another team", es(keyID, map[string]any{"iss": "TEAM999999", "iat": now}, nil), apns2.ReasonInvalidProviderToken, 403},
		{"alg HS256", jwtSign(t, map[string]any{"alg": "HS256", "kid": keyID}, map[string]any{"iss": team, "iat": now}, es256(t, key)), apns2.ReasonInvalidProviderToken, 403},
		{"not a JWT", "abc.def", apns2.ReasonInvalidProviderToken, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The real client with the token set by hand: it sends it as is
			// while its IssuedAt is fresh. A new client (connection) each.
			c, tok := tokenClient(t, m, p8, team, keyID)
			tok.Bearer, tok.IssuedAt = tc.bearer, time.Now().Unix()
			res := push(t, c, alert(devToken(1)))
			if res.StatusCode != tc.status || res.Reason != tc.reason {
				t.Errorf("got %d %q, want %d %q", res.StatusCode, res.Reason, tc.status, tc.reason)
			}
		})
	}

	t.Run("missing", func(t *testing.T) {
		r := rawPush(t, rawClient(t, m), "POST", m.URL()+"/3/device/"+devToken(1),
			http.Header{"Apns-Topic": {topic}}, []byte(`{"aps":{}}`))
		if r.status != 403 || r.body.Reason != apns2.ReasonMissingProviderToken {
			t.Errorf("got %d %q, want 403 MissingProviderToken", r.status, r.body.Reason)
		}
	})

	t.Run("revoked key", func(t *testing.T) {
		c, _ := tokenClient(t, m, p8, team, keyID)
		if res := push(t, c, alert(devToken(1))); !res.Sent() {
			t.Fatalf("before revoking: %+v", res)
		}
		if !m.RevokeKey(team, keyID) {
			t.Fatal("RevokeKey: not found")
		}
		res := push(t, c, alert(devToken(1)))
		if res.StatusCode != 403 || res.Reason != apns2.ReasonInvalidProviderToken {
			t.Errorf("after revoking: %+v, want 403 InvalidProviderToken", res)
		}
	})
}

func TestAPNsTooManyProviderTokenUpdates(t *testing.T) {
	m := startAPNs(t, mock.APNsConfig{})
	p8, err := m.NewKey(team, keyID)
	if err != nil {
		t.Fatal(err)
	}
	c, tok := tokenClient(t, m, p8, team, keyID)
	if res := push(t, c, alert(devToken(1))); !res.Sent() {
		t.Fatalf("first token: %+v", res)
	}
	// A second valid token on the same connection a moment later.
	tok.Bearer = jwtSign(t, map[string]any{"alg": "ES256", "kid": keyID},
		map[string]any{"iss": team, "iat": time.Now().Unix() - 1}, es256(t, parseP8(t, p8)))
	res := push(t, c, alert(devToken(1)))
	if res.StatusCode != 429 || res.Reason != apns2.ReasonTooManyProviderTokenUpdates {
		t.Errorf("got %+v, want 429 TooManyProviderTokenUpdates", res)
	}
}

func TestAPNsMalformedRequests(t *testing.T) {
	m := startAPNs(t, mock.APNsConfig{})
	p8, err := m.NewKey(team, keyID)
	if err != nil {
		t.Fatal(err)
	}
	m.RegisterDevice(devToken(9), "com.other.app")
	c, _ := tokenClient(t, m, p8, team, keyID)
	big := `{"aps":{"alert":"x"},"pad":"` + strings.Repeat("a", 4100) + `"}`
	voip := `{"aps":{},"pad":"` + strings.Repeat("a", 5000) + `"}`
	cases := []struct {
		name   string
		n      *apns2.Notification
		status int
		reason string
	}{
		{"missing topic", &apns2.Notification{DeviceToken: devToken(1), Payload: `{"aps":{}}`}, 400, apns2.ReasonMissingTopic},
		{"bad device token", &apns2.Notification{DeviceToken: "not-hex", Topic: topic, Payload: `{"aps":{}}`}, 400, apns2.ReasonBadDeviceToken},
		{"short device token", &apns2.Notification{DeviceToken: "abcd", Topic: topic, Payload: `{"aps":{}}`}, 400, apns2.ReasonBadDeviceToken},
		{"token of another topic", &apns2.Notification{DeviceToken: devToken(9), Topic: topic, Payload: `{"aps":{}}`}, 400, apns2.ReasonDeviceTokenNotForTopic},
		{"collapse id of 65 bytes", &apns2.Notification{DeviceToken: devToken(1), Topic: topic, CollapseID: strings.Repeat("c", 65), Payload: `{"aps":{}}`}, 400, apns2.ReasonBadCollapseID},
		{"collapse id of 64 bytes", &apns2.Notification{DeviceToken: devToken(1), Topic: topic, CollapseID: strings.Repeat("c", 64), Payload: `{"aps":{}}`}, 200, ""},
		{"apns-id not a UUID", &apns2.Notification{DeviceToken: devToken(1), Topic: topic, ApnsID: "delivery-1", Payload: `{"aps":{}}`}, 400, apns2.ReasonBadMessageID},
		{"priority 7", &apns2.Notification{DeviceToken: devToken(1), Topic: topic, Priority: 7, Payload: `{"aps":{}}`}, 400, apns2.ReasonBadPriority},
		{"unknown push type", &apns2.Notification{DeviceToken: devToken(1), Topic: topic, PushType: "banner", Payload: `{"aps":{}}`}, 400, apns2.ReasonInvalidPushType},
		{"voip without .voip topic", &apns2.Notification{DeviceToken: devToken(1), Topic: topic, PushType: apns2.PushTypeVOIP, Payload: `{"aps":{}}`}, 400, apns2.ReasonInvalidPushType},
		{"voip of 5000 bytes", &apns2.Notification{DeviceToken: devToken(1), Topic: topic + ".voip", PushType: apns2.PushTypeVOIP, Payload: voip}, 200, ""},
		{"alert of 4100 bytes", &apns2.Notification{DeviceToken: devToken(1), Topic: topic, Payload: big}, 413, apns2.ReasonPayloadTooLarge},
		{"no aps", &apns2.Notification{DeviceToken: devToken(1), Topic: topic, Payload: `{"alert":"x"}`}, 400, apns2.ReasonPayloadEmpty},
		{"background at priority 10", &apns2.Notification{DeviceToken: devToken(1), Topic: topic, PushType: apns2.PushTypeBackground,
			Payload: payload.NewPayload().ContentAvailable()}, 400, apns2.ReasonBadPriority},
		{"background without content-available", &apns2.Notification{DeviceToken: devToken(1), Topic: topic, PushType: apns2.PushTypeBackground,
			Priority: apns2.PriorityLow, Payload: payload.NewPayload().Custom("k", "v")}, 400, apns2.ReasonInvalidPushType},
		{"background as Apple says", &apns2.Notification{DeviceToken: devToken(1), Topic: topic, PushType: apns2.PushTypeBackground,
			Priority: apns2.PriorityLow, Payload: payload.NewPayload().ContentAvailable()}, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := push(t, c, tc.n)
			if res.StatusCode != tc.status || res.Reason != tc.reason {
				t.Errorf("got %d %q, want %d %q", res.StatusCode, res.Reason, tc.status, tc.reason)
			}
			recs := m.Records()
			if r := recs[len(recs)-1]; r.Status != tc.status || r.Reason != tc.reason {
				t.Errorf("recorded %d %q", r.Status, r.Reason)
			}
		})
	}

	// What apns2 cannot be made to send.
	tok, err := token.AuthKeyFromBytes(p8)
	if err != nil {
		t.Fatal(err)
	}
	bearer := "bearer " + jwtSign(t, map[string]any{"alg": "ES256", "kid": keyID}, map[string]any{"iss": team, "iat": time.Now().Unix()}, es256(t, tok))
	hc := rawClient(t, m)
	url := m.URL() + "/3/device/" + devToken(1)
	hdr := func(kv ...string) http.Header {
		h := http.Header{"Authorization": {bearer}, "Apns-Topic": {topic}}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	raw := []struct {
		name, method, url string
		header            http.Header
		body              string
		status            int
		reason            string
	}{
		{"GET", "GET", url, hdr(), "", 405, apns2.ReasonMethodNotAllowed},
		{"bad path", "POST", m.URL() + "/3/devices/" + devToken(1), hdr(), `{"aps":{}}`, 404, apns2.ReasonBadPath},
		{"no device token", "POST", m.URL() + "/3/device/", hdr(), `{"aps":{}}`, 400, apns2.ReasonMissingDeviceToken},
		{"empty payload", "POST", url, hdr(), "", 400, apns2.ReasonPayloadEmpty},
		{"not JSON", "POST", url, hdr(), "hello", 400, apns2.ReasonPayloadEmpty},
		{"aps not a dictionary", "POST", url, hdr(), `{"aps":"alert"}`, 400, apns2.ReasonPayloadEmpty},
		{"valid", "POST", url, hdr("apns-expiration", "0", "apns-priority", "5"), `{"aps":{"alert":"x"}}`, 200, ""},
		{"expiration not a number", "POST", url, hdr("apns-expiration", "tomorrow"), `{"aps":{}}`, 400, apns2.ReasonBadExpirationDate},
		{"two topics", "POST", url, hdr("apns-topic", "com.example.other"), `{"aps":{}}`, 400, apns2.ReasonDuplicateHeaders},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			r := rawPush(t, hc, tc.method, tc.url, tc.header, []byte(tc.body))
			if r.status != tc.status || r.body.Reason != tc.reason {
				t.Errorf("got %d %q, want %d %q", r.status, r.body.Reason, tc.status, tc.reason)
			}
			if !uuidRE.MatchString(r.header.Get("apns-id")) {
				t.Errorf("apns-id = %q, want a UUID on errors too", r.header.Get("apns-id"))
			}
		})
	}
}

func TestAPNsRules(t *testing.T) {
	m := startAPNs(t, mock.APNsConfig{})
	p8, err := m.NewKey(team, keyID)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := tokenClient(t, m, p8, team, keyID)
	gone := time.Unix(1_700_000_000, 0)
	cases := []struct {
		reason string
		status int
	}{
		{apns2.ReasonBadDeviceToken, 400},
		{apns2.ReasonDeviceTokenNotForTopic, 400},
		{apns2.ReasonUnregistered, 410},
		{apns2.ReasonExpiredToken, 410},
		{apns2.ReasonPayloadTooLarge, 413},
		{apns2.ReasonTooManyRequests, 429},
		{apns2.ReasonInternalServerError, 500},
		{apns2.ReasonServiceUnavailable, 503},
		{apns2.ReasonShutdown, 503},
		{apns2.ReasonExpiredProviderToken, 403},
		{apns2.ReasonInvalidProviderToken, 403},
		{apns2.ReasonBadCertificate, 403},
		{apns2.ReasonMissingTopic, 400},
		{apns2.ReasonBadCollapseID, 400},
		{apns2.ReasonBadPriority, 400},
		{apns2.ReasonPayloadEmpty, 400},
	}
	for i, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			tok := devToken(100 + i)
			a := mock.APNsReject(tc.reason)
			a.Timestamp = gone
			m.AddRule(mock.APNsRule{Token: tok, Answer: a, Times: 2})
			for range 2 {
				res := push(t, c, alert(tok))
				if res.StatusCode != tc.status || res.Reason != tc.reason {
					t.Fatalf("got %d %q, want %d %q", res.StatusCode, res.Reason, tc.status, tc.reason)
				}
				if tc.status == 410 && !res.Timestamp.Equal(gone) {
					t.Errorf("timestamp = %v, want %v", res.Timestamp.Time, gone)
				}
			}
			if res := push(t, c, alert(tok)); !res.Sent() {
				t.Errorf("third push after a rule for 2: %+v, want 200", res)
			}
			if res := push(t, c, alert(devToken(99))); !res.Sent() {
				t.Errorf("another token: %+v, want 200", res)
			}
		})
	}

	t.Run("every request with Retry-After", func(t *testing.T) {
		m.AddRule(mock.APNsRule{Answer: mock.APNsAnswer{Reason: mock.ReasonServiceUnavailable, RetryAfter: 30 * time.Second}})
		for i := range 3 {
			if res := push(t, c, alert(devToken(200+i))); res.StatusCode != 503 || res.Reason != apns2.ReasonServiceUnavailable {
				t.Fatalf("token %d: %+v", i, res)
			}
		}
		bearer := "bearer " + jwtSign(t, map[string]any{"alg": "ES256", "kid": keyID},
			map[string]any{"iss": team, "iat": time.Now().Unix()}, es256(t, parseP8(t, p8)))
		r := rawPush(t, rawClient(t, m), "POST", m.URL()+"/3/device/"+devToken(1),
			http.Header{"Authorization": {bearer}, "Apns-Topic": {topic}}, []byte(`{"aps":{}}`))
		if r.status != 503 || r.header.Get("Retry-After") != "30" {
			t.Errorf("got %d Retry-After %q, want 503 and 30", r.status, r.header.Get("Retry-After"))
		}
		m.ClearRules()
		if res := push(t, c, alert(devToken(1))); !res.Sent() {
			t.Errorf("after ClearRules: %+v", res)
		}
	})

	t.Run("by topic", func(t *testing.T) {
		m.AddRule(mock.APNsRule{Topic: "com.example.app2", Answer: mock.APNsReject(mock.ReasonTopicDisallowed)})
		n := alert(devToken(1))
		n.Topic = "com.example.app2"
		if res := push(t, c, n); res.Reason != apns2.ReasonTopicDisallowed {
			t.Errorf("got %+v", res)
		}
		if res := push(t, c, alert(devToken(1))); !res.Sent() {
			t.Errorf("other topic: %+v", res)
		}
		m.ClearRules()
	})

	s := m.Stats()
	if s.ByReason[mock.ReasonUnregistered] != 2 || s.ByReason[mock.ReasonServiceUnavailable] < 6 || s.ByRule < int64(2*len(cases)+4) {
		t.Errorf("stats = %+v", s)
	}
}

func TestAPNsLatencyIsConcurrent(t *testing.T) {
	const n, lat = 100, 40 * time.Millisecond
	m := startAPNs(t, mock.APNsConfig{Latency: lat})
	p8, err := m.NewKey(team, keyID)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := tokenClient(t, m, p8, team, keyID)
	if res := push(t, c, alert(devToken(0))); !res.Sent() { // connect first
		t.Fatal(res)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			res, err := c.Push(alert(devToken(i)))
			if err != nil || !res.Sent() {
				errs <- fmt.Sprint(res, err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// Serialised, 100 requests would take 4 s; concurrent, about 40 ms. The
	// bound leaves room for a slow, shared machine.
	if elapsed < lat || elapsed > 1500*time.Millisecond {
		t.Errorf("%d pushes with %v latency took %v, want between %v and 1.5s", n, lat, elapsed, lat)
	}
	if s := m.Stats(); s.MaxInFlight < 20 {
		t.Errorf("at most %d requests in flight at once, want many", s.MaxInFlight)
	}
	t.Logf("%d concurrent pushes with %v latency: %v, max in flight %d", n, lat, elapsed, m.Stats().MaxInFlight)
}

func TestAPNsRecordsAreBounded(t *testing.T) {
	var mu sync.Mutex
	var hooked []string
	m := startAPNs(t, mock.APNsConfig{KeepRecords: 10, OnRecord: func(r mock.APNsRecord) {
		mu.Lock()
		hooked = append(hooked, r.Token)
		mu.Unlock()
	}})
	p8, err := m.NewKey(team, keyID)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := tokenClient(t, m, p8, team, keyID)
	for i := range 25 {
		push(t, c, alert(devToken(i)))
	}
	recs := m.Records()
	if len(recs) != 10 {
		t.Fatalf("kept %d records, want 10", len(recs))
	}
	for i, r := range recs {
		if r.Token != devToken(15+i) {
			t.Errorf("record %d is for %s, want %s (the newest, oldest first)", i, r.Token, devToken(15+i))
		}
	}
	if len(hooked) != 25 {
		t.Errorf("OnRecord called %d times, want 25", len(hooked))
	}
	if s := m.Stats(); s.Requests != 25 || s.Accepted != 25 {
		t.Errorf("stats = %+v", s)
	}
	m.ResetRecords()
	if len(m.Records()) != 0 {
		t.Error("ResetRecords kept records")
	}
}
