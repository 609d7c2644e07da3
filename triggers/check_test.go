package triggers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/segments"
)

// checkDoc writes a campaign of the news app, one section a line (app 1,
// name 2, what 3, who 4, when 5, limits 6, goal 7): a clean campaign,
// with the sections given replacing its own.
func checkDoc(sections map[string]string) string {
	base := map[string]string{
		"app": "news", "name": "t", "what": "{content: {en: {title: Hi}}}",
		"who": "{segments: [welcome_d2]}", "when": "{on_entry: {}}",
	}
	var b strings.Builder
	for _, key := range []string{"app", "name", "what", "who", "when", "limits", "goal"} {
		v, ok := sections[key]
		if !ok {
			v = base[key]
		}
		if v != "" {
			b.WriteString(key + ": " + v + "\n")
		}
	}
	return b.String()
}

// checkCase is one case of TestCheckMistakes: the sections that differ
// from the clean campaign, and the mistakes Check finds, each at its
// place.
type checkCase struct {
	name     string
	sections map[string]string
	env      func(*Env) // changes the news app's Env; nil: none
	want     []string
	at       []string
}

type sec = map[string]string

// TestCheckMistakes checks each rule of Check alone, with its message and
// its line:column in the file.
func TestCheckMistakes(t *testing.T) {
	news := loadEnv(t, "news")
	long := strings.Repeat("x", 65)
	for _, tc := range []checkCase{
		// app and name
		{name: "plan of another app", sections: sec{"app": "game"},
			want: []string{
				`c.yaml:1:6: the campaign is for app "game" but the tag plan is app "news"'s`,
				`c.yaml:4:18: unknown segment "welcome_d2" in app "game"`,
			}, at: []string{"game", "welcome_d2"},
			env: func(e *Env) { e.Segments = map[string]*segments.Segment{} }},
		{name: "name with a space", sections: sec{"name": `"welcome d2"`},
			want: []string{`c.yaml:2:7: name "welcome d2": use letters, digits, _, - and . (starting with a letter or digit)`}, at: []string{`"welcome d2"`}},
		{name: "name too long", sections: sec{"name": strings.Repeat("n", 129)},
			want: []string{"c.yaml:2:7: name of 129 bytes, more than the limit of 128"}, at: []string{"nnn"}},

		// what
		{name: "unknown channel", sections: sec{"what": "{channel: pusj, content: {en: {title: Hi}}}"},
			want: []string{`c.yaml:3:17: unknown channel "pusj": use push, data or in_app (did you mean "push"?)`}, at: []string{"pusj"}},
		{name: "unknown missing policy", sections: sec{"what": "{missing: defualt, content: {en: {title: Hi}}}"},
			want: []string{`c.yaml:3:17: unknown missing policy "defualt": use default (fields without a value use their default) or skip (skip the device) (did you mean "default"?)`}, at: []string{"defualt"}},
		{name: "no content for the default locale", sections: sec{"what": "{default_locale: de, content: {en: {title: Hi}, fr: {title: Salut}}}"},
			want: []string{`c.yaml:3:37: content has no message for the default locale "de" (it has en, fr)`}, at: []string{"{en:"}},
		{name: "several locales, no default", sections: sec{"what": "{content: {en: {title: Hi}, fr: {title: Salut}}}"},
			want: []string{"c.yaml:3:7: missing default_locale: content has several locales (en, fr): say which one devices with none of them get"}, at: []string{"{content"}},
		{name: "locale with an underscore", sections: sec{"what": "{default_locale: en, content: {en: {title: Hi}, en_US: {title: Hi}}}"},
			want: []string{`c.yaml:3:62: invalid locale "en_US": use a BCP 47 tag such as en, fr or pt-BR (did you mean "en-US"?)`}, at: []string{"{title: Hi}}}"}},
		{name: "locale in capitals", sections: sec{"what": "{default_locale: EN, content: {EN: {title: Hi}}}"},
			want: []string{
				`c.yaml:3:24: invalid locale "EN": use a BCP 47 tag such as en, fr or pt-BR`,
				`c.yaml:3:42: invalid locale "EN": use a BCP 47 tag such as en, fr or pt-BR`,
			}, at: []string{"EN,", "{title"}},
		{name: "push without title or body", sections: sec{"what": "{content: {en: {sound: default}}}"},
			want: []string{"c.yaml:3:22: a push needs a title or a body"}, at: []string{"{sound"}},
		{name: "in-app fields on a push", sections: sec{"what": "{content: {en: {title: Hi, layout: modal, buttons: [{label: OK}], activities: [home]}}}"},
			want: []string{
				"c.yaml:3:42: a push has no layout: layout is for channel in_app",
				"c.yaml:3:58: a push has no buttons: buttons are for channel in_app",
				"c.yaml:3:85: a push shows wherever the device is: activities are for channel in_app",
			}, at: []string{"modal", "[{label", "[home]"}},
		{name: "data push", sections: sec{"what": "{channel: data, content: {en: {title: Hi, badge: 2}}}"},
			want: []string{
				"c.yaml:3:37: a data push needs data: the keys and values the app receives, such as data: {refresh: feed}",
				"c.yaml:3:45: a data push shows nothing: title is for channel push",
				"c.yaml:3:56: a data push shows nothing: badge is for channel push",
			}, at: []string{"{title", "Hi", "2}"}},
		{name: "in-app without layout", sections: sec{"what": "{channel: in_app, content: {en: {title: Hi}}}"},
			want: []string{"c.yaml:3:39: an in_app message needs a layout: banner, modal or full_screen"}, at: []string{"{title"}},
		{name: "in-app", sections: sec{"what": `{channel: in_app, content: {en: {title: Hi, layout: modall, badge: 1, ttl: 1h, buttons: [{label: ""}], activities: [hom, settings, ""]}}}`},
			want: []string{
				`c.yaml:3:59: unknown layout "modall": use banner, modal or full_screen (did you mean "modal"?)`,
				"c.yaml:3:74: badge is for push and data messages, not in_app ones",
				"c.yaml:3:82: ttl is for push and data messages, not in_app ones",
				"c.yaml:3:104: the button has no label",
				`c.yaml:3:123: activity "hom" is not in the tag plan of app "news" (did you mean "home"?)`,
				"c.yaml:3:138: empty activity name",
			}, at: []string{"modall", "1,", "1h", `""}`, "hom", `""]`}},
		{name: "provider limits", sections: sec{"what": "{content: {en: {title: Hi, badge: -1, ttl: 29d, priority: urgent, collapse_id: " + long +
			", image: cdn.example.com/x.png, deep_link: article/42, data: {from: x, google.id: y, ok: z}}}}"},
			want: []string{
				"c.yaml:3:41: badge -1: use 0 (which clears the badge) or more",
				"c.yaml:3:50: ttl 29d is longer than 28d, the most APNs and FCM keep a message",
				`c.yaml:3:65: unknown priority "urgent": use high or normal`,
				"c.yaml:3:86: collapse_id of 65 bytes, more than the 64 APNs takes",
				`c.yaml:3:160: image "cdn.example.com/x.png" is not a URL: write https://…`,
				`c.yaml:3:194: deep_link "article/42" has no scheme: write it as a URL the app opens, such as news://article/42 or https://…`,
				`c.yaml:3:219: data key "from" is reserved by FCM: choose another name`,
				`c.yaml:3:233: data key "google.id" is reserved by FCM: choose another name`,
			}, at: []string{"-1", "29d", "urgent", "xxx", "cdn", "article", "x,", "y,"}},
		{name: "negative ttl", sections: sec{"what": "{content: {en: {title: Hi, ttl: -1h}}}"},
			want: []string{"c.yaml:3:39: ttl -1h is negative: give how long the provider keeps trying, such as 1d (or leave it out for the provider's default)"}, at: []string{"-1h"}},
		{name: "too long for a push", sections: sec{"what": "{content: {en: {title: Hi, body: " + strings.Repeat("b", 3900) + "}}}"},
			want: []string{"c.yaml:3:22: the message's texts and data are 3902 bytes: with the payload around them, more than the 4096 bytes APNs and FCM take"}, at: []string{"{title"}},

		// template fields
		{name: "app_info key not in the plan", sections: sec{"what": `{content: {en: {title: "Hi {{app_info.frist_name}}"}}}`},
			want: []string{`c.yaml:3:34: app_info key "frist_name" is not in the tag plan of app "news" (did you mean "first_name"?)`}, at: []string{"{{app_info.frist"}},
		{name: "trigger field of a once campaign", sections: sec{"what": `{content: {en: {title: "{{trigger.topic}} news"}}}`, "when": "{once: {at: 2026-06-01T10:00:00Z}}"},
			want: []string{"c.yaml:3:31: trigger.topic never has a value: only on_entry campaigns have a triggering record, and this one sends once"}, at: []string{"{{trigger"}},
		{name: "trigger field of a segment entered in time", sections: sec{"what": `{content: {en: {title: "{{trigger.topic}} news"}}}`},
			want: []string{"c.yaml:3:31: trigger.topic never has a value: the campaign's segments (welcome_d2) are entered as time passes or app-info changes, never on a record with extras"}, at: []string{"{{trigger"}},
		{name: "trigger extra the entering records lack", sections: sec{"what": `{content: {en: {title: "Hi", body: "{{trigger.topc}}"}}}`, "who": "{segments: [politics_readers]}"},
			want: []string{`c.yaml:3:43: trigger.topc never has a value: the records that enter the campaign's segments (event "article_read") carry no extra "topc" (they carry ab_group, category, premium, published, topic, words) (did you mean "topic"?)`}, at: []string{"{{trigger.topc"}},
		{name: "trigger extra without segment expressions", sections: sec{"what": `{content: {en: {title: "{{trigger.nope}}"}}}`, "who": "{segments: [politics_readers]}"},
			env:  func(e *Env) { e.Segments = nil },
			want: []string{`c.yaml:3:31: trigger.nope never has a value: the records in the tag plan of app "news" carry no extra "nope" (they carry ab_group, category, code, content, network, plan, premium, published, section, topic, video, words) (did you mean "code"?)`}, at: []string{"{{trigger.nope"}},
		{name: "missing default needs defaults", sections: sec{"what": `{missing: default, content: {en: {title: "Hi {{app_info.first_name}}", body: "{{ device.locale | default 'en' }}"}}}`},
			want: []string{`c.yaml:3:52: with missing: default every field needs a default: write {{app_info.first_name | default "…"}}, or set missing: skip to skip the devices without a value`}, at: []string{"{{app_info"}},

		// who
		{name: "no segment", sections: sec{"who": "{segments: []}"},
			want: []string{"c.yaml:4:17: no segment: name at least one, such as segments: [new_users]"}, at: []string{"[]"}},
		{name: "unknown segment", sections: sec{"who": "{segments: [welcome_d3], exclude: [subscriber]}"},
			want: []string{
				`c.yaml:4:18: unknown segment "welcome_d3" in app "news" (did you mean "welcome_d2"?)`,
				`c.yaml:4:41: unknown segment "subscriber" in app "news" (did you mean "subscribers"?)`,
			}, at: []string{"welcome_d3", "subscriber"}},
		{name: "segment twice, and excluded", sections: sec{"who": "{segments: [welcome_d2, welcome_d2], exclude: [welcome_d2]}"},
			want: []string{
				`c.yaml:4:30: segment "welcome_d2" is listed twice`,
				`c.yaml:4:53: segment "welcome_d2" is both in segments and exclude: no device can be in the audience`,
			}, at: []string{"welcome_d2]", "welcome_d2]}"}},
		{name: "sample 0", sections: sec{"who": "{segments: [welcome_d2], sample: 0%}"},
			want: []string{"c.yaml:4:39: sample 0% keeps nobody: use more than 0% and at most 100% (leave it out for everyone)"}, at: []string{"0%"}},
		{name: "sample over 100", sections: sec{"who": "{segments: [welcome_d2], sample: 150}"},
			want: []string{"c.yaml:4:39: sample 150% is more than everyone: use at most 100%"}, at: []string{"150"}},
		{name: "control 100", sections: sec{"who": "{segments: [welcome_d2], control: 100%}"},
			want: []string{"c.yaml:4:40: control 100% holds everyone out, nobody gets the message: use less than 100%"}, at: []string{"100%"}},
		{name: "control negative", sections: sec{"who": "{segments: [welcome_d2], control: -5%}"},
			want: []string{"c.yaml:4:40: control -5% is negative: use 0% (no control group) to less than 100%"}, at: []string{"-5%"}},
		{name: "variants", sections: sec{"who": `{segments: [welcome_d2], variants: [{name: a, weight: 50}, {name: a, weight: 0}, {name: "b c", weight: 30, content: {fr: {title: Salut}}}]}`},
			want: []string{
				`c.yaml:4:72: variant "a" is named twice (also who.variants[0]): each variant needs its own name, which keeps its devices`,
				"c.yaml:4:83: weight 0%: each variant needs a share above 0%",
				`c.yaml:4:94: variant name "b c": use letters, digits, _, - and . (starting with a letter or digit)`,
				`c.yaml:4:122: variant "b c"'s content (it replaces the campaign's) has no message for the default locale "en" (it has fr)`,
			}, at: []string{"a,", "0}", `"b c"`, "{fr"}},
		{name: "weights not adding up to 100", sections: sec{"who": "{segments: [welcome_d2], variants: [{name: a, weight: 50%}, {name: b, weight: 40%}]}"},
			want: []string{"c.yaml:4:41: the variants' weights add up to 90%, not 100%: each is its share of the devices outside the control group"}, at: []string{"[{name"}},

		// when
		{name: "negative delay", sections: sec{"when": "{on_entry: {delay: -1h}}"},
			want: []string{"c.yaml:5:26: delay -1h is negative: a send cannot come before the entry"}, at: []string{"-1h"}},
		{name: "24:00", sections: sec{"when": `{on_entry: {at: "24:00"}}`},
			want: []string{"c.yaml:5:23: 24:00 is not a time of day: hours go from 00 to 23 (midnight is 00:00)"}, at: []string{`"24:00"`}},
		{name: "10:61", sections: sec{"when": `{recurring: {every: day, at: "10:61"}}`},
			want: []string{"c.yaml:5:36: 10:61 is not a time of day: minutes go from 00 to 59"}, at: []string{`"10:61"`}},
		{name: "expiry shorter than delay", sections: sec{"when": "{on_entry: {delay: 3d}, expiry: 1d}"},
			want: []string{"c.yaml:5:39: expiry 1d is shorter than the delay 3d: expiry counts from the entry, so every send would expire before it is due"}, at: []string{"1d}"}},
		{name: "once before start", sections: sec{"when": "{once: {at: 2026-03-01T10:00:00Z}, start: 2026-04-01}"},
			want: []string{"c.yaml:5:19: at 2026-03-01T10:00:00Z is before start 2026-04-01T00:00:00Z: the send could never happen"}, at: []string{"2026-03-01"}},
		{name: "once after end", sections: sec{"when": "{once: {at: 2026-03-01T10:00:00Z, local_time: true}, end: 2026-02-28T19:00:00Z}"},
			want: []string{"c.yaml:5:19: at 2026-03-01T10:00 local time is after end 2026-02-28T19:00:00Z in every time zone: the send could never happen"}, at: []string{"2026-03-01"}},
		{name: "once in the past", sections: sec{"when": "{once: {at: 2025-12-01T00:00:00Z}}"},
			want: []string{"c.yaml:5:19: at 2025-12-01T00:00:00Z is in the past (now is 2026-01-01T00:00:00Z)"}, at: []string{"2025-12-01"}},
		{name: "once local in the past everywhere", sections: sec{"when": "{once: {at: 2025-12-31T11:00, local_time: true}}"},
			want: []string{"c.yaml:5:19: at 2025-12-31T11:00 local time is in the past in every time zone (now is 2026-01-01T00:00:00Z)"}, at: []string{"2025-12-31"}},
		{name: "weekday twice", sections: sec{"when": `{recurring: {every: [mon, tue, Monday], at: "09:00"}}`},
			want: []string{"c.yaml:5:38: mon is listed twice"}, at: []string{"Monday"}},
		{name: "end before start", sections: sec{"when": "{on_entry: {}, start: 2026-05-01, end: 2026-04-01}"},
			want: []string{"c.yaml:5:46: end 2026-04-01T00:00:00Z is not after start 2026-05-01T00:00:00Z: the campaign could never send"}, at: []string{"2026-04-01"}},
		{name: "end in the past", sections: sec{"when": "{on_entry: {}, end: 2025-06-01}"},
			want: []string{"c.yaml:5:27: end 2025-06-01T00:00:00Z is in the past (now is 2026-01-01T00:00:00Z): the campaign could never send"}, at: []string{"2025-06-01"}},
		{name: "negative expiry", sections: sec{"when": "{on_entry: {}, expiry: -1h}"},
			want: []string{"c.yaml:5:30: expiry -1h is negative: give how long a message stays worth sending, such as 1d"}, at: []string{"-1h"}},
		{name: "unknown time zone", sections: sec{"when": "{on_entry: {}, default_time_zone: Europe/Pariss}"},
			want: []string{`c.yaml:5:41: unknown time zone "Europe/Pariss": use an IANA name such as Europe/Paris or America/New_York`}, at: []string{"Europe/Pariss"}},
		{name: "aligned send in quiet hours", sections: sec{"when": `{on_entry: {at: "23:00"}}`, "limits": `{quiet_hours: {from: "22:00", to: "08:00"}}`},
			want: []string{"c.yaml:5:23: sends at 23:00 fall in the quiet hours (22:00 to 08:00): every one would be deferred to 08:00; move the send time or the quiet hours"}, at: []string{`"23:00"`}},
		{name: "recurring send in quiet hours that drop", sections: sec{"when": `{recurring: {every: day, at: "07:00"}}`, "limits": `{quiet_hours: {from: "22:00", to: "08:00", then: drop}}`},
			want: []string{"c.yaml:5:36: sends at 07:00 fall in the quiet hours (22:00 to 08:00): every one would be dropped; move the send time or the quiet hours"}, at: []string{`"07:00"`}},
		{name: "local once in quiet hours", sections: sec{"when": `{once: {at: "2026-06-01T12:30", local_time: true}}`, "limits": `{quiet_hours: {from: "12:00", to: "14:00"}}`},
			want: []string{"c.yaml:5:19: sends at 12:30 fall in the quiet hours (12:00 to 14:00): every one would be deferred to 14:00; move the send time or the quiet hours"}, at: []string{`"2026-06-01T12:30"`}},

		// limits
		{name: "quiet hours from = to", sections: sec{"limits": `{quiet_hours: {from: "22:00", to: "22:00"}}`},
			want: []string{"c.yaml:6:23: quiet hours from 22:00 to 22:00 are empty, or the whole day: give the hours when nothing is sent, such as from 22:00 to 08:00"}, at: []string{"{from"}},
		{name: "quiet hours out of range", sections: sec{"limits": `{quiet_hours: {from: "25:00", to: "08:60"}}`},
			want: []string{
				"c.yaml:6:30: 25:00 is not a time of day: hours go from 00 to 23 (midnight is 00:00)",
				"c.yaml:6:43: 08:60 is not a time of day: minutes go from 00 to 59",
			}, at: []string{`"25:00"`, `"08:60"`}},
		{name: "negative reentry", sections: sec{"limits": "{reentry_after: -1d}"},
			want: []string{"c.yaml:6:25: reentry_after -1d is negative: give the least time between two sends to a device, such as 7d"}, at: []string{"-1d"}},
		{name: "negative rate", sections: sec{"limits": "{rate: -5/s}"},
			want: []string{"c.yaml:6:16: rate -5 is negative: give sends per unit of time, such as 100/s (or leave it out for no limit)"}, at: []string{"-5/s"}},

		// goal
		{name: "goal event not in the plan", sections: sec{"goal": "{event: subscribe, within: 3d}"},
			want: []string{`c.yaml:6:15: event "subscribe" is not in the tag plan of app "news" (did you mean "subscribed"?)`}, at: []string{"subscribe,"}},
		{name: "goal without event or window", sections: sec{"goal": `{event: "", within: 0}`},
			want: []string{
				"c.yaml:6:15: the goal has no event: name the event that counts as a conversion, such as subscribed",
				"c.yaml:6:27: within 0s: give how long after the send a conversion counts, such as 3d",
			}, at: []string{`""`, "0}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := checkDoc(tc.sections)
			c, pos, err := ParseWithPositions("c.yaml", []byte(file))
			if err != nil {
				t.Fatalf("%v\n%s", err, file)
			}
			env := news
			if tc.env != nil {
				tc.env(&env)
			}
			err = Check(c, pos, env)
			checkMistakes(t, mistake{name: tc.name, file: file, want: tc.want, at: tc.at}, err)
		})
	}
}

// The clean campaign of TestCheckMistakes is clean.
func TestCheckDocClean(t *testing.T) {
	c, pos, err := ParseWithPositions("c.yaml", []byte(checkDoc(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(c, pos, loadEnv(t, "news")); err != nil {
		t.Fatal(err)
	}
}

// A campaign built in Go has no positions: each mistake names its field.
func TestCheckWithoutPositions(t *testing.T) {
	at := TimeOfDay{9, 0}
	c := &Campaign{
		What: What{Channel: "", Content: map[string]*Message{"en": {Title: "Hi {{app_info.x", Body: "{{trigger.y}}"}, "fr": nil}},
		Who:  Who{Variants: []Variant{{Name: "", Weight: 100}}},
		When: When{Kind: Recurring, Every: &at, Weekdays: []time.Weekday{7}, Delay: time.Hour},
		Limit: Limits{Once: true, ReentryAfter: time.Hour, Rate: -1,
			Quiet: &QuietHours{From: TimeOfDay{8, 0}, To: TimeOfDay{8, 0}}},
		Goal: &Goal{},
	}
	err := Check(c, nil, Env{})
	want := []string{
		"app: app is empty: give the id of the app the campaign is for",
		"name: name is empty: give it a name such as welcome_d2",
		`what.channel: unknown channel "": use push, data or in_app`,
		"what.default_locale: missing default_locale: content has several locales (en, fr): say which one devices with none of them get",
		"what.content.en.title: {{ is not closed: end the field with }} (write {{{{ for a literal {{) (column 4 of the text)",
		"what.content.en.body: trigger.y never has a value: only on_entry campaigns have a triggering record, and this one sends recurring (column 1 of the text)",
		"what.content.fr: no message",
		"who.segments: no segment: name at least one, such as segments: [new_users]",
		"who.sample: sample 0% keeps nobody: use more than 0% and at most 100% (leave it out for everyone)",
		"who.variants[0].name: variant name is empty: give it a name such as welcome_d2",
		"when.recurring.every[0]: weekday 7: use 0 (Sunday) to 6 (Saturday)",
		"when: the campaign sends recurring but sets fields of another trigger (delay, at, local_time, every, weekdays): set only its own",
		"limits.quiet_hours: quiet hours from 08:00 to 08:00 are empty, or the whole day: give the hours when nothing is sent, such as from 22:00 to 08:00",
		"limits.reentry_after: once: true and reentry_after exclude each other: once sends to a device only once, reentry_after again after a while",
		"limits.rate: rate -1 is negative: give sends per unit of time, such as 100/s (or leave it out for no limit)",
		"goal.event: the goal has no event: name the event that counts as a conversion, such as subscribed",
		"goal.within: within 0s: give how long after the send a conversion counts, such as 3d",
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v, want Errors", err)
	}
	var got []string
	for _, e := range errs {
		if e.Line != 0 || e.File != "" {
			t.Errorf("%q has a position", e)
		}
		got = append(got, e.Error())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := Check(nil, nil, Env{}); err == nil || err.Error() != "no campaign" {
		t.Errorf("Check(nil) = %v", err)
	}
}

// Positions.Of falls back to the enclosing field for what the file left
// out.
func TestPositionsOf(t *testing.T) {
	_, pos, err := ParseWithPositions("c.yaml", []byte("app: a\nname: n\nwhat:\n  content:\n    en: {title: t}\nwho: {segments: [s]}\nwhen: {on_entry: {}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]Pos{
		"":                      {1, 1},
		"app":                   {1, 6},
		"what":                  {4, 3},
		"what.channel":          {4, 3},
		"what.content.en":       {5, 9},
		"what.content.en.title": {5, 17},
		"what.content.en.badge": {5, 9},
		"who.segments[0]":       {6, 18},
		"who.sample":            {6, 6},
		"limits.quiet_hours":    {1, 1},
	} {
		if got, ok := pos.Of(path); !ok || got != want {
			t.Errorf("Of(%q) = %v %v, want %v", path, got, ok, want)
		}
	}
	var none *Positions
	if _, ok := none.Of("app"); ok {
		t.Error("nil Positions has a position")
	}
}

// Which extras {{trigger.<key>}} may read depends on the records that
// enter the campaign's segments.
func TestCheckTriggerKeys(t *testing.T) {
	news := loadEnv(t, "news")
	for _, tc := range []struct {
		segment, key, want string // want: the mistake, "" for none
	}{
		{"politics_readers", "topic", ""},
		{"politics_readers", "ab_group", ""}, // global extras are on every record
		{"politics_readers", "section", `the records that enter the campaign's segments (event "article_read") carry no extra "section"`},
		{"onboarding_gap", "section", ""},                                      // did activity "login"; the negated event does not count
		{"onboarding_gap", "plan", `(activity "login") carry no extra "plan"`}, // subscribed's, but under a not
		{"returning", "code", ""},                                              // last_seen within 1d: any record
		{"first_day", "ab_group", ""},                                          // first_session within 1d: the session start
		{"first_day", "topic", `(session) carry no extra "topic"`},
		{"welcome_d2", "ab_group", "are entered as time passes or app-info changes"},
		{"subscribers", "ab_group", "are entered as time passes or app-info changes"},
		{"sport_or_returning", "code", ""}, // through the reference, any record
	} {
		t.Run(tc.segment+"/"+tc.key, func(t *testing.T) {
			file := checkDoc(sec{"who": "{segments: [" + tc.segment + "]}", "what": `{content: {en: {title: "{{trigger.` + tc.key + `}}"}}}`})
			c, pos, err := ParseWithPositions("c.yaml", []byte(file))
			if err != nil {
				t.Fatal(err)
			}
			err = Check(c, pos, news)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}
