package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
)

// campaignApps writes an apps file naming the example campaigns' tag plans.
func campaignApps(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("apps:\n")
	for _, app := range []string{"news", "game", "shop"} {
		plan, err := filepath.Abs("../../triggers/testdata/campaign_apps/" + app + "/plan.yaml")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - id: %s\n    write_keys: [%s-key]\n    tag_plan: %s\n", app, app, plan)
	}
	path := filepath.Join(dir, "apps.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// engage campaigns check, offline: a good file is ok (and says what it
// could not check); a bad one is refused with its line:column.
func TestCampaignsCheck(t *testing.T) {
	t.Setenv("ENGAGE_KAFKA_BROKERS", "")
	apps := campaignApps(t)
	ctx := context.Background()
	var out bytes.Buffer
	if err := runCampaigns(ctx, []string{"check", "-apps", apps, "../../triggers/testdata/campaign_welcome_d2.yaml"}, &out); err != nil {
		t.Fatalf("the welcome example: %v", err)
	}
	if !strings.HasPrefix(out.String(), "ok (segment names not checked") {
		t.Fatalf("output %q", out.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	src := "app: news\nname: x\nwhat:\n  channel: push\n  content:\n    en: {title: \"Hi {{app_info.frist_name}}\"}\nwho:\n  segments: [welcome_d2]\nwhen:\n  on_entry: {delay: 2 days}\n"
	if err := os.WriteFile(bad, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	err := runCampaigns(ctx, []string{"check", "-apps", apps, bad}, &out)
	if err == nil || !strings.Contains(err.Error(), `bad.yaml:6:21: app_info key "frist_name" is not in the tag plan of app "news" (did you mean "first_name"?)`) {
		t.Fatalf("a bad campaign: %v", err)
	}
	if err := runCampaigns(ctx, []string{"put", "-apps", apps, bad}, &out); err == nil || !strings.Contains(err.Error(), "-kafka.brokers") {
		t.Fatalf("put without brokers: %v", err)
	}
}

// engage campaigns put, list and delete against the real broker, checked
// against the segments stored there.
func TestCampaignsRealKafka(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := fmt.Sprintf("campaigns-test-%d.config", time.Now().UnixNano()%1e9)
	if _, err := kafkabus.EnsureTopics(ctx, brokers, []kafkabus.TopicSpec{{Name: topic, Partitions: 1, ReplicationFactor: 1, Compacted: true}}); err != nil {
		t.Fatal(err)
	}
	apps := campaignApps(t)
	common := []string{"-kafka.brokers", strings.Join(brokers, ","), "-config.topic", topic, "-apps", apps}
	var out bytes.Buffer
	// Its segments do not exist yet: refused, with the name.
	err := runCampaigns(ctx, append([]string{"put"}, append(common, "../../triggers/testdata/campaign_welcome_d2.yaml")...), &out)
	if err == nil || !strings.Contains(err.Error(), "campaign_welcome_d2.yaml:26:") || !strings.Contains(err.Error(), `"welcome_d2"`) {
		t.Fatalf("a campaign over segments that do not exist: %v", err)
	}
	t.Logf("refused as: %v", err)
	for name, text := range map[string]string{
		"welcome_d2":  `first_session between 2d and 3d ago and did not event "subscribed"`,
		"subscribers": `app_info "subscription_expiry" > now`,
	} {
		if err := runSegments(ctx, []string{"put", "-kafka.brokers", strings.Join(brokers, ","), "-config.topic", topic, "-apps", apps,
			"-app", "news", "-name", name, "-text", text}, &out); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if err := runCampaigns(ctx, append([]string{"put"}, append(common, "../../triggers/testdata/campaign_welcome_d2.yaml")...), &out); err != nil {
		t.Fatalf("put: %v", err)
	}
	if out.String() != "stored campaign \"welcome_d2\" of app \"news\"\n" {
		t.Fatalf("put output %q", out.String())
	}
	out.Reset()
	if err := runCampaigns(ctx, append([]string{"list"}, common...), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "news  welcome_d2") || !strings.Contains(out.String(), "push     on_entry  welcome_d2") {
		t.Fatalf("list:\n%s", out.String())
	}
	out.Reset()
	if err := runCampaigns(ctx, append([]string{"delete", "-app", "news", "-name", "welcome_d2"}, common...), &out); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runCampaigns(ctx, append([]string{"list"}, common...), &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "welcome_d2") {
		t.Fatalf("deleted campaign still listed:\n%s", out.String())
	}
}
