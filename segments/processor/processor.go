// Package processor is `engage process`: the stateful stream processor that
// keeps every device's segment memberships current. It is the Kafka edge
// around segments/engine: a consumer group on the tags topic in which one
// goroutine owns each assigned partition and that partition's engine; the
// engine's per-device states go to a compacted changelog topic
// co-partitioned with the input, and are restored from it when a partition
// is assigned; every enter and exit goes to the segment-changes topic.
//
// Order of effects at each flush: segment changes (acks=all), then the
// changed states and the partition's own record (its clock, and the end of
// its changes partition once this flush's changes are in) (acks=all), then
// the input offset commit. A crash anywhere in between replays input that
// the restored states have already applied: the engine skips it by the
// per-device last applied offset. Changes produced after the last state
// flush are found again at restore (the changes topic is co-partitioned,
// and only the partition's owner writes that partition: they are the
// messages past the end the partition's record noted) and are not produced
// a second time. Ids are deterministic, so a consumer that deduplicates on
// id is safe whatever happens.
package processor

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/engine"
)

// Config configures a processor instance.
type Config struct {
	Brokers        []string
	Group          string
	Topic          string // input: tag records
	ChangelogTopic string // compacted, co-partitioned with Topic
	ChangesTopic   string // segment enters and exits
	ConfigTopic    string // segment definitions
	// FlushInterval bounds how long a change waits before it is produced,
	// and how much input a crash replays.
	FlushInterval time.Duration
	// FlushRecords flushes earlier, after this many input records.
	FlushRecords int
	// SimulatedClock makes "now" the newest event time the partition has
	// seen (persisted with its state) instead of the wall clock: replays,
	// tests and dry runs give the same results every time.
	SimulatedClock bool
	SessionTimeout time.Duration
	// Advertise is the base URL at which this instance's API answers for
	// the partitions it owns (http://host:port). The instance announces
	// it with its partitions in the configuration topic, so that any
	// instance's API can answer for all partitions. Empty: not announced.
	Advertise string
	// History is the store new segments fill their conditions from (the
	// ClickHouse tags table); nil: they count from when they are saved,
	// and say so.
	History History
	// SinkGroup is the consumer group of the sink that writes History: a
	// fill waits until it has committed past the fill's seam.
	SinkGroup string
	// EvictAfter is the retention of devices no longer seen: a device not
	// seen for this long is evicted (its memberships exit with cause
	// "evicted", its state is deleted with a tombstone) even when a
	// condition without a window reads it; sooner when every condition of
	// its app has a window (the longest, plus EvictMargin). Zero: never.
	// See segments/engine/evict.go.
	EvictAfter time.Duration
	// EvictMargin is added to an app's longest window (zero: the engine's
	// default, 30 days).
	EvictMargin time.Duration
}

// DefaultEvictAfter is the default retention of devices no longer seen.
const DefaultEvictAfter = 400 * 24 * time.Hour

// DefaultConfig returns the defaults for the given brokers.
func DefaultConfig(brokers []string) Config {
	return Config{Brokers: brokers, Group: "engage-process", Topic: kafkabus.TopicTags, ChangelogTopic: kafkabus.TopicStateChangelog,
		ChangesTopic: kafkabus.TopicSegmentChanges, ConfigTopic: kafkabus.TopicConfig,
		FlushInterval: 100 * time.Millisecond, FlushRecords: 50000, SessionTimeout: 10 * time.Second, SinkGroup: "engage-sink",
		EvictAfter: DefaultEvictAfter, EvictMargin: engine.DefaultEvictMargin}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("process: no Kafka brokers: set -kafka.brokers or ENGAGE_KAFKA_BROKERS")
	case c.Group == "" || c.Topic == "" || c.ChangelogTopic == "" || c.ChangesTopic == "" || c.ConfigTopic == "":
		return errors.New("process: group and topics must be set")
	case c.History != nil && c.SinkGroup == "":
		return errors.New("process: a history store needs the sink's consumer group (-history.sink-group)")
	case c.FlushInterval <= 0 || c.FlushRecords <= 0:
		return fmt.Errorf("process: flush interval %s and flush records %d must be positive", c.FlushInterval, c.FlushRecords)
	}
	if err := (engine.Options{EvictAfter: c.EvictAfter, EvictMargin: c.EvictMargin}).Validate(); err != nil {
		return fmt.Errorf("process: -process.evict-after %s, -process.evict-margin %s: %w", c.EvictAfter, c.EvictMargin, err)
	}
	return nil
}

// Processor is one instance of `engage process`.
type Processor struct {
	cfg   Config
	store *Store
	prod  bus.Producer
	log   *slog.Logger

	mu    sync.Mutex
	parts map[int]*partition // owned now
	m     *metrics
	read  atomic.Int64   // input records read
	id    string         // instance id, as announced
	nIn   atomic.Int32   // partitions of the input topic, once known
	ends  *kafkabus.Ends // where the changes end, asked at flushes

	configured atomic.Bool  // the segment configuration has been read
	restoring  atomic.Int32 // owned partitions whose state is being restored

	announceMu sync.Mutex
}

// ID returns the instance's id, as it announces itself.
func (p *Processor) ID() string { return p.id }

// Owners returns the instances of this instance's group that own each
// partition, as announced.
func (p *Processor) Owners() map[int]Instance { return p.store.Owners(p.cfg.Group) }

// Partitions returns the number of partitions of the input topic (0 until
// Run has read it).
func (p *Processor) Partitions() int { return int(p.nIn.Load()) }

// Records returns how many input records this instance has read.
func (p *Processor) Records() int64 { return p.read.Load() }

// Ready returns nil once the processor has read the segment
// configuration, owns partitions of the input and has restored the state
// of each, else what it is still doing (for /readyz). An instance that
// owns no partition (joining the group, or more instances than
// partitions) is not ready: it does no work.
func (p *Processor) Ready() error {
	if !p.configured.Load() {
		return errors.New("reading the segment configuration")
	}
	p.mu.Lock()
	owned := len(p.parts)
	p.mu.Unlock()
	return kafkabus.GroupReady(p.cfg.Topic, owned, p.restoring.Load())
}

// New returns a processor that produces through prod (a producer whose
// messages name their topic; keys are placed by murmur2, as the input's).
func New(cfg Config, store *Store, prod bus.Producer, m *metrics, log *slog.Logger) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = newMetrics(nil)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(rnd[:]))
	return &Processor{cfg: cfg, store: store, prod: prod, log: log, parts: map[int]*partition{}, m: m, id: id, ends: kafkabus.NewEnds(cfg.Brokers)}, nil
}

// Run follows the configuration, then consumes the input as a member of
// the group until ctx ends.
func (p *Processor) Run(ctx context.Context) error {
	parts, err := kafkabus.Partitions(ctx, p.cfg.Brokers)
	if err != nil {
		return err
	}
	in, ok := parts[p.cfg.Topic]
	if !ok {
		return fmt.Errorf("process: input topic %s does not exist (engage topics creates it)", p.cfg.Topic)
	}
	if cl, ok := parts[p.cfg.ChangelogTopic]; !ok || cl != in {
		return fmt.Errorf("process: changelog topic %s has %d partitions, the input %s has %d: they must be co-partitioned (engage topics)", p.cfg.ChangelogTopic, cl, p.cfg.Topic, in)
	}
	p.nIn.Store(int32(in))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer p.ends.Close()
	if p.cfg.Advertise != "" {
		defer p.withdraw()
	}
	ready := make(chan struct{})
	follow := make(chan error, 1)
	go func() {
		follow <- p.store.Follow(ctx, func(ctx context.Context, fn func(bus.Message, bool) error) error {
			return kafkabus.FollowPartition(ctx, p.cfg.Brokers, p.cfg.ConfigTopic, 0, fn)
		}, ready, func(err error) { p.log.Warn("segment configuration", "err", err) })
	}()
	select {
	case <-ready:
	case err := <-follow:
		return fmt.Errorf("process: read the segment configuration: %w", err)
	case <-ctx.Done():
		return nil
	}
	p.configured.Store(true)
	set, _ := p.store.Current()
	p.log.Info("segments loaded", "segments", len(set.Segs), "version", set.Version, "invalid", len(set.Errors))
	err = kafkabus.RunGroup(ctx, kafkabus.GroupConfig{Brokers: p.cfg.Brokers, Group: p.cfg.Group, Topic: p.cfg.Topic, SessionTimeout: p.cfg.SessionTimeout},
		p.log, func(ctx context.Context, c *kafkabus.Claim) error { return p.runPartition(ctx, c, in) })
	cancel()
	if ferr := <-follow; err == nil && ferr != nil {
		err = ferr
	}
	return err
}

// partition is a partition this instance owns: requests from the API run
// on its goroutine, the only one that touches its engine.
type partition struct {
	id   int
	reqs chan func(*engine.Engine, time.Time)
	gone chan struct{} // closed when the partition's goroutine has returned
}

// do runs fn on the partition's goroutine and waits for it.
func (pt *partition) do(ctx context.Context, fn func(*engine.Engine, time.Time)) error {
	done := make(chan struct{})
	select {
	case pt.reqs <- func(e *engine.Engine, now time.Time) { fn(e, now); close(done) }:
	case <-pt.gone:
		return errPartitionGone
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errPartitionGone = errors.New("the partition moved to another instance")

// clockKeyPrefix starts the changelog key of a partition's own record
// (clock and changes end): two NUL bytes, which no device key (app/device)
// and no engine meta key (one NUL and an app name) begins with. Its value
// is the simulated clock (Unix ns) and the end offset of the partition of
// the changes topic after the flush's changes, 8 bytes each, big-endian.
const clockKeyPrefix = "\x00\x00clock/"

// owner is the state of one owned partition's goroutine.
type owner struct {
	p        *Processor
	claim    *kafkabus.Claim
	eng      *engine.Engine
	clock    time.Time // simulated: newest event time seen
	clockKey []byte
	// emitted holds the ids of changes produced after the restored states
	// were written: a replay recomputes them, and they are not produced
	// again.
	emitted    map[string]bool
	changesEnd int64 // end of the changes partition after the last produced changes; -1: unknown
	endStale   bool  // changes were produced since changesEnd was read
	unsent     []bus.Message

	// scratch of applyAll
	batch   []bus.Message
	recs    []tag.Record
	ptrs    []*tag.Record
	offs    []int64
	ats     []time.Time // input time of each record of offs
	arena   []tag.Extra
	changes []engine.Change
	times   []time.Time       // input message time of each change (zero: timer or configuration)
	extras  []json.RawMessage // the causing record's extras of each change (nil: none)
	fwd     []forward         // records forwarded to the scheduler, between the changes
	next    int64             // offset to commit
	pending int               // records since the last flush
	set     *Set

	fills map[uint64]context.CancelFunc // fills under way, each to stop (fill.go)
	hist  chan histMsg                  // from the fills' goroutines
}

func (o *owner) now() time.Time {
	if o.p.cfg.SimulatedClock {
		return o.clock
	}
	return time.Now()
}

func (p *Processor) runPartition(ctx context.Context, c *kafkabus.Claim, partitions int) error {
	start := time.Now()
	p.restoring.Add(1)
	restored := sync.OnceFunc(func() { p.restoring.Add(-1) })
	defer restored()
	o := &owner{p: p, claim: c, eng: engine.New(engine.Options{Fill: p.cfg.History != nil, EvictAfter: p.cfg.EvictAfter, EvictMargin: p.cfg.EvictMargin}), next: -1, changesEnd: -1,
		clockKey: kafkabus.PartitionKey(clockKeyPrefix+strconv.Itoa(c.Partition)+"/", c.Partition, partitions),
		fills:    map[uint64]context.CancelFunc{}, hist: make(chan histMsg)}
	defer o.stopFills()
	// Restore first, then the segments: a segment new since the states
	// were written fills from history with a seam past what they applied.
	changesEnd := int64(-1)
	n, err := kafkabus.ReadPartition(ctx, p.cfg.Brokers, p.cfg.ChangelogTopic, c.Partition, func(m bus.Message) error {
		if len(m.Key) > 2 && string(m.Key[:2]) == "\x00\x00" {
			if len(m.Value) == 16 {
				if ns := int64(binary.BigEndian.Uint64(m.Value)); ns != 0 {
					o.clock = time.Unix(0, ns).UTC()
				}
				changesEnd = int64(binary.BigEndian.Uint64(m.Value[8:]))
			}
			return nil
		}
		return o.eng.Restore(m.Key, m.Value)
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if changesEnd >= 0 {
		o.emitted = map[string]bool{}
		if _, err := kafkabus.ReadPartitionFrom(ctx, p.cfg.Brokers, p.cfg.ChangesTopic, c.Partition, changesEnd, func(m bus.Message) error {
			var cm ChangeMessage
			if json.Unmarshal(m.Value, &cm) == nil {
				o.emitted[cm.ID] = true
			}
			return nil
		}); err != nil {
			return fmt.Errorf("read the changes produced since the last flush: %w", err)
		}
	}
	from := c.Offset
	if from < 0 { // no commit yet: from the first record the partition holds
		if from, err = kafkabus.PartitionStart(ctx, p.cfg.Brokers, p.cfg.Topic, c.Partition); err != nil {
			return fmt.Errorf("start of the input partition: %w", err)
		}
	}
	o.eng.SetPosition(from)
	set, changed := p.store.Current()
	o.set = set
	out, _, err := o.eng.SetSegments(set.Segs, o.now())
	if err != nil {
		return err
	}
	o.collect(out, time.Time{})
	o.startFills(ctx)
	p.m.restored.Add(float64(n))
	p.log.Info("partition restored", "partition", c.Partition, "records", n, "devices", o.eng.Devices(), "took", time.Since(start).Round(time.Millisecond), "from offset", c.Offset)
	restored()

	pt := &partition{id: c.Partition, reqs: make(chan func(*engine.Engine, time.Time)), gone: make(chan struct{})}
	p.mu.Lock()
	p.parts[c.Partition] = pt
	p.mu.Unlock()
	p.announce(ctx)
	defer func() {
		close(pt.gone)
		p.mu.Lock()
		if p.parts[c.Partition] == pt {
			delete(p.parts, c.Partition)
		}
		p.mu.Unlock()
		p.announce(context.WithoutCancel(ctx))
	}()

	// A fetcher feeds the owner, so that it can also wake for flushes,
	// timers, configuration changes and API requests.
	fctx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	msgs, fetchErr := c.Feed(fctx, 4096)
	tick := time.NewTicker(p.cfg.FlushInterval)
	defer tick.Stop()
	var rec tag.Record
	applySet := func() error {
		set, changed = p.store.Current()
		o.set = set
		out, _, err := o.eng.SetSegments(set.Segs, o.now())
		if err != nil {
			p.log.Error("segment set not applied", "version", set.Version, "err", err)
			return nil
		}
		o.collect(out, time.Time{})
		o.startFills(ctx)
		if err := o.flushDetached(ctx); err != nil {
			return o.flushFailed(ctx, err)
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return o.finalFlush()
		case err := <-fetchErr:
			return fmt.Errorf("fetch: %w", err)
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			// Take what is there (up to a batch) without a select each.
			batch := append(o.batch[:0], m)
			for more := true; more && len(batch) < applyBatch && o.pending+len(batch) < p.cfg.FlushRecords; {
				select {
				case m, ok := <-msgs:
					if !ok {
						more = false
						break
					}
					batch = append(batch, m)
				default:
					more = false
				}
			}
			o.applyAll(&rec, batch)
			clear(batch)
			o.batch = batch[:0]
			if o.pending >= p.cfg.FlushRecords {
				if err := o.flushDetached(ctx); err != nil {
					return o.flushFailed(ctx, err)
				}
			}
		case <-tick.C:
			if !p.cfg.SimulatedClock {
				o.collect(o.eng.Advance(o.now(), o.changes), time.Time{})
			}
			if err := o.flushDetached(ctx); err != nil {
				return o.flushFailed(ctx, err)
			}
		case <-changed:
			if err := applySet(); err != nil {
				return err
			}
		case m := <-o.hist:
			o.onHistory(m)
		case req := <-pt.reqs:
			// A request sees the newest segment set: an API call that
			// has just stored a change answers from it.
			select {
			case <-changed:
				if err := applySet(); err != nil {
					return err
				}
			default:
			}
			req(o.eng, o.now())
		}
	}
}

// finalFlush writes what is done when the partition is stopping or moving
// to another instance, so that the next owner replays as little as
// possible. It has a context of its own: the partition's has ended. (The
// commit may fail once the generation is over; the states written make the
// replay change nothing.)
func (o *owner) finalFlush() error {
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.flush(fctx); err != nil {
		o.p.log.Warn("last flush of a partition", "partition", o.claim.Partition, "err", err)
	}
	return nil
}

// flushDetached flushes without letting a stop interrupt the writes half
// way (which would write some changes twice); it gives up after 30 s.
func (o *owner) flushDetached(ctx context.Context) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return o.flush(fctx)
}

// flushFailed handles a failed flush: because the partition is stopping (a
// last flush), or for good (the error).
func (o *owner) flushFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return o.finalFlush()
	}
	return err
}

// collect notes the changes appended to o.changes since len(o.times),
// with the input time that caused them.
func (o *owner) collect(out []engine.Change, at time.Time) {
	o.changes = out
	for len(o.times) < len(o.changes) {
		o.times = append(o.times, at)
	}
	for len(o.extras) < len(o.changes) {
		o.extras = append(o.extras, nil)
	}
}

// applyBatch is how many input records are applied together (the engine's
// ApplyBatch, at one now) on the wall clock.
const applyBatch = 256

// applyAll applies input messages in order. On the simulated clock, one at
// a time: each record's now is the newest event time up to it, whatever
// the batch boundaries. On the wall clock, together, at one now.
func (o *owner) applyAll(rec *tag.Record, msgs []bus.Message) {
	if o.p.cfg.SimulatedClock {
		for _, m := range msgs {
			o.apply(rec, m)
		}
		return
	}
	o.recs, o.ptrs, o.offs, o.ats = o.recs[:0], o.ptrs[:0], o.offs[:0], o.ats[:0]
	o.arena = o.arena[:0]
	for _, m := range msgs {
		o.take(m)
		o.recs = append(o.recs, tag.Record{})
		// Device and app-info records go to the scheduler ahead of the
		// batch's changes: the time zone before the entry it times.
		if Forwarded(tag.PeekKind(m.Value)) {
			o.forward(m)
		}
		// The engine keeps no reference to the records: decode sharing the
		// messages' bytes.
		if err := o.recs[len(o.recs)-1].UnmarshalBinaryShared(m.Value, &o.arena); err != nil {
			o.recs = o.recs[:len(o.recs)-1]
			o.undecodable(m, err)
			continue
		}
		o.offs, o.ats = append(o.offs, m.Offset), append(o.ats, m.Time)
	}
	for i := range o.recs {
		o.ptrs = append(o.ptrs, &o.recs[i])
	}
	start := len(o.changes)
	o.changes = o.eng.ApplyBatch(o.ptrs, o.offs, time.Now(), o.changes)
	for _, c := range o.changes[start:] {
		var t time.Time
		var x json.RawMessage
		if c.Cause == engine.CauseRecord {
			if i, ok := slices.BinarySearch(o.offs, c.Offset); ok { // offsets ascend
				t = o.ats[i]
				x = AppendExtrasJSON(nil, o.recs[i].Extras)
			}
		}
		o.times = append(o.times, t)
		o.extras = append(o.extras, x)
	}
	clear(o.recs)
	clear(o.ptrs)
}

// apply applies one input message.
func (o *owner) apply(rec *tag.Record, m bus.Message) {
	o.take(m)
	if err := rec.UnmarshalBinary(m.Value); err != nil {
		o.undecodable(m, err)
		return
	}
	if o.p.cfg.SimulatedClock {
		if rec.Time.After(o.clock) {
			o.clock = rec.Time
		}
		o.collect(o.eng.Advance(o.clock, o.changes), time.Time{})
	}
	if Forwarded(rec.Kind) {
		o.forward(m)
	}
	start := len(o.changes)
	o.collect(o.eng.Apply(rec, m.Offset, o.now(), o.changes), m.Time)
	var x json.RawMessage
	for i := start; i < len(o.changes); i++ {
		if c := &o.changes[i]; c.Cause == engine.CauseRecord && c.Offset == m.Offset {
			if x == nil {
				x = AppendExtrasJSON(nil, rec.Extras)
			}
			o.extras[i] = x
		}
	}
}

// forward notes a device or app-info record for the scheduler, at the
// place it has among the changes (before those not yet collected).
func (o *owner) forward(m bus.Message) {
	o.fwd = append(o.fwd, forward{at: len(o.changes), offset: m.Offset, now: o.now(), value: append([]byte(nil), m.Value...)})
}

// take notes an input message as read: the offset after it is the next to
// commit.
func (o *owner) take(m bus.Message) {
	o.next = m.Offset + 1
	o.pending++
	o.p.m.records.Inc()
	o.p.read.Add(1)
}

// undecodable counts and logs a record that did not decode; it is skipped
// (the sink dead-letters it).
func (o *owner) undecodable(m bus.Message, err error) {
	o.p.m.invalid.Inc()
	o.p.log.Debug("undecodable record skipped", "partition", m.Partition, "offset", m.Offset, "err", err)
}

// HeaderInputTime carries, on a change caused by a record, when that
// record was appended to the input topic (Unix nanoseconds), for
// measuring event → change latency.
const HeaderInputTime = "engage-input-time"

// flush produces the changes, then the changed states, then commits.
func (o *owner) flush(ctx context.Context) error {
	p := o.p
	produced := false
	if len(o.changes) > 0 || len(o.fwd) > 0 {
		msgs := make([]bus.Message, 0, len(o.changes)+len(o.fwd))
		fwd := o.fwd
		emit := func(id string, m bus.Message) {
			if o.emitted[id] {
				delete(o.emitted, id)
				p.m.suppressed.Inc()
				return
			}
			msgs = append(msgs, m)
		}
		forwardUpTo := func(i int) {
			for len(fwd) > 0 && fwd[0].at <= i {
				f := fwd[0]
				fwd = fwd[1:]
				cm, key, err := forwardMessage(f, o.claim.Partition)
				if err != nil {
					o.undecodable(bus.Message{Partition: o.claim.Partition, Offset: f.offset}, err)
					continue
				}
				v, _ := json.Marshal(cm)
				emit(cm.ID, bus.Message{Topic: p.cfg.ChangesTopic, Key: key, Value: v})
			}
		}
		for i := range o.changes {
			forwardUpTo(i)
			c := &o.changes[i]
			id := c.ID.String()
			v, _ := json.Marshal(ChangeMessage{ID: id, App: c.App, Segment: c.Segment, Version: c.Version, DeviceID: c.DeviceID, Enter: c.Enter, Time: c.Time.UTC(), Cause: c.CauseText(), Extras: o.extras[i]})
			m := bus.Message{Topic: p.cfg.ChangesTopic, Key: []byte(c.App + "/" + c.DeviceID), Value: v}
			if t := o.times[i]; !t.IsZero() {
				m.Headers = []bus.Header{{Key: HeaderInputTime, Value: strconv.AppendInt(nil, t.UnixNano(), 10)}}
			}
			emit(id, m)
		}
		forwardUpTo(len(o.changes))
		if err := p.produce(ctx, msgs); err != nil {
			return err
		}
		produced = len(msgs) > 0
		p.m.changes.Add(float64(len(msgs)))
		clear(o.changes)
		clear(o.extras)
		clear(o.fwd)
		o.changes, o.times, o.extras, o.fwd = o.changes[:0], o.times[:0], o.extras[:0], o.fwd[:0]
	}
	// States wait in o.unsent until written: Dirty hands each change out
	// once, and a failed write must not lose it (a later commit would pass
	// records whose states were never written).
	o.eng.Dirty(func(key, state []byte) {
		m := bus.Message{Topic: p.cfg.ChangelogTopic, Key: append([]byte(nil), key...)}
		if state != nil {
			m.Value = append([]byte(nil), state...)
		}
		o.unsent = append(o.unsent, m)
	})
	o.endStale = o.endStale || produced
	if len(o.unsent) > 0 || o.pending > 0 || o.endStale {
		if o.endStale || o.changesEnd < 0 {
			end, err := p.ends.Of(ctx, o.claim.Partition, p.cfg.ChangesTopic)
			if err != nil {
				return err
			}
			o.changesEnd, o.endStale = end[0], false
		}
		var clock int64
		if p.cfg.SimulatedClock && !o.clock.IsZero() {
			clock = o.clock.UnixNano()
		}
		own := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(clock)), uint64(o.changesEnd))
		msgs := append(o.unsent, bus.Message{Topic: p.cfg.ChangelogTopic, Key: o.clockKey, Value: own})
		if err := p.produce(ctx, msgs); err != nil {
			return err
		}
		p.m.states.Add(float64(len(msgs)))
		clear(o.unsent)
		o.unsent = o.unsent[:0]
	}
	if o.next >= 0 && o.pending > 0 {
		if err := o.claim.Commit(o.next); err != nil {
			// Not fatal: the states are written, so replaying from the
			// older commit changes nothing; the next flush commits again
			// (or, in a rebalance, the partition's next owner does).
			p.log.Warn("commit failed", "partition", o.claim.Partition, "offset", o.next, "err", err)
			return nil
		}
	}
	o.pending = 0
	return nil
}

// produce writes msgs, retrying while Kafka is unavailable, until ctx ends.
func (p *Processor) produce(ctx context.Context, msgs []bus.Message) error {
	return bus.ProduceRetrying(ctx, p.prod, msgs, func(err error, wait time.Duration) {
		p.log.Warn("produce failed; retrying", "err", err, "in", wait)
	})
}

// Each runs fn on every owned partition's goroutine in turn, and returns
// the partitions it ran on (a partition that moves away meanwhile is
// skipped).
func (p *Processor) Each(ctx context.Context, fn func(partition int, e *engine.Engine, now time.Time)) ([]int, error) {
	p.mu.Lock()
	parts := make([]*partition, 0, len(p.parts))
	for _, pt := range p.parts {
		parts = append(parts, pt)
	}
	p.mu.Unlock()
	sort.Slice(parts, func(i, j int) bool { return parts[i].id < parts[j].id })
	ids := make([]int, 0, len(parts))
	for _, pt := range parts {
		err := pt.do(ctx, func(e *engine.Engine, now time.Time) { fn(pt.id, e, now) })
		if errors.Is(err, errPartitionGone) {
			continue // moved away meanwhile: not covered
		}
		if err != nil {
			return ids, err
		}
		ids = append(ids, pt.id)
	}
	return ids, nil
}

// owned returns the partitions this instance owns now, in order.
func (p *Processor) owned() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]int, 0, len(p.parts))
	for id := range p.parts {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// announce writes the instance's record (its API address and the
// partitions it owns now) to the configuration topic. A failure is
// logged: answers for the partitions concerned then say they are missing.
func (p *Processor) announce(ctx context.Context) {
	if p.cfg.Advertise == "" {
		return
	}
	p.announceMu.Lock()
	defer p.announceMu.Unlock()
	in := Instance{ID: p.id, Group: p.cfg.Group, Addr: p.cfg.Advertise, Partitions: p.owned(), At: time.Now().UTC()}
	v, _ := json.Marshal(in)
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.prod.Produce(actx, []bus.Message{{Topic: p.cfg.ConfigTopic, Key: []byte(InstanceKeyPrefix + p.id), Value: v}}); err != nil {
		p.log.Warn("announce the instance", "partitions", in.Partitions, "err", err)
	}
}

// withdraw removes the instance's record when it stops.
func (p *Processor) withdraw() {
	p.announceMu.Lock()
	defer p.announceMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.prod.Produce(ctx, []bus.Message{{Topic: p.cfg.ConfigTopic, Key: []byte(InstanceKeyPrefix + p.id)}}); err != nil {
		p.log.Warn("withdraw the instance", "err", err)
	}
}
