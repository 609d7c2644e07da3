package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/openengage/engage/delivery"
	"github.com/openengage/engage/delivery/inbox"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/fault"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// item is a delivery read from the input and not finished.
type item struct {
	d      scheduler.DeliveryMessage
	offset int64
	tries  int
	next   time.Time // when it may be tried (again)
	res    delivery.Result
}

// owner is the state of one owned partition's goroutine.
type owner struct {
	d        *Dispatcher
	claim    *kafkabus.Claim
	attempts map[string]attempt         // delivery id → state, until the commit passes it
	dead     map[string]deadToken       // app/device → the token a provider declared dead
	waiting  []*item                    // to try again, by next
	states   []bus.Message              // changelog writes not yet made
	outs     []bus.Message              // decisions and feedback not yet written
	next     int64                      // offset after the last delivery read
	commit   int64                      // last offset committed
	parts    int                        // partitions of the input
	inbox    map[string][]inbox.Message // app/device → its in-app messages
}

// at is the time a delivery is handled at, its expiry judged at: the wall
// clock, or on the simulated clock the delivery's own time (when a live
// dispatcher, keeping up, would have read it).
func (o *owner) at(it *item, wall time.Time) time.Time {
	if o.d.cfg.SimulatedClock {
		return it.d.Time
	}
	return wall
}

// key is the changelog key of a record of this partition: prefix, then a
// counter that makes the producer (murmur2 on the key) put it on this
// partition, as the input's (a restore reads only its own partition).
func (o *owner) key(prefix string) []byte {
	return kafkabus.PartitionKey(prefix+"/", o.claim.Partition, o.parts)
}

// unkey strips what key added: the name after the prefix.
func unkey(k, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(k, prefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return "", false
	}
	return rest[:i], true
}

func (d *Dispatcher) runPartition(ctx context.Context, c *kafkabus.Claim, parts int) error {
	o := &owner{d: d, claim: c, attempts: map[string]attempt{}, dead: map[string]deadToken{}, next: -1, commit: -1, parts: parts,
		inbox: map[string][]inbox.Message{}}
	n, err := kafkabus.ReadPartition(ctx, d.cfg.Brokers, d.cfg.ChangelogTopic, c.Partition, func(m bus.Message) error {
		k := string(m.Key)
		if id, ok := unkey(k, attemptPrefix); ok {
			if m.Value == nil {
				delete(o.attempts, id)
				return nil
			}
			a, err := decodeAttempt(m.Value)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			o.attempts[id] = a
		} else if dev, ok := unkey(k, deadPrefix); ok {
			if m.Value == nil {
				delete(o.dead, dev)
				return nil
			}
			t, err := decodeDead(m.Value)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			o.dead[dev] = t
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if _, err := kafkabus.ReadPartition(ctx, d.cfg.Brokers, d.cfg.InboxTopic, c.Partition, func(m bus.Message) error {
		msgs, err := inbox.Decode(m.Value)
		if err != nil {
			d.log.Warn("inbox record skipped", "key", string(m.Key), "err", err)
			return nil
		}
		if len(msgs) == 0 {
			delete(o.inbox, string(m.Key))
		} else {
			o.inbox[string(m.Key)] = msgs
		}
		return nil
	}); err != nil {
		return fmt.Errorf("restore the inboxes: %w", err)
	}
	d.log.Info("partition restored", "partition", c.Partition, "records", n, "attempts", len(o.attempts), "dead tokens", len(o.dead), "inboxes", len(o.inbox), "from offset", c.Offset)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	msgs, fetchErr := c.Feed(fctx, 4*d.cfg.Batch)
	tick := time.NewTicker(d.cfg.FlushInterval)
	defer tick.Stop()
	var batch []*item
	for {
		// Bounded: while too many deliveries wait for another try (an app
		// paused, a provider refusing), no more are read.
		in := msgs
		if len(o.waiting) >= d.cfg.MaxWaiting {
			in = nil
		}
		select {
		case <-ctx.Done():
			return o.last(batch)
		case err := <-fetchErr:
			return fmt.Errorf("fetch: %w", err)
		case m, ok := <-in:
			if !ok {
				return o.last(batch)
			}
			if it := o.read(m); it != nil {
				batch = append(batch, it)
			}
			if len(batch) < d.cfg.Batch {
				continue
			}
		case <-tick.C:
		}
		batch = o.due(batch, time.Now())
		// A batch under way finishes even when the partition is stopping
		// or moving: cancelling its sends would leave their outcome
		// unknown, and the next owner could not send them again.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		err := o.process(pctx, batch)
		cancel()
		if err != nil {
			return err
		}
		clear(batch)
		batch = batch[:0]
	}
}

// last writes what is done when the partition stops; the deliveries read
// and not sent are read again by the next owner.
func (o *owner) last(batch []*item) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.write(ctx, batch); err != nil {
		o.d.log.Warn("last flush of a partition", "partition", o.claim.Partition, "err", err)
	}
	return nil
}

// read decodes one input message.
func (o *owner) read(m bus.Message) *item {
	o.next = m.Offset + 1
	o.d.m.read.Inc()
	it := &item{offset: m.Offset}
	if err := json.Unmarshal(m.Value, &it.d); err != nil || it.d.ID == "" || it.d.App == "" || it.d.DeviceID == "" {
		o.d.m.invalid.Inc()
		o.d.log.Warn("delivery skipped: it does not decode", "partition", m.Partition, "offset", m.Offset, "err", err)
		return nil
	}
	return it
}

// due moves the waiting deliveries whose time has come into batch.
func (o *owner) due(batch []*item, now time.Time) []*item {
	i := 0
	for i < len(o.waiting) && !o.waiting[i].next.After(now) {
		i++
	}
	batch = append(batch, o.waiting[:i]...)
	o.waiting = slices.Delete(o.waiting, 0, i)
	o.d.m.waiting.Set(float64(len(o.waiting)))
	return batch
}

func (o *owner) wait(it *item) {
	i, _ := slices.BinarySearchFunc(o.waiting, it.next, func(x *item, t time.Time) int { return x.next.Compare(t) })
	o.waiting = slices.Insert(o.waiting, i, it)
}

// process decides the batch: without a send when it can (done before a
// restart, expired, unreachable, app paused), else attempt, send, result.
func (o *owner) process(ctx context.Context, batch []*item) error {
	d := o.d
	wall := time.Now()
	var send []*item
	var senders []Sender
	seen, sending := map[string]bool{}, map[string]bool{}
	for _, it := range batch {
		now := o.at(it, wall)
		id := it.d.ID
		if seen[id] {
			continue // the same delivery twice in the input: the first decides
		}
		seen[id] = true
		if a, ok := o.attempts[id]; ok && it.tries == 0 && it.next.IsZero() {
			switch {
			case a.done: // read again after a restart: its outputs again
				o.output(it, a.outcome, a.reason, a.provID, a.attempts, now)
				continue
			case !a.retry: // sent, answer never heard
				o.finish(it, OutcomeUnknown, "tried before a restart, and the provider's answer was never read: not sent again", "", now)
				continue
			}
			// it waited for another try: try it.
		}
		if exp := it.d.Expires; exp != nil && !now.Before(*exp) {
			o.finish(it, triggers.OutcomeExpired, "expired at "+exp.UTC().Format(time.RFC3339)+" before it could be sent", "", now)
			continue
		}
		if it.d.Channel == triggers.ChannelInApp {
			o.toInbox(it, now)
			continue
		}
		if it.d.PushToken == "" {
			o.finish(it, OutcomeUnreachable, "the device sent no push token", "", now)
			continue
		}
		if t, ok := o.dead[it.d.App+"/"+it.d.DeviceID]; ok && t.token == it.d.PushToken {
			o.finish(it, OutcomeUnreachable, fmt.Sprintf("its push token was declared dead by %s (%s) at %s", t.provider, t.reason, time.Unix(t.at, 0).UTC().Format(time.RFC3339)), "", now)
			continue
		}
		s, ok := d.senders(it.d.App, tag.PushProvider(it.d.PushProvider))
		if !ok {
			o.finish(it, OutcomeUnreachable, fmt.Sprintf("app %q has no credentials for %s", it.d.App, providerName(it.d.PushProvider)), "", now)
			continue
		}
		if until := d.pausedUntil(it.d.App, wall); !until.IsZero() {
			it.next = until
			o.wait(it)
			continue
		}
		// One send per token at a time: a token the provider declares dead
		// is known dead before the next delivery to it is tried.
		if tok := it.d.PushProvider + "/" + it.d.PushToken; sending[tok] {
			it.next = wall
			o.wait(it)
			continue
		} else {
			sending[tok] = true
		}
		send, senders = append(send, it), append(senders, s)
	}
	if len(send) > 0 {
		// At most once: the attempts are durable before anything is sent.
		for _, it := range send {
			o.setAttempt(it.d.ID, attempt{offset: it.offset})
		}
		if err := o.flushStates(ctx); err != nil {
			return err
		}
		fault.Reach("after-attempts")
		o.sendAll(ctx, send, senders)
		fault.Reach("after-sends")
		wall = time.Now()
		for _, it := range send {
			o.result(it, wall)
		}
	}
	return o.write(ctx, nil)
}

// toInbox puts an in-app delivery in its device's inbox: written with the
// states, before the decision.
func (o *owner) toInbox(it *item, now time.Time) {
	d := &it.d
	m := inbox.Message{DeliveryID: d.ID, Campaign: d.Campaign, Variant: d.Variant, Title: d.Message.Title, Body: d.Message.Body, Image: d.Message.Image,
		DeepLink: d.Message.DeepLink, Layout: d.Message.Layout, Activities: d.Message.Activities, Time: d.Time, Expires: d.Time.Add(inbox.DefaultTTL)}
	if d.Expires != nil {
		m.Expires = *d.Expires
	}
	for _, b := range d.Message.Buttons {
		m.Buttons = append(m.Buttons, inbox.Button{Label: b.Label, DeepLink: b.DeepLink})
	}
	key := d.App + "/" + d.DeviceID
	if !m.Expires.After(now) {
		o.finish(it, triggers.OutcomeExpired, "expired at "+m.Expires.UTC().Format(time.RFC3339)+" before it could be put in the inbox", "", now)
		return
	}
	o.inbox[key] = inbox.Add(o.inbox[key], m, now)
	if len(o.inbox[key]) == 0 {
		delete(o.inbox, key)
	}
	o.states = append(o.states, bus.Message{Topic: o.d.cfg.InboxTopic, Key: []byte(key), Value: inbox.Encode(o.inbox[key])})
	o.finish(it, OutcomeAccepted, "in the app's inbox until "+m.Expires.UTC().Format(time.RFC3339), "", now)
}

// sendAll sends concurrently, at most InFlight at once.
func (o *owner) sendAll(ctx context.Context, items []*item, senders []Sender) {
	// Every item is sent (a send sees ctx's end itself): the slots are
	// waited for regardless of ctx.
	sem, slots := semaphore.NewWeighted(int64(o.d.cfg.InFlight)), context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for i, it := range items {
		_ = sem.Acquire(slots, 1) // cannot fail: slots never ends
		wg.Add(1)
		o.d.m.inFlight.Inc()
		go func() {
			defer func() { sem.Release(1); wg.Done(); o.d.m.inFlight.Dec() }()
			start := time.Now()
			it.res = senders[i].Send(ctx, &it.d)
			o.d.m.latency.WithLabelValues(providerName(it.d.PushProvider)).Observe(time.Since(start).Seconds())
		}()
	}
	wg.Wait()
}

// result acts on a provider's answer; waits are on the wall clock.
func (o *owner) result(it *item, wall time.Time) {
	d := o.d
	now := o.at(it, wall)
	it.tries++
	r := it.res
	switch r.Kind {
	case delivery.Sent:
		o.finish(it, OutcomeAccepted, "", r.ProviderID, now)
	case delivery.TokenDead:
		key := it.d.App + "/" + it.d.DeviceID
		t := deadToken{provider: providerName(it.d.PushProvider), token: it.d.PushToken, reason: r.Reason, at: now.Unix()}
		o.dead[key] = t
		o.states = append(o.states, bus.Message{Topic: d.cfg.ChangelogTopic, Key: o.key(deadPrefix + key), Value: t.encode()})
		o.finish(it, OutcomeFailed, "the push token is dead: "+r.Reason, "", now)
		// Back into the stream: the token the device had when the delivery
		// was decided is dead (its id makes a redelivered report count once).
		rec := tag.Record{Kind: tag.KindPush, AppID: it.d.App, DeviceID: it.d.DeviceID, MessageID: "token-dead-" + it.d.ID, Time: it.d.Time, ReceivedAt: now.UTC(),
			Push: &tag.Push{Action: tag.PushTokenDead, DeliveryID: it.d.ID, CampaignID: it.d.Campaign}}
		o.outs = append(o.outs, bus.Message{Topic: d.cfg.TagsTopic, Key: rec.Key(), Value: rec.AppendBinary(nil)})
	case delivery.Refused:
		o.finish(it, OutcomeFailed, "refused by "+providerName(it.d.PushProvider)+": "+r.Reason, "", now)
	case delivery.AuthFailed:
		it.next = d.pause(it.d.App, r.Reason, wall)
		o.retry(it, r.Reason)
	case delivery.Retry:
		switch {
		case strings.HasPrefix(r.Reason, "network: ") && !dialError(r.Reason):
			// The request may have reached the provider: at most once.
			o.finish(it, OutcomeUnknown, "no answer from the provider ("+r.Reason+"): not sent again", "", now)
		case it.tries >= d.cfg.MaxAttempts:
			o.finish(it, OutcomeFailed, fmt.Sprintf("gave up after %d tries: %s", it.tries, r.Reason), "", now)
		default:
			wait := retryWait(it.tries, d.cfg.RetryBase, d.cfg.RetryMax, r.RetryAfter)
			it.next = wall.Add(wait)
			if exp := it.d.Expires; exp != nil && !now.Add(wait).Before(*exp) {
				o.finish(it, triggers.OutcomeExpired, fmt.Sprintf("would expire (%s) before its next try (%s)", exp.UTC().Format(time.RFC3339), r.Reason), "", now)
				return
			}
			o.retry(it, r.Reason)
		}
	}
}

// retry makes a delivery wait for another try, known not sent.
func (o *owner) retry(it *item, reason string) {
	o.d.m.retries.WithLabelValues(it.d.App, providerName(it.d.PushProvider), reason).Inc()
	o.setAttempt(it.d.ID, attempt{offset: it.offset, retry: true})
	o.wait(it)
}

// dialError reports a network error from before any request was written
// (nothing reached the provider: safe to try again).
func dialError(reason string) bool {
	return strings.Contains(reason, "connection refused") || strings.Contains(reason, "no such host") || strings.Contains(reason, "dial ")
}

// finish ends a delivery: its state done, its decision and feedback.
func (o *owner) finish(it *item, outcome triggers.Outcome, reason, provID string, now time.Time) {
	o.setAttempt(it.d.ID, attempt{done: true, offset: it.offset, outcome: outcome, reason: reason, provID: provID, attempts: it.tries})
	o.d.m.results.WithLabelValues(it.d.App, providerName(it.d.PushProvider), string(outcome), metricReason(reason)).Inc()
	o.output(it, outcome, reason, provID, it.tries, now)
}

// metricReason keeps the label set small: the provider's word, not the text.
func metricReason(reason string) string {
	if i := strings.LastIndex(reason, ": "); i >= 0 {
		reason = reason[i+2:]
	}
	if len(reason) > 40 {
		reason = reason[:40]
	}
	return reason
}

// output queues the decision and the feedback of a finished delivery.
func (o *owner) output(it *item, outcome triggers.Outcome, reason, provID string, tries int, now time.Time) {
	d := &it.d
	key := []byte(d.App + "/" + d.DeviceID)
	dec, _ := json.Marshal(scheduler.DecisionMessage{ID: idOf(d.ID, string(outcome)), App: d.App, Campaign: d.Campaign, Version: d.Version,
		DeviceID: d.DeviceID, Occurrence: d.Occurrence, Outcome: outcome, Reason: orDefault(reason, string(outcome)), Time: now.UTC(), Variant: d.Variant})
	fb, _ := json.Marshal(Feedback{ID: idOf(d.ID, "result"), DeliveryID: d.ID, App: d.App, Campaign: d.Campaign, Version: d.Version, Variant: d.Variant,
		DeviceID: d.DeviceID, Channel: d.Channel, Provider: d.PushProvider, Outcome: outcome, Reason: reason, ProviderID: provID, Attempts: tries, Time: now.UTC()})
	o.outs = append(o.outs, bus.Message{Topic: o.d.cfg.DecisionsTopic, Key: key, Value: dec}, bus.Message{Topic: o.d.cfg.FeedbackTopic, Key: key, Value: fb})
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func providerName(p string) string {
	if p == "" {
		return "none"
	}
	return p
}

func (o *owner) setAttempt(id string, a attempt) {
	o.attempts[id] = a
	o.states = append(o.states, bus.Message{Topic: o.d.cfg.ChangelogTopic, Key: o.key(attemptPrefix + id), Value: a.encode()})
}

func (o *owner) flushStates(ctx context.Context) error {
	if err := bus.ProduceRetrying(ctx, o.d.prod, o.states, func(err error, wait time.Duration) {
		o.d.log.Warn("write the dispatcher's state; retrying", "err", err, "in", wait)
	}); err != nil {
		return fmt.Errorf("write the dispatcher's state: %w", err)
	}
	clear(o.states)
	o.states = o.states[:0]
	return nil
}

// write writes the states (done before their outputs: a crash in between
// writes the outputs again from them), the outputs, then commits up to
// the first delivery not finished, and deletes the attempts it passed.
func (o *owner) write(ctx context.Context, unread []*item) error {
	if err := o.flushStates(ctx); err != nil {
		return err
	}
	if err := bus.ProduceRetrying(ctx, o.d.prod, o.outs, func(err error, wait time.Duration) {
		o.d.log.Warn("write decisions and feedback; retrying", "err", err, "in", wait)
	}); err != nil {
		return fmt.Errorf("write decisions and feedback: %w", err)
	}
	clear(o.outs)
	o.outs = o.outs[:0]
	if o.next < 0 {
		return nil
	}
	low := o.next
	for _, it := range o.waiting {
		low = min(low, it.offset)
	}
	for _, it := range unread {
		low = min(low, it.offset)
	}
	if low <= o.commit {
		return nil
	}
	if err := o.claim.Commit(low); err != nil {
		o.d.log.Warn("commit failed", "partition", o.claim.Partition, "offset", low, "err", err)
		return nil
	}
	o.commit = low
	for _, id := range sortedKeys(o.attempts) {
		if a := o.attempts[id]; a.done && a.offset < low {
			delete(o.attempts, id)
			o.states = append(o.states, bus.Message{Topic: o.d.cfg.ChangelogTopic, Key: o.key(attemptPrefix + id)})
		}
	}
	return nil
}
