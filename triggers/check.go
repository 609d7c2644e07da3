package triggers

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments"
)

// The limits Check enforces.
const (
	MaxTTL          = 28 * 24 * time.Hour // the longest time APNs and FCM keep a message (FCM's limit)
	MaxPushBytes    = 4096                // the largest payload APNs and FCM take
	MaxCollapseID   = 64                  // bytes in an APNs collapse id
	MaxCampaignName = 128                 // bytes in a campaign or variant name
)

// Env is what Check holds a campaign to, beyond its own rules. The zero
// Env checks the campaign alone.
type Env struct {
	// Segments are the campaign's app's segments by name: who.segments
	// and who.exclude must name them (a typo gets a suggestion). A nil
	// map checks no name. A nil *Segment exists but its expression is not
	// known; with the expressions, Check knows which records enter the
	// campaign's segments, and so which extras {{trigger.<key>}} can read.
	Segments map[string]*segments.Segment
	// Plan is the app's tag plan: the fields app_info.<key> and
	// trigger.<key> of the templates, the goal's event and the activities
	// of in-app messages must be declared in it. nil checks none of them.
	Plan *tagplan.Plan
	// Now, when set, is compared with the campaign's instants: a once
	// send or an end in the past is a mistake.
	Now time.Time
}

// Check holds a campaign to its rules, to the app's segments and to its
// tag plan (see Env), and returns every mistake as Errors (nil if there
// are none). With the Positions that ParseWithPositions returned, each
// mistake is at its line and column in the file (at the enclosing field
// for a value the file left out); with nil Positions (a campaign built in
// Go), each names its field's path.
//
// The rules, by section (docs/campaigns.md has them for marketers):
//   - app and name: not empty; a name of letters, digits, _, - and . (at
//     most 128 bytes); the tag plan is the same app's;
//   - what: a known channel and missing policy; content with a message
//     for the default locale (which must be said when there are several
//     locales); locales as BCP 47 tags (en, pt-BR); per channel, push needs
//     a title or a body, data needs data and shows nothing, in_app needs a
//     layout, and the fields of one channel are refused on another; badge
//     >= 0, 0 <= ttl <= 28d, a collapse id of at most 64 bytes, an image
//     URL in http(s), a deep link with a scheme, data keys that FCM does
//     not reserve, texts within APNs' 4 KB; template fields the plan
//     declares (app_info keys; trigger extras that the records entering
//     the campaign's segments carry, and only on on_entry campaigns); with
//     missing: default, a default on every field;
//   - who: at least one segment, segments that exist, none twice, none
//     also excluded; 0 < sample <= 100; 0 <= control < 100; variants with
//     distinct names, weights above 0 that add up to 100 (percent of the
//     devices not in the control group), their content as the campaign's;
//   - when: times of day 00:00 to 23:59; on_entry: delay >= 0, not longer
//     than expiry; once: at set, not before start, not after end, not in
//     the past (for local_time, in no time zone); recurring: at set,
//     weekdays once each; end after start and not in the past; expiry >=
//     0; a known default time zone; no send time inside the quiet hours;
//   - limits: quiet hours that are not empty (from != to); once and
//     reentry_after exclusive, reentry_after >= 0; rate >= 0;
//   - goal: an event the plan declares, a window above 0.
func Check(c *Campaign, pos *Positions, env Env) error {
	k := &checker{c: c, pos: pos, env: env}
	if c == nil {
		k.errorf("", "no campaign")
		return k.errs
	}
	k.identity()
	k.what()
	k.who()
	k.when()
	k.limits()
	k.goal()
	if len(k.errs) == 0 {
		return nil
	}
	return k.errs.sorted()
}

// checker walks one campaign, collecting mistakes.
type checker struct {
	c    *Campaign
	pos  *Positions
	env  Env
	errs Errors

	trigger *triggerKeys // what {{trigger.<key>}} can read; computed once
}

// errorf reports a mistake about the field at path.
func (k *checker) errorf(path, format string, args ...any) {
	e := &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
	if at, ok := k.pos.Of(path); ok {
		e.File, e.Line, e.Col = k.pos.File, at.Line, at.Col
	}
	k.errs = append(k.errs, e)
}

// inPlan names the plan in messages: `in the tag plan of app "news"`.
func (k *checker) inPlan() string { return fmt.Sprintf("in the tag plan of app %q", k.env.Plan.App) }

var campaignName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// checkName checks a campaign or variant name.
func (k *checker) checkName(path, what, name string) {
	switch {
	case name == "":
		k.errorf(path, "%s is empty: give it a name such as welcome_d2", what)
	case len(name) > MaxCampaignName:
		k.errorf(path, "%s of %d bytes, more than the limit of %d", what, len(name), MaxCampaignName)
	case !campaignName.MatchString(name):
		k.errorf(path, "%s %q: use letters, digits, _, - and . (starting with a letter or digit)", what, name)
	}
}

func (k *checker) identity() {
	c := k.c
	switch {
	case c.App == "":
		k.errorf("app", "app is empty: give the id of the app the campaign is for")
	case len(c.App) > tag.MaxIDLen || !utf8.ValidString(c.App) || strings.ContainsFunc(c.App, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		k.errorf("app", "app id %q is not an app id: at most %d bytes, no control characters", truncateText(c.App, 40), tag.MaxIDLen)
	case k.env.Plan != nil && k.env.Plan.App != c.App:
		k.errorf("app", "the campaign is for app %q but the tag plan is app %q's", c.App, k.env.Plan.App)
	}
	k.checkName("name", "name", c.Name)
}

// channels and the other values a campaign names, for suggestions.
var (
	channelNames  = []string{string(ChannelPush), string(ChannelData), string(ChannelInApp)}
	missingNames  = []string{string(MissingDefault), string(MissingSkip)}
	priorityNames = []string{string(PriorityHigh), string(PriorityNormal)}
	layoutNames   = []string{string(LayoutBanner), string(LayoutModal), string(LayoutFullScreen)}
)

func (k *checker) what() {
	w := &k.c.What
	if !slices.Contains(channelNames, string(w.Channel)) {
		k.errorf("what.channel", "unknown channel %q: use push, data or in_app%s", w.Channel, didYouMean(string(w.Channel), channelNames))
	}
	if w.Missing != "" && !slices.Contains(missingNames, string(w.Missing)) {
		k.errorf("what.missing", "unknown missing policy %q: use default (fields without a value use their default) or skip (skip the device)%s",
			w.Missing, didYouMean(string(w.Missing), missingNames))
	}
	switch {
	case w.DefaultLocale == "" && len(w.Content) > 1:
		k.errorf("what.default_locale", "missing default_locale: content has several locales (%s): say which one devices with none of them get",
			strings.Join(slices.Sorted(maps.Keys(w.Content)), ", "))
	case w.DefaultLocale != "" && !validLocale(w.DefaultLocale):
		k.errorf("what.default_locale", "%s", localeProblem(w.DefaultLocale))
	}
	if len(w.Content) == 0 {
		k.errorf("what.content", "no content: give the message for at least one locale, such as content: {en: {title: …}}")
	}
	k.content(w.Content, "what.content", "")
}

// content checks the messages of one content map; variant names the
// variant it belongs to ("" for the campaign's).
func (k *checker) content(content map[string]*Message, path, variant string) {
	dl := k.c.What.DefaultLocale
	if _, ok := content[dl]; !ok && dl != "" && len(content) > 0 {
		locales := slices.Sorted(maps.Keys(content))
		whose := "content"
		if variant != "" {
			whose = fmt.Sprintf("variant %q's content (it replaces the campaign's)", variant)
		}
		k.errorf(path, "%s has no message for the default locale %q (it has %s)%s", whose, dl, strings.Join(locales, ", "), didYouMean(dl, locales))
	}
	for _, locale := range slices.Sorted(maps.Keys(content)) {
		at := path + "." + locale
		if !validLocale(locale) {
			k.errorf(at, "%s", localeProblem(locale))
		}
		k.message(content[locale], at)
	}
}

var localeText = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)

func validLocale(s string) bool { return localeText.MatchString(s) }

func localeProblem(s string) string {
	hint := ""
	if fixed := strings.ReplaceAll(s, "_", "-"); fixed != s && validLocale(strings.ToLower(fixed[:min(2, len(fixed))])+fixed[min(2, len(fixed)):]) {
		hint = fmt.Sprintf(" (did you mean %q?)", strings.ToLower(fixed[:2])+fixed[2:])
	}
	return fmt.Sprintf("invalid locale %q: use a BCP 47 tag such as en, fr or pt-BR%s", s, hint)
}

// fcmReserved are data keys that FCM refuses.
var fcmReserved = []string{"from", "notification", "message_type", "collapse_key"}

func (k *checker) message(m *Message, path string) {
	if m == nil {
		k.errorf(path, "no message")
		return
	}
	k.templates(m, path)
	set := func(rel string) string { return path + "." + rel }
	switch ch := k.c.What.Channel; ch {
	case ChannelPush:
		if m.Title == "" && m.Body == "" {
			k.errorf(path, "a push needs a title or a body")
		}
		k.onlyInApp(m, path, "a push")
	case ChannelData:
		if len(m.Data) == 0 {
			k.errorf(path, "a data push needs data: the keys and values the app receives, such as data: {refresh: feed}")
		}
		for _, f := range [...]struct {
			name string
			set  bool
		}{{"title", m.Title != ""}, {"body", m.Body != ""}, {"sound", m.Sound != ""}, {"badge", m.Badge != nil}, {"image", m.Image != ""}} {
			if f.set {
				k.errorf(set(f.name), "a data push shows nothing: %s is for channel push", f.name)
			}
		}
		k.onlyInApp(m, path, "a data push")
	case ChannelInApp:
		switch {
		case m.Layout == "":
			k.errorf(path, "an in_app message needs a layout: banner, modal or full_screen")
		case !slices.Contains(layoutNames, string(m.Layout)):
			k.errorf(set("layout"), "unknown layout %q: use banner, modal or full_screen%s", m.Layout, didYouMean(string(m.Layout), layoutNames))
		}
		for _, f := range [...]struct {
			name string
			set  bool
		}{{"sound", m.Sound != ""}, {"badge", m.Badge != nil}, {"collapse_id", m.CollapseID != ""}, {"priority", m.Priority != ""}, {"ttl", m.TTL != 0}} {
			if f.set {
				k.errorf(set(f.name), "%s is for push and data messages, not in_app ones", f.name)
			}
		}
		for i, b := range m.Buttons {
			if b.Label == "" {
				k.errorf(set(indexPath("buttons", i)+".label"), "the button has no label")
			}
		}
		for i, a := range m.Activities {
			at := set(indexPath("activities", i))
			switch {
			case a == "":
				k.errorf(at, "empty activity name")
			case k.env.Plan != nil && !k.env.Plan.HasTag(tag.KindActivityStart, a):
				k.errorf(at, "activity %q is not %s%s", a, k.inPlan(), didYouMean(a, k.env.Plan.TagNames(tag.KindActivityStart)))
			}
		}
	}
	k.providerLimits(m, path)
}

// onlyInApp refuses the in-app fields on other channels.
func (k *checker) onlyInApp(m *Message, path, what string) {
	if m.Layout != "" {
		k.errorf(path+".layout", "%s has no layout: layout is for channel in_app", what)
	}
	if len(m.Buttons) > 0 {
		k.errorf(path+".buttons", "%s has no buttons: buttons are for channel in_app", what)
	}
	if len(m.Activities) > 0 {
		k.errorf(path+".activities", "%s shows wherever the device is: activities are for channel in_app", what)
	}
}

// providerLimits checks what APNs and FCM take.
func (k *checker) providerLimits(m *Message, path string) {
	if m.Badge != nil && *m.Badge < 0 {
		k.errorf(path+".badge", "badge %d: use 0 (which clears the badge) or more", *m.Badge)
	}
	switch {
	case m.TTL < 0:
		k.errorf(path+".ttl", "ttl %s is negative: give how long the provider keeps trying, such as 1d (or leave it out for the provider's default)", formatFileDuration(m.TTL))
	case m.TTL > MaxTTL:
		k.errorf(path+".ttl", "ttl %s is longer than 28d, the most APNs and FCM keep a message", formatFileDuration(m.TTL))
	}
	if m.Priority != "" && !slices.Contains(priorityNames, string(m.Priority)) {
		k.errorf(path+".priority", "unknown priority %q: use high or normal%s", m.Priority, didYouMean(string(m.Priority), priorityNames))
	}
	if len(m.CollapseID) > MaxCollapseID {
		k.errorf(path+".collapse_id", "collapse_id of %d bytes, more than the %d APNs takes", len(m.CollapseID), MaxCollapseID)
	}
	if lit := literalPrefix(m.Image); m.Image != "" && lit == m.Image && !strings.HasPrefix(lit, "https://") && !strings.HasPrefix(lit, "http://") {
		k.errorf(path+".image", "image %q is not a URL: write https://…", truncateText(m.Image, 60))
	}
	if lit := literalPrefix(m.DeepLink); m.DeepLink != "" && lit != "" && !hasScheme(lit) {
		k.errorf(path+".deep_link", "deep_link %q has no scheme: write it as a URL the app opens, such as news://article/42 or https://…", truncateText(m.DeepLink, 60))
	}
	size := len(m.Title) + len(m.Body) + len(m.Sound) + len(m.Image) + len(m.DeepLink)
	for _, key := range slices.Sorted(maps.Keys(m.Data)) {
		size += len(key) + len(m.Data[key])
		if slices.Contains(fcmReserved, key) || strings.HasPrefix(key, "google.") || strings.HasPrefix(key, "gcm.") {
			k.errorf(path+".data."+key, "data key %q is reserved by FCM: choose another name", key)
		}
	}
	if k.c.What.Channel != ChannelInApp && size > MaxPushBytes-256 {
		k.errorf(path, "the message's texts and data are %d bytes: with the payload around them, more than the %d bytes APNs and FCM take", size, MaxPushBytes)
	}
}

// literalPrefix returns a text up to its first field (or {{{{ escape).
func literalPrefix(text string) string {
	if i := strings.Index(text, "{{"); i >= 0 {
		return text[:i]
	}
	return text
}

var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// hasScheme reports whether a URL's start has a scheme, or is too short
// to tell (the rest comes from a field).
func hasScheme(prefix string) bool {
	if urlScheme.MatchString(prefix) {
		return true
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if !(c == '+' || c == '.' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true // the scheme may continue in a field
}

// formatFileDuration writes a duration as campaign files do: in its
// largest exact unit among d, h, m, s and ms (14d, 36h, 90s).
func formatFileDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	for _, u := range [...]struct {
		name string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return d.String()
}

// formatPercent writes a percentage without trailing zeros: 10%, 0.5%.
func formatPercent(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) + "%" }
