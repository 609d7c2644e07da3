package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/segments"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// Campaigns and caps live in the configuration topic (scheduler.Stored,
// scheduler.AppCaps; keys scheduler.CampaignKey, scheduler.CapsKey).
type storedCampaign = scheduler.Stored

func campaignKey(app, name string) []byte { return scheduler.CampaignKey(app, name) }

// readCampaigns reads the stored campaigns from the configuration topic.
func readCampaigns(ctx context.Context, brokers []string, topic string) ([]storedCampaign, error) {
	byKey := map[string]storedCampaign{}
	_, err := kafkabus.ReadPartition(ctx, brokers, topic, 0, func(m bus.Message) error {
		k := string(m.Key)
		if !strings.HasPrefix(k, scheduler.CampaignKeyPrefix) {
			return nil
		}
		if m.Value == nil {
			delete(byKey, k)
			return nil
		}
		var c storedCampaign
		if err := json.Unmarshal(m.Value, &c); err != nil {
			fmt.Fprintf(os.Stderr, "warning: %s at offset %d: %v\n", k, m.Offset, err)
			return nil
		}
		c.Version = m.Offset
		byKey[k] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read campaigns from %s: %w", topic, err)
	}
	out := make([]storedCampaign, 0, len(byKey))
	for _, c := range byKey {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].App != out[j].App {
			return out[i].App < out[j].App
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func runCampaigns(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("campaigns: give check, put, delete, list, caps, dry-run or estimate")
	}
	verb := args[0]
	switch verb {
	case "dry-run":
		return runDryRun(ctx, args[1:], stdout)
	case "estimate":
		return runEstimate(ctx, args[1:], stdout)
	}
	fs := newFlagSet("campaigns " + verb)
	var kconn kafkaConn
	brokers := kconn.registerConn(fs, "comma-separated Kafka bootstrap brokers (check: to check the segments' names; put, delete, list: required)")
	topic := fs.String("config.topic", kafkabus.TopicConfig, "configuration topic")
	appsFile := fs.String("apps", "", "apps file, for the tag plans; empty: the embedded demo app")
	app := fs.String("app", "", "delete, list, caps: the app")
	channel := fs.String("channel", "push", "caps: the channel (push, data, in_app)")
	perDay := fs.Int("per-day", 0, "caps: at most this many sends of the channel per device in any 24 hours, across the app's campaigns (0: none)")
	perWeek := fs.Int("per-week", 0, "caps: at most this many in any 7 days (0: none)")
	name := fs.String("name", "", "delete: the campaign")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if err := kconn.secure(ctx); err != nil {
		return err
	}
	bl := splitList(*brokers)
	switch verb {
	case "check", "put":
		if fs.NArg() != 1 {
			return fmt.Errorf("campaigns %s: give one campaign file (YAML or JSON), - for standard input", verb)
		}
		file := fs.Arg(0)
		var data []byte
		var err error
		if file == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(file)
		}
		if err != nil {
			return err
		}
		if verb == "put" && len(bl) == 0 {
			return errors.New("campaigns put: give -kafka.brokers (or ENGAGE_KAFKA_BROKERS)")
		}
		c, err := checkCampaign(ctx, file, data, *appsFile, bl, *topic)
		if err != nil {
			return err
		}
		if verb == "check" {
			if len(bl) == 0 {
				fmt.Fprintln(stdout, "ok (segment names not checked: give -kafka.brokers to check them against the stored segments)")
				return nil
			}
			fmt.Fprintln(stdout, "ok")
			return nil
		}
		prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(bl, *topic), nil)
		if err != nil {
			return err
		}
		defer prod.Close()
		v, _ := json.Marshal(storedCampaign{App: c.App, Name: c.Name, File: file, Source: string(data), UpdatedAt: time.Now().UTC()})
		if err := prod.Produce(ctx, []bus.Message{{Key: campaignKey(c.App, c.Name), Value: v}}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "stored campaign %q of app %q\n", c.Name, c.App)
		return nil
	case "delete":
		if *app == "" || *name == "" || len(bl) == 0 {
			return errors.New("campaigns delete: give -app, -name and -kafka.brokers")
		}
		prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(bl, *topic), nil)
		if err != nil {
			return err
		}
		defer prod.Close()
		if err := prod.Produce(ctx, []bus.Message{{Key: campaignKey(*app, *name)}}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted campaign %q of app %q\n", *name, *app)
		return nil
	case "caps":
		return putCaps(ctx, bl, *topic, *app, triggers.Channel(*channel), *perDay, *perWeek, stdout)
	case "list":
		if len(bl) == 0 {
			return errors.New("campaigns list: give -kafka.brokers (or ENGAGE_KAFKA_BROKERS)")
		}
		stored, err := readCampaigns(ctx, bl, *topic)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "APP\tNAME\tVERSION\tCHANNEL\tWHEN\tSEGMENTS\tUPDATED")
		for _, s := range stored {
			if *app != "" && s.App != *app {
				continue
			}
			c, err := triggers.Parse(s.File, []byte(s.Source))
			if err != nil {
				fmt.Fprintf(tw, "%s\t%s\t%d\t(does not parse: %v)\n", s.App, s.Name, s.Version, firstLine(err))
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.App, s.Name, s.Version, c.What.Channel, c.When.Kind,
				strings.Join(c.Who.Segments, ","), s.UpdatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	}
	return fmt.Errorf("campaigns: unknown verb %q: give check, put, delete, list, caps, dry-run or estimate", verb)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// checkCampaign parses a campaign file and checks it against its app's
// tag plan and, with brokers, the app's stored segments.
func checkCampaign(ctx context.Context, file string, data []byte, appsFile string, brokers []string, topic string) (*triggers.Campaign, error) {
	c, pos, err := triggers.ParseWithPositions(file, data)
	if err != nil {
		return nil, err
	}
	apps, err := loadApps(appsFile)
	if err != nil {
		return nil, err
	}
	a, ok := apps.ByID(c.App)
	if !ok {
		return nil, fmt.Errorf("%s: unknown app %q (not in the apps file; -apps names another)", file, c.App)
	}
	env := triggers.Env{Plan: a.Plan, Now: time.Now()}
	if len(brokers) > 0 {
		store, err := followSegments(ctx, brokers, topic)
		if err != nil {
			return nil, err
		}
		set, _ := store.Current()
		env.Segments = map[string]*segments.Segment{}
		for _, s := range set.Segs {
			if s.App == c.App {
				env.Segments[s.Name] = s
			}
		}
	}
	if err := triggers.Check(c, pos, env); err != nil {
		return nil, err
	}
	return c, nil
}

// putCaps sets one channel's frequency caps of an app, keeping the
// others: engage campaigns caps -app A -channel push -per-day 2 -per-week 5.
func putCaps(ctx context.Context, brokers []string, topic, app string, ch triggers.Channel, perDay, perWeek int, stdout io.Writer) error {
	switch {
	case app == "" || len(brokers) == 0:
		return errors.New("campaigns caps: give -app and -kafka.brokers")
	case ch != triggers.ChannelPush && ch != triggers.ChannelData && ch != triggers.ChannelInApp:
		return fmt.Errorf("campaigns caps: -channel %q: give push, data or in_app", ch)
	case perDay < 0 || perWeek < 0:
		return fmt.Errorf("campaigns caps: -per-day %d and -per-week %d must not be negative", perDay, perWeek)
	case perDay > 0 && perWeek > 0 && perWeek < perDay:
		return fmt.Errorf("campaigns caps: -per-week %d is below -per-day %d: the weekly cap would always bind first", perWeek, perDay)
	}
	store := scheduler.NewStore()
	if _, err := kafkabus.ReadPartition(ctx, brokers, topic, 0, func(m bus.Message) error {
		_, err := store.Apply(m)
		return err
	}); err != nil {
		return fmt.Errorf("read the caps from %s: %w", topic, err)
	}
	set, _ := store.Current()
	caps := scheduler.AppCaps{}
	for c, v := range set.Caps[app] {
		caps[c] = scheduler.CapsJSON{PerDay: v.PerDay, PerWeek: v.PerWeek}
	}
	if perDay == 0 && perWeek == 0 {
		delete(caps, ch)
	} else {
		caps[ch] = scheduler.CapsJSON{PerDay: perDay, PerWeek: perWeek}
	}
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, topic), nil)
	if err != nil {
		return err
	}
	defer prod.Close()
	v, _ := json.Marshal(caps)
	if err := prod.Produce(ctx, []bus.Message{{Key: scheduler.CapsKey(app), Value: v}}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "caps of app %q: %s\n", app, v)
	return nil
}
