package triggers

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// run feeds changes to a scheduler on a simulated clock and collects what
// it decided.
type run struct {
	t    *testing.T
	s    *Scheduler
	decs []Decision
	dels []Delivery
}

func newRun(t *testing.T, camps []*Campaign, caps map[string]map[Channel]Caps, now time.Time) *run {
	r := &run{t: t, s: New()}
	r.s.SetCampaigns(camps, caps, now, nil)
	return r
}

func (r *run) change(app, seg, dev string, enter bool, at time.Time) {
	id := fmt.Sprintf("%s/%s/%s/%v/%d", app, seg, dev, enter, at.Unix())
	r.decs, r.dels = r.s.Apply(SegmentChange{App: app, Segment: seg, DeviceID: dev, Enter: enter, Time: at, ID: id}, at, r.decs, r.dels)
}

func (r *run) advance(at time.Time) {
	r.decs, r.dels = r.s.Advance(at, r.decs, r.dels)
}

// sends lists the deliveries as "campaign device time" lines.
func (r *run) sends() string {
	var b strings.Builder
	for _, d := range r.dels {
		fmt.Fprintf(&b, "%s %s %s\n", d.Campaign, d.DeviceID, d.Time.Format(time.RFC3339))
	}
	return b.String()
}

func (r *run) outcomes() string {
	var b strings.Builder
	for _, d := range r.decs {
		fmt.Fprintf(&b, "%s %s %s %s\n", d.Campaign, d.DeviceID, d.Outcome, d.Time.Format(time.RFC3339))
	}
	return b.String()
}

func push(app, name string, segs ...string) *Campaign {
	return &Campaign{App: app, Name: name, Version: 1, What: What{Channel: ChannelPush, DefaultLocale: "en",
		Content: map[string]*Message{"en": {Title: "Hi"}, "fr": {Title: "Salut"}}},
		Who: Who{Segments: segs, Sample: 100}, When: When{Kind: OnEntry}}
}

func mustLoc(t *testing.T, tz string) *time.Location {
	loc, err := time.LoadLocation(tz)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// The welcome series: D+2, D+5, D+10, D+15 after the first session, at
// 10:00 in the user's time zone, each only while the user has not
// subscribed (the segments say "and not did event subscribed"; the user
// who subscribes leaves them, which cancels what waits).
func TestWelcomeSeries(t *testing.T) {
	paris := mustLoc(t, "Europe/Paris")
	first := time.Date(2026, 3, 23, 15, 0, 0, 0, paris) // a Monday; DST starts on the 29th
	var camps []*Campaign
	for _, day := range []int{2, 5, 10, 15} {
		c := push("news", fmt.Sprintf("welcome_d%d", day), fmt.Sprintf("d%d_not_subscribed", day))
		c.When.AlignTo = &TimeOfDay{Hour: 10}
		camps = append(camps, c)
	}
	r := newRun(t, camps, nil, first)
	for _, dev := range []string{"ana", "bo"} {
		r.s.SetProfile("news", dev, Profile{TimeZone: "Europe/Paris", Locale: "fr-FR"})
	}
	// The processor's entries: "first_session more than Nd ago and not did
	// event subscribed" becomes true N days after the first session. bo
	// subscribes on the evening of day 5, after the D+5 entry and before
	// its send (due the next morning at 10:00): he leaves the segment.
	for _, day := range []int{2, 5, 10, 15} {
		at := first.Add(time.Duration(day) * 24 * time.Hour)
		r.change("news", fmt.Sprintf("d%d_not_subscribed", day), "ana", true, at)
		if day <= 5 {
			r.change("news", fmt.Sprintf("d%d_not_subscribed", day), "bo", true, at)
		}
		if day == 5 {
			r.change("news", "d5_not_subscribed", "bo", false, time.Date(2026, 3, 28, 20, 0, 0, 0, paris))
		}
	}
	r.advance(first.Add(20 * 24 * time.Hour))
	want := strings.Join([]string{
		"welcome_d2 ana 2026-03-26T09:00:00Z", // 10:00 CET the day after the entry at 15:00
		"welcome_d2 bo 2026-03-26T09:00:00Z",
		"welcome_d5 ana 2026-03-29T08:00:00Z", // 10:00 CEST: DST began that night
		"welcome_d10 ana 2026-04-03T08:00:00Z",
		"welcome_d15 ana 2026-04-08T08:00:00Z",
	}, "\n") + "\n"
	if got := r.sends(); got != want {
		t.Errorf("sends:\n%s\nwant:\n%s\ndecisions:\n%s", got, want, r.outcomes())
	}
	if !strings.Contains(r.outcomes(), "welcome_d5 bo left") {
		t.Errorf("bo's D+5 was not cancelled when he left the segment:\n%s", r.outcomes())
	}
	for _, d := range r.dels {
		if d.Locale != "fr" {
			t.Errorf("%s to %s in locale %q, want fr (the device's language)", d.Campaign, d.DeviceID, d.Locale)
		}
	}
}

// Caps across campaigns: one push a day. Two campaigns due at the same
// instant: the higher priority is sent, the other is outranked; a third
// later that day is capped; the next day sends again.
func TestCapsAndPriority(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	promo := push("shop", "promo", "shoes")
	promo.Limit.Priority = 1
	cart := push("shop", "cart", "cart_left")
	cart.Limit.Priority = 5
	late := push("shop", "late", "bags")
	for _, c := range []*Campaign{promo, cart} {
		c.When.Delay = time.Hour
	}
	caps := map[string]map[Channel]Caps{"shop": {ChannelPush: {PerDay: 1, PerWeek: 3}}}
	r := newRun(t, []*Campaign{promo, cart, late}, caps, t0)
	r.change("shop", "shoes", "d1", true, t0)
	r.change("shop", "cart_left", "d1", true, t0)
	r.change("shop", "bags", "d1", true, t0.Add(3*time.Hour))
	r.change("shop", "bags", "d1", false, t0.Add(4*time.Hour))
	r.change("shop", "bags", "d1", true, t0.Add(25*time.Hour))
	r.advance(t0.Add(48 * time.Hour))
	want := "cart d1 2026-06-01T13:00:00Z\nlate d1 2026-06-02T13:00:00Z\n"
	if got := r.sends(); got != want {
		t.Errorf("sends:\n%s\nwant:\n%s\ndecisions:\n%s", got, want, r.outcomes())
	}
	out := r.outcomes()
	for _, w := range []string{"promo d1 outranked 2026-06-01T13:00:00Z", "late d1 capped 2026-06-01T15:00:00Z"} {
		if !strings.Contains(out, w) {
			t.Errorf("no decision %q in:\n%s", w, out)
		}
	}
}

// Quiet hours defer to their end in the device's own time zone, in four
// zones; once per device holds across re-entries.
func TestQuietHoursAndOnce(t *testing.T) {
	t0 := time.Date(2026, 10, 25, 21, 30, 0, 0, time.UTC) // the night Europe leaves DST
	c := push("game", "bonus", "stalled")
	c.Limit.Quiet = &QuietHours{From: TimeOfDay{Hour: 22}, To: TimeOfDay{Hour: 8}}
	c.Limit.Once = true
	r := newRun(t, []*Campaign{c}, nil, t0)
	zones := map[string]string{"paris": "Europe/Paris", "ny": "America/New_York", "sydney": "Australia/Sydney", "kolkata": "Asia/Kolkata"}
	for dev, tz := range zones {
		r.s.SetProfile("game", dev, Profile{TimeZone: tz})
	}
	for _, dev := range []string{"kolkata", "ny", "paris", "sydney"} {
		r.change("game", "stalled", dev, true, t0)
	}
	// Paris re-enters the next week: once per device holds.
	r.change("game", "stalled", "paris", false, t0.Add(24*time.Hour))
	r.change("game", "stalled", "paris", true, t0.Add(7*24*time.Hour))
	r.advance(t0.Add(8 * 24 * time.Hour))
	got := map[string]string{}
	for _, d := range r.dels {
		got[d.DeviceID] = d.Time.Format(time.RFC3339)
	}
	want := map[string]string{
		"paris":   "2026-10-26T07:00:00Z", // 22:30 CET is quiet; 08:00 CET (winter time since 03:00)
		"ny":      "2026-10-25T21:30:00Z", // 17:30 EDT: not quiet
		"sydney":  "2026-10-25T21:30:00Z", // 08:30 AEDT: just out of the window
		"kolkata": "2026-10-26T02:30:00Z", // 03:00 IST is quiet; 08:00 IST
	}
	for dev, w := range want {
		if got[dev] != w {
			t.Errorf("%s (%s): sent at %q, want %s\n%s", dev, zones[dev], got[dev], w, r.outcomes())
		}
	}
	if len(r.dels) != 4 || !strings.Contains(r.outcomes(), "bonus paris repeat") {
		t.Errorf("once per device: %d sends\n%s", len(r.dels), r.outcomes())
	}
}

// Control and variants through the scheduler on 100k devices: shares
// within 5 sigma, and the same decisions and delivery ids when run again
// (a restart assigns every device as before).
func TestControlAndVariantsAtScale(t *testing.T) {
	t0 := time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)
	c := push("news", "topic_alert", "sport_fans")
	c.Who.Control = 10
	c.Who.Variants = []Variant{{Name: "a", Weight: 70}, {Name: "b", Weight: 30}}
	const n = 100_000
	once := func() ([]Decision, []Delivery) {
		r := newRun(t, []*Campaign{c}, nil, t0)
		for i := range n {
			r.change("news", "sport_fans", fmt.Sprintf("dev%06d", i), true, t0)
		}
		return r.decs, r.dels
	}
	decs, dels := once()
	control, a := 0, 0
	for _, d := range decs {
		if d.Outcome == OutcomeControl {
			control++
		}
	}
	for _, d := range dels {
		if d.Variant == "a" {
			a++
		}
	}
	within := func(what string, got int, p float64, of int) {
		mean, sd := p*float64(of), math.Sqrt(float64(of)*p*(1-p))
		if math.Abs(float64(got)-mean) > 5*sd {
			t.Errorf("%s: %d of %d, expected %.0f ± %.0f (5σ)", what, got, of, mean, 5*sd)
		}
	}
	within("control", control, 0.10, n)
	within("variant a among the sent", a, 0.70, len(dels))
	if control+len(dels) != n {
		t.Errorf("%d control + %d sent != %d devices", control, len(dels), n)
	}
	decs2, dels2 := once()
	for i := range decs {
		if decs[i].ID != decs2[i].ID || decs[i].Outcome != decs2[i].Outcome || decs[i].Variant != decs2[i].Variant {
			t.Fatalf("decision %d differs when run again: %+v vs %+v", i, decs[i], decs2[i])
		}
	}
	for i := range dels {
		if !reflect.DeepEqual(dels[i], dels2[i]) {
			t.Fatalf("delivery %d differs when run again: %+v vs %+v", i, dels[i], dels2[i])
		}
	}
}

// Expiry: a send that waits past the campaign's expiry is not sent.
func TestExpiry(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	c := push("bank", "welcome", "account_created")
	c.When.Delay = 2 * time.Hour
	c.When.Expiry = time.Hour
	r := newRun(t, []*Campaign{c}, nil, t0)
	r.change("bank", "account_created", "d1", true, t0)
	r.advance(t0.Add(24 * time.Hour))
	if len(r.dels) != 0 || !strings.Contains(r.outcomes(), "welcome d1 expired") {
		t.Errorf("a 2 h delay with a 1 h expiry sent:\n%s\n%s", r.sends(), r.outcomes())
	}
}

// A one-off send at 09:00 in each device's own time zone rolls across the
// zones; a device that joins after its instant gets nothing, one that
// leaves before it is cancelled.
func TestOnceInLocalTime(t *testing.T) {
	t0 := time.Date(2026, 12, 23, 0, 0, 0, 0, time.UTC)
	c := push("news", "xmas", "readers")
	c.When = When{Kind: Once, At: time.Date(2026, 12, 24, 9, 0, 0, 0, time.UTC), LocalTime: true}
	r := newRun(t, nil, nil, t0)
	zones := map[string]string{"tokyo": "Asia/Tokyo", "paris": "Europe/Paris", "ny": "America/New_York", "gone": "Europe/Paris", "late": "Asia/Tokyo"}
	for dev, tz := range zones {
		r.s.SetProfile("news", dev, Profile{TimeZone: tz})
	}
	for _, dev := range []string{"tokyo", "paris", "ny", "gone"} {
		r.change("news", "readers", dev, true, t0)
	}
	// The campaign is saved when the devices are already members.
	r.s.SetCampaigns([]*Campaign{c}, nil, t0, nil)
	r.change("news", "readers", "gone", false, t0.Add(12*time.Hour))
	r.advance(time.Date(2026, 12, 24, 3, 0, 0, 0, time.UTC)) // 12:00 in Tokyo: its send is past
	r.change("news", "readers", "late", true, time.Date(2026, 12, 24, 3, 0, 0, 0, time.UTC))
	r.advance(t0.Add(72 * time.Hour))
	want := "xmas tokyo 2026-12-24T00:00:00Z\nxmas paris 2026-12-24T08:00:00Z\nxmas ny 2026-12-24T14:00:00Z\n"
	if got := r.sends(); got != want {
		t.Errorf("sends:\n%s\nwant:\n%s\ndecisions:\n%s", got, want, r.outcomes())
	}
	if !strings.Contains(r.outcomes(), "xmas gone left") {
		t.Errorf("the device that left was not cancelled:\n%s", r.outcomes())
	}
}

// A weekly send on Mondays at 08:30 local goes to the members of each
// Monday, and stops when the device leaves.
func TestRecurringWeekly(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, ny) // a Sunday; DST starts on March 8
	c := push("game", "weekly_digest", "players")
	c.When = When{Kind: Recurring, Every: &TimeOfDay{Hour: 8, Minute: 30}, Weekdays: []time.Weekday{time.Monday}}
	r := newRun(t, []*Campaign{c}, nil, t0)
	r.s.SetProfile("game", "d1", Profile{TimeZone: "America/New_York"})
	r.change("game", "players", "d1", true, t0)
	r.advance(time.Date(2026, 3, 17, 0, 0, 0, 0, ny))
	r.change("game", "players", "d1", false, time.Date(2026, 3, 17, 0, 0, 0, 0, ny))
	r.advance(time.Date(2026, 4, 1, 0, 0, 0, 0, ny))
	want := "weekly_digest d1 2026-03-02T13:30:00Z\nweekly_digest d1 2026-03-09T12:30:00Z\nweekly_digest d1 2026-03-16T12:30:00Z\n"
	if got := r.sends(); got != want {
		t.Errorf("sends:\n%s\nwant:\n%s\ndecisions:\n%s", got, want, r.outcomes())
	}
	ids := map[string]bool{}
	for _, d := range r.dels {
		if ids[d.ID] {
			t.Errorf("two deliveries with id %s", d.ID)
		}
		ids[d.ID] = true
	}
}

// A campaign's send rate: 1,000 devices due at one instant, 100 sends a
// second: the sends spread over 10 seconds, in device order, none lost.
func TestRate(t *testing.T) {
	t0 := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	c := push("shop", "flash_sale", "buyers")
	c.Limit.Rate = 100
	r := newRun(t, []*Campaign{c}, nil, t0)
	for i := range 1000 {
		r.change("shop", "buyers", fmt.Sprintf("d%04d", i), true, t0)
	}
	r.advance(t0.Add(time.Minute))
	if len(r.dels) != 1000 {
		t.Fatalf("%d sends, want 1000", len(r.dels))
	}
	perSec := map[int64]int{}
	for _, d := range r.dels {
		perSec[d.Time.Unix()-t0.Unix()]++
	}
	for sec := range int64(10) {
		if perSec[sec] != 100 {
			t.Errorf("second %d: %d sends, want 100 (%v)", sec, perSec[sec], perSec)
		}
	}
}

// A campaign changed or deleted while sends wait: each waiting send ends
// with a decision that says why, and nothing is sent for it.
func TestCampaignChangedWhileWaiting(t *testing.T) {
	t0 := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	c := push("shop", "cart", "cart_left")
	c.When.Delay = 2 * time.Hour
	other := push("shop", "promo", "shoes")
	other.When.Delay = 2 * time.Hour
	r := newRun(t, []*Campaign{c, other}, nil, t0)
	r.change("shop", "cart_left", "d1", true, t0)
	r.change("shop", "shoes", "d1", true, t0)
	v2 := *c
	v2.Version = 2
	r.decs = r.s.SetCampaigns([]*Campaign{&v2}, nil, t0.Add(time.Hour), r.decs)
	r.advance(t0.Add(24 * time.Hour))
	if len(r.dels) != 0 {
		t.Errorf("sent after the campaigns changed:\n%s", r.sends())
	}
	out := r.outcomes()
	for _, w := range []string{"cart d1 ended", "promo d1 ended"} {
		if !strings.Contains(out, w) {
			t.Errorf("no decision %q:\n%s", w, out)
		}
	}
	var why []string
	for _, d := range r.decs {
		if d.Outcome == OutcomeEnded {
			why = append(why, d.Reason)
		}
	}
	if strings.Join(why, "|") != "the campaign changed (a new version) before the send|the campaign was deleted" {
		t.Errorf("reasons: %q", why)
	}
}

// A push or data delivery carries the newest push token the device sent
// (a device record without one keeps the last); an in-app one none; a
// device that sent none gets a delivery without a token (the dispatcher
// decides it unreachable).
func TestDeliveriesCarryTheNewestToken(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	inapp := push("app", "tip", "stuck")
	inapp.What.Channel = ChannelInApp
	r := newRun(t, []*Campaign{push("app", "hello", "new"), inapp}, nil, t0)
	dev := func(token string, p tag.PushProvider, at time.Time) {
		r.s.ApplyRecord(&tag.Record{Kind: tag.KindDevice, AppID: "app", DeviceID: "d1", Time: at, Device: &tag.DeviceInfo{Platform: "ios", PushToken: token, PushProvider: p}}, 0)
	}
	dev("old-token", tag.ProviderAPNsSandbox, t0)
	dev("new-token", tag.ProviderAPNs, t0.Add(time.Minute))
	dev("", "", t0.Add(2*time.Minute)) // a device record without a token
	r.change("app", "new", "d1", true, t0.Add(3*time.Minute))
	r.change("app", "stuck", "d1", true, t0.Add(3*time.Minute))
	r.change("app", "new", "d2", true, t0.Add(3*time.Minute))
	if len(r.dels) != 3 {
		t.Fatalf("%d deliveries: %v", len(r.dels), r.sends())
	}
	for _, d := range r.dels {
		var want string
		var wantP tag.PushProvider
		if d.DeviceID == "d1" && d.Channel == ChannelPush {
			want, wantP = "new-token", tag.ProviderAPNs
		}
		if d.PushToken != want || d.PushProvider != wantP {
			t.Errorf("%s %s %s: token %q %q, want %q %q", d.Campaign, d.DeviceID, d.Channel, d.PushToken, d.PushProvider, want, wantP)
		}
	}
}

// A token the dispatcher reports dead is forgotten (later deliveries carry
// none: unreachable), unless the device sent another since the delivery
// was decided.
func TestDeadTokenForgotten(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	r := newRun(t, []*Campaign{push("app", "hello", "new")}, nil, t0)
	dev := func(id, token string, at time.Time) {
		r.s.ApplyRecord(&tag.Record{Kind: tag.KindDevice, AppID: "app", DeviceID: id, Time: at, Device: &tag.DeviceInfo{Platform: "ios", PushToken: token, PushProvider: tag.ProviderAPNs}}, 0)
	}
	dead := func(id string, decidedAt time.Time) {
		r.s.ApplyRecord(&tag.Record{Kind: tag.KindPush, AppID: "app", DeviceID: id, Time: decidedAt, Push: &tag.Push{Action: tag.PushTokenDead, DeliveryID: "x"}}, 0)
	}
	dev("d1", "t1", t0)
	dev("d2", "t2", t0)
	dead("d1", t0.Add(time.Hour)) // d1's token died
	dev("d2", "t2-new", t0.Add(2*time.Hour))
	dead("d2", t0.Add(time.Hour))     // about t2: d2 has sent t2-new since
	dead("nobody", t0.Add(time.Hour)) // a device the scheduler does not know
	r.change("app", "new", "d1", true, t0.Add(3*time.Hour))
	r.change("app", "new", "d2", true, t0.Add(3*time.Hour))
	got := map[string]string{}
	for _, d := range r.dels {
		got[d.DeviceID] = d.PushToken
	}
	if got["d1"] != "" || got["d2"] != "t2-new" || len(r.dels) != 2 {
		t.Errorf("tokens of the deliveries: %v", got)
	}
}
