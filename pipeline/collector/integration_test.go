package collector_test

// Integration tests against the real Kafka broker that `make test` starts.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
)

// kafkaCollector is a collector writing to a fresh topic of a real broker.
type kafkaCollector struct {
	url     string
	brokers []string
	topic   string
}

func startKafkaCollector(t *testing.T, brokers []string, plan string, cfg collector.Config) kafkaCollector {
	t.Helper()
	topic := kafkatest.NewTopic(t, brokers, 8)
	pcfg := kafkabus.DefaultProducerConfig(brokers, topic)
	pcfg.MaxAttempts = 2
	pcfg.WriteTimeout = 2 * time.Second
	prod, err := kafkabus.NewProducer(pcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	app := &collector.App{ID: "news", WriteKeys: []string{key}}
	if plan != "" {
		if app.Plan, err = tagplan.Parse("plan.yaml", []byte(plan)); err != nil {
			t.Fatal(err)
		}
	}
	apps, err := collector.NewApps(app)
	if err != nil {
		t.Fatal(err)
	}
	s, err := collector.New(cfg, apps, prod, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return kafkaCollector{url: srv.URL, brokers: brokers, topic: topic}
}

func (k kafkaCollector) read(t *testing.T, want int) []readBack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgs, err := kafkabus.ReadTopic(ctx, k.brokers, k.topic, want)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]readBack, len(msgs))
	for i, m := range msgs {
		if err := out[i].rec.UnmarshalBinary(m.Value); err != nil {
			t.Fatalf("%d/%d: %v", m.Partition, m.Offset, err)
		}
		out[i].partition, out[i].key = m.Partition, string(m.Key)
	}
	return out
}

type readBack struct {
	rec       tag.Record
	partition int
	key       string
}

func postJSON(url, writeKey string, body []byte) (int, []byte, error) {
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/tags", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(writeKey, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), nil
}

// Records posted over HTTP come out of the topic exactly: same count, same
// content, each device's records in order on one partition.
func TestRealKafkaRecordsComeOutExactly(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	kc := startKafkaCollector(t, brokers, "", collector.DefaultConfig())
	rng := rand.New(rand.NewPCG(1, 2))
	const devices, requests, perRequest = 40, 60, 50
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	want := map[string]tag.Record{}
	perDevice := map[string][]string{}
	var bodies [][]byte
	seq := 0
	for r := 0; r < requests; r++ {
		var recs []map[string]any
		for i := 0; i < perRequest; i++ {
			d := fmt.Sprintf("dev-%02d", rng.IntN(devices))
			id := fmt.Sprintf("m-%06d", seq)
			when := t0.Add(time.Duration(seq) * time.Millisecond)
			seq++
			rec := map[string]any{"type": "event", "deviceId": d, "messageId": id, "name": []string{"article_read", "shared", "level_up"}[rng.IntN(3)],
				"time": when.Format(time.RFC3339Nano), "extras": map[string]any{"n": rng.IntN(1000), "topic": "t" + fmt.Sprint(rng.IntN(5)), "flag": rng.IntN(2) == 1}}
			recs = append(recs, rec)
			perDevice[d] = append(perDevice[d], id)
			raw, _ := json.Marshal(rec)
			decoded, err := tag.DecodeJSON(raw, tag.Envelope{AppID: "news"})
			if err != nil {
				t.Fatal(err)
			}
			want[id] = decoded
		}
		b, _ := json.Marshal(recs)
		bodies = append(bodies, b)
	}
	// A device's records are in order across requests only if the requests
	// are: send them one after the other.
	for i, b := range bodies {
		status, body, err := postJSON(kc.url, key, b)
		if err != nil || status != 200 {
			t.Fatalf("request %d: %d %s %v", i, status, body, err)
		}
	}
	got := kc.read(t, len(want))
	if len(got) != len(want) {
		t.Fatalf("read %d records, posted %d", len(got), len(want))
	}
	partOf := map[string]int{}
	order := map[string][]string{}
	for _, g := range got {
		w, ok := want[g.rec.MessageID]
		if !ok {
			t.Fatalf("unexpected record %+v", g.rec)
		}
		delete(want, g.rec.MessageID) // a duplicate would not find it again
		g.rec.ReceivedAt = time.Time{}
		if !reflect.DeepEqual(g.rec, w) {
			t.Fatalf("content differs\n got %+v\nwant %+v", g.rec, w)
		}
		if p, seen := partOf[g.key]; seen && p != g.partition {
			t.Fatalf("device %s on partitions %d and %d", g.key, p, g.partition)
		}
		partOf[g.key] = g.partition
		order[g.rec.DeviceID] = append(order[g.rec.DeviceID], g.rec.MessageID)
	}
	for d, ids := range perDevice {
		if !reflect.DeepEqual(order[d], ids) {
			t.Fatalf("device %s: records out of order", d)
		}
	}
}

// The broker stops in the middle of a stream: the collector answers 503
// (never 2xx for what Kafka did not take), and once the broker is back every
// acknowledged record is in the topic. The test runs its own broker, on its
// own ports, so that stopping it disturbs no other test.
func TestRealKafkaBrokerStoppedMidStream(t *testing.T) {
	broker := servicetest.Start(t, "kafka")
	brokers := []string{broker.Addr()}
	cfg := collector.DefaultConfig()
	cfg.ProduceTimeout = 3 * time.Second
	kc := startKafkaCollector(t, brokers, "", cfg)

	var mu sync.Mutex
	acked := map[string]bool{}
	statuses := map[int]int{}
	phase := "before"
	statusesByPhase := map[string]map[int]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 3; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var recs []string
				var ids []string
				for j := 0; j < 20; j++ {
					id := fmt.Sprintf("c%d-r%05d-%02d", c, i, j)
					ids = append(ids, id)
					recs = append(recs, fmt.Sprintf(`{"type":"event","deviceId":"dev-%d-%d","messageId":%q,"name":"tick"}`, c, j%5, id))
				}
				status, _, err := postJSON(kc.url, key, []byte("["+strings.Join(recs, ",")+"]"))
				if err != nil {
					status = -1
				}
				mu.Lock()
				statuses[status]++
				if statusesByPhase[phase] == nil {
					statusesByPhase[phase] = map[int]int{}
				}
				statusesByPhase[phase][status]++
				if status == 200 {
					for _, id := range ids {
						acked[id] = true
					}
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}(c)
	}
	setPhase := func(p string) { mu.Lock(); phase = p; mu.Unlock() }
	time.Sleep(time.Second)
	setPhase("stopping")
	broker.Run("down", "kafka")
	setPhase("down")
	time.Sleep(4 * time.Second)
	setPhase("starting")
	broker.Run("up", "kafka")
	setPhase("after")
	// Go on until requests succeed again (bounded).
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		ok := statusesByPhase["after"][200] >= 10
		mu.Unlock()
		if ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("statuses by phase: %v", statusesByPhase)
	if statusesByPhase["down"][200] != 0 {
		t.Fatalf("%d requests got 200 while the broker was down", statusesByPhase["down"][200])
	}
	if statusesByPhase["down"][503] == 0 {
		t.Fatal("no 503 while the broker was down")
	}
	if statusesByPhase["after"][200] < 10 {
		t.Fatalf("the collector did not recover after the broker returned: %v", statusesByPhase["after"])
	}
	for s := range statuses {
		if s != 200 && s != 503 {
			t.Fatalf("unexpected status %d (%d times)", s, statuses[s])
		}
	}
	got := kc.read(t, len(acked))
	found := map[string]bool{}
	for _, g := range got {
		found[g.rec.MessageID] = true
	}
	var missing []string
	for id := range acked {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged records are not in the topic, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	t.Logf("%d records acknowledged, all in the topic (%d records there, including some from requests answered 503)", len(acked), len(got))
}

// runHarness runs the send.mjs of an SDK harness under examples/ with the
// given environment and returns its stdout, a one-line JSON summary.
func runHarness(t *testing.T, harness, module string, env ...string) []byte {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: `make test` installs it (deploy/deps.sh): %v", err)
	}
	dir, err := filepath.Abs(filepath.Join("../../examples", harness))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", module)); err != nil {
		t.Fatalf("%s is not installed: run deploy/deps.sh (make test does): %v", module, err)
	}
	cmd := exec.Command(node, "send.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s/send.mjs: %v\nstdout: %s\nstderr: %s", harness, err, out, stderrOf(err))
	}
	return out
}

// Segment's own Node SDK, pointed at the collector, sends identify, screen,
// page and track calls, and the lifecycle events of Segment's mobile spec
// as its iOS SDK sends them, that land in Kafka mapped as documented: each
// Application Opened starts a session named after its message,
// Application Backgrounded ends the device's session, Installed and Updated
// give device records.
func TestSegmentNodeSDK(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	plan := `
app: news
mode: warn
app_info: {logged_in: bool, plan: string, age: number, subscription_expiry: date}
`
	kc := startKafkaCollector(t, brokers, plan, collector.DefaultConfig())
	out := runHarness(t, "segment-node", "@segment/analytics-node",
		"ENGAGE_HOST="+kc.url, "ENGAGE_WRITE_KEY="+key, "ENGAGE_DEVICE_ID=dev-0001", "ENGAGE_USER_ID=user-42", "ENGAGE_MAX_RETRIES=0")
	var summary struct {
		OK         bool     `json:"ok"`
		Sent       int      `json:"sent"`
		MessageIDs []string `json:"messageIds"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &summary); err != nil || !summary.OK || summary.Sent != 11 {
		t.Fatalf("summary %s: %v", out, err)
	}
	ids := summary.MessageIDs
	// 11 calls: 14 records and 3 device records (the first message,
	// identify, Application Updated with the new version).
	got := kc.read(t, 17)
	var devices []tag.DeviceInfo
	var recs []tag.Record // in the order of the device's partition
	for i := range got {
		r := got[i].rec
		if r.AppID != "news" || r.DeviceID != "dev-0001" || got[i].key != "news/dev-0001" {
			t.Fatalf("record of %s/%s under key %s", r.AppID, r.DeviceID, got[i].key)
		}
		if r.Kind == tag.KindDevice {
			devices = append(devices, *r.Device)
			continue
		}
		recs = append(recs, r)
	}
	if len(got) != 17 || len(devices) != 3 {
		t.Fatalf("%d records in Kafka (%d device records), want 17 (3): %+v", len(got), len(devices), got)
	}
	wantDevice := tag.DeviceInfo{Platform: "ios", AppVersion: "2.3.1", AppBuild: "231", OSVersion: "17.2", Model: "iPhone15,2",
		Locale: "fr-FR", TimeZone: "Europe/Paris", PushToken: "a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90", PushProvider: tag.ProviderAPNs}
	updated := wantDevice
	updated.AppVersion, updated.AppBuild = "2.4.0", "240"
	if want := []tag.DeviceInfo{wantDevice, wantDevice, updated}; !reflect.DeepEqual(devices, want) {
		t.Errorf("device info\n got %+v\nwant %+v", devices, want)
	}
	expiry := time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)
	str, num := tag.String, tag.Number
	type want struct {
		kind    tag.Kind
		name    string
		id      string // the call's message id; "" for the implied session records
		session string
		extras  []tag.Extra
	}
	wants := []want{
		{tag.KindEvent, "Application Installed", ids[0], "", []tag.Extra{{Key: "build", Value: str("231")}, {Key: "version", Value: str("2.3.1")}}},
		{tag.KindSessionStart, "", "", ids[1], nil},
		{tag.KindEvent, "Application Opened", ids[1], ids[1], []tag.Extra{{Key: "build", Value: str("231")}, {Key: "from_background", Value: tag.Bool(false)}, {Key: "version", Value: str("2.3.1")}}},
		{tag.KindAppInfo, "", ids[2], "", nil}, // checked below
		{tag.KindActivityStart, "login", ids[3], "", []tag.Extra{{Key: "section", Value: str("auth")}}},
		{tag.KindEvent, "article_read", ids[4], "", []tag.Extra{{Key: "category", Value: str("sport")}, {Key: "premium", Value: tag.Bool(false)}, {Key: "words", Value: num(640)}}},
		{tag.KindEvent, "logged_in", ids[5], "", nil},
		{tag.KindActivityStart, "home", ids[6], "", []tag.Extra{{Key: "path", Value: str("/home")}}},
		{tag.KindEvent, "app_opened", ids[7], "", []tag.Extra{{Key: "from_background", Value: tag.Bool(true)}}}, // not the spec's name: no session
		{tag.KindEvent, "Application Backgrounded", ids[8], "", nil},
		{tag.KindSessionEnd, "", "", "", nil},
		{tag.KindEvent, "Application Updated", ids[9], "", []tag.Extra{{Key: "build", Value: str("240")}, {Key: "previous_build", Value: str("231")}, {Key: "previous_version", Value: str("2.3.1")}, {Key: "version", Value: str("2.4.0")}}},
		{tag.KindSessionStart, "", "", ids[10], nil},
		{tag.KindEvent, "Application Opened", ids[10], ids[10], []tag.Extra{{Key: "build", Value: str("240")}, {Key: "from_background", Value: tag.Bool(false)}, {Key: "version", Value: str("2.4.0")}}},
	}
	if len(recs) != len(wants) {
		t.Fatalf("%d records besides device records, want %d", len(recs), len(wants))
	}
	seen := map[string]bool{}
	for i, w := range wants {
		r := recs[i]
		if seen[r.MessageID] {
			t.Errorf("record %d: message id %s used twice", i, r.MessageID)
		}
		seen[r.MessageID] = true
		if r.Kind != w.kind || r.Name != w.name || r.SessionID != w.session || w.id != "" && r.MessageID != w.id ||
			w.kind != tag.KindAppInfo && !reflect.DeepEqual(r.Extras, w.extras) {
			t.Errorf("record %d: got %s %q session %q id %s %+v\nwant %s %q session %q id %s %+v", i, r.Kind, r.Name, r.SessionID, r.MessageID, r.Extras, w.kind, w.name, w.session, w.id, w.extras)
		}
		if time.Since(r.Time) > time.Minute || time.Until(r.Time) > time.Minute {
			t.Errorf("record %d: event time %s is not now", i, r.Time)
		}
	}
	// The implied records have the time of their message.
	if !recs[1].Time.Equal(recs[2].Time) || !recs[10].Time.Equal(recs[9].Time) {
		t.Errorf("session records at %s and %s, their events at %s and %s", recs[1].Time, recs[10].Time, recs[2].Time, recs[9].Time)
	}
	appInfo := recs[3]
	wantInfo := []tag.Extra{{Key: "age", Value: num(31)}, {Key: "logged_in", Value: tag.Bool(true)}, {Key: "plan", Value: str("premium")}, {Key: "subscription_expiry", Value: tag.Date(expiry)}}
	if !reflect.DeepEqual(appInfo.AppInfo, wantInfo) || appInfo.UserID != "user-42" {
		t.Errorf("app-info\n got %+v (user %q)\nwant %+v", appInfo.AppInfo, appInfo.UserID, wantInfo)
	}
	if recs[12].AppVersion != "2.4.0" || recs[0].AppVersion != "2.3.1" {
		t.Errorf("app versions %q, %q", recs[0].AppVersion, recs[12].AppVersion)
	}
}

// RudderStack's own Node SDK, pointed at the collector, sends its gzipped
// batches labelled application/x-www-form-urlencoded; its calls land in
// Kafka mapped as documented, in the session that context.sessionId names
// (started by context.sessionStart, ended by Application Backgrounded, not
// restarted by an Application Opened within it).
func TestRudderStackNodeSDK(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	kc := startKafkaCollector(t, brokers, "", collector.DefaultConfig())
	const sid = "1764547200000"
	out := runHarness(t, "rudderstack-node", "@rudderstack/rudder-sdk-node",
		"ENGAGE_HOST="+kc.url, "ENGAGE_WRITE_KEY="+key, "ENGAGE_DEVICE_ID=dev-r001", "ENGAGE_USER_ID=user-7", "ENGAGE_SESSION_ID="+sid)
	var summary struct {
		OK     bool     `json:"ok"`
		Sent   int      `json:"sent"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &summary); err != nil || !summary.OK || summary.Sent != 10 {
		t.Fatalf("summary %s: %v", out, err)
	}
	// 10 calls in two requests: 12 records and 3 device records (the first
	// message of each request, and identify).
	got := kc.read(t, 15)
	var devices []tag.DeviceInfo
	var recs []tag.Record
	for i := range got {
		r := got[i].rec
		if r.AppID != "news" || r.DeviceID != "dev-r001" || got[i].key != "news/dev-r001" {
			t.Fatalf("record of %s/%s under key %s", r.AppID, r.DeviceID, got[i].key)
		}
		if r.SessionID != sid {
			t.Errorf("%s %q in session %q, want %s", r.Kind, r.Name, r.SessionID, sid)
		}
		if time.Since(r.Time) > time.Minute || time.Until(r.Time) > time.Minute {
			t.Errorf("%s %q: event time %s is not now", r.Kind, r.Name, r.Time)
		}
		if r.Kind == tag.KindDevice {
			devices = append(devices, *r.Device)
			continue
		}
		recs = append(recs, r)
	}
	if len(got) != 15 || len(devices) != 3 {
		t.Fatalf("%d records in Kafka (%d device records), want 15 (3): %+v", len(got), len(devices), got)
	}
	wantDevice := tag.DeviceInfo{Platform: "android", AppVersion: "4.2.0", AppBuild: "420", OSVersion: "14", Model: "Pixel 8", Manufacturer: "Google",
		Locale: "de-DE", TimeZone: "Europe/Berlin", PushToken: "fcm-token-0001:APA91bHx", PushProvider: tag.ProviderFCM}
	for _, d := range devices {
		if d != wantDevice {
			t.Errorf("device info\n got %+v\nwant %+v", d, wantDevice)
		}
	}
	str := tag.String
	type want struct {
		kind   tag.Kind
		name   string
		user   string
		extras []tag.Extra
	}
	wants := []want{
		{tag.KindSessionStart, "", "", nil},
		{tag.KindEvent, "Application Installed", "", []tag.Extra{{Key: "build", Value: str("420")}, {Key: "version", Value: str("4.2.0")}}},
		{tag.KindEvent, "Application Opened", "", []tag.Extra{{Key: "build", Value: str("420")}, {Key: "from_background", Value: tag.Bool(false)}, {Key: "version", Value: str("4.2.0")}}},
		{tag.KindAppInfo, "", "user-7", nil},
		{tag.KindActivityStart, "feed", "user-7", []tag.Extra{{Key: "tab", Value: str("top")}}},
		{tag.KindActivityStart, "home", "user-7", []tag.Extra{{Key: "path", Value: str("/home")}}},
		{tag.KindEvent, "article_read", "user-7", []tag.Extra{{Key: "category", Value: str("sport")}, {Key: "words", Value: tag.Number(640)}}},
		{tag.KindAppInfo, "", "user-7", nil},
		{tag.KindEvent, "$alias", "user-7", []tag.Extra{{Key: "previous_id", Value: str("dev-r001")}, {Key: "user_id", Value: str("user-7")}}},
		{tag.KindEvent, "Application Backgrounded", "user-7", nil},
		{tag.KindSessionEnd, "", "user-7", nil},
		{tag.KindEvent, "Application Opened", "user-7", []tag.Extra{{Key: "from_background", Value: tag.Bool(true)}}},
	}
	if len(recs) != len(wants) {
		t.Fatalf("%d records besides device records, want %d", len(recs), len(wants))
	}
	seen := map[string]bool{}
	for i, w := range wants {
		r := recs[i]
		if seen[r.MessageID] || r.MessageID == "" {
			t.Errorf("record %d: message id %q empty or used twice", i, r.MessageID)
		}
		seen[r.MessageID] = true
		if r.Kind != w.kind || r.Name != w.name || r.UserID != w.user || w.kind != tag.KindAppInfo && !reflect.DeepEqual(r.Extras, w.extras) {
			t.Errorf("record %d: got %s %q user %q %+v\nwant %s %q user %q %+v", i, r.Kind, r.Name, r.UserID, r.Extras, w.kind, w.name, w.user, w.extras)
		}
	}
	if want := []tag.Extra{{Key: "logged_in", Value: tag.Bool(false)}, {Key: "plan", Value: str("free")}}; !reflect.DeepEqual(recs[3].AppInfo, want) {
		t.Errorf("identify app-info %+v, want %+v", recs[3].AppInfo, want)
	}
	if want := []tag.Extra{{Key: "group_id", Value: str("acme")}, {Key: "group_name", Value: str("ACME")}}; !reflect.DeepEqual(recs[7].AppInfo, want) {
		t.Errorf("group app-info %+v, want %+v", recs[7].AppInfo, want)
	}
	if !recs[0].Time.Equal(recs[1].Time) || !recs[10].Time.Equal(recs[9].Time) {
		t.Errorf("session records at %s and %s, their events at %s and %s", recs[0].Time, recs[10].Time, recs[1].Time, recs[9].Time)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
