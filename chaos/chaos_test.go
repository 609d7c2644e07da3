package chaos

// TestChaos is the chaos run (`make chaos`): see the package comment and
// docs/operations.md, "Chaos run".

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/kafkabus"
)

const (
	writeKey      = "demo-write-key" // the embedded demo app
	apiToken      = "chaos-test-token-0123456789"
	clusterSecret = "chaos-test-cluster-secret-0123456789abcdef"
	database      = "chaos"
	refGroup      = "chaos-reference"
	refChangelog  = "chaos.reference-state"
	refChanges    = "chaos.reference-changes"
	// countSegment is the segment whose members a plain count over the
	// acknowledged records gives too: countThreshold article_read or more.
	countSegment   = "readers"
	countThreshold = 6
	sessionTimeout = "6000" // ms, the brokers' and the processor's
)

// chaosSegments are the segments of the run: counts, filters and windows.
var chaosSegments = [][2]string{
	{countSegment, fmt.Sprintf(`did event "article_read" at least %d times`, countThreshold)},
	{"sport_week", `did event "article_read" where category = "sport" at least 2 times in last 7d`},
	{"premium_fortnight", `did event "article_read" where premium = true at least 1 times in last 14d`},
	{"sharers", `did event "shared" at least 2 times in last 10d`},
	{"quiet_readers", `did event "article_read" at least 3 times in last 21d and not did event "shared" in last 5d`},
	{"recent", `last event "article_read" within 3d`},
}

func TestChaos(t *testing.T) {
	if os.Getenv("ENGAGE_CHAOS") != "1" {
		t.Skip("the chaos run takes minutes and a Kafka cluster of its own: `make chaos` runs it (ENGAGE_CHAOS=1)")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: give an unsigned integer", s)
		}
		seed = v
	}
	d := envDuration(t, "CHAOS_DURATION", 3*time.Minute, 2*time.Minute, 15*time.Minute)
	rate := envInt(t, "CHAOS_RATE", 200, 10, 2000)
	faults, err := Plan(seed, DefaultPlanConfig(d))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CHAOS_SEED=%d CHAOS_DURATION=%s CHAOS_RATE=%d: %d faults planned", seed, d, rate, len(faults))
	for _, f := range faults {
		t.Logf("  plan: %s", f)
	}

	// The services: three brokers, ClickHouse, every topic at
	// replication 3 and min.insync.replicas 2.
	cluster := servicetest.StartCluster(t, 3, "ENGAGE_KAFKA_CLUSTER_SESSION_TIMEOUT_MS="+sessionTimeout)
	brokers := cluster.Brokers()
	b := strings.Join(brokers, ",")
	ch := servicetest.Start(t, "clickhouse")
	e := servicetest.BuildEngage(t)
	e.Run("topics", "-kafka.brokers", b)
	refTopics(t, brokers)
	for _, s := range chaosSegments {
		e.Run("segments", "put", "-kafka.brokers", b, "-app", "demo", "-name", s[0], "-text", s[1])
	}
	logs := t.TempDir()
	if dir := os.Getenv("CHAOS_LOGS"); dir != "" {
		logs = dir
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	newProc := func(name, addrFlag, health string, args ...string) *Proc {
		addr := "127.0.0.1:" + strconv.Itoa(servicetest.FreePort(t))
		p := &Proc{Name: name, Bin: e.Bin, Env: e.Env, URL: "http://" + addr, Health: health, LogPath: filepath.Join(logs, name+".log"),
			Args: append([]string{args[0], addrFlag, addr}, args[1:]...)}
		t.Cleanup(p.Close)
		if err := p.Start(3 * time.Minute); err != nil {
			t.Fatal(err)
		}
		return p
	}
	procs := map[Target]*Proc{
		Collector: newProc("collector", "-addr", "/readyz", "collect", "-kafka.brokers", b, "-collector.retry-after", "1s"),
		Sink: newProc("sink", "-metrics.addr", "/healthz", "sink", "-kafka.brokers", b, "-clickhouse.addr", ch.Addr(),
			"-clickhouse.http-addr", ch.SecondAddr(), "-clickhouse.database", database),
		Processor: newProc("processor", "-addr", "/healthz", "process", "-kafka.brokers", b, "-api.tokens", apiToken+":*",
			"-api.cluster-secret", clusterSecret, "-process.session-timeout", sessionTimeout+"ms"),
	}
	defer func() {
		if t.Failed() {
			for _, name := range []string{"collector", "sink", "processor"} {
				data, _ := os.ReadFile(filepath.Join(logs, name+".log"))
				t.Logf("%s log (last lines):\n%s", name, servicetest.LastLines(data, 40))
			}
		}
	}()

	// The load, and the faults while it runs.
	load := &Load{URL: procs[Collector].URL, WriteKey: writeKey, Rate: rate, PerRequest: 20, SegmentEvery: 4, Devices: 4000,
		T0: time.Now().Add(-time.Hour), Workers: 48, GiveUp: 2 * time.Minute}
	start := time.Now()
	injected := &faultLog{}
	var wg sync.WaitGroup
	for _, target := range Targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, f := range faults {
				if f.Target == target {
					inject(f, start, procs[target], cluster, sessionTimeout, injected)
				}
			}
		}()
	}
	load.Run(context.Background(), d)
	loadEnd := time.Since(start)
	wg.Wait()
	st := load.Stats()
	acked := load.Acked()

	// Everything runs again: the consumers reach the end.
	for _, target := range []Target{Collector, Sink, Processor} {
		if !procs[target].Running() {
			t.Errorf("%s is not running after the faults", target)
		}
	}
	drain := time.Now()
	var sinkLag, procLag int64
	waitFor(t, 6*time.Minute, "the sink and the processor to read everything", func() bool {
		sinkLag, procLag = lag(brokers, "engage-sink"), lag(brokers, "engage-process")
		return sinkLag == 0 && procLag == 0
	})
	drained := time.Since(drain)

	// (1) ClickHouse: every acknowledged record exactly once.
	stored := storedCounts(t, ch.SecondAddr())
	rawRows := queryInt(t, ch.SecondAddr(), "SELECT count() FROM "+database+".tags")
	var lost, twice, unacked []string
	for id := range acked {
		if stored[id] == 0 {
			lost = append(lost, id)
		}
	}
	for id, n := range stored {
		if n > 1 {
			twice = append(twice, fmt.Sprintf("%s×%d", id, n))
		}
		if _, ok := acked[id]; !ok {
			unacked = append(unacked, id)
		}
	}
	sort.Strings(lost)
	sort.Strings(twice)
	inTopic, err := kafkabus.CountMessages(context.Background(), brokers, kafkabus.TopicTags)
	if err != nil {
		t.Fatal(err)
	}

	// (2) The memberships of the processor that went through the faults,
	// then of a fresh one over the same records, undisturbed.
	chaosMembers := members(t, procs[Processor].URL)
	if _, err := procs[Processor].Signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Error(err)
	}
	ref := newProc("reference", "-addr", "/healthz", "process", "-kafka.brokers", b, "-api.tokens", apiToken+":*",
		"-api.cluster-secret", clusterSecret, "-process.group", refGroup, "-process.changelog-topic", refChangelog,
		"-process.changes-topic", refChanges)
	waitFor(t, 6*time.Minute, "the reference processor to read everything", func() bool { return lag(brokers, refGroup) == 0 })
	refMembers := members(t, ref.URL)
	differ := map[string][]string{}
	ndiffer := 0
	for _, s := range chaosSegments {
		a, r := chaosMembers[s[0]], refMembers[s[0]]
		for dev := range a {
			if !r[dev] {
				differ[s[0]] = append(differ[s[0]], dev+" (only after the chaos)")
			}
		}
		for dev := range r {
			if !a[dev] {
				differ[s[0]] = append(differ[s[0]], dev+" (only in the reference)")
			}
		}
		ndiffer += len(differ[s[0]])
	}
	// A plain count over the acknowledged records, for the segment
	// without a window: each record counted once.
	perDevice := map[string]int{}
	for _, r := range acked {
		if r.Name == "article_read" {
			perDevice[r.Device]++
		}
	}
	var countDiffer []string
	for dev, n := range perDevice {
		if (n >= countThreshold) != chaosMembers[countSegment][dev] {
			countDiffer = append(countDiffer, fmt.Sprintf("%s: %d acknowledged article_read, member %v", dev, n, chaosMembers[countSegment][dev]))
		}
	}
	for dev := range chaosMembers[countSegment] {
		if perDevice[dev] == 0 {
			countDiffer = append(countDiffer, dev+": a member without an acknowledged article_read")
		}
	}
	sort.Strings(countDiffer)

	// The report.
	var rep strings.Builder
	fmt.Fprintf(&rep, "chaos run: CHAOS_SEED=%d, load %s (faults within it), drained %s after\n", seed, loadEnd.Round(time.Second), drained.Round(time.Second))
	fmt.Fprintf(&rep, "load: offered %d records (%.1f/s; %d through Segment's /v1/batch) in requests of %d, acknowledged %d (%.1f/s over the load); %d attempts, failed by status (0: no connection) %v; gave up %d records; slowest acknowledged request %s; longest time without an acknowledgement %s\n",
		st.Offered, float64(st.Offered)/st.Ran.Seconds(), st.ViaSegment, load.PerRequest, st.Acked, float64(st.Acked)/st.Ran.Seconds(), st.Attempts, st.Failed, st.GaveUp,
		st.Slowest.Round(time.Millisecond), st.LongestGap.Round(time.Millisecond))
	fmt.Fprintf(&rep, "faults injected (%d):\n", len(injected.list()))
	for _, line := range injected.list() {
		fmt.Fprintf(&rep, "  %s\n", line)
	}
	for _, target := range []Target{Collector, Sink, Processor} {
		for _, u := range procs[target].Unexpected() {
			fmt.Fprintf(&rep, "  UNEXPECTED EXIT %s\n", u)
		}
	}
	fmt.Fprintf(&rep, "kafka: %d records in %s (%d more than acknowledged: retries of requests whose answer was lost)\n", inTopic, kafkabus.TopicTags, inTopic-int64(len(acked)))
	fmt.Fprintf(&rep, "clickhouse: %d rows (%d before FINAL collapses redeliveries), %d distinct message ids; acknowledged and missing: %d; there twice or more (FINAL): %d; there but never acknowledged: %d\n",
		sum(stored), rawRows, len(stored), len(lost), len(twice), len(unacked))
	fmt.Fprintf(&rep, "segments (members after the chaos / in the reference):")
	for _, s := range chaosSegments {
		fmt.Fprintf(&rep, " %s %d/%d", s[0], len(chaosMembers[s[0]]), len(refMembers[s[0]]))
	}
	fmt.Fprintf(&rep, "\nmemberships differing: %d; %q against a plain count of the acknowledged records: %d differing\n", ndiffer, countSegment, len(countDiffer))
	t.Log("\n" + rep.String())

	if len(lost) > 0 {
		t.Errorf("%d acknowledged records are not in ClickHouse, e.g. %v", len(lost), firstFew(lost))
	}
	if len(twice) > 0 {
		t.Errorf("%d records are in ClickHouse more than once after FINAL, e.g. %v", len(twice), firstFew(twice))
	}
	for name, devs := range differ {
		sort.Strings(devs)
		t.Errorf("segment %s: %d memberships differ from the undisturbed run, e.g. %v", name, len(devs), firstFew(devs))
	}
	if len(countDiffer) > 0 {
		t.Errorf("segment %s: %d devices differ from a plain count of the acknowledged records, e.g. %v", countSegment, len(countDiffer), firstFew(countDiffer))
	}
	if st.GaveUp > 0 {
		t.Errorf("%d records were never acknowledged, within %s of retries after the load", st.GaveUp, load.GiveUp)
	}
	if len(injected.errors()) > 0 {
		t.Errorf("faults that did not go as planned: %v", injected.errors())
	}
	for _, target := range []Target{Collector, Sink, Processor} {
		if u := procs[target].Unexpected(); len(u) > 0 {
			t.Errorf("%s exited by itself: %v", target, u)
		}
	}
	if len(chaosMembers[countSegment]) == 0 {
		t.Errorf("segment %s has no members: the run proves nothing", countSegment)
	}
}

// inject waits for the fault's moment, brings its target down, waits, and
// starts it again (a service: until healthy; a broker: until back in the
// cluster).
func inject(f Fault, start time.Time, p *Proc, cluster *servicetest.Cluster, sessionMS string, log *faultLog) {
	if wait := time.Until(start.Add(f.At)); wait > 0 {
		time.Sleep(wait)
	}
	at := time.Since(start)
	who := string(f.Target)
	var err error
	var exit time.Duration
	if f.Target == Broker {
		who = fmt.Sprintf("broker %d (%s)", f.Broker+1, cluster.Addr(f.Broker))
		args := []string{"node-down", strconv.Itoa(f.Broker + 1)}
		if f.Kind == Kill {
			args = append(args, "kill")
		}
		t0 := time.Now()
		err = clusterRun(cluster, sessionMS, args...)
		exit = time.Since(t0)
	} else {
		sig := syscall.SIGKILL
		if f.Kind == Term {
			sig = syscall.SIGTERM
		}
		exit, err = p.Signal(sig, 30*time.Second)
	}
	if err != nil {
		log.fail(fmt.Sprintf("%s %s at %s: %v", f.Kind, who, at.Round(100*time.Millisecond), err))
	}
	time.Sleep(f.Down)
	t0 := time.Now()
	if f.Target == Broker {
		err = clusterRun(cluster, sessionMS, "node-up", strconv.Itoa(f.Broker+1))
	} else {
		err = p.Start(3 * time.Minute)
	}
	back := time.Since(t0)
	if err != nil {
		log.fail(fmt.Sprintf("restart of %s at %s: %v", who, time.Since(start).Round(100*time.Millisecond), err))
	}
	log.add(at, fmt.Sprintf("%7s %s %s (down in %s), down %s, back (healthy) in %s", at.Round(100*time.Millisecond), f.Kind, who,
		exit.Round(10*time.Millisecond), f.Down.Round(100*time.Millisecond), back.Round(100*time.Millisecond)))
}

// clusterRun runs services.sh on the run's cluster (the same settings as
// servicetest.StartCluster gave it), returning its error rather than
// failing the test: the faults run on goroutines of their own.
func clusterRun(c *servicetest.Cluster, sessionMS string, args ...string) error {
	script := os.Getenv("ENGAGE_SERVICES_SCRIPT")
	cmd := exec.Command(script, args...)
	cmd.Env = append(os.Environ(), "ENGAGE_KAFKA_CLUSTER_SESSION_TIMEOUT_MS="+sessionMS, "ENGAGE_SERVICES_DIR="+c.Dir,
		"ENGAGE_KAFKA_CLUSTER_NODES="+strconv.Itoa(len(c.Ports)), "ENGAGE_KAFKA_CLUSTER_PORTS="+joinInts(c.Ports),
		"ENGAGE_KAFKA_CLUSTER_CONTROLLER_PORTS="+joinInts(c.ControllerPorts))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("services.sh %v: %v: %s", args, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

type faultLog struct {
	mu    sync.Mutex
	lines []faultLine
	bad   []string
}

type faultLine struct {
	at   time.Duration
	text string
}

func (l *faultLog) add(at time.Duration, s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, faultLine{at, s})
}

func (l *faultLog) fail(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bad = append(l.bad, s)
}

func (l *faultLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := append([]faultLine(nil), l.lines...)
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at < lines[j].at })
	out := make([]string, len(lines))
	for i, f := range lines {
		out[i] = f.text
	}
	return out
}

func (l *faultLog) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.bad...)
}

// refTopics creates the reference processor's changelog and changes
// topics, as engage topics creates the platform's (same partitions,
// replication and compaction).
func refTopics(t *testing.T, brokers []string) {
	t.Helper()
	var specs []kafkabus.TopicSpec
	for _, s := range kafkabus.PlatformTopics(8, 3) {
		switch s.Name {
		case kafkabus.TopicStateChangelog:
			s.Name = refChangelog
		case kafkabus.TopicSegmentChanges:
			s.Name = refChanges
		default:
			continue
		}
		specs = append(specs, s)
	}
	if len(specs) != 2 {
		t.Fatalf("the processor's topics are not among the platform's: %v", specs)
	}
	if _, err := kafkabus.EnsureTopics(context.Background(), brokers, specs); err != nil {
		t.Fatal(err)
	}
}

// members reads every chaos segment's members from a processor's API:
// device ids, one a line, every partition answered for.
func members(t *testing.T, base string) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	for _, s := range chaosSegments {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/segments/demo/"+s[0]+"/members", nil)
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Engage-Missing-Partitions") != "" {
			t.Fatalf("%s: members of %s: %d, missing partitions %q: %s", base, s[0], resp.StatusCode, resp.Header.Get("Engage-Missing-Partitions"), body)
		}
		set := map[string]bool{}
		sc := bufio.NewScanner(strings.NewReader(string(body)))
		for sc.Scan() {
			if dev := strings.TrimSpace(sc.Text()); dev != "" {
				set[dev] = true
			}
		}
		out[s[0]] = set
	}
	return out
}

// storedCounts returns each message id's rows in the tags table after
// FINAL (the ReplacingMergeTree collapses a redelivered record on its
// app, device and message id).
func storedCounts(t *testing.T, httpAddr string) map[string]int {
	t.Helper()
	body := query(t, httpAddr, "SELECT message_id, count() FROM "+database+".tags FINAL GROUP BY message_id FORMAT TabSeparated")
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		if line == "" {
			continue
		}
		id, n, ok := strings.Cut(line, "\t")
		k, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("ClickHouse answered %q", line)
		}
		out[id] = k
	}
	return out
}

func queryInt(t *testing.T, httpAddr, q string) int {
	t.Helper()
	body := query(t, httpAddr, q+" FORMAT TabSeparated")
	n, err := strconv.Atoi(strings.TrimSpace(body))
	if err != nil {
		t.Fatalf("ClickHouse answered %q to %s", body, q)
	}
	return n
}

// query runs q on ClickHouse's HTTP interface.
func query(t *testing.T, httpAddr, q string) string {
	t.Helper()
	resp, err := http.Post("http://"+httpAddr+"/?"+url.Values{"database": {database}}.Encode(), "text/plain", strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ClickHouse: %s: %d %s", q, resp.StatusCode, body)
	}
	return string(body)
}

func lag(brokers []string, group string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := kafkabus.GroupLag(ctx, brokers, group, kafkabus.TopicTags)
	if err != nil {
		return -1
	}
	return n
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting %s for %s", timeout, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func firstFew[T any](v []T) []T { return v[:min(5, len(v))] }

func envDuration(t *testing.T, name string, def, lo, hi time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < lo || v > hi {
		t.Fatalf("%s=%q: give a duration from %s to %s (e.g. 3m)", name, s, lo, hi)
	}
	return v
}

func envInt(t *testing.T, name string, def, lo, hi int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		t.Fatalf("%s=%q: give a whole number from %d to %d", name, s, lo, hi)
	}
	return v
}
