package triggers

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments"
)

// exampleNow is the now the examples are checked at: they all send after
// it.
var exampleNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// loadEnv reads the tag plan and segments of an example app
// (testdata/campaign_apps/<app>), holding each segment to the plan.
func loadEnv(t testing.TB, app string) Env {
	t.Helper()
	dir := filepath.Join("testdata", "campaign_apps", app)
	plan, err := tagplan.ParseFile(filepath.Join(dir, "plan.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "segments.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var texts map[string]string
	if err := yaml.Unmarshal(data, &texts); err != nil {
		t.Fatal(err)
	}
	segs := map[string]*segments.Segment{}
	for name, text := range texts {
		expr, err := segments.Parse(text)
		if err != nil {
			t.Fatalf("segment %s: %v", name, err)
		}
		segs[name] = &segments.Segment{App: app, Name: name, Text: text, Expr: expr}
	}
	for name, s := range segs {
		if err := segments.Check(s, plan, func(n string) bool { return segs[n] != nil }); err != nil {
			t.Fatalf("segment %s of %s: %v", name, app, err)
		}
	}
	return Env{Segments: segs, Plan: plan, Now: exampleNow}
}

func exampleFiles(t testing.TB) []string {
	files, err := filepath.Glob("testdata/campaign_*.*")
	if err != nil || len(files) < 8 {
		t.Fatalf("examples: %v %v", files, err)
	}
	return files
}

// Every example parses, and checks clean against its app's plan and
// segments.
func TestExamples(t *testing.T) {
	envs := map[string]Env{}
	for _, file := range exampleFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, pos, err := ParseWithPositions(file, data)
			if err != nil {
				t.Fatal(err)
			}
			env, ok := envs[c.App]
			if !ok {
				env = loadEnv(t, c.App)
				envs[c.App] = env
			}
			if err := Check(c, pos, env); err != nil {
				t.Fatal(err)
			}
			for _, m := range append([]map[string]*Message{c.What.Content}, variantContents(c)...) {
				for locale, msg := range m {
					if _, err := CompileMessage(msg); err != nil {
						t.Errorf("%s: %v", locale, err)
					}
				}
			}
		})
	}
}

func variantContents(c *Campaign) []map[string]*Message {
	var out []map[string]*Message
	for _, v := range c.Who.Variants {
		if v.Content != nil {
			out = append(out, v.Content)
		}
	}
	return out
}

// The same campaign as JSON (the YAML examples, converted) parses to the
// same Campaign.
func TestJSONSameAsYAML(t *testing.T) {
	for _, file := range exampleFiles(t) {
		if !strings.HasSuffix(file, ".yaml") {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := yaml.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			js, err := json.MarshalIndent(doc, "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			fromYAML, err := Parse(file, data)
			if err != nil {
				t.Fatal(err)
			}
			fromJSON, err := Parse(file+".json", js)
			if err != nil {
				t.Fatalf("%v\n%s", err, js)
			}
			if !reflect.DeepEqual(fromYAML, fromJSON) {
				t.Errorf("from YAML\n%+v\nfrom JSON\n%+v", fromYAML, fromJSON)
			}
		})
	}
}

func TestParseWelcome(t *testing.T) {
	data, err := os.ReadFile("testdata/campaign_welcome_d2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("w.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	one := 1
	want := &Campaign{
		App: "news", Name: "welcome_d2", Salt: "welcome_d2",
		What: What{
			Channel: ChannelPush, DefaultLocale: "en", Missing: MissingDefault,
			Content: map[string]*Message{
				"en": {Title: `Welcome, {{app_info.first_name | default "reader"}}!`,
					Body:     "Your first month of premium articles is free. Pick your topics now.",
					DeepLink: "news://topics", Sound: "default", Badge: &one},
				"fr": {Title: `Bienvenue, {{app_info.first_name | default 'lecteur'}} !`,
					Body:     "Votre premier mois d'articles premium est offert. Choisissez vos thèmes.",
					DeepLink: "news://topics", Sound: "default", Badge: &one},
			},
		},
		Who:   Who{Segments: []string{"welcome_d2"}, Exclude: []string{"subscribers"}, Sample: 100, Control: 10},
		When:  When{Kind: OnEntry, AlignTo: &TimeOfDay{10, 0}, Expiry: 24 * time.Hour, DefaultTZ: "Europe/Paris"},
		Limit: Limits{Quiet: &QuietHours{From: TimeOfDay{22, 0}, To: TimeOfDay{8, 0}}, Once: true},
		Goal:  &Goal{Event: "subscribed", Window: 72 * time.Hour},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
}

func TestParseValues(t *testing.T) {
	base := "app: a\nname: n\nwhat: {content: {en: {title: t}}}\nwho: {segments: [s]}\n"
	for _, tc := range []struct {
		name, yaml string
		check      func(*Campaign) bool
	}{
		{"defaults", base + "when: {on_entry: }", func(c *Campaign) bool {
			return c.What.Channel == ChannelPush && c.What.Missing == MissingSkip && c.What.DefaultLocale == "en" && c.Salt == "n" &&
				c.Who.Sample == 100 && c.When.DefaultTZ == "UTC" && c.When.Kind == OnEntry && c.Goal == nil && c.Limit == (Limits{})
		}},
		{"salt", base + "salt: s2\nwhen: {on_entry: {}}", func(c *Campaign) bool { return c.Salt == "s2" }},
		{"durations", base + "when: {on_entry: {delay: 1d12h}, expiry: 90 minutes}\nlimits: {reentry_after: 2w}\ngoal: {event: e, within: 36h}",
			func(c *Campaign) bool {
				return c.When.Delay == 36*time.Hour && c.When.Expiry == 90*time.Minute && c.Limit.ReentryAfter == 14*24*time.Hour && c.Goal.Window == 36*time.Hour
			}},
		{"delay 0", base + "when: {on_entry: {delay: 0}}", func(c *Campaign) bool { return c.When.Delay == 0 }},
		{"negative delay is Check's", base + "when: {on_entry: {delay: -1h}}", func(c *Campaign) bool { return c.When.Delay == -time.Hour }},
		{"percentages", "app: a\nname: n\nwhat: {content: {en: {title: t}}}\nwho: {segments: s, sample: 0.5%, control: 10, variants: [{name: a, weight: 33.5}, {name: b, weight: \"66.5 %\"}]}\nwhen: {on_entry: {}}",
			func(c *Campaign) bool {
				return c.Who.Sample == 0.5 && c.Who.Control == 10 && c.Who.Segments[0] == "s" && c.Who.Variants[0].Weight == 33.5 && c.Who.Variants[1].Weight == 66.5
			}},
		{"rates", base + "when: {on_entry: {}}\nlimits: {rate: 6000/min}", func(c *Campaign) bool { return c.Limit.Rate == 100 }},
		{"plain rate", base + "when: {on_entry: {}}\nlimits: {rate: 2.5}", func(c *Campaign) bool { return c.Limit.Rate == 2.5 }},
		{"hourly rate", base + "when: {on_entry: {}}\nlimits: {rate: 3600 / hour}", func(c *Campaign) bool { return c.Limit.Rate == 1 }},
		{"once in UTC", base + "when: {once: {at: 2026-12-24T18:00:00+02:00}}", func(c *Campaign) bool {
			return c.When.Kind == Once && c.When.At.Equal(time.Date(2026, 12, 24, 16, 0, 0, 0, time.UTC)) && c.When.At.Location() == time.UTC
		}},
		{"once local without zone", base + "when: {once: {at: \"2026-12-24 18:00\", local_time: true}}", func(c *Campaign) bool {
			return c.When.LocalTime && c.When.At.Equal(time.Date(2026, 12, 24, 18, 0, 0, 0, time.UTC))
		}},
		{"once local with Z", base + "when: {once: {local_time: true, at: 2026-12-24T18:00:00Z}}", func(c *Campaign) bool {
			return c.When.At.Equal(time.Date(2026, 12, 24, 18, 0, 0, 0, time.UTC))
		}},
		{"date", base + "when: {on_entry: {}, start: 2026-03-01, end: 2026-04-01T12:00:00.5Z}", func(c *Campaign) bool {
			return c.When.Start.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) && c.When.End.Equal(time.Date(2026, 4, 1, 12, 0, 0, 5e8, time.UTC))
		}},
		{"every day", base + "when: {recurring: {every: day, at: \"9:05\"}}", func(c *Campaign) bool {
			return c.When.Kind == Recurring && c.When.Weekdays == nil && *c.When.Every == TimeOfDay{9, 5}
		}},
		{"every weekday list", base + "when: {recurring: {every: [Mon, thursday], at: \"21:00\"}}", func(c *Campaign) bool {
			return reflect.DeepEqual(c.When.Weekdays, []time.Weekday{time.Monday, time.Thursday})
		}},
		{"every weekends", base + "when: {recurring: {every: weekends, at: \"10:00\"}}", func(c *Campaign) bool {
			return reflect.DeepEqual(c.When.Weekdays, []time.Weekday{time.Saturday, time.Sunday})
		}},
		{"out-of-range times are Check's", base + "when: {on_entry: {at: \"24:00\"}}\nlimits: {quiet_hours: {from: \"10:61\", to: \"99:99\", then: drop}}", func(c *Campaign) bool {
			return *c.When.AlignTo == TimeOfDay{24, 0} && c.Limit.Quiet.From == TimeOfDay{10, 61} && c.Limit.Quiet.To == TimeOfDay{99, 99} && c.Limit.Quiet.Drop
		}},
		{"limits", base + "when: {on_entry: {}}\nlimits: {once: false, reentry_after: 3d, priority: -7}", func(c *Campaign) bool {
			return !c.Limit.Once && c.Limit.ReentryAfter == 72*time.Hour && c.Limit.Priority == -7
		}},
		{"message fields", "app: a\nname: n\nwho: {segments: [s]}\nwhen: {on_entry: {}}\nwhat:\n  channel: in_app\n  content:\n    en:\n      title: t\n      badge: 0x10\n      data: {k: v, n: 1}\n      ttl: 1w\n      layout: banner\n      buttons: [{label: OK}, {label: Go, deep_link: \"x://y\"}]\n      activities: home\n      priority: normal\n      collapse_id: c\n      sound: ping.caf\n      image: https://i\n      deep_link: x://z",
			func(c *Campaign) bool {
				m := c.What.Content["en"]
				return c.What.Channel == ChannelInApp && *m.Badge == 16 && reflect.DeepEqual(m.Data, map[string]string{"k": "v", "n": "1"}) &&
					m.TTL == 7*24*time.Hour && m.Layout == LayoutBanner && reflect.DeepEqual(m.Buttons, []Button{{"OK", ""}, {"Go", "x://y"}}) &&
					reflect.DeepEqual(m.Activities, []string{"home"}) && m.Priority == PriorityNormal && m.CollapseID == "c" && m.Sound == "ping.caf" &&
					m.Image == "https://i" && m.DeepLink == "x://z"
			}},
		{"aliases", "app: a\nname: n\nwhat: {content: {en: &m {title: t}, fr: *m}, default_locale: en}\nwho: {segments: [s]}\nwhen: {on_entry: {}}", func(c *Campaign) bool {
			return c.What.Content["fr"].Title == "t" && c.What.Content["fr"] != c.What.Content["en"]
		}},
		{"merge keys", "app: a\nname: n\nwho: {segments: [s]}\nwhen: {on_entry: {}}\nwhat:\n  default_locale: en\n  content:\n    en: &en {title: Hi, deep_link: \"x://home\", sound: default}\n    fr: {<<: *en, title: Salut}\n    de: {<<: [{title: Hallo}, *en]}\n",
			func(c *Campaign) bool {
				fr, de := c.What.Content["fr"], c.What.Content["de"]
				return fr.Title == "Salut" && fr.DeepLink == "x://home" && fr.Sound == "default" && de.Title == "Hallo" && de.DeepLink == "x://home"
			}},
		{"json auto-detected", `{"app": "a", "name": "n", "what": {"content": {"en": {"title": "\/t"}}}, "who": {"segments": ["s"], "sample": 1.5e1}, "when": {"on_entry": null}}`,
			func(c *Campaign) bool {
				return c.What.Content["en"].Title == "/t" && c.Who.Sample == 15 && c.When.Kind == OnEntry
			}},
		{"yaml flow mapping is not json", `{app: a, name: n, what: {content: {en: {title: t}}}, who: {segments: [s]}, when: {on_entry: {}}}`,
			func(c *Campaign) bool { return c.App == "a" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("c.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("wrong campaign: %+v", c)
			}
		})
	}
}

// mistake is one case of the mistake tables: a file, the errors it gets
// (rendered), and what each error's line:col points at in the file.
type mistake struct {
	name string
	file string
	want []string // the errors, as Error() renders them
	at   []string // the text at each error's line:col
}

// checkMistakes asserts the errors of one case, and that each points at
// its text in the file.
func checkMistakes(t *testing.T, tc mistake, err error) {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T), want Errors", err, err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
	}
	if len(tc.at) != len(errs) {
		t.Fatalf("%d positions to check for %d errors", len(tc.at), len(errs))
	}
	lines := strings.Split(tc.file, "\n")
	for i, e := range errs {
		if e.Line < 1 || e.Line > len(lines) {
			t.Fatalf("error %q at line %d, outside the file", e, e.Line)
		}
		if e.Col == 0 { // syntax errors: the line only
			if !strings.Contains(lines[e.Line-1], tc.at[i]) {
				t.Errorf("error %q: line %d is %q, without %q", e, e.Line, lines[e.Line-1], tc.at[i])
			}
			continue
		}
		line := lines[e.Line-1]
		k := runeOffset(line, e.Col-1)
		if k < 0 || !strings.HasPrefix(line[k:], tc.at[i]) {
			t.Errorf("error %q points at %q, want %q", e, line[max(k, 0):], tc.at[i])
		}
	}
}

// The structure of a campaign file: each mistake alone, at its place.
func TestParseMistakes(t *testing.T) {
	const head = "app: a\nname: n\n"
	const rest = "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n"
	for _, tc := range []mistake{
		{name: "empty", file: "",
			want: []string{"c.yaml:1:1: empty campaign file: it needs at least app, name, what, who and when"}, at: []string{""}},
		{name: "two documents", file: head + rest + "---\napp: b\n",
			want: []string{"c.yaml:7:1: a second YAML document: a campaign file holds one campaign (remove the ---)"}, at: []string{"app"}},
		{name: "syntax", file: head + "what: {content: [\n",
			want: []string{"c.yaml:3: syntax error: did not find expected node content"}, at: []string{"what"}},
		{name: "not a mapping", file: "- app: a\n",
			want: []string{"c.yaml:1:1: a campaign must be a mapping with keys app, name, salt, what, who, when, limits or goal, not a list"}, at: []string{"- app"}},
		{name: "unknown key", file: head + rest + "goals: {event: e, within: 1d}\n",
			want: []string{`c.yaml:6:1: unknown key "goals" in a campaign: use app, name, salt, what, who, when, limits or goal (did you mean "goal"?)`}, at: []string{"goals"}},
		{name: "duplicate key", file: head + "name: m\n" + rest,
			want: []string{`c.yaml:3:1: duplicate key "name" (first at 2:1)`}, at: []string{"name: m"}},
		{name: "missing sections", file: "app: a\n",
			want: []string{
				"c.yaml:1:1: missing name: the campaign's name, unique in its app",
				"c.yaml:1:1: missing what: the message: what: {channel: push, content: {en: {title: …, body: …}}}",
				"c.yaml:1:1: missing when: when it sends: when: {on_entry: {}}, {once: {at: …}} or {recurring: {every: day, at: \"09:00\"}}",
				"c.yaml:1:1: missing who: the audience: who: {segments: [a segment]}",
			}, at: []string{"app", "app", "app", "app"}},
		{name: "key not a text", file: head + rest + "[x]: 1\n",
			want: []string{"c.yaml:6:1: a key must be a text, not a list"}, at: []string{"[x]"}},
		{name: "app not a text", file: "app: {id: a}\nname: n\n" + rest,
			want: []string{"c.yaml:1:6: app must be a text, not a mapping"}, at: []string{"{id"}},
		{name: "content not a mapping", file: head + "what: {content: [en]}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{"c.yaml:3:17: content must be a mapping of locales to messages, such as {en: {title: …}}, not a list"}, at: []string{"[en]"}},
		{name: "missing content", file: head + "what: {channel: push}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{"c.yaml:3:7: missing content: the message per locale, e.g. content: {en: {title: …, body: …}}"}, at: []string{"{channel"}},
		{name: "unknown message key", file: head + "what: {content: {en: {titel: t}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{`c.yaml:3:23: unknown key "titel" in a message: use title, body, sound, badge, image, deep_link, data, collapse_id, priority, ttl, layout, buttons or activities (did you mean "title"?)`}, at: []string{"titel"}},
		{name: "badge not a number", file: head + "what: {content: {en: {title: t, badge: one}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{`c.yaml:3:40: badge must be a whole number between -2147483648 and 2147483647, not "one"`}, at: []string{"one"}},
		{name: "badge fraction", file: head + "what: {content: {en: {title: t, badge: 1.5}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{`c.yaml:3:40: badge must be a whole number between -2147483648 and 2147483647, not "1.5"`}, at: []string{"1.5"}},
		{name: "data not a mapping", file: head + "what: {content: {en: {title: t, data: x}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{`c.yaml:3:39: data must be a mapping of keys to texts, such as {article_id: "{{trigger.article}}"}, not "x"`}, at: []string{"x}"}},
		{name: "data value not a text", file: head + "what: {content: {en: {title: t, data: {k: [1]}}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{`c.yaml:3:43: k must be a text, not a list`}, at: []string{"[1]"}},
		{name: "button without label", file: head + "what: {content: {en: {title: t, buttons: [{deep_link: \"x://\"}, {lable: b}]}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{
				"c.yaml:3:43: missing label: the button's text",
				"c.yaml:3:64: missing label: the button's text",
				`c.yaml:3:65: unknown key "lable" in a button: use label or deep_link (did you mean "label"?)`,
			}, at: []string{"{deep_link", "{lable", "lable"}},
		{name: "buttons not a list", file: head + "what: {content: {en: {title: t, buttons: {label: b}}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{"c.yaml:3:42: buttons must be a list, not a mapping"}, at: []string{"{label"}},
		{name: "who unknown key", file: head + "what: {content: {en: {title: t}}}\nwho: {segment: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{
				"c.yaml:4:6: missing segments: the segments whose members the campaign is for, e.g. segments: [new_users]",
				`c.yaml:4:7: unknown key "segment" in who: use segments, exclude, sample, control or variants (did you mean "segments"?)`,
			}, at: []string{"{segment", "segment"}},
		{name: "segments a mapping", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: {s: 1}}\nwhen: {on_entry: {}}\n",
			want: []string{"c.yaml:4:17: segments must be a list, not a mapping"}, at: []string{"{s: 1}"}},
		{name: "sample not a percentage", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s], sample: half}\nwhen: {on_entry: {}}\n",
			want: []string{`c.yaml:4:30: sample must be a percentage such as 10% or 0.5%, not "half"`}, at: []string{"half"}},
		{name: "variant without name and weight", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s], variants: [{content: {en: {title: u}}}]}\nwhen: {on_entry: {}}\n",
			want: []string{
				"c.yaml:4:33: missing name: each variant has a name, such as a or short_title",
				"c.yaml:4:33: missing weight: the variant's share in percent, such as weight: 50%",
			}, at: []string{"{content", "{content"}},
		{name: "no trigger", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {expiry: 1d}\n",
			want: []string{"c.yaml:5:7: when needs one of on_entry, once or recurring"}, at: []string{"{expiry"}},
		{name: "two triggers", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}, recurring: {every: day, at: \"09:00\"}}\n",
			want: []string{"c.yaml:5:33: when has both on_entry and recurring: a campaign sends on one kind of trigger"}, at: []string{"{every"}},
		{name: "on_entry unknown key", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {on_entry: {dealy: 2d}}\n",
			want: []string{`c.yaml:5:19: unknown key "dealy" in on_entry: use delay or at (did you mean "delay"?)`}, at: []string{"dealy"}},
		{name: "duration units", file: head + rest[:len(rest)-len("when: {on_entry: {}}\n")] + "when: {on_entry: {delay: 2 months}, expiry: 2}\nlimits: {reentry_after: 2x}\n",
			want: []string{
				`c.yaml:5:26: delay must be a duration such as 2d, 36h or 90m, not "2 months": unknown unit "months": use w, d, h, m, s or ms (a month has no fixed length: write 30d)`,
				`c.yaml:5:45: expiry must be a duration such as 2d, 36h or 90m, not "2": 2 needs a unit: 2d, 2h, 2m or 2s`,
				`c.yaml:6:25: reentry_after must be a duration such as 2d, 36h or 90m, not "2x": unknown unit "x": use w, d, h, m, s or ms (a month has no fixed length: write 30d)`,
			}, at: []string{"2 months", "2}", "2x"}},
		{name: "duration too long", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {on_entry: {delay: 99999999999999999999d}}\n",
			want: []string{`c.yaml:5:26: delay must be a duration such as 2d, 36h or 90m, not "99999999999999999999d": it is too long: at most 36500d`}, at: []string{"9999"}},
		{name: "time of day", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {on_entry: {at: 10h}}\n",
			want: []string{`c.yaml:5:23: at must be a local time of day such as "09:00" or "18:30" (24-hour HH:MM), not "10h"`}, at: []string{"10h"}},
		{name: "once without at", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {once: {local_time: true}}\n",
			want: []string{"c.yaml:5:14: missing at: the instant to send, such as at: 2026-12-24T18:00:00Z"}, at: []string{"{local_time"}},
		{name: "local time with an offset", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {once: {at: 2026-12-24T18:00:00+01:00, local_time: true}}\n",
			want: []string{`c.yaml:5:19: with local_time the instant is a wall time in each device's zone: write it without an offset (2026-12-24T18:00) or with Z, not "2026-12-24T18:00:00+01:00"`}, at: []string{"2026-12-24T18:00:00+01:00"}},
		{name: "instant without zone", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {once: {at: 2026-12-24T18:00}}\n",
			want: []string{`c.yaml:5:19: "2026-12-24T18:00" has no time zone: add Z for UTC (2026-12-24T18:00Z) or an offset such as +02:00, or set local_time: true for each device's own wall time`}, at: []string{"2026-12-24T18:00"}},
		{name: "bad instant", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}, start: 24/12/2026}\n",
			want: []string{`c.yaml:5:29: start must be an instant such as 2026-12-24T18:00:00Z (RFC 3339) or a date such as 2026-12-24, not "24/12/2026"`}, at: []string{"24/12/2026"}},
		{name: "recurring without every and at", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {recurring: {}}\n",
			want: []string{
				"c.yaml:5:19: missing at: the local time of day to send, such as at: \"09:00\"",
				"c.yaml:5:19: missing every: day, a weekday, or a list of weekdays such as [mon, thu]",
			}, at: []string{"{}", "{}"}},
		{name: "weekdays", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {recurring: {every: [mon, thurs, [x]], at: \"09:00\"}}\n",
			want: []string{
				`c.yaml:5:33: unknown day "thurs": use day, weekdays, weekends, or mon, tue, wed, thu, fri, sat, sun (did you mean "thu"?)`,
				"c.yaml:5:40: every[2] must be a weekday, not a list",
			}, at: []string{"thurs", "[x]"}},
		{name: "no weekday", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {recurring: {every: [], at: \"09:00\"}}\n",
			want: []string{"c.yaml:5:27: every: [] names no weekday: write every: day, or the weekdays, such as [mon, thu]"}, at: []string{"[]"}},
		{name: "expiry 0", file: head + "what: {content: {en: {title: t}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}, expiry: 0}\n",
			want: []string{"c.yaml:5:30: expiry 0 would expire every message at once: give how long a message stays worth sending, such as 1d, or leave expiry out"}, at: []string{"0}"}},
		{name: "limits", file: head + rest + "limits: {once: yes, reentry_after: 1d, priority: high, rate: 100/week, quiet_hours: {from: \"22:00\", then: later}, cap: 3}\n",
			want: []string{
				`c.yaml:6:16: once must be true or false, not "yes"`,
				`c.yaml:6:50: priority must be a whole number between -2147483648 and 2147483647, not "high"`,
				`c.yaml:6:62: rate must be sends per unit of time, such as 100/s, 6000/min or 10000/h, not "100/week"`,
				"c.yaml:6:85: missing to: quiet hours go from a local time to another, such as {from: \"22:00\", to: \"08:00\"}",
				"c.yaml:6:107: then must be defer (send at the end of the quiet hours) or drop, not \"later\"",
				`c.yaml:6:115: unknown key "cap" in limits: use quiet_hours, once, reentry_after, priority or rate`,
			}, at: []string{"yes", "high", "100/week", "{from", "later", "cap"}},
		{name: "once and reentry_after", file: head + rest + "limits: {once: true, reentry_after: 7d}\n",
			want: []string{"c.yaml:6:37: once: true and reentry_after exclude each other: once sends to a device only once, reentry_after again after a while"}, at: []string{"7d"}},
		{name: "goal", file: head + rest + "goal: {event: e, whithin: 3d}\n",
			want: []string{
				"c.yaml:6:7: missing within: how long after the send a conversion counts, such as within: 3d",
				`c.yaml:6:18: unknown key "whithin" in goal: use event or within (did you mean "within"?)`,
			}, at: []string{"{event", "whithin"}},
		{name: "merge of a text", file: head + "what: {content: {en: {title: t}, fr: {<<: t}}, default_locale: en}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{`c.yaml:3:39: << merges a mapping (<<: *anchor), not "t"`}, at: []string{"<<"}},
		{name: "merged key unknown", file: head + "what: {content: {en: {title: t}, fr: {<<: {titel: x}}}, default_locale: en}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{`c.yaml:3:44: unknown key "titel" in a message: use title, body, sound, badge, image, deep_link, data, collapse_id, priority, ttl, layout, buttons or activities (did you mean "title"?)`}, at: []string{"titel"}},
		{name: "anchor merging itself", file: head + "what: {content: {en: &e {title: t, <<: *e}}}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n",
			want: []string{"c.yaml:3:36: merges nest deeper than 8 levels (does an anchor merge itself?)"}, at: []string{"<<"}},
		{name: "every mistake at once", file: "app: a\nnam: n\nwhat: {content: {en: {title: \"{{x}}\"}}}\nwho: {segments: [s], sample: all}\nwhen: {on_entry: {delay: soon}}\n",
			want: []string{
				"c.yaml:1:1: missing name: the campaign's name, unique in its app",
				`c.yaml:2:1: unknown key "nam" in a campaign: use app, name, salt, what, who, when, limits or goal (did you mean "name"?)`,
				`c.yaml:3:33: field "x" needs its source: write app_info.x (the device's app-info) or trigger.x (an extra of the triggering record)`,
				`c.yaml:4:30: sample must be a percentage such as 10% or 0.5%, not "all"`,
				`c.yaml:5:26: delay must be a duration such as 2d, 36h or 90m, not "soon": expected a number of units, such as 2d`,
			}, at: []string{"app", "nam", "x}}", "all", "soon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("c.yaml", []byte(tc.file))
			if c != nil {
				t.Errorf("a campaign despite the mistakes: %+v", c)
			}
			checkMistakes(t, tc, err)
		})
	}
}

// Template mistakes are placed at their character in the file when the
// text is written so that it can be found (plain, quoted or literal, no
// escape before), else at the text with its column.
func TestParseTemplatePositions(t *testing.T) {
	const head = "app: a\nname: n\nwho: {segments: [s]}\nwhen: {on_entry: {}}\nwhat:\n  content:\n    en:\n"
	msg := `unknown device field "locle": use platform, app_version, os_version, model, manufacturer, locale, country, timezone (did you mean "locale"?)`
	for _, tc := range []mistake{
		{name: "plain", file: head + "      title: Hi {{device.locle}}\n",
			want: []string{"c.yaml:8:26: " + msg}, at: []string{"locle"}},
		{name: "double-quoted", file: head + "      title: \"Hi {{device.locle}}\"\n",
			want: []string{"c.yaml:8:27: " + msg}, at: []string{"locle"}},
		{name: "single-quoted", file: head + "      title: 'Hi ¡{{device.locle}}'\n",
			want: []string{"c.yaml:8:28: " + msg}, at: []string{"locle"}},
		{name: "literal block", file: head + "      body: |\n        Line one\n          indented {{device.locle}}\n",
			want: []string{"c.yaml:10:29: " + msg}, at: []string{"locle"}},
		{name: "flow", file: "app: a\nname: n\nwho: {segments: [s]}\nwhen: {on_entry: {}}\nwhat: {content: {en: {body: \"{{device.locle}}\", title: \"x\"}}}\n",
			want: []string{"c.yaml:5:39: " + msg}, at: []string{"locle"}},
		{name: "escape before: at the text", file: head + "      title: \"\\u00a1{{device.locle}}\"\n",
			want: []string{"c.yaml:8:14: " + msg + " (column 11 of the text)"}, at: []string{`"\u00a1`}},
		{name: "folded: at the text", file: head + "      body: >\n        one\n        two {{device.locle}}\n",
			want: []string{"c.yaml:8:13: " + msg + " (column 18 of the text)"}, at: []string{">"}},
		{name: "plain on two lines: at the text", file: head + "      body: one\n        two {{device.locle}}\n",
			want: []string{"c.yaml:8:13: " + msg + " (column 18 of the text)"}, at: []string{"one"}},
		{name: "json", file: "{\n  \"app\": \"a\", \"name\": \"n\", \"who\": {\"segments\": [\"s\"]}, \"when\": {\"on_entry\": {}},\n  \"what\": {\"content\": {\"en\": {\"title\": \"H\u00e9 {{device.locle}}\"}}}\n}\n",
			want: []string{"c.yaml:3:53: " + msg}, at: []string{"locle"}},
		{name: "json escape before: at the text", file: "{\n  \"app\": \"a\", \"name\": \"n\", \"who\": {\"segments\": [\"s\"]}, \"when\": {\"on_entry\": {}},\n  \"what\": {\"content\": {\"en\": {\"title\": \"H\\u00e9 {{device.locle}}\"}}}\n}\n",
			want: []string{"c.yaml:3:40: " + msg + " (column 13 of the text)"}, at: []string{`"H\u00e9`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tc.file))
			checkMistakes(t, tc, err)
		})
	}
}

func TestParseJSONMistakes(t *testing.T) {
	for _, tc := range []mistake{
		{name: "syntax", file: "{\"app\": \"a\",\n \"name\": \"n\" \"what\": {}}",
			want: []string{"c.json:2:14: syntax error: invalid character '\"' after object key:value pair"}, at: []string{`"what"`}},
		{name: "ends early", file: "{\"app\": \"a\",\n \"name\": [\"n\"",
			want: []string{"c.json:2:14: syntax error: the JSON document ends early: a } or ] is missing"}, at: []string{""}},
		{name: "more after", file: "{\"app\": \"a\"}\n{\"app\": \"b\"}",
			want: []string{"c.json:2:1: syntax error: more after the campaign's closing }: a file holds one campaign"}, at: []string{`{"app": "b"}`}},
		{name: "values", file: "{\n  \"app\": \"a\", \"name\": \"n\", \"app\": \"b\",\n  \"what\": {\"content\": {\"en\": {\"title\": 1, \"badge\": \"1\"}}},\n  \"who\": {\"segments\": [\"s\"], \"sample\": true}, \"when\": {\"on_entry\": {\"delay\": 2}}\n}",
			want: []string{
				`c.json:2:28: duplicate key "app" (first at 2:3)`,
				`c.json:3:52: badge must be a whole number between -2147483648 and 2147483647, not "1"`,
				`c.json:4:40: sample must be a percentage such as 10% or 0.5%, not "true"`,
				`c.json:4:78: delay must be a duration such as 2d, 36h or 90m, not "2": 2 needs a unit: 2d, 2h, 2m or 2s`,
			}, at: []string{`"app": "b"`, `"1"`, "true", "2}"}},
		{name: "deep", file: `{"app": ` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "}",
			want: []string{"c.json:1:41: the JSON document nests deeper than 32 levels: it cannot be a campaign"}, at: []string{"[[[[[[[[]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.json", []byte(tc.file))
			checkMistakes(t, tc, err)
		})
	}
}

// A small file of aliases to aliases does not make the walk explode.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("app: a\nname: n\nwhen: {on_entry: {}}\nwhat: {content: {en: {title: t}}}\nwho:\n  segments: [s]\n  variants:\n")
	b.WriteString("  - {name: v, weight: 1, content: &c {en: &m {title: t, buttons: &b [")
	for j := range 40 {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString("{label: x}")
	}
	b.WriteString("]}, fr: *m}}\n")
	for range 3000 {
		b.WriteString("  - {name: v, weight: 1, content: *c}\n")
	}
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(b.String()))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Line < 8 ||
		!strings.HasSuffix(errs[0].Error(), ": the campaign has more than 100000 values (counting those YAML aliases repeat): it cannot be a campaign") {
		t.Errorf("error %v, want only: too many values", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/campaign_*.*")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "app: a", "- x", "app: *x", "app: a\n---\n", "{}", `{"app": 1}`, "{\"a\": [}", "{{},<<}", "what: {content: {en: &x {title: t}, fr: *x}}",
		"when: {once: {at: 2026-01-01T00:00, local_time: true}}", "who: {variants: [{name: a, weight: 50%}]}", "what: {content: {en: {title: \"{{x\"}}}",
	} {
		f.Add([]byte(s))
	}
	env := Env{Now: exampleNow}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, pos, err := ParseWithPositions("f.yaml", data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 || len(errs) > maxCampaignErrors+1 {
				t.Fatalf("error %v (%T), want 1 to %d Errors", err, err, maxCampaignErrors+1)
			}
			for _, e := range errs {
				if e.File != "f.yaml" || e.Msg == "" || (e.Line < 1 && !strings.HasPrefix(e.Msg, "syntax error: ")) {
					t.Fatalf("error without a place or a message: %#v", e)
				}
			}
			return
		}
		if c == nil || pos == nil {
			t.Fatal("no campaign and no error")
		}
		// Check never fails to place a mistake.
		if err := Check(c, pos, env); err != nil {
			for _, e := range err.(Errors) {
				if e.Line < 1 || e.Col < 1 || e.Path == "" && e.Msg != "no campaign" {
					t.Fatalf("check error without a place: %#v", e)
				}
			}
		}
	})
}
