package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/triggers"
)

// The demo's report: the timeline of the readers the story follows (and
// a line a day about the others), then the analytics, computed from what
// the run produced as `engage api` computes them from ClickHouse
// (docs/analytics.md).

type demoReport struct {
	sim      *demoSim
	byDevice map[string][]*tag.Record
	opened   map[string]time.Time // delivery id → first open (or click)
	dels     map[string]*triggers.Delivery
	deferred map[string]triggers.Decision // campaign/device/occurrence → its deferred decision
}

func newDemoReport(sim *demoSim) *demoReport {
	r := &demoReport{sim: sim, byDevice: map[string][]*tag.Record{}, opened: map[string]time.Time{},
		dels: map[string]*triggers.Delivery{}, deferred: map[string]triggers.Decision{}}
	for i := range sim.records {
		rec := &sim.records[i]
		r.byDevice[rec.DeviceID] = append(r.byDevice[rec.DeviceID], rec)
		if rec.Kind == tag.KindPush && rec.Push != nil && (rec.Push.Action == tag.PushOpened || rec.Push.Action == tag.PushClicked) {
			if t, ok := r.opened[rec.Push.DeliveryID]; !ok || rec.Time.Before(t) {
				r.opened[rec.Push.DeliveryID] = rec.Time
			}
		}
	}
	for i := range sim.deliveries {
		d := &sim.deliveries[i]
		r.dels[d.Campaign+"/"+d.DeviceID+"/"+d.Occurrence] = d
	}
	for _, d := range sim.decisions {
		if d.Outcome == triggers.OutcomeDeferred {
			r.deferred[d.Campaign+"/"+d.DeviceID+"/"+d.Occurrence] = d
		}
	}
	return r
}

type demoLine struct {
	at   time.Time
	dev  *demoDevice
	text string
}

// goalAfter returns the device's first goal event of the campaign within
// its window after t.
func (r *demoReport) goalAfter(c *triggers.Campaign, device string, t time.Time) (time.Time, bool) {
	if c.Goal == nil {
		return time.Time{}, false
	}
	for _, rec := range r.byDevice[device] {
		if rec.Kind == tag.KindEvent && rec.Name == c.Goal.Event && !rec.Time.Before(t) && !rec.Time.After(t.Add(c.Goal.Window)) {
			return rec.Time, true
		}
	}
	return time.Time{}, false
}

var goalWords = map[string]string{"subscribed": "subscribed", "logged_in": "logged in", "article_read": "read an article"}

var localeNames = map[string]string{"fr": "in French", "en": "in English"}

func (r *demoReport) timeline(w io.Writer) {
	sim := r.sim
	var lines []demoLine
	// How each followed reader starts.
	for _, d := range sim.pop.devices {
		if d.name == "" {
			continue
		}
		var first *tag.Record
		login, logged, articles := false, false, 0
		for _, rec := range r.byDevice[d.id] {
			if rec.Kind == tag.KindSessionStart {
				if first != nil {
					break
				}
				first = rec
			}
			switch {
			case first == nil:
			case rec.Kind == tag.KindActivityStart && rec.Name == "login":
				login = true
			case rec.Kind == tag.KindEvent && rec.Name == "logged_in":
				logged = true
			case rec.Kind == tag.KindEvent && rec.Name == "article_read":
				articles++
			}
		}
		if first == nil {
			continue
		}
		phone := map[string]string{"ios": "iPhone", "android": "Android phone"}[d.platform]
		what := fmt.Sprintf("first opens the app (%s, %s)", phone, d.locale)
		switch {
		case logged:
			what += ", logs in"
		case login:
			what += ", sees the login screen but does not log in"
		}
		if articles == 0 {
			what += ", reads nothing"
		}
		lines = append(lines, demoLine{first.Time, d, what})
	}
	for _, c := range sim.entries {
		d := sim.pop.byID[c.DeviceID]
		switch c.Segment {
		case "stuck":
			lines = append(lines, demoLine{c.Time, d, "3 sessions in 3 days, no article read: enters segment stuck"})
		case "sport_fans":
			lines = append(lines, demoLine{c.Time, d, "a third sport article this week: enters segment sport_fans"})
		}
	}
	// Subscriptions no push of the campaigns preceded.
	for _, d := range sim.pop.devices {
		if d.name == "" {
			continue
		}
		for _, rec := range r.byDevice[d.id] {
			if rec.Kind != tag.KindEvent || rec.Name != "subscribed" || r.attributed(d.id, rec.Time) {
				continue
			}
			lines = append(lines, demoLine{rec.Time, d, "subscribes, with no push in the 3 days before"})
		}
	}
	// The decisions about them.
	for _, dec := range sim.decisions {
		d := sim.pop.byID[dec.DeviceID]
		if d == nil || d.name == "" {
			continue
		}
		c := sim.cfg.byName[dec.Campaign]
		switch dec.Outcome {
		case triggers.OutcomeSent:
			lines = append(lines, demoLine{dec.Time, d, r.sentText(c, dec)})
			if del := r.dels[dec.Campaign+"/"+dec.DeviceID+"/"+dec.Occurrence]; del != nil {
				if at, ok := sim.shownAt[del.ID]; ok {
					lines = append(lines, demoLine{at, d, r.shownText(del)})
				}
			}
		case triggers.OutcomeDeferred:
		case triggers.OutcomeControl:
			text := fmt.Sprintf("held back from %s: its control group (never sent, to measure what it changes)", dec.Campaign)
			if why := demoWhy[dec.Campaign]; why != "" {
				text = fmt.Sprintf("held back from %s (%s): its control group", dec.Campaign, strings.TrimPrefix(why, ": "))
			}
			lines = append(lines, demoLine{dec.Time, d, text})
		case triggers.OutcomeCapped:
			lines = append(lines, demoLine{dec.Time, d, fmt.Sprintf("%s not sent: capped (%s)%s", dec.Campaign, capWords(dec.Reason), r.lastPush(d.id, dec.Time))})
		case triggers.OutcomeOutranked:
			lines = append(lines, demoLine{dec.Time, d, fmt.Sprintf("%s not sent: outranked by %s, due at the same time (priority %d over %d)",
				dec.Campaign, r.winner(d.id, dec.Time), r.winnerPriority(d.id, dec.Time), c.Limit.Priority)})
		default:
			lines = append(lines, demoLine{dec.Time, d, fmt.Sprintf("%s not sent (%s): %s", dec.Campaign, dec.Outcome, dec.Reason)})
		}
	}
	// By the local day each line happened on, then in time order.
	localDay := func(l demoLine) string { return l.at.In(l.dev.loc).Format("2006-01-02") }
	sort.SliceStable(lines, func(i, j int) bool {
		if a, b := localDay(lines[i]), localDay(lines[j]); a != b {
			return a < b
		}
		return lines[i].at.Before(lines[j].at)
	})

	// The others, a line a day: what the campaigns did to them.
	type tally struct{ sent, opened, control, capped, converted int }
	others := map[string]*tally{}
	day := func(t time.Time, d *demoDevice) string { return t.In(d.loc).Format("2006-01-02") }
	get := func(k string) *tally {
		if others[k] == nil {
			others[k] = &tally{}
		}
		return others[k]
	}
	for _, dec := range sim.decisions {
		d := sim.pop.byID[dec.DeviceID]
		if d == nil || d.name != "" {
			continue
		}
		t := get(day(dec.Time, d))
		switch dec.Outcome {
		case triggers.OutcomeSent:
			t.sent++
			if del := r.dels[dec.Campaign+"/"+dec.DeviceID+"/"+dec.Occurrence]; del != nil {
				if _, ok := r.opened[del.ID]; ok {
					t.opened++
				}
			}
			if _, ok := r.goalAfter(sim.cfg.byName[dec.Campaign], dec.DeviceID, dec.Time); ok {
				t.converted++
			}
		case triggers.OutcomeControl:
			t.control++
		case triggers.OutcomeCapped, triggers.OutcomeOutranked:
			t.capped++
		}
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "What happened, day by day (each reader's local day and time; the day's line sums up the others):")
	li := 0
	for k := range demoDays {
		date := demoStart.AddDate(0, 0, k)
		var todays []demoLine
		for li < len(lines) && localDay(lines[li]) <= date.Format("2006-01-02") {
			todays = append(todays, lines[li])
			li++
		}
		t := others[date.Format("2006-01-02")]
		if len(todays) == 0 && t == nil {
			continue
		}
		head := date.Format("Mon Jan 2")
		if t != nil {
			var parts []string
			if t.sent > 0 {
				parts = append(parts, fmt.Sprintf("%d sent (%d opened, %d converted)", t.sent, t.opened, t.converted))
			}
			if t.control > 0 {
				parts = append(parts, fmt.Sprintf("%d held back as control", t.control))
			}
			if t.capped > 0 {
				parts = append(parts, fmt.Sprintf("%d over the cap", t.capped))
			}
			if len(parts) > 0 {
				head = fmt.Sprintf("%-10s  others: %s", head, strings.Join(parts, ", "))
			}
		}
		fmt.Fprintln(w, head)
		for _, l := range todays {
			fmt.Fprintf(w, "  %s %-8s %-4s %s\n", l.at.In(l.dev.loc).Format("15:04"), l.dev.city, l.dev.name, l.text)
		}
	}
}

// sentText is the line of a send: the message, how it went, what the
// reader did.
func (r *demoReport) sentText(c *triggers.Campaign, dec triggers.Decision) string {
	key := dec.Campaign + "/" + dec.DeviceID + "/" + dec.Occurrence
	del := r.dels[key]
	if del == nil {
		return dec.Campaign + " sent"
	}
	kind := "push"
	if del.Channel == triggers.ChannelInApp {
		kind = "in-app"
	}
	title := del.Message.Title
	if title == "" {
		title = del.Message.Body
	}
	var notes []string
	notes = append(notes, dec.Campaign+demoWhy[dec.Campaign])
	if n := localeNames[del.Locale]; n != "" && del.Locale != c.What.DefaultLocale {
		notes = append(notes, n)
	}
	if def, ok := r.deferred[key]; ok && strings.Contains(def.Reason, "quiet hours") && c.Limit.Quiet != nil {
		notes = append(notes, "after quiet hours")
	}
	text := fmt.Sprintf("← %s %q (%s)", kind, title, strings.Join(notes, ", "))
	res := r.sim.results[del.ID]
	switch {
	case res.outcome == "unreachable":
		return text + " ✗ not delivered: no working push token"
	case res.outcome == "failed" && strings.Contains(res.reason, "UNREGISTERED"):
		return text + " ✗ FCM: token dead (app uninstalled), so forgotten"
	case res.outcome == "failed":
		return text + " ✗ " + res.reason
	}
	loc := r.sim.pop.byID[dec.DeviceID].loc
	if del.Channel == triggers.ChannelInApp {
		return text + ": waits in the app's inbox"
	}
	if at, ok := r.opened[del.ID]; ok {
		g, converted := r.goalAfter(c, dec.DeviceID, dec.Time)
		text += " → opened"
		if at.Sub(del.Time) > time.Hour && !converted {
			text += " " + at.In(loc).Format("15:04")
		}
		if converted {
			text += fmt.Sprintf(", %s %s", goalWords[c.Goal.Event], g.In(loc).Format("15:04"))
		}
		return text
	}
	return text + " → not opened"
}

// shownText is the line of an in-app message the app showed.
func (r *demoReport) shownText(del *triggers.Delivery) string {
	c := r.sim.cfg.byName[del.Campaign]
	loc := r.sim.pop.byID[del.DeviceID].loc
	text := fmt.Sprintf("opens the app, which asks GET /v1/inapp: %s shows", del.Campaign)
	if _, ok := r.opened[del.ID]; ok {
		text += " → tapped"
		if g, ok := r.goalAfter(c, del.DeviceID, del.Time); ok {
			text += fmt.Sprintf(", %s %s", goalWords[c.Goal.Event], g.In(loc).Format("15:04"))
		}
	} else {
		text += " → dismissed"
	}
	return text
}

// demoWhy says, after a campaign's name, why a device was in its audience
// when that is not in its name.
var demoWhy = map[string]string{"we_miss_you": ": 7 days unseen", "onboarding_gap": ": never logged in"}

// attributed reports whether a push the device was sent went out in the
// 3 days before t.
func (r *demoReport) attributed(device string, t time.Time) bool {
	for _, d := range r.sim.deliveries {
		if d.DeviceID == device && !d.Time.After(t) && t.Sub(d.Time) <= 3*24*time.Hour && r.sim.results[d.ID].outcome == "accepted" {
			return true
		}
	}
	return false
}

func capWords(reason string) string {
	return strings.NewReplacer("cap of ", "", " push per day reached", " push a day", " push per week reached", " pushes a week").Replace(reason)
}

// lastPush says which send filled the cap.
func (r *demoReport) lastPush(device string, t time.Time) string {
	var last *triggers.Delivery
	for i := range r.sim.deliveries {
		d := &r.sim.deliveries[i]
		if d.DeviceID == device && d.Channel == triggers.ChannelPush && !d.Time.After(t) {
			last = d
		}
	}
	if last == nil {
		return ""
	}
	h := t.Sub(last.Time)
	return fmt.Sprintf(": %s went %dh%02d earlier", last.Campaign, int(h.Hours()), int(h.Minutes())%60)
}

func (r *demoReport) winner(device string, t time.Time) string {
	for _, d := range r.sim.deliveries {
		if d.DeviceID == device && d.Time.Equal(t) {
			return d.Campaign
		}
	}
	return "another campaign"
}

func (r *demoReport) winnerPriority(device string, t time.Time) int {
	if c := r.sim.cfg.byName[r.winner(device, t)]; c != nil {
		return c.Limit.Priority
	}
	return 0
}

// analytics prints the figures that matter, computed from the run as the
// analytics API computes them from ClickHouse.
func (r *demoReport) analytics(w io.Writer) {
	sim := r.sim
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The analytics (computed from this run; in production `engage api` answers them from ClickHouse: docs/analytics.md):")
	// Active devices per UTC day, a week a line.
	active := map[string]map[string]bool{}
	firstSession := map[string]time.Time{}
	for i := range sim.records {
		rec := &sim.records[i]
		k := rec.Time.UTC().Format("2006-01-02")
		if active[k] == nil {
			active[k] = map[string]bool{}
		}
		active[k][rec.DeviceID] = true
		if rec.Kind == tag.KindSessionStart {
			if t, ok := firstSession[rec.DeviceID]; !ok || rec.Time.Before(t) {
				firstSession[rec.DeviceID] = rec.Time
			}
		}
	}
	fmt.Fprintln(w, "  active devices per day (GET /v1/apps/news/active):")
	for wk := 0; wk < demoDays; wk += 7 {
		var parts []string
		for k := wk; k < wk+7 && k < demoDays; k++ {
			parts = append(parts, fmt.Sprintf("%3d", len(active[demoStart.AddDate(0, 0, k).Format("2006-01-02")])))
		}
		fmt.Fprintf(w, "    week of %-6s  %s   (Mon … Sun)\n", demoStart.AddDate(0, 0, wk).Format("Jan 2"), strings.Join(parts, " "))
	}
	// Retention of the cohorts whose D7 is inside the run.
	var size, d1, d7 int
	last := demoStart.AddDate(0, 0, demoDays-8)
	for dev, t := range firstSession {
		c := t.UTC().Truncate(24 * time.Hour)
		if c.After(last) {
			continue
		}
		size++
		if active[c.AddDate(0, 0, 1).Format("2006-01-02")][dev] {
			d1++
		}
		if active[c.AddDate(0, 0, 7).Format("2006-01-02")][dev] {
			d7++
		}
	}
	if size > 0 {
		fmt.Fprintf(w, "  retention (GET /v1/apps/news/retention), devices first seen %s–%s (%d): D1 %d%%, D7 %d%%\n",
			demoStart.Format("Jan 2"), last.Format("Jan 2"), size, pct(d1, size), pct(d7, size))
	}
	// Each campaign against its control group.
	fmt.Fprintln(w, "  campaigns (GET /v1/apps/news/campaigns/{name}/stats?goal=…):")
	fmt.Fprintf(w, "    %-15s %8s %7s %6s %5s %6s  %-25s %-17s %s\n", "campaign", "audience", "control", "capped", "sent", "opened", "converted (goal)", "control converted", "lift [95% interval]")
	for _, c := range sim.cfg.campaigns {
		st := r.campaignStats(c)
		opened := fmt.Sprintf("%d", st.opened)
		if c.What.Channel == triggers.ChannelInApp {
			opened += "*"
		}
		conv, ctl, lift := "—", "—", "—"
		if st.sentN > 0 {
			conv = fmt.Sprintf("%d/%d %d%% %s", st.sentConv, st.sentN, pct(st.sentConv, st.sentN), goalWords[c.Goal.Event])
			if len(conv) > 25 {
				conv = fmt.Sprintf("%d/%d %d%%", st.sentConv, st.sentN, pct(st.sentConv, st.sentN))
			}
		}
		if st.ctlN > 0 {
			ctl = fmt.Sprintf("%d/%d %d%%", st.ctlConv, st.ctlN, pct(st.ctlConv, st.ctlN))
		}
		if st.sentN > 0 && st.ctlN > 0 {
			p1, p2 := float64(st.sentConv)/float64(st.sentN), float64(st.ctlConv)/float64(st.ctlN)
			half := 1.959964 * math.Sqrt(p1*(1-p1)/float64(st.sentN)+p2*(1-p2)/float64(st.ctlN))
			lift = fmt.Sprintf("%s pts [%s, %s]", points(p1-p2), points(p1-p2-half), points(p1-p2+half))
		}
		fmt.Fprintf(w, "    %-15s %8d %7d %6d %5d %6s  %-25s %-17s %s\n", c.Name, st.audience, st.ctlN, st.capped, st.sent, opened, conv, ctl, lift)
	}
	fmt.Fprintln(w, "    (converted: did the campaign's goal within its window after the send; control: the same after being held back;")
	fmt.Fprintln(w, "    lift: the difference, with its 95% interval: small groups give wide ones. * in-app: tapped.)")
}

type demoCampStats struct {
	audience, sent, opened int
	capped                 int // capped or outranked
	sentN, sentConv        int
	ctlN, ctlConv          int
}

// campaignStats counts as GET …/campaigns/{c}/stats does: the audience is
// every device the scheduler decided about, a conversion is a goal event
// within the window after the device's last decision of its group before
// it.
func (r *demoReport) campaignStats(c *triggers.Campaign) demoCampStats {
	var st demoCampStats
	audience := map[string]bool{}
	groups := map[triggers.Outcome]map[string][]time.Time{triggers.OutcomeSent: {}, triggers.OutcomeControl: {}}
	for _, d := range r.sim.decisions {
		if d.Campaign != c.Name {
			continue
		}
		audience[d.DeviceID] = true
		if d.Outcome == triggers.OutcomeCapped || d.Outcome == triggers.OutcomeOutranked {
			st.capped++
		}
		if g := groups[d.Outcome]; g != nil {
			g[d.DeviceID] = append(g[d.DeviceID], d.Time)
		}
		if d.Outcome == triggers.OutcomeSent {
			st.sent++
			if del := r.dels[d.Campaign+"/"+d.DeviceID+"/"+d.Occurrence]; del != nil && r.sim.results[del.ID].outcome == "accepted" {
				if _, ok := r.opened[del.ID]; ok {
					st.opened++
				}
			}
		}
	}
	st.audience = len(audience)
	converted := func(g map[string][]time.Time) (n, conv int) {
		for dev, times := range g {
			n++
			for _, rec := range r.byDevice[dev] {
				if c.Goal == nil || rec.Kind != tag.KindEvent || rec.Name != c.Goal.Event {
					continue
				}
				var lastDec time.Time
				for _, t := range times {
					if !t.After(rec.Time) {
						lastDec = t
					}
				}
				if !lastDec.IsZero() && rec.Time.Sub(lastDec) <= c.Goal.Window {
					conv++
					break
				}
			}
		}
		return n, conv
	}
	st.sentN, st.sentConv = converted(groups[triggers.OutcomeSent])
	st.ctlN, st.ctlConv = converted(groups[triggers.OutcomeControl])
	return st
}

func pct(a, b int) int {
	if b == 0 {
		return 0
	}
	return int(math.Round(100 * float64(a) / float64(b)))
}

// points writes a difference of rates in percentage points, signed ("+0",
// never "-0").
func points(v float64) string {
	return fmt.Sprintf("%+.0f", math.Round(100*v)+0)
}
