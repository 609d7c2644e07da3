package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/murmur3"
	"gopkg.in/yaml.v3"
)

// The oracle: what every example campaign must do to the generated
// devices, worked out here from the generated facts with plain loops and
// the time package's zones, sharing no code with the engine. Each segment
// the examples define is written again below as a Go function of a
// device's facts up to an instant; the example's text must read as the
// oracle's (whitespace aside), so that an edited example fails here
// instead of drifting from its oracle.

// segmentDef is a segment as the oracle knows it.
type segmentDef struct {
	text   string // the example's text, whitespace collapsed
	member func(d *device, t time.Time) bool
}

var oracleSegments = map[string]segmentDef{
	"news/welcome_d2":  {`first_session between 2d and 3d ago`, firstSessionBetween(2*day, 3*day)},
	"news/welcome_d5":  {`first_session between 5d and 6d ago`, firstSessionBetween(5*day, 6*day)},
	"news/welcome_d10": {`first_session between 10d and 11d ago`, firstSessionBetween(10*day, 11*day)},
	"news/welcome_d15": {`first_session between 15d and 16d ago`, firstSessionBetween(15*day, 16*day)},
	"news/subscribers": {`did event "subscribed"`, func(d *device, t time.Time) bool { return count(d, t, "event", "subscribed", nil, 0) > 0 }},
	"news/onboarding_gap": {`first_session between 3d and 4d ago and did activity "login" and did not event "logged_in"`, func(d *device, t time.Time) bool {
		return firstSessionBetween(3*day, 4*day)(d, t) && count(d, t, "activity_start", "login", nil, 0) > 0 && count(d, t, "event", "logged_in", nil, 0) == 0
	}},
	"news/sport_fans": {`did event "article_read" where category = "sport" at least 3 times in the last 7d`, func(d *device, t time.Time) bool {
		return count(d, t, "event", "article_read", extraIs("category", "sport"), 7*day) >= 3
	}},
	"news/ambassadors": {`did event "shared" at least 5 times in the last 30d and did not event "rated"`, func(d *device, t time.Time) bool {
		return count(d, t, "event", "shared", nil, 30*day) >= 5 && count(d, t, "event", "rated", nil, 0) == 0
	}},
	"news/free_readers": {`did event "article_read" at least 5 times in the last 14d and did not event "article_read" where premium = true`, func(d *device, t time.Time) bool {
		return count(d, t, "event", "article_read", nil, 14*day) >= 5 && count(d, t, "event", "article_read", extraIs("premium", true), 0) == 0
	}},
	"news/stuck_newcomers": {`first_session within 7d and (did activity "home" at least 3 times or did activity "settings" at least 2 times) and did not event "article_read"`, func(d *device, t time.Time) bool {
		fs, ok := firstSession(d, t)
		return ok && t.Sub(fs) < 7*day && (count(d, t, "activity_start", "home", nil, 0) >= 3 || count(d, t, "activity_start", "settings", nil, 0) >= 2) &&
			count(d, t, "event", "article_read", nil, 0) == 0
	}},
	"news/politics_fans": {`app_info "favorite_topic" = "politics"`, func(d *device, t time.Time) bool {
		v, _, ok := appInfo(d, t, "favorite_topic")
		return ok && v == "politics"
	}},
	"news/logged_out": {`app_info "logged_in" = false and app_info "logged_in" unchanged for 2d`, func(d *device, t time.Time) bool {
		v, since, ok := appInfo(d, t, "logged_in")
		return ok && v == false && t.Sub(since) >= 2*day
	}},
	"game/stalled_level": {`app_info "level" unchanged for 3d and did job "level_play" taking more than 5m at least 3 times in the last 3d`, func(d *device, t time.Time) bool {
		_, since, ok := appInfo(d, t, "level")
		return ok && t.Sub(since) >= 3*day && countJobs(d, t, "level_play", 5*time.Minute, 3*day) >= 3
	}},
	"game/lapsed_players": {`last_seen more than 14d ago and did event "level_started"`, func(d *device, t time.Time) bool {
		ls, ok := lastSeen(d, t)
		return ok && t.Sub(ls) >= 14*day && count(d, t, "event", "level_started", nil, 0) > 0
	}},
	"shop/cart_abandoners": {`did event "cart_add" in the last 1d and did not event "purchase" in the last 1d`, func(d *device, t time.Time) bool {
		return count(d, t, "event", "cart_add", nil, day) > 0 && count(d, t, "event", "purchase", nil, day) == 0
	}},
	"shop/shoe_browsers": {`did activity "category" where name = "shoes" at least 2 times in the last 30d`, func(d *device, t time.Time) bool {
		return count(d, t, "activity_start", "category", extraIs("name", "shoes"), 30*day) >= 2
	}},
	"bank/new_account_holders": {`first_session within 1d and did event "account_created"`, func(d *device, t time.Time) bool {
		fs, ok := firstSession(d, t)
		return ok && t.Sub(fs) < day && count(d, t, "event", "account_created", nil, 0) > 0
	}},
}

// windows are the lengths after a fact at which some segment can change
// with time alone.
var windows = []time.Duration{0, day, 2 * day, 3 * day, 4 * day, 5 * day, 6 * day, 7 * day, 10 * day, 11 * day, 14 * day, 15 * day, 16 * day, 30 * day}

func firstSession(d *device, t time.Time) (time.Time, bool) {
	for _, f := range d.facts {
		if f.at.After(t) {
			break
		}
		if f.kind == "session_start" {
			return f.at, true
		}
	}
	return time.Time{}, false
}

func firstSessionBetween(from, to time.Duration) func(*device, time.Time) bool {
	return func(d *device, t time.Time) bool {
		fs, ok := firstSession(d, t)
		return ok && t.Sub(fs) >= from && t.Sub(fs) < to
	}
}

func lastSeen(d *device, t time.Time) (time.Time, bool) {
	var ls time.Time
	for _, f := range d.facts {
		if f.at.After(t) {
			break
		}
		ls = f.at
	}
	return ls, !ls.IsZero()
}

func extraIs(key string, v any) func(map[string]any) bool {
	return func(x map[string]any) bool { return x[key] == v }
}

// count counts a device's facts of a kind and name up to t, within the
// last `within` (0: ever), matching filter.
func count(d *device, t time.Time, kind, name string, filter func(map[string]any) bool, within time.Duration) int {
	n := 0
	for _, f := range d.facts {
		if f.at.After(t) {
			break
		}
		if f.kind == kind && f.name == name && (within == 0 || f.at.After(t.Add(-within))) && (filter == nil || filter(f.extras)) {
			n++
		}
	}
	return n
}

func countJobs(d *device, t time.Time, name string, longer, within time.Duration) int {
	n := 0
	for _, f := range d.facts {
		if f.at.After(t) {
			break
		}
		if f.kind == "job" && f.name == name && f.dur > longer && f.at.After(t.Add(-within)) {
			n++
		}
	}
	return n
}

// appInfo is a key's value at t and since when it has had that value.
func appInfo(d *device, t time.Time, key string) (v any, since time.Time, ok bool) {
	for _, f := range d.facts {
		if f.at.After(t) {
			break
		}
		if f.kind != "app_info" {
			continue
		}
		if x, has := f.appInfo[key]; has {
			if !ok || x != v {
				since = f.at
			}
			v, ok = x, true
		}
	}
	return v, since, ok
}

// campaign is an example campaign as the oracle reads its file.
type campaign struct {
	App, Name string
	What      struct{ Channel string }
	Who       struct {
		Segments, Exclude []string
		Control           string
		Salt              string
	}
	When struct {
		OnEntry *struct {
			Delay string
			At    string
		} `yaml:"on_entry"`
		Once *struct {
			At        string
			LocalTime bool `yaml:"local_time"`
		}
		Expiry          string
		DefaultTimeZone string `yaml:"default_time_zone"`
		OnceFileAt      string `yaml:"-"` // the file's instant, before the suite moves it
	}
	Limits struct {
		QuietHours *struct{ From, To, Then string } `yaml:"quiet_hours"`
		Once       bool
		Reentry    string `yaml:"reentry_after"`
		Priority   int
	}
	file string
}

// readExamples reads every example's segments (checked against the
// oracle's) and campaigns.
func readExamples(t *testing.T, root string) []*campaign {
	t.Helper()
	var camps []*campaign
	seen := map[string]bool{}
	dirs, _ := filepath.Glob(filepath.Join(root, "examples", "*", "app"))
	for _, appFile := range dirs {
		dir := filepath.Dir(appFile)
		app := strings.TrimSpace(string(must(os.ReadFile(appFile))))
		segs, _ := filepath.Glob(filepath.Join(dir, "segments", "*.seg"))
		for _, f := range segs {
			name := strings.TrimSuffix(filepath.Base(f), ".seg")
			def, ok := oracleSegments[app+"/"+name]
			if !ok {
				t.Errorf("%s: the oracle does not know segment %s/%s: write it in oracleSegments", f, app, name)
				continue
			}
			if got := segmentText(string(must(os.ReadFile(f)))); got != def.text {
				t.Errorf("%s: the example reads\n  %s\nthe oracle implements\n  %s", f, got, def.text)
			}
			seen[app+"/"+name] = true
		}
		files, _ := filepath.Glob(filepath.Join(dir, "campaigns", "*.yaml"))
		for _, f := range files {
			c := &campaign{file: f}
			if err := yaml.Unmarshal(must(os.ReadFile(f)), c); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			camps = append(camps, c)
		}
	}
	for k := range oracleSegments {
		if !seen[k] {
			t.Errorf("the oracle's segment %s is in no example", k)
		}
	}
	sort.Slice(camps, func(i, j int) bool { return camps[i].App+camps[i].Name < camps[j].App+camps[j].Name })
	return camps
}

var comment = regexp.MustCompile(`#[^\n"]*(\n|$)`)

func segmentText(s string) string {
	return strings.Join(strings.Fields(comment.ReplaceAllString(s, "\n")), " ")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// dur reads 10m, 2h, 3d, 1w.
func dur(s string) time.Duration {
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil {
		panic(fmt.Sprintf("duration %q", s))
	}
	switch s[len(s)-1] {
	case 's':
		return time.Duration(n) * time.Second
	case 'm':
		return time.Duration(n) * time.Minute
	case 'h':
		return time.Duration(n) * time.Hour
	case 'd':
		return time.Duration(n) * day
	case 'w':
		return time.Duration(n) * 7 * day
	}
	panic(fmt.Sprintf("duration %q", s))
}

func percent(s string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		panic(fmt.Sprintf("percent %q", s))
	}
	return f
}

// inControl: the campaign's control group, as docs/campaigns.md draws it:
// murmur3 (32 bits) of salt + "/control/" + device id below control% of
// 2^32.
func (c *campaign) inControl(dev string) bool {
	if c.Who.Control == "" {
		return false
	}
	salt := c.Who.Salt
	if salt == "" {
		salt = c.Name
	}
	return float64(murmur3.Sum32([]byte(salt+"/control/"+dev))) < percent(c.Who.Control)/100*4294967296
}

func (c *campaign) location(d *device) *time.Location {
	name := d.tz
	if name == "" {
		name = c.When.DefaultTimeZone
	}
	if name == "" {
		name = "UTC"
	}
	return must(time.LoadLocation(name))
}

func clock(s string) (h, m int) {
	_, err := fmt.Sscanf(s, "%d:%d", &h, &m)
	if err != nil {
		panic(fmt.Sprintf("time of day %q", s))
	}
	return h, m
}

// nextLocal is the first instant at or after t whose wall clock in loc
// reads hh:mm (the zones of the population have no gaps in these weeks).
func nextLocal(t time.Time, loc *time.Location, hhmm string) time.Time {
	h, m := clock(hhmm)
	l := t.In(loc)
	c := time.Date(l.Year(), l.Month(), l.Day(), h, m, 0, 0, loc)
	if c.Before(t) {
		c = time.Date(l.Year(), l.Month(), l.Day()+1, h, m, 0, 0, loc)
	}
	return c
}

// quiet moves a send out of the quiet hours: to their end.
func (c *campaign) quiet(s time.Time, loc *time.Location) time.Time {
	q := c.Limits.QuietHours
	if q == nil {
		return s
	}
	fh, fm := clock(q.From)
	th, tm := clock(q.To)
	l := s.In(loc)
	mins, from, to := l.Hour()*60+l.Minute(), fh*60+fm, th*60+tm
	in := from <= mins && mins < to
	if from > to {
		in = mins >= from || mins < to
	}
	if !in {
		return s
	}
	if q.Then == "drop" {
		return time.Time{}
	}
	return nextLocal(s, loc, q.To)
}

// send is what the oracle expects: a device gets the campaign at time at,
// or is held out as control.
type send struct {
	dev     string
	at      time.Time
	control bool
}

// expect works out a campaign's sends and control decisions up to
// horizon, over the devices of its app.
func (c *campaign) expect(devs []*device, horizon time.Time) []send {
	var out []send
	audience := func(d *device, t time.Time) bool {
		for _, s := range c.Who.Segments {
			if !oracleSegments[c.App+"/"+s].member(d, t) {
				return false
			}
		}
		for _, s := range c.Who.Exclude {
			if oracleSegments[c.App+"/"+s].member(d, t) {
				return false
			}
		}
		return true
	}
	for _, d := range devs {
		if d.app != c.App || len(d.facts) == 0 {
			continue
		}
		loc := c.location(d)
		ctl := c.inControl(d.id)
		if o := c.When.Once; o != nil {
			at := must(time.ParseInLocation("2006-01-02T15:04", o.At, loc))
			if !o.LocalTime {
				at = must(time.Parse("2006-01-02T15:04", o.At))
			}
			if !at.After(horizon) && audience(d, at) {
				out = append(out, send{dev: d.id, at: at, control: ctl})
			}
			continue
		}
		states := c.states(d, horizon, audience)
		var last time.Time
		for i, st := range states {
			if !st.member || (i > 0 && states[i-1].member) {
				continue
			}
			e := st.at
			if ctl { // held out at each entry: decided at once, never sent (so never the one send of once)
				out = append(out, send{dev: d.id, at: e, control: true})
				continue
			}
			if c.Limits.Once && !last.IsZero() {
				break
			}
			s := e.Add(dur(c.When.OnEntry.Delay))
			if c.When.OnEntry.At != "" {
				s = nextLocal(s, loc, c.When.OnEntry.At)
			}
			s = c.quiet(s, loc)
			if s.IsZero() || (c.When.Expiry != "" && s.Sub(e) > dur(c.When.Expiry)) || s.After(horizon) {
				continue
			}
			if !last.IsZero() && c.Limits.Reentry != "" && s.Sub(last) < dur(c.Limits.Reentry) {
				continue
			}
			left := false // leaving the audience before the send cancels it
			for _, x := range states[i+1:] {
				if !x.at.Before(s) {
					break
				}
				if !x.member {
					left = true
					break
				}
			}
			if left {
				continue
			}
			out = append(out, send{dev: d.id, at: s})
			last = s
		}
	}
	return out
}

// state is a device's membership in an audience from an instant on.
type state struct {
	at     time.Time
	member bool
}

// states is the sequence of a device's audience memberships: at each
// instant where one can change, first as time reaches it (the facts before
// it), then with the facts of that instant (a record is applied after the
// timers due at its time, as the processor does).
func (c *campaign) states(d *device, horizon time.Time, audience func(*device, time.Time) bool) []state {
	var out []state
	k := 0
	for _, t := range candidates(d, horizon) {
		for k < len(d.facts) && d.facts[k].at.Before(t) {
			k++
		}
		before := *d
		before.facts = d.facts[:k]
		out = append(out, state{t, audience(&before, t)}, state{t, audience(d, t)})
	}
	return out
}

// candidates are the instants at which a device's memberships can change:
// each fact's time, and each plus every window, up to horizon.
func candidates(d *device, horizon time.Time) []time.Time {
	set := map[time.Time]bool{}
	for _, f := range d.facts {
		for _, w := range windows {
			if t := f.at.Add(w); !t.After(horizon) {
				set[t] = true
			}
		}
	}
	out := make([]time.Time, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}
