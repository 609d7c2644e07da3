package analytics_test

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks/analytics"
	"github.com/openengage/engage/sinks/clickhouse"
)

// statsSet is a seeded campaign history: the scheduler's decisions (sent,
// control, deferrals, holdouts of other kinds), the dispatcher's results
// and its decisions about them, the devices' push records and goal
// events, each as stored copies in production order (Offset), and the
// reference answers of the stats endpoint computed from it in Go.
type statsSet struct {
	decisions []clickhouse.DecisionRow // every copy, in production order
	results   []clickhouse.ResultRow   // every copy, in production order
	tags      []tag.Record             // every record, duplicates (the same message id again) included

	keptDec map[string]clickhouse.DecisionRow // per id, the copy of the highest offset
	keptRes map[string]clickhouse.ResultRow   // per delivery, the copy of the highest offset
	events  map[string]tag.Record             // per app/device/message id, each record once

	straddle int // sends, control decisions and results written again on another day
}

// Names of the stats dataset: statsCampaigns have decisions, goalEvent is
// the conversion asked about, otherEvent an event that is not.
var (
	statsCampaigns = []string{"spring", "A9", "lapsed"}
	statsVariants  = map[string][]string{"spring": {"bonus", "plain"}, "A9": {""}, "lapsed": {"", "x"}}
	failReasons    = []string{"the push token is dead: BadDeviceToken", "refused by apns: PayloadTooLarge", "gave up after 8 tries: 503 ServiceUnavailable"}
)

const (
	goalEvent  = "purchase"
	otherEvent = "view"
)

// Offsets of goal events from an exposure: at it, inside and at the edge
// of the 1 h, 24 h and 3 d windows, one second past each, and before it.
var goalOffsets = []time.Duration{0, 30 * time.Minute, time.Hour, time.Hour + time.Second, 5 * time.Hour, 24*time.Hour - time.Second, 24 * time.Hour,
	24*time.Hour + time.Second, 2 * 24 * time.Hour, 3 * 24 * time.Hour, 3*24*time.Hour + time.Second, 5 * 24 * time.Hour, -2 * time.Hour}

// genStats builds the history of devicesPerApp devices of each app from
// day0 on, over about three weeks. With sameOffset, copies of decisions and
// results are redeliveries at their own offset; otherwise producer retries
// at a later offset. Either way some decisions and results are written
// again later with another time (a restart), some across midnight.
func genStats(seed uint64, devicesPerApp int, sameOffset bool) *statsSet {
	rng := rand.New(rand.NewPCG(seed, 77))
	s := &statsSet{keptDec: map[string]clickhouse.DecisionRow{}, keptRes: map[string]clickhouse.ResultRow{}, events: map[string]tag.Record{}}
	var decs []clickhouse.DecisionRow
	var ress []clickhouse.ResultRow
	msg := 0
	record := func(r tag.Record) {
		msg++
		if r.MessageID == "" {
			r.MessageID = fmt.Sprintf("m%06d", msg)
		}
		s.tags = append(s.tags, r)
		s.events[r.AppID+"/"+r.DeviceID+"/"+r.MessageID] = r
		if rng.IntN(10) == 0 { // the same record again
			s.tags = append(s.tags, r)
		}
	}
	push := func(app, dev, delivery, campaign string, action tag.PushAction, at time.Time) {
		record(tag.Record{Kind: tag.KindPush, AppID: app, DeviceID: dev, Time: at, Push: &tag.Push{Action: action, DeliveryID: delivery, CampaignID: campaign}})
	}
	for _, app := range []string{newsApp, oddApp, otherApp} {
		devs := slices.Clone(oddDevices)
		for i := range devicesPerApp - len(devs) {
			devs = append(devs, fmt.Sprintf("dev-%03d", i))
		}
		for di, dev := range devs {
			var exposures []time.Time
			for ci, camp := range statsCampaigns {
				if rng.IntN(10) < 2 {
					continue // not in this campaign's audience
				}
				variant := statsVariants[camp][rng.IntN(len(statsVariants[camp]))]
				control := rng.IntN(4) == 0
				t := day0.Add(time.Duration(rng.IntN(10*86400)) * time.Second)
				for k := range 1 + rng.IntN(3) {
					occ := fmt.Sprintf("entry:%02d%02d%d", di, ci, k)
					dec := func(outcome string, at time.Time) {
						decs = append(decs, clickhouse.DecisionRow{ID: fmt.Sprintf("%016x%04d", rng.Uint64(), len(decs)), App: app, Campaign: camp, Version: 1,
							DeviceID: dev, Occurrence: occ, Outcome: outcome, Reason: outcome + " because", Time: at, Variant: variant})
					}
					sentAt := time.Time{}
					switch r := rng.IntN(20); {
					case control:
						dec("control", t)
						exposures = append(exposures, t)
					case r < 2:
						dec("not_sampled", t)
					case r < 4:
						dec("deferred", t)
						dec("capped", t.Add(3*time.Hour))
					case r < 8:
						dec("deferred", t)
						sentAt = t.Add(time.Duration(60+rng.IntN(6*3600)) * time.Second)
					default:
						sentAt = t
					}
					if !sentAt.IsZero() {
						dec("sent", sentAt)
						exposures = append(exposures, sentAt)
						delivery := fmt.Sprintf("del-%s-%s-%d", camp, occ, len(ress))
						res := clickhouse.ResultRow{ID: "res-" + delivery, DeliveryID: delivery, App: app, Campaign: camp, Version: 1, Variant: variant, DeviceID: dev,
							Channel: "push", Provider: "apns", Attempts: 1, Time: sentAt.Add(time.Duration(rng.IntN(3*3600)) * time.Second)}
						switch r := rng.IntN(20); {
						case r < 13:
							res.Outcome, res.ProviderID = "accepted", fmt.Sprintf("%x", rng.Uint64())
						case r < 16:
							res.Outcome, res.Reason = "failed", failReasons[rng.IntN(len(failReasons))]
						case r < 17:
							res.Outcome, res.Reason, res.Provider = "unreachable", "the device sent no push token", ""
						case r < 18:
							res.Outcome, res.Reason = "expired", "expired at … before it could be sent"
						default:
							res.Outcome, res.Reason = "unknown", "tried before a restart, and the provider's answer was never read: not sent again"
						}
						ress = append(ress, res)
						// The dispatcher's decision about it.
						decs = append(decs, clickhouse.DecisionRow{ID: "dsp-" + delivery, App: app, Campaign: camp, Version: 1, DeviceID: dev, Occurrence: occ,
							Outcome: res.Outcome, Reason: res.Reason, Time: res.Time, Variant: variant})
						// What the device says about it.
						at := res.Time.Add(time.Minute)
						switch res.Outcome {
						case "accepted":
							if rng.IntN(10) < 7 {
								push(app, dev, delivery, camp, tag.PushReceived, at)
							}
							if rng.IntN(10) < 4 {
								opened := at.Add(time.Duration(rng.IntN(2*86400)) * time.Second)
								push(app, dev, delivery, camp, tag.PushOpened, opened)
								if rng.IntN(10) == 0 {
									push(app, dev, delivery, "", tag.PushOpened, opened.Add(time.Hour)) // opened again
								}
								if rng.IntN(2) == 0 {
									push(app, dev, delivery, camp, tag.PushClicked, opened.Add(time.Second))
								}
							} else if rng.IntN(5) == 0 {
								push(app, dev, delivery, camp, tag.PushDismissed, at.Add(time.Hour))
							}
							if rng.IntN(20) == 0 { // another device naming this delivery: not counted
								push(app, "intruder", delivery, camp, tag.PushOpened, at)
							}
						case "unknown":
							if rng.IntN(2) == 0 { // not accepted: not counted
								push(app, dev, delivery, camp, tag.PushOpened, at)
							}
						}
					}
					t = t.Add(time.Duration(1+rng.IntN(4*86400)) * time.Second)
				}
			}
			// Goal events around the device's exposures, other events.
			for _, x := range exposures {
				for range rng.IntN(3) {
					at := x.Add(goalOffsets[rng.IntN(len(goalOffsets))])
					record(tag.Record{Kind: tag.KindEvent, AppID: app, DeviceID: dev, Name: goalEvent, Time: at})
					if rng.IntN(4) == 0 {
						record(tag.Record{Kind: tag.KindEvent, AppID: app, DeviceID: dev, Name: otherEvent, Time: at.Add(time.Minute)})
					}
				}
			}
			if rng.IntN(5) == 0 { // a goal event with no exposure near it, or of a device never exposed
				record(tag.Record{Kind: tag.KindEvent, AppID: app, DeviceID: dev, Name: goalEvent, Time: day0.Add(time.Duration(rng.IntN(20*86400)) * time.Second)})
			}
		}
	}
	// Produced in time order (a device's messages are on one partition, in
	// order; ties keep their order).
	slices.SortStableFunc(decs, func(a, b clickhouse.DecisionRow) int { return a.Time.Compare(b.Time) })
	slices.SortStableFunc(ress, func(a, b clickhouse.ResultRow) int { return a.Time.Compare(b.Time) })
	var offset int64
	addDec := func(r clickhouse.DecisionRow, newOffset bool) {
		if newOffset {
			r.Offset = offset
			offset++
		}
		r.Partition = int32(len(r.DeviceID) % 4)
		s.decisions = append(s.decisions, r)
		if k, ok := s.keptDec[r.ID]; !ok || r.Offset >= k.Offset {
			s.keptDec[r.ID] = r
		}
	}
	addRes := func(r clickhouse.ResultRow, newOffset bool) {
		if newOffset {
			r.Offset = offset
			offset++
		}
		r.Partition = int32(len(r.DeviceID) % 4)
		s.results = append(s.results, r)
		if k, ok := s.keptRes[r.DeliveryID]; !ok || r.Offset >= k.Offset {
			s.keptRes[r.DeliveryID] = r
		}
	}
	for _, r := range decs {
		addDec(r, true)
	}
	for _, r := range ress {
		addRes(r, true)
	}
	for i := range len(decs) {
		if rng.IntN(10) == 0 {
			addDec(s.decisions[i], !sameOffset)
		}
		if rng.IntN(20) == 0 { // decided again after a restart: the kept copy's time and day count
			r := s.decisions[i]
			r.Time = r.Time.Add(time.Duration(rng.IntN(6*3600)-3*3600) * time.Second)
			r.Reason += " (decided again)"
			addDec(r, true)
			if !dayOf(r.Time).Equal(dayOf(s.decisions[i].Time)) && (r.Outcome == "sent" || r.Outcome == "control") {
				s.straddle++
			}
		}
	}
	for i := range len(ress) {
		if rng.IntN(10) == 0 {
			addRes(s.results[i], !sameOffset)
		}
		if rng.IntN(15) == 0 { // written again after a restart, later: some the next day
			r := s.results[i]
			first := r.Time
			r.Time = r.Time.Add(time.Duration(rng.IntN(3*3600)) * time.Second)
			if rng.IntN(3) == 0 {
				r.Time = dayOf(first).Add(24*time.Hour + time.Duration(rng.IntN(3600))*time.Second)
			}
			addRes(r, true)
			if !dayOf(r.Time).Equal(dayOf(first)) {
				s.straddle++
			}
		}
	}
	return s
}

// dispatcherOnly are the outcomes of the dispatcher's decisions that put no
// device in the audience.
var dispatcherOnly = map[string]bool{"accepted": true, "failed": true, "unreachable": true, "unknown": true}

// refCell is a cell of the reference: a day ("" for the range) and a
// variant ("*" for all).
type refCell struct{ day, variant string }

// refCells returns the four cells a row of day d and variant v counts in.
func refCells(d time.Time, v string) []refCell {
	ds := d.Format(layout)
	return []refCell{{ds, v}, {ds, "*"}, {"", v}, {"", "*"}}
}

// refStats accumulates one cell of the reference.
type refStats struct {
	audience, sent, control map[string]bool
	sends, controls         uint64
	results, failed         map[string]uint64
	actions                 map[tag.PushAction]uint64
	exposed, converted      [2]map[string]bool // sent, control: devices
}

func newRefStats() *refStats {
	r := &refStats{audience: map[string]bool{}, results: map[string]uint64{}, failed: map[string]uint64{}, actions: map[tag.PushAction]uint64{}}
	for g := range 2 {
		r.exposed[g], r.converted[g] = map[string]bool{}, map[string]bool{}
	}
	return r
}

// stats is the reference answer of campaigns/{campaign}/stats, from the
// definitions in docs/analytics.md. goal "" asks for no conversions.
func (s *statsSet) stats(app, campaign string, from, to time.Time, goal string, window time.Duration) analytics.CampaignStats {
	cells := map[refCell]*refStats{}
	at := func(c refCell) *refStats {
		if cells[c] == nil {
			cells[c] = newRefStats()
		}
		return cells[c]
	}
	variants := map[string]bool{}
	// Decisions: audience, sends, control; exposures of each group.
	exposures := [2]map[string][]clickhouse.DecisionRow{{}, {}} // group → device → its decisions of that group, any day
	for _, d := range s.keptDec {
		if d.App != app || d.Campaign != campaign {
			continue
		}
		g := map[string]int{"sent": 0, "control": 1}
		if gi, ok := g[d.Outcome]; ok {
			exposures[gi][d.DeviceID] = append(exposures[gi][d.DeviceID], d)
		}
		if dispatcherOnly[d.Outcome] || !within(dayOf(d.Time), from, to) {
			continue
		}
		variants[d.Variant] = true
		for _, c := range refCells(dayOf(d.Time), d.Variant) {
			r := at(c)
			r.audience[d.DeviceID] = true
			switch d.Outcome {
			case "sent":
				r.sends++
			case "control":
				r.controls++
			}
		}
	}
	// Results and the push records about the accepted ones.
	acted := map[string]map[tag.PushAction]bool{} // device/delivery → actions
	for _, e := range s.events {
		if e.AppID == app && e.Kind == tag.KindPush {
			k := e.DeviceID + "/" + e.Push.DeliveryID
			if acted[k] == nil {
				acted[k] = map[tag.PushAction]bool{}
			}
			acted[k][e.Push.Action] = true
		}
	}
	for _, r := range s.keptRes {
		if r.App != app || r.Campaign != campaign || !within(dayOf(r.Time), from, to) {
			continue
		}
		variants[r.Variant] = true
		for _, c := range refCells(dayOf(r.Time), r.Variant) {
			st := at(c)
			st.results[r.Outcome]++
			if r.Outcome == "failed" {
				st.failed[r.Reason]++
			}
			if r.Outcome == "accepted" {
				for a := range acted[r.DeviceID+"/"+r.DeliveryID] {
					st.actions[a]++
				}
			}
		}
	}
	// Conversions: each goal event to the device's last exposure of the
	// group at or before it, if within the window.
	if goal != "" {
		for g := range 2 {
			convertedBy := map[string]bool{} // decision ids with an event attributed
			for _, e := range s.events {
				if e.AppID != app || e.Kind != tag.KindEvent || e.Name != goal {
					continue
				}
				var last *clickhouse.DecisionRow
				for i, x := range exposures[g][e.DeviceID] {
					if !x.Time.After(e.Time) && (last == nil || x.Time.After(last.Time)) {
						last = &exposures[g][e.DeviceID][i]
					}
				}
				if last != nil && e.Time.Sub(last.Time) <= window {
					convertedBy[last.ID] = true
				}
			}
			for _, xs := range exposures[g] {
				for _, x := range xs {
					if !within(dayOf(x.Time), from, to) {
						continue
					}
					for _, c := range refCells(dayOf(x.Time), x.Variant) {
						at(c).exposed[g][x.DeviceID] = true
						if convertedBy[x.ID] {
							at(c).converted[g][x.DeviceID] = true
						}
					}
				}
			}
		}
	}

	final := func(c refCell) analytics.Stats {
		r := cells[c]
		if r == nil {
			r = newRefStats()
		}
		st := analytics.Stats{Audience: uint64(len(r.audience)), Sent: r.sends, Control: r.controls, Results: r.results, FailedReasons: r.failed,
			Received: r.actions[tag.PushReceived], Opened: r.actions[tag.PushOpened], Clicked: r.actions[tag.PushClicked], Dismissed: r.actions[tag.PushDismissed]}
		if acc := float64(r.results["accepted"]); acc > 0 {
			st.ReceivedRate, st.OpenRate, st.ClickRate, st.DismissRate = ptr(float64(st.Received)/acc), ptr(float64(st.Opened)/acc), ptr(float64(st.Clicked)/acc), ptr(float64(st.Dismissed)/acc)
		}
		if goal != "" {
			cv := &analytics.Conversion{}
			groups := [2]*analytics.Group{&cv.Sent, &cv.Control}
			for g, grp := range groups {
				grp.Devices, grp.Converted = uint64(len(r.exposed[g])), uint64(len(r.converted[g]))
				if grp.Devices > 0 {
					grp.Rate = ptr(float64(grp.Converted) / float64(grp.Devices))
				}
			}
			if cv.Sent.Devices > 0 && cv.Control.Devices > 0 {
				lift, low, high := waldInterval(cv.Sent.Converted, cv.Sent.Devices, cv.Control.Converted, cv.Control.Devices)
				cv.Lift, cv.LiftLow, cv.LiftHigh = &lift, &low, &high
			}
			st.Conversion = cv
		}
		return st
	}
	days := func(v string) []analytics.StatsDay {
		out := []analytics.StatsDay{}
		for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
			out = append(out, analytics.StatsDay{Day: d.Format(layout), Stats: final(refCell{d.Format(layout), v})})
		}
		return out
	}
	res := analytics.CampaignStats{Range: analytics.Range{App: app, From: from.Format(layout), To: to.Format(layout)}, Campaign: campaign,
		Totals: final(refCell{"", "*"}), Days: days("*"), Variants: []analytics.VariantStats{}}
	if goal != "" {
		res.Goal, res.WithinSeconds = goal, int64(window/time.Second)
	}
	for _, v := range slices.Sorted(maps.Keys(variants)) {
		res.Variants = append(res.Variants, analytics.VariantStats{Variant: v, Totals: final(refCell{"", v}), Days: days(v)})
	}
	return res
}

// waldInterval is the test's own difference of two proportions and its 95%
// interval: z from the inverse error function, not the API's constant.
func waldInterval(x1, n1, x2, n2 uint64) (lift, low, high float64) {
	z := math.Sqrt2 * math.Erfinv(0.95)
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	v1, v2 := p1*(1-p1)/float64(n1), p2*(1-p2)/float64(n2)
	half := z * math.Sqrt(v1+v2)
	return p1 - p2, p1 - p2 - half, p1 - p2 + half
}

func ptr(f float64) *float64 { return &f }
