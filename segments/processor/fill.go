package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/openengage/engage/pipeline/backoff"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/segments/engine"
)

// History is the store of raw tag records that fills read: the tags table
// the ClickHouse sink writes (sinks/clickhouse.HistoryReader). Read and
// Rows may be called concurrently, from one goroutine per fill.
type History interface {
	// Read calls fn once per device of q.App on the input partition that
	// has records matching q, with the device's records in offset order.
	// recs may be reused after fn returns.
	Read(ctx context.Context, partition int, q engine.HistoryQuery, fn func(deviceID string, recs []engine.HistoryRecord) error) error
	// Rows returns how many records Read would visit, for progress.
	Rows(ctx context.Context, partition int, q engine.HistoryQuery) (int64, error)
}

// histMsg is what a fill's goroutine hands the partition's goroutine, the
// only one that touches the engine.
type histMsg struct {
	id   uint64
	dev  string
	recs []engine.HistoryRecord
	ack  chan error // for a device's records: applied
	done bool       // the fill read everything
	// total is, when set, how many records the fill will read (progress).
	total int64
	why   string // done without the history: why (AbandonFill)
}

// startFills asks the engine for the fills the segment set needs and runs
// the new ones; fills the engine no longer has (a newer set replaced them)
// are stopped. (Without a history store the engine plans no fills: new
// conditions count from when they are saved, and say so.)
func (o *owner) startFills(ctx context.Context) {
	fills, out := o.eng.Fills(o.now(), o.changes)
	o.collect(out, time.Time{})
	live := map[uint64]bool{}
	for _, f := range fills {
		live[f.ID] = true
		if o.fills[f.ID] != nil {
			continue
		}
		fctx, cancel := context.WithCancel(ctx)
		o.fills[f.ID] = cancel
		o.p.m.fills.Inc()
		o.p.log.Info("segment fill from history", "partition", o.claim.Partition, "app", f.Query.App, "fill", f.ID,
			"before_offset", f.Query.Before, "since", f.Query.Since, "kinds", len(f.Query.Kinds))
		go o.runFill(fctx, f)
	}
	for id, cancel := range o.fills {
		if !live[id] {
			cancel()
			delete(o.fills, id)
		}
	}
}

// stopFills stops every fill's goroutine (the partition is going).
func (o *owner) stopFills() {
	for id, cancel := range o.fills {
		cancel()
		delete(o.fills, id)
	}
}

// onHistory applies what a fill's goroutine sent, on the partition's
// goroutine.
func (o *owner) onHistory(m histMsg) {
	switch {
	case m.total > 0:
		o.eng.SetFillTotal(m.id, m.total)
	case m.done:
		o.endFill(m)
	default:
		out, err := o.eng.ApplyHistory(m.id, m.dev, m.recs, o.changes)
		o.collect(out, time.Time{})
		o.p.m.fillRecords.Add(float64(len(m.recs)))
		m.ack <- err
	}
}

func (o *owner) endFill(m histMsg) {
	var out []engine.Change
	var err error
	if m.why == "" {
		out, err = o.eng.FinishFill(m.id, o.now(), o.changes)
	} else {
		out, err = o.eng.AbandonFill(m.id, o.now(), m.why, o.changes)
	}
	o.collect(out, time.Time{})
	if cancel := o.fills[m.id]; cancel != nil {
		cancel()
		delete(o.fills, m.id)
	}
	switch {
	case errors.Is(err, engine.ErrNoFill): // replaced meanwhile
	case err != nil:
		o.p.log.Error("segment fill", "partition", o.claim.Partition, "fill", m.id, "err", err)
	case m.why == "":
		o.p.log.Info("segment fill done", "partition", o.claim.Partition, "fill", m.id)
	default:
		o.p.log.Info("segments count from now", "partition", o.claim.Partition, "fill", m.id, "why", m.why)
	}
}

// runFill reads a fill's history and hands it, a device at a time, to the
// partition's goroutine. It first waits until the history store holds
// every record below the seam: the sink's consumer group has committed
// past it (the sink commits only what it wrote). A failed read is tried
// again, skipping the devices already applied (the store gives all of a
// device's records in one call).
func (o *owner) runFill(ctx context.Context, f engine.Fill) {
	p, part := o.p, o.claim.Partition
	send := func(m histMsg) error {
		select {
		case o.hist <- m:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := o.waitWritten(ctx, f); err != nil {
		return
	}
	if n, err := p.cfg.History.Rows(ctx, part, f.Query); err == nil && n > 0 {
		if send(histMsg{id: f.ID, total: n}) != nil {
			return
		}
	}
	applied := map[string]bool{}
	ack := make(chan error, 1)
	retry := backoff.New(fillRetry)
	for {
		err := p.cfg.History.Read(ctx, part, f.Query, func(dev string, recs []engine.HistoryRecord) error {
			if applied[dev] {
				return nil
			}
			if err := send(histMsg{id: f.ID, dev: dev, recs: recs, ack: ack}); err != nil {
				return err
			}
			select {
			case err := <-ack:
				if err != nil {
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
			applied[dev] = true
			return nil
		})
		switch {
		case err == nil:
			_ = send(histMsg{id: f.ID, done: true})
			return
		case ctx.Err() != nil || errors.Is(err, engine.ErrNoFill):
			return
		}
		p.m.fillErrors.Inc()
		wait := retry.Next()
		p.log.Warn("segment fill: reading the history failed; trying again", "partition", part, "app", f.Query.App, "fill", f.ID,
			"devices_done", len(applied), "retry_in", wait, "err", err)
		if backoff.Sleep(ctx, wait) != nil {
			return
		}
	}
}

// waitWritten waits until the sink has written every record of the
// partition below the fill's seam.
func (o *owner) waitWritten(ctx context.Context, f engine.Fill) error {
	p, part := o.p, o.claim.Partition
	last := time.Time{}
	poll := backoff.New(writtenPoll)
	for {
		w, err := kafkabus.CommittedOffset(ctx, p.cfg.Brokers, p.cfg.SinkGroup, p.cfg.Topic, part)
		if err == nil && w >= f.Query.Before {
			return nil
		}
		if time.Since(last) > 30*time.Second {
			last = time.Now()
			msg := fmt.Sprintf("the sink group %q has written offsets below %d, the fill needs below %d", p.cfg.SinkGroup, w, f.Query.Before)
			if w < 0 {
				msg = fmt.Sprintf("the sink group %q has committed nothing on this partition yet (is engage sink running with -sink.group %s?); the fill needs the offsets below %d", p.cfg.SinkGroup, p.cfg.SinkGroup, f.Query.Before)
			}
			if err != nil {
				msg = err.Error()
			}
			p.log.Info("segment fill waits for the ClickHouse sink", "partition", part, "app", f.Query.App, "fill", f.ID, "why", msg)
		}
		if err := poll.Wait(ctx); err != nil {
			return err
		}
	}
}

// fillRetry paces the reads of a fill's history after a failure:
// exponential from 100 ms to 30 s, a fifth of each wait random so that
// partitions retrying together spread out. writtenPoll paces the looks at
// the sink's committed offsets while a fill waits for them: the same, at
// most a second apart.
var (
	fillRetry   = backoff.Policy{Min: 100 * time.Millisecond, Max: 30 * time.Second, Floor: 0.8}
	writtenPoll = backoff.Policy{Min: 100 * time.Millisecond, Max: time.Second, Floor: 0.8}
)
