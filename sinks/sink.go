package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/openengage/engage/pipeline/backoff"
	"github.com/openengage/engage/pipeline/bus"
)

// Source is a consumer-group member. Fetch is called from one goroutine and
// Commit from another, concurrently.
type Source interface {
	Fetch(ctx context.Context) (bus.Message, error)
	Commit(ctx context.Context, msgs []bus.Message) error
}

// Writer writes a batch to the store. It returns the messages that can
// never be written (undecodable, refused by the store for what they are)
// with the reason, and an error when the store could not take the batch
// now, in which case the sink retries the whole batch: writing the same
// messages twice must not count them twice.
type Writer interface {
	Write(ctx context.Context, msgs []bus.Message) (dead []Dead, err error)
}

// Dead is a message that can never be written, and why.
type Dead struct {
	Msg    bus.Message
	Reason string
}

// Config configures the batching and the retries.
type Config struct {
	BatchRows     int           // flush at this many messages
	BatchBytes    int           // or this many bytes of values
	FlushInterval time.Duration // or this long after the batch's first message
	BackoffMin    time.Duration // ceiling of the first retry delay of a failed write (full jitter: pipeline/backoff)
	BackoffMax    time.Duration
	// DrainTimeout bounds, once Run's ctx ends, how long the batches being
	// written then may take to be written and committed; 0: they are
	// abandoned at once (their records are read again after a restart).
	DrainTimeout time.Duration
	// Transient, if set, tells a write error that may go away by itself
	// (clickhouse.Transient: the server unreachable or overloaded) from one
	// that needs a person (wrong credentials, a missing table). Both are
	// retried, as the rows must wait for the fix either way, but the second
	// kind is logged as an error naming it and retried only every
	// BackoffMax.
	Transient func(error) bool
	DeadTopic string // dead-letter topic
	Writers   int    // batches written at once (their commits stay in order)
	// LogInterval is how often the sink logs what it wrote since the last
	// line and its lag (when the stream is idle and caught up, once); 0:
	// never.
	LogInterval time.Duration
}

// Defaults.
const (
	DefaultBatchRows     = 100000
	DefaultBatchBytes    = 32 << 20
	DefaultFlushInterval = time.Second
	DefaultLogInterval   = 10 * time.Second
	DefaultDrainTimeout  = 30 * time.Second
)

// DefaultConfig returns the defaults.
func DefaultConfig(deadTopic string) Config {
	return Config{BatchRows: DefaultBatchRows, BatchBytes: DefaultBatchBytes, FlushInterval: DefaultFlushInterval,
		BackoffMin: 100 * time.Millisecond, BackoffMax: 10 * time.Second, DeadTopic: deadTopic, Writers: 2,
		LogInterval: DefaultLogInterval, DrainTimeout: DefaultDrainTimeout}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.BatchRows < 1 || c.BatchBytes < 1 || c.FlushInterval <= 0 {
		return fmt.Errorf("sink: batch rows %d, bytes %d and flush interval %s must be positive", c.BatchRows, c.BatchBytes, c.FlushInterval)
	}
	if c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin {
		return fmt.Errorf("sink: backoff min %s must be positive and max %s at least min", c.BackoffMin, c.BackoffMax)
	}
	if c.DeadTopic == "" {
		return errors.New("sink: no dead-letter topic")
	}
	if c.DrainTimeout < 0 {
		return fmt.Errorf("sink: drain timeout %s is negative", c.DrainTimeout)
	}
	if c.LogInterval < 0 {
		return fmt.Errorf("sink: log interval %s is negative", c.LogInterval)
	}
	return nil
}

// Sink is the batching loop of one stream.
type Sink struct {
	cfg  Config
	src  Source
	w    Writer
	dead bus.Producer
	log  *slog.Logger
	m    *metrics
	name string
	lag  func(context.Context) (int64, error)
}

// SetLag gives the sink what tells its consumer lag (the messages of its
// topic its group has not committed), for its periodic log line. Call it
// before Run.
func (s *Sink) SetLag(lag func(context.Context) (int64, error)) { s.lag = lag }

// New returns a sink; dead receives the dead letters.
func New(cfg Config, src Source, w Writer, dead bus.Producer, name string, reg prometheus.Registerer, log *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sink{cfg: cfg, src: src, w: w, dead: dead, log: log.With("stream", name), m: newMetrics(reg, name), name: name}, nil
}

// Run consumes until ctx ends. Collecting batches, writing them (up to
// Config.Writers at once, so that preparing one batch overlaps the store's
// work on another) and committing are pipelined; commits happen in batch
// order, each only after its batch and every batch before it were written.
//
// When ctx ends (SIGTERM) the sink drains: it stops fetching and starts no
// new batch, but the batches being written go on being written (retried if
// need be) and are committed, for up to Config.DrainTimeout. A batch still
// being collected, or collected but not yet handed to a writer, is not
// written: its messages are redelivered to whoever reads next, as are those
// of the writes the drain timeout cuts short.
func (s *Sink) Run(ctx context.Context) (err error) {
	started := time.Now()
	defer func() {
		t, ran := s.m.totals(), time.Since(started)
		args := []any{"ran", ran, "rows", t.rows, "dead_letters", t.dead, "batches", t.batches}
		msg := fmt.Sprintf("sink: stream %s stopped after %s: %d rows written, %d dead letters", s.name, roundDuration(ran), t.rows, t.dead)
		if err != nil {
			s.log.Error(msg+", on an error", append(args, "err", err)...)
			return
		}
		s.log.Info(msg, args...)
	}()
	// work lives on after ctx ends, for the drain: until the drain timeout
	// or an error of the sink's own.
	work, endWork := context.WithCancelCause(context.WithoutCancel(ctx))
	defer endWork(nil)
	stopDrainTimer := context.AfterFunc(ctx, func() {
		if s.cfg.DrainTimeout <= 0 {
			endWork(errDrainTimeout)
			return
		}
		s.log.Info("sink: stopping; finishing the batches being written", "drain_timeout", s.cfg.DrainTimeout)
		time.AfterFunc(s.cfg.DrainTimeout, func() { endWork(errDrainTimeout) })
	})
	defer stopDrainTimer()
	g, gctx := errgroup.WithContext(work)
	// fctx ends with ctx (or an error): fetching and starting batches.
	fctx, endFetch := context.WithCancel(gctx)
	defer endFetch()
	defer context.AfterFunc(ctx, endFetch)()
	if s.cfg.LogInterval > 0 {
		first := s.m.totals()
		g.Go(func() error { s.logProgress(fctx, first, started); return nil })
	}
	writers := max(1, s.cfg.Writers)
	batches := make(chan []bus.Message, 1)
	// written carries, in batch order, a channel that is closed when the
	// batch has been written.
	type pending struct {
		batch []bus.Message
		done  chan error
	}
	written := make(chan pending, writers)
	slots := semaphore.NewWeighted(int64(writers))
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
	g.Go(func() error {
		defer close(batches)
		for {
			batch, err := s.collect(fctx)
			if err != nil {
				if fctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("sink fetch: %w", err)
			}
			select {
			case batches <- batch:
			case <-fctx.Done():
				return nil
			}
		}
	})
	g.Go(func() error {
		defer close(written)
		for batch := range batches {
			// A writer (at most Writers batches are being written), then
			// the batch's place in the commit order.
			if slots.Acquire(fctx, 1) != nil {
				return nil
			}
			p := pending{batch: batch, done: make(chan error, 1)}
			select {
			case written <- p:
			case <-fctx.Done():
				slots.Release(1)
				return nil
			}
			if fctx.Err() != nil { // both were ready: ctx has ended, start nothing new
				slots.Release(1)
				p.done <- errNotStarted
				return nil
			}
			inFlight.Go(func() {
				err := s.write(gctx, p.batch)
				slots.Release(1)
				p.done <- err
			})
		}
		return nil
	})
	g.Go(func() error {
		var abandoned int
		defer func() {
			for p := range written {
				if err := <-p.done; err != nil && err != errNotStarted {
					abandoned++
				}
			}
			if abandoned > 0 && ctx.Err() != nil {
				s.log.Warn("sink: stopped before every batch in flight was written; their records are read again after a restart",
					"batches", abandoned, "drain_timeout", s.cfg.DrainTimeout)
			}
		}()
		for p := range written {
			if err := <-p.done; err != nil {
				if err != errNotStarted {
					abandoned++
				}
				if gctx.Err() != nil || fctx.Err() != nil {
					return nil
				}
				return err
			}
			if err := s.retry(gctx, "commit", func() error { return s.src.Commit(gctx, p.batch) }); err != nil {
				if gctx.Err() != nil {
					return nil
				}
				return err
			}
			s.m.batches.Inc()
			s.m.nBatches.Add(1)
		}
		return nil
	})
	return g.Wait()
}

// errDrainTimeout ends the writes still going on when the drain timeout has
// passed after Run's ctx ended.
var errDrainTimeout = errors.New("sink: drain timeout passed")

// errNotStarted is the outcome of a batch that was not handed to a writer
// because ctx had ended.
var errNotStarted = errors.New("sink: stopping, batch not written")

// roundDuration rounds d for a person: 850ms, 1.2s, 3m7s.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// logProgress logs, every LogInterval until ctx ends, the rows written and
// dead-lettered since the last line and the consumer lag; an idle stream
// with no lag says so once, then nothing until it writes again.
func (s *Sink) logProgress(ctx context.Context, last totals, lastAt time.Time) {
	tick := time.NewTicker(s.cfg.LogInterval)
	defer tick.Stop()
	idleSaid := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now, at := s.m.totals(), time.Now()
		args := []any{"rows", now.rows - last.rows, "dead_letters", now.dead - last.dead, "batches", now.batches - last.batches,
			"interval", at.Sub(lastAt)}
		lag := int64(-1)
		if s.lag != nil {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			l, err := s.lag(lctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				s.log.Warn("sink: consumer lag unknown", "err", err)
			} else {
				lag = l
				args = append(args, "lag", l)
			}
		}
		// Idle: nothing written and nothing left to read (a commit of a
		// batch written before is not news).
		idle := now.rows == last.rows && now.dead == last.dead && lag <= 0
		if !idle || !idleSaid {
			msg := "sink: written"
			if idle {
				msg = "sink: idle, nothing to write"
			}
			s.log.Info(msg, args...)
		}
		idleSaid = idle
		last, lastAt = now, at
	}
}

// collect fetches until the batch is full or FlushInterval has passed since
// its first message.
func (s *Sink) collect(ctx context.Context) ([]bus.Message, error) {
	batch := make([]bus.Message, 0, min(s.cfg.BatchRows, 8192))
	bytes := 0
	// Until the first record, wait as long as it takes; from it on, until
	// the flush interval has passed (one timer per batch, not one context
	// per fetch).
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var flush *time.Timer
	defer func() {
		if flush != nil {
			flush.Stop()
		}
	}()
	for len(batch) < s.cfg.BatchRows && bytes < s.cfg.BatchBytes {
		m, err := s.src.Fetch(fctx)
		if err != nil {
			if len(batch) > 0 && ctx.Err() == nil && errors.Is(context.Cause(fctx), errFlushDue) {
				break // the interval has passed: flush what we have
			}
			return nil, err
		}
		if len(batch) == 0 {
			flush = time.AfterFunc(s.cfg.FlushInterval, func() { cancel(errFlushDue) })
		}
		batch = append(batch, m)
		bytes += len(m.Value)
	}
	return batch, nil
}

// errFlushDue ends a batch's fetching when its flush interval has passed.
var errFlushDue = errors.New("flush interval passed")

// write writes the batch (retrying until it is written or ctx ends) and
// sends its dead letters.
func (s *Sink) write(ctx context.Context, batch []bus.Message) error {
	start := time.Now()
	var dead []Dead
	err := s.retry(ctx, "write", func() error {
		var err error
		dead, err = s.w.Write(ctx, batch)
		if err != nil && ctx.Err() == nil && s.cfg.Transient != nil && !s.cfg.Transient(err) {
			return &setupError{backoff.WithRetryAfter(err, s.cfg.BackoffMax)}
		}
		return err
	})
	if err != nil {
		return err
	}
	s.m.insert.Observe(time.Since(start).Seconds())
	if len(dead) > 0 {
		if err := s.retry(ctx, "dead letters", func() error { return s.sendDead(ctx, dead) }); err != nil {
			return err
		}
	}
	s.m.rows.Add(float64(len(batch) - len(dead)))
	s.m.dead.Add(float64(len(dead)))
	s.m.nRows.Add(int64(len(batch) - len(dead)))
	s.m.nDead.Add(int64(len(dead)))
	return nil
}

func (s *Sink) sendDead(ctx context.Context, dead []Dead) error {
	msgs := make([]bus.Message, len(dead))
	for i, d := range dead {
		s.log.Warn("dead letter", "topic", d.Msg.Topic, "partition", d.Msg.Partition, "offset", d.Msg.Offset, "reason", d.Reason)
		msgs[i] = bus.Message{Topic: s.cfg.DeadTopic, Key: d.Msg.Key, Value: d.Msg.Value, Time: d.Msg.Time, Headers: []bus.Header{
			{Key: "reason", Value: []byte(d.Reason)},
			{Key: "source_topic", Value: []byte(d.Msg.Topic)},
			{Key: "source_partition", Value: []byte(strconv.Itoa(d.Msg.Partition))},
			{Key: "source_offset", Value: []byte(strconv.FormatInt(d.Msg.Offset, 10))},
		}}
	}
	return s.dead.Produce(ctx, msgs)
}

// retry runs op until it succeeds or ctx ends, waiting between tries as
// the backoff policy of the configuration says (exponential from BackoffMin
// to BackoffMax, full jitter).
func (s *Sink) retry(ctx context.Context, what string, op func() error) error {
	p := backoff.Policy{Min: s.cfg.BackoffMin, Max: s.cfg.BackoffMax}
	return backoff.RetryNotify(ctx, p, func(context.Context) error { return op() }, nil, func(err error, attempt int, wait time.Duration) {
		s.m.errors.WithLabelValues(what).Inc()
		if se := (*setupError)(nil); errors.As(err, &se) {
			s.log.Error("sink: "+what+" failed on an error that will not go away by itself (check the credentials, the schema); retrying",
				"op", what, "attempt", attempt, "retry_in", wait, "err", errors.Unwrap(se.error))
			return
		}
		s.log.Warn("sink: "+what+" failed; retrying", "op", what, "attempt", attempt, "retry_in", wait, "err", err)
	})
}

// setupError marks a write error that Config.Transient says needs a person.
type setupError struct{ error }

func (e *setupError) Unwrap() error { return e.error }
