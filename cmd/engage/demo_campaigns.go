package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// The demo's campaigns: two pushes that compete for the one push a day the
// app allows, one with a control group, and a follow-up that waits two
// days for 10:00 in each reader's time zone.
var demoCampaignFiles = []struct{ name, src string }{
	{"sport_pick", `
app: demo
name: sport_pick
what:
  missing: default
  content:
    en: {title: "Today's sport pick", body: "Hand-picked for {{app_info.plan | default \"our\"}} readers."}
    fr: {title: "La sélection sport du jour", body: "Choisie pour les lecteurs {{app_info.plan | default \"fidèles\"}}."}
  default_locale: en
who:
  segments: [sport_readers]
when:
  on_entry: {}
limits:
  priority: 10
`},
	{"sport_quiz", `
app: demo
name: sport_quiz
what:
  content:
    en: {title: "Sport quiz", body: "Ten questions, one minute."}
  default_locale: en
who:
  segments: [sport_readers]
when:
  on_entry: {}
limits:
  priority: 1
`},
	{"convert_readers", `
app: demo
name: convert_readers
what:
  content:
    en: {title: "You read a lot", body: "Log in to keep your reading list everywhere."}
  default_locale: en
who:
  segments: [readers_to_convert]
  control: 50%
  variants: [{name: short, weight: 50%}, {name: long, weight: 50%}]
when:
  on_entry: {}
`},
	{"sport_follow_up", `
app: demo
name: sport_follow_up
what:
  channel: in_app
  content:
    en: {title: "More sport", body: "Your teams played this weekend.", layout: banner}
  default_locale: en
who:
  segments: [sport_readers]
when:
  on_entry: {delay: 2d, at: "10:00"}
`},
}

// demoCampaigns stores the campaigns, runs the scheduler over the segment
// changes just made and prints its decisions: who gets what, when, and who
// was held back, and why.
func demoCampaigns(ctx context.Context, brokers []string, prod *kafkabus.Producer, log *slog.Logger, stdout io.Writer, plan *tagplan.Plan, defs []processor.Definition) error {
	segs := map[string]*segments.Segment{}
	for _, d := range defs {
		expr, err := segments.Parse(d.Text)
		if err != nil {
			return err
		}
		segs[d.Name] = &segments.Segment{App: d.App, Name: d.Name, Text: d.Text, Expr: expr}
	}
	fmt.Fprintf(stdout, "\n== campaigns (checked, stored in %s; the app allows 1 push a day per device):\n", kafkabus.TopicConfig)
	var msgs []bus.Message
	for _, f := range demoCampaignFiles {
		c, pos, err := triggers.ParseWithPositions(f.name+".yaml", []byte(f.src))
		if err != nil {
			return err
		}
		if err := triggers.Check(c, pos, triggers.Env{Segments: segs, Plan: plan, Now: time.Now()}); err != nil {
			return fmt.Errorf("demo campaign: %w", err)
		}
		v, _ := json.Marshal(scheduler.Stored{App: c.App, Name: c.Name, File: f.name + ".yaml", Source: f.src, UpdatedAt: time.Now().UTC()})
		msgs = append(msgs, bus.Message{Topic: kafkabus.TopicConfig, Key: scheduler.CampaignKey(c.App, c.Name), Value: v})
		fmt.Fprintf(stdout, "  %-16s %-7s to %s, %s\n", c.Name, c.What.Channel, strings.Join(c.Who.Segments, ", "), demoWhen(c))
	}
	caps, _ := json.Marshal(scheduler.AppCaps{triggers.ChannelPush: {PerDay: 1}})
	msgs = append(msgs, bus.Message{Topic: kafkabus.TopicConfig, Key: scheduler.CapsKey("demo"), Value: caps})
	if err := prod.Produce(ctx, msgs); err != nil {
		return err
	}
	before := map[string]int64{}
	for _, t := range []string{kafkabus.TopicDecisions, kafkabus.TopicDeliveries} {
		n, err := kafkabus.CountMessages(ctx, brokers, t)
		if err != nil {
			return err
		}
		before[t] = n
	}
	cfg := scheduler.DefaultConfig(brokers)
	cfg.Group = fmt.Sprintf("engage-demo-schedule-%d", time.Now().UnixNano())
	cfg.SessionTimeout = 6 * time.Second
	svc, err := scheduler.New(cfg, scheduler.NewStore(), prod, nil, log)
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(sctx) }()
	defer func() { stop(); <-done }()
	deadline := time.Now().Add(60 * time.Second)
	prev := int64(-1)
	for {
		lag, err := kafkabus.GroupLag(ctx, brokers, cfg.Group, cfg.Topic)
		n, err2 := kafkabus.CountMessages(ctx, brokers, kafkabus.TopicDecisions)
		if err == nil && err2 == nil && lag == 0 && n == prev && n > before[kafkabus.TopicDecisions] {
			break
		}
		prev = n
		if time.Now().After(deadline) {
			return fmt.Errorf("scheduler: lag %d after 60 s (%v)", lag, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	read := func(topic string) ([]bus.Message, error) {
		n, err := kafkabus.CountMessages(ctx, brokers, topic)
		if err != nil {
			return nil, err
		}
		all, err := kafkabus.ReadTopic(ctx, brokers, topic, int(n))
		if err != nil {
			return nil, err
		}
		return all, nil
	}
	decMsgs, err := read(kafkabus.TopicDecisions)
	if err != nil {
		return err
	}
	delMsgs, err := read(kafkabus.TopicDeliveries)
	if err != nil {
		return err
	}
	titles := map[string]string{}
	for _, m := range delMsgs {
		var d scheduler.DeliveryMessage
		if json.Unmarshal(m.Value, &d) == nil && d.App == "demo" {
			titles[d.Campaign+"/"+d.DeviceID+"/"+d.Occurrence] = fmt.Sprintf("%q (%s)", d.Message.Title+" — "+d.Message.Body, d.Locale)
		}
	}
	var decs []scheduler.DecisionMessage
	for _, m := range decMsgs {
		var d scheduler.DecisionMessage
		if json.Unmarshal(m.Value, &d) == nil && d.App == "demo" {
			decs = append(decs, d)
		}
	}
	sort.SliceStable(decs, func(i, j int) bool {
		if decs[i].DeviceID != decs[j].DeviceID {
			return decs[i].DeviceID < decs[j].DeviceID
		}
		return decs[i].Time.Before(decs[j].Time)
	})
	fmt.Fprintf(stdout, "\n== the scheduler's decisions (%s; sends to %s; GET /v1/apps/demo/campaigns/{c}/devices/{d}/decisions answers why):\n", kafkabus.TopicDecisions, kafkabus.TopicDeliveries)
	for _, d := range decs {
		what := string(d.Outcome)
		switch d.Outcome {
		case triggers.OutcomeSent:
			what = "SENT " + titles[d.Campaign+"/"+d.DeviceID+"/"+d.Occurrence]
		case triggers.OutcomeDeferred:
			what = d.Reason
		default:
			what = "held back (" + string(d.Outcome) + "): " + d.Reason
		}
		v := ""
		if d.Variant != "" {
			v = " [" + d.Variant + "]"
		}
		fmt.Fprintf(stdout, "  %-10s %-16s%s %s\n", d.DeviceID, d.Campaign, v, what)
	}
	if len(decs) == 0 {
		return fmt.Errorf("scheduler: no decision for the demo app")
	}
	return nil
}

func demoWhen(c *triggers.Campaign) string {
	switch {
	case c.When.Kind == triggers.OnEntry && c.When.Delay > 0 && c.When.AlignTo != nil:
		return fmt.Sprintf("%s after entering, at the next %s local time", days(c.When.Delay), c.When.AlignTo)
	case c.When.Kind == triggers.OnEntry && c.Who.Control > 0:
		return fmt.Sprintf("on entry, %g%% held out as control, variants %d", c.Who.Control, len(c.Who.Variants))
	case c.When.Kind == triggers.OnEntry:
		return fmt.Sprintf("on entry, priority %d", c.Limit.Priority)
	}
	return string(c.When.Kind)
}

// days writes a whole number of days as "2 days", anything else as Go does.
func days(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		if n := int(d / (24 * time.Hour)); n > 1 {
			return fmt.Sprintf("%d days", n)
		}
		return "1 day"
	}
	return d.String()
}
