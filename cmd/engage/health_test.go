package main

// Every service answers /metrics, /healthz and /readyz; the collector's
// /readyz comes back by itself when its broker does.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// httpGet returns the status and body of a GET.
func httpGet(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// waitStatus polls url until it answers want, or fails after timeout
// with the last answer.
func waitStatus(t *testing.T, client *http.Client, url string, want int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := httpGet(t, client, url)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %q after %s, want %d", url, code, strings.TrimSpace(body), timeout, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// healthTopics creates the topics of one test's own pipeline on the shared
// broker, so that the services read and write nothing of anyone else's.
func healthTopics(t *testing.T, brokers []string, id string) map[string]string {
	t.Helper()
	topics := map[string]string{}
	var specs []kafkabus.TopicSpec
	for _, r := range []string{"tags", "state", "changes", "config", "sstate", "deliveries", "decisions", "dstate", "feedback", "inbox", "dead"} {
		topics[r] = id + "." + r
		spec := kafkabus.TopicSpec{Name: topics[r], Partitions: 2, ReplicationFactor: 1}
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
	if _, err := kafkabus.EnsureTopics(ctx, brokers, specs); err != nil {
		t.Fatal(err)
	}
	return topics
}

func TestEveryServiceAnswersMetricsHealthzReadyz(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	b := strings.Join(brokers, ",")
	_, ch, _ := chtest.Database(t)
	chAddr := strings.Join(ch.Addr, ",")
	id := fmt.Sprintf("health%d", time.Now().UnixNano()%1e9)
	topic := healthTopics(t, brokers, id)
	creds := filepath.Join(t.TempDir(), "credentials.yaml")
	if err := os.WriteFile(creds, []byte("apps: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := servicetest.BuildEngage(t)
	for _, c := range []struct {
		service, addrFlag string
		metric            string // one of the service's own metrics
		args              []string
	}{
		{"collect", "-addr", "engage_collector_", []string{"-kafka.brokers", b, "-collector.topic", topic["tags"], "-collector.inbox=false"}},
		{"sink", "-metrics.addr", "engage_sink_", []string{"-kafka.brokers", b, "-clickhouse.addr", chAddr, "-clickhouse.database", ch.Database,
			"-sink.topic", topic["tags"], "-sink.group", id + "-sink", "-sink.dead-topic", topic["dead"], "-sink.decisions=false", "-sink.feedback=false"}},
		{"process", "-addr", "engage_process_", []string{"-kafka.brokers", b, "-process.group", id + "-process", "-process.topic", topic["tags"],
			"-process.changelog-topic", topic["state"], "-process.changes-topic", topic["changes"], "-config.topic", topic["config"], "-clickhouse.addr", ""}},
		{"schedule", "-addr", "engage_schedule_", []string{"-kafka.brokers", b, "-schedule.group", id + "-schedule", "-schedule.topic", topic["changes"],
			"-schedule.changelog-topic", topic["sstate"], "-schedule.deliveries-topic", topic["deliveries"], "-schedule.decisions-topic", topic["decisions"],
			"-config.topic", topic["config"]}},
		{"deliver", "-addr", "engage_deliver_", []string{"-kafka.brokers", b, "-credentials", creds, "-deliver.group", id + "-deliver",
			"-deliver.topic", topic["deliveries"], "-deliver.changelog-topic", topic["dstate"], "-deliver.decisions-topic", topic["decisions"],
			"-deliver.feedback-topic", topic["feedback"], "-deliver.inbox-topic", topic["inbox"], "-deliver.tags-topic", topic["tags"]}},
		{"api", "-addr", "engage_api_request", []string{"-clickhouse.addr", chAddr, "-clickhouse.database", ch.Database, "-api.tokens", "health-test-token-0123456789:*"}},
	} {
		t.Run(c.service, func(t *testing.T) {
			// Started once it answers /healthz; /readyz must then become
			// 200 (a state restored, a broker and a database reached).
			s := e.Start(c.service, c.addrFlag, "/healthz", append([]string{"-log.level", "warn"}, c.args...)...)
			if code, body := httpGet(t, http.DefaultClient, s.URL+"/healthz"); code != 200 || body != "ok\n" {
				t.Errorf("/healthz: %d %q", code, body)
			}
			if body := waitStatus(t, http.DefaultClient, s.URL+"/readyz", 200, 90*time.Second); body != "ready\n" {
				t.Errorf("/readyz: %q, want ready", body)
			}
			if c.service == "api" {
				// A request of the API's own (refused), so that its
				// request metrics have a sample.
				if code, body := httpGet(t, http.DefaultClient, s.URL+"/v1/apps"); code/100 != 4 {
					t.Errorf("/v1/apps: %d %q, want a refusal", code, body)
				}
			}
			code, body := httpGet(t, http.DefaultClient, s.URL+"/metrics")
			if code != 200 || !strings.Contains(body, c.metric) || !strings.Contains(body, "process_resident_memory_bytes") {
				t.Errorf("/metrics: %d, want 200 with %s and the process metrics:\n%.2000s", code, c.metric, body)
			}
		})
	}
}

// The collector's /readyz fails when its broker stops (a write is refused)
// and comes back by itself, with no further request, once the broker is
// up again: a load balancer that stopped sending traffic must get it back.
func TestCollectorReadyRecoversWhenTheBrokerReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a broker of its own, stopped and started")
	}
	t.Parallel() // a broker of its own: overlaps the other tests that start their own
	k := servicetest.Start(t, "kafka")
	e := servicetest.BuildEngage(t)
	s := e.Start("collect", "-addr", "/readyz", "-log.level", "warn", "-kafka.brokers", k.Addr(), "-kafka.partitions", "2",
		"-collector.inbox=false", "-collector.produce-timeout", "3s")
	post := func() (int, string) {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/tags", bytes.NewReader([]byte(`[{"type":"session_start","deviceId":"d1"}]`)))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("demo-write-key", "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The topics were just created: the first writes may find a leader
	// not settled yet.
	deadline := time.Now().Add(time.Minute)
	for code, body := post(); code != 200; code, body = post() {
		if time.Now().After(deadline) {
			t.Fatalf("post with the broker up: %d %s", code, body)
		}
		time.Sleep(500 * time.Millisecond)
	}

	k.Run("down", "kafka")
	if code, body := post(); code != http.StatusServiceUnavailable {
		t.Fatalf("post with the broker down: %d %s, want 503", code, body)
	}
	code, body := httpGet(t, http.DefaultClient, s.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(strings.ToLower(body), "kafka") {
		t.Fatalf("/readyz with the broker down: %d %q, want 503 naming kafka", code, body)
	}
	// It stays so while the broker is down (the probe fails too) and says
	// why, on one line.
	time.Sleep(3 * time.Second)
	code, body = httpGet(t, http.DefaultClient, s.URL+"/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz 3 s later, the broker still down: %d %q", code, body)
	}
	if !strings.HasPrefix(body, "kafka: ") || !strings.Contains(body, "still failing") || strings.Count(body, "\n") != 1 {
		t.Errorf("/readyz 3 s later, the broker still down: %q, want one line: kafka: … still failing: why", body)
	}

	start := time.Now()
	k.Run("up", "kafka") // returns once the broker answers
	up := time.Now()
	// No post from here on.
	waitStatus(t, http.DefaultClient, s.URL+"/readyz", 200, 2*time.Minute)
	t.Logf("ready again, without traffic, %s after the broker was started (its start took %s)",
		time.Since(start).Round(100*time.Millisecond), up.Sub(start).Round(100*time.Millisecond))
	if code, body := post(); code != 200 {
		t.Fatalf("post once ready again: %d %s", code, body)
	}
}
