// Package scheduler is `engage schedule`: the campaign scheduler as a
// Kafka service. It is the edge around the triggers package's Scheduler: a
// consumer group on the segment-changes topic (co-partitioned with the
// tags: a device is on the same partition number everywhere) in which one
// goroutine owns each assigned partition and that partition's Scheduler;
// the per-device states (memberships, caps, the sends waiting for their
// time) go to a compacted changelog topic and are restored from it when a
// partition is assigned; every send goes to the deliveries topic and every
// decision, with its reason, to the decisions topic.
//
// Order of effects at each flush, as in `engage process`: deliveries and
// decisions (acks=all), then the changed states and the partition's own
// record (its clock, the configuration version its states reflect, and the
// ends of its deliveries and decisions partitions once this flush's
// outputs are in) (acks=all), then the input offset commit. A crash
// anywhere in between replays input that restored states have already
// applied: each device's state keeps the position of the last input it
// applied and skips what it has seen. Outputs produced after the last
// state flush are found again at restore (the output topics are
// co-partitioned, and only the partition's owner writes that partition:
// they are the messages past the ends the partition's record noted) and
// are not produced a second time. Ids are deterministic, so a consumer
// that deduplicates on id is safe whatever happens.
//
// Time: on the wall clock, due sends fire at each flush tick (within
// FlushInterval of due); on the simulated clock, now is the newest time of
// the input (the processor's own clock, carried by every change), so that
// tests, replays and dry runs decide the same every time.
package scheduler

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/fault"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/engine"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/triggers"
)

// Config configures a scheduler instance.
type Config struct {
	Brokers         []string
	Group           string
	Topic           string // input: segment changes and forwarded records
	ChangelogTopic  string // compacted, co-partitioned with Topic
	DeliveriesTopic string
	DecisionsTopic  string
	ConfigTopic     string // campaigns and caps
	FlushInterval   time.Duration
	FlushRecords    int
	SimulatedClock  bool
	SessionTimeout  time.Duration
	// EvictAfter is the retention of devices without input: a device in
	// no segment, with nothing waiting and no history that still decides
	// anything is forgotten (tombstone) this long after its last input, or
	// EvictMargin after the processor evicted it (triggers/evict.go). Zero:
	// never.
	EvictAfter  time.Duration
	EvictMargin time.Duration
}

// DefaultConfig returns the defaults for the given brokers.
func DefaultConfig(brokers []string) Config {
	return Config{Brokers: brokers, Group: "engage-schedule", Topic: kafkabus.TopicSegmentChanges, ChangelogTopic: kafkabus.TopicSchedulerState,
		DeliveriesTopic: kafkabus.TopicDeliveries, DecisionsTopic: kafkabus.TopicDecisions, ConfigTopic: kafkabus.TopicConfig,
		FlushInterval: 100 * time.Millisecond, FlushRecords: 50000, SessionTimeout: 10 * time.Second,
		EvictAfter: processor.DefaultEvictAfter, EvictMargin: engine.DefaultEvictMargin}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("schedule: no Kafka brokers: set -kafka.brokers or ENGAGE_KAFKA_BROKERS")
	case c.Group == "" || c.Topic == "" || c.ChangelogTopic == "" || c.DeliveriesTopic == "" || c.DecisionsTopic == "" || c.ConfigTopic == "":
		return errors.New("schedule: group and topics must be set")
	case c.FlushInterval <= 0 || c.FlushRecords <= 0:
		return fmt.Errorf("schedule: flush interval %s and flush records %d must be positive", c.FlushInterval, c.FlushRecords)
	case c.EvictAfter < 0 || c.EvictMargin < 0:
		return fmt.Errorf("schedule: -schedule.evict-after %s and -schedule.evict-margin %s must not be negative", c.EvictAfter, c.EvictMargin)
	}
	return nil
}

// Service is one instance of `engage schedule`.
type Service struct {
	cfg   Config
	store *Store
	prod  bus.Producer
	log   *slog.Logger
	m     *metrics
	read  atomic.Int64
	ends  *kafkabus.Ends // where the outputs end, asked at each flush

	configured atomic.Bool  // the campaigns have been read
	restoring  atomic.Int32 // owned partitions whose state is being restored

	mu    sync.Mutex
	parts map[int]*partition
}

// partition is a partition this instance owns: requests run on its
// goroutine, the only one that touches its Scheduler.
type partition struct {
	reqs chan func(*triggers.Scheduler, time.Time)
	gone chan struct{}
}

// New returns a scheduler service that produces through prod (a producer
// whose messages name their topic; keys are placed by murmur2, as the
// input's).
func New(cfg Config, store *Store, prod bus.Producer, m *metrics, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = newMetrics(nil)
	}
	return &Service{cfg: cfg, store: store, prod: prod, log: log, m: m, parts: map[int]*partition{}, ends: kafkabus.NewEnds(cfg.Brokers)}, nil
}

// Records returns how many input messages this instance has read.
func (s *Service) Records() int64 { return s.read.Load() }

// Ready returns nil once the scheduler has read the campaigns, owns
// partitions of the input and has restored the state of each, else what
// it is still doing (for /readyz). An instance that owns no partition
// (joining the group, or more instances than partitions) is not ready: it
// does no work.
func (s *Service) Ready() error {
	if !s.configured.Load() {
		return errors.New("reading the campaigns")
	}
	s.mu.Lock()
	owned := len(s.parts)
	s.mu.Unlock()
	return kafkabus.GroupReady(s.cfg.Topic, owned, s.restoring.Load())
}

// Run follows the configuration, then consumes the input as a member of
// the group until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	parts, err := kafkabus.Partitions(ctx, s.cfg.Brokers)
	if err != nil {
		return err
	}
	in, ok := parts[s.cfg.Topic]
	if !ok {
		return fmt.Errorf("schedule: input topic %s does not exist (engage topics creates it)", s.cfg.Topic)
	}
	for _, t := range []string{s.cfg.ChangelogTopic, s.cfg.DeliveriesTopic, s.cfg.DecisionsTopic} {
		if n, ok := parts[t]; !ok || n != in {
			return fmt.Errorf("schedule: topic %s has %d partitions, the input %s has %d: they must be co-partitioned (engage topics)", t, n, s.cfg.Topic, in)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer s.ends.Close()
	ready := make(chan struct{})
	follow := make(chan error, 1)
	go func() {
		follow <- s.store.Follow(ctx, func(ctx context.Context, fn func(bus.Message, bool) error) error {
			return kafkabus.FollowPartition(ctx, s.cfg.Brokers, s.cfg.ConfigTopic, 0, fn)
		}, ready, func(err error) { s.log.Warn("campaign configuration", "err", err) })
	}()
	select {
	case <-ready:
	case err := <-follow:
		return fmt.Errorf("schedule: read the campaigns: %w", err)
	case <-ctx.Done():
		return nil
	}
	s.configured.Store(true)
	set, _ := s.store.Current()
	s.log.Info("campaigns loaded", "campaigns", len(set.Campaigns), "version", set.Version, "invalid", len(set.Errors))
	for id, err := range set.Errors {
		s.log.Warn("campaign not in force", "campaign", id, "err", err)
	}
	err = kafkabus.RunGroup(ctx, kafkabus.GroupConfig{Brokers: s.cfg.Brokers, Group: s.cfg.Group, Topic: s.cfg.Topic, SessionTimeout: s.cfg.SessionTimeout},
		s.log, func(ctx context.Context, c *kafkabus.Claim) error { return s.runPartition(ctx, c, in) })
	cancel()
	if ferr := <-follow; err == nil && ferr != nil {
		err = ferr
	}
	return err
}

// Each runs fn on every owned partition's goroutine in turn.
func (s *Service) Each(ctx context.Context, fn func(sc *triggers.Scheduler, now time.Time)) error {
	s.mu.Lock()
	parts := make([]*partition, 0, len(s.parts))
	for _, pt := range s.parts {
		parts = append(parts, pt)
	}
	s.mu.Unlock()
	for _, pt := range parts {
		done := make(chan struct{})
		select {
		case pt.reqs <- func(sc *triggers.Scheduler, now time.Time) { fn(sc, now); close(done) }:
		case <-pt.gone:
			continue
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ownKeyPrefix starts the changelog key of a partition's own record: two
// NUL bytes, which no device key (app/device) begins with.
const ownKeyPrefix = "\x00\x00schedule/"

// ownRecord is a partition's own record in the changelog.
//
//	byte   version (1)
//	8 bytes the clock, Unix ns (0: none), big-endian
//	8 bytes the configuration version the states reflect
//	8 bytes the end of the partition's deliveries after the flushed outputs
//	8 bytes the same for the decisions
type ownRecord struct {
	clock         int64
	configVersion int64
	deliveriesEnd int64
	decisionsEnd  int64
}

const ownRecordVersion = 1

func (r ownRecord) append(b []byte) []byte {
	b = append(b, ownRecordVersion)
	for _, v := range []int64{r.clock, r.configVersion, r.deliveriesEnd, r.decisionsEnd} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func decodeOwnRecord(b []byte) (ownRecord, error) {
	if len(b) != 33 || b[0] != ownRecordVersion {
		return ownRecord{}, fmt.Errorf("partition record of %d bytes, version %d: not one this version reads", len(b), firstByte(b))
	}
	v := func(i int) int64 { return int64(binary.BigEndian.Uint64(b[1+8*i:])) }
	return ownRecord{clock: v(0), configVersion: v(1), deliveriesEnd: v(2), decisionsEnd: v(3)}, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// owner is the state of one owned partition's goroutine.
type owner struct {
	s      *Service
	claim  *kafkabus.Claim
	sched  *triggers.Scheduler
	clock  time.Time // simulated: the newest input time
	own    ownRecord
	ownKey []byte
	// emitted holds the ids of outputs produced after the restored states
	// were written: a replay recomputes them, and they are not produced
	// again.
	emittedDel, emittedDec map[string]bool
	endStale               bool // outputs were produced since the ends were read

	decs       []triggers.Decision
	dels       []triggers.Delivery
	delAt      []time.Time // input time of the change that caused each delivery (zero: a timer)
	unsent     []bus.Message
	next       int64     // offset to commit
	pending    int       // input messages since the last commit
	sinceFlush int       // input messages since the last flush
	committed  time.Time // when the last commit was made
	rec        tag.Record
}

func (o *owner) now() time.Time {
	if o.s.cfg.SimulatedClock {
		return o.clock
	}
	return time.Now()
}

func (s *Service) runPartition(ctx context.Context, c *kafkabus.Claim, partitions int) error {
	start := time.Now()
	s.restoring.Add(1)
	restored := sync.OnceFunc(func() { s.restoring.Add(-1) })
	defer restored()
	o := &owner{s: s, claim: c, sched: triggers.New(), next: -1, own: ownRecord{deliveriesEnd: -1, decisionsEnd: -1},
		ownKey: kafkabus.PartitionKey(ownKeyPrefix+strconv.Itoa(c.Partition)+"/", c.Partition, partitions)}
	o.sched.SetEviction(s.cfg.EvictAfter, s.cfg.EvictMargin)
	set, changed := s.store.Current()
	// Restore under the current campaigns: a waiting send of a campaign
	// changed since its state was written is dropped with it (its version
	// differs), and the last send of each campaign is kept for its repeat
	// rules whatever its version.
	o.sched.SetCampaigns(set.Campaigns, set.Caps, time.Time{}, nil)
	n, err := kafkabus.ReadPartition(ctx, s.cfg.Brokers, s.cfg.ChangelogTopic, c.Partition, func(m bus.Message) error {
		if len(m.Key) > 2 && string(m.Key[:2]) == "\x00\x00" {
			if string(m.Key) == string(o.ownKey) && m.Value != nil {
				r, err := decodeOwnRecord(m.Value)
				if err != nil {
					return err
				}
				o.own = r
			}
			return nil
		}
		return o.sched.Restore(m.Key, m.Value)
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if o.own.clock != 0 {
		o.clock = time.Unix(0, o.own.clock).UTC()
	}
	// Campaigns saved since the states were written (a version past
	// theirs) start now as they would have live: the campaigns in force
	// then, and then the current ones, so that a one-off or recurring
	// campaign new since waits for the devices in its audience.
	var before []*triggers.Campaign
	for _, camp := range set.Campaigns {
		if camp.Version <= o.own.configVersion {
			before = append(before, camp)
		}
	}
	if len(before) < len(set.Campaigns) {
		o.decs = o.sched.SetCampaigns(before, set.Caps, o.clock, o.decs)
		o.decs = o.sched.SetCampaigns(set.Campaigns, set.Caps, o.now(), o.decs)
	} else {
		o.sched.SetCampaigns(set.Campaigns, set.Caps, o.now(), nil)
	}
	o.own.configVersion = set.Version
	o.emittedDel, o.emittedDec = map[string]bool{}, map[string]bool{}
	if err := o.readEmitted(ctx); err != nil {
		return err
	}
	from := c.Offset
	if from < 0 {
		if from, err = kafkabus.PartitionStart(ctx, s.cfg.Brokers, s.cfg.Topic, c.Partition); err != nil {
			return fmt.Errorf("start of the input partition: %w", err)
		}
	}
	s.m.restored.Add(float64(n))
	st := o.sched.Stats()
	s.log.Info("partition restored", "partition", c.Partition, "records", n, "waiting sends", st.Pending, "took", time.Since(start).Round(time.Millisecond), "from offset", from)
	restored()

	pt := &partition{reqs: make(chan func(*triggers.Scheduler, time.Time)), gone: make(chan struct{})}
	s.mu.Lock()
	s.parts[c.Partition] = pt
	s.mu.Unlock()
	defer func() {
		close(pt.gone)
		s.mu.Lock()
		if s.parts[c.Partition] == pt {
			delete(s.parts, c.Partition)
		}
		s.mu.Unlock()
	}()

	fctx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	msgs, fetchErr := c.Feed(fctx, 4096)
	tick := time.NewTicker(s.cfg.FlushInterval)
	defer tick.Stop()
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
			o.apply(m)
			if o.sinceFlush >= s.cfg.FlushRecords {
				if err := o.flushDetached(ctx); err != nil {
					return o.flushFailed(ctx, err)
				}
			}
		case <-tick.C:
			if !s.cfg.SimulatedClock {
				o.collect(time.Time{}, func() { o.decs, o.dels = o.sched.Advance(time.Now(), o.decs, o.dels) })
			}
			if err := o.flushDetached(ctx); err != nil {
				return o.flushFailed(ctx, err)
			}
		case <-changed:
			set, changed = s.store.Current()
			o.collect(time.Time{}, func() { o.decs = o.sched.SetCampaigns(set.Campaigns, set.Caps, o.now(), o.decs) })
			o.own.configVersion = set.Version
			s.log.Info("campaigns changed", "partition", c.Partition, "campaigns", len(set.Campaigns), "version", set.Version)
			if err := o.flushDetached(ctx); err != nil {
				return o.flushFailed(ctx, err)
			}
		case req := <-pt.reqs:
			req(o.sched, o.now())
		}
	}
}

// readEmitted reads the outputs produced past the ends the partition's
// record noted: produced after the last state flush, and recomputed by
// the replay that follows.
func (o *owner) readEmitted(ctx context.Context) error {
	for _, x := range []struct {
		topic string
		end   int64
		ids   map[string]bool
	}{{o.s.cfg.DeliveriesTopic, o.own.deliveriesEnd, o.emittedDel}, {o.s.cfg.DecisionsTopic, o.own.decisionsEnd, o.emittedDec}} {
		if x.end < 0 {
			continue
		}
		if _, err := kafkabus.ReadPartitionFrom(ctx, o.s.cfg.Brokers, x.topic, o.claim.Partition, x.end, func(m bus.Message) error {
			var v struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(m.Value, &v) == nil && v.ID != "" {
				x.ids[v.ID] = true
			}
			return nil
		}); err != nil {
			return fmt.Errorf("read %s produced since the last flush: %w", x.topic, err)
		}
	}
	return nil
}

// collect runs fn (which appends to o.decs and o.dels) and notes the
// input time of the deliveries it made.
func (o *owner) collect(at time.Time, fn func()) {
	fn()
	for len(o.delAt) < len(o.dels) {
		o.delAt = append(o.delAt, at)
	}
}

// apply applies one input message.
func (o *owner) apply(m bus.Message) {
	o.next = m.Offset + 1
	o.pending++
	o.sinceFlush++
	o.s.m.records.Inc()
	o.s.read.Add(1)
	var cm processor.ChangeMessage
	if err := json.Unmarshal(m.Value, &cm); err != nil {
		o.invalid(m, err)
		return
	}
	if o.s.cfg.SimulatedClock && cm.Time.After(o.clock) {
		o.clock = cm.Time.UTC()
	}
	seq := m.Offset + 1
	now := o.now()
	switch cm.Kind {
	case processor.KindRecord:
		if err := o.rec.UnmarshalBinary(cm.Record); err != nil {
			o.invalid(m, fmt.Errorf("forwarded record: %w", err))
			return
		}
		o.collect(m.Time, func() {
			o.decs, o.dels = o.sched.Advance(now, o.decs, o.dels)
			o.sched.ApplyRecord(&o.rec, seq)
		})
	case "":
		extras, err := processor.DecodeExtras(cm.Extras)
		if err != nil {
			o.s.log.Debug("extras of a change", "partition", m.Partition, "offset", m.Offset, "err", err) // the good ones are kept
		}
		ch := triggers.SegmentChange{App: cm.App, Segment: cm.Segment, DeviceID: cm.DeviceID, Enter: cm.Enter, Time: cm.Time, ID: cm.ID, Extras: extras, Seq: seq,
			Evicted: cm.Cause == engine.CauseEvicted}
		o.collect(m.Time, func() { o.decs, o.dels = o.sched.Apply(ch, now, o.decs, o.dels) })
	default:
		o.invalid(m, fmt.Errorf("unknown message kind %q", cm.Kind))
	}
}

func (o *owner) invalid(m bus.Message, err error) {
	o.s.m.invalid.Inc()
	o.s.log.Warn("input message skipped", "partition", m.Partition, "offset", m.Offset, "err", err)
}

// finalFlush writes what is done when the partition is stopping or
// moving, with a context of its own (the partition's has ended).
func (o *owner) finalFlush() error {
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.flush(fctx, true); err != nil {
		o.s.log.Warn("last flush of a partition", "partition", o.claim.Partition, "err", err)
	}
	return nil
}

// flushDetached flushes without letting a stop interrupt the writes half
// way; it gives up after 30 s.
func (o *owner) flushDetached(ctx context.Context) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return o.flush(fctx, false)
}

func (o *owner) flushFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return o.finalFlush()
	}
	return err
}

// HeaderChangeTime carries, on a delivery caused by a segment change, when
// that change was appended to the input topic (Unix nanoseconds), for
// measuring change → delivery latency.
const HeaderChangeTime = "engage-change-time"

// flush produces the deliveries and decisions, then the changed states
// and the partition's record, then commits.
func (o *owner) flush(ctx context.Context, final bool) error {
	s := o.s
	if len(o.decs) > 0 || len(o.dels) > 0 {
		msgs := make([]bus.Message, 0, len(o.decs)+len(o.dels))
		for i := range o.dels {
			d := &o.dels[i]
			if o.emittedDel[d.ID] {
				delete(o.emittedDel, d.ID)
				s.m.suppressed.Inc()
				continue
			}
			v, _ := json.Marshal(FromDelivery(d))
			m := bus.Message{Topic: s.cfg.DeliveriesTopic, Key: []byte(d.App + "/" + d.DeviceID), Value: v}
			if t := o.delAt[i]; !t.IsZero() {
				m.Headers = []bus.Header{{Key: HeaderChangeTime, Value: strconv.AppendInt(nil, t.UnixNano(), 10)}}
			}
			msgs = append(msgs, m)
			s.m.deliveries.Inc()
		}
		for i := range o.decs {
			d := &o.decs[i]
			if o.emittedDec[d.ID] {
				delete(o.emittedDec, d.ID)
				s.m.suppressed.Inc()
				continue
			}
			v, _ := json.Marshal(FromDecision(d))
			msgs = append(msgs, bus.Message{Topic: s.cfg.DecisionsTopic, Key: []byte(d.App + "/" + d.DeviceID), Value: v})
			s.m.decisions.WithLabelValues(string(d.Outcome)).Inc()
		}
		if err := s.produce(ctx, msgs); err != nil {
			return err
		}
		fault.Reach("after-outputs")
		o.endStale = o.endStale || len(msgs) > 0
		clear(o.decs)
		clear(o.dels)
		o.decs, o.dels, o.delAt = o.decs[:0], o.dels[:0], o.delAt[:0]
	}
	// States wait in o.unsent until written: Dirty hands each change out
	// once, and a failed write must not lose it.
	o.sched.Dirty(func(key, state []byte) {
		m := bus.Message{Topic: s.cfg.ChangelogTopic, Key: append([]byte(nil), key...)}
		if state != nil {
			m.Value = append([]byte(nil), state...)
		}
		o.unsent = append(o.unsent, m)
	})
	if len(o.unsent) > 0 || o.sinceFlush > 0 || o.endStale || o.own.deliveriesEnd < 0 {
		if o.endStale || o.own.deliveriesEnd < 0 || o.own.decisionsEnd < 0 {
			ends, err := s.ends.Of(ctx, o.claim.Partition, s.cfg.DeliveriesTopic, s.cfg.DecisionsTopic)
			if err != nil {
				return err
			}
			o.own.deliveriesEnd, o.own.decisionsEnd, o.endStale = ends[0], ends[1], false
		}
		o.own.clock = 0
		if t := o.sched.Clock(); s.cfg.SimulatedClock && !o.clock.IsZero() {
			o.own.clock = o.clock.UnixNano()
		} else if !t.IsZero() {
			o.own.clock = t.UnixNano()
		}
		msgs := append(o.unsent, bus.Message{Topic: s.cfg.ChangelogTopic, Key: o.ownKey, Value: o.own.append(nil)})
		if err := s.produce(ctx, msgs); err != nil {
			return err
		}
		s.m.states.Add(float64(len(msgs)))
		clear(o.unsent)
		o.unsent = o.unsent[:0]
		fault.Reach("after-states")
	}
	o.sinceFlush = 0
	s.m.pending.WithLabelValues(strconv.Itoa(o.claim.Partition)).Set(float64(o.sched.Stats().Pending))
	// The commit only bounds what a restart replays (the states say what
	// each device applied): at most once a second, and at the last flush.
	// (kafka-go's commits of the partitions share one connection to the
	// coordinator and cost CPU waiting for it: a commit per flush was a
	// tenth of the service's CPU at 50k changes/s.)
	if o.next >= 0 && o.pending > 0 && (final || time.Since(o.committed) >= commitEvery) {
		if err := o.claim.Commit(o.next); err != nil {
			s.log.Warn("commit failed", "partition", o.claim.Partition, "offset", o.next, "err", err)
			return nil
		}
		o.pending, o.committed = 0, time.Now()
	}
	return nil
}

// commitEvery is how often a partition commits its input offset.
const commitEvery = time.Second

// produce writes msgs, retrying while Kafka is unavailable, until ctx ends.
func (s *Service) produce(ctx context.Context, msgs []bus.Message) error {
	return bus.ProduceRetrying(ctx, s.prod, msgs, func(err error, wait time.Duration) {
		s.log.Warn("produce failed; retrying", "err", err, "in", wait)
	})
}
