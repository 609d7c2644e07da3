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

// Segment's own Node SDK, pointed at the collector, sends identify, screen,
// page and track calls that land in Kafka mapped as documented.
func TestSegmentNodeSDK(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: `make test` installs it (deploy/deps.sh): %v", err)
	}
	dir, err := filepath.Abs("../../examples/segment-node")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules/@segment/analytics-node")); err != nil {
		t.Fatalf("@segment/analytics-node is not installed: run deploy/deps.sh (make test does): %v", err)
	}
	plan := `
app: news
mode: warn
app_info: {logged_in: bool, plan: string, age: number, subscription_expiry: date}
`
	kc := startKafkaCollector(t, brokers, plan, collector.DefaultConfig())
	cmd := exec.Command(node, "send.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ENGAGE_HOST="+kc.url, "ENGAGE_WRITE_KEY="+key, "ENGAGE_DEVICE_ID=dev-0001", "ENGAGE_USER_ID=user-42", "ENGAGE_MAX_RETRIES=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("send.mjs: %v\nstdout: %s\nstderr: %s", err, out, stderrOf(err))
	}
	var summary struct {
		OK         bool     `json:"ok"`
		Sent       int      `json:"sent"`
		MessageIDs []string `json:"messageIds"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &summary); err != nil || !summary.OK || summary.Sent != 6 {
		t.Fatalf("summary %s: %v", out, err)
	}
	got := kc.read(t, 7)
	byID := map[string]tag.Record{}
	var device *tag.Record
	var appInfo *tag.Record
	for i := range got {
		r := got[i].rec
		if r.AppID != "news" || r.DeviceID != "dev-0001" || got[i].key != "news/dev-0001" {
			t.Fatalf("record of %s/%s under key %s", r.AppID, r.DeviceID, got[i].key)
		}
		switch r.Kind {
		case tag.KindDevice:
			device = &got[i].rec
		case tag.KindAppInfo:
			appInfo = &got[i].rec
		default:
			byID[r.MessageID] = r
		}
	}
	if len(got) != 7 {
		t.Fatalf("%d records in Kafka, want 7 (6 calls + 1 device record): %+v", len(got), got)
	}
	if device == nil || appInfo == nil {
		t.Fatalf("missing device or app-info record: %+v", got)
	}
	wantDevice := tag.DeviceInfo{Platform: "ios", AppVersion: "2.3.1", AppBuild: "231", OSVersion: "17.2", Model: "iPhone15,2",
		Locale: "fr-FR", TimeZone: "Europe/Paris", PushToken: "a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90", PushProvider: tag.ProviderAPNs}
	if *device.Device != wantDevice {
		t.Errorf("device info\n got %+v\nwant %+v", *device.Device, wantDevice)
	}
	expiry := time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)
	wantInfo := []tag.Extra{{Key: "age", Value: tag.Number(31)}, {Key: "logged_in", Value: tag.Bool(true)}, {Key: "plan", Value: tag.String("premium")}, {Key: "subscription_expiry", Value: tag.Date(expiry)}}
	if !reflect.DeepEqual(appInfo.AppInfo, wantInfo) || appInfo.UserID != "user-42" {
		t.Errorf("app-info\n got %+v (user %q)\nwant %+v", appInfo.AppInfo, appInfo.UserID, wantInfo)
	}
	type want struct {
		kind   tag.Kind
		name   string
		extras []tag.Extra
	}
	wants := []want{
		{tag.KindAppInfo, "", nil}, // identify: checked above
		{tag.KindActivityStart, "login", []tag.Extra{{Key: "section", Value: tag.String("auth")}}},
		{tag.KindEvent, "article_read", []tag.Extra{{Key: "category", Value: tag.String("sport")}, {Key: "premium", Value: tag.Bool(false)}, {Key: "words", Value: tag.Number(640)}}},
		{tag.KindEvent, "logged_in", nil},
		{tag.KindActivityStart, "home", []tag.Extra{{Key: "path", Value: tag.String("/home")}}},
		{tag.KindEvent, "app_opened", []tag.Extra{{Key: "from_background", Value: tag.Bool(true)}}},
	}
	if appInfo.MessageID != summary.MessageIDs[0] {
		t.Errorf("identify message id %q became %q", summary.MessageIDs[0], appInfo.MessageID)
	}
	for i, w := range wants[1:] {
		id := summary.MessageIDs[i+1]
		r, ok := byID[id]
		if !ok {
			t.Errorf("call %d (%s %s, id %s) not in Kafka", i+1, w.kind, w.name, id)
			continue
		}
		if r.Kind != w.kind || r.Name != w.name || !reflect.DeepEqual(r.Extras, w.extras) {
			t.Errorf("call %d: got %s %q %+v, want %s %q %+v", i+1, r.Kind, r.Name, r.Extras, w.kind, w.name, w.extras)
		}
		if time.Since(r.Time) > time.Minute || time.Until(r.Time) > time.Minute {
			t.Errorf("call %d: event time %s is not now", i+1, r.Time)
		}
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
