package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments/processor"
)

// The segments API against a processor on the real broker: create with
// checks against the tag plan, live size, members, explain, update,
// delete, and the token rules.
func TestSegmentsAPI(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	cfg := topics(t, brokers, 2)
	cfg.FlushInterval = 20 * time.Millisecond
	cfg.SimulatedClock = false // the wall clock, and the engine's batch path
	plan, err := tagplan.ParseFile("../testdata/plans/game.yaml")
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, cfg.ChangesTopic), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	store := processor.NewStore()
	proc, err := processor.New(cfg, store, prod, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	api := &processor.API{Proc: proc, Store: store, Config: prod, Topic: cfg.ConfigTopic, Cluster: mustCluster(t),
		Tokens: mustTokens(t, "admin-token-0123456789:* game-token-0123456789:game other-token-0123456789:news"),
		Plans: func(app string) (*tagplan.Plan, bool) {
			if app == "game" {
				return plan, true
			}
			return nil, false
		}}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()

	call := func(method, path, token, ctype, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e struct {
			Error struct{ Code, Message string }
		}
		if resp.StatusCode >= 400 && json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return resp.StatusCode, e.Error.Message // the message, unescaped
		}
		return resp.StatusCode, string(b)
	}
	expect := func(status int, want string, gotStatus int, body string) {
		t.Helper()
		if gotStatus != status || !strings.Contains(body, want) {
			t.Fatalf("got %d %s, want %d containing %q", gotStatus, body, status, want)
		}
	}

	// Tokens.
	code, body := call("GET", "/v1/segments", "", "", "")
	expect(401, "missing bearer token", code, body)
	code, body = call("GET", "/v1/segments", "nope", "", "")
	expect(401, "unknown bearer token", code, body)
	code, body = call("PUT", "/v1/segments/game/high", otherToken, "text/plain", `app_info "level" >= 3`)
	expect(403, `may not manage app "game"`, code, body)

	// Checks: syntax with line:column, the plan's names and types.
	code, body = call("PUT", "/v1/segments/game/high", gameToken, "text/plain", `app_info "level" >=`)
	expect(422, "1:20", code, body)
	code, body = call("PUT", "/v1/segments/game/high", gameToken, "text/plain", `did event "level_complete"`)
	expect(422, `level_completed`, code, body) // the suggestion
	code, body = call("PUT", "/v1/segments/game/high", gameToken, "text/plain", `app_info "level" >= "five"`)
	expect(422, "number", code, body)
	code, body = call("PUT", "/v1/segments/game/bad name", gameToken, "text/plain", `app_info "level" >= 3`)
	expect(422, `segment name "bad name"`, code, body)
	code, body = call("PUT", "/v1/segments/news/x", adminToken, "text/plain", `app_info "level" >= 3`)
	expect(404, `unknown app "news"`, code, body)

	// Create (text), then the same through the JSON form.
	code, body = call("PUT", "/v1/segments/game/high", gameToken, "text/plain", `app_info "level" >= 3`)
	expect(200, `"name":"high"`, code, body)
	code, body = call("PUT", "/v1/segments/game/buyers", gameToken, "application/json",
		`{"expr": {"did": {"kind": "event", "name": "purchase", "count": {"op": ">=", "n": 2}}}}`)
	expect(200, `"text":"did event \"purchase\" at least 2 times"`, code, body)
	code, body = call("PUT", "/v1/segments/game/both", gameToken, "application/json", `{"text": "segment \"high\" and segment \"buyers\""}`)
	expect(200, `"name":"both"`, code, body)

	// Data: three devices.
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var msgs []bus.Message
	add := func(r tag.Record) {
		r.AppID, r.MessageID = "game", r.DeviceID+"-"+r.Time.Format("150405.000")
		msgs = append(msgs, bus.Message{Key: r.Key(), Value: r.AppendBinary(nil)})
	}
	add(tag.Record{Kind: tag.KindAppInfo, DeviceID: "d1", Time: t0, AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(5)}}})
	add(tag.Record{Kind: tag.KindAppInfo, DeviceID: "d2", Time: t0, AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(1)}}})
	add(tag.Record{Kind: tag.KindAppInfo, DeviceID: "d3", Time: t0, AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(4)}}})
	for i := range 2 {
		add(tag.Record{Kind: tag.KindEvent, DeviceID: "d1", Name: "purchase", Time: t0.Add(time.Duration(i+1) * time.Minute)})
	}
	add(tag.Record{Kind: tag.KindEvent, DeviceID: "d3", Name: "purchase", Time: t0.Add(time.Minute)})
	produce(t, brokers, cfg.Topic, msgs)

	// Live sizes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body = call("GET", "/v1/segments?app=game", gameToken, "", "")
		var resp struct {
			Segments []processor.SegmentInfo `json:"segments"`
		}
		_ = json.Unmarshal([]byte(body), &resp)
		sizes := map[string]int{}
		for _, s := range resp.Segments {
			if s.Size != nil {
				sizes[s.Name] = *s.Size
			}
		}
		if code == 200 && sizes["high"] == 2 && sizes["buyers"] == 1 && sizes["both"] == 1 {
			if len(resp.Segments[0].Partitions) != 2 {
				t.Fatalf("partitions listed: %v", resp.Segments[0].Partitions)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sizes %v after 30 s: %s", sizes, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body = call("GET", "/v1/segments/game/high/members", gameToken, "", "")
	if code != 200 || body != "d1\nd3\n" && body != "d3\nd1\n" {
		t.Fatalf("members: %d %q", code, body)
	}
	code, body = call("GET", "/v1/segments/game/both/explain?device=d3", gameToken, "", "")
	expect(200, `"member":false`, code, body)
	if !strings.Contains(body, `{"clause":"segment \"buyers\"","detail":"not a member","value":false}`) {
		t.Fatalf("explain lacks the failing clause: %s", body)
	}
	code, body = call("GET", "/v1/segments/game/both/explain", gameToken, "", "")
	expect(400, "?device=", code, body)
	code, body = call("GET", "/v1/segments/game/both/explain?device=nobody", gameToken, "", "")
	expect(404, "has sent nothing", code, body)

	// Update: the members change at once, from the state already held.
	code, body = call("PUT", "/v1/segments/game/high", gameToken, "text/plain", `app_info "level" >= 5`)
	expect(200, `"size":1`, code, body)

	// Delete: refused while referenced, then accepted.
	code, body = call("DELETE", "/v1/segments/game/high", gameToken, "", "")
	expect(409, `"both" refers to "high"`, code, body)
	code, body = call("DELETE", "/v1/segments/game/both", gameToken, "", "")
	expect(200, `"deleted":true`, code, body)
	code, body = call("GET", "/v1/segments/game/both", gameToken, "", "")
	expect(404, "has no segment", code, body)
}

// instance is one processor with its API, as `engage process` runs it.
type instance struct {
	proc   *processor.Processor
	srv    *httptest.Server
	cancel context.CancelFunc
	done   chan error
}

// The tokens and the cluster secret of the tests.
const (
	gameToken     = "game-token-0123456789"
	otherToken    = "other-token-0123456789"
	adminToken    = "admin-token-0123456789"
	clusterSecret = "cluster-secret-of-the-tests-0123456789"
)

func mustTokens(t *testing.T, s string) *apiauth.Tokens {
	t.Helper()
	toks, err := apiauth.ParseTokens("-api.tokens", s)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

func mustCluster(t *testing.T) *apiauth.Cluster {
	t.Helper()
	cl, err := apiauth.NewCluster("-api.cluster-secret", clusterSecret)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func startInstance(t *testing.T, cfg processor.Config, prod *kafkabus.Producer, tokens string) *instance {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	cfg.Advertise = "http://" + srv.Listener.Addr().String()
	store := processor.NewStore()
	// Warnings and errors (a fill that cannot read its history) show in
	// the test's output.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	proc, err := processor.New(cfg, store, prod, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	api := &processor.API{Proc: proc, Store: store, Config: prod, Topic: cfg.ConfigTopic, Tokens: mustTokens(t, tokens), Cluster: mustCluster(t)}
	srv.Config.Handler = api.Handler()
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{proc: proc, srv: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- proc.Run(ctx) }()
	return in
}

func (in *instance) stop(t *testing.T) {
	t.Helper()
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.cancel = nil
	if err := <-in.done; err != nil {
		t.Error(err)
	}
	in.srv.Close()
}

func getJSON(t *testing.T, url, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v: %s", url, err, b)
		}
	}
	return resp.StatusCode
}

// Two instances share the partitions: each one's API answers for all of
// them (sizes, members, explain of a device the other owns), and after one
// stops the other answers alone, with the same figures.
func TestSegmentsAPIAcrossInstances(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	cfg := topics(t, brokers, 4)
	cfg.FlushInterval = 20 * time.Millisecond
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, cfg.ChangesTopic), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	tokens := gameToken + ":game " + otherToken + ":news"
	a := startInstance(t, cfg, prod, tokens)
	defer a.stop(t)
	b := startInstance(t, cfg, prod, tokens)
	defer b.stop(t)

	put, _ := http.NewRequest("PUT", a.srv.URL+"/v1/segments/game/high", strings.NewReader(`app_info "level" >= 5`))
	put.Header.Set("Authorization", "Bearer "+gameToken)
	if resp, err := http.DefaultClient.Do(put); err != nil || resp.StatusCode != 200 {
		t.Fatalf("put: %v %v", resp, err)
	}

	// 400 devices, levels 0..9: those at 5 and over are members.
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var msgs []bus.Message
	want := map[string]bool{}
	for i := range 400 {
		r := tag.Record{Kind: tag.KindAppInfo, AppID: "game", DeviceID: fmt.Sprintf("dev-%03d", i), Time: t0.Add(time.Duration(i) * time.Second),
			AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(float64(i % 10))}}}
		r.MessageID = r.DeviceID + "-1"
		msgs = append(msgs, bus.Message{Key: r.Key(), Value: r.AppendBinary(nil)})
		if i%10 >= 5 {
			want[r.DeviceID] = true
		}
	}
	produce(t, brokers, cfg.Topic, msgs)

	type listing struct {
		Segments []processor.SegmentInfo `json:"segments"`
	}
	// Both instances own partitions, and each answers for all four.
	settle := func(ins ...*instance) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for {
			ok := true
			var last listing
			for _, in := range ins {
				var l listing
				if getJSON(t, in.srv.URL+"/v1/segments?app=game", gameToken, &l) != 200 || len(l.Segments) != 1 {
					ok = false
					break
				}
				s := l.Segments[0]
				if s.Size == nil || *s.Size != len(want) || len(s.Partitions) != 4 || len(s.MissingPartitions) != 0 {
					ok = false
				}
				last = l
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 3 minutes: %+v", last)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for !(len(ownedBy(t, a)) > 0 && len(ownedBy(t, b)) > 0) {
		if time.Now().After(deadline) {
			t.Fatal("the two instances do not share the partitions after 3 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	settle(a, b)

	// Members through either instance: all of them, each once.
	for _, in := range []*instance{a, b} {
		req, _ := http.NewRequest("GET", in.srv.URL+"/v1/segments/game/high/members", nil)
		req.Header.Set("Authorization", "Bearer "+gameToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := strings.Fields(string(body))
		seen := map[string]bool{}
		for _, id := range got {
			if !want[id] || seen[id] {
				t.Fatalf("members: %q unexpected or repeated", id)
			}
			seen[id] = true
		}
		if len(seen) != len(want) || resp.Header.Get("Engage-Partitions") != "0,1,2,3" || resp.Header.Get("Engage-Missing-Partitions") != "" {
			t.Fatalf("members: %d of %d, partitions %q, missing %q", len(seen), len(want), resp.Header.Get("Engage-Partitions"), resp.Header.Get("Engage-Missing-Partitions"))
		}
	}

	// Explain, asked of the instance that does not own the device.
	aOwns := ownedBy(t, a)
	for i := range 20 {
		dev := fmt.Sprintf("dev-%03d", i)
		p := kafkabus.KeyPartition([]byte("game/"+dev), 4)
		asked := a
		if aOwns[p] {
			asked = b
		}
		var x struct {
			Member bool   `json:"member"`
			Device string `json:"device_id"`
		}
		if code := getJSON(t, asked.srv.URL+"/v1/segments/game/high/explain?device="+dev, gameToken, &x); code != 200 || x.Member != want[dev] || x.Device != dev {
			t.Fatalf("explain %s (partition %d) asked of the other instance: %d %+v", dev, p, code, x)
		}
	}
	// The calls between instances refuse a user's token, and a token is
	// checked by the instance that answers: it is not forwarded.
	for _, tok := range []string{gameToken, otherToken} {
		if code := getJSON(t, a.srv.URL+"/v1/local/statuses?apps=game", tok, nil); code != 403 {
			t.Fatalf("statuses with a user's token: %d", code)
		}
	}
	if code := getJSON(t, a.srv.URL+"/v1/segments?app=game", otherToken, nil); code != 403 {
		t.Fatalf("sizes with a token of another app: %d", code)
	}

	// Someone who may write the configuration topic announces an instance
	// of the group, at an address they control, as the owner of b's
	// partitions: it receives no user token, and its answers are refused.
	var evilMu sync.Mutex
	var evilAuth []string
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evilMu.Lock()
		evilAuth = append(evilAuth, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization"))
		evilMu.Unlock()
		w.Header().Set("Engage-Partitions", "0,1,2,3")
		io.WriteString(w, `{"instance":"evil","partitions":{"0":[{"app":"game","segment":"high","size":1000000,"complete":true}]}}`)
	}))
	defer evil.Close()
	// Once the partitions have settled between a and b (as announced),
	// the rogue claims b's.
	var bOwns map[int]bool
	var bParts []int
	deadline = time.Now().Add(time.Minute)
	for {
		aOwns, bOwns = ownedBy(t, a), ownedBy(t, b)
		owners := a.proc.Owners()
		bParts = nil
		ok := len(aOwns)+len(bOwns) == 4
		for p := range 4 {
			switch {
			case aOwns[p] && !bOwns[p] && owners[p].ID == a.proc.ID():
			case bOwns[p] && !aOwns[p] && owners[p].ID == b.proc.ID():
				bParts = append(bParts, p)
			default:
				ok = false
			}
		}
		if ok && len(bParts) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the partitions do not settle between the two instances: a %v, b %v", aOwns, bOwns)
		}
		time.Sleep(100 * time.Millisecond)
	}
	v, _ := json.Marshal(processor.Instance{ID: "evil", Group: cfg.Group, Addr: evil.URL, Partitions: bParts})
	produce(t, brokers, cfg.ConfigTopic, []bus.Message{{Key: []byte(processor.InstanceKeyPrefix + "evil"), Value: v}})
	deadline = time.Now().Add(time.Minute)
	for a.proc.Owners()[bParts[0]].ID != "evil" {
		if time.Now().After(deadline) {
			t.Fatal("the announcement is not read after a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The sizes: the rogue's answer is refused (never counted), its
	// partitions are missing and the error names it. (Polled: a
	// rebalance may still move partitions meanwhile.)
	deadline = time.Now().Add(time.Minute)
	for {
		var l listing
		code := getJSON(t, a.srv.URL+"/v1/segments?app=game", gameToken, &l)
		if code != 200 || len(l.Segments) != 1 {
			t.Fatalf("sizes with a rogue instance: %d %+v", code, l)
		}
		s := l.Segments[0]
		if s.Size != nil && *s.Size >= 1000000 {
			t.Fatalf("the rogue's size was counted: %+v", s)
		}
		if len(s.MissingPartitions) > 0 && len(s.PeerErrors) == 1 && strings.Contains(s.PeerErrors[0], "instance evil at "+evil.URL) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with a rogue instance announced for %v: %+v", bParts, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// An explanation of a device on a partition the rogue claims: 502.
	devOnB := ""
	for i := 0; devOnB == ""; i++ {
		if dev := fmt.Sprintf("dev-%03d", i); bOwns[kafkabus.KeyPartition([]byte("game/"+dev), 4)] {
			devOnB = dev
		}
	}
	if code := getJSON(t, a.srv.URL+"/v1/segments/game/high/explain?device="+devOnB, gameToken, nil); code != http.StatusBadGateway {
		t.Fatalf("explain of %s through the rogue instance: %d", devOnB, code)
	}
	// Members: none of the rogue's, its partitions missing, its error said.
	req, _ := http.NewRequest("GET", a.srv.URL+"/v1/segments/game/high/members", nil)
	req.Header.Set("Authorization", "Bearer "+gameToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Engage-Missing-Partitions") == "" || !strings.Contains(resp.Header.Get("Engage-Peer-Errors"), "instance evil") {
		t.Fatalf("members with a rogue instance: missing %q, errors %q", resp.Header.Get("Engage-Missing-Partitions"), resp.Header.Get("Engage-Peer-Errors"))
	}
	for _, id := range strings.Fields(string(body)) {
		if bOwns[kafkabus.KeyPartition([]byte("game/"+id), 4)] {
			t.Fatalf("members: %s, on a partition the rogue claims", id)
		}
	}
	evilMu.Lock()
	if len(evilAuth) < 3 {
		t.Fatalf("the rogue instance was asked %d times: %v", len(evilAuth), evilAuth)
	}
	for _, got := range evilAuth {
		if strings.Contains(got, gameToken) || strings.Contains(strings.ToLower(got), "bearer") {
			t.Errorf("the rogue instance received a user's token: %s", got)
		}
	}
	evilMu.Unlock()
	produce(t, brokers, cfg.ConfigTopic, []bus.Message{{Key: []byte(processor.InstanceKeyPrefix + "evil")}})

	// One stops: the other takes its partitions and answers alone.
	b.stop(t)
	settle(a)
	if got := ownedBy(t, a); len(got) != 4 {
		t.Fatalf("after the other stopped, owns %v", got)
	}
}

// ownedBy returns the partitions an instance answers for alone.
func ownedBy(t *testing.T, in *instance) map[int]bool {
	t.Helper()
	var st struct {
		Partitions map[int]json.RawMessage `json:"partitions"`
	}
	req, _ := http.NewRequest("GET", in.srv.URL+"/v1/local/statuses?apps=game", nil)
	mustCluster(t).Sign(req) // as another instance asks
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("statuses: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for p := range st.Partitions {
		out[p] = true
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
