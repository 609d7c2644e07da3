package analytics

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/triggers"
)

// Decision is one decision of the scheduler about a device.
type Decision struct {
	ID         string     `json:"id"`
	Time       time.Time  `json:"time"` // when it was decided
	Outcome    string     `json:"outcome"`
	Reason     string     `json:"reason"`
	Occurrence string     `json:"occurrence"`
	Version    int64      `json:"version"`
	Variant    string     `json:"variant,omitempty"`
	SendAt     *time.Time `json:"send_at,omitempty"` // deferred: when it is due
}

// Occurrence is one send opportunity of a campaign for a device (an entry
// into the audience, a day of a recurring campaign, …) and where it ended:
// its last decision.
type Occurrence struct {
	Occurrence string     `json:"occurrence"`
	Decisions  int        `json:"decisions"` // how many decisions it had
	Outcome    string     `json:"outcome"`
	Reason     string     `json:"reason"`
	Time       time.Time  `json:"time"`
	Variant    string     `json:"variant,omitempty"`
	SendAt     *time.Time `json:"send_at,omitempty"`
}

// DeviceDecisions is the answer of
// campaigns/{campaign}/devices/{device}/decisions.
type DeviceDecisions struct {
	App         string       `json:"app"`
	Campaign    string       `json:"campaign"`
	DeviceID    string       `json:"device_id"`
	Summary     string       `json:"summary"`     // did it get the campaign, and if not why
	Sent        int          `json:"sent"`        // occurrences that ended in a send
	Occurrences []Occurrence `json:"occurrences"` // by their first decision
	Decisions   []Decision   `json:"decisions"`   // in time order
}

// deviceDecisions lists one device's decisions for a campaign, each once
// (the copy with the highest Kafka offset, as the table's merges keep it),
// in time order, then Kafka order, then id.
func (a *API) deviceDecisions(ctx context.Context, app string, q *query) (any, error) {
	campaign, device := q.path["campaign"], q.path["device"]
	sql := `SELECT id, t.1 AS tm, t.2, t.3, t.4, t.5, t.6, t.7, o
		FROM (SELECT id, argMax(tuple(time, outcome, reason, occurrence, version, variant, send_at), kafka_offset) AS t, max(kafka_offset) AS o
			FROM ` + a.table("decisions") + `
			WHERE app = ? AND campaign = ? AND device_id = ?
			GROUP BY id)
		ORDER BY tm, o, id`
	res := DeviceDecisions{App: app, Campaign: campaign, DeviceID: device, Occurrences: []Occurrence{}, Decisions: []Decision{}}
	err := a.each(ctx, sql, []any{app, campaign, device}, func(r driver.Rows) error {
		var d Decision
		var sendAt time.Time
		var offset uint64
		if err := r.Scan(&d.ID, &d.Time, &d.Outcome, &d.Reason, &d.Occurrence, &d.Version, &d.Variant, &sendAt, &offset); err != nil {
			return err
		}
		d.Time = d.Time.UTC()
		if sendAt.Unix() > 0 {
			t := sendAt.UTC()
			d.SendAt = &t
		}
		res.Decisions = append(res.Decisions, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Occurrences, res.Sent, res.Summary = summarize(res.Decisions)
	return res, nil
}

// rateSlot marks the occurrence of a decision that defers a send for the
// campaign's send rate: the send's occurrence, then "/rate@" and the slot,
// so that each deferral has an id of its own.
const rateSlot = triggers.RateSlotSep

// sendOccurrence is the occurrence of the send a decision is about.
func sendOccurrence(occ string) string {
	base, _, _ := strings.Cut(occ, rateSlot)
	return base
}

// summarize folds decisions, in time order, into their occurrences (each
// ends with its last decision) and says in one line whether the device got
// the campaign and, if not, why.
func summarize(decs []Decision) (occs []Occurrence, sent int, summary string) {
	occs = []Occurrence{}
	index := map[string]int{}
	for _, d := range decs {
		key := sendOccurrence(d.Occurrence)
		i, ok := index[key]
		if !ok {
			i = len(occs)
			index[key] = i
			occs = append(occs, Occurrence{Occurrence: key})
		}
		o := &occs[i]
		o.Decisions++
		o.Outcome, o.Reason, o.Time, o.Variant, o.SendAt = d.Outcome, d.Reason, d.Time, d.Variant, d.SendAt
	}
	var lastSent, lastOther *Occurrence
	for i := range occs {
		o := &occs[i]
		if o.Outcome == string(triggers.OutcomeSent) {
			sent++
			if lastSent == nil || !o.Time.Before(lastSent.Time) {
				lastSent = o
			}
		} else if lastOther == nil || !o.Time.Before(lastOther.Time) {
			lastOther = o
		}
	}
	n := len(occs)
	switch {
	case n == 0:
		summary = "no decisions for this device in this campaign"
	case sent == n && n == 1:
		summary = "sent at " + stamp(lastSent.Time)
	case sent == n:
		summary = fmt.Sprintf("sent %d times, last at %s", sent, stamp(lastSent.Time))
	case sent > 0:
		summary = fmt.Sprintf("sent %d of %d times, last at %s; latest not sent: %s", sent, n, stamp(lastSent.Time), describe(lastOther))
	case lastOther.Outcome == string(triggers.OutcomeDeferred):
		summary = "not sent yet: " + describe(lastOther)
	default:
		summary = "not sent: " + describe(lastOther)
	}
	if sent == 0 && n > 1 {
		summary += fmt.Sprintf(" (none of %d occurrences was sent)", n)
	}
	return occs, sent, summary
}

func describe(o *Occurrence) string {
	return o.Outcome + " at " + stamp(o.Time) + ": " + o.Reason
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// DecisionDay is one day of campaigns/{campaign}/decisions.
type DecisionDay struct {
	Day       string            `json:"day"`
	Decisions uint64            `json:"decisions"`
	Outcomes  map[string]uint64 `json:"outcomes"` // outcomes with any decision that day
}

// CampaignDecisions is the answer of campaigns/{campaign}/decisions.
type CampaignDecisions struct {
	Range
	Campaign  string            `json:"campaign"`
	Decisions uint64            `json:"decisions"` // over the range
	Outcomes  map[string]uint64 `json:"outcomes"`  // over the range
	Days      []DecisionDay     `json:"days"`      // every day of the range, zeros included
}

// campaignDecisions counts a campaign's decisions by UTC day and outcome,
// each decision once: its copies are grouped by id and it counts on the day
// of the copy with the highest Kafka offset (the one merges keep). Rows a
// day either side of the range are read too, so that a decision whose
// copies straddle midnight counts on the right day.
func (a *API) campaignDecisions(ctx context.Context, app string, q *query) (any, error) {
	from, to, e := q.dateRange(a.cfg.MaxRange)
	if e != nil {
		return nil, e
	}
	campaign := q.path["campaign"]
	lo := from.Add(-day)
	if lo.Before(minDate) {
		lo = minDate
	}
	// Aliases differ from the columns they aggregate (an alias named as
	// its column reads as a cycle to some servers).
	sql := `SELECT toString(d), oc, count()
		FROM (SELECT argMax(day, kafka_offset) AS d, argMax(outcome, kafka_offset) AS oc
			FROM ` + a.table("decisions") + `
			WHERE app = ? AND campaign = ? AND day >= toDate(?) AND day <= toDate(?)
			GROUP BY id
			HAVING d >= toDate(?) AND d <= toDate(?))
		GROUP BY d, oc`
	res := CampaignDecisions{Range: newRange(app, from, to), Campaign: campaign, Outcomes: map[string]uint64{}, Days: []DecisionDay{}}
	byDay := map[string]map[string]uint64{}
	args := []any{app, campaign, lo.Format(dateLayout), to.Add(day).Format(dateLayout), from.Format(dateLayout), to.Format(dateLayout)}
	err := a.each(ctx, sql, args, func(r driver.Rows) error {
		var d, outcome string
		var n uint64
		if err := r.Scan(&d, &outcome, &n); err != nil {
			return err
		}
		if byDay[d] == nil {
			byDay[d] = map[string]uint64{}
		}
		byDay[d][outcome] = n
		res.Outcomes[outcome] += n
		res.Decisions += n
		return nil
	})
	if err != nil {
		return nil, err
	}
	for d := from; !d.After(to); d = d.Add(day) {
		dd := DecisionDay{Day: d.Format(dateLayout), Outcomes: map[string]uint64{}}
		for outcome, n := range byDay[dd.Day] {
			dd.Outcomes[outcome] = n
			dd.Decisions += n
		}
		res.Days = append(res.Days, dd)
	}
	return res, nil
}
