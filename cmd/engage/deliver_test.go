package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/dispatcher"
	"github.com/openengage/engage/delivery/inbox"
	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// deliverToMocks runs the engage deliver binary on the deliveries the live
// scheduler made, with an APNs and an FCM mock as the providers, and
// checks every delivery's fate against what it carried.
func deliverToMocks(t *testing.T, e *engage, brokers []string, id, deliveries, decs, tags string, want map[string]scheduler.DeliveryMessage) {
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
	state, feedback, inboxTopic := id+".dstate", id+".feedback", id+".inbox"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := kafkabus.EnsureTopics(ctx, brokers, []kafkabus.TopicSpec{{Name: state, Partitions: 4, ReplicationFactor: 1, Compacted: true},
		{Name: inboxTopic, Partitions: 4, ReplicationFactor: 1, Compacted: true},
		{Name: feedback, Partitions: 4, ReplicationFactor: 1}, {Name: id + ".dead", Partitions: 4, ReplicationFactor: 1}}); err != nil {
		t.Fatal(err)
	}
	// Apple declares dead the tokens of every 17th device.
	deadDevice := func(d scheduler.DeliveryMessage) bool {
		var n int
		_, err := fmt.Sscanf(d.DeviceID, "p%04d", &n)
		return err == nil && n%17 == 0 && strings.HasPrefix(d.PushProvider, "apns")
	}
	for _, d := range want {
		if deadDevice(d) && d.PushToken != "" {
			apns.AddRule(mock.APNsRule{Token: d.PushToken, Answer: mock.APNsReject("BadDeviceToken")})
		}
	}
	e.start("deliver", "/healthz", "-deliver.tags-topic", tags, "-kafka.brokers", strings.Join(brokers, ","), "-credentials", creds, "-deliver.group", "gd-"+id,
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
	allDecisions := readJSON[scheduler.DecisionMessage](t, brokers, decs)
	for _, d := range allDecisions {
		switch d.Outcome { // the dispatcher's decisions
		case "accepted", "failed", "unreachable", "unknown":
			outcome[d.DeviceID+"/"+d.Campaign+"/"+d.Occurrence] = string(d.Outcome)
		case triggers.OutcomeExpired:
			if !strings.HasPrefix(d.Reason, "past its expiry") { // the scheduler's own expired says so
				outcome[d.DeviceID+"/"+d.Campaign+"/"+d.Occurrence] = string(d.Outcome)
			}
		}
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
		case deadDevice(d):
			exp = "failed" // or unreachable, when an earlier delivery found the token dead
			if got == "unreachable" {
				exp = got
			}
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
	// Each dead token went back into the stream, and the processor
	// forwarded it to the scheduler.
	waitFor(t, time.Minute, "the dead tokens to reach the scheduler's input", func() bool {
		n, _ := kafkabus.CountMessages(ctx, brokers, strings.TrimSuffix(tags, ".tags")+".changes")
		msgs, err := kafkabus.ReadTopic(ctx, brokers, strings.TrimSuffix(tags, ".tags")+".changes", int(n))
		if err != nil {
			return false
		}
		forwarded := 0
		for _, m := range msgs {
			var cm processor.ChangeMessage
			var r tag.Record
			if json.Unmarshal(m.Value, &cm) == nil && cm.Kind == processor.KindRecord && r.UnmarshalBinary(cm.Record) == nil &&
				r.Kind == tag.KindPush && r.Push.Action == tag.PushTokenDead {
				forwarded++
			}
		}
		if forwarded != counts["failed"] {
			time.Sleep(300 * time.Millisecond)
		}
		return forwarded == counts["failed"] && forwarded > 0
	})
	if counts["accepted"] < 100 || counts["unreachable"] < 20 {
		t.Errorf("too few deliveries of each kind to say anything: %v", counts)
	}
	campaignStats(t, e, brokers, id, tags, decs, feedback, allDecisions)
}

// campaignStats acts as the devices (opens of some accepted welcome pushes,
// a goal event for some of the sent and some of the control group), runs
// the sink and the analytics API on a database of their own, and checks
// the welcome campaign's statistics against the numbers computed here from
// what the pipeline produced and what the test sent.
func campaignStats(t *testing.T, e *engage, brokers []string, id, tags, decs, feedback string, decisions map[string]scheduler.DecisionMessage) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	results := readJSON[dispatcher.Feedback](t, brokers, feedback)
	var sent, control int
	sentDevs, controlDevs := map[string]time.Time{}, map[string]time.Time{}
	for _, d := range decisions {
		if d.Campaign != "welcome" {
			continue
		}
		switch d.Outcome {
		case triggers.OutcomeSent:
			sent++
			sentDevs[d.DeviceID] = d.Time
		case triggers.OutcomeControl:
			control++
			controlDevs[d.DeviceID] = d.Time
		}
	}
	resultCounts := map[string]uint64{}
	var msgs []bus.Message
	opened := 0
	for _, f := range results {
		if f.Campaign != "welcome" {
			continue
		}
		resultCounts[string(f.Outcome)]++
		if f.Outcome == "accepted" && opened < 40 {
			opened++
			at := decisions[decisionOf(decisions, f.DeviceID, "welcome", triggers.OutcomeSent)].Time.Add(10 * time.Minute)
			r := tag.Record{Kind: tag.KindPush, AppID: "game", DeviceID: f.DeviceID, MessageID: "open-" + f.DeliveryID, Time: at,
				Push: &tag.Push{Action: tag.PushOpened, DeliveryID: f.DeliveryID, CampaignID: "welcome"}}
			msgs = append(msgs, bus.Message{Topic: tags, Key: r.Key(), Value: r.AppendBinary(nil)})
		}
	}
	// The goal: every other device of the sent group, every fourth of the
	// control group, subscribes 2 h after its decision (within the 24 h
	// window); some others 30 h after (outside).
	converted := map[string]int{}
	for group, devs := range map[string]map[string]time.Time{"sent": sentDevs, "control": controlDevs} {
		i := 0
		for _, dev := range sortedKeys(devs) {
			i++
			after := 2 * time.Hour
			switch {
			case group == "sent" && i%2 == 0, group == "control" && i%4 == 0:
				converted[group]++
			case i%5 == 1:
				after = 30 * time.Hour
			default:
				continue
			}
			r := tag.Record{Kind: tag.KindEvent, AppID: "game", DeviceID: dev, MessageID: fmt.Sprintf("goal-%s-%s", group, dev), Time: devs[dev].Add(after), Name: "subscribed"}
			msgs = append(msgs, bus.Message{Topic: tags, Key: r.Key(), Value: r.AppendBinary(nil)})
		}
	}
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, tags), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.Produce(ctx, msgs); err != nil {
		t.Fatal(err)
	}

	_, ch, _ := chtest.Database(t)
	b := strings.Join(brokers, ",")
	e.start("sink", "/healthz", "-kafka.brokers", b, "-clickhouse.addr", strings.Join(ch.Addr, ","), "-clickhouse.http-addr", chtest.HTTPAddr(t),
		"-clickhouse.database", ch.Database, "-sink.topic", tags, "-sink.group", "gsk-"+id, "-sink.decisions-topic", decs, "-sink.decisions-group", "gskd-"+id,
		"-sink.feedback-topic", feedback, "-sink.feedback-group", "gskf-"+id, "-sink.dead-topic", id+".dead")
	waitFor(t, 2*time.Minute, "the sink to write the three streams", func() bool {
		done := true
		for g, topic := range map[string]string{"gsk-" + id: tags, "gskd-" + id: decs, "gskf-" + id: feedback} {
			if lag, err := kafkabus.GroupLag(ctx, brokers, g, topic); err != nil || lag != 0 {
				done = false
			}
		}
		if !done {
			time.Sleep(300 * time.Millisecond)
		}
		return done
	})
	api := e.start("api", "/healthz", "-clickhouse.addr", strings.Join(ch.Addr, ","), "-clickhouse.database", ch.Database, "-api.tokens", "stats-test-token-0123456789:game")
	req, _ := http.NewRequest(http.MethodGet, api+"/v1/apps/game/campaigns/welcome/stats?from=2026-11-01&to=2026-12-31&goal=subscribed&within=24h", nil)
	req.Header.Set("Authorization", "Bearer stats-test-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Totals struct {
			Sent, Control, Opened uint64
			Results               map[string]uint64
			Conversion            struct {
				Sent, Control struct {
					Devices, Converted uint64
				}
			}
		}
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("stats: %s: %s", resp.Status, body)
	}
	var raw map[string]any
	_ = json.Unmarshal(body, &raw)
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	tot := st.Totals
	conv := raw["totals"].(map[string]any)["conversion"].(map[string]any)
	n1, n2 := float64(len(sentDevs)), float64(len(controlDevs))
	p1, p2 := float64(converted["sent"])/n1, float64(converted["control"])/n2
	lift := p1 - p2
	half := 1.959963984540054 * math.Sqrt(p1*(1-p1)/n1+p2*(1-p2)/n2) // the 97.5% quantile of the normal law
	t.Logf("welcome: sent %d, control %d, results %v, opened %d, converted %d of %d and %d of %d, lift %.4f ± %.4f", sent, control, resultCounts, opened,
		converted["sent"], len(sentDevs), converted["control"], len(controlDevs), lift, half)
	switch {
	case tot.Sent != uint64(sent) || tot.Control != uint64(control) || tot.Opened != uint64(opened):
		t.Errorf("stats sent %d control %d opened %d, want %d %d %d", tot.Sent, tot.Control, tot.Opened, sent, control, opened)
	case !reflect.DeepEqual(tot.Results, resultCounts):
		t.Errorf("stats results %v, want %v", tot.Results, resultCounts)
	case tot.Conversion.Sent.Devices != uint64(n1) || tot.Conversion.Sent.Converted != uint64(converted["sent"]) ||
		tot.Conversion.Control.Devices != uint64(n2) || tot.Conversion.Control.Converted != uint64(converted["control"]):
		t.Errorf("stats conversion %+v, want sent %d of %.0f, control %d of %.0f", tot.Conversion, converted["sent"], n1, converted["control"], n2)
	case math.Abs(conv["lift"].(float64)-lift) > 1e-9 || math.Abs(conv["lift_low"].(float64)-(lift-half)) > 1e-9 || math.Abs(conv["lift_high"].(float64)-(lift+half)) > 1e-9:
		t.Errorf("stats lift %v [%v, %v], want %v ± %v", conv["lift"], conv["lift_low"], conv["lift_high"], lift, half)
	}
	if sent < 100 || control < 10 || opened == 0 || resultCounts["accepted"] == 0 {
		t.Errorf("too little to compare: sent %d, control %d, opened %d, results %v", sent, control, opened, resultCounts)
	}
}

// decisionOf finds the id of a device's decision of a campaign with an outcome.
func decisionOf(decs map[string]scheduler.DecisionMessage, dev, campaign string, out triggers.Outcome) string {
	for id, d := range decs {
		if d.DeviceID == dev && d.Campaign == campaign && d.Outcome == out {
			return id
		}
	}
	return ""
}
