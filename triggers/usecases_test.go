package triggers

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// The source document's use cases, from the example campaign files in
// testdata (parsed as users write them), through the scheduler on the
// simulated clock: the exact recipients and send times.

func loadExample(t *testing.T, file string) *Campaign {
	t.Helper()
	data, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(file, data)
	if err != nil {
		t.Fatal(err)
	}
	c.Version = 1
	return c
}

type useCase struct {
	t *testing.T
	*run
}

func newUseCase(t *testing.T, file string, now time.Time, profiles map[string]string) (*useCase, *Campaign) {
	c := loadExample(t, file)
	r := newRun(t, []*Campaign{c}, nil, now)
	for dev, tz := range profiles {
		r.s.SetProfile(c.App, dev, Profile{TimeZone: tz, Locale: "en-US"})
	}
	return &useCase{t: t, run: r}, c
}

func (u *useCase) want(sends ...string) {
	u.t.Helper()
	want := ""
	if len(sends) > 0 {
		want = strings.Join(sends, "\n") + "\n"
	}
	if got := u.sends(); got != want {
		u.t.Errorf("sends:\n%s\nwant:\n%s\ndecisions:\n%s", got, want, u.outcomes())
	}
}

// Onboarding gap: visited the login screen 3 days ago, not logged in: a
// push 2 hours after entering the segment, deferred out of quiet hours
// (21:30–09:00 local), once.
func TestUseCaseOnboardingGap(t *testing.T) {
	t0 := time.Date(2026, 5, 4, 14, 0, 0, 0, time.UTC)
	u, c := newUseCase(t, "campaign_onboarding_gap.yaml", t0, map[string]string{"ana": "Europe/Paris", "bo": "America/New_York"})
	seg := c.Who.Segments[0]
	u.change(c.App, seg, "ana", true, t0)                    // 16:00 Paris: sent at 18:00
	u.change(c.App, seg, "bo", true, t0.Add(9*time.Hour))    // 19:00 New York: +2h is 21:00; fine
	u.change(c.App, seg, "ana", false, t0.Add(24*time.Hour)) // logs in
	u.change(c.App, seg, "ana", true, t0.Add(48*time.Hour))  // enters again: once per device
	u.advance(t0.Add(5 * 24 * time.Hour))
	u.want(c.Name+" ana 2026-05-04T16:00:00Z", c.Name+" bo 2026-05-05T01:00:00Z")
}

// Stalled level: a bonus 30 minutes after stalling, never in 23:00–09:00
// local (deferred), at most once a week, control and variants.
func TestUseCaseStalledLevel(t *testing.T) {
	t0 := time.Date(2026, 9, 1, 21, 0, 0, 0, time.UTC)
	profiles := map[string]string{}
	for i := range 40 {
		profiles[fmt.Sprintf("p%02d", i)] = "Asia/Tokyo"
	}
	u, c := newUseCase(t, "campaign_stalled_level.yaml", t0, profiles)
	for dev := range profiles {
		if dev != "p00" { // p00 sent no level: no message for it (missing: skip)
			u.s.ApplyRecord(&tag.Record{Kind: tag.KindAppInfo, AppID: c.App, DeviceID: dev, Time: t0.Add(-time.Hour),
				AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(12)}, {Key: "player_name", Value: tag.String("Kim")}}}, 0)
		}
		u.change(c.App, c.Who.Segments[0], dev, true, t0) // 06:00 Tokyo: quiet until 09:00
	}
	u.advance(t0.Add(24 * time.Hour))
	control, skipped := 0, 0
	for _, d := range u.decs {
		switch d.Outcome {
		case OutcomeControl:
			control++
		case OutcomeSkipped:
			skipped++
			if d.DeviceID != "p00" || d.Reason != "no value for app_info.level" {
				t.Errorf("skipped %s: %s", d.DeviceID, d.Reason)
			}
		}
	}
	for _, d := range u.dels {
		want := map[string]string{"boosters": "Stuck on level 12?", "coins": "Kim, level 12 is waiting"}[d.Variant]
		if d.Message.Title != want {
			t.Errorf("%s (%s): title %q, want %q", d.DeviceID, d.Variant, d.Message.Title, want)
		}
		if got := d.Time.Format(time.RFC3339); got != "2026-09-02T00:00:00Z" {
			t.Errorf("%s sent at %s, want 09:00 Tokyo (2026-09-02T00:00:00Z)", d.DeviceID, got)
		}
		if d.Variant != "boosters" && d.Variant != "coins" {
			t.Errorf("%s in variant %q", d.DeviceID, d.Variant)
		}
	}
	if control+skipped+len(u.dels) != 40 || len(u.dels) == 0 || skipped > 1 {
		t.Errorf("%d control + %d skipped + %d sent of 40", control, skipped, len(u.dels))
	}
}

// Lapsed players: a Christmas push at 18:00 on the 24th in each player's
// time zone (New York for those who sent none), not to VIPs.
func TestUseCaseLapsedPlayers(t *testing.T) {
	t0 := time.Date(2026, 12, 20, 0, 0, 0, 0, time.UTC)
	u, c := newUseCase(t, "campaign_lapsed_player.yaml", t0, map[string]string{"tokyo": "Asia/Tokyo", "paris": "Europe/Paris", "vip": "Europe/Paris"})
	for _, dev := range []string{"tokyo", "paris", "nowhere", "vip"} {
		u.change(c.App, c.Who.Segments[0], dev, true, t0)
	}
	u.change(c.App, c.Who.Exclude[0], "vip", true, t0)
	u.advance(t0.Add(10 * 24 * time.Hour))
	u.want(c.Name+" tokyo 2026-12-24T09:00:00Z", c.Name+" paris 2026-12-24T17:00:00Z", c.Name+" nowhere 2026-12-24T23:00:00Z")
}

// M-commerce: 15 minutes after browsing shoes, half of the audience (a
// sample), during the promotion week only, dropped in quiet hours.
func TestUseCaseCategoryPromo(t *testing.T) {
	t0 := time.Date(2026, 6, 2, 10, 0, 0, 0, time.UTC)
	profiles := map[string]string{}
	for i := range 200 {
		profiles[fmt.Sprintf("s%03d", i)] = "Europe/London"
	}
	u, c := newUseCase(t, "campaign_category_promo.yaml", t0, profiles)
	// Entries in time order, as the changes topic carries them: most at
	// 11:00 London, some at 22:50 (+15 min is in the quiet hours: dropped),
	// some after the promotion's end.
	when := func(i int) time.Time {
		switch {
		case i%10 == 9:
			return time.Date(2026, 6, 9, 10, 0, 0, 0, time.UTC)
		case i%4 == 3:
			return time.Date(2026, 6, 2, 21, 50, 0, 0, time.UTC)
		}
		return t0
	}
	for _, at := range []time.Time{t0, time.Date(2026, 6, 2, 21, 50, 0, 0, time.UTC), time.Date(2026, 6, 9, 10, 0, 0, 0, time.UTC)} {
		for i := range 200 {
			if when(i).Equal(at) {
				// The change caused by a visit of the shoes category: its
				// extras fill {{trigger.name}}.
				u.decs, u.dels = u.s.Apply(SegmentChange{App: c.App, Segment: c.Who.Segments[0], DeviceID: fmt.Sprintf("s%03d", i), Enter: true,
					Time: at, ID: fmt.Sprintf("%032x", i), Extras: []tag.Extra{{Key: "name", Value: tag.String("shoes")}}}, at, u.decs, u.dels)
			}
		}
	}
	u.advance(time.Date(2026, 6, 20, 0, 0, 0, 0, time.UTC))
	quiet, ended, sampled := 0, 0, 0
	for _, d := range u.decs {
		switch d.Outcome {
		case OutcomeQuiet:
			quiet++
		case OutcomeEnded:
			ended++
		case OutcomeNoSample:
			sampled++
		}
	}
	for _, d := range u.dels {
		if got := d.Time.Format(time.RFC3339); got != "2026-06-02T10:15:00Z" {
			t.Errorf("%s sent at %s, want 10:15 UTC", d.DeviceID, got)
		}
		if d.Message.Title != "20% off shoes this week" || d.Message.DeepLink != "shop://category/shoes" || !strings.HasPrefix(d.Message.Body, "Hi, the styles") {
			t.Errorf("%s: message %+v", d.DeviceID, d.Message)
		}
	}
	if len(u.dels)+quiet+ended+sampled != 200 || quiet == 0 || ended == 0 || sampled < 60 || sampled > 140 {
		t.Errorf("sent %d, quiet %d, ended %d, outside the sample %d (of 200)", len(u.dels), quiet, ended, sampled)
	}
}

// News: a digest every weekday at 07:30 in the reader's time zone, to the
// readers of politics of the moment.
func TestUseCaseTopicDigest(t *testing.T) {
	t0 := time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC) // a Thursday
	u, c := newUseCase(t, "campaign_topic_alert.yaml", t0, map[string]string{"ana": "Europe/Paris"})
	u.change(c.App, c.Who.Segments[0], "ana", true, t0)
	u.advance(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	u.change(c.App, c.Who.Segments[0], "ana", false, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	u.advance(time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC))
	u.want(c.Name+" ana 2026-03-06T06:30:00Z", c.Name+" ana 2026-03-09T06:30:00Z", c.Name+" ana 2026-03-10T06:30:00Z")
}

// Rate the app: 1% of the ambassadors (those who shared the most), once.
func TestUseCaseRateApp(t *testing.T) {
	t0 := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	u, c := newUseCase(t, "campaign_rate_app.yaml", t0, nil)
	const n = 20_000
	for i := range n {
		u.change(c.App, c.Who.Segments[0], fmt.Sprintf("amb%05d", i), true, t0)
	}
	u.advance(t0.Add(time.Hour))
	share := float64(len(u.dels)) / n
	if share >= 0.0125 || share <= 0.0075 {
		t.Errorf("%d of %d ambassadors asked (%.2f%%), want about 1%%", len(u.dels), n, 100*share)
	}
	for _, d := range u.dels {
		if d.Channel != ChannelInApp {
			t.Errorf("%s: channel %s, want in_app", d.DeviceID, d.Channel)
		}
	}
}
