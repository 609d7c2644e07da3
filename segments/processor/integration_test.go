package processor_test

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
)

// testSegments are seed-style segments over the generated stream: every
// kind of condition, windows, timers and a reference.
var testSegments = map[string]string{
	"onboarding_gap": `first_session between 3d and 4d ago and did activity "login" and not did event "logged_in"`,
	"engaged":        `did event "article_read" where category = "sport" at least 3 times in last 2d`,
	"stalled":        `app_info "level" unchanged for 3d and last_seen within 1d`,
	"lapsed":         `last_seen more than 2d ago and first_session more than 3d ago`,
	"shoppers":       `did activity "category" where name = "shoes" at least 2 times in last 5d`,
	"sport_fans":     `segment "engaged" and sample 50%`,
}

var seq atomic.Int64

// topics creates a fresh set of co-partitioned topics for one run.
func topics(t *testing.T, brokers []string, parts int) processor.Config {
	t.Helper()
	id := fmt.Sprintf("pt%d-%d", time.Now().UnixNano()%1e9, seq.Add(1))
	cfg := processor.DefaultConfig(brokers)
	cfg.Group, cfg.Topic, cfg.ChangelogTopic, cfg.ChangesTopic, cfg.ConfigTopic = "g-"+id, id+".tags", id+".state", id+".changes", id+".config"
	cfg.SimulatedClock = true
	cfg.SessionTimeout = 6 * time.Second
	specs := []kafkabus.TopicSpec{
		{Name: cfg.Topic, Partitions: parts, ReplicationFactor: 1},
		{Name: cfg.ChangelogTopic, Partitions: parts, ReplicationFactor: 1, Compacted: true},
		{Name: cfg.ChangesTopic, Partitions: parts, ReplicationFactor: 1},
		{Name: cfg.ConfigTopic, Partitions: 1, ReplicationFactor: 1, Compacted: true},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := kafkabus.EnsureTopics(ctx, brokers, specs); err != nil {
		t.Fatal(err)
	}
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

func defineSegments(t *testing.T, cfg processor.Config) {
	t.Helper()
	var msgs []bus.Message
	names := make([]string, 0, len(testSegments))
	for n := range testSegments {
		names = append(names, n)
	}
	sort.Strings(names)
	var defs []processor.Definition
	for _, n := range names {
		defs = append(defs, processor.Definition{App: "game", Name: n, Text: testSegments[n], UpdatedAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	}
	for _, d := range defs {
		if _, err := processor.Validate(d, nil, defs); err != nil {
			t.Fatalf("%s: %v", d.Name, err)
		}
		v, _ := json.Marshal(d)
		msgs = append(msgs, bus.Message{Key: processor.ConfigKey("game", d.Name), Value: v})
	}
	produce(t, cfg.Brokers, cfg.ConfigTopic, msgs)
}

// stream generates n records over devices, ten days of play, with some
// records out of order and some sent twice.
func stream(n, devices int) []bus.Message {
	rng := rand.New(rand.NewPCG(11, 12))
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	span := 10 * 24 * time.Hour
	msgs := make([]bus.Message, 0, n)
	for i := 0; len(msgs) < n; i++ {
		dev := fmt.Sprintf("d%05d", rng.IntN(devices))
		at := t0.Add(span / time.Duration(n) * time.Duration(i))
		if rng.IntN(20) == 0 { // out of order: up to a day late
			at = at.Add(-time.Duration(rng.IntN(86400)) * time.Second)
		}
		r := tag.Record{AppID: "game", DeviceID: dev, MessageID: fmt.Sprintf("m%07d", i), Time: at}
		switch k := rng.IntN(10); {
		case k < 2:
			r.Kind, r.SessionID = tag.KindSessionStart, fmt.Sprintf("s%d", i)
		case k < 4:
			r.Kind, r.Name = tag.KindActivityStart, []string{"login", "category", "home"}[rng.IntN(3)]
			if r.Name == "category" {
				r.Extras = []tag.Extra{{Key: "name", Value: tag.String([]string{"shoes", "hats"}[rng.IntN(2)])}}
			}
		case k < 7:
			r.Kind, r.Name = tag.KindEvent, []string{"article_read", "logged_in", "share"}[rng.IntN(3)]
			if r.Name == "article_read" {
				r.Extras = []tag.Extra{{Key: "category", Value: tag.String([]string{"sport", "news"}[rng.IntN(2)])}}
			}
		default:
			r.Kind = tag.KindAppInfo
			r.AppInfo = []tag.Extra{{Key: "level", Value: tag.Number(float64(rng.IntN(4)))}}
		}
		m := bus.Message{Key: r.Key(), Value: r.AppendBinary(nil)}
		msgs = append(msgs, m)
		if rng.IntN(50) == 0 { // a client retry: the same record again
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// changes reads the changes topic: distinct changes by id, how many
// arrived more than once, and each (segment, device)'s final membership.
func changes(t *testing.T, brokers []string, topic string) (map[string]processor.ChangeMessage, int, map[string]bool) {
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
	byID := map[string]processor.ChangeMessage{}
	dups := 0
	last := map[string]bool{} // a device's changes are on one partition, in order
	for _, m := range msgs {
		var c processor.ChangeMessage
		if err := json.Unmarshal(m.Value, &c); err != nil {
			t.Fatal(err)
		}
		if _, ok := byID[c.ID]; ok {
			dups++
			continue
		}
		byID[c.ID] = c
		if c.Kind == "" {
			last[c.Segment+"/"+c.DeviceID] = c.Enter
		}
	}
	members := map[string]bool{}
	for k, in := range last {
		if in {
			members[k] = true
		}
	}
	return byID, dups, members
}

// waitDone waits until the group has consumed the whole input and the
// changes topic has stopped growing.
func waitDone(t *testing.T, cfg processor.Config, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var prev int64 = -1
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lag, err := kafkabus.GroupLag(ctx, cfg.Brokers, cfg.Group, cfg.Topic)
		n, err2 := kafkabus.CountMessages(ctx, cfg.Brokers, cfg.ChangesTopic)
		cancel()
		if err == nil && err2 == nil && lag == 0 && n == prev {
			return
		}
		prev = n
		if time.Now().After(deadline) {
			t.Fatalf("not done after %s: lag %d (%v)", limit, lag, err)
		}
		time.Sleep(time.Second)
	}
}

func buildEngage(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "engage")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/engage").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func startProcess(t *testing.T, bin string, cfg processor.Config) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "process", "-kafka.brokers", strings.Join(cfg.Brokers, ","), "-process.group", cfg.Group,
		"-process.topic", cfg.Topic, "-process.changelog-topic", cfg.ChangelogTopic, "-process.changes-topic", cfg.ChangesTopic,
		"-config.topic", cfg.ConfigTopic, "-process.simulated-clock", "-process.session-timeout", cfg.SessionTimeout.String(),
		"-process.flush-interval", "50ms", "-process.flush-records", "2000", "-addr", "", "-log.level", "warn",
		// No history store (the environment may name ClickHouse): segments
		// changed mid-stream count from then on, in every run alike. Fills
		// have tests of their own.
		"-clickhouse.addr", "")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// Two instances share the partitions; one is killed with SIGKILL in the
// middle of the stream. The survivor takes its partitions, restores their
// state from the changelog and goes on. The distinct changes and the final
// memberships equal those of a single instance on the same input.
func TestTwoInstancesOneKilledEqualsOneInstance(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) { testTwoInstances(t, sig) })
	}
}

func testTwoInstances(t *testing.T, sig syscall.Signal) {
	brokers := kafkatest.RealBrokers(t)
	bin := buildEngage(t)
	input := stream(60000, 1500)

	// The reference: one instance, undisturbed.
	one := topics(t, brokers, 4)
	defineSegments(t, one)
	produce(t, brokers, one.Topic, input)
	single := startProcess(t, bin, one)
	waitDone(t, one, 3*time.Minute)
	_ = single.Process.Signal(syscall.SIGTERM)
	_ = single.Wait()
	wantChanges, wantDups, wantMembers := changes(t, brokers, one.ChangesTopic)
	if len(wantChanges) < 1000 || len(wantMembers) < 100 {
		t.Fatalf("the reference run produced %d changes and %d memberships: too few to compare", len(wantChanges), len(wantMembers))
	}

	// Two instances; input arrives while they run; one dies.
	two := topics(t, brokers, 4)
	defineSegments(t, two)
	a, b := startProcess(t, bin, two), startProcess(t, bin, two)
	// The input arrives in chunks while they run; A dies with SIGKILL when
	// 40% of it has been sent and both are processing.
	const chunks = 20
	size := (len(input) + chunks - 1) / chunks
	var atKill int64
	for i := 0; i < chunks; i++ {
		produce(t, brokers, two.Topic, input[i*size:min((i+1)*size, len(input))])
		if i == chunks*2/5 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			atKill, _ = kafkabus.CountMessages(ctx, brokers, two.ChangesTopic)
			cancel()
			if err := a.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			_ = a.Wait()
		}
		time.Sleep(150 * time.Millisecond)
	}
	if atKill == 0 {
		t.Fatal("no change had been produced when the instance was killed: not mid-stream")
	}
	t.Logf("stopped one instance with %s after %d changes", sig, atKill)
	waitDone(t, two, 3*time.Minute)
	_ = b.Process.Signal(syscall.SIGTERM)
	_ = b.Wait()

	gotChanges, gotDups, gotMembers := changes(t, brokers, two.ChangesTopic)
	t.Logf("single instance: %d changes (%d repeated), %d memberships; two, one stopped with %s: %d changes (%d repeated with the same id), %d memberships",
		len(wantChanges), wantDups, len(wantMembers), sig, len(gotChanges), gotDups, len(gotMembers))
	missing, extra := 0, 0
	for id, c := range wantChanges {
		g, ok := gotChanges[id]
		if !ok {
			if missing++; missing <= 5 {
				t.Errorf("lost: %+v", c)
			}
			continue
		}
		if !reflect.DeepEqual(g, c) {
			t.Errorf("differs:\n got %+v\nwant %+v", g, c)
		}
	}
	for id, c := range gotChanges {
		if _, ok := wantChanges[id]; !ok {
			if extra++; extra <= 5 {
				t.Errorf("extra: %+v", c)
			}
		}
	}
	if missing+extra > 0 {
		t.Fatalf("%d changes lost, %d extra", missing, extra)
	}
	if len(gotMembers) != len(wantMembers) {
		t.Fatalf("%d final memberships, want %d", len(gotMembers), len(wantMembers))
	}
	for k := range wantMembers {
		if !gotMembers[k] {
			t.Fatalf("final membership %s missing", k)
		}
	}
}
