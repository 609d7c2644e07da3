package main

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
)

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("ENGAGE_KAFKA_BROKERS", "a:1,b:2")
	t.Setenv("ENGAGE_KAFKA_PARTITIONS", "12")
	fs := newFlagSet("x")
	var kf kafkaFlags
	kf.register(fs)
	if err := parse(fs, []string{"-kafka.partitions", "3"}); err != nil {
		t.Fatal(err)
	}
	if kf.brokers != "a:1,b:2" || kf.partitions != 3 {
		t.Fatalf("brokers %q partitions %d: env should fill unset flags, flags win", kf.brokers, kf.partitions)
	}
	t.Setenv("ENGAGE_KAFKA_REPLICATION", "three")
	fs = newFlagSet("x")
	kf.register(fs)
	if err := parse(fs, nil); err == nil || !strings.Contains(err.Error(), "ENGAGE_KAFKA_REPLICATION") {
		t.Fatalf("bad env value: %v", err)
	}
}

// The demo tells its story on the embedded broker: who got what when, who
// was held back and why, the analytics, and what to try next, in words an
// operator and a marketer read (no internal words, no raw records).
func TestDemo(t *testing.T) {
	t.Setenv("ENGAGE_KAFKA_BROKERS", "")
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := runDemo(ctx, nil, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"starting the collector on 127.0.0.1:",
		"sending 21 days of activity from 120 devices to the collector",
		// Who got what, when, and why; who was held back, and why.
		"Wed Nov 4   others: ",
		`  10:00 Paris    Ana  ← push "Bienvenue, Ana !" (welcome_d2, in French) → opened, subscribed 10:24`,
		"  08:30 New York Bo   held back from welcome_d2: its control group (never sent, to measure what it changes)",
		"  09:30 Tokyo    Cy   onboarding_gap not sent: capped (1 push a day): welcome_d2 went 23h30 earlier",
		"  10:00 Tokyo    Hana sport_picks not sent: outranked by welcome_d5, due at the same time (priority 5 over 1)",
		`  11:30 Lyon     Fay  ← push "Ravis de vous compter parmi nous !" (onboarding_gap: never logged in, in French) → opened, logged in 12:11`,
		`  09:00 London   Dan  ← push "We miss you, Dan" (we_miss_you: 7 days unseen, after quiet hours) → opened, read an article 12:24`,
		`  10:00 Sydney   Eli  ← push "Welcome, Eli!" (welcome_d2) ✗ FCM: token dead (app uninstalled), so forgotten`,
		`  10:00 Sydney   Eli  ← push "Still with us, Eli?" (welcome_d5) ✗ not delivered: no working push token`,
		"  19:00 Paris    Gus  opens the app, which asks GET /v1/inapp: tutorial shows → tapped, read an article 19:02",
		// The analytics.
		"active devices per day (GET /v1/apps/news/active):",
		"retention (GET /v1/apps/news/retention), devices first seen Nov 2–Nov 15 (120): D1 ",
		"    welcome_d2           115      25      0    90 ",
		// The closing.
		"What to try next:",
		"examples/README.md",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for _, l := range lines {
		if low := strings.ToLower(l); strings.Contains(low, "kfake") || strings.Contains(low, "codec") || strings.HasPrefix(strings.TrimSpace(l), "{") {
			t.Errorf("an internal word or a raw record: %q", l)
		}
	}
	if len(lines) > 120 {
		t.Errorf("%d lines of output, at most 120", len(lines))
	}
	if !strings.HasPrefix(lines[len(lines)-1], "  bin/engage demo -seed") {
		t.Errorf("the output does not end with what to try next: %q", lines[len(lines)-1])
	}
	if t.Failed() {
		t.Logf("output:\n%s", text)
	}
}

// engage segments check: parses and checks against the app's plan, with
// the position and a suggestion when wrong.
func TestSegmentsCheck(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	if err := runSegments(ctx, []string{"check", "-app", "demo", "-text", `did event "article_read" at least 3 times in last 1d`}, &out); err != nil || out.String() != "ok\n" {
		t.Fatalf("good segment: %v %q", err, out.String())
	}
	err := runSegments(ctx, []string{"check", "-app", "demo", "-text", `did event "article_raed"`}, &out)
	if err == nil || !strings.Contains(err.Error(), `1:1: event "article_raed" is not in the tag plan of app "demo" (did you mean "article_read"?)`) {
		t.Fatalf("unknown event: %v", err)
	}
	err = runSegments(ctx, []string{"check", "-app", "demo", "-text", `did event "article_read" at least`}, &out)
	if err == nil || !strings.Contains(err.Error(), "1:34: expected a number of times") {
		t.Fatalf("syntax error: %v", err)
	}
	if err := runSegments(ctx, []string{"check", "-app", "nope", "-text", `last_seen within 1d`}, &out); err == nil || !strings.Contains(err.Error(), `unknown app "nope"`) {
		t.Fatalf("unknown app: %v", err)
	}
}

func TestTopicsRealKafka(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	ctx := context.Background()
	args := []string{"-kafka.brokers", strings.Join(brokers, ","), "-kafka.partitions", "8", "-dev"}
	var first, second bytes.Buffer
	// The first run fixes topics an older version created on this broker.
	if err := runTopics(ctx, append(args, "-fix-timestamp-type"), &first); err != nil {
		t.Fatalf("%v\n%s", err, first.String())
	}
	if err := runTopics(ctx, args, &second); err != nil {
		t.Fatalf("second run: %v\n%s", err, second.String())
	}
	n := len(kafkabus.PlatformTopics(8, 1))
	if strings.Contains(second.String(), "created") || strings.Count(second.String(), "exists") != n ||
		strings.Count(second.String(), "timestamps=LogAppendTime") != n || strings.Contains(second.String(), "fixed") {
		t.Fatalf("second run is not a no-op:\n%s", second.String())
	}
	// A topic on CreateTime (as an older version created them) is
	// reported and fails the command; the flag fixes it. engage.feedback:
	// no service uses it yet.
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	if _, err := client.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: kafkabus.TopicFeedback,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: kafkabus.ConfigTimestampType, Value: "CreateTime"}}}}}); err != nil {
		t.Fatal(err)
	}
	var report, fixed bytes.Buffer
	deadline := time.Now().Add(30 * time.Second)
	for err := runTopics(ctx, args, &report); !strings.Contains(report.String(), "problem: message.timestamp.type=CreateTime"); err = runTopics(ctx, args, &report) {
		if time.Now().After(deadline) {
			t.Fatalf("CreateTime topic not reported: %v\n%s", err, report.String())
		}
		report.Reset()
	}
	if err := runTopics(ctx, args, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "1 topics do not match") {
		t.Fatalf("a CreateTime topic must fail the command: %v", err)
	}
	if err := runTopics(ctx, append(args, "-fix-timestamp-type"), &fixed); err != nil {
		t.Fatalf("fix: %v\n%s", err, fixed.String())
	}
	if !strings.Contains(fixed.String(), "fixed: message.timestamp.type CreateTime -> LogAppendTime") || strings.Count(fixed.String(), "fixed:") != 1 {
		t.Fatalf("fix output:\n%s", fixed.String())
	}
	// The state and configuration topics are compacted on the broker.
	resp, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: kafkabus.TopicConfig, ConfigNames: []string{"cleanup.policy"}},
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: kafkabus.TopicStateChangelog, ConfigNames: []string{"cleanup.policy"}},
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: kafkabus.TopicTags, ConfigNames: []string{"cleanup.policy"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{kafkabus.TopicConfig: "compact", kafkabus.TopicStateChangelog: "compact", kafkabus.TopicTags: "delete"}
	for _, r := range resp.Resources {
		if r.Error != nil || len(r.ConfigEntries) != 1 || r.ConfigEntries[0].ConfigValue != want[r.ResourceName] {
			t.Errorf("%s: %+v (error %v), want cleanup.policy=%s", r.ResourceName, r.ConfigEntries, r.Error, want[r.ResourceName])
		}
	}
	// A mismatch is reported and fails the command.
	var third bytes.Buffer
	err = runTopics(ctx, []string{"-kafka.brokers", strings.Join(brokers, ","), "-kafka.partitions", "5", "-dev"}, &third)
	if err == nil || !strings.Contains(third.String(), "has 8 partitions, the platform expects 5") {
		t.Fatalf("mismatch: %v\n%s", err, third.String())
	}
}

// Flags may follow the arguments; "--" ends them.
func TestFlagsAfterArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		x    string
		rest []string
	}{
		{[]string{"a.yaml", "-x", "1", "b.yaml"}, "1", []string{"a.yaml", "b.yaml"}},
		{[]string{"-x", "2", "a.yaml"}, "2", []string{"a.yaml"}},
		{[]string{"a.yaml", "--", "-x", "3"}, "", []string{"a.yaml", "-x", "3"}},
	} {
		fs := newFlagSet("t")
		x := fs.String("x", "", "")
		if err := parse(fs, c.args); err != nil {
			t.Fatal(err)
		}
		if *x != c.x || !reflect.DeepEqual(fs.Args(), c.rest) {
			t.Errorf("%q: x %q args %q, want %q %q", c.args, *x, fs.Args(), c.x, c.rest)
		}
	}
}
