package main

// The acceptance test of exact history (issue 8, point 1): a stream of
// records whose event times lie weeks in the past, and a few hours ahead,
// posted over HTTP (natively and through Segment's Node SDK) to `engage
// collect` while `engage sink` and `engage process` run, on a broker that
// checks retention every second; then replayed by a new processor group.
// Records acknowledged, in the topic, read by each consumer and in
// ClickHouse must all be the same records.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

const (
	nativeDevices, nativeFuture = 410, 10 // 100 records each
	nodeDevices, nodeFuture     = 100, 5  // 100 track calls each
	perDevice                   = 100
	writeKey                    = "demo-write-key" // the embedded demo app
	apiToken                    = "exact-test-token-0123456789"
)

func TestAcknowledgedRecordsReadExactly(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: `make test` installs it (deploy/deps.sh): %v", err)
	}
	sdk, _ := filepath.Abs("../../examples/segment-node")
	if _, err := os.Stat(filepath.Join(sdk, "node_modules/@segment/analytics-node")); err != nil {
		t.Fatalf("@segment/analytics-node is not installed: run deploy/deps.sh (make test does): %v", err)
	}
	chConn, chCfg, _ := chtest.Database(t)
	broker := servicetest.Start(t, "kafka", "ENGAGE_KAFKA_RETENTION_CHECK_MS=1000")
	brokers := []string{broker.Addr()}
	b := broker.Addr()
	e := newEngage(t)

	e.run("topics", "-kafka.brokers", b, "-dev")
	// Segments roll every 2 s, as those of a busy topic roll by size, so
	// that retention has closed segments to look at.
	client := &kafka.Client{Addr: kafka.TCP(b), Timeout: 30 * time.Second}
	if _, err := client.IncrementalAlterConfigs(context.Background(), &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: kafkabus.TopicTags,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "segment.ms", Value: "2000"}}}}}); err != nil {
		t.Fatal(err)
	}
	// The replay group's own changelog and changes topics, co-partitioned.
	if _, err := kafkabus.EnsureTopics(context.Background(), brokers, []kafkabus.TopicSpec{
		{Name: kafkabus.TopicStateChangelog + ".replay", Partitions: 8, ReplicationFactor: 1, Compacted: true},
		{Name: kafkabus.TopicSegmentChanges + ".replay", Partitions: 8, ReplicationFactor: 1},
	}); err != nil {
		t.Fatal(err)
	}
	e.run("segments", "put", "-kafka.brokers", b, "-app", "demo", "-name", "readers", "-text", `did event "article_read"`)

	collect := e.start("collect", "/readyz", "-kafka.brokers", b)
	sink := e.start("sink", "/healthz", "-kafka.brokers", b, "-clickhouse.addr", strings.Join(chCfg.Addr, ","),
		"-clickhouse.http-addr", chtest.HTTPAddr(t), "-clickhouse.database", chCfg.Database)
	group1 := e.start("process", "/healthz", "-kafka.brokers", b, "-api.tokens", apiToken+":*", "-api.cluster-secret", "exact-test-cluster-secret-0123456789abcdef")

	// Both streams at once, while the consumers run.
	start := time.Now()
	var nativeAcked, nodeAcked map[string]bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); nativeAcked = postNative(t, collect) }()
	go func() { defer wg.Done(); nodeAcked = sendNode(t, node, sdk, collect) }()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	acked := map[string]bool{}
	for _, m := range []map[string]bool{nativeAcked, nodeAcked} {
		for id := range m {
			acked[id] = true
		}
	}
	t.Logf("%d records acknowledged (%d native, %d through Segment's Node SDK) in %s", len(acked), len(nativeAcked), len(nodeAcked), time.Since(start).Round(time.Millisecond))

	// The sink and the first group catch up; then retention runs again
	// (every second all along) before the replay starts.
	waitFor(t, 3*time.Minute, "the sink and the processor to read everything", func() bool {
		return groupLag(t, brokers, "engage-sink") == 0 && groupLag(t, brokers, "engage-process") == 0
	})
	kafkatest.WaitRetentionChecks(t, brokers, 3, time.Minute)
	group2 := e.start("process", "/healthz", "-kafka.brokers", b, "-api.tokens", apiToken+":*", "-api.cluster-secret", "exact-test-cluster-secret-0123456789abcdef", "-process.group", "engage-process-replay",
		"-process.changelog-topic", kafkabus.TopicStateChangelog+".replay", "-process.changes-topic", kafkabus.TopicSegmentChanges+".replay")
	waitFor(t, 3*time.Minute, "the replay group to read everything", func() bool { return groupLag(t, brokers, "engage-process-replay") == 0 })

	// The figures.
	inTopic, err := kafkabus.CountMessages(context.Background(), brokers, kafkabus.TopicTags)
	if err != nil {
		t.Fatal(err)
	}
	audit := kafkatest.ReadAsGroup(t, brokers, "exact-audit", kafkabus.TopicTags, time.Minute)
	var auditIDs []string
	for _, m := range audit {
		var r tag.Record
		if err := r.UnmarshalBinary(m.Value); err != nil {
			t.Fatalf("%d/%d: %v", m.Partition, m.Offset, err)
		}
		auditIDs = append(auditIDs, r.MessageID)
	}
	read1 := metric(t, group1, "engage_process_records_total")
	read2 := metric(t, group2, "engage_process_records_total")
	sunk := metric(t, sink, "engage_sink_rows_total") + metric(t, sink, "engage_sink_dead_letters_total")
	var rows, distinct uint64
	var minTime, maxTime time.Time
	if err := chConn.QueryRow(context.Background(), "SELECT count(), uniqExact(message_id), min(event_time), max(event_time) FROM "+chCfg.Database+".tags").
		Scan(&rows, &distinct, &minTime, &maxTime); err != nil {
		t.Fatal(err)
	}
	chIDs := clickhouseIDs(t, chConn, chCfg.Database)
	size1, size2 := segmentSize(t, group1), segmentSize(t, group2)
	t.Logf("acknowledged %d; in engage.tags %d; read by processor group 1 %d, group 2 (replay) %d, sink %d; ClickHouse %d rows, %d distinct message ids (event times %s .. %s); segment sizes %d and %d of %d devices",
		len(acked), inTopic, read1, read2, sunk, rows, distinct, minTime.UTC().Format(time.DateTime), maxTime.UTC().Format(time.DateTime), size1, size2, nativeDevices+nodeDevices)

	n := len(acked)
	for what, got := range map[string]int{"in the topic": int(inTopic), "read by processor group 1": read1, "read by processor group 2": read2,
		"read by the sink": sunk, "ClickHouse distinct message ids": int(distinct),
		"read by a new consumer group": len(audit)} {
		if got != n {
			t.Errorf("%s: %d, acknowledged %d", what, got, n)
		}
	}
	if missing, extra := diff(acked, auditIDs); len(missing)+len(extra) > 0 {
		t.Errorf("the topic, read by a new group: %d acknowledged records missing (e.g. %v), %d not acknowledged or twice (e.g. %v)", len(missing), firstFew(missing), len(extra), firstFew(extra))
	}
	if missing, extra := diff(acked, chIDs); len(missing)+len(extra) > 0 {
		t.Errorf("ClickHouse: %d acknowledged records missing (e.g. %v), %d not acknowledged (e.g. %v)", len(missing), firstFew(missing), len(extra), firstFew(extra))
	}
	if size1 != nativeDevices+nodeDevices || size2 != size1 {
		t.Errorf("segment sizes %d (group 1) and %d (replay), want every device: %d", size1, size2, nativeDevices+nodeDevices)
	}
	if time.Since(minTime) < 13*24*time.Hour || time.Until(maxTime) < time.Hour {
		t.Errorf("event times %s .. %s: the records must keep the weeks-old and future times they were sent with", minTime, maxTime)
	}
}

// engage runs the engage binary, built once for the test, with an
// environment free of ENGAGE_* variables: only the flags given count
// (servicetest.Engage, with this package's habits: quiet logs, the sink's
// address flag).
type engage struct {
	t   *testing.T
	st  *servicetest.Engage
	bin string
	env []string
}

func newEngage(t *testing.T) *engage {
	st := servicetest.BuildEngage(t)
	return &engage{t: t, st: st, bin: st.Bin, env: st.Env}
}

// run runs a command to its end.
func (e *engage) run(args ...string) {
	e.t.Helper()
	e.st.Run(args...)
}

// start starts a service listening on a free port and waits until path
// answers 200 there; it returns the base URL. The service gets SIGTERM
// when the test ends; its log is shown if the test failed.
func (e *engage) start(service, path string, args ...string) string {
	e.t.Helper()
	flag := "-addr"
	if service == "sink" {
		flag = "-metrics.addr"
	}
	return e.st.Start(service, flag, path, append([]string{"-log.level", "warn"}, args...)...).URL
}

// waitFor polls cond every 100 ms until it holds, or fails the test after
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting %s for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func groupLag(t *testing.T, brokers []string, group string) int64 {
	t.Helper()
	lag, err := kafkabus.GroupLag(context.Background(), brokers, group, kafkabus.TopicTags)
	if err != nil {
		return -1
	}
	return lag
}

// eventBase is when device d's events start: weeks in the past, or hours
// ahead for the last future devices of n (as stream.mjs does).
func eventBase(now time.Time, d, n, future int) time.Time {
	if d < n-future {
		return now.Add(-time.Duration(14+d%43) * 24 * time.Hour)
	}
	return now.Add(time.Duration(2+d%20) * time.Hour)
}

// postNative posts the native stream, 50 records a request, 8 requests at
// a time, and returns the message ids acknowledged.
func postNative(t *testing.T, url string) map[string]bool {
	now := time.Now().UTC()
	type request struct {
		body []byte
		ids  []string
	}
	work := make(chan request)
	go func() {
		defer close(work)
		for d := range nativeDevices {
			base := eventBase(now, d, nativeDevices, nativeFuture)
			for r := 0; r < perDevice; r += 50 {
				var req request
				var recs []map[string]any
				for i := r; i < r+50; i++ {
					id := fmt.Sprintf("nat-d%d-%d", d, i)
					req.ids = append(req.ids, id)
					recs = append(recs, map[string]any{"type": "event", "deviceId": fmt.Sprintf("nat-d%d", d), "messageId": id, "name": "article_read",
						"time": base.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano), "extras": map[string]any{"category": "sport", "words": 100 + i}})
				}
				req.body, _ = json.Marshal(recs)
				work <- req
			}
		}
	}()
	var mu sync.Mutex
	acked := map[string]bool{}
	client := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for req := range work {
				hr, _ := http.NewRequest(http.MethodPost, url+"/v1/tags", bytes.NewReader(req.body))
				hr.Header.Set("Content-Type", "application/json")
				hr.SetBasicAuth(writeKey, "")
				resp, err := client.Do(hr)
				if err != nil {
					t.Errorf("native request: %v", err)
					continue
				}
				var body struct{ Accepted int }
				err = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || err != nil || body.Accepted != len(req.ids) {
					t.Errorf("native request: status %d, accepted %d of %d (%v)", resp.StatusCode, body.Accepted, len(req.ids), err)
					continue
				}
				mu.Lock()
				for _, id := range req.ids {
					acked[id] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return acked
}

// sendNode sends the Node SDK's stream (examples/segment-node/stream.mjs)
// and returns the message ids acknowledged: all of them, or the test fails.
func sendNode(t *testing.T, node, dir, url string) map[string]bool {
	cmd := exec.Command(node, "stream.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ENGAGE_HOST="+url, "ENGAGE_WRITE_KEY="+writeKey, "ENGAGE_PREFIX=node",
		"ENGAGE_DEVICES="+strconv.Itoa(nodeDevices), "ENGAGE_EVENTS="+strconv.Itoa(perDevice), "ENGAGE_FUTURE_DEVICES="+strconv.Itoa(nodeFuture))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var summary struct {
		OK   bool `json:"ok"`
		Sent int  `json:"sent"`
	}
	if err != nil || json.Unmarshal(bytes.TrimSpace(out), &summary) != nil || !summary.OK || summary.Sent != nodeDevices*perDevice {
		t.Errorf("stream.mjs: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
		return nil
	}
	acked := map[string]bool{}
	for d := range nodeDevices {
		for i := range perDevice {
			acked[fmt.Sprintf("node-d%d-%d", d, i)] = true
		}
	}
	return acked
}

// metric returns the sum of a counter's samples on a /metrics page.
func metric(t *testing.T, url, name string) int {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("%s: %q", url, line)
		}
		sum, found = sum+v, true
	}
	if !found {
		t.Fatalf("%s/metrics has no %s", url, name)
	}
	return int(sum)
}

// segmentSize asks a processor's API for the size of the readers segment,
// over all partitions.
func segmentSize(t *testing.T, url string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/segments/demo/readers", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var info struct {
		Size    *int  `json:"size"`
		Missing []int `json:"missing_partitions"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &info) != nil || info.Size == nil || len(info.Missing) > 0 {
		t.Fatalf("%s: segment readers: %d %s", url, resp.StatusCode, body)
	}
	return *info.Size
}

// clickhouseIDs returns the distinct message ids of the tags table.
func clickhouseIDs(t *testing.T, conn driver.Conn, db string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT DISTINCT message_id FROM "+db+".tags")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// diff compares ids with the acknowledged ones: missing were acknowledged
// and are not there, extra are there and were not acknowledged, or are
// there twice.
func diff(acked map[string]bool, ids []string) (missing, extra []string) {
	seen := map[string]bool{}
	for _, id := range ids {
		if !acked[id] || seen[id] {
			extra = append(extra, id)
		}
		seen[id] = true
	}
	for id := range acked {
		if !seen[id] {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

func firstFew(ids []string) []string { return ids[:min(5, len(ids))] }
