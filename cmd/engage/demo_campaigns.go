package main

import (
	"fmt"
	"sort"
	"time"

	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/triggers"
)

// The demo's app: a news app, its tag plan, its segments, its campaigns
// and its caps: the seed's engagement strategy at small scale (welcome
// series, onboarding gap, lapsed readers, an in-app tutorial for readers
// who seem stuck, a sport pick that competes with the welcome series for
// the one push a day the app allows).

const (
	demoApp = "news"
	demoKey = "news-demo-write-key"
)

const demoAppsYAML = `apps:
  - id: news
    write_keys: [news-demo-write-key]
    tag_plan: news-plan.yaml
`

const demoPlanYAML = `app: news
mode: warn
activities:
  home: {}
  login: {}
  article: {extras: {category: string}}
events:
  article_read: {extras: {category: string}}
  logged_in: {}
  subscribed: {extras: {plan: string}}
jobs:
  login: {}
app_info:
  first_name: string
  logged_in: bool
`

// demoSegmentDefs are the app's segments, in the segment language.
var demoSegmentDefs = []struct{ name, text string }{
	{"subscribers", `did event "subscribed"`},
	{"welcome_d2", `first_session between 2d and 3d ago`},
	{"welcome_d5", `first_session between 5d and 6d ago`},
	{"onboarding_gap", `first_session between 3d and 4d ago and did activity "login" and did not event "logged_in"`},
	{"lapsed", `last_seen more than 7d ago`},
	{"stuck", `did session at least 3 times in the last 3d and did not event "article_read"`},
	{"sport_fans", `did event "article_read" where category = "sport" at least 3 times in the last 7d`},
}

// demoCampaignFiles are the campaigns as a marketer writes them.
var demoCampaignFiles = []struct{ name, about, src string }{
	{"welcome_d2", "push    2 days after the first session, at 10:00 local; not to subscribers; 20% control", `
app: news
name: welcome_d2
salt: welcome               # the same control group for the whole series
what:
  missing: default
  default_locale: en
  content:
    en: {title: "Welcome, {{app_info.first_name | default \"reader\"}}!", body: "Your first month of premium articles is free. Pick your topics now.", deep_link: "news://topics"}
    fr: {title: "Bienvenue, {{app_info.first_name | default 'lecteur'}} !", body: "Votre premier mois d'articles premium est offert.", deep_link: "news://topics"}
who:
  segments: [welcome_d2]
  exclude: [subscribers]
  control: 20%
when:
  on_entry: {at: "10:00"}
  expiry: 1d
  default_time_zone: Europe/Paris
limits:
  quiet_hours: {from: "22:00", to: "08:00"}
  once: true
  priority: 5
goal: {event: subscribed, within: 3d}
`},
	{"welcome_d5", "push    5 days after the first session, at 10:00 local; the same 20% control", `
app: news
name: welcome_d5
salt: welcome
what:
  missing: default
  default_locale: en
  content:
    en: {title: "Still with us, {{app_info.first_name | default \"reader\"}}?", body: "Five days in: the stories readers like you loved.", deep_link: "news://top"}
    fr: {title: "Toujours là, {{app_info.first_name | default 'lecteur'}} ?", body: "Les articles préférés des lecteurs comme vous.", deep_link: "news://top"}
who:
  segments: [welcome_d5]
  exclude: [subscribers]
  control: 20%
when:
  on_entry: {at: "10:00"}
  expiry: 1d
  default_time_zone: Europe/Paris
limits:
  quiet_hours: {from: "22:00", to: "08:00"}
  once: true
  priority: 5
goal: {event: subscribed, within: 3d}
`},
	{"onboarding_gap", "push    3 days after, saw the login screen, never logged in; 2 h later; priority 10", `
app: news
name: onboarding_gap
what:
  default_locale: en
  content:
    en: {title: "Glad to have you onboard!", body: "Remember to log in to get your 1st month free!", deep_link: "news://login"}
    fr: {title: "Ravis de vous compter parmi nous !", body: "Connectez-vous pour profiter du 1er mois offert !", deep_link: "news://login"}
who:
  segments: [onboarding_gap]
  control: 20%
when:
  on_entry: {delay: 2h}     # not while they are still in the app
  expiry: 12h
  default_time_zone: Europe/Paris
limits:
  quiet_hours: {from: "21:30", to: "09:00"}
  once: true
  priority: 10
goal: {event: logged_in, within: 2d}
`},
	{"we_miss_you", "push    7 days without opening the app; not 21:00–09:00 local; 20% control", `
app: news
name: we_miss_you
what:
  missing: default
  default_locale: en
  content:
    en: {title: "We miss you, {{app_info.first_name | default \"reader\"}}", body: "Here is what you missed this week.", deep_link: "news://week"}
    fr: {title: "Vous nous manquez, {{app_info.first_name | default 'lecteur'}}", body: "Voici ce que vous avez manqué cette semaine.", deep_link: "news://week"}
who:
  segments: [lapsed]
  control: 20%
when:
  on_entry: {}
  expiry: 2d
  default_time_zone: Europe/Paris
limits:
  quiet_hours: {from: "21:00", to: "09:00"}
  once: true
  priority: 3
goal: {event: article_read, within: 2d}
`},
	{"tutorial", "in-app  3 sessions in 3 days and no article read: shown at the next session", `
app: news
name: tutorial
what:
  channel: in_app
  default_locale: en
  content:
    en: {title: "Find your stories", body: "Tap a topic to follow it: your front page fills with it.", layout: modal, buttons: [{label: "Show me", deep_link: "news://tutorial"}]}
    fr: {title: "Trouvez vos articles", body: "Touchez un thème pour le suivre.", layout: modal, buttons: [{label: "Montrez-moi", deep_link: "news://tutorial"}]}
who:
  segments: [stuck]
when:
  on_entry: {}
  default_time_zone: Europe/Paris
limits:
  once: true
goal: {event: article_read, within: 1d}
`},
	{"sport_picks", "push    a third sport article in 7 days, at the next 10:00; priority 1 (lowest)", `
app: news
name: sport_picks
what:
  default_locale: en
  content:
    en: {title: "Your sport picks", body: "Three match reports chosen for you.", deep_link: "news://sport"}
    fr: {title: "Votre sélection sport", body: "Trois comptes rendus choisis pour vous.", deep_link: "news://sport"}
who:
  segments: [sport_fans]
  exclude: [subscribers]
when:
  on_entry: {at: "10:00"}
  expiry: 1d
  default_time_zone: Europe/Paris
limits:
  reentry_after: 7d
  priority: 1
goal: {event: subscribed, within: 3d}
`},
}

// demoCaps are the app's frequency caps, across its campaigns.
var demoCaps = map[triggers.Channel]triggers.Caps{triggers.ChannelPush: {PerDay: 1, PerWeek: 3}}

// demoConfig is the demo app's configuration, checked as `engage segments
// put` and `engage campaigns put` check it.
type demoConfig struct {
	apps      *collector.Apps
	plan      *tagplan.Plan
	segs      []*segments.Segment
	campaigns []*triggers.Campaign
	byName    map[string]*triggers.Campaign
}

func loadDemoConfig(start time.Time) (*demoConfig, error) {
	apps, err := collector.ParseApps("demo apps", []byte(demoAppsYAML), func(string) ([]byte, error) { return []byte(demoPlanYAML), nil })
	if err != nil {
		return nil, err
	}
	app, _ := apps.ByID(demoApp)
	cfg := &demoConfig{apps: apps, plan: app.Plan, byName: map[string]*triggers.Campaign{}}
	var defs []processor.Definition
	for _, d := range demoSegmentDefs {
		defs = append(defs, processor.Definition{App: demoApp, Name: d.name, Text: d.text})
	}
	byName := map[string]*segments.Segment{}
	for i, d := range defs {
		s, err := processor.Validate(d, cfg.plan, defs)
		if err != nil {
			return nil, fmt.Errorf("demo segment %s: %w", d.Name, err)
		}
		s.Version = int64(i + 1)
		cfg.segs = append(cfg.segs, s)
		byName[s.Name] = s
	}
	for i, f := range demoCampaignFiles {
		c, pos, err := triggers.ParseWithPositions(f.name+".yaml", []byte(f.src))
		if err != nil {
			return nil, err
		}
		if err := triggers.Check(c, pos, triggers.Env{Segments: byName, Plan: cfg.plan, Now: start}); err != nil {
			return nil, fmt.Errorf("demo campaign: %w", err)
		}
		c.Version = int64(100 + i)
		cfg.campaigns = append(cfg.campaigns, c)
		cfg.byName[c.Name] = c
	}
	return cfg, nil
}

// campaignNames returns the campaigns' names in the order of the files.
func (c *demoConfig) campaignNames() []string {
	var out []string
	for _, x := range c.campaigns {
		out = append(out, x.Name)
	}
	return out
}

func demoSortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
