package main

// Durability on a real cluster: three Kafka brokers of the test's own,
// the platform's topics with replication 3 and min.insync.replicas 2 (the
// defaults of engage topics), the collector under steady load with the
// sink and the processor reading; a third of the way through, the broker
// that leads the first partition of the tags is killed (SIGKILL) and the
// load goes on with two. Every acknowledged record must be in ClickHouse,
// counted once; the processor's segment must count each device's records
// once; both consumer groups must reach the end with the two brokers left.
// Then the broker comes back and every partition is replicated three times
// again.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

const (
	failoverDevices   = 2400 // device d sends d%6+1 records: 8400 in all
	failoverPerReq    = 30   // records per request
	failoverInterval  = 90 * time.Millisecond
	failoverWorkers   = 32
	failoverThreshold = 4 // the segment: at least 4 article_read
)

func TestBrokerKilledUnderLoadLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a cluster of three brokers and two minutes of load")
	}
	cluster := servicetest.StartCluster(t, 3)
	chConn, chCfg, _ := chtest.Database(t)
	brokers := cluster.Brokers()
	b := strings.Join(brokers, ",")
	e := servicetest.BuildEngage(t)

	// engage topics' defaults on three brokers: replication 3, min.insync 2.
	out := topicsCmd(t, e, "-kafka.brokers", b)
	n := len(kafkabus.PlatformTopics(8, 3))
	if out.err != nil || strings.Count(out.stdout, "created") != n || strings.Count(out.stdout, "replicas=3 min.insync=2 ") != n {
		t.Fatalf("engage topics on three brokers: %v\n%s%s", out.err, out.stdout, out.stderr)
	}
	// A topic whose min.insync.replicas was lowered (by hand, an older
	// version) is reported, and -fix-durability raises it.
	setTopicConfig(t, brokers, kafkabus.TopicFeedback, kafkabus.ConfigMinInSync, "1")
	deadline := time.Now().Add(30 * time.Second)
	for out = topicsCmd(t, e, "-kafka.brokers", b); !strings.Contains(out.stdout, "problem: min.insync.replicas=1, 2 asked"); out = topicsCmd(t, e, "-kafka.brokers", b) {
		if time.Now().After(deadline) {
			t.Fatalf("the lowered min.insync.replicas is not reported: %v\n%s%s", out.err, out.stdout, out.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out.err == nil {
		t.Fatalf("a topic below the min.insync.replicas asked must fail engage topics:\n%s", out.stdout)
	}
	// The brokers apply a config change from the metadata log, each in
	// its own time, and a run asks one of them: until the fix is seen, the
	// run may still have been answered by a broker that had the old value.
	for out = topicsCmd(t, e, "-kafka.brokers", b, "-fix-durability"); !strings.Contains(out.stdout, "fixed:"); out = topicsCmd(t, e, "-kafka.brokers", b, "-fix-durability") {
		if out.err != nil || time.Now().After(deadline) {
			t.Fatalf("engage topics -fix-durability: %v\n%s%s", out.err, out.stdout, out.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out.err != nil || !strings.Contains(out.stdout, "engage.feedback ") || !strings.Contains(out.stdout, "  fixed: min.insync.replicas 1 -> 2\n") || strings.Count(out.stdout, "fixed:") != 1 ||
		strings.Count(out.stdout, "replicas=3 min.insync=2 ") != n {
		t.Fatalf("engage topics -fix-durability: %v\n%s%s", out.err, out.stdout, out.stderr)
	}

	e.Run("segments", "put", "-kafka.brokers", b, "-app", "demo", "-name", "readers", "-text", fmt.Sprintf(`did event "article_read" at least %d times`, failoverThreshold))
	keepLogs(t, cluster)
	collect := e.Start("collect", "-addr", "/readyz", "-log.level", "warn", "-kafka.brokers", b, "-collector.retry-after", "1s").URL
	e.Start("sink", "-metrics.addr", "/healthz", "-log.level", "warn", "-kafka.brokers", b, "-clickhouse.addr", strings.Join(chCfg.Addr, ","),
		"-clickhouse.http-addr", chtest.HTTPAddr(t), "-clickhouse.database", chCfg.Database)
	process := e.Start("process", "-addr", "/healthz", "-log.level", "warn", "-kafka.brokers", b, "-api.tokens", apiToken+":*",
		"-api.cluster-secret", "failover-test-cluster-secret-0123456789abcdef").URL

	// The broker to kill: the leader of the tags' partition 0.
	victim, led := leaderOf(t, brokers, kafkabus.TopicTags, 0)
	t.Logf("broker %d (%s) leads partitions %v of %s", victim+1, cluster.Addr(victim), led, kafkabus.TopicTags)

	// The load: requests at a steady pace, each retried on 503 or a network
	// error with the same message ids (as an SDK does) until acknowledged.
	reqs := failoverRequests()
	l := &load{url: collect}
	var killedAt time.Time
	start := time.Now()
	work := make(chan []string)
	var wg sync.WaitGroup
	for range failoverWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ids := range work {
				l.send(ids)
			}
		}()
	}
	tick := time.NewTicker(failoverInterval)
	for i, ids := range reqs {
		if i == len(reqs)/3 {
			killedAt = time.Now()
			how := "killed (SIGKILL)"
			if os.Getenv("ENGAGE_FAILOVER_STOP") == "term" { // a controlled shutdown instead
				how = "stopped (SIGTERM)"
				cluster.StopBroker(victim)
			} else {
				cluster.KillBroker(victim)
			}
			t.Logf("%s broker %d after %d of %d requests (%s)", how, victim+1, i, len(reqs), killedAt.Sub(start).Round(time.Millisecond))
		}
		<-tick.C
		work <- ids
	}
	tick.Stop()
	close(work)
	wg.Wait()
	loadTime := time.Since(start)

	acked := l.acked()
	sent := failoverDevices / 6 * 21
	failed, statuses, beforeKill, lastFail, slowest := l.failures(killedAt)
	recovery := time.Duration(0)
	if !lastFail.IsZero() {
		recovery = lastFail.Sub(killedAt)
	}
	t.Logf("load: %d records in %d requests over %s (%.0f records/s); acknowledged %d; %d attempts failed (by status, 0 a network error: %v; %d before the kill); last failure %s after the kill; slowest acknowledged request %s",
		sent, len(reqs), loadTime.Round(time.Millisecond), float64(sent)/loadTime.Seconds(), len(acked), failed, statuses, beforeKill, recovery.Round(time.Millisecond), slowest.Round(time.Millisecond))
	if gaveUp := l.gaveUp(); len(gaveUp) > 0 {
		t.Errorf("%d requests never acknowledged within 90 s of retries", len(gaveUp))
	}

	// The consumers reach the end with two brokers.
	caught := time.Now()
	var sinkLag, processLag int64
	waitFor(t, 3*time.Minute, "the sink and the processor to read everything with two brokers", func() bool {
		sinkLag, processLag = groupLag(t, brokers, "engage-sink"), groupLag(t, brokers, "engage-process")
		if time.Since(caught)%(10*time.Second) < 100*time.Millisecond {
			t.Logf("lag: sink %d, processor %d", sinkLag, processLag)
		}
		return sinkLag == 0 && processLag == 0
	})
	t.Logf("consumer groups at lag 0 %s after the load ended", time.Since(caught).Round(time.Millisecond))

	inTopic, err := kafkabus.CountMessages(context.Background(), brokers, kafkabus.TopicTags)
	if err != nil {
		t.Fatal(err)
	}
	var rows, distinct uint64
	if err := chConn.QueryRow(context.Background(), "SELECT count(), uniqExact(message_id) FROM "+chCfg.Database+".tags").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	ids := clickhouseIDs(t, chConn, chCfg.Database)
	missing, extra := diff(acked, ids)
	size := segmentSize(t, process)
	want := 0
	perDevice := map[string]int{}
	for id := range acked {
		perDevice[id[:strings.LastIndexByte(id, '-')]]++
	}
	for _, k := range perDevice {
		if k >= failoverThreshold {
			want++
		}
	}
	t.Logf("in %s %d records (%d written twice by a retry); ClickHouse %d rows, %d distinct message ids; acknowledged lost %d, not acknowledged yet present %d; segment %d devices (a plain count: %d)",
		kafkabus.TopicTags, inTopic, inTopic-int64(len(acked)), rows, distinct, len(missing), len(extra), size, want)
	if len(missing) > 0 {
		t.Errorf("%d acknowledged records are not in ClickHouse, e.g. %v", len(missing), firstFew(missing))
	}
	if len(extra) > 0 {
		// Every request was acknowledged in the end, so nothing in
		// ClickHouse may be unacknowledged, nor there twice.
		t.Errorf("%d message ids in ClickHouse were not acknowledged or are there twice, e.g. %v", len(extra), firstFew(extra))
	}
	if int(distinct) != len(acked) {
		t.Errorf("ClickHouse counts %d distinct records, %d were acknowledged", distinct, len(acked))
	}
	if size != want {
		t.Errorf("segment readers: %d devices, a plain count over the acknowledged records says %d", size, want)
	}

	// The broker comes back and catches up: every partition of every
	// topic in sync on three brokers again.
	back := time.Now()
	cluster.StartBroker(victim)
	waitFor(t, 3*time.Minute, "every partition to be in sync on three brokers again", func() bool { return underReplicated(t, brokers) == 0 })
	t.Logf("broker %d back and every partition in sync on 3 brokers %s after it was started", victim+1, time.Since(back).Round(time.Millisecond))
	if lag := groupLag(t, brokers, "engage-sink") + groupLag(t, brokers, "engage-process"); lag != 0 {
		t.Errorf("lag %d after the broker came back", lag)
	}
}

// keepLogs copies the services' and the brokers' logs into
// $ENGAGE_FAILOVER_LOGS, when set, as the test ends.
func keepLogs(t *testing.T, cluster *servicetest.Cluster) {
	dir := os.Getenv("ENGAGE_FAILOVER_LOGS")
	if dir == "" {
		return
	}
	start := time.Now()
	t.Cleanup(func() {
		_ = os.MkdirAll(dir, 0o755)
		logs, _ := filepath.Glob(filepath.Join(filepath.Dir(cluster.Dir), "*", "*.log"))
		brokerLogs, _ := filepath.Glob(filepath.Join(cluster.Dir, "kafka-node*", "logs", "server.log"))
		for _, f := range append(logs, brokerLogs...) {
			if info, err := os.Stat(f); err != nil || info.ModTime().Before(start) {
				continue
			}
			data, _ := os.ReadFile(f)
			name := filepath.Base(f)
			if name == "server.log" {
				name = filepath.Base(filepath.Dir(filepath.Dir(f))) + ".log"
			}
			_ = os.WriteFile(filepath.Join(dir, name), data, 0o644)
		}
		t.Logf("logs in %s", dir)
	})
}

type topicsOutput struct {
	stdout, stderr string
	err            error
}

// topicsCmd runs engage topics and returns what it printed and its error.
func topicsCmd(t *testing.T, e *servicetest.Engage, args ...string) topicsOutput {
	t.Helper()
	cmd := exec.Command(e.Bin, append([]string{"topics"}, args...)...)
	cmd.Env = e.Env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return topicsOutput{out.String(), errOut.String(), err}
}

func setTopicConfig(t *testing.T, brokers []string, topic, key, value string) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	resp, err := client.IncrementalAlterConfigs(context.Background(), &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: key, Value: value, ConfigOperation: kafka.ConfigOperationSet}}}}})
	if err == nil && len(resp.Resources) == 1 {
		err = resp.Resources[0].Error
	}
	if err != nil {
		t.Fatalf("set %s=%s on %s: %v", key, value, topic, err)
	}
}

// leaderOf returns the index (0-based) of the broker that leads partition
// p of topic, and every partition of the topic it leads.
func leaderOf(t *testing.T, brokers []string, topic string, p int) (int, []int) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	// A broker may answer before it has learnt the leaders of a topic just
	// made (leader -1, or the partition missing): ask again for a while.
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := client.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil || len(md.Topics) != 1 {
			t.Fatalf("metadata of %s: %v", topic, err)
		}
		leader := -1
		for _, part := range md.Topics[0].Partitions {
			if part.ID == p {
				leader = part.Leader.ID
			}
		}
		if leader < 1 || leader > len(brokers) {
			if time.Now().After(deadline) {
				t.Fatalf("partition %d of %s: leader %d after 30 s", p, topic, leader)
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		var led []int
		for _, part := range md.Topics[0].Partitions {
			if part.Leader.ID == leader {
				led = append(led, part.ID)
			}
		}
		sort.Ints(led)
		return leader - 1, led // services.sh numbers the brokers from 1
	}
}

// underReplicated counts the partitions of the platform's topics with
// fewer in-sync replicas than replicas (or no answer: -1).
func underReplicated(t *testing.T, brokers []string) int {
	t.Helper()
	var names []string
	for _, s := range kafkabus.PlatformTopics(8, 3) {
		names = append(names, s.Name)
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(context.Background(), &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return -1
	}
	n := 0
	for _, topic := range md.Topics {
		for _, p := range topic.Partitions {
			if len(p.Isr) < len(p.Replicas) || len(p.Replicas) != 3 {
				n++
			}
		}
	}
	return n
}

// failoverRequests returns the requests' message ids: device d's i-th
// record is fo-d<d>-<i>; the records go out round by round (every device's
// first, then the second of those that have one, …), so that each
// device's records are spread over the whole load.
func failoverRequests() [][]string {
	var all []string
	for round := range 6 {
		for d := range failoverDevices {
			if round < d%6+1 {
				all = append(all, fmt.Sprintf("fo-d%d-%d", d, round))
			}
		}
	}
	var reqs [][]string
	for len(all) > 0 {
		k := min(failoverPerReq, len(all))
		reqs, all = append(reqs, all[:k]), all[k:]
	}
	return reqs
}

// load sends requests and keeps what each attempt got.
type load struct {
	url      string
	mu       sync.Mutex
	ack      map[string]bool
	attempts []attempt
	lost     [][]string
}

type attempt struct {
	start, end time.Time
	status     int // 0: a network error
}

func (l *load) send(ids []string) {
	recs := make([]map[string]any, len(ids))
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i, id := range ids {
		recs[i] = map[string]any{"type": "event", "deviceId": id[:strings.LastIndexByte(id, '-')], "messageId": id, "name": "article_read",
			"time": now, "extras": map[string]any{"category": "sport"}}
	}
	body, _ := json.Marshal(recs)
	client := &http.Client{Timeout: 30 * time.Second}
	give := time.Now().Add(90 * time.Second)
	for {
		a := attempt{start: time.Now()}
		hr, _ := http.NewRequest(http.MethodPost, l.url+"/v1/tags", bytes.NewReader(body))
		hr.Header.Set("Content-Type", "application/json")
		hr.SetBasicAuth(writeKey, "")
		resp, err := client.Do(hr)
		wait := 500 * time.Millisecond
		if err == nil {
			a.status = resp.StatusCode
			var answer struct{ Accepted int }
			_ = json.NewDecoder(resp.Body).Decode(&answer)
			resp.Body.Close()
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
				wait = min(time.Duration(s)*time.Second, 2*time.Second)
			}
			if a.status == http.StatusOK && answer.Accepted != len(ids) {
				a.status = -answer.Accepted // a partial acceptance: not expected
			}
		}
		a.end = time.Now()
		l.mu.Lock()
		l.attempts = append(l.attempts, a)
		if a.status == http.StatusOK {
			if l.ack == nil {
				l.ack = map[string]bool{}
			}
			for _, id := range ids {
				l.ack[id] = true
			}
		}
		l.mu.Unlock()
		if a.status == http.StatusOK {
			return
		}
		if time.Now().After(give) {
			l.mu.Lock()
			l.lost = append(l.lost, ids)
			l.mu.Unlock()
			return
		}
		time.Sleep(wait)
	}
}

func (l *load) acked() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ack
}

func (l *load) gaveUp() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// failures returns the attempts that failed, by status (0: a network
// error), how many of them before since, when the last one ended, and the
// longest acknowledged attempt.
func (l *load) failures(since time.Time) (n int, by map[int]int, before int, last time.Time, slowest time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	by = map[int]int{}
	for _, a := range l.attempts {
		if a.status == http.StatusOK {
			slowest = max(slowest, a.end.Sub(a.start))
			continue
		}
		if a.end.Before(since) {
			before++
		}
		n++
		by[a.status]++
		if a.end.After(last) {
			last = a.end
		}
	}
	return n, by, before, last, slowest
}
