package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// apiToken reads every app from the processor's and the analytics API.
const apiToken = "e2e-suite-token-0123456789abcdef"

// The apps of the examples, their write keys (examples/apps.yaml) and
// the APNs topic each app's pushes carry.
var exampleApps = map[string]struct{ key, topic string }{
	"news": {"news-write-key-prod", "com.example.news"},
	"game": {"game-write-key-prod", "com.example.game"},
	"shop": {"shop-write-key-prod", "com.example.shop"},
	"bank": {"bank-write-key-prod", "com.example.bank"},
}

// clockApp's devices, one per partition, move every partition's simulated
// clock forward: an app-info record each slot, which the processor
// forwards to the scheduler, so that both clocks pass every instant.
const (
	clockApp = "clock"
	clockKey = "clock-write-key-0000"
)

// stack is the whole platform, each service the real binary, on the real
// broker and ClickHouse, on topics and a database of the suite's own.
type stack struct {
	t        *testing.T
	e        *servicetest.Engage
	brokers  []string
	root     string // the module's root
	id       string
	topic    map[string]string // role → topic
	group    map[string]string // service → consumer group
	db       string
	appsFile string
	collect  *servicetest.Service
	process  *servicetest.Service
	schedule *servicetest.Service
	deliver  *servicetest.Service
	api      *servicetest.Service
	apns     *mock.APNs
	fcm      *mock.FCM
}

const partitions = 4

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..")
}

// newStack creates the topics, the database and the mocks; the services
// start with start, after the examples are loaded.
func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{t: t, brokers: kafkatest.RealBrokers(t), root: moduleRoot(), id: fmt.Sprintf("e2e%d", time.Now().UnixNano()%1e9)}
	s.e = servicetest.BuildEngage(t)
	s.topic = map[string]string{}
	for _, r := range []string{"tags", "state", "changes", "config", "sstate", "deliveries", "decisions", "dstate", "feedback", "inbox", "dead"} {
		s.topic[r] = s.id + "." + r
	}
	s.group = map[string]string{}
	for _, g := range []string{"process", "schedule", "deliver", "sink", "sink-decisions", "sink-feedback"} {
		s.group[g] = s.id + "-" + g
	}
	var specs []kafkabus.TopicSpec
	for r, name := range s.topic {
		spec := kafkabus.TopicSpec{Name: name, Partitions: partitions, ReplicationFactor: 1}
		switch r {
		case "config":
			spec.Partitions, spec.Compacted = 1, true
		case "state", "sstate", "dstate", "inbox":
			spec.Compacted = true
		}
		specs = append(specs, spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := kafkabus.EnsureTopics(ctx, s.brokers, specs); err != nil {
		t.Fatal(err)
	}
	_, ch, _ := chtest.Database(t)
	s.db = ch.Database
	var err error
	if s.apns, err = mock.StartAPNs(mock.APNsConfig{KeepRecords: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.apns.Close)
	if s.fcm, err = mock.StartFCM(mock.FCMConfig{KeepRecords: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.fcm.Close)
	s.appsFile = s.writeApps()
	return s
}

// writeApps writes the suite's apps file: the examples' apps with their
// plans and keys, and the clock app.
func (s *stack) writeApps() string {
	dir := s.t.TempDir()
	plan := filepath.Join(dir, "clock.yaml")
	s.write(plan, "app: clock\nmode: enforce\napp_info:\n  tick: number\n")
	var b strings.Builder
	b.WriteString("apps:\n")
	for _, app := range sortedKeys(exampleApps) {
		fmt.Fprintf(&b, "  - id: %s\n    write_keys: [%s]\n    tag_plan: %s\n", app, exampleApps[app].key, filepath.Join(s.root, "examples", "plans", app+".yaml"))
	}
	fmt.Fprintf(&b, "  - id: %s\n    write_keys: [%s]\n    tag_plan: %s\n", clockApp, clockKey, plan)
	file := filepath.Join(dir, "apps.yaml")
	s.write(file, b.String())
	return file
}

func (s *stack) write(file, text string) {
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// credentials writes the APNs and FCM credentials of every app: a .p8 key
// per app on the APNs mock, a service account per app on the FCM mock.
func (s *stack) credentials() string {
	dir := s.t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	s.write(ca, string(s.apns.CertificatePEM()))
	var b strings.Builder
	b.WriteString("apps:\n")
	for i, app := range sortedKeys(exampleApps) {
		team, kid := fmt.Sprintf("TEAM%06d", i), fmt.Sprintf("KEY%07d", i)
		p8, err := s.apns.NewKey(team, kid, exampleApps[app].topic)
		if err != nil {
			s.t.Fatal(err)
		}
		sa, err := s.fcm.NewServiceAccount(app + "-project")
		if err != nil {
			s.t.Fatal(err)
		}
		keyFile, saFile := filepath.Join(dir, app+".p8"), filepath.Join(dir, app+"-sa.json")
		s.write(keyFile, string(p8))
		s.write(saFile, string(sa))
		fmt.Fprintf(&b, "  %s:\n    apns: {team_id: %s, key_id: %s, key_file: %s, topic: %s, host: %s, ca_file: %s}\n    fcm: {project_id: %s-project, service_account_file: %s, endpoint: %s}\n",
			app, team, kid, keyFile, exampleApps[app].topic, s.apns.URL(), ca, app, saFile, s.fcm.Endpoint())
	}
	file := filepath.Join(dir, "credentials.yaml")
	s.write(file, b.String())
	return file
}

// loadExamples loads every example with the CLI, as a user would:
// examples/load.sh all.
func (s *stack) loadExamples() string {
	s.t.Helper()
	cmd := exec.Command("sh", filepath.Join(s.root, "examples", "load.sh"), "all")
	cmd.Env = append(append([]string{}, s.e.Env...), "ENGAGE="+s.e.Bin, "ENGAGE_KAFKA_BROKERS="+strings.Join(s.brokers, ","), "ENGAGE_CONFIG_TOPIC="+s.topic["config"])
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("examples/load.sh all: %v\n%s", err, out)
	}
	return string(out)
}

// start starts every service on the simulated clock.
func (s *stack) start() {
	s.t.Helper()
	b := strings.Join(s.brokers, ",")
	ch := []string{"-clickhouse.addr", strings.Join(chtest.Addr(s.t), ","), "-clickhouse.database", s.db}
	s.collect = s.e.Start("collect", "-addr", "/readyz", "-kafka.brokers", b, "-apps", s.appsFile, "-collector.topic", s.topic["tags"],
		"-collector.inbox-topic", s.topic["inbox"], "-collector.inbox-simulated-clock", "-log.level", "warn")
	s.process = s.e.Start("process", "-addr", "/healthz", "-kafka.brokers", b, "-apps", s.appsFile, "-api.tokens", apiToken+":*", "-api.cluster-secret", "e2e-suite-cluster-secret-0123456789abcdef",
		"-process.group", s.group["process"], "-process.topic", s.topic["tags"], "-process.changelog-topic", s.topic["state"],
		"-process.changes-topic", s.topic["changes"], "-config.topic", s.topic["config"], "-process.simulated-clock", "-clickhouse.addr", "", "-log.level", "warn")
	s.schedule = s.e.Start("schedule", "-addr", "/healthz", "-kafka.brokers", b, "-apps", s.appsFile, "-api.tokens", apiToken+":*",
		"-schedule.group", s.group["schedule"], "-schedule.topic", s.topic["changes"], "-schedule.changelog-topic", s.topic["sstate"],
		"-schedule.deliveries-topic", s.topic["deliveries"], "-schedule.decisions-topic", s.topic["decisions"], "-config.topic", s.topic["config"],
		"-schedule.simulated-clock", "-log.level", "warn")
	s.deliver = s.e.Start("deliver", "-addr", "/healthz", "-kafka.brokers", b, "-credentials", s.credentials(), "-deliver.group", s.group["deliver"],
		"-deliver.topic", s.topic["deliveries"], "-deliver.changelog-topic", s.topic["dstate"], "-deliver.decisions-topic", s.topic["decisions"],
		"-deliver.feedback-topic", s.topic["feedback"], "-deliver.inbox-topic", s.topic["inbox"], "-deliver.tags-topic", s.topic["tags"],
		"-deliver.simulated-clock", "-log.level", "warn")
	s.e.Start("sink", "-metrics.addr", "/healthz", append(ch, "-kafka.brokers", b, "-clickhouse.http-addr", chtest.HTTPAddr(s.t),
		"-sink.topic", s.topic["tags"], "-sink.group", s.group["sink"], "-sink.decisions-topic", s.topic["decisions"], "-sink.decisions-group", s.group["sink-decisions"],
		"-sink.feedback-topic", s.topic["feedback"], "-sink.feedback-group", s.group["sink-feedback"], "-sink.dead-topic", s.topic["dead"], "-log.level", "warn")...)
	s.api = s.e.Start("api", "-addr", "/healthz", append(ch, "-apps", s.appsFile, "-api.tokens", apiToken+":*", "-log.level", "warn")...)
}

// settled waits until every consumer has read everything and the
// pipeline's outputs stop growing: the processor, the scheduler, the
// dispatcher and the sink's three streams.
func (s *stack) settled(timeout time.Duration) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	type watch struct{ group, topic string }
	watches := []watch{{s.group["process"], s.topic["tags"]}, {s.group["schedule"], s.topic["changes"]}, {s.group["deliver"], s.topic["deliveries"]},
		{s.group["sink"], s.topic["tags"]}, {s.group["sink-decisions"], s.topic["decisions"]}, {s.group["sink-feedback"], s.topic["feedback"]}}
	deadline := time.Now().Add(timeout)
	prev, stable := "", 0
	for {
		var state []string
		idle := true
		for _, w := range watches {
			lag, err := kafkabus.GroupLag(ctx, s.brokers, w.group, w.topic)
			if err != nil {
				lag = -1
			}
			n, err := kafkabus.CountMessages(ctx, s.brokers, w.topic)
			if err != nil {
				n = -1
			}
			state = append(state, fmt.Sprintf("%s on %s: lag %d of %d", w.group, w.topic, lag, n))
			idle = idle && lag == 0
		}
		cur := strings.Join(state, "; ")
		if idle && cur == prev {
			stable++
		} else {
			stable = 0
		}
		if stable >= 3 { // lag 0 everywhere and nothing new, three polls in a row
			return
		}
		prev = cur
		if time.Now().After(deadline) {
			s.t.Fatalf("the pipeline did not settle within %s: %s", timeout, cur)
		}
		time.Sleep(time.Second)
	}
}

// getJSON GETs url with the suite's bearer token into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
}

// tryJSON is getJSON for what may not be there yet: false when the answer
// is not 200 JSON.
func tryJSON(url string, v any) bool {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
