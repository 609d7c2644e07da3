package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/inbox"
	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// deliverToMocks runs the engage deliver binary on the deliveries the live
// scheduler made, with an APNs and an FCM mock as the providers, and
// checks every delivery's fate against what it carried.
func deliverToMocks(t *testing.T, e *engage, brokers []string, id, deliveries string, want map[string]scheduler.DeliveryMessage) {
	apns, err := mock.StartAPNs(mock.APNsConfig{KeepRecords: 100000})
	if err != nil {
		t.Fatal(err)
	}
	defer apns.Close()
	fcm, err := mock.StartFCM(mock.FCMConfig{KeepRecords: 100000})
	if err != nil {
		t.Fatal(err)
	}
	defer fcm.Close()
	dir := t.TempDir()
	p8, err := apns.NewKey("TEAM123456", "KEY1234567", "com.example.game")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := fcm.NewServiceAccount("game-project")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"key.p8": p8, "ca.pem": apns.CertificatePEM(), "sa.json": sa} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	creds := filepath.Join(dir, "credentials.yaml")
	if err := os.WriteFile(creds, []byte(fmt.Sprintf(`apps:
  game:
    apns: {team_id: TEAM123456, key_id: KEY1234567, key_file: %s, topic: com.example.game, host: %s, ca_file: %s}
    fcm: {project_id: game-project, service_account_file: %s, endpoint: %s}
`, filepath.Join(dir, "key.p8"), apns.URL(), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "sa.json"), fcm.Endpoint())), 0o600); err != nil {
		t.Fatal(err)
	}
	state, decs, feedback, inboxTopic := id+".dstate", id+".ddecisions", id+".feedback", id+".inbox"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := kafkabus.EnsureTopics(ctx, brokers, []kafkabus.TopicSpec{{Name: state, Partitions: 4, ReplicationFactor: 1, Compacted: true},
		{Name: inboxTopic, Partitions: 4, ReplicationFactor: 1, Compacted: true},
		{Name: decs, Partitions: 4, ReplicationFactor: 1}, {Name: feedback, Partitions: 4, ReplicationFactor: 1}}); err != nil {
		t.Fatal(err)
	}
	e.start("deliver", "/healthz", "-kafka.brokers", strings.Join(brokers, ","), "-credentials", creds, "-deliver.group", "gd-"+id,
		"-deliver.topic", deliveries, "-deliver.changelog-topic", state, "-deliver.decisions-topic", decs, "-deliver.feedback-topic", feedback, "-deliver.inbox-topic", inboxTopic)
	waitFor(t, 2*time.Minute, "engage deliver to finish every delivery", func() bool {
		lag, err := kafkabus.GroupLag(ctx, brokers, "gd-"+id, deliveries)
		n, err2 := kafkabus.CountMessages(ctx, brokers, feedback)
		done := err == nil && err2 == nil && lag == 0 && n >= int64(len(want))
		if !done {
			time.Sleep(300 * time.Millisecond)
		}
		return done
	})
	outcome := map[string]string{}
	for _, d := range readJSON[scheduler.DecisionMessage](t, brokers, decs) {
		outcome[d.DeviceID+"/"+d.Campaign+"/"+d.Occurrence] = string(d.Outcome)
	}
	apnsGot := map[string]int{}
	for _, r := range apns.Records() {
		if r.Status == 200 {
			apnsGot[r.ApnsID+" "+r.Token]++
		}
	}
	fcmGot := map[string]int{}
	for _, r := range fcm.Records() {
		var b struct {
			Message struct {
				Token string            `json:"token"`
				Data  map[string]string `json:"data"`
			} `json:"message"`
		}
		if r.Status == 200 && json.Unmarshal(r.Body, &b) == nil {
			fcmGot[b.Message.Data["engage_delivery_id"]+" "+b.Message.Token]++
		}
	}
	// The newest inbox record of each device (the topic is compacted).
	inboxes := map[string]map[string]bool{}
	n, err := kafkabus.CountMessages(ctx, brokers, inboxTopic)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := kafkabus.ReadTopic(ctx, brokers, inboxTopic, int(n))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range recs { // one device's records are in order on its partition
		msgs, err := inbox.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, x := range msgs {
			ids[x.DeliveryID] = true
		}
		inboxes[string(m.Key)] = ids
	}
	now := time.Now()
	counts := map[string]int{}
	for _, d := range want {
		got := outcome[d.DeviceID+"/"+d.Campaign+"/"+d.Occurrence]
		var exp string
		switch {
		case d.Expires != nil && !now.Before(*d.Expires):
			exp = "expired"
		case d.Channel == triggers.ChannelInApp && d.Expires == nil && !now.Before(d.Time.Add(inbox.DefaultTTL)):
			exp = "expired" // an in-app message without an expiry stays a week
		case d.Channel == triggers.ChannelInApp:
			exp = "accepted" // in the device's inbox
		case d.PushToken == "":
			exp = "unreachable"
		default:
			exp = "accepted"
		}
		counts[exp]++
		if got != exp {
			t.Errorf("delivery %s (%s %s, token %q %s): %q, want %q", d.ID, d.Campaign, d.Channel, d.PushToken, d.PushProvider, got, exp)
			continue
		}
		if exp != "accepted" {
			continue
		}
		if d.Channel == triggers.ChannelInApp {
			if !inboxes[d.App+"/"+d.DeviceID][d.ID] {
				t.Errorf("in-app delivery %s is not in the inbox of %s", d.ID, d.DeviceID)
			}
			continue
		}
		key := d.ID[:8] + "-" + d.ID[8:12] + "-" + d.ID[12:16] + "-" + d.ID[16:20] + "-" + d.ID[20:] + " " + d.PushToken
		n := apnsGot[key]
		if d.PushProvider == "fcm" {
			n = fcmGot[d.ID+" "+d.PushToken]
		}
		if n != 1 {
			t.Errorf("delivery %s to %s: at its provider %d times, want once", d.ID, d.PushProvider, n)
		}
	}
	t.Logf("%d deliveries: %v; APNs accepted %d, FCM %d", len(want), counts, len(apnsGot), len(fcmGot))
	if counts["accepted"] < 100 || counts["unreachable"] < 20 {
		t.Errorf("too few deliveries of each kind to say anything: %v", counts)
	}
}
