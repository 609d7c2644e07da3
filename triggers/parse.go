package triggers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Campaign files are YAML (docs/campaigns.md, "Campaign files"), or the
// same document as JSON:
//
//	app: news
//	name: welcome_d2
//	what:
//	  channel: push
//	  content:
//	    en: {title: "Welcome, {{app_info.first_name | default \"reader\"}}", body: ...}
//	who: {segments: [new_users], exclude: [subscribers], sample: 50%, control: 10%}
//	when: {on_entry: {delay: 2d, at: "10:00"}, expiry: 1d}
//	limits: {quiet_hours: {from: "22:00", to: "08:00"}, once: true}
//	goal: {event: subscribed, within: 3d}
//
// Parse checks the document's shape: known keys, values of the right
// kind and syntax (durations, percentages, times of day, instants, rates,
// weekdays, templates). Check then holds the campaign to its rules and to
// the app's segments and tag plan.

// Parse reads a campaign file. filename is only used in error messages.
// The file is YAML, or JSON when it starts with { followed by " or }
// (JSON syntax errors then come with their line and column too). If the
// file has mistakes, Parse reports all of them (up to 50) as Errors, each
// at its line and column, and returns no campaign.
//
// Parse fills what the file leaves out: the channel (push), the missing
// value policy (skip), the default locale (the only locale, when there is
// one), the salt (the name), the sample (100%) and the default time zone
// (UTC).
func Parse(filename string, data []byte) (*Campaign, error) {
	c, _, err := ParseWithPositions(filename, data)
	return c, err
}

// ParseWithPositions is Parse, also returning where each field was
// written, for Check.
func ParseWithPositions(filename string, data []byte) (*Campaign, *Positions, error) {
	var root *yaml.Node
	var err error
	if looksLikeJSON(data) {
		root, err = decodeJSON(filename, data)
	} else {
		root, err = decodeYAML(filename, data)
	}
	if err != nil {
		return nil, nil, err
	}
	p := &campaignParser{file: filename, pos: &Positions{
		File: filename, at: map[string]Pos{}, texts: map[string]textLoc{},
		lines: strings.Split(string(data), "\n"),
	}}
	c := p.campaign(root)
	if p.tooBig { // the other mistakes are those of a walk cut short
		p.errs = slices.DeleteFunc(p.errs, func(e *Error) bool { return !strings.HasPrefix(e.Msg, fmt.Sprintf(tooBigMsg, maxCampaignNodes)) })
	}
	if len(p.errs) > 0 {
		return nil, nil, p.errs.sorted()
	}
	return c, p.pos, nil
}

// decodeYAML reads the single YAML document of data into a node tree.
func decodeYAML(filename string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: filename, Line: 1, Col: 1, Msg: "empty campaign file: it needs at least app, name, what, who and when"}}
		}
		return nil, Errors{yamlSyntaxError(filename, err)}
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		at := &next
		if len(next.Content) > 0 {
			at = next.Content[0]
		}
		return nil, Errors{{File: filename, Line: at.Line, Col: at.Column,
			Msg: "a second YAML document: a campaign file holds one campaign (remove the ---)"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, Errors{yamlSyntaxError(filename, err)}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, Errors{{File: filename, Line: 1, Col: 1, Msg: "not a YAML document"}}
	}
	return doc.Content[0], nil
}

var yamlErrorLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlSyntaxError turns a yaml.v3 error ("yaml: line 3: did not find
// expected key") into an Error. yaml.v3 gives no column.
func yamlSyntaxError(filename string, err error) *Error {
	msg := err.Error()
	line := 0
	if m := yamlErrorLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return &Error{File: filename, Line: line, Msg: "syntax error: " + msg}
}

// campaignParser walks the node tree of a campaign file, building the
// campaign and collecting every mistake.
type campaignParser struct {
	file   string
	pos    *Positions
	errs   Errors
	nodes  int  // values walked, against maxCampaignNodes
	tooBig bool // maxCampaignNodes was passed
}

func (p *campaignParser) errorf(n *yaml.Node, path, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// mark records where the value of path was written.
func (p *campaignParser) mark(path string, n *yaml.Node) {
	p.pos.at[path] = Pos{n.Line, n.Column}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// The keys of each mapping, in the order of the docs.
var (
	campaignKeys = []string{"app", "name", "salt", "what", "who", "when", "limits", "goal"}
	whatKeys     = []string{"channel", "default_locale", "missing", "content"}
	messageKeys  = []string{"title", "body", "sound", "badge", "image", "deep_link", "data", "collapse_id", "priority", "ttl",
		"layout", "buttons", "activities"}
	buttonKeys    = []string{"label", "deep_link"}
	whoKeys       = []string{"segments", "exclude", "sample", "control", "variants"}
	variantKeys   = []string{"name", "weight", "content"}
	whenKeys      = []string{"on_entry", "once", "recurring", "start", "end", "expiry", "default_time_zone"}
	onEntryKeys   = []string{"delay", "at"}
	onceKeys      = []string{"at", "local_time"}
	recurringKeys = []string{"every", "at"}
	limitsKeys    = []string{"quiet_hours", "once", "reentry_after", "priority", "rate"}
	quietKeys     = []string{"from", "to", "then"}
	goalKeys      = []string{"event", "within"}
)

// listKeys writes keys as "a, b or c".
func listKeys(keys []string) string {
	if len(keys) == 1 {
		return keys[0]
	}
	return strings.Join(keys[:len(keys)-1], ", ") + " or " + keys[len(keys)-1]
}

func (p *campaignParser) campaign(n *yaml.Node) *Campaign {
	m := p.keys(n, "", "a campaign", campaignKeys)
	if m == nil {
		return nil
	}
	for _, req := range [...]struct{ key, hint string }{
		{"app", "the id of the app the campaign is for"},
		{"name", "the campaign's name, unique in its app"},
		{"what", "the message: what: {channel: push, content: {en: {title: …, body: …}}}"},
		{"who", "the audience: who: {segments: [a segment]}"},
		{"when", "when it sends: when: {on_entry: {}}, {once: {at: …}} or {recurring: {every: day, at: \"09:00\"}}"},
	} {
		if m[req.key] == nil {
			p.errorf(n, req.key, "missing %s: %s", req.key, req.hint)
		}
	}
	c := &Campaign{
		App:  p.str(m["app"], "app"),
		Name: p.str(m["name"], "name"),
		Salt: p.str(m["salt"], "salt"),
	}
	if c.Salt == "" {
		c.Salt = c.Name
	}
	c.What = p.what(m["what"], "what")
	c.Who = p.who(m["who"], "who")
	c.When = p.when(m["when"], "when")
	c.Limit = p.limits(m["limits"], "limits")
	c.Goal = p.goal(m["goal"], "goal")
	return c
}

func (p *campaignParser) what(n *yaml.Node, path string) What {
	w := What{Channel: ChannelPush, Missing: MissingSkip}
	m := p.keys(n, path, "what", whatKeys)
	if m == nil {
		return w
	}
	if v := m["channel"]; v != nil {
		w.Channel = Channel(p.str(v, joinPath(path, "channel")))
	}
	if v := m["missing"]; v != nil {
		w.Missing = MissingPolicy(p.str(v, joinPath(path, "missing")))
	}
	w.DefaultLocale = p.str(m["default_locale"], joinPath(path, "default_locale"))
	if v := m["content"]; v != nil {
		w.Content = p.content(v, joinPath(path, "content"))
	} else {
		p.errorf(n, joinPath(path, "content"), "missing content: the message per locale, e.g. content: {en: {title: …, body: …}}")
	}
	if w.DefaultLocale == "" && len(w.Content) == 1 {
		for locale := range w.Content {
			w.DefaultLocale = locale
		}
	}
	return w
}

// content reads a mapping of locales to messages.
func (p *campaignParser) content(n *yaml.Node, path string) map[string]*Message {
	if isNullNode(n) || n.Kind != yaml.MappingNode {
		p.errorf(n, path, "content must be a mapping of locales to messages, such as {en: {title: …}}, not %s", describeNode(n))
		return nil
	}
	p.mark(path, n)
	content := make(map[string]*Message, len(n.Content)/2)
	p.entries(n, path, func(locale string, k, v *yaml.Node) {
		content[locale] = p.message(v, joinPath(path, locale))
	})
	return content
}

func (p *campaignParser) message(n *yaml.Node, path string) *Message {
	msg := &Message{}
	m := p.keys(n, path, "a message", messageKeys)
	if m == nil {
		return msg
	}
	at := func(key string) string { return joinPath(path, key) }
	msg.Title = p.text(m["title"], at("title"))
	msg.Body = p.text(m["body"], at("body"))
	msg.Sound = p.str(m["sound"], at("sound"))
	if v := m["badge"]; v != nil {
		if b, ok := p.integer(v, at("badge")); ok {
			msg.Badge = &b
		}
	}
	msg.Image = p.text(m["image"], at("image"))
	msg.DeepLink = p.text(m["deep_link"], at("deep_link"))
	if v := m["data"]; v != nil {
		msg.Data = p.data(v, at("data"))
	}
	msg.CollapseID = p.str(m["collapse_id"], at("collapse_id"))
	msg.Priority = Priority(p.str(m["priority"], at("priority")))
	msg.TTL = p.duration(m["ttl"], at("ttl"))
	msg.Layout = InAppLayout(p.str(m["layout"], at("layout")))
	if v := m["buttons"]; v != nil {
		p.list(v, at("buttons"), "buttons", func(i int, item *yaml.Node, path string) {
			bm := p.keys(item, path, "a button", buttonKeys)
			if bm == nil {
				return
			}
			if bm["label"] == nil {
				p.errorf(item, joinPath(path, "label"), "missing label: the button's text")
			}
			msg.Buttons = append(msg.Buttons, Button{
				Label:    p.text(bm["label"], joinPath(path, "label")),
				DeepLink: p.text(bm["deep_link"], joinPath(path, "deep_link")),
			})
		})
	}
	if v := m["activities"]; v != nil {
		msg.Activities = p.names(v, at("activities"), "activities")
	}
	return msg
}

// data reads custom data: a mapping of keys to texts.
func (p *campaignParser) data(n *yaml.Node, path string) map[string]string {
	if isNullNode(n) || n.Kind != yaml.MappingNode {
		p.errorf(n, path, "data must be a mapping of keys to texts, such as {article_id: \"{{trigger.article}}\"}, not %s", describeNode(n))
		return nil
	}
	p.mark(path, n)
	data := make(map[string]string, len(n.Content)/2)
	p.entries(n, path, func(key string, k, v *yaml.Node) {
		data[key] = p.text(v, joinPath(path, key))
	})
	return data
}

func (p *campaignParser) who(n *yaml.Node, path string) Who {
	w := Who{Sample: 100}
	m := p.keys(n, path, "who", whoKeys)
	if m == nil {
		return w
	}
	if v := m["segments"]; v != nil {
		w.Segments = p.names(v, joinPath(path, "segments"), "segments")
	} else {
		p.errorf(n, joinPath(path, "segments"), "missing segments: the segments whose members the campaign is for, e.g. segments: [new_users]")
	}
	if v := m["exclude"]; v != nil {
		w.Exclude = p.names(v, joinPath(path, "exclude"), "exclude")
	}
	if v := m["sample"]; v != nil {
		w.Sample = p.percent(v, joinPath(path, "sample"))
	}
	if v := m["control"]; v != nil {
		w.Control = p.percent(v, joinPath(path, "control"))
	}
	if v := m["variants"]; v != nil {
		p.list(v, joinPath(path, "variants"), "variants", func(i int, item *yaml.Node, path string) {
			w.Variants = append(w.Variants, p.variant(item, path))
		})
	}
	return w
}

func (p *campaignParser) variant(n *yaml.Node, path string) Variant {
	var v Variant
	m := p.keys(n, path, "a variant", variantKeys)
	if m == nil {
		return v
	}
	if m["name"] == nil {
		p.errorf(n, joinPath(path, "name"), "missing name: each variant has a name, such as a or short_title")
	}
	if m["weight"] == nil {
		p.errorf(n, joinPath(path, "weight"), "missing weight: the variant's share in percent, such as weight: 50%%")
	}
	v.Name = p.str(m["name"], joinPath(path, "name"))
	if w := m["weight"]; w != nil {
		v.Weight = p.percent(w, joinPath(path, "weight"))
	}
	if c := m["content"]; c != nil {
		v.Content = p.content(c, joinPath(path, "content"))
	}
	return v
}

func (p *campaignParser) when(n *yaml.Node, path string) When {
	w := When{DefaultTZ: "UTC"}
	m := p.keys(n, path, "when", whenKeys)
	if m == nil {
		return w
	}
	var kinds []string
	for _, k := range [...]string{"on_entry", "once", "recurring"} {
		if m[k] != nil {
			kinds = append(kinds, k)
		}
	}
	switch {
	case len(kinds) == 0:
		p.errorf(n, path, "when needs one of on_entry, once or recurring")
	case len(kinds) > 1:
		p.errorf(m[kinds[1]], joinPath(path, kinds[1]), "when has both %s and %s: a campaign sends on one kind of trigger", kinds[0], kinds[1])
	case kinds[0] == "on_entry":
		w.Kind = OnEntry
		p.onEntry(m["on_entry"], joinPath(path, "on_entry"), &w)
	case kinds[0] == "once":
		w.Kind = Once
		p.once(m["once"], joinPath(path, "once"), &w)
	default:
		w.Kind = Recurring
		p.recurring(m["recurring"], joinPath(path, "recurring"), &w)
	}
	if v := m["start"]; v != nil {
		w.Start = p.instant(v, joinPath(path, "start"), false)
	}
	if v := m["end"]; v != nil {
		w.End = p.instant(v, joinPath(path, "end"), false)
	}
	if v := m["expiry"]; v != nil {
		var ok bool
		w.Expiry, ok = p.durationOK(v, joinPath(path, "expiry"))
		if ok && w.Expiry == 0 {
			p.errorf(v, joinPath(path, "expiry"), "expiry 0 would expire every message at once: give how long a message stays worth sending, such as 1d, or leave expiry out")
		}
	}
	if v := m["default_time_zone"]; v != nil {
		w.DefaultTZ = p.str(v, joinPath(path, "default_time_zone"))
	}
	return w
}

func (p *campaignParser) onEntry(n *yaml.Node, path string, w *When) {
	m := p.keys(n, path, "on_entry", onEntryKeys)
	if m == nil {
		return
	}
	w.Delay = p.duration(m["delay"], joinPath(path, "delay"))
	if v := m["at"]; v != nil {
		w.AlignTo = p.timeOfDay(v, joinPath(path, "at"))
	}
}

func (p *campaignParser) once(n *yaml.Node, path string, w *When) {
	m := p.keys(n, path, "once", onceKeys)
	if m == nil {
		return
	}
	if v := m["local_time"]; v != nil {
		w.LocalTime = p.boolean(v, joinPath(path, "local_time"))
	}
	if v := m["at"]; v != nil {
		w.At = p.instant(v, joinPath(path, "at"), w.LocalTime)
	} else {
		p.errorf(n, joinPath(path, "at"), "missing at: the instant to send, such as at: 2026-12-24T18:00:00Z")
	}
}

func (p *campaignParser) recurring(n *yaml.Node, path string, w *When) {
	m := p.keys(n, path, "recurring", recurringKeys)
	if m == nil {
		return
	}
	if v := m["every"]; v != nil {
		w.Weekdays = p.every(v, joinPath(path, "every"))
	} else {
		p.errorf(n, joinPath(path, "every"), "missing every: day, a weekday, or a list of weekdays such as [mon, thu]")
	}
	if v := m["at"]; v != nil {
		w.Every = p.timeOfDay(v, joinPath(path, "at"))
	} else {
		p.errorf(n, joinPath(path, "at"), "missing at: the local time of day to send, such as at: \"09:00\"")
	}
}

func (p *campaignParser) limits(n *yaml.Node, path string) Limits {
	var l Limits
	if n == nil {
		return l
	}
	m := p.keys(n, path, "limits", limitsKeys)
	if m == nil {
		return l
	}
	if v := m["quiet_hours"]; v != nil {
		l.Quiet = p.quiet(v, joinPath(path, "quiet_hours"))
	}
	if v := m["once"]; v != nil {
		l.Once = p.boolean(v, joinPath(path, "once"))
	}
	if v := m["reentry_after"]; v != nil {
		l.ReentryAfter = p.duration(v, joinPath(path, "reentry_after"))
		if l.Once && m["once"] != nil {
			p.errorf(v, joinPath(path, "reentry_after"), "once: true and reentry_after exclude each other: once sends to a device only once, reentry_after again after a while")
		}
	}
	if v := m["priority"]; v != nil {
		l.Priority, _ = p.integer(v, joinPath(path, "priority"))
	}
	if v := m["rate"]; v != nil {
		l.Rate = p.rate(v, joinPath(path, "rate"))
	}
	return l
}

func (p *campaignParser) quiet(n *yaml.Node, path string) *QuietHours {
	m := p.keys(n, path, "quiet_hours", quietKeys)
	if m == nil {
		return nil
	}
	q := &QuietHours{}
	for _, k := range [...]struct {
		key string
		t   *TimeOfDay
	}{{"from", &q.From}, {"to", &q.To}} {
		v := m[k.key]
		if v == nil {
			p.errorf(n, joinPath(path, k.key), "missing %s: quiet hours go from a local time to another, such as {from: \"22:00\", to: \"08:00\"}", k.key)
			continue
		}
		if t := p.timeOfDay(v, joinPath(path, k.key)); t != nil {
			*k.t = *t
		}
	}
	if v := m["then"]; v != nil {
		switch s := p.str(v, joinPath(path, "then")); s {
		case "defer", "":
		case "drop":
			q.Drop = true
		default:
			p.errorf(v, joinPath(path, "then"), "then must be defer (send at the end of the quiet hours) or drop, not %q%s", s, didYouMean(s, []string{"defer", "drop"}))
		}
	}
	return q
}

func (p *campaignParser) goal(n *yaml.Node, path string) *Goal {
	if n == nil {
		return nil
	}
	m := p.keys(n, path, "goal", goalKeys)
	if m == nil {
		return nil
	}
	g := &Goal{Event: p.str(m["event"], joinPath(path, "event"))}
	if m["event"] == nil {
		p.errorf(n, joinPath(path, "event"), "missing event: the event that counts as a conversion, such as event: subscribed")
	}
	if v := m["within"]; v != nil {
		g.Window = p.duration(v, joinPath(path, "within"))
	} else {
		p.errorf(n, joinPath(path, "within"), "missing within: how long after the send a conversion counts, such as within: 3d")
	}
	return g
}
