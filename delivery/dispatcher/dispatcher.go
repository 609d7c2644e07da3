// Package dispatcher is `engage deliver`: a consumer group on the
// scheduler's deliveries that sends each to APNs or FCM (delivery's
// senders) at most once, and reports what happened.
//
// At most once, none lost: before a delivery is sent, its attempt is
// written to the partition's compacted changelog (acks=all); after the
// provider answers, the attempt becomes done, with the result; then the
// decisions and feedback are written, then the input offset is committed.
// A delivery read again after a crash is never sent again: done, its
// outputs are written again (with the same ids, for consumers that
// deduplicate on id); attempted but not done, its outcome is unknown, and
// it is reported as such, not resent. Attempts are deleted (tombstones)
// once the commit has passed them.
//
// Each provider answer takes its path (delivery.Result): sent; token dead
// (the token is kept as dead in the changelog, and later deliveries to it
// are unreachable until the device sends another; a push record
// "token_dead" of the device goes to the tags topic, from which the
// processor forwards it to the scheduler, which forgets the token); retried with
// exponential backoff and jitter, honouring Retry-After; the app paused
// when its credentials are refused, without stalling the other apps;
// refused. Expired deliveries and deliveries without a live token are
// decided without a send. In-app deliveries go to the device's inbox
// (engage.inbox, package inbox), which the collector serves to the app.
package dispatcher

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/openengage/engage/delivery"
	"github.com/openengage/engage/pipeline/backoff"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// Sender sends one delivery and classifies the answer.
type Sender interface {
	Send(ctx context.Context, d *scheduler.DeliveryMessage) delivery.Result
}

// Senders gives the sender of an app and provider (false: the app has no
// credentials for it).
type Senders func(app string, provider tag.PushProvider) (Sender, bool)

// The dispatcher's outcomes, next to the scheduler's (engage.decisions).
const (
	OutcomeAccepted    triggers.Outcome = "accepted"    // the provider took it
	OutcomeUnreachable triggers.Outcome = "unreachable" // no live push token, or no credentials for the provider
	OutcomeFailed      triggers.Outcome = "failed"      // the provider refused it, or declared the token dead, or retries ran out
	OutcomeUnknown     triggers.Outcome = "unknown"     // attempted before a crash, outcome unknown: not resent
)

// Config configures a dispatcher instance.
type Config struct {
	Brokers        []string
	Group          string
	Topic          string // the deliveries
	ChangelogTopic string // compacted, co-partitioned with Topic
	DecisionsTopic string
	FeedbackTopic  string
	InboxTopic     string        // compacted, co-partitioned: each device's in-app messages
	TagsTopic      string        // where a dead token is reported, as a push record of the device
	FlushInterval  time.Duration // longest wait of a batch
	Batch          int           // deliveries sent together at most
	InFlight       int           // sends in flight per partition
	MaxAttempts    int           // tries of a delivery the providers keep failing
	RetryBase      time.Duration // first backoff; doubles, with jitter
	RetryMax       time.Duration
	AuthPause      time.Duration // how long an app whose credentials were refused waits
	MaxWaiting     int           // deliveries waiting for another try, per partition, before no more are read
	SessionTimeout time.Duration
	// SimulatedClock judges each delivery's expiry, and stamps its
	// decisions and feedback, at the delivery's own time (when it was
	// decided) instead of the wall clock: the scheduler's simulated clock
	// carried on (replays, tests). Waits between tries stay on the wall
	// clock.
	SimulatedClock bool
}

// DefaultConfig returns the defaults for the given brokers.
func DefaultConfig(brokers []string) Config {
	return Config{Brokers: brokers, Group: "engage-deliver", Topic: kafkabus.TopicDeliveries, ChangelogTopic: kafkabus.TopicDispatcherState,
		DecisionsTopic: kafkabus.TopicDecisions, FeedbackTopic: kafkabus.TopicFeedback, InboxTopic: kafkabus.TopicInbox, TagsTopic: kafkabus.TopicTags, FlushInterval: 20 * time.Millisecond, Batch: 2000,
		InFlight: 1000, MaxAttempts: 8, RetryBase: time.Second, RetryMax: 5 * time.Minute, AuthPause: time.Minute, MaxWaiting: 100000, SessionTimeout: 10 * time.Second}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("deliver: no Kafka brokers: set -kafka.brokers or ENGAGE_KAFKA_BROKERS")
	case c.Group == "" || c.Topic == "" || c.ChangelogTopic == "" || c.DecisionsTopic == "" || c.FeedbackTopic == "" || c.InboxTopic == "" || c.TagsTopic == "":
		return errors.New("deliver: group and topics must be set")
	case c.FlushInterval <= 0 || c.Batch <= 0 || c.InFlight <= 0 || c.MaxAttempts <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase || c.AuthPause <= 0 || c.MaxWaiting <= 0:
		return fmt.Errorf("deliver: flush interval, batch, in flight, attempts, retry and pause durations must be positive (retry max ≥ base)")
	}
	return nil
}

// Feedback is what happened to a delivery, as engage.feedback carries it
// (JSON; key app/device): the statistics read it.
type Feedback struct {
	ID         string           `json:"id"` // deterministic: the delivery id and the result
	DeliveryID string           `json:"delivery_id"`
	App        string           `json:"app"`
	Campaign   string           `json:"campaign"`
	Version    int64            `json:"version"`
	Variant    string           `json:"variant,omitempty"`
	DeviceID   string           `json:"device_id"`
	Channel    triggers.Channel `json:"channel"`
	Provider   string           `json:"provider,omitempty"`
	Outcome    triggers.Outcome `json:"outcome"`
	Reason     string           `json:"reason,omitempty"`
	ProviderID string           `json:"provider_id,omitempty"`
	Attempts   int              `json:"attempts"`
	Time       time.Time        `json:"time"`
}

// Dispatcher is one instance of `engage deliver`.
type Dispatcher struct {
	cfg     Config
	senders Senders
	prod    bus.Producer
	log     *slog.Logger
	m       *metrics

	mu     sync.Mutex
	paused map[string]time.Time // app → paused until (credentials refused)
}

// New returns a dispatcher producing through prod.
func New(cfg Config, senders Senders, prod bus.Producer, m *metrics, log *slog.Logger) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = newMetrics(nil)
	}
	return &Dispatcher{cfg: cfg, senders: senders, prod: prod, log: log, m: m, paused: map[string]time.Time{}}, nil
}

// Run consumes the deliveries as a member of the group until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	parts, err := kafkabus.Partitions(ctx, d.cfg.Brokers)
	if err != nil {
		return err
	}
	in, ok := parts[d.cfg.Topic]
	if !ok {
		return fmt.Errorf("deliver: input topic %s does not exist (engage topics creates it)", d.cfg.Topic)
	}
	for _, t := range []string{d.cfg.ChangelogTopic, d.cfg.InboxTopic} {
		if n, ok := parts[t]; !ok || n != in {
			return fmt.Errorf("deliver: topic %s has %d partitions, the input %s has %d: they must be co-partitioned (engage topics)", t, n, d.cfg.Topic, in)
		}
	}
	return kafkabus.RunGroup(ctx, kafkabus.GroupConfig{Brokers: d.cfg.Brokers, Group: d.cfg.Group, Topic: d.cfg.Topic, SessionTimeout: d.cfg.SessionTimeout},
		d.log, func(ctx context.Context, c *kafkabus.Claim) error { return d.runPartition(ctx, c, in) })
}

// pausedUntil returns until when an app is paused (zero: it is not).
func (d *Dispatcher) pausedUntil(app string, now time.Time) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t := d.paused[app]; t.After(now) {
		return t
	}
	return time.Time{}
}

func (d *Dispatcher) pause(app, reason string, now time.Time) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	until := now.Add(d.cfg.AuthPause)
	if d.paused[app].Before(now) {
		d.log.Error("app paused: its credentials were refused; fix them (the deliveries wait)", "app", app, "reason", reason, "until", until)
		d.m.paused.WithLabelValues(app).Inc()
	}
	d.paused[app] = until
	return until
}

// Changelog keys: "a/" + delivery id (an attempt), "t/" + app/device (a
// dead token), each followed by "/" and a counter that puts it on the
// partition of its delivery (owner.key).
const (
	attemptPrefix = "a/"
	deadPrefix    = "t/"
)

// attempt is a delivery's state in the changelog:
//
//	byte    version (1)
//	byte    1: being sent, 2: done, 3: waiting for another try (known not sent)
//	varint  input offset
//	(done)  uvarint len + outcome, uvarint len + reason, uvarint len + provider id, uvarint attempts
type attempt struct {
	done     bool
	retry    bool
	offset   int64
	outcome  triggers.Outcome
	reason   string
	provID   string
	attempts int
}

func (a attempt) encode() []byte {
	b := []byte{1, 1}
	switch {
	case a.done:
		b[1] = 2
	case a.retry:
		b[1] = 3
	}
	b = binary.AppendVarint(b, a.offset)
	if a.done {
		for _, s := range []string{string(a.outcome), a.reason, a.provID} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.AppendUvarint(b, uint64(a.attempts))
	}
	return b
}

func decodeAttempt(b []byte) (attempt, error) {
	bad := func(what string) (attempt, error) {
		return attempt{}, fmt.Errorf("dispatcher attempt record: %s", what)
	}
	if len(b) < 2 || b[0] != 1 || b[1] < 1 || b[1] > 3 {
		return bad("unknown version or state")
	}
	a := attempt{done: b[1] == 2, retry: b[1] == 3}
	off, n := binary.Varint(b[2:])
	if n <= 0 {
		return bad("offset")
	}
	a.offset, b = off, b[2+n:]
	if !a.done {
		return a, nil
	}
	var ss [3]string
	for i := range ss {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return bad("string")
		}
		ss[i], b = string(b[n:n+int(l)]), b[n+int(l):]
	}
	at, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) {
		return bad("attempts")
	}
	a.outcome, a.reason, a.provID, a.attempts = triggers.Outcome(ss[0]), ss[1], ss[2], int(at)
	switch a.outcome {
	case OutcomeAccepted, OutcomeFailed, OutcomeUnreachable, OutcomeUnknown, triggers.OutcomeExpired:
		return a, nil
	}
	return bad(fmt.Sprintf("unknown outcome %q", a.outcome))
}

// deadToken is a token a provider declared dead: "provider\x00token\x00reason\x00unix".
type deadToken struct {
	provider, token, reason string
	at                      int64
}

func (t deadToken) encode() []byte {
	return []byte(strings.Join([]string{t.provider, t.token, t.reason, fmt.Sprint(t.at)}, "\x00"))
}

func decodeDead(b []byte) (deadToken, error) {
	f := strings.Split(string(b), "\x00")
	if len(f) != 4 {
		return deadToken{}, errors.New("dispatcher dead-token record: not 4 fields")
	}
	var at int64
	if _, err := fmt.Sscan(f[3], &at); err != nil {
		return deadToken{}, fmt.Errorf("dispatcher dead-token record: time: %w", err)
	}
	return deadToken{provider: f[0], token: f[1], reason: f[2], at: at}, nil
}

// idOf is a deterministic id for an output about a delivery.
func idOf(parts ...string) string { return triggers.HashID(parts...) }

// retryWait is the wait before try n (1-based) of a delivery: exponential
// from base, capped, with jitter in its upper half (backoff.Policy's equal
// jitter: a provider that is struggling sees the retries spread out, never
// bunched near zero); at least the provider's Retry-After.
func retryWait(n int, base, maxWait, retryAfter time.Duration) time.Duration {
	p := backoff.Policy{Min: base, Max: maxWait, Floor: 0.5}
	return max(p.Delay(n-1, nil), retryAfter)
}

// sortedKeys returns a map's keys in order (deterministic output order).
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
