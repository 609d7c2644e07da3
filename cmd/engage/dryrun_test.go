package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/triggers/scheduler"
)

var dryRunSegments = map[string]string{
	"newcomers": `first_session more than 2d ago and first_session within 3d`,
	"stalled":   `app_info "level" unchanged for 2d and last_seen within 1d`,
	"readers":   `did event "article_read" at least 3 times in last 2d`,
	"lapsed":    `last_seen more than 2d ago`,
	"buyers":    `did event "purchase"`,
}

var dryRunCampaigns = map[string]string{
	"welcome": `
app: game
name: welcome
what:
  missing: default
  content:
    en: {title: "Welcome {{app_info.first_name | default \"there\"}}", body: "Day two."}
  default_locale: en
who:
  segments: [newcomers]
  exclude: [buyers]
  control: 10%
  variants: [{name: a, weight: 50%}, {name: b, weight: 50%}]
when:
  on_entry: {at: "10:00"}
limits:
  quiet_hours: {from: "22:00", to: "08:00"}
  once: true
`,
	"stalled": `
app: game
name: stalled
what:
  missing: default
  content:
    en: {title: "Stuck on level {{app_info.level | default \"this\"}}?", body: "Boosters."}
  default_locale: en
who:
  segments: [stalled]
when:
  on_entry: {delay: 30m}
  expiry: 1d
limits:
  quiet_hours: {from: "23:00", to: "09:00", then: drop}
  reentry_after: 3d
  priority: 20
`,
	"lapsed": `
app: game
name: lapsed
what:
  content:
    en: {title: "We miss you", body: "A new season."}
  default_locale: en
who:
  segments: [lapsed]
when:
  once: {at: 2026-11-08T18:00, local_time: true}
`,
	"digest": `
app: game
name: digest
what:
  channel: in_app
  content:
    en: {title: "Today", body: "Three new puzzles.", layout: banner}
  default_locale: en
who:
  segments: [readers]
  sample: 70%
when:
  recurring: {every: day, at: "08:00"}
`,
}

// dryRunRecords are twelve days of a game: devices with time zones and
// names, sessions, levels, reads and purchases, some records late.
func dryRunRecords(devices int) []bus.Message {
	rng := rand.New(rand.NewPCG(31, 32))
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	zones := []string{"Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", ""}
	var recs []tag.Record
	for d := range devices {
		dev := fmt.Sprintf("p%04d", d)
		start := t0.Add(time.Duration(rng.IntN(6*24*3600)) * time.Second)
		di := &tag.DeviceInfo{Platform: "android", TimeZone: zones[rng.IntN(len(zones))], Locale: "en-GB"}
		switch rng.IntN(5) { // push tokens: iOS (production, sandbox), Android, none
		case 0, 1:
			di.Platform, di.PushToken, di.PushProvider = "ios", fmt.Sprintf("%064x", d+1), tag.ProviderAPNs
		case 2:
			di.Platform, di.PushToken, di.PushProvider = "ios", fmt.Sprintf("%064x", d+1), tag.ProviderAPNsSandbox
		case 3:
			di.PushToken, di.PushProvider = fmt.Sprintf("fcm-token-%04d", d), tag.ProviderFCM
		}
		recs = append(recs, tag.Record{Kind: tag.KindDevice, AppID: "game", DeviceID: dev, Time: start, Device: di})
		if rng.IntN(2) == 0 {
			recs = append(recs, tag.Record{Kind: tag.KindAppInfo, AppID: "game", DeviceID: dev, Time: start, AppInfo: []tag.Extra{{Key: "first_name", Value: tag.String("Kim")}}})
		}
		days := 1 + rng.IntN(8)
		for day := range days {
			at := start.Add(time.Duration(day)*24*time.Hour + time.Duration(rng.IntN(3600*12))*time.Second)
			recs = append(recs, tag.Record{Kind: tag.KindSessionStart, AppID: "game", DeviceID: dev, Time: at, SessionID: fmt.Sprintf("%s-%d", dev, day)})
			for range rng.IntN(5) {
				at = at.Add(time.Duration(rng.IntN(600)) * time.Second)
				recs = append(recs, tag.Record{Kind: tag.KindEvent, AppID: "game", DeviceID: dev, Time: at, Name: "article_read"})
			}
			if day < 2 || rng.IntN(3) == 0 {
				recs = append(recs, tag.Record{Kind: tag.KindAppInfo, AppID: "game", DeviceID: dev, Time: at, AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(float64(min(day, 3)))}}})
			}
			if rng.IntN(15) == 0 {
				recs = append(recs, tag.Record{Kind: tag.KindEvent, AppID: "game", DeviceID: dev, Time: at, Name: "purchase"})
			}
		}
	}
	// Arrival order: by event time, one record in 30 a few hours late.
	arrive := make([]time.Time, len(recs))
	for i := range recs {
		arrive[i] = recs[i].Time
		if rng.IntN(30) == 0 {
			arrive[i] = arrive[i].Add(time.Duration(1+rng.IntN(6)) * time.Hour)
		}
	}
	idx := make([]int, len(recs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return arrive[idx[a]].Before(arrive[idx[b]]) })
	msgs := make([]bus.Message, 0, len(recs))
	for n, i := range idx {
		r := recs[i]
		r.MessageID = fmt.Sprintf("m%06d", n)
		msgs = append(msgs, bus.Message{Key: r.Key(), Value: r.AppendBinary(nil)})
	}
	return msgs
}

// A dry run over the records the live processor and scheduler read (the
// real binaries on the real broker, simulated clock) decides exactly what
// they decided: the same deliveries (id, device, time, variant, message)
// and the same decisions, one for one.
func TestDryRunEqualsLiveScheduler(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	e := newEngage(t)
	id := fmt.Sprintf("dr%d", time.Now().UnixNano()%1e9)
	tags, state, changes, config := id+".tags", id+".state", id+".changes", id+".config"
	sstate, dels, decs := id+".sstate", id+".deliveries", id+".decisions"
	specs := []kafkabus.TopicSpec{{Name: config, Partitions: 1, ReplicationFactor: 1, Compacted: true}}
	for _, n := range []string{tags, changes, dels, decs} {
		specs = append(specs, kafkabus.TopicSpec{Name: n, Partitions: 4, ReplicationFactor: 1})
	}
	for _, n := range []string{state, sstate} {
		specs = append(specs, kafkabus.TopicSpec{Name: n, Partitions: 4, ReplicationFactor: 1, Compacted: true})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := kafkabus.EnsureTopics(ctx, brokers, specs); err != nil {
		t.Fatal(err)
	}
	var cfgMsgs []bus.Message
	var defs []processor.Definition
	for _, n := range sortedKeys(dryRunSegments) {
		defs = append(defs, processor.Definition{App: "game", Name: n, Text: dryRunSegments[n], UpdatedAt: time.Now().UTC()})
	}
	for _, d := range defs {
		if _, err := processor.Validate(d, nil, defs); err != nil {
			t.Fatalf("segment %s: %v", d.Name, err)
		}
		v, _ := json.Marshal(d)
		cfgMsgs = append(cfgMsgs, bus.Message{Key: processor.ConfigKey("game", d.Name), Value: v})
	}
	for _, n := range sortedKeys(dryRunCampaigns) {
		v, _ := json.Marshal(scheduler.Stored{App: "game", Name: n, File: n + ".yaml", Source: dryRunCampaigns[n], UpdatedAt: time.Now().UTC()})
		cfgMsgs = append(cfgMsgs, bus.Message{Key: scheduler.CampaignKey("game", n), Value: v})
	}
	cfgMsgs = append(cfgMsgs, bus.Message{Key: scheduler.CapsKey("game"), Value: []byte(`{"push":{"per_day":1,"per_week":3}}`)})
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, config), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.Produce(ctx, cfgMsgs); err != nil {
		t.Fatal(err)
	}
	input := dryRunRecords(800)
	for i := range input {
		input[i].Topic = tags
	}
	for i := 0; i < len(input); i += 5000 {
		if err := prod.Produce(ctx, input[i:min(i+5000, len(input))]); err != nil {
			t.Fatal(err)
		}
	}
	b := strings.Join(brokers, ",")
	procURL := e.start("process", "/healthz", "-api.tokens", "dry-run-test-token:game", "-api.cluster-secret", "dry-run-test-cluster-secret-0123456789ab", "-kafka.brokers", b, "-process.group", "g-"+id, "-process.topic", tags, "-process.changelog-topic", state,
		"-process.changes-topic", changes, "-config.topic", config, "-process.simulated-clock", "-clickhouse.addr", "")
	e.start("schedule", "/healthz", "-kafka.brokers", b, "-schedule.group", "gs-"+id, "-schedule.topic", changes, "-schedule.changelog-topic", sstate,
		"-schedule.deliveries-topic", dels, "-schedule.decisions-topic", decs, "-config.topic", config, "-schedule.simulated-clock")
	prev := int64(-1)
	waitFor(t, 3*time.Minute, "the processor and the scheduler to read everything", func() bool {
		l1, err1 := kafkabus.GroupLag(ctx, brokers, "g-"+id, tags)
		l2, err2 := kafkabus.GroupLag(ctx, brokers, "gs-"+id, changes)
		n, err3 := kafkabus.CountMessages(ctx, brokers, decs)
		done := err1 == nil && err2 == nil && err3 == nil && l1 == 0 && l2 == 0 && n == prev && n > 0
		prev = n
		if !done {
			time.Sleep(time.Second)
		}
		return done
	})
	liveDel := readJSON[scheduler.DeliveryMessage](t, brokers, dels)
	liveDec := readJSON[scheduler.DecisionMessage](t, brokers, decs)

	cmd := exec.Command(e.bin, "campaigns", "dry-run", "-app", "game", "-kafka.brokers", b, "-config.topic", config, "-tags.topic", tags, "-json")
	cmd.Env = e.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dry-run: %v\n%s", err, out)
	}
	dryDel := map[string]scheduler.DeliveryMessage{}
	dryDec := map[string]scheduler.DecisionMessage{}
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var v struct {
			Delivery *scheduler.DeliveryMessage `json:"delivery"`
			Decision *scheduler.DecisionMessage `json:"decision"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("dry-run output %q: %v", line, err)
		}
		if v.Delivery != nil {
			dryDel[v.Delivery.ID] = *v.Delivery
		}
		if v.Decision != nil {
			dryDec[v.Decision.ID] = *v.Decision
		}
	}
	perCampaign := map[string]int{}
	for _, d := range liveDel {
		perCampaign[d.Campaign]++
	}
	t.Logf("live: %d deliveries %v, %d decisions; dry run: %d deliveries, %d decisions", len(liveDel), perCampaign, len(liveDec), len(dryDel), len(dryDec))
	for _, c := range sortedKeys(dryRunCampaigns) {
		if perCampaign[c] < 10 {
			t.Errorf("campaign %s sent %d live: too few to compare", c, perCampaign[c])
		}
	}
	sameMaps(t, "delivery", liveDel, dryDel)
	sameMaps(t, "decision", liveDec, dryDec)

	// The audience now: the members the API lists, through the
	// scheduler's assignment.
	file := filepath.Join(t.TempDir(), "comeback.yaml")
	if err := os.WriteFile(file, []byte(`
app: game
name: comeback
what:
  content:
    en: {title: "Come back", body: "A new season."}
  default_locale: en
who:
  segments: [lapsed]
  exclude: [buyers]
  sample: 70%
  control: 10%
  variants: [{name: a, weight: 50%}, {name: b, weight: 50%}]
when:
  on_entry: {}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(e.bin, "campaigns", "estimate", file, "-api", procURL, "-api.token", "dry-run-test-token")
	cmd.Env = e.env
	est, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("estimate: %v\n%s", err, est)
	}
	t.Logf("estimate:\n%s", est)
	membersOf := func(seg string) map[string]bool {
		req, _ := http.NewRequest(http.MethodGet, procURL+"/v1/segments/game/"+seg+"/members", nil)
		req.Header.Set("Authorization", "Bearer dry-run-test-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := map[string]bool{}
		for _, id := range strings.Fields(string(body)) {
			m[id] = true
		}
		return m
	}
	lapsed, buyers := membersOf("lapsed"), membersOf("buyers")
	members := 0
	for id := range lapsed {
		if !buyers[id] {
			members++
		}
	}
	figures := map[string]int{}
	for _, line := range strings.Split(string(est), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d", &n); ok && err == nil {
			figures[k] = n
		}
	}
	audience, sample, control := figures["in the audience (lapsed, not buyers)"], figures["in the sample"], figures["control group (never sent)"]
	if members < 300 || audience != members {
		t.Errorf("estimate: audience %d, the segments have %d devices now (%v)", audience, members, figures)
	}
	if f := float64(sample) / float64(max(audience, 1)); f < 0.6 || f > 0.8 {
		t.Errorf("estimate: %d of %d in a 70%% sample", sample, audience)
	}
	if f := float64(control) / float64(max(sample, 1)); f < 0.04 || f > 0.16 {
		t.Errorf("estimate: %d of %d sampled in a 10%% control group", control, sample)
	}
	if figures["would get a"]+figures["would get b"]+control != sample || figures["would get a"] == 0 || figures["would get b"] == 0 {
		t.Errorf("estimate: variants and control do not add up to the sample: %v", figures)
	}

	// The deliveries reach the providers: engage deliver sends each push
	// with a token once, to the mock of its provider; the others are
	// decided without a send.
	t.Run("deliver", func(t *testing.T) { deliverToMocks(t, e, brokers, id, dels, decs, tags, liveDel) })

	// The report a marketer reads.
	cmd = exec.Command(e.bin, "campaigns", "dry-run", "-app", "game", "-kafka.brokers", b, "-config.topic", config, "-tags.topic", tags,
		"-from", "2026-11-03", "-to", "2026-11-06")
	cmd.Env = e.env
	if out, err = cmd.CombinedOutput(); err != nil {
		t.Fatalf("dry-run report: %v\n%s", err, out)
	}
	t.Logf("report:\n%s", out)
	for _, want := range []string{"Nothing was sent", "campaign welcome (push, on_entry)", "sends per variant: a ", "2026-11-05", "control"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "2026-11-06 ") || strings.Contains(string(out), "2026-11-02 ") {
		t.Errorf("the report shows days outside -from/-to:\n%s", out)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func readJSON[T any](t *testing.T, brokers []string, topic string) map[string]T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := kafkabus.CountMessages(ctx, brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := kafkabus.ReadTopic(ctx, brokers, topic, int(n))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]T{}
	for _, m := range msgs {
		var v T
		if err := json.Unmarshal(m.Value, &v); err != nil {
			t.Fatal(err)
		}
		id := reflect.ValueOf(v).FieldByName("ID").String()
		if _, ok := out[id]; ok {
			t.Errorf("%s: id %s twice", topic, id)
		}
		out[id] = v
	}
	return out
}

func sameMaps[T any](t *testing.T, what string, live, dry map[string]T) {
	t.Helper()
	bad := 0
	for id, l := range live {
		d, ok := dry[id]
		if !ok || !reflect.DeepEqual(l, d) {
			if bad++; bad <= 5 {
				t.Errorf("%s live %+v, dry run %+v (found: %v)", what, l, d, ok)
			}
		}
	}
	for id, d := range dry {
		if _, ok := live[id]; !ok {
			if bad++; bad <= 10 {
				t.Errorf("%s only in the dry run: %+v", what, d)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d differ (live %d, dry run %d)", what, bad, len(live), len(dry))
	}
}
