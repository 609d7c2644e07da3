package processor

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/pipeline/bus"
)

// The tests of this file need no broker: an instance that owns no
// partition, and a peer (an httptest server the test controls) announced
// in the configuration as the owner of all four, as a record in
// engage.config would announce it.

const (
	userToken  = "game-token-0123456789"
	adminToken = "admin-token-0123456789"
)

// fakePeer records what it was sent and answers with answer.
type fakePeer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	auth   []string // the Authorization headers received
	paths  []string
	answer func(w http.ResponseWriter, r *http.Request)
}

func newFakePeer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *fakePeer {
	fp := &fakePeer{answer: answer}
	fp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fp.mu.Lock()
		fp.auth = append(fp.auth, r.Header.Get("Authorization"))
		fp.paths = append(fp.paths, r.URL.RequestURI())
		fp.mu.Unlock()
		fp.answer(w, r)
	}))
	t.Cleanup(fp.srv.Close)
	return fp
}

// newSignedPeer is a peer that has the cluster secret (a buggy or
// compromised instance): its answers are signed, and only what they say
// can refuse them.
func newSignedPeer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *fakePeer {
	cl, err := apiauth.NewCluster("-api.cluster-secret", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return newFakePeer(t, func(w http.ResponseWriter, r *http.Request) {
		if err := cl.Verify(r); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		rec := httptest.NewRecorder()
		answer(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		cl.SignResponse(r, rec.Code, w.Header(), rec.Body.Bytes())
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
}

func (fp *fakePeer) received() ([]string, []string) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return append([]string(nil), fp.auth...), append([]string(nil), fp.paths...)
}

// lonelyAPI is an API whose instance owns none of 4 partitions; the app
// "game" has the segment "high"; peer is announced as the owner of all
// four partitions.
func lonelyAPI(t *testing.T, peerAddr string) *API {
	t.Helper()
	store := NewStore()
	cfg := DefaultConfig([]string{"127.0.0.1:1"})
	proc, err := New(cfg, store, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	proc.nIn.Store(4)
	d, _ := json.Marshal(Definition{App: "game", Name: "high", Text: `app_info "level" >= 5`})
	if _, err := store.Apply(bus.Message{Key: ConfigKey("game", "high"), Value: d, Offset: 1}); err != nil {
		t.Fatal(err)
	}
	in, _ := json.Marshal(Instance{ID: "peer-1", Group: cfg.Group, Addr: peerAddr, Partitions: []int{0, 1, 2, 3}})
	if _, err := store.Apply(bus.Message{Key: []byte(InstanceKeyPrefix + "peer-1"), Value: in, Offset: 2}); err != nil {
		t.Fatal(err)
	}
	return newTestAPI(t, proc, store)
}

const testSecret = "cluster-secret-for-the-tests-0123456789"

func newTestAPI(t *testing.T, proc *Processor, store *Store) *API {
	t.Helper()
	toks, err := apiauth.ParseTokens("-api.tokens", userToken+":game "+adminToken+":*")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := apiauth.NewCluster("-api.cluster-secret", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return &API{Proc: proc, Store: store, Tokens: toks, Cluster: cl}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func call(t *testing.T, h http.Handler, path, token string) answer {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// A peer announced in the configuration receives no user token, whatever
// the endpoint: the list, one segment, members, explain.
func TestPeerGetsNoUserToken(t *testing.T) {
	fp := newFakePeer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"no"}`, http.StatusInternalServerError)
	})
	api := lonelyAPI(t, fp.srv.URL)
	h := api.Handler()
	for _, path := range []string{"/v1/segments?app=game", "/v1/segments", "/v1/segments/game/high", "/v1/segments/game/high/members",
		"/v1/segments/game/high/explain?device=d1"} {
		tok := userToken
		if path == "/v1/segments" {
			tok = adminToken
		}
		call(t, h, path, tok)
	}
	auths, paths := fp.received()
	if len(auths) < 5 {
		t.Fatalf("the peer was asked %d times (%v), want at least 5", len(auths), paths)
	}
	for i, a := range auths {
		if strings.Contains(a, userToken) || strings.Contains(a, adminToken) || strings.HasPrefix(strings.ToLower(a), "bearer") {
			t.Errorf("the peer received the user's credential %q on %s", a, paths[i])
		}
	}
}

// An endless answer from a peer ends at the size limit with an error
// naming the peer and its partitions: no hang, no unbounded memory.
func TestPeerOversizeAnswer(t *testing.T) {
	fp := newFakePeer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Engage-Partitions", "0,1,2,3")
		if strings.Contains(r.URL.Path, "/local/statuses") {
			io.WriteString(w, `{"instance":"peer-1","partitions":{"0":[`)
		}
		chunk := []byte(strings.Repeat("dev-0000000000000000000000000000000000\n", 1000))
		if strings.Contains(r.URL.Path, "/local/statuses") {
			chunk = []byte(strings.Repeat(`{"app":"game","segment":"high","size":1,"complete":true},`, 1000))
		}
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	api := lonelyAPI(t, fp.srv.URL)
	api.PeerMaxBytes = 4 << 20
	h := api.Handler()
	start := time.Now()
	a := call(t, h, "/v1/segments/game/high", userToken)
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("the answer took %s", el)
	}
	var si struct {
		MissingPartitions []int    `json:"missing_partitions"`
		PeerErrors        []string `json:"peer_errors"`
	}
	if err := json.Unmarshal([]byte(a.body), &si); err != nil || a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if fmt.Sprint(si.MissingPartitions) != "[0 1 2 3]" || len(si.PeerErrors) != 1 || !strings.Contains(si.PeerErrors[0], "peer-1") ||
		!strings.Contains(si.PeerErrors[0], "partitions 0,1,2,3") || !strings.Contains(si.PeerErrors[0], "bytes") {
		t.Fatalf("an endless answer: %s", a.body)
	}
	start = time.Now()
	a = call(t, h, "/v1/segments/game/high/members", userToken)
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("the members took %s", el)
	}
	if a.status != 200 || a.body != "" || a.header.Get("Engage-Missing-Partitions") != "0,1,2,3" {
		t.Fatalf("members from an endless answer: %d %q, missing %q", a.status, a.body[:min(len(a.body), 200)], a.header.Get("Engage-Missing-Partitions"))
	}
}

// Answers that are not what was asked are refused, each with an error
// naming the peer: the partitions they cover are missing, and nothing of
// them is counted.
func TestPeerGarbageAnswers(t *testing.T) {
	statuses := func(body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }
	}
	members := func(parts, body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Engage-Partitions", parts)
			io.WriteString(w, body)
		}
	}
	for _, c := range []struct {
		name, path string
		answer     func(w http.ResponseWriter, r *http.Request)
		want       string
	}{
		{"not JSON", "/v1/segments/game/high", statuses("<html>hello</html>"), "peer-1"},
		{"another shape", "/v1/segments/game/high", statuses(`{"partitions":{"0":[{"app":"game","segment":"high","size":7,"owned":true}]}}`), "peer-1"},
		{"a partition not asked", "/v1/segments/game/high", statuses(`{"instance":"peer-1","partitions":{"9":[{"app":"game","segment":"high","size":7,"complete":true}]}}`), "partition 9"},
		{"another app", "/v1/segments/game/high", statuses(`{"instance":"peer-1","partitions":{"0":[{"app":"news","segment":"high","size":7,"complete":true}]}}`), `app "news"`},
		{"a negative size", "/v1/segments/game/high", statuses(`{"instance":"peer-1","partitions":{"0":[{"app":"game","segment":"high","size":-7,"complete":true}]}}`), "size"},
		{"trailing data", "/v1/segments/game/high", statuses(`{"instance":"peer-1","partitions":{}} {"x":1}`), "peer-1"},
		{"members of a partition not asked", "/v1/segments/game/high/members", members("7", "d1\n"), "partition 7"},
		{"members of a garbage partition list", "/v1/segments/game/high/members", members("0,x", "d1\n"), "peer-1"},
		{"a control character", "/v1/segments/game/high/members", members("0,1,2,3", "d1\n\x1b[31mred\n"), "control"},
		{"an id over the limit", "/v1/segments/game/high/members", members("0,1,2,3", strings.Repeat("x", 200)+"\n"), "bytes"},
		{"an empty id", "/v1/segments/game/high/members", members("0,1,2,3", "\n"), "empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fp := newSignedPeer(t, c.answer)
			h := lonelyAPI(t, fp.srv.URL).Handler()
			a := call(t, h, c.path, userToken)
			if strings.HasSuffix(c.path, "/members") {
				if a.status != 200 || a.body != "" || a.header.Get("Engage-Missing-Partitions") != "0,1,2,3" || !strings.Contains(a.header.Get("Engage-Peer-Errors"), c.want) {
					t.Fatalf("%d %q, missing %q, errors %q", a.status, a.body, a.header.Get("Engage-Missing-Partitions"), a.header.Get("Engage-Peer-Errors"))
				}
				return
			}
			var si struct {
				Size              *int     `json:"size"`
				MissingPartitions []int    `json:"missing_partitions"`
				PeerErrors        []string `json:"peer_errors"`
			}
			if err := json.Unmarshal([]byte(a.body), &si); err != nil || a.status != 200 {
				t.Fatalf("%d %s", a.status, a.body)
			}
			if si.Size != nil || fmt.Sprint(si.MissingPartitions) != "[0 1 2 3]" || len(si.PeerErrors) != 1 || !strings.Contains(si.PeerErrors[0], c.want) {
				t.Fatalf("want no size, all partitions missing and an error containing %q: %s", c.want, a.body)
			}
		})
	}
}

// A member on a partition the peer did not claim is refused: a peer
// answers only for the partitions it was asked for.
func TestPeerMembersOnTheirPartitions(t *testing.T) {
	// dev-0 … dev-39 spread over the four partitions; the peer claims
	// partition 0 only, but lists them all.
	var ids []string
	for i := range 40 {
		ids = append(ids, fmt.Sprintf("dev-%d", i))
	}
	fp := newSignedPeer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Engage-Partitions", "0")
		io.WriteString(w, strings.Join(ids, "\n")+"\n")
	})
	h := lonelyAPI(t, fp.srv.URL).Handler()
	a := call(t, h, "/v1/segments/game/high/members", userToken)
	if a.status != 200 || a.body != "" || a.header.Get("Engage-Missing-Partitions") != "0,1,2,3" || !strings.Contains(a.header.Get("Engage-Peer-Errors"), "not on partitions 0") {
		t.Fatalf("%d %q, missing %q, errors %q", a.status, a.body, a.header.Get("Engage-Missing-Partitions"), a.header.Get("Engage-Peer-Errors"))
	}
}

// A peer that does not answer is given up after the peer timeout.
func TestPeerTimeout(t *testing.T) {
	release := make(chan struct{})
	fp := newFakePeer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	api := lonelyAPI(t, fp.srv.URL)
	api.PeerTimeout = 300 * time.Millisecond
	start := time.Now()
	a := call(t, api.Handler(), "/v1/segments/game/high", userToken)
	if el := time.Since(start); el > 3*time.Second || a.status != 200 || !strings.Contains(a.body, `"missing_partitions":[0,1,2,3]`) || !strings.Contains(a.body, "peer-1") {
		t.Fatalf("after %s: %d %s", el, a.status, a.body)
	}
}

// An explanation forwarded to the device's owner is checked too: garbage
// is a 502 naming the peer, never passed on.
func TestPeerExplainGarbage(t *testing.T) {
	for _, body := range []string{"<script>alert(1)</script>", strings.Repeat("x", 20<<20), `{"app":"game","segment":"high","device_id":"other","member":true}`} {
		fp := newSignedPeer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, body)
		})
		h := lonelyAPI(t, fp.srv.URL).Handler()
		a := call(t, h, "/v1/segments/game/high/explain?device=d1", userToken)
		if a.status != http.StatusBadGateway || !strings.Contains(a.body, "peer-1") || strings.Contains(a.body, "<script>") || len(a.body) > 4096 {
			t.Fatalf("%d %s", a.status, a.body[:min(len(a.body), 300)])
		}
	}
}

// The endpoints that instances call on each other refuse a user's token,
// whatever apps it may read.
func TestPeerEndpointsRefuseUserTokens(t *testing.T) {
	fp := newFakePeer(t, func(w http.ResponseWriter, r *http.Request) {})
	h := lonelyAPI(t, fp.srv.URL).Handler()
	for _, path := range []string{"/v1/local/statuses?app=game", "/v1/local/statuses?apps=game", "/v1/segments/game/high/members?partitions=0,1",
		"/v1/segments/game/high/explain?device=d1&local=1"} {
		for _, tok := range []string{userToken, adminToken} {
			a := call(t, h, path, tok)
			if a.status != http.StatusForbidden && a.status != http.StatusUnauthorized {
				t.Errorf("%s with a user token: %d %s", path, a.status, a.body)
			}
		}
	}
}

// An instance record whose address is not an http(s) URL with a host and
// a port is ignored, with an error for the warning.
func TestInstanceAddressChecked(t *testing.T) {
	s := NewStore()
	for i, addr := range []string{"file:///etc/passwd", "gopher://10.0.0.1:70", "http://10.0.0.1", "http://user:pw@10.0.0.1:8082", "http://10.0.0.1:8082/x?y=1",
		"10.0.0.1:8082", "http://:8082", "http://10.0.0.1:99999", "http://10.0.0.1:0"} {
		v, _ := json.Marshal(Instance{ID: "x", Group: "g", Addr: addr, Partitions: []int{0}})
		_, err := s.Apply(bus.Message{Key: []byte(InstanceKeyPrefix + "x"), Value: v, Offset: int64(i)})
		if err == nil || !strings.Contains(err.Error(), "address") {
			t.Errorf("%q: %v", addr, err)
		}
		if len(s.Owners("g")) != 0 {
			t.Fatalf("%q: taken as an owner", addr)
		}
	}
	for i, addr := range []string{"http://10.0.0.1:8082", "https://proc-2.internal:8443", "http://[fd00::1]:8082/"} {
		v, _ := json.Marshal(Instance{ID: "x", Group: "g", Addr: addr, Partitions: []int{0}})
		if _, err := s.Apply(bus.Message{Key: []byte(InstanceKeyPrefix + "x"), Value: v, Offset: int64(100 + i)}); err != nil {
			t.Errorf("%q: %v", addr, err)
		}
	}
}

// A token is looked up whole: a wrong token with the right prefix, a
// prefix of a right token, or one with a byte more are unknown.
func TestWrongTokenWithTheRightPrefix(t *testing.T) {
	fp := newFakePeer(t, func(w http.ResponseWriter, r *http.Request) {})
	h := lonelyAPI(t, fp.srv.URL).Handler()
	for _, tok := range []string{userToken[:len(userToken)-1] + "X", userToken[:len(userToken)-1], userToken + "0", " " + userToken + " x"} {
		if a := call(t, h, "/v1/segments?app=game", tok); a.status != http.StatusUnauthorized {
			t.Errorf("token %q: %d %s", tok, a.status, a.body)
		}
	}
}

// The cluster credential opens the calls between instances, and only
// those; a wrong or stale one is refused.
func TestPeerCredential(t *testing.T) {
	fp := newFakePeer(t, func(w http.ResponseWriter, r *http.Request) {})
	api := lonelyAPI(t, fp.srv.URL)
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	signed := func(path, secret string, at time.Time) int {
		t.Helper()
		cl, err := apiauth.NewCluster("-api.cluster-secret", secret)
		if err != nil {
			t.Fatal(err)
		}
		cl.Now = func() time.Time { return at }
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		cl.Sign(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now()
	for _, path := range []string{"/v1/local/statuses?apps=game", "/v1/segments/game/high/members?partitions=0,1", "/v1/segments/game/high/explain?device=d1&local=1"} {
		if code := signed(path, testSecret, now); code == 401 || code == 403 {
			t.Errorf("%s signed: %d", path, code)
		}
		if code := signed(path, strings.Repeat("x", 40), now); code != 401 {
			t.Errorf("%s signed with another secret: %d", path, code)
		}
		if code := signed(path, testSecret, now.Add(-2*time.Minute)); code != 401 {
			t.Errorf("%s signed 2 minutes ago: %d", path, code)
		}
	}
	for _, path := range []string{"/v1/segments?app=game", "/v1/segments/game/high", "/v1/segments/game/high/members", "/v1/segments/game/high/explain?device=d1"} {
		if code := signed(path, testSecret, now); code != 401 {
			t.Errorf("%s with the cluster credential: %d", path, code)
		}
	}
}

// An instance without a cluster secret asks no other instance, and says
// so.
func TestNoClusterSecret(t *testing.T) {
	fp := newFakePeer(t, func(w http.ResponseWriter, r *http.Request) {})
	api := lonelyAPI(t, fp.srv.URL)
	api.Cluster = nil
	a := call(t, api.Handler(), "/v1/segments/game/high", userToken)
	if a.status != 200 || !strings.Contains(a.body, `"missing_partitions":[0,1,2,3]`) || !strings.Contains(a.body, "-api.cluster-secret") {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if auths, _ := fp.received(); len(auths) != 0 {
		t.Fatalf("asked: %v", auths)
	}
}

// Peers outside -api.peer-allow are not connected to.
func TestPeerAllow(t *testing.T) {
	fp := newFakePeer(t, func(w http.ResponseWriter, r *http.Request) {})
	api := lonelyAPI(t, fp.srv.URL)
	allow, err := ParsePeerAllow("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	api.Client = NewPeerClient(allow)
	a := call(t, api.Handler(), "/v1/segments/game/high", userToken)
	if a.status != 200 || !strings.Contains(a.body, "outside -api.peer-allow") {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if auths, _ := fp.received(); len(auths) != 0 {
		t.Fatalf("connected: %v", auths)
	}
	for _, bad := range []string{"", "10.0.0.0/33", "example.com"} {
		if _, err := ParsePeerAllow(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A well-behaved peer's answers are taken: sizes, members and an
// explanation, each checked.
func TestPeerGoodAnswers(t *testing.T) {
	// The peer owns all four partitions; its members are the devices
	// dev-0 … dev-19, on whichever partition each falls.
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("dev-%d", i))
	}
	fp := newSignedPeer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/local/statuses"):
			if r.URL.Query().Get("apps") != "game" {
				http.Error(w, "apps "+r.URL.Query().Get("apps"), 400)
				return
			}
			io.WriteString(w, `{"instance":"peer-1","partitions":{"0":[{"app":"game","segment":"high","size":5,"complete":true}],"1":[{"app":"game","segment":"high","size":5,"complete":true}],"2":[{"app":"game","segment":"high","size":5,"complete":true}],"3":[{"app":"game","segment":"high","size":5,"complete":true}]}}`)
		case strings.HasSuffix(r.URL.Path, "/members"):
			w.Header().Set("Engage-Partitions", r.URL.Query().Get("partitions"))
			io.WriteString(w, strings.Join(ids, "\n")+"\n")
		case strings.HasSuffix(r.URL.Path, "/explain"):
			fmt.Fprintf(w, `{"app":"game","clauses":{"clause":"app_info \"level\" >= 5","detail":"level = 7","value":true},"device_id":%q,"history":"","member":true,"partitions":[0,1,2,3],"segment":"high","text":"…","time":"2026-11-20T10:00:00Z","value":true}`, r.URL.Query().Get("device"))
		}
	})
	h := lonelyAPI(t, fp.srv.URL).Handler()
	a := call(t, h, "/v1/segments/game/high", userToken)
	if a.status != 200 || !strings.Contains(a.body, `"size":20`) || !strings.Contains(a.body, `"partitions":[0,1,2,3]`) || strings.Contains(a.body, "missing") {
		t.Fatalf("%d %s", a.status, a.body)
	}
	a = call(t, h, "/v1/segments/game/high/members", userToken)
	if a.status != 200 || len(strings.Fields(a.body)) != 20 || a.header.Get("Engage-Partitions") != "0,1,2,3" {
		t.Fatalf("%d %q %v", a.status, a.body, a.header)
	}
	a = call(t, h, "/v1/segments/game/high/explain?device=dev-3", userToken)
	if a.status != 200 || !strings.Contains(a.body, `"device_id":"dev-3"`) || !strings.Contains(a.body, `"detail":"level = 7"`) {
		t.Fatalf("%d %s", a.status, a.body)
	}
	auths, _ := fp.received()
	for _, au := range auths {
		if !strings.HasPrefix(au, "Engage-Peer ") {
			t.Errorf("the peer got %q", au)
		}
	}
}

// A well-formed answer that is not signed with the cluster secret (an
// address announced by someone without it) is refused.
func TestPeerUnsignedAnswer(t *testing.T) {
	fp := newFakePeer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"instance":"peer-1","partitions":{"0":[{"app":"game","segment":"high","size":1000000,"complete":true}]}}`)
	})
	a := call(t, lonelyAPI(t, fp.srv.URL).Handler(), "/v1/segments/game/high", userToken)
	if a.status != 200 || strings.Contains(a.body, "1000000") || !strings.Contains(a.body, `"missing_partitions":[0,1,2,3]`) || !strings.Contains(a.body, "not signed with the cluster secret") {
		t.Fatalf("%d %s", a.status, a.body)
	}
}

// The instance asks the others only for the apps the caller's token may
// read: a token of "game" listing every segment asks for "game" alone,
// though "news" has segments too.
func TestPeerAskedOnlyForTheTokensApps(t *testing.T) {
	fp := newSignedPeer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"instance":"peer-1","partitions":{}}`)
	})
	api := lonelyAPI(t, fp.srv.URL)
	d, _ := json.Marshal(Definition{App: "news", Name: "readers", Text: `did event "article_read"`})
	if _, err := api.Store.Apply(bus.Message{Key: ConfigKey("news", "readers"), Value: d, Offset: 3}); err != nil {
		t.Fatal(err)
	}
	h := api.Handler()
	if a := call(t, h, "/v1/segments", userToken); a.status != 200 || strings.Contains(a.body, "readers") {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if a := call(t, h, "/v1/segments", adminToken); a.status != 200 || !strings.Contains(a.body, "readers") {
		t.Fatalf("%d %s", a.status, a.body)
	}
	_, paths := fp.received()
	if len(paths) != 2 || paths[0] != "/v1/local/statuses?apps=game" || paths[1] != "/v1/local/statuses?apps=game%2Cnews" {
		t.Fatalf("asked %v", paths)
	}
}
