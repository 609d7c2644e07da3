package scheduler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// The campaigns of the runs: entry triggers with delays, local-time
// alignment and quiet hours (durable timers), a control group and
// variants, templates over app-info and the trigger's extras, a one-off
// send in each device's local time, a daily recurring send, a cap and
// priority between them.
var testCampaigns = map[string]string{
	"welcome": `
app: game
name: welcome
what:
  missing: default
  content:
    en: {title: "Welcome {{app_info.first_name | default \"there\"}}", body: "Day two: here is a gift."}
    fr: {title: "Bienvenue {{app_info.first_name | default \"à toi\"}}", body: "Deuxième jour : un cadeau."}
  default_locale: en
who:
  segments: [new_users]
  control: 10%
  variants: [{name: a, weight: 50%}, {name: b, weight: 50%}]
when:
  on_entry: {delay: 2d, at: "10:00"}
limits:
  quiet_hours: {from: "22:00", to: "08:00"}
  once: true
  priority: 5
`,
	"stalled": `
app: game
name: stalled
what:
  missing: default
  content:
    en: {title: "Stuck on level {{trigger.level | default \"this\"}}?", body: "Three boosters for you."}
  default_locale: en
who:
  segments: [stalled]
when:
  on_entry: {delay: 30m}
  expiry: 1d
limits:
  quiet_hours: {from: "23:00", to: "09:00"}
  reentry_after: 3d
  priority: 20
`,
	"lapsed": `
app: game
name: lapsed
what:
  content:
    en: {title: "We miss you", body: "A new season has started."}
  default_locale: en
who:
  segments: [lapsed]
when:
  once: {at: 2026-11-06T18:00, local_time: true}
`,
	"digest": `
app: game
name: digest
what:
  channel: in_app
  content:
    en: {title: "Today's puzzles", body: "Three new ones.", layout: banner}
  default_locale: en
who:
  segments: [readers]
  sample: 60%
when:
  recurring: {every: day, at: "08:00"}
`,
}

var runSeq atomic.Int64

var testT0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// topics creates a fresh set of co-partitioned topics for one run, with
// the campaigns and caps stored.
func topics(t *testing.T, brokers []string, parts int) scheduler.Config {
	t.Helper()
	id := fmt.Sprintf("st%d-%d", time.Now().UnixNano()%1e9, runSeq.Add(1))
	cfg := scheduler.DefaultConfig(brokers)
	cfg.Group, cfg.Topic, cfg.ChangelogTopic, cfg.DeliveriesTopic, cfg.DecisionsTopic, cfg.ConfigTopic =
		"g-"+id, id+".changes", id+".state", id+".deliveries", id+".decisions", id+".config"
	cfg.SimulatedClock = true
	cfg.SessionTimeout = 6 * time.Second
	specs := []kafkabus.TopicSpec{
		{Name: cfg.Topic, Partitions: parts, ReplicationFactor: 1},
		{Name: cfg.ChangelogTopic, Partitions: parts, ReplicationFactor: 1, Compacted: true},
		{Name: cfg.DeliveriesTopic, Partitions: parts, ReplicationFactor: 1},
		{Name: cfg.DecisionsTopic, Partitions: parts, ReplicationFactor: 1},
		{Name: cfg.ConfigTopic, Partitions: 1, ReplicationFactor: 1, Compacted: true},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := kafkabus.EnsureTopics(ctx, brokers, specs); err != nil {
		t.Fatal(err)
	}
	var msgs []bus.Message
	names := make([]string, 0, len(testCampaigns))
	for n := range testCampaigns {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := triggers.Parse(n+".yaml", []byte(testCampaigns[n])); err != nil {
			t.Fatalf("campaign %s: %v", n, err)
		}
		v, _ := json.Marshal(scheduler.Stored{App: "game", Name: n, File: n + ".yaml", Source: testCampaigns[n]})
		msgs = append(msgs, bus.Message{Key: scheduler.CampaignKey("game", n), Value: v})
	}
	caps, _ := json.Marshal(scheduler.AppCaps{triggers.ChannelPush: {PerDay: 1, PerWeek: 4}})
	msgs = append(msgs, bus.Message{Key: scheduler.CapsKey("game"), Value: caps})
	produce(t, brokers, cfg.ConfigTopic, msgs)
	return cfg
}

func produce(t *testing.T, brokers []string, topic string, msgs []bus.Message) {
	t.Helper()
	p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, topic), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < len(msgs); i += 5000 {
		if err := p.Produce(context.Background(), msgs[i:min(i+5000, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}
}

// stream generates what the processor would produce on the simulated
// clock for ten days of devices: each device's device record (time zone,
// locale) and app-info first, then entries into and exits from the
// campaigns' segments, some with the causing record's extras. Times never
// go back (they are the processor's clock).
func stream(n, devices int) []bus.Message {
	rng := rand.New(rand.NewPCG(21, 22))
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	span := 10 * 24 * time.Hour
	zones := []string{"Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "America/Sao_Paulo", ""}
	names := []string{"Ana", "Bo", "Kim", "Léa"}
	segs := []string{"new_users", "stalled", "lapsed", "readers"}
	seen := map[string]bool{}
	member := map[string]bool{}
	msgs := make([]bus.Message, 0, n)
	for i := 0; len(msgs) < n; i++ {
		dev := fmt.Sprintf("d%05d", rng.IntN(devices))
		at := t0.Add(span / time.Duration(n) * time.Duration(i))
		key := []byte("game/" + dev)
		add := func(cm processor.ChangeMessage) {
			v, _ := json.Marshal(cm)
			msgs = append(msgs, bus.Message{Key: key, Value: v})
		}
		if !seen[dev] {
			seen[dev] = true
			r := tag.Record{Kind: tag.KindDevice, AppID: "game", DeviceID: dev, MessageID: "dev-" + dev, Time: at,
				Device: &tag.DeviceInfo{Platform: "ios", TimeZone: zones[rng.IntN(len(zones))], Locale: []string{"en-US", "fr-FR", "de-DE"}[rng.IntN(3)]}}
			add(processor.ChangeMessage{ID: "record:game/" + dev + "/" + r.MessageID, Kind: processor.KindRecord, App: "game", DeviceID: dev, Time: at, Cause: "record", Record: r.AppendBinary(nil)})
			if rng.IntN(2) == 0 {
				r := tag.Record{Kind: tag.KindAppInfo, AppID: "game", DeviceID: dev, MessageID: "info-" + dev, Time: at,
					AppInfo: []tag.Extra{{Key: "first_name", Value: tag.String(names[rng.IntN(len(names))])}}}
				add(processor.ChangeMessage{ID: "record:game/" + dev + "/" + r.MessageID, Kind: processor.KindRecord, App: "game", DeviceID: dev, Time: at, Cause: "record", Record: r.AppendBinary(nil)})
			}
		}
		seg := segs[rng.IntN(len(segs))]
		enter := !member[seg+dev]
		member[seg+dev] = enter
		cm := processor.ChangeMessage{ID: fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64()), App: "game", Segment: seg, Version: 1, DeviceID: dev, Enter: enter, Time: at, Cause: "record"}
		if seg == "stalled" && enter {
			cm.Extras = processor.AppendExtrasJSON(nil, []tag.Extra{{Key: "level", Value: tag.Number(float64(1 + rng.IntN(40)))}})
		}
		add(cm)
	}
	return msgs
}

func buildEngage(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "engage")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/engage").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func startSchedule(t *testing.T, bin string, cfg scheduler.Config, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "schedule", "-kafka.brokers", strings.Join(cfg.Brokers, ","), "-schedule.group", cfg.Group,
		"-schedule.topic", cfg.Topic, "-schedule.changelog-topic", cfg.ChangelogTopic, "-schedule.deliveries-topic", cfg.DeliveriesTopic,
		"-schedule.decisions-topic", cfg.DecisionsTopic, "-config.topic", cfg.ConfigTopic, "-schedule.simulated-clock",
		"-schedule.session-timeout", cfg.SessionTimeout.String(), "-schedule.flush-interval", "50ms", "-schedule.flush-records", "1500",
		"-addr", "", "-log.level", "warn")
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil && cmd.Process != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// waitDone waits until the group has consumed the whole input and the
// outputs have stopped growing.
func waitDone(t *testing.T, cfg scheduler.Config, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var prev int64 = -1
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lag, err := kafkabus.GroupLag(ctx, cfg.Brokers, cfg.Group, cfg.Topic)
		n1, err1 := kafkabus.CountMessages(ctx, cfg.Brokers, cfg.DeliveriesTopic)
		n2, err2 := kafkabus.CountMessages(ctx, cfg.Brokers, cfg.DecisionsTopic)
		cancel()
		if err == nil && err1 == nil && err2 == nil && lag == 0 && n1+n2 == prev {
			return
		}
		prev = n1 + n2
		if time.Now().After(deadline) {
			t.Fatalf("not done after %s: lag %d (%v)", limit, lag, err)
		}
		time.Sleep(time.Second)
	}
}

// outputs reads a topic of deliveries or decisions: the distinct messages
// by id, and how many ids arrived more than once.
func outputs[T any](t *testing.T, brokers []string, topic string) (map[string]T, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := kafkabus.CountMessages(ctx, brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := kafkabus.ReadTopic(ctx, brokers, topic, int(n))
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]T{}
	dups := 0
	for _, m := range msgs {
		var v T
		if err := json.Unmarshal(m.Value, &v); err != nil {
			t.Fatal(err)
		}
		id := reflect.ValueOf(v).FieldByName("ID").String()
		if first, ok := byID[id]; ok {
			if dups++; dups <= 3 {
				t.Logf("%s: id %s twice:\n %+v\n %+v", topic, id, first, v)
			}
			continue
		}
		byID[id] = v
	}
	return byID, dups
}

func compare[T any](t *testing.T, what string, want, got map[string]T, gotDups int) {
	t.Helper()
	if gotDups > 0 {
		t.Errorf("%s: %d ids produced twice", what, gotDups)
	}
	missing, extra := 0, 0
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			if missing++; missing <= 5 {
				t.Errorf("%s lost: %+v", what, w)
			}
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s differs:\n got %+v\nwant %+v", what, g, w)
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			if extra++; extra <= 5 {
				t.Errorf("%s extra: %+v", what, g)
			}
		}
	}
	if missing > 0 || extra > 0 {
		t.Errorf("%s: %d lost, %d extra of %d", what, missing, extra, len(want))
	}
}

// A scheduler killed with SIGKILL mid-stream and started again, and two
// instances of which one is killed, give exactly the deliveries and
// decisions of one undisturbed instance: none lost, none twice, each with
// the same content and time (deferred sends fire at their time on the
// simulated clock, across the restore).
func TestKilledSchedulerDecidesAsUndisturbed(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	bin := buildEngage(t)
	input := stream(40000, 1500)

	ref := topics(t, brokers, 4)
	produce(t, brokers, ref.Topic, input)
	one := startSchedule(t, bin, ref)
	waitDone(t, ref, 3*time.Minute)
	_ = one.Process.Signal(syscall.SIGTERM)
	_ = one.Wait()
	wantDel, dups := outputs[scheduler.DeliveryMessage](t, brokers, ref.DeliveriesTopic)
	wantDec, dups2 := outputs[scheduler.DecisionMessage](t, brokers, ref.DecisionsTopic)
	if dups+dups2 > 0 {
		t.Fatalf("the undisturbed run produced %d deliveries and %d decisions twice", dups, dups2)
	}
	outcomes := map[triggers.Outcome]int{}
	perCampaign := map[string]map[triggers.Outcome]int{}
	for _, d := range wantDec {
		outcomes[d.Outcome]++
		if perCampaign[d.Campaign] == nil {
			perCampaign[d.Campaign] = map[triggers.Outcome]int{}
		}
		perCampaign[d.Campaign][d.Outcome]++
	}
	t.Logf("decisions by campaign: %v", perCampaign)
	byCampaign := map[string]int{}
	for _, d := range wantDel {
		byCampaign[d.Campaign]++
	}
	t.Logf("undisturbed: %d deliveries %v, %d decisions %v", len(wantDel), byCampaign, len(wantDec), outcomes)
	for _, o := range []triggers.Outcome{triggers.OutcomeSent, triggers.OutcomeDeferred, triggers.OutcomeControl, triggers.OutcomeCapped, triggers.OutcomeLeft, triggers.OutcomeNoSample} {
		if outcomes[o] < 20 {
			t.Errorf("the reference run has %d %q decisions: too few to compare", outcomes[o], o)
		}
	}
	for _, c := range []string{"welcome", "stalled", "lapsed", "digest"} {
		if byCampaign[c] < 20 {
			t.Errorf("the reference run sent %d of campaign %s: too few to compare", byCampaign[c], c)
		}
	}

	// mode: "kill" (SIGKILL mid-stream, then a new instance), "two" (two
	// instances, one killed), or a fault point of fault.go at which the
	// first instance exits by itself at its 5th flush (then a new one).
	run := func(t *testing.T, mode string) {
		cfg := topics(t, brokers, 4)
		var env []string
		if mode != "kill" && mode != "two" {
			env = []string{"ENGAGE_FAULT=" + mode + ":5"}
		}
		a := startSchedule(t, bin, cfg, env...)
		exited := make(chan struct{})
		go func() { _ = a.Wait(); close(exited) }()
		var b *exec.Cmd
		if mode == "two" {
			b = startSchedule(t, bin, cfg)
		}
		const chunks = 20
		size := (len(input) + chunks - 1) / chunks
		var atKill int64
		for i := 0; i < chunks; i++ {
			produce(t, brokers, cfg.Topic, input[i*size:min((i+1)*size, len(input))])
			if i == chunks*2/5 && env == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				atKill, _ = kafkabus.CountMessages(ctx, brokers, cfg.DeliveriesTopic)
				cancel()
				if err := a.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				<-exited
				if mode == "kill" {
					b = startSchedule(t, bin, cfg)
				}
			}
			time.Sleep(150 * time.Millisecond)
		}
		if env != nil {
			select {
			case <-exited:
			case <-time.After(time.Minute):
				t.Fatalf("the instance did not reach %s 5 times", mode)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			atKill, _ = kafkabus.CountMessages(ctx, brokers, cfg.DeliveriesTopic)
			cancel()
			b = startSchedule(t, bin, cfg)
		}
		if atKill == 0 || atKill >= int64(len(wantDel)) {
			t.Fatalf("%d of %d deliveries had been produced when the instance died: not mid-stream", atKill, len(wantDel))
		}
		waitDone(t, cfg, 3*time.Minute)
		for _, c := range []*exec.Cmd{a, b} {
			if c != nil && c.ProcessState == nil && c != a {
				_ = c.Process.Signal(syscall.SIGTERM)
				_ = c.Wait()
			}
		}
		gotDel, dd := outputs[scheduler.DeliveryMessage](t, brokers, cfg.DeliveriesTopic)
		gotDec, dc := outputs[scheduler.DecisionMessage](t, brokers, cfg.DecisionsTopic)
		t.Logf("died after %d deliveries: %d deliveries (%d twice), %d decisions (%d twice)", atKill, len(gotDel), dd, len(gotDec), dc)
		compare(t, "delivery", wantDel, gotDel, dd)
		compare(t, "decision", wantDec, gotDec, dc)
	}
	t.Run("killed and restarted", func(t *testing.T) { run(t, "kill") })
	t.Run("two instances, one killed", func(t *testing.T) { run(t, "two") })
	t.Run("died between outputs and states", func(t *testing.T) { run(t, "after-outputs") })
	t.Run("died between states and commit", func(t *testing.T) { run(t, "after-states") })
}
