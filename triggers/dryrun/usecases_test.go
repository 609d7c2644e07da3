package dryrun

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
	"github.com/openengage/engage/triggers"
)

// The seed's use cases end to end through the real segment engine and
// scheduler (the composition the live services make, tested equal to them
// in cmd/engage), on the simulated clock, over generated populations. Each
// asserts the exact recipients and send times against an oracle written
// here from the generated data alone: plain loops over each device's
// records, with the time package's own time zones.

type population struct {
	recs []*tag.Record
}

func (p *population) add(r tag.Record) {
	r.MessageID = fmt.Sprintf("m%07d", len(p.recs))
	p.recs = append(p.recs, &r)
}

// run sorts the records by event time, adds a clock device's event every
// 10 minutes (the simulated clock moves with the records) and replays.
func (p *population) run(t *testing.T, app string, segs map[string]string, camps ...string) *Result {
	t.Helper()
	sort.SliceStable(p.recs, func(i, j int) bool { return p.recs[i].Time.Before(p.recs[j].Time) })
	first, last := p.recs[0].Time, p.recs[len(p.recs)-1].Time
	for at := first; !at.After(last.Add(48 * time.Hour)); at = at.Add(10 * time.Minute) {
		p.add(tag.Record{Kind: tag.KindEvent, AppID: app, DeviceID: "clock", Time: at, Name: "tick"})
	}
	sort.SliceStable(p.recs, func(i, j int) bool { return p.recs[i].Time.Before(p.recs[j].Time) })
	var ss []*segments.Segment
	for name, text := range segs {
		expr, err := segments.Parse(text)
		if err != nil {
			t.Fatalf("segment %s: %v", name, err)
		}
		ss = append(ss, &segments.Segment{App: app, Name: name, Text: text, Expr: expr, Version: 1})
	}
	var cs []*triggers.Campaign
	for i, src := range camps {
		c, err := triggers.Parse(fmt.Sprintf("campaign%d.yaml", i), []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		c.Version = int64(10 + i)
		cs = append(cs, c)
	}
	in := make([]Input, len(p.recs))
	for i, r := range p.recs {
		in[i] = Input{Offset: int64(i), Record: r}
	}
	res, err := Run(Options{Segments: ss, Campaigns: cs}, map[int][]Input{0: in})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// sends lists "campaign device time" of the deliveries.
func sends(res *Result) []string {
	var out []string
	for _, d := range res.Deliveries {
		out = append(out, d.Campaign+" "+d.DeviceID+" "+d.Time.UTC().Format(time.RFC3339))
	}
	sort.Strings(out)
	return out
}

func compareSends(t *testing.T, got, want []string) {
	t.Helper()
	sort.Strings(want)
	g, w := map[string]bool{}, map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	for _, s := range want {
		w[s] = true
	}
	bad := 0
	for _, s := range want {
		if !g[s] {
			if bad++; bad <= 8 {
				t.Errorf("missing send: %s", s)
			}
		}
	}
	for _, s := range got {
		if !w[s] {
			if bad++; bad <= 16 {
				t.Errorf("unexpected send: %s", s)
			}
		}
	}
	if bad > 0 || len(got) != len(want) {
		t.Errorf("%d sends, the oracle says %d; %d differ", len(got), len(want), bad)
	}
}

// nextLocal is the first wall time h:00 in loc strictly after t.
func nextLocal(t time.Time, h int, loc *time.Location) time.Time {
	l := t.In(loc)
	c := time.Date(l.Year(), l.Month(), l.Day(), h, 0, 0, 0, loc)
	for !c.After(t) {
		l = l.AddDate(0, 0, 1)
		c = time.Date(l.Year(), l.Month(), l.Day(), h, 0, 0, 0, loc)
	}
	return c
}

var zones = []string{"Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney"}

// Welcome series: D+2, 5, 10 and 15 after the first session, at 10:00 in
// each user's time zone, until the user subscribes. Four time zones, and
// the DST changes of Paris (29 March) and Sydney (5 April) inside.
func TestUseCaseWelcomeSeriesStopsOnSubscribe(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	t0 := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	var p population
	type dev struct {
		loc        *time.Location
		first, sub time.Time
	}
	devs := map[string]dev{}
	for i := range 600 {
		id := fmt.Sprintf("w%04d", i)
		z := zones[rng.IntN(len(zones))]
		loc, _ := time.LoadLocation(z)
		first := t0.Add(time.Duration(rng.IntN(4*86400))*time.Second + 7*time.Second)
		d := dev{loc: loc, first: first}
		p.add(tag.Record{Kind: tag.KindDevice, AppID: "news", DeviceID: id, Time: first, Device: &tag.DeviceInfo{Platform: "ios", TimeZone: z, Locale: "en-GB"}})
		p.add(tag.Record{Kind: tag.KindSessionStart, AppID: "news", DeviceID: id, Time: first.Add(time.Second), SessionID: id + "-1"})
		for k := 1; k < 20; k++ {
			if rng.IntN(3) == 0 {
				p.add(tag.Record{Kind: tag.KindSessionStart, AppID: "news", DeviceID: id, Time: first.Add(time.Duration(k)*24*time.Hour + time.Duration(rng.IntN(80000))*time.Second), SessionID: fmt.Sprintf("%s-%d", id, k+1)})
			}
		}
		if rng.IntN(10) < 4 { // 40% subscribe, at any point of the series
			d.sub = first.Add(time.Duration(rng.IntN(18*86400)) * time.Second)
			p.add(tag.Record{Kind: tag.KindEvent, AppID: "news", DeviceID: id, Time: d.sub, Name: "subscribed"})
		}
		devs[id] = d
	}
	segs := map[string]string{"subscribers": `did event "subscribed"`}
	var camps []string
	steps := []int{2, 5, 10, 15}
	for _, k := range steps {
		segs[fmt.Sprintf("welcome_d%d", k)] = fmt.Sprintf("first_session between %dd and %dd ago", k, k+1)
		camps = append(camps, fmt.Sprintf(`
app: news
name: welcome_d%d
what:
  content:
    en: {title: "Day %d", body: "Pick your topics."}
  default_locale: en
who:
  segments: [welcome_d%d]
  exclude: [subscribers]
when:
  on_entry: {at: "10:00"}
limits:
  once: true
`, k, k, k))
	}
	res := p.run(t, "news", segs, camps...)
	// The oracle: step k enters at first + k days and leaves a day later;
	// the send is the next 10:00 local after the entry, if the device is
	// still in the step then (on the day a DST change makes 25 hours long,
	// the next 10:00 can be more than a day away); a subscription at or
	// before it stops it.
	var want []string
	stopped, left := 0, 0
	for id, d := range devs {
		for _, k := range steps {
			entry := d.first.Add(time.Duration(k) * 24 * time.Hour)
			at := nextLocal(entry, 10, d.loc)
			if !at.Before(entry.Add(24 * time.Hour)) {
				left++
				continue
			}
			if !d.sub.IsZero() && !d.sub.After(at) {
				stopped++
				continue
			}
			want = append(want, fmt.Sprintf("welcome_d%d %s %s", k, id, at.UTC().Format(time.RFC3339)))
		}
	}
	t.Logf("%d sends, %d stopped by a subscription, %d left before a DST day's 10:00", len(want), stopped, left)
	if stopped < 200 || len(want) < 1500 {
		t.Fatalf("the population exercises too little: %d sends, %d stopped", len(want), stopped)
	}
	compareSends(t, sends(res), want)
	if left < 1 {
		t.Errorf("no device left its step's day before 10:00 came (a 25-hour DST day): the population misses the case")
	}
}

// News alert by declared topic: a breaking-news push at one instant to
// the users whose declared favourite topic is politics at that instant
// (the latest value they declared; some change their mind before or after).
func TestUseCaseNewsAlertByDeclaredTopic(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	alert := time.Date(2026, 6, 4, 8, 0, 0, 0, time.UTC)
	var p population
	topics := []string{"politics", "sport", "culture"}
	latest := map[string]string{}
	for i := range 1500 {
		id := fmt.Sprintf("n%04d", i)
		at := t0.Add(time.Duration(rng.IntN(6*86400))*time.Second + 3*time.Second)
		p.add(tag.Record{Kind: tag.KindSessionStart, AppID: "news", DeviceID: id, Time: at, SessionID: id})
		for range 1 + rng.IntN(3) {
			topic := topics[rng.IntN(len(topics))]
			p.add(tag.Record{Kind: tag.KindAppInfo, AppID: "news", DeviceID: id, Time: at, AppInfo: []tag.Extra{{Key: "favorite_topic", Value: tag.String(topic)}}})
			if !at.After(alert) {
				latest[id] = topic
			}
			at = at.Add(time.Duration(1+rng.IntN(2*86400)) * time.Second)
		}
	}
	res := p.run(t, "news", map[string]string{"politics_fans": `app_info "favorite_topic" = "politics"`}, `
app: news
name: breaking_politics
what:
  content:
    en: {title: "Breaking", body: "The vote is in."}
  default_locale: en
who:
  segments: [politics_fans]
when:
  once: {at: 2026-06-04T08:00:00Z}
`)
	var want []string
	for id, topic := range latest {
		if topic == "politics" {
			want = append(want, "breaking_politics "+id+" "+alert.Format(time.RFC3339))
		}
	}
	t.Logf("%d politics fans at the alert, of %d devices", len(want), 1500)
	if len(want) < 200 {
		t.Fatalf("too few recipients to say anything: %d", len(want))
	}
	compareSends(t, sends(res), want)
}

// Rate the app: asked once, in the app, of the users whose score — the
// shares of the last 30 days — reaches 10: the ambassadors, under 1% of
// the users. Asked the moment they qualify.
func TestUseCaseRateAppByScore(t *testing.T) {
	rng := rand.New(rand.NewPCG(45, 46))
	t0 := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	var p population
	shares := map[string][]time.Time{}
	const users = 3000
	for i := range users {
		id := fmt.Sprintf("r%04d", i)
		p.add(tag.Record{Kind: tag.KindSessionStart, AppID: "media", DeviceID: id, Time: t0.Add(time.Duration(rng.IntN(86400)) * time.Second), SessionID: id})
		n := rng.IntN(4) // most share little
		if rng.IntN(200) == 0 {
			n = 8 + rng.IntN(15) // a few share a lot
		}
		for range n {
			at := t0.Add(time.Duration(86400+rng.IntN(50*86400))*time.Second + 5*time.Second)
			shares[id] = append(shares[id], at)
			p.add(tag.Record{Kind: tag.KindEvent, AppID: "media", DeviceID: id, Time: at, Name: "share"})
		}
	}
	res := p.run(t, "media", map[string]string{"ambassadors": `did event "share" at least 10 times in the last 30d`}, `
app: media
name: rate_app
what:
  channel: in_app
  content:
    en: {title: "Enjoying the app?", body: "Rate us.", layout: modal, buttons: [{label: "Rate"}, {label: "Later"}]}
  default_locale: en
who:
  segments: [ambassadors]
when:
  on_entry: {}
limits:
  once: true
`)
	// The oracle: the first share that makes 10 within 30 days.
	var want []string
	for id, ts := range shares {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for j := 9; j < len(ts); j++ {
			if ts[j].Sub(ts[j-9]) < 30*24*time.Hour {
				want = append(want, "rate_app "+id+" "+ts[j].Format(time.RFC3339))
				break
			}
		}
	}
	t.Logf("%d ambassadors of %d users (%.2f%%)", len(want), users, 100*float64(len(want))/users)
	if len(want) == 0 || len(want) >= users/100 {
		t.Fatalf("%d ambassadors of %d: the population must give some, under 1%%", len(want), users)
	}
	got := sends(res)
	compareSends(t, got, want)
	for _, d := range res.Deliveries {
		if d.Channel != triggers.ChannelInApp || !strings.Contains(d.Message.Title, "Enjoying") {
			t.Errorf("%s: %s %q", d.DeviceID, d.Channel, d.Message.Title)
		}
	}
}
