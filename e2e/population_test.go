package e2e_test

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/openengage/engage/pipeline/kafkabus"
)

// The simulated weeks: every event time lies on the slot grid between
// start and end.
var (
	start = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	end   = start.Add(20 * 24 * time.Hour)
)

const day = 24 * time.Hour

// fact is one thing a device did, as generated: the oracle reads these,
// the sender turns them into native records or Segment calls.
type fact struct {
	at      time.Time
	kind    string // device, session_start, activity_start, event, job, app_info
	name    string
	extras  map[string]any
	dur     time.Duration // jobs
	appInfo map[string]any
}

// device is a generated installation of one app.
type device struct {
	app, id  string
	persona  string
	segment  bool   // sends through Segment's Node SDK
	tz       string // IANA; "" sends none (the campaign's default applies)
	locale   string
	platform string // ios, android
	token    string // "" none
	provider string // apns, apns-sandbox, fcm
	dead     bool   // the provider declares the token dead
	facts    []fact
}

// gen builds devices with a seeded source; each record gets a slot of its
// own (a device never does two things at one instant, so that no order
// within an instant can matter), except the first session's device and
// app-info records, which share its slot.
type gen struct {
	rng     *rand.Rand
	devices []*device
}

var (
	zones   = []string{"Europe/Paris", "America/New_York", "Asia/Tokyo", "Asia/Kolkata", "Europe/London", ""}
	locales = []string{"en-US", "fr-FR", "en-GB", "de-DE", "fr-CA", "ja-JP"}
)

func (g *gen) newDevice(app, persona string, n int) *device {
	d := &device{app: app, id: fmt.Sprintf("%s-%s-%04d", app, persona, n), persona: persona, segment: app == "shop"}
	// The devices on Segment's SDK have a partition of their own (see
	// sender.run); the id takes a suffix until it lands where it must.
	for k := 0; (kafkabus.KeyPartition([]byte(app+"/"+d.id), partitions) == segmentPartition) != d.segment; k++ {
		d.id = fmt.Sprintf("%s-%s-%04d-%d", app, persona, n, k)
	}
	d.tz = zones[g.rng.IntN(len(zones))]
	d.locale = locales[g.rng.IntN(len(locales))]
	switch r := g.rng.IntN(20); {
	case r < 9:
		d.platform, d.provider, d.token = "ios", "apns", fmt.Sprintf("%064x", g.rng.Uint64())
	case r < 10:
		d.platform, d.provider, d.token = "ios", "apns-sandbox", fmt.Sprintf("%064x", g.rng.Uint64())
	case r < 18:
		d.platform, d.provider, d.token = "android", "fcm", fmt.Sprintf("fcm-%s-%016x", d.id, g.rng.Uint64())
	default:
		d.platform = []string{"ios", "android"}[g.rng.IntN(2)]
	}
	// Dead tokens only where no segment reads last_seen (a dead token
	// comes back as a push record of the device).
	d.dead = d.token != "" && app != "game" && g.rng.IntN(12) == 0
	g.devices = append(g.devices, d)
	return d
}

// slotAt is the first slot at or after t.
func slotAt(t time.Time) time.Time {
	s := t.Truncate(slot)
	if s.Before(t) {
		s = s.Add(slot)
	}
	return s
}

// cursor hands out a device's slots in order, never two records on one.
type cursor struct{ next time.Time }

func (c *cursor) at(t time.Time) time.Time {
	t = slotAt(t)
	if t.Before(c.next) {
		t = c.next
	}
	c.next = t.Add(slot)
	return t
}

func (d *device) add(f fact) {
	if f.at.Before(start) || !f.at.Before(end) {
		return
	}
	d.facts = append(d.facts, f)
}

// firstSession starts a device: the session, its device record and its
// first app-info, on one slot.
func (g *gen) firstSession(d *device, at time.Time, info map[string]any) {
	d.add(fact{at: at, kind: "device"})
	d.add(fact{at: at, kind: "session_start"})
	if len(info) > 0 {
		d.add(fact{at: at, kind: "app_info", appInfo: info})
	}
}

func (g *gen) chance(p float64) bool { return g.rng.Float64() < p }

// sessionTime is a random slot between 06:00 and 22:00 UTC of day n.
func (g *gen) sessionTime(n int) time.Time {
	return slotAt(start.Add(time.Duration(n)*day + 6*time.Hour + time.Duration(g.rng.IntN(16*60))*time.Minute))
}

var firstNames = []string{"Ana", "Bo", "Chloé", "Dev", "Emi", "Farid", "Gus", "Hana"}

// news: readers of a media app (natively).
func (g *gen) news(n int) {
	for i := range n {
		persona := []string{"reader", "reader", "casual", "casual", "newcomer"}[g.rng.IntN(5)]
		switch {
		case i%100 == 7:
			persona = "sharer"
		case i%13 == 5:
			persona = "stuck"
		}
		d := g.newDevice("news", persona, i)
		c := &cursor{}
		fsDay := g.rng.IntN(18)
		fs := c.at(g.sessionTime(fsDay))
		info := map[string]any{"logged_in": false, "favorite_topic": []string{"politics", "sport", "culture"}[g.rng.IntN(3)]}
		if g.chance(0.6) {
			info["first_name"] = firstNames[g.rng.IntN(len(firstNames))]
		}
		g.firstSession(d, fs, info)
		active := map[string]float64{"reader": 0.7, "casual": 0.3, "newcomer": 0.15, "sharer": 0.8, "stuck": 0.5}[persona]
		subscribeDay := -1
		if g.chance(0.1) {
			subscribeDay = fsDay + g.rng.IntN(12)
		}
		visitsLogin := g.chance(0.5)
		loginDay := -1
		if visitsLogin && g.chance(0.4) {
			loginDay = fsDay + g.rng.IntN(5)
		}
		premiumReader := g.chance(0.3)
		for dn := fsDay; dn < 20; dn++ {
			if dn > fsDay && !g.chance(active) {
				continue
			}
			t := fs
			if dn > fsDay {
				t = c.at(g.sessionTime(dn))
				d.add(fact{at: t, kind: "session_start"})
			}
			if persona == "stuck" && dn < fsDay+8 {
				for range 1 + g.rng.IntN(2) {
					d.add(fact{at: c.at(t), kind: "activity_start", name: []string{"home", "settings"}[g.rng.IntN(2)]})
				}
				continue
			}
			d.add(fact{at: c.at(t), kind: "activity_start", name: "home"})
			if dn == fsDay && visitsLogin {
				d.add(fact{at: c.at(t), kind: "activity_start", name: "login", extras: map[string]any{"section": "welcome"}})
			}
			if dn == loginDay {
				at := c.at(t)
				d.add(fact{at: at, kind: "event", name: "logged_in"})
				d.add(fact{at: c.at(at), kind: "app_info", appInfo: map[string]any{"logged_in": true}})
			}
			for range g.rng.IntN(5) {
				cat := []string{"sport", "politics", "culture"}[g.rng.IntN(3)]
				if info["favorite_topic"] == "sport" && g.chance(0.5) {
					cat = "sport"
				}
				d.add(fact{at: c.at(t), kind: "event", name: "article_read", extras: map[string]any{"category": cat, "words": float64(300 + g.rng.IntN(900)), "premium": premiumReader && g.chance(0.3)}})
			}
			if persona == "sharer" || g.chance(0.02) {
				d.add(fact{at: c.at(t), kind: "event", name: "shared", extras: map[string]any{"network": []string{"facebook", "twitter", "mail"}[g.rng.IntN(3)]}})
			}
			if persona == "sharer" && dn > fsDay+6 && g.chance(0.15) {
				d.add(fact{at: c.at(t), kind: "event", name: "rated", extras: map[string]any{"stars": 5.0}})
			}
			if dn == subscribeDay {
				d.add(fact{at: c.at(t), kind: "event", name: "subscribed", extras: map[string]any{"plan": "monthly"}})
			}
		}
	}
}

// game: players (natively): levels that go up, or do not.
func (g *gen) game(n int) {
	for i := range n {
		persona := []string{"player", "player", "stuck", "quitter"}[g.rng.IntN(4)]
		d := g.newDevice("game", persona, i)
		c := &cursor{}
		fsDay := g.rng.IntN(10)
		if persona == "quitter" {
			fsDay = g.rng.IntN(3)
		}
		fs := c.at(g.sessionTime(fsDay))
		level := 1.0
		g.firstSession(d, fs, map[string]any{"level": level})
		lastDay := 19
		if persona == "quitter" {
			lastDay = fsDay + g.rng.IntN(4)
		}
		for dn := fsDay; dn <= lastDay; dn++ {
			if dn > fsDay && !g.chance(0.6) {
				continue
			}
			t := fs
			if dn > fsDay {
				t = c.at(g.sessionTime(dn))
				d.add(fact{at: t, kind: "session_start"})
			}
			for range 1 + g.rng.IntN(3) {
				at := c.at(t)
				d.add(fact{at: at, kind: "event", name: "level_started", extras: map[string]any{"level": level}})
				dur := time.Duration(2+g.rng.IntN(15)) * time.Minute
				d.add(fact{at: c.at(at), kind: "job", name: "level_play", dur: dur, extras: map[string]any{"level": level}})
				if persona != "stuck" && g.chance(0.35) {
					d.add(fact{at: c.at(at), kind: "event", name: "level_completed", extras: map[string]any{"level": level, "stars": float64(1 + g.rng.IntN(3))}})
					level++
					d.add(fact{at: c.at(at), kind: "app_info", appInfo: map[string]any{"level": level}})
				}
			}
		}
	}
}

// shop: shoppers of an m-commerce app (commerce) and a retailer's
// browsers (retail), through Segment's SDK.
func (g *gen) shop(n int) {
	for i := range n {
		persona := []string{"commerce", "retail"}[i%2]
		d := g.newDevice("shop", persona, i)
		c := &cursor{}
		fsDay := g.rng.IntN(18)
		fs := c.at(g.sessionTime(fsDay))
		info := map[string]any{}
		if g.chance(0.5) {
			info["first_name"] = firstNames[g.rng.IntN(len(firstNames))]
		}
		g.firstSession(d, fs, info)
		lastCart := -100
		for dn := fsDay; dn < 20; dn++ {
			if dn > fsDay && !g.chance(0.35) {
				continue
			}
			t := fs
			if dn > fsDay {
				t = c.at(g.sessionTime(dn))
				d.add(fact{at: t, kind: "session_start"})
			}
			for range 1 + g.rng.IntN(3) {
				cat := []string{"shoes", "bags", "coats"}[g.rng.IntN(3)]
				if persona == "retail" && g.chance(0.3) {
					cat = "shoes"
				}
				d.add(fact{at: c.at(t), kind: "activity_start", name: "category", extras: map[string]any{"name": cat}})
			}
			// A cart at most every 9 days, so that a reminder's
			// re-entry rule (7 days) is never what decides.
			if persona == "commerce" && dn-lastCart >= 9 && g.chance(0.4) {
				lastCart = dn
				at := c.at(t)
				d.add(fact{at: at, kind: "event", name: "cart_add", extras: map[string]any{"sku": fmt.Sprintf("sku-%d", g.rng.IntN(50)), "category": "shoes", "price": 59.0}})
				if g.chance(0.5) {
					d.add(fact{at: c.at(at.Add(time.Duration(g.rng.IntN(30)) * time.Hour)), kind: "event", name: "purchase", extras: map[string]any{"total": 59.0, "items": 1.0}})
				}
			}
		}
	}
}

// bank: new customers of a bank's app (natively): most open their account
// in the first session, some later, some never.
func (g *gen) bank(n int) {
	for i := range n {
		d := g.newDevice("bank", "customer", i)
		c := &cursor{}
		fsDay := g.rng.IntN(19)
		fs := c.at(g.sessionTime(fsDay))
		g.firstSession(d, fs, map[string]any{"customer": false})
		d.add(fact{at: c.at(fs), kind: "activity_start", name: "signup"})
		switch r := g.rng.IntN(10); {
		case r < 6:
			d.add(fact{at: c.at(fs.Add(time.Duration(g.rng.IntN(3)) * time.Hour)), kind: "event", name: "account_created", extras: map[string]any{"type": "current"}})
		case r < 8:
			t := c.at(g.sessionTime(min(fsDay+1+g.rng.IntN(3), 19)))
			d.add(fact{at: t, kind: "session_start"})
			d.add(fact{at: c.at(t), kind: "event", name: "account_created", extras: map[string]any{"type": "savings"}})
		}
	}
}

// population generates every app's devices.
func population(seed uint64, scale int) []*device {
	g := &gen{rng: rand.New(rand.NewPCG(seed, seed+1))}
	g.news(6 * scale)
	g.game(3 * scale)
	g.shop(2 * scale)
	g.bank(scale)
	return g.devices
}

// ops turns the devices' facts into what they send: native records, or
// Segment calls for the devices on Segment's SDK.
func ops(devs []*device) []op {
	var out []op
	for _, d := range devs {
		for i, f := range d.facts {
			mid := fmt.Sprintf("%s-%d", d.id, i)
			if d.segment {
				out = append(out, op{at: f.at, app: d.app, seg: d.segmentCall(f, mid)})
				continue
			}
			r := map[string]any{"type": f.kind, "deviceId": d.id, "messageId": mid, "time": f.at.Format(time.RFC3339)}
			switch f.kind {
			case "device":
				dev := map[string]any{"platform": d.platform, "appVersion": "3.2.0"}
				if d.tz != "" {
					dev["timeZone"] = d.tz
				}
				if d.locale != "" {
					dev["locale"] = d.locale
				}
				if d.token != "" {
					dev["pushToken"], dev["pushProvider"] = d.token, d.provider
				}
				r["device"] = dev
			case "session_start":
				r["session"] = fmt.Sprintf("%s-s%d", d.id, i)
			case "activity_start", "event":
				r["name"] = f.name
			case "job":
				r["name"], r["durationMs"] = f.name, f.dur.Milliseconds()
			case "app_info":
				r["appInfo"] = f.appInfo
			}
			if len(f.extras) > 0 {
				r["extras"] = f.extras
			}
			out = append(out, op{at: f.at, app: d.app, native: r})
		}
	}
	return out
}

// segmentCall is a fact as Segment's SDK sends it: the device in the
// context of every call (its token, time zone and locale), a session as
// the lifecycle event Application Opened, a screen as screen, app-info as
// identify traits.
func (d *device) segmentCall(f fact, mid string) *segCall {
	dev := map[string]any{"id": d.id, "type": d.platform}
	if d.token != "" {
		dev["token"] = d.token
	}
	ctx := map[string]any{"device": dev, "os": map[string]any{"name": map[string]string{"ios": "iOS", "android": "Android"}[d.platform]},
		"app": map[string]any{"version": "3.2.0"}}
	if d.tz != "" {
		ctx["timezone"] = d.tz
	}
	if d.locale != "" {
		ctx["locale"] = d.locale
	}
	msg := map[string]any{"anonymousId": d.id, "messageId": mid, "timestamp": f.at.Format(time.RFC3339), "context": ctx}
	switch f.kind {
	case "device", "app_info":
		traits := map[string]any{}
		for k, v := range f.appInfo {
			traits[k] = v
		}
		msg["traits"] = traits
		return &segCall{Op: "identify", Msg: msg}
	case "session_start":
		msg["event"] = "Application Opened"
		return &segCall{Op: "track", Msg: msg}
	case "activity_start":
		msg["name"], msg["properties"] = f.name, f.extras
		return &segCall{Op: "screen", Msg: msg}
	}
	msg["event"], msg["properties"] = f.name, f.extras
	return &segCall{Op: "track", Msg: msg}
}
