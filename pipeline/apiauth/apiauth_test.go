package apiauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParseTokens(t *testing.T) {
	toks, err := ParseTokens("-api.tokens", "game-token-0123456789:game,news admin-token-0123456789:*")
	if err != nil {
		t.Fatal(err)
	}
	if toks.Len() != 2 {
		t.Fatalf("%d tokens", toks.Len())
	}
	s, ok := toks.Lookup("game-token-0123456789")
	if !ok || !s.May("game") || !s.May("news") || s.May("shop") || s.All() || s.Name != "game…" {
		t.Fatalf("%+v %v", s, ok)
	}
	if s, ok := toks.Lookup("admin-token-0123456789"); !ok || !s.May("anything") {
		t.Fatalf("%+v %v", s, ok)
	}
	for _, tok := range []string{"game-token-012345678", "game-token-0123456789 ", "game-token-01234567890", "Game-token-0123456789", ""} {
		if _, ok := toks.Lookup(tok); ok {
			t.Errorf("%q found", tok)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"good-token-0123456789:* tiny-secret:game", "-api.tokens: token 2 of 2 (ti…) has 11 bytes: tokens need at least 16"},
		{"abc:game", "token 1 of 1 (…) has 3 bytes"},
		{"good-token-0123456789", "TOKEN:app1,app2"},
		{"good-token-0123456789:,", "has no apps"},
		{"good-token-0123456789:a good-token-0123456789:b", "token 2 of 2 (good…) appears twice"},
		{"good-token-0123456\x01789:a", "printable"},
	} {
		_, err := ParseTokens("-api.tokens", c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
		if err != nil && strings.Contains(c.in, "tiny-secret") && strings.Contains(err.Error(), "tiny-secret") {
			t.Errorf("the error shows the token: %v", err)
		}
	}
	if toks, err := ParseTokens("-api.tokens", ""); err != nil || toks.Len() != 0 {
		t.Fatalf("empty: %v %v", toks, err)
	}
}

func TestCluster(t *testing.T) {
	secret := strings.Repeat("s", 32)
	if _, err := NewCluster("-api.cluster-secret", ""); err == nil || !strings.Contains(err.Error(), "-api.cluster-secret") {
		t.Fatal(err)
	}
	if _, err := NewCluster("-api.cluster-secret", "short-secret-123"); err == nil || !strings.Contains(err.Error(), "at least 32") || strings.Contains(err.Error(), "short-secret") {
		t.Fatal(err)
	}
	c, err := NewCluster("-api.cluster-secret", secret)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewCluster("-api.cluster-secret", strings.Repeat("o", 32))
	now := time.Unix(1_800_000_000, 0)
	c.Now = func() time.Time { return now }
	other.Now = c.Now
	signed := func(target string, signer *Cluster, at time.Time) *httptestReq {
		req := httptest.NewRequest("GET", "http://peer:8082"+target, nil)
		saved := signer.Now
		signer.Now = func() time.Time { return at }
		signer.Sign(req)
		signer.Now = saved
		return &httptestReq{req}
	}
	if err := c.Verify(signed("/v1/local/statuses?apps=game", c, now).r); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(signed("/v1/local/statuses?apps=game", c, now.Add(-59*time.Second)).r); err != nil {
		t.Fatal(err)
	}
	for what, r := range map[string]*httptestReq{
		"another secret": signed("/v1/local/statuses?apps=game", other, now),
		"too old":        signed("/v1/local/statuses?apps=game", c, now.Add(-61*time.Second)),
		"ahead":          signed("/v1/local/statuses?apps=game", c, now.Add(61*time.Second)),
	} {
		if err := c.Verify(r.r); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	// Another target, or another method, with the same signature.
	r := signed("/v1/local/statuses?apps=game", c, now).r
	r2 := httptest.NewRequest("GET", "http://peer:8082/v1/local/statuses?apps=news", nil)
	r2.Header = r.Header.Clone()
	if err := c.Verify(r2); err == nil {
		t.Error("another query accepted")
	}
	r3 := httptest.NewRequest("DELETE", "http://peer:8082/v1/local/statuses?apps=game", nil)
	r3.Header = r.Header.Clone()
	if err := c.Verify(r3); err == nil {
		t.Error("another method accepted")
	}
	r4 := httptest.NewRequest("GET", "http://peer:8082/v1/segments", nil)
	r4.Header.Set("Authorization", "Bearer "+secret)
	if err := c.Verify(r4); err != ErrNoPeerCredential || IsPeer(r4) {
		t.Errorf("the secret as a bearer: %v", err)
	}
	if !IsPeer(r) {
		t.Error("IsPeer")
	}
}

type httptestReq struct{ r *http.Request }

func TestClusterResponse(t *testing.T) {
	c, _ := NewCluster("s", strings.Repeat("s", 32))
	other, _ := NewCluster("s", strings.Repeat("o", 32))
	req := httptest.NewRequest("GET", "http://peer:8082/v1/segments/game/high/members?partitions=0,1", nil)
	c.Sign(req)
	h := http.Header{}
	h.Set("Engage-Partitions", "0,1")
	h.Set("Content-Type", "text/plain")
	body := []byte("d1\nd2\n")
	c.SignResponse(req, 200, h, body)
	if err := c.VerifyResponse(req, 200, h, body); err != nil {
		t.Fatal(err)
	}
	bad := func(what string, status int, h http.Header, body []byte, req *http.Request, by *Cluster) {
		t.Helper()
		if err := by.VerifyResponse(req, status, h, body); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	bad("another body", 200, h, []byte("d1\nd3\n"), req, c)
	bad("another status", 404, h, body, req, c)
	h2 := h.Clone()
	h2.Set("Engage-Partitions", "0,1,2")
	bad("other partitions", 200, h2, body, req, c)
	req2 := httptest.NewRequest("GET", "http://peer:8082/v1/segments/game/high/members?partitions=0,1", nil)
	c.Now = func() time.Time { return time.Now().Add(time.Second) }
	c.Sign(req2)
	c.Now = nil
	bad("the answer to another request", 200, h, body, req2, c)
	bad("another secret", 200, h, body, req, other)
	h3 := h.Clone()
	h3.Del(PeerResponseHeader)
	bad("unsigned", 200, h3, body, req, c)
}

func TestNewTokens(t *testing.T) {
	toks, err := NewTokens("tokens", map[string][]string{"odd-token-0123456789": {"o'reilly \\ app", "news"}, "admin-token-0123456789": {"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := toks.Lookup("odd-token-0123456789"); !ok || !s.May("o'reilly \\ app") || !s.May("news") || s.May("game") {
		t.Fatalf("%+v %v", s, ok)
	}
	if s, ok := toks.Lookup("admin-token-0123456789"); !ok || !s.All() {
		t.Fatalf("%+v %v", s, ok)
	}
	for _, bad := range []map[string][]string{{"short": {"*"}}, {"0123456789 abcdef": {"*"}}, {"0123456789abcdef": nil}} {
		if _, err := NewTokens("tokens", bad); err == nil || strings.Contains(err.Error(), "0123456789") {
			t.Errorf("%v: %v", bad, err)
		}
	}
}
