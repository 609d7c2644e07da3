package main

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// The demo's population: a few named readers whose days tell the story,
// and a crowd of others drawn from a seeded random generator, so that
// every run sends the same records and decides the same.

var (
	demoStart = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC) // a Monday
	demoDays  = 21
)

// demoDevice is a simulated device and how its user behaves.
type demoDevice struct {
	id, name   string // name: a persona's, "" for the crowd
	firstName  string // what the app knows (app-info), may be empty
	city, zone string
	locale     string
	platform   string // ios, android
	provider   tag.PushProvider
	token      string
	loc        *time.Location
	n          int // records made, for message ids
	// How the user answers pushes: open and convert probabilities, or a
	// persona's script by campaign.
	openP, convertP float64
	script          map[string]demoReaction
	shown           map[string]bool // in-app messages already shown
}

// demoReaction is how a persona answers a campaign.
type demoReaction struct {
	open, convert        bool
	openAfter, convAfter time.Duration
}

// demoItem is a record due at its time.
type demoItem struct {
	at  time.Time
	rec tag.Record
}

type demoPop struct {
	devices []*demoDevice
	byID    map[string]*demoDevice
	queue   []demoItem
	seed    uint64
}

func (p *demoPop) add(d *demoDevice, r tag.Record) {
	d.n++
	r.DeviceID = d.id
	r.MessageID = fmt.Sprintf("%s-%05d", d.id, d.n)
	p.queue = append(p.queue, demoItem{at: r.Time, rec: r})
}

// take removes and returns the records due before t, in time order.
func (p *demoPop) take(t time.Time) []tag.Record {
	sort.SliceStable(p.queue, func(i, j int) bool { return p.queue[i].at.Before(p.queue[j].at) })
	i := sort.Search(len(p.queue), func(i int) bool { return !p.queue[i].at.Before(t) })
	out := make([]tag.Record, i)
	for k := range i {
		out[k] = p.queue[k].rec
	}
	p.queue = append(p.queue[:0], p.queue[i:]...)
	return out
}

var demoCategories = []string{"politics", "culture", "tech", "sport"}

// session adds a session at local time at: the home screen, the articles
// of the categories given, and what more the caller adds.
func (p *demoPop) session(d *demoDevice, at time.Time, categories []string, more func(t time.Time) time.Time) time.Time {
	sid := fmt.Sprintf("%s-s%d", d.id, d.n)
	start := at
	p.add(d, tag.Record{Kind: tag.KindSessionStart, Time: at, SessionID: sid})
	at = at.Add(4 * time.Second)
	p.add(d, tag.Record{Kind: tag.KindActivityStart, Time: at, SessionID: sid, Name: "home"})
	if more != nil {
		at = more(at)
	}
	for _, c := range categories {
		at = at.Add(40 * time.Second)
		ex := []tag.Extra{{Key: "category", Value: tag.String(c)}}
		p.add(d, tag.Record{Kind: tag.KindActivityStart, Time: at, SessionID: sid, Name: "article", Extras: ex})
		at = at.Add(90 * time.Second)
		p.add(d, tag.Record{Kind: tag.KindEvent, Time: at, SessionID: sid, Name: "article_read", Activity: "article", Extras: ex})
	}
	at = at.Add(30 * time.Second)
	p.add(d, tag.Record{Kind: tag.KindSessionEnd, Time: at, SessionID: sid, Duration: at.Sub(start)})
	return at
}

// install adds the device record and what the app knows of its user.
func (p *demoPop) install(d *demoDevice, at time.Time) {
	model := map[string]string{"ios": "iPhone15,2", "android": "Pixel 8"}[d.platform]
	p.add(d, tag.Record{Kind: tag.KindDevice, Time: at, Device: &tag.DeviceInfo{Platform: d.platform, AppVersion: "3.2.0", Model: model,
		Locale: d.locale, TimeZone: d.zone, PushToken: d.token, PushProvider: d.provider}})
	if d.firstName != "" {
		p.add(d, tag.Record{Kind: tag.KindAppInfo, Time: at, AppInfo: []tag.Extra{{Key: "first_name", Value: tag.String(d.firstName)}}})
	}
}

func loginScreen(p *demoPop, d *demoDevice, logIn bool) func(time.Time) time.Time {
	return func(at time.Time) time.Time {
		at = at.Add(20 * time.Second)
		p.add(d, tag.Record{Kind: tag.KindActivityStart, Time: at, Name: "login"})
		if logIn {
			at = at.Add(25 * time.Second)
			p.add(d, tag.Record{Kind: tag.KindJob, Time: at, Name: "login", Duration: 1800 * time.Millisecond})
			p.add(d, tag.Record{Kind: tag.KindEvent, Time: at, Name: "logged_in", Activity: "login"})
			p.add(d, tag.Record{Kind: tag.KindAppInfo, Time: at, AppInfo: []tag.Extra{{Key: "logged_in", Value: tag.Bool(true)}}})
		}
		return at
	}
}

func subscribe(p *demoPop, d *demoDevice) func(time.Time) time.Time {
	return func(at time.Time) time.Time {
		at = at.Add(2 * time.Minute)
		p.add(d, tag.Record{Kind: tag.KindEvent, Time: at, Name: "subscribed", Extras: []tag.Extra{{Key: "plan", Value: tag.String("monthly")}}})
		return at
	}
}

func newDemoDevice(id, name, first, city, zone, locale, platform string, i int) *demoDevice {
	loc, err := time.LoadLocation(zone)
	if err != nil {
		panic(err)
	}
	d := &demoDevice{id: id, name: name, firstName: first, city: city, zone: zone, locale: locale, platform: platform, loc: loc, shown: map[string]bool{}}
	if platform == "ios" {
		d.provider, d.token = tag.ProviderAPNs, fmt.Sprintf("%064x", 0xa000+i)
	} else {
		d.provider, d.token = tag.ProviderFCM, fmt.Sprintf("fcm-%08x:APA91b%040x", 0xf000+i, i)
	}
	return d
}

// local is day (0 = demoStart's) at h:m in the device's time zone.
func (d *demoDevice) local(day, h, m int) time.Time {
	y, mo, dd := demoStart.AddDate(0, 0, day).Date()
	return time.Date(y, mo, dd, h, m, 0, 0, d.loc).UTC()
}

// The personas. Their ids are chosen for where the campaigns' seeded
// assignment puts them: Bo in the welcome series' control group, the
// others not in any control group they meet.
func demoPersonas(p *demoPop) {
	ana := newDemoDevice("ana-iphone", "Ana", "Ana", "Paris", "Europe/Paris", "fr-FR", "ios", 1)
	ana.script = map[string]demoReaction{"welcome_d2": {open: true, convert: true, openAfter: 7 * time.Minute, convAfter: 15 * time.Minute}}
	bo := newDemoDevice("bo-pixel", "Bo", "Bo", "New York", "America/New_York", "en-US", "android", 2)
	bo.script = map[string]demoReaction{}
	cy := newDemoDevice("cy-phone", "Cy", "", "Tokyo", "Asia/Tokyo", "en-JP", "ios", 3)
	cy.script = map[string]demoReaction{}
	dan := newDemoDevice("dan-pixel", "Dan", "Dan", "London", "Europe/London", "en-GB", "android", 4)
	dan.script = map[string]demoReaction{"we_miss_you": {open: true, convert: true, openAfter: 3*time.Hour + 20*time.Minute, convAfter: 2 * time.Minute}}
	eli := newDemoDevice("eli-pixel", "Eli", "Eli", "Sydney", "Australia/Sydney", "en-AU", "android", 5)
	eli.script = map[string]demoReaction{}
	gus := newDemoDevice("gus-iphone", "Gus", "Gus", "Paris", "Europe/Paris", "fr-FR", "ios", 6)
	gus.script = map[string]demoReaction{"tutorial": {open: true, convert: true}}
	hana := newDemoDevice("hana-phone", "Hana", "Hana", "Tokyo", "Asia/Tokyo", "en-JP", "ios", 7)
	hana.script = map[string]demoReaction{"welcome_d2": {open: true, openAfter: 25 * time.Minute}, "welcome_d5": {open: true, openAfter: 12 * time.Minute}}
	fay := newDemoDevice("fay-iphone", "Fay", "Fay", "Lyon", "Europe/Paris", "fr-FR", "ios", 8)
	fay.script = map[string]demoReaction{"onboarding_gap": {open: true, convert: true, openAfter: 40 * time.Minute, convAfter: time.Minute}}
	for _, d := range []*demoDevice{ana, bo, cy, dan, eli, fay, gus, hana} {
		p.devices = append(p.devices, d)
	}

	// Ana, Paris: logs in at once, reads culture; the welcome push (in
	// French) brings her to subscribe.
	p.install(ana, ana.local(0, 9, 12))
	p.session(ana, ana.local(0, 9, 12), []string{"culture", "culture"}, loginScreen(p, ana, true))
	p.session(ana, ana.local(1, 19, 30), []string{"politics"}, nil)
	for _, day := range []int{4, 6, 9, 12, 15, 18} {
		p.session(ana, ana.local(day, 8, 5), []string{"culture", "politics"}, nil)
	}
	// Bo, New York: in the welcome series' control group; subscribes on
	// his own on day 6.
	p.install(bo, bo.local(0, 8, 30))
	p.session(bo, bo.local(0, 8, 30), []string{"tech"}, loginScreen(p, bo, true))
	p.session(bo, bo.local(2, 12, 10), []string{"tech", "politics"}, nil)
	p.session(bo, bo.local(6, 21, 0), []string{"tech"}, subscribe(p, bo))
	p.session(bo, bo.local(10, 7, 45), []string{"tech"}, nil)
	// Cy, Tokyo: saw the login screen, did not log in; does not open the
	// welcome push, and the onboarding push the next morning hits the cap.
	p.install(cy, cy.local(1, 7, 30))
	p.session(cy, cy.local(1, 7, 30), []string{"tech"}, loginScreen(p, cy, false))
	p.session(cy, cy.local(2, 22, 15), nil, nil)
	p.session(cy, cy.local(8, 12, 0), []string{"tech"}, nil)
	// Dan, London: four days, then silence; a week later, at night, he is
	// lapsed: the push waits for the end of the quiet hours.
	p.install(dan, dan.local(0, 20, 0))
	p.session(dan, dan.local(0, 20, 0), []string{"sport"}, loginScreen(p, dan, true))
	p.session(dan, dan.local(1, 20, 30), []string{"politics"}, nil)
	p.session(dan, dan.local(3, 23, 30), []string{"sport"}, nil)
	// Eli, Sydney: the app was uninstalled; FCM says the token is dead.
	p.install(eli, eli.local(1, 18, 0))
	p.session(eli, eli.local(1, 18, 0), []string{"culture"}, loginScreen(p, eli, true))
	p.session(eli, eli.local(2, 19, 0), []string{"culture"}, nil)
	// Fay, Lyon: saw the login screen, did not log in; the onboarding push
	// of day 3 brings her to log in.
	p.install(fay, fay.local(4, 9, 30))
	p.session(fay, fay.local(4, 9, 30), []string{"culture"}, loginScreen(p, fay, false))
	p.session(fay, fay.local(5, 18, 0), []string{"culture", "politics"}, nil)
	for _, day := range []int{10, 14} {
		p.session(fay, fay.local(day, 8, 15), []string{"culture"}, nil)
	}
	// Gus, Paris: opens the app again and again, reads nothing: stuck.
	p.install(gus, gus.local(2, 8, 0))
	p.session(gus, gus.local(2, 8, 0), nil, loginScreen(p, gus, true))
	p.session(gus, gus.local(2, 13, 0), nil, nil)
	p.session(gus, gus.local(3, 8, 10), nil, nil)
	p.session(gus, gus.local(3, 19, 0), nil, nil) // the tutorial shows here
	p.session(gus, gus.local(5, 19, 30), []string{"culture"}, nil)
	// Hana, Tokyo: a sport fan by day 10; her sport pick and the day-5
	// welcome push fall due at the same 10:00: one push a day.
	p.install(hana, hana.local(6, 8, 0))
	p.session(hana, hana.local(6, 8, 0), []string{"politics"}, loginScreen(p, hana, true))
	p.session(hana, hana.local(8, 20, 0), []string{"politics"}, nil)
	p.session(hana, hana.local(10, 14, 0), []string{"sport", "sport", "sport"}, nil)
	p.session(hana, hana.local(13, 21, 0), []string{"sport"}, nil)
}

var demoZones = []struct{ city, zone, locale string }{
	{"Paris", "Europe/Paris", "fr-FR"}, {"London", "Europe/London", "en-GB"}, {"New York", "America/New_York", "en-US"},
	{"Tokyo", "Asia/Tokyo", "en-JP"}, {"Sydney", "Australia/Sydney", "en-AU"}, {"Lyon", "Europe/Paris", "fr-FR"},
}

var demoFirstNames = []string{"Lea", "Noah", "Mia", "Omar", "Ines", "Yuki", "Sam", "Zoe", "Tom", "Lina", "Max", "Ava"}

// demoCrowd adds n readers drawn from the seed: first sessions over the
// first two weeks, daily use that fades, some who stop early, some who
// log in, a few who subscribe on their own.
func demoCrowd(p *demoPop, n int) {
	rng := rand.New(rand.NewPCG(p.seed, 1))
	for i := range n {
		z := demoZones[rng.IntN(len(demoZones))]
		platform := "ios"
		if rng.IntN(100) < 45 {
			platform = "android"
		}
		first := ""
		if rng.IntN(100) < 60 {
			first = demoFirstNames[rng.IntN(len(demoFirstNames))]
		}
		d := newDemoDevice(fmt.Sprintf("reader-%02d", i+1), "", first, z.city, z.zone, z.locale, platform, 100+i)
		d.openP, d.convertP = 0.45+0.2*rng.Float64(), 0.25+0.2*rng.Float64()
		p.devices = append(p.devices, d)
		day0 := rng.IntN(13)
		t0 := d.local(day0, 7+rng.IntN(15), rng.IntN(60))
		p.install(d, t0)
		visit, logged := rng.IntN(100) < 70, false
		if visit {
			logged = rng.IntN(100) < 50
		}
		p.session(d, t0, pick(rng, 1+rng.IntN(2)), func(at time.Time) time.Time {
			if visit {
				return loginScreen(p, d, logged)(at)
			}
			return at
		})
		stopAfter := demoDays
		if rng.IntN(100) < 30 {
			stopAfter = day0 + 2 + rng.IntN(4)
		}
		for day := day0 + 1; day < min(stopAfter, demoDays); day++ {
			if rng.Float64() > 0.15+0.6*expDecay(day-day0) {
				continue
			}
			for range 1 + rng.IntN(2) {
				at := d.local(day, 7+rng.IntN(16), rng.IntN(60))
				var more func(time.Time) time.Time
				switch {
				case rng.IntN(100) < 2:
					more = subscribe(p, d)
				case !logged && rng.IntN(100) < 10:
					logged = true
					more = loginScreen(p, d, true)
				}
				p.session(d, at, pick(rng, rng.IntN(4)), more)
			}
		}
	}
}

func expDecay(days int) float64 {
	v := 1.0
	for range days {
		v *= 0.85
	}
	return v
}

func pick(rng *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = demoCategories[rng.IntN(len(demoCategories))]
	}
	return out
}

// reactionRNG is the generator of one device's answer to one campaign's
// message sent at a time: the same whatever the order the deliveries are
// made in, and whatever else the population does.
func (p *demoPop) reactionRNG(device, campaign string, at time.Time) *rand.Rand {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s/%d", device, campaign, at.Unix())
	return rand.New(rand.NewPCG(p.seed, h.Sum64()))
}

// reactToPush adds what the user does with a push that reached the
// phone: opens it (a push record naming the delivery, then a session from
// its deep link) and perhaps does what the campaign hoped.
func (p *demoPop) reactToPush(d *demoDevice, campaign, goal, delivery string, at time.Time) {
	r, ok := d.script[campaign]
	if d.script == nil || (!ok && d.name == "") {
		rng := p.reactionRNG(d.id, campaign, at)
		r = demoReaction{open: rng.Float64() < d.openP, openAfter: time.Duration(2+rng.IntN(90)) * time.Minute, convAfter: time.Duration(3+rng.IntN(20)) * time.Minute}
		r.convert = r.open && rng.Float64() < d.convertP
		if campaign == "sport_picks" {
			r.convert = r.open && rng.Float64() < 0.1
		}
	}
	if !r.open {
		return
	}
	if r.openAfter == 0 {
		r.openAfter = 5 * time.Minute
	}
	if r.convAfter == 0 {
		r.convAfter = 3 * time.Minute
	}
	t := at.Add(r.openAfter)
	p.add(d, tag.Record{Kind: tag.KindPush, Time: t, Push: &tag.Push{Action: tag.PushOpened, DeliveryID: delivery, CampaignID: campaign}})
	cats := []string{demoCategories[len(campaign)%len(demoCategories)]}
	p.session(d, t.Add(time.Second), cats, func(at time.Time) time.Time {
		if !r.convert {
			return at
		}
		at = at.Add(r.convAfter)
		switch goal {
		case "logged_in":
			return loginScreen(p, d, true)(at)
		case "subscribed":
			return subscribe(p, d)(at)
		}
		return at // article_read: the session's article
	})
}

// showInApp adds what the user does with an in-app message the app
// fetched at the start of a session: shown, then clicked (or dismissed).
func (p *demoPop) showInApp(d *demoDevice, campaign, delivery string, at time.Time) {
	if d.shown[delivery] {
		return
	}
	d.shown[delivery] = true
	p.add(d, tag.Record{Kind: tag.KindPush, Time: at.Add(10 * time.Second), Push: &tag.Push{Action: tag.PushShown, DeliveryID: delivery, CampaignID: campaign}})
	r, ok := d.script[campaign]
	if !ok {
		rng := p.reactionRNG(d.id, campaign, at)
		r.open = rng.Float64() < d.openP
	}
	if !r.open {
		p.add(d, tag.Record{Kind: tag.KindPush, Time: at.Add(20 * time.Second), Push: &tag.Push{Action: tag.PushDismissed, DeliveryID: delivery, CampaignID: campaign}})
		return
	}
	p.add(d, tag.Record{Kind: tag.KindPush, Time: at.Add(25 * time.Second), Push: &tag.Push{Action: tag.PushClicked, DeliveryID: delivery, CampaignID: campaign}})
	ex := []tag.Extra{{Key: "category", Value: tag.String("culture")}}
	p.add(d, tag.Record{Kind: tag.KindActivityStart, Time: at.Add(40 * time.Second), Name: "article", Extras: ex})
	p.add(d, tag.Record{Kind: tag.KindEvent, Time: at.Add(2 * time.Minute), Name: "article_read", Activity: "article", Extras: ex})
}
