package analytics_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/openengage/engage/sinks/analytics"
	"github.com/openengage/engage/sinks/clickhouse"
)

// decisionSet is a seeded, random set of the scheduler's decisions, as
// stored copies in the order they were produced (Offset), and the
// reference answers of the decisions endpoints computed from it in Go.
type decisionSet struct {
	copies    []clickhouse.DecisionRow          // every copy written, in production order
	kept      map[string]clickhouse.DecisionRow // per id, the copy of the highest offset
	devices   map[string][]string               // app → devices asked about (some without decisions)
	campaigns []string
	straddle  int // decisions whose copies lie on two UTC days
}

var decisionCampaigns = []string{"welcome_d2", "stalled.level-3", "lapsed", "A9"}

// Device ids that must be read as literals, and one that looks like a path.
var oddDevices = []string{`kim's "phone" \ 1`, "a/b", "..", "é-ü 📱", "x%2Fy"}

// genDecisionSet builds the decisions of devicesPerApp devices of each app
// from day0 on. Each device's campaigns have one to four occurrences, each
// a plausible run of decisions (deferred then sent or not, rate deferrals
// under their own occurrence, outcomes that end at once, sends still
// waiting), some at the same second. Then copies: with sameOffset, a tenth
// of the copies again at their own offset (Kafka redelivered them);
// otherwise again at a later offset (a producer retry); and, either way,
// some decisions decided again after a restart: the same id at a later
// offset, its time moved up to three hours either way (across midnight for
// some) and its reason changed.
func genDecisionSet(seed uint64, devicesPerApp int, sameOffset bool) *decisionSet {
	rng := rand.New(rand.NewPCG(seed, 42))
	s := &decisionSet{kept: map[string]clickhouse.DecisionRow{}, devices: map[string][]string{}, campaigns: decisionCampaigns}
	var made []clickhouse.DecisionRow
	for _, app := range []string{newsApp, oddApp, otherApp} {
		devs := slices.Clone(oddDevices)
		for i := range devicesPerApp - len(devs) {
			devs = append(devs, fmt.Sprintf("dev-%03d", i))
		}
		s.devices[app] = append(devs, "never-decided")
		for di, dev := range devs {
			for ci, camp := range decisionCampaigns {
				if rng.IntN(10) < 3 {
					continue // not in this campaign's audience
				}
				t := day0.Add(time.Duration(rng.IntN(30*86400)) * time.Second)
				for k := range 1 + rng.IntN(4) {
					occ := fmt.Sprintf("entry:%02d%02d%d", di, ci, k)
					if ci == 2 {
						occ = "day:" + t.Format(layout)
					}
					made = append(made, occurrenceRun(rng, app, camp, dev, occ, t)...)
					t = t.Add(time.Duration(1+rng.IntN(5*86400)) * time.Second)
				}
			}
		}
	}
	// Produced in time order (a device's decisions are on one partition,
	// in the order they were made; ties stay in the order of the run).
	slices.SortStableFunc(made, func(a, b clickhouse.DecisionRow) int { return a.Time.Compare(b.Time) })
	var offset int64
	add := func(r clickhouse.DecisionRow, newOffset bool) {
		if newOffset {
			r.Offset = offset
			offset++
		}
		s.copies = append(s.copies, r)
		if k, ok := s.kept[r.ID]; !ok || r.Offset >= k.Offset {
			s.kept[r.ID] = r
		}
	}
	for _, r := range made {
		r.Partition = int32(len(r.DeviceID) % 4)
		add(r, true)
	}
	n := len(s.copies)
	for i := range n {
		if rng.IntN(10) == 0 {
			add(s.copies[i], !sameOffset)
		}
		if rng.IntN(25) == 0 {
			r := s.copies[i]
			first := r.Time
			r.Time = r.Time.Add(time.Duration(rng.IntN(6*3600)-3*3600) * time.Second)
			if !r.SendAt.IsZero() {
				r.SendAt = r.SendAt.Add(r.Time.Sub(first))
			}
			r.Reason += " (decided again)"
			add(r, true)
			if dayOf(r.Time) != dayOf(first) {
				s.straddle++
			}
		}
	}
	return s
}

// occurrenceRun returns the decisions of one occurrence from t on.
func occurrenceRun(rng *rand.Rand, app, camp, dev, occ string, t time.Time) []clickhouse.DecisionRow {
	variant := []string{"", "", "bonus", "plain"}[rng.IntN(4)]
	var out []clickhouse.DecisionRow
	dec := func(occ, outcome, reason string, at, sendAt time.Time) {
		out = append(out, clickhouse.DecisionRow{ID: fmt.Sprintf("%x", rng.Uint64()) + fmt.Sprintf("%016x", len(out)), App: app, Campaign: camp,
			Version: int64(1 + rng.IntN(3)), DeviceID: dev, Occurrence: occ, Outcome: outcome, Reason: reason, Time: at, SendAt: sendAt, Variant: variant})
	}
	due := t.Add(time.Duration(60+rng.IntN(20*3600)) * time.Second)
	waits := "waits until " + due.Format(time.RFC3339) + " (quiet hours 22:00-09:00 in Asia/Tokyo)"
	switch rng.IntN(12) {
	case 0, 1:
		dec(occ, "sent", "sent", t, time.Time{})
	case 2, 3:
		dec(occ, "deferred", waits, t, due)
		dec(occ, "sent", "sent", due, time.Time{})
	case 4:
		dec(occ, "deferred", waits, t, due)
		dec(occ, []string{"left", "expired", "quiet", "capped", "outranked", "repeat", "skipped"}[rng.IntN(7)], "it did not go out", due, time.Time{})
	case 5:
		dec(occ, "deferred", waits, t, due)
		dec(occ, "left", "left the audience before the send", t, time.Time{}) // the same second
	case 6:
		slot := t.Add(time.Duration(1+rng.IntN(30)) * time.Second)
		dec(occ+"/rate@"+fmt.Sprint(slot.Unix()), "deferred", "the campaign's rate of 100/s: waits until "+slot.Format(time.RFC3339), t, slot)
		dec(occ, "sent", "sent", slot, time.Time{})
	case 7:
		dec(occ, "deferred", waits, t, due) // still waiting
	case 8:
		dec(occ, "control", "held out as control group", t, time.Time{})
	case 9:
		dec(occ, "not_sampled", "outside the campaign's sample", t, time.Time{})
	case 10:
		dec(occ, "capped", "cap of 2 push per day reached", t, time.Time{})
	default:
		dec(occ, "deferred", waits, t, due)
		dec(occ, "ended", "the campaign changed (version 2)", due.Add(-time.Minute), time.Time{})
	}
	return out
}

// keptOf returns the kept decisions of a device for a campaign in the
// order the API gives: time, offset, id.
func (s *decisionSet) keptOf(app, campaign, device string) []clickhouse.DecisionRow {
	var out []clickhouse.DecisionRow
	for _, r := range s.kept {
		if r.App == app && r.Campaign == campaign && r.DeviceID == device {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b clickhouse.DecisionRow) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Offset, b.Offset), strings.Compare(a.ID, b.ID))
	})
	return out
}

// device is the reference answer of …/devices/{device}/decisions.
func (s *decisionSet) device(app, campaign, device string) analytics.DeviceDecisions {
	res := analytics.DeviceDecisions{App: app, Campaign: campaign, DeviceID: device, Occurrences: []analytics.Occurrence{}, Decisions: []analytics.Decision{}}
	rows := s.keptOf(app, campaign, device)
	for _, r := range rows {
		d := analytics.Decision{ID: r.ID, Time: r.Time, Outcome: r.Outcome, Reason: r.Reason, Occurrence: r.Occurrence, Version: r.Version, Variant: r.Variant}
		if !r.SendAt.IsZero() {
			at := r.SendAt
			d.SendAt = &at
		}
		res.Decisions = append(res.Decisions, d)
	}
	// Occurrences in the order of their first decision, each with its
	// last: walk backwards for the last, forwards for the order.
	last := map[string]int{}
	count := map[string]int{}
	for i := len(res.Decisions) - 1; i >= 0; i-- {
		occ := res.Decisions[i].Occurrence
		if j := strings.Index(occ, "/rate@"); j >= 0 {
			occ = occ[:j]
		}
		if _, ok := last[occ]; !ok {
			last[occ] = i
		}
		count[occ]++
	}
	seen := map[string]bool{}
	for _, d := range res.Decisions {
		occ, _, _ := strings.Cut(d.Occurrence, "/rate@")
		if seen[occ] {
			continue
		}
		seen[occ] = true
		l := res.Decisions[last[occ]]
		res.Occurrences = append(res.Occurrences, analytics.Occurrence{Occurrence: occ, Decisions: count[occ], Outcome: l.Outcome, Reason: l.Reason,
			Time: l.Time, Variant: l.Variant, SendAt: l.SendAt})
	}
	var sentTimes []time.Time
	var notSent []analytics.Occurrence
	for _, o := range res.Occurrences {
		if o.Outcome == "sent" {
			sentTimes = append(sentTimes, o.Time)
		} else {
			notSent = append(notSent, o)
		}
	}
	res.Sent = len(sentTimes)
	n := len(res.Occurrences)
	rfc := func(t time.Time) string { return t.Format(time.RFC3339) }
	var latest analytics.Occurrence // the not-sent occurrence whose end is latest (the later one in order on a tie)
	for _, o := range notSent {
		if !o.Time.Before(latest.Time) {
			latest = o
		}
	}
	why := latest.Outcome + " at " + rfc(latest.Time) + ": " + latest.Reason
	switch {
	case n == 0:
		res.Summary = "no decisions for this device in this campaign"
	case len(notSent) == 0:
		res.Summary = "sent at " + rfc(slices.MaxFunc(sentTimes, time.Time.Compare))
		if n > 1 {
			res.Summary = fmt.Sprintf("sent %d times, last at %s", n, rfc(slices.MaxFunc(sentTimes, time.Time.Compare)))
		}
	case len(sentTimes) > 0:
		res.Summary = fmt.Sprintf("sent %d of %d times, last at %s; latest not sent: %s", len(sentTimes), n, rfc(slices.MaxFunc(sentTimes, time.Time.Compare)), why)
	default:
		res.Summary = "not sent: " + why
		if latest.Outcome == "deferred" {
			res.Summary = "not sent yet: " + why
		}
		if n > 1 {
			res.Summary += fmt.Sprintf(" (none of %d occurrences was sent)", n)
		}
	}
	return res
}

// counts is the reference answer of campaigns/{campaign}/decisions: each
// decision once, on the UTC day of its kept copy.
func (s *decisionSet) counts(app, campaign string, from, to time.Time) analytics.CampaignDecisions {
	res := analytics.CampaignDecisions{Range: analytics.Range{App: app, From: from.Format(layout), To: to.Format(layout)}, Campaign: campaign,
		Outcomes: map[string]uint64{}, Days: []analytics.DecisionDay{}}
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		res.Days = append(res.Days, analytics.DecisionDay{Day: d.Format(layout), Outcomes: map[string]uint64{}})
	}
	for _, r := range s.kept {
		d := dayOf(r.Time)
		if r.App != app || r.Campaign != campaign || !within(d, from, to) {
			continue
		}
		day := &res.Days[int(d.Sub(from)/(24*time.Hour))]
		day.Decisions++
		day.Outcomes[r.Outcome]++
		res.Decisions++
		res.Outcomes[r.Outcome]++
	}
	return res
}
