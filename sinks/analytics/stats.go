package analytics

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// CampaignStats is the answer of campaigns/{campaign}/stats.
type CampaignStats struct {
	Range
	Campaign      string         `json:"campaign"`
	Goal          string         `json:"goal,omitempty"`           // the conversion event, if asked
	WithinSeconds int64          `json:"within_seconds,omitempty"` // the conversion window, with goal
	Totals        Stats          `json:"totals"`                   // the whole range, every variant
	Days          []StatsDay     `json:"days"`                     // every day of the range, every variant
	Variants      []VariantStats `json:"variants"`                 // each variant seen, by name ("" is no variant)
}

// VariantStats are one variant's statistics over the range and per day.
type VariantStats struct {
	Variant string     `json:"variant"`
	Totals  Stats      `json:"totals"`
	Days    []StatsDay `json:"days"`
}

// StatsDay is one UTC day of statistics.
type StatsDay struct {
	Day string `json:"day"`
	Stats
}

// Stats are a campaign's numbers over a set of days and variants. Each
// count is exact: decisions and results are taken once each (their copy
// of the highest Kafka offset), tag records once per device and id.
type Stats struct {
	// Audience: devices with a decision of the scheduler for the campaign.
	Audience uint64 `json:"audience"`
	// Sent and Control: the scheduler's decisions sent and control (sends,
	// holdouts: a device may have several).
	Sent    uint64 `json:"sent"`
	Control uint64 `json:"control"`
	// Results: deliveries by the dispatcher's outcome (accepted, failed,
	// unreachable, expired, unknown), on the day of their result;
	// FailedReasons: the failed ones by reason.
	Results       map[string]uint64 `json:"results"`
	FailedReasons map[string]uint64 `json:"failed_reasons"`
	// Accepted deliveries the device reported received (a push; shown, an
	// in-app message), opened, clicked,
	// dismissed (push records naming the delivery), and each as a share of
	// the accepted deliveries (null when none was accepted).
	Received     uint64   `json:"received"`
	Opened       uint64   `json:"opened"`
	Clicked      uint64   `json:"clicked"`
	Dismissed    uint64   `json:"dismissed"`
	ReceivedRate *float64 `json:"received_rate"`
	OpenRate     *float64 `json:"open_rate"`
	ClickRate    *float64 `json:"click_rate"`
	DismissRate  *float64 `json:"dismiss_rate"`
	// Conversion: with goal=, the sent and control groups' conversions and
	// the lift.
	Conversion *Conversion `json:"conversion,omitempty"`
}

// Conversion compares the devices sent the campaign with its control group.
type Conversion struct {
	Sent    Group `json:"sent"`
	Control Group `json:"control"`
	// Lift is the sent group's rate minus the control group's, with its
	// 95% confidence interval (difference of two proportions, normal
	// approximation); null when either group is empty.
	Lift     *float64 `json:"lift"`
	LiftLow  *float64 `json:"lift_low"`
	LiftHigh *float64 `json:"lift_high"`
}

// Group is the sent or the control group of a conversion.
type Group struct {
	Devices   uint64   `json:"devices"`   // n: devices with a sent (control) decision
	Converted uint64   `json:"converted"` // of them, devices with a goal event attributed to one
	Rate      *float64 `json:"rate"`      // converted / devices; null when no device
}

// Z95 is the standard normal quantile of a two-sided 95% interval.
const Z95 = 1.959963984540054

// LiftCI returns the difference of two proportions, p1 - p2, and its 95%
// confidence interval by the normal approximation (Wald):
// (p1 - p2) ± Z95·√(p1(1-p1)/n1 + p2(1-p2)/n2). ok is false when n1 or
// n2 is 0.
func LiftCI(x1, n1, x2, n2 uint64) (lift, low, high float64, ok bool) {
	if n1 == 0 || n2 == 0 {
		return 0, 0, 0, false
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	se := math.Sqrt(p1*(1-p1)/float64(n1) + p2*(1-p2)/float64(n2))
	lift = p1 - p2
	return lift, lift - Z95*se, lift + Z95*se, true
}

// maxWithin is the longest conversion window.
const maxWithin = 90 * day

// Outcomes the dispatcher writes to engage.decisions next to its results:
// they are not the scheduler's, so they make no device part of the
// audience. (The dispatcher's expired looks like the scheduler's and
// counts; its device had a sent decision before.)
const dispatcherOutcomes = `'accepted', 'failed', 'unreachable', 'unknown'`

// cell is where a count goes: a day ("" for the whole range) and a variant
// (all for every variant).
type cell struct {
	day     string
	variant string
	all     bool
}

// cells is the ARRAY JOIN that puts each row in its four cells: its day
// and variant, its day, its variant, the whole; d and v are the row's day
// (a Date) and variant.
func cells(d, v string) string {
	return `ARRAY JOIN [(toString(` + d + `), ` + v + `, 0), (toString(` + d + `), '', 1), ('', ` + v + `, 0), ('', '', 1)] AS k`
}

// campaignStats answers campaigns/{campaign}/stats: a campaign's audience,
// sends, control group, delivery results, device feedback and conversions
// per day and variant, from the raw tables (docs/analytics.md has the
// definitions).
func (a *API) campaignStats(ctx context.Context, app string, q *query) (any, error) {
	from, to, e := q.dateRange(a.cfg.MaxRange)
	if e != nil {
		return nil, e
	}
	goal, hasGoal := q.vals["goal"]
	if hasGoal {
		if msg := checkText(goal, maxNameLen); msg != "" {
			return nil, badParam("goal", "event name %s", msg)
		}
	}
	within, e := q.duration("within", day, maxWithin)
	if e != nil {
		return nil, e
	}
	if _, ok := q.vals["within"]; ok && !hasGoal {
		return nil, badParam("within", "a conversion window needs goal=<event name>")
	}
	campaign := q.path["campaign"]
	st := newStatsBuilder(from, to, hasGoal)
	if err := a.statsDecisions(ctx, app, campaign, from, to, st); err != nil {
		return nil, err
	}
	if err := a.statsResults(ctx, app, campaign, from, to, st); err != nil {
		return nil, err
	}
	if hasGoal {
		if err := a.statsConversions(ctx, app, campaign, from, to, goal, within, st); err != nil {
			return nil, err
		}
	}
	res := st.answer(newRange(app, from, to), campaign)
	if hasGoal {
		res.Goal, res.WithinSeconds = goal, int64(within/time.Second)
	}
	return res, nil
}

// dayArg formats a day for a bound argument, within the days a Date holds.
func dayArg(d time.Time) string {
	switch {
	case d.Before(minDate):
		d = minDate
	case d.After(maxDate):
		d = maxDate
	}
	return d.Format(dateLayout)
}

// latestDecisions is the subquery of a campaign's decisions, each once as
// its copy of the highest Kafka offset (device_id, xid, oc, dd, xt, vr),
// whose day is within lo..hi. Copies are read a day either side, so that a
// decision whose copies straddle midnight counts on its kept copy's day.
// Arguments: app, campaign, lo-1, hi+1, lo, hi.
func (a *API) latestDecisions() string {
	// Aliases differ from the columns they aggregate (an alias named as
	// its column reads as a cycle to some servers); CAST drops
	// LowCardinality, so that the cells' tuples have one type.
	return `SELECT device_id, id AS xid, CAST(argMax(outcome, kafka_offset) AS String) AS oc, argMax(day, kafka_offset) AS dd,
			argMax(time, kafka_offset) AS xt, CAST(argMax(variant, kafka_offset) AS String) AS vr
		FROM ` + a.table("decisions") + `
		WHERE app = ? AND campaign = ? AND day >= toDate(?) AND day <= toDate(?)
		GROUP BY device_id, id
		HAVING dd >= toDate(?) AND dd <= toDate(?)`
}

func rangeArgs(app, campaign string, lo, hi time.Time) []any {
	return []any{app, campaign, dayArg(lo.Add(-day)), dayArg(hi.Add(day)), dayArg(lo), dayArg(hi)}
}

// statsDecisions counts the audience, sends and control decisions.
func (a *API) statsDecisions(ctx context.Context, app, campaign string, from, to time.Time, st *statsBuilder) error {
	sql := `SELECT k.1 AS d, k.2 AS v, k.3 AS allv, uniqExact(device_id), countIf(oc = 'sent'), countIf(oc = 'control')
		FROM (` + a.latestDecisions() + ` AND oc NOT IN (` + dispatcherOutcomes + `))
		` + cells("dd", "vr") + `
		GROUP BY d, v, allv`
	return a.each(ctx, sql, rangeArgs(app, campaign, from, to), func(r driver.Rows) error {
		var c cell
		var all uint8
		var audience, sent, control uint64
		if err := r.Scan(&c.day, &c.variant, &all, &audience, &sent, &control); err != nil {
			return err
		}
		c.all = all == 1
		s := st.at(c)
		s.Audience, s.Sent, s.Control = audience, sent, control
		return nil
	})
}

// statsResults counts the delivery results, each delivery once (its result
// of the highest Kafka offset) on the day of that result, and the push
// records of the devices about them.
func (a *API) statsResults(ctx context.Context, app, campaign string, from, to time.Time, st *statsBuilder) error {
	results := a.table("delivery_results")
	sql := `SELECT k.1 AS d, k.2 AS v, k.3 AS allv, oc, rs, count(), sum(received), sum(opened), sum(clicked), sum(dismissed)
		FROM (SELECT device_id, delivery_id, dd, vr, oc, rs, received, opened, clicked, dismissed
			FROM (SELECT device_id, delivery_id, argMax(day, kafka_offset) AS dd, CAST(argMax(variant, kafka_offset) AS String) AS vr,
					CAST(argMax(outcome, kafka_offset) AS String) AS oc, argMax(reason, kafka_offset) AS rs
				FROM ` + results + `
				WHERE app = ? AND campaign = ? AND day >= toDate(?) AND day <= toDate(?)
				GROUP BY device_id, delivery_id
				HAVING dd >= toDate(?) AND dd <= toDate(?))
			ANY LEFT JOIN (SELECT device_id, delivery_id, max(push_action IN ('received', 'shown')) AS received, max(push_action = 'opened') AS opened,
					max(push_action = 'clicked') AS clicked, max(push_action = 'dismissed') AS dismissed
				FROM ` + a.table("tags") + `
				WHERE app = ? AND kind = 'push' AND event_date >= toDate(?)
					AND delivery_id IN (SELECT delivery_id FROM ` + results + ` WHERE app = ? AND campaign = ? AND day >= toDate(?) AND day <= toDate(?))
				GROUP BY device_id, delivery_id)
			USING (device_id, delivery_id))
		` + cells("dd", "vr") + `
		GROUP BY d, v, allv, oc, rs`
	args := rangeArgs(app, campaign, from, to)
	args = append(args, app, dayArg(from.Add(-day)), app, campaign, dayArg(from.Add(-day)), dayArg(to.Add(day)))
	return a.each(ctx, sql, args, func(r driver.Rows) error {
		var c cell
		var all uint8
		var outcome, reason string
		var n, received, opened, clicked, dismissed uint64
		if err := r.Scan(&c.day, &c.variant, &all, &outcome, &reason, &n, &received, &opened, &clicked, &dismissed); err != nil {
			return err
		}
		c.all = all == 1
		s := st.at(c)
		s.Results[outcome] += n
		switch outcome {
		case "failed":
			s.FailedReasons[reason] += n
		case "accepted":
			s.Received, s.Opened, s.Clicked, s.Dismissed = s.Received+received, s.Opened+opened, s.Clicked+clicked, s.Dismissed+dismissed
		}
		return nil
	})
}

// statsConversions counts, for the sent and the control groups, the
// devices with a decision sent (control) and those of them that did the
// goal event within `within` after one: each goal event is attributed to
// the device's last decision of its group at or before it, and counts if
// it came within `within` of it, on that decision's day and variant. Every
// decision that might be the last before an event within the window is
// read: to `to` plus the window.
func (a *API) statsConversions(ctx context.Context, app, campaign string, from, to time.Time, goal string, within time.Duration, st *statsBuilder) error {
	hi := to.Add(within.Truncate(day) + 2*day) // past the end of to + within
	exposures := `SELECT device_id, xid, oc AS grp, dd, xt, vr FROM (` + a.latestDecisions() + ` AND oc IN ('sent', 'control'))`
	sql := `SELECT k.1 AS d, k.2 AS v, k.3 AS allv, grp, uniqExact(device_id), uniqExactIf(device_id, conv = 1)
		FROM (SELECT device_id, xid, grp, dd, vr, conv
			FROM (` + exposures + `)
			ANY LEFT JOIN (SELECT device_id, grp, argMax(eid, et) AS xid, 1 AS conv
				FROM (SELECT device_id, xid AS eid, grp, xt AS et FROM (` + exposures + `))
				ALL INNER JOIN (SELECT device_id, any(event_time) AS ev FROM ` + a.table("tags") + `
					WHERE app = ? AND kind = 'event' AND name = ? AND event_date >= toDate(?) AND event_date <= toDate(?)
					GROUP BY device_id, message_id)
				USING device_id
				WHERE et <= ev AND ev <= addSeconds(et, ?)
				GROUP BY device_id, grp, ev)
			USING (device_id, grp, xid))
		` + cells("dd", "vr") + `
		GROUP BY d, v, allv, grp`
	args := rangeArgs(app, campaign, from, to)
	args = append(args, rangeArgs(app, campaign, from, hi)...)
	args = append(args, app, goal, dayArg(from), dayArg(hi), int64(within/time.Second))
	return a.each(ctx, sql, args, func(r driver.Rows) error {
		var c cell
		var all uint8
		var grp string
		var n, converted uint64
		if err := r.Scan(&c.day, &c.variant, &all, &grp, &n, &converted); err != nil {
			return err
		}
		c.all = all == 1
		g := &st.at(c).Conversion.Sent
		if grp == "control" {
			g = &st.at(c).Conversion.Control
		}
		g.Devices, g.Converted = n, converted
		return nil
	})
}

// statsBuilder gathers the counts of each cell.
type statsBuilder struct {
	from, to time.Time
	conv     bool
	cells    map[cell]*Stats
}

func newStatsBuilder(from, to time.Time, conv bool) *statsBuilder {
	return &statsBuilder{from: from, to: to, conv: conv, cells: map[cell]*Stats{}}
}

// at returns the cell's stats, made empty the first time.
func (b *statsBuilder) at(c cell) *Stats {
	s, ok := b.cells[c]
	if !ok {
		s = &Stats{Results: map[string]uint64{}, FailedReasons: map[string]uint64{}}
		if b.conv {
			s.Conversion = &Conversion{}
		}
		b.cells[c] = s
	}
	return s
}

// answer lays the cells out: every day of the range, for all variants and
// for each variant seen, with the rates and lifts computed.
func (b *statsBuilder) answer(r Range, campaign string) CampaignStats {
	var variants []string
	for c := range b.cells {
		if !c.all && c.day == "" {
			variants = append(variants, c.variant)
		}
	}
	slices.Sort(variants)
	days := func(variant string, all bool) []StatsDay {
		out := []StatsDay{}
		for d := b.from; !d.After(b.to); d = d.Add(day) {
			ds := d.Format(dateLayout)
			out = append(out, StatsDay{Day: ds, Stats: b.final(cell{ds, variant, all})})
		}
		return out
	}
	res := CampaignStats{Range: r, Campaign: campaign, Totals: b.final(cell{"", "", true}), Days: days("", true), Variants: []VariantStats{}}
	for _, v := range variants {
		res.Variants = append(res.Variants, VariantStats{Variant: v, Totals: b.final(cell{"", v, false}), Days: days(v, false)})
	}
	return res
}

// final returns a cell's stats with its rates.
func (b *statsBuilder) final(c cell) Stats {
	s := *b.at(c)
	accepted := s.Results["accepted"]
	s.ReceivedRate, s.OpenRate, s.ClickRate, s.DismissRate = ratio(s.Received, accepted), ratio(s.Opened, accepted), ratio(s.Clicked, accepted), ratio(s.Dismissed, accepted)
	if s.Conversion != nil {
		cv := *s.Conversion
		cv.Sent.Rate, cv.Control.Rate = ratio(cv.Sent.Converted, cv.Sent.Devices), ratio(cv.Control.Converted, cv.Control.Devices)
		if lift, low, high, ok := LiftCI(cv.Sent.Converted, cv.Sent.Devices, cv.Control.Converted, cv.Control.Devices); ok {
			cv.Lift, cv.LiftLow, cv.LiftHigh = &lift, &low, &high
		}
		s.Conversion = &cv
	}
	return s
}

// ratio returns x/n, or nil when n is 0.
func ratio(x, n uint64) *float64 {
	if n == 0 {
		return nil
	}
	r := float64(x) / float64(n)
	return &r
}
