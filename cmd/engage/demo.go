package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/engine"
	"github.com/openengage/engage/segments/processor"
)

const demoKey = "demo-write-key"

func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("demo")
	var kf kafkaFlags
	kf.register(fs)
	show := fs.Int("show", 12, "how many arrived records to print in full")
	if err := parse(fs, args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	brokers, stopKafka, err := kf.connect(ctx, log)
	if err != nil {
		return err
	}
	defer stopKafka()
	where := "an embedded in-process broker (kfake)"
	if kf.brokers != "" {
		where = "Kafka at " + kf.brokers
	}
	fmt.Fprintf(stdout, "== OpenEngage demo: collector → %s, topic %s\n", where, kafkabus.TopicTags)

	apps, err := loadApps("")
	if err != nil {
		return err
	}
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, kafkabus.TopicTags), log)
	if err != nil {
		return err
	}
	defer prod.Close()
	srv, err := collector.New(collector.DefaultConfig(), apps, prod, prometheus.NewRegistry(), log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srvCtx, stopSrv := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(srvCtx, ln) }()
	defer func() { stopSrv(); <-done }()
	base := "http://" + ln.Addr().String()

	// Offsets before the demo, so that only its records are shown when the
	// brokers are shared.
	before, err := kafkabus.ReadTopic(ctx, brokers, kafkabus.TopicTags, 0)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, m := range before {
		seen[fmt.Sprintf("%d/%d", m.Partition, m.Offset)] = true
	}

	now := time.Now().UTC()
	sent := 0
	for _, step := range demoRequests(now) {
		status, body, err := post(ctx, base+step.path, step.contentType, step.gzip, step.body)
		if err != nil {
			return fmt.Errorf("%s: %w", step.what, err)
		}
		fmt.Fprintf(stdout, "\n-> POST %s (%s)\n<- %d %s\n", step.path, step.what, status, strings.TrimSpace(body))
		var resp collector.Response
		_ = json.Unmarshal([]byte(body), &resp)
		sent += resp.Accepted
	}

	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msgs, err := kafkabus.ReadTopic(rctx, brokers, kafkabus.TopicTags, len(before)+sent)
	if err != nil {
		return err
	}
	kinds := map[string]int{}
	partitions := map[string]map[int]bool{}
	var recs []tag.Record
	for _, m := range msgs {
		if seen[fmt.Sprintf("%d/%d", m.Partition, m.Offset)] {
			continue
		}
		var r tag.Record
		if err := r.UnmarshalBinary(m.Value); err != nil {
			return fmt.Errorf("record at %d/%d: %w", m.Partition, m.Offset, err)
		}
		recs = append(recs, r)
		kinds[r.Kind.String()]++
		if partitions[string(m.Key)] == nil {
			partitions[string(m.Key)] = map[int]bool{}
		}
		partitions[string(m.Key)][m.Partition] = true
	}
	fmt.Fprintf(stdout, "\n== %d records acknowledged by the collector, %d read back from %s\n", sent, len(recs), kafkabus.TopicTags)
	fmt.Fprintf(stdout, "by type: %s\n", formatCounts(kinds))
	keys := make([]string, 0, len(partitions))
	for k := range partitions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(stdout, "key %-22s → partition %v\n", k, setKeys(partitions[k]))
	}
	fmt.Fprintf(stdout, "\nfirst %d records as they arrived (binary codec v%d, shown as JSON):\n", min(*show, len(recs)), tag.CodecVersion)
	for i, r := range recs {
		if i >= *show {
			break
		}
		b, _ := json.Marshal(r)
		fmt.Fprintf(stdout, "  %s\n", b)
	}
	if len(recs) != sent {
		return fmt.Errorf("read back %d records, the collector acknowledged %d", len(recs), sent)
	}
	return demoSegments(ctx, brokers, prod, log, stdout)
}

// demoSegments defines segments, runs the segment processor over the
// records just sent, and shows the changes it produced and an explanation.
func demoSegments(ctx context.Context, brokers []string, prod *kafkabus.Producer, log *slog.Logger, stdout io.Writer) error {
	apps, err := loadApps("")
	if err != nil {
		return err
	}
	plan := apps.List()[0].Plan
	defs := []processor.Definition{
		{App: "demo", Name: "sport_readers", Text: `did event "article_read" where category = "sport"`},
		{App: "demo", Name: "logged_in", Text: `app_info "logged_in" = true`},
		{App: "demo", Name: "readers_to_convert", Text: `did event "article_read" at least 3 times in last 1d and not segment "logged_in"`},
	}
	fmt.Fprintf(stdout, "\n== segments (checked against the demo app's tag plan, stored in %s):\n", kafkabus.TopicConfig)
	var cfgMsgs []bus.Message
	for _, d := range defs {
		d.UpdatedAt = time.Now().UTC()
		if _, err := processor.Validate(d, plan, defs); err != nil {
			return fmt.Errorf("demo segment %s: %w", d.Name, err)
		}
		v, _ := json.Marshal(d)
		cfgMsgs = append(cfgMsgs, bus.Message{Topic: kafkabus.TopicConfig, Key: processor.ConfigKey(d.App, d.Name), Value: v})
		fmt.Fprintf(stdout, "  %-20s %s\n", d.Name, d.Text)
	}
	if err := prod.Produce(ctx, cfgMsgs); err != nil {
		return err
	}
	changesBefore, err := kafkabus.CountMessages(ctx, brokers, kafkabus.TopicSegmentChanges)
	if err != nil {
		return err
	}
	cfg := processor.DefaultConfig(brokers)
	cfg.Group = fmt.Sprintf("engage-demo-%d", time.Now().UnixNano())
	cfg.SessionTimeout = 6 * time.Second
	store := processor.NewStore()
	proc, err := processor.New(cfg, store, prod, nil, log)
	if err != nil {
		return err
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- proc.Run(pctx) }()
	defer func() { stop(); <-done }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		lag, err := kafkabus.GroupLag(ctx, brokers, cfg.Group, cfg.Topic)
		if err == nil && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("segment processor: lag %d after 60 s (%v)", lag, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	n, err := kafkabus.CountMessages(ctx, brokers, kafkabus.TopicSegmentChanges)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msgs, err := kafkabus.ReadTopic(rctx, brokers, kafkabus.TopicSegmentChanges, int(n))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n== segment changes produced by the processor to %s:\n", kafkabus.TopicSegmentChanges)
	shown := 0
	for _, m := range msgs {
		var c processor.ChangeMessage
		if json.Unmarshal(m.Value, &c) != nil || c.App != "demo" {
			continue
		}
		if c.Kind == processor.KindRecord { // a device or app-info record, for the scheduler
			shown++
			continue
		}
		dir := "exits "
		if c.Enter {
			dir = "enters"
		}
		fmt.Fprintf(stdout, "  %-10s %s %-20s (%s)\n", c.DeviceID, dir, c.Segment, c.Cause)
		shown++
	}
	if int64(shown) < n-changesBefore || shown == 0 {
		return fmt.Errorf("segment processor: %d changes shown of %d produced", shown, n-changesBefore)
	}
	var text string
	if _, err := proc.Each(ctx, func(_ int, e *engine.Engine, now time.Time) {
		if x, err := e.Explain("demo", "readers_to_convert", "tablet-bo", now); err == nil && x.Known {
			text = x.String()
		}
	}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n== why (GET /v1/segments/demo/readers_to_convert/explain?device=tablet-bo):\n%s", text)
	return demoCampaigns(ctx, brokers, prod, log, stdout, plan, defs)
}

type demoRequest struct {
	what, path, contentType string
	gzip                    bool
	body                    []byte
}

func demoRequests(now time.Time) []demoRequest {
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	native := fmt.Sprintf(`[
 {"type":"device","deviceId":"phone-ana","time":%q,"device":{"platform":"ios","appVersion":"2.3.1","osVersion":"17.2","model":"iPhone15,2","locale":"fr-FR","timeZone":"Europe/Paris","country":"FR","pushToken":"a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90","pushProvider":"apns"}},
 {"type":"session_start","deviceId":"phone-ana","session":"s1","time":%q},
 {"type":"activity_start","deviceId":"phone-ana","session":"s1","name":"login","time":%q},
 {"type":"job","deviceId":"phone-ana","name":"login","durationMs":1830,"time":%q},
 {"type":"event","deviceId":"phone-ana","userId":"ana","name":"logged_in","activity":"login","time":%q},
 {"type":"app_info","deviceId":"phone-ana","userId":"ana","appInfo":{"logged_in":true,"plan":"premium","subscription_expiry":{"$date":"2027-01-31T00:00:00Z"}},"time":%q},
 {"type":"activity_start","deviceId":"phone-ana","session":"s1","name":"article","extras":{"category":"sport"},"time":%q},
 {"type":"event","deviceId":"phone-ana","name":"article_read","activity":"article","extras":{"category":"sport","words":640,"premium":false},"time":%q},
 {"type":"event","deviceId":"phone-ana","name":"shared","extras":{"network":"mastodon"},"time":%q},
 {"type":"session_end","deviceId":"phone-ana","session":"s1","durationMs":95000,"time":%q}
]`, ts(-10*time.Minute), ts(-10*time.Minute), ts(-9*time.Minute), ts(-9*time.Minute), ts(-8*time.Minute), ts(-8*time.Minute), ts(-7*time.Minute), ts(-6*time.Minute), ts(-5*time.Minute), ts(-4*time.Minute))
	var nd strings.Builder
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&nd, `{"type":"event","deviceId":"tablet-bo","name":"article_read","extras":{"category":"culture","words":%d},"time":%q}`+"\n", 300+i*50, ts(time.Duration(i-20)*time.Minute))
	}
	fmt.Fprintf(&nd, `{"type":"error","deviceId":"tablet-bo","name":"connection_failure","extras":{"code":503},"time":%q}`+"\n", ts(-14*time.Minute))
	mixed := fmt.Sprintf(`[
 {"type":"event","deviceId":"phone-cy","name":"article_read","extras":{"category":"tech"},"time":%q},
 {"type":"event","deviceId":"phone-cy","extras":{"category":"tech"}},
 {"type":"event","deviceId":"phone-cy","name":"bookmark","extras":{"9lives":true}},
 {"type":"event","deviceId":"phone-cy","name":"surprise_event","time":%q}
]`, ts(-3*time.Minute), ts(-2*time.Minute))
	segment := fmt.Sprintf(`{"sentAt":%q,"batch":[
 {"type":"identify","userId":"dan","anonymousId":"web-dan","traits":{"logged_in":false,"topics":"politics"},"context":{"os":{"name":"Android","version":"14"},"app":{"version":"2.3.0"},"locale":"en-GB","timezone":"Europe/London","device":{"token":"fcm-token-123"}},"timestamp":%q,"messageId":"seg-1"},
 {"type":"screen","name":"home","anonymousId":"web-dan","timestamp":%q,"messageId":"seg-2"},
 {"type":"track","event":"article_read","anonymousId":"web-dan","properties":{"category":"politics","words":900},"timestamp":%q,"messageId":"seg-3"}
]}`, ts(0), ts(-time.Minute), ts(-50*time.Second), ts(-40*time.Second))
	return []demoRequest{
		{"native JSON array: one device's session", "/v1/tags", "application/json", false, []byte(native)},
		{"NDJSON, gzip", "/v1/tags", "application/x-ndjson", true, []byte(nd.String())},
		{"a batch with bad records: only they are refused; an unplanned event is marked", "/v1/tags", "application/json", false, []byte(mixed)},
		{"Segment HTTP API batch: identify, screen, track", "/v1/batch", "application/json", false, []byte(segment)},
	}
}

func post(ctx context.Context, url, contentType string, gz bool, body []byte) (int, string, error) {
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		if err := zw.Close(); err != nil {
			return 0, "", err
		}
		body = buf.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", contentType)
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.SetBasicAuth(demoKey, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	if resp.StatusCode >= 500 {
		return resp.StatusCode, string(b), errors.New("collector answered " + resp.Status)
	}
	return resp.StatusCode, string(b), nil
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func setKeys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
