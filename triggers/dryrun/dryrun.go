// Package dryrun replays tag records through the real segment engine and
// campaign scheduler on the simulated clock, in memory, and reports what
// would have been decided and sent: `engage campaigns dry-run`. It sends
// nothing and writes nothing.
//
// It is the composition `engage process` and `engage schedule` make
// through Kafka, run in one place: per input partition, in offset order,
// the processor's clock is the newest event time; due segment timers fire,
// then device, app-info and push records are forwarded, then the record's
// own changes; the scheduler's clock is the newest time of what it reads, and
// it applies each message at that time. Given the records the live
// services read (the same partitions, the same offsets) with the same
// segments and campaigns from the start, it decides exactly what they
// decided; the equality is tested against the services on the real
// broker.
package dryrun

import (
	"fmt"
	"sort"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
	"github.com/openengage/engage/segments/engine"
	"github.com/openengage/engage/triggers"
)

// Input is a record as the processor reads it: its partition and offset
// in the tags topic.
type Input struct {
	Partition int
	Offset    int64
	Record    *tag.Record
}

// Options are what a dry run replays under.
type Options struct {
	Segments  []*segments.Segment
	Campaigns []*triggers.Campaign
	Caps      map[string]map[triggers.Channel]triggers.Caps
	// From and To bound the decisions reported (by decision time); zero:
	// unbounded. Records before From still build the state they start
	// from (a device's first session, its memberships, its caps).
	From, To time.Time
}

// Result is what a dry run decided.
type Result struct {
	Decisions  []triggers.Decision
	Deliveries []triggers.Delivery
	Records    int // input records replayed
	Changes    int // segment changes the engine made
}

// Run replays each partition's records (in any order: they are sorted by
// offset, and a record read twice, as a redelivered row, counts once).
func Run(opts Options, parts map[int][]Input) (*Result, error) {
	res := &Result{}
	ids := make([]int, 0, len(parts))
	for p := range parts {
		ids = append(ids, p)
	}
	sort.Ints(ids)
	for _, p := range ids {
		if err := runPartition(opts, parts[p], res); err != nil {
			return nil, fmt.Errorf("partition %d: %w", p, err)
		}
	}
	// In decision time order (a partition's are already), then by id.
	sort.SliceStable(res.Decisions, func(i, j int) bool { return res.Decisions[i].Time.Before(res.Decisions[j].Time) })
	sort.SliceStable(res.Deliveries, func(i, j int) bool { return res.Deliveries[i].Time.Before(res.Deliveries[j].Time) })
	return res, nil
}

func runPartition(opts Options, in []Input, res *Result) error {
	sort.SliceStable(in, func(i, j int) bool { return in[i].Offset < in[j].Offset })
	eng := engine.New(engine.Options{})
	var pclock time.Time // the processor's clock
	if _, _, err := eng.SetSegments(opts.Segments, pclock); err != nil {
		return err
	}
	sched := triggers.New()
	sched.SetCampaigns(opts.Campaigns, opts.Caps, time.Time{}, nil)
	var sclock time.Time // the scheduler's clock
	var seq int64        // position in the changes the scheduler reads
	var decs []triggers.Decision
	var dels []triggers.Delivery
	var changes []engine.Change
	change := func(c *engine.Change, extras []tag.Extra) {
		seq++
		res.Changes++
		t := c.Time.UTC()
		if t.After(sclock) {
			sclock = t
		}
		decs, dels = sched.Apply(triggers.SegmentChange{App: c.App, Segment: c.Segment, DeviceID: c.DeviceID, Enter: c.Enter, Time: t,
			ID: c.ID.String(), Extras: extras, Seq: seq}, sclock, decs, dels)
	}
	last := int64(-1)
	for _, x := range in {
		if x.Offset == last {
			continue // a row the sink wrote twice
		}
		last = x.Offset
		r := x.Record
		res.Records++
		if r.Time.After(pclock) {
			pclock = r.Time
		}
		changes = eng.Advance(pclock, changes[:0])
		for i := range changes {
			change(&changes[i], nil)
		}
		if r.Kind == tag.KindDevice || r.Kind == tag.KindAppInfo || r.Kind == tag.KindPush { // as the processor forwards them
			seq++
			if pclock.After(sclock) {
				sclock = pclock.UTC()
			}
			decs, dels = sched.Advance(sclock, decs, dels)
			sched.ApplyRecord(r, seq)
		}
		changes = eng.Apply(r, x.Offset, pclock, changes[:0])
		for i := range changes {
			var extras []tag.Extra
			if c := &changes[i]; c.Cause == engine.CauseRecord && c.Offset == x.Offset {
				extras = r.Extras
			}
			change(&changes[i], extras)
		}
	}
	for _, d := range decs {
		if in := (opts.From.IsZero() || !d.Time.Before(opts.From)) && (opts.To.IsZero() || d.Time.Before(opts.To)); in {
			res.Decisions = append(res.Decisions, d)
		}
	}
	for _, d := range dels {
		if in := (opts.From.IsZero() || !d.Time.Before(opts.From)) && (opts.To.IsZero() || d.Time.Before(opts.To)); in {
			res.Deliveries = append(res.Deliveries, d)
		}
	}
	return nil
}
