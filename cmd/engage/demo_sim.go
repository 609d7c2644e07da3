package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/delivery"
	"github.com/openengage/engage/delivery/inbox"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/engine"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// The demo's run: hour by hour of simulated time, the devices' records go
// to the collector over HTTP, are read back from the tags topic, and go
// through the segment engine and the campaign scheduler composed as
// `engage process` and `engage schedule` compose them through Kafka (as
// the dry run does, triggers/dryrun); each send goes to the APNs or FCM
// mock through the delivery package's senders, an in-app message to the
// inbox the collector serves; what the users do with them goes back
// through the collector.

// demoResult is what a delivery became at the provider.
type demoResult struct {
	outcome string // accepted, failed, unreachable
	reason  string
}

type demoSim struct {
	cfg    *demoConfig
	pop    *demoPop
	base   string // the collector's URL
	client *http.Client
	prod   bus.Producer
	follow *tagFollower
	box    *demoInbox
	apns   delivery.PushSender
	fcm    delivery.PushSender

	eng            *engine.Engine
	sched          *triggers.Scheduler
	pclock, sclock time.Time
	seq, off       int64
	changes        []engine.Change

	// What the run produced, for the timeline and the analytics.
	records    []tag.Record
	decisions  []triggers.Decision
	deliveries []triggers.Delivery
	results    map[string]demoResult
	shownAt    map[string]time.Time // in-app delivery id → when the app showed it
	posted     int
	entries    []engine.Change // the followed readers' entries into segments
	dead       []bus.Message   // token_dead records for the tags topic
	expect     int
}

func newDemoSim(cfg *demoConfig, pop *demoPop) *demoSim {
	s := &demoSim{cfg: cfg, pop: pop, eng: engine.New(engine.Options{}), sched: triggers.New(),
		results: map[string]demoResult{}, shownAt: map[string]time.Time{}, client: &http.Client{Timeout: 30 * time.Second}}
	if _, _, err := s.eng.SetSegments(cfg.segs, time.Time{}); err != nil {
		panic(err) // checked by loadDemoConfig
	}
	s.sched.SetCampaigns(cfg.campaigns, map[string]map[triggers.Channel]triggers.Caps{demoApp: demoCaps}, time.Time{}, nil)
	return s
}

// demoWindow is how much simulated time the devices send at once: their
// answers to a push (opened, subscribed) go with the next window's
// records, a little late, as SDKs that batch do. Each window is one
// request to the collector and one read back.
const demoWindow = time.Hour

// run goes through the simulated days; progress is called after each.
func (s *demoSim) run(ctx context.Context, progress func(day int)) error {
	end := demoStart.AddDate(0, 0, demoDays)
	for t := demoStart; t.Before(end); t = t.Add(demoWindow) {
		wend := t.Add(demoWindow)
		if batch := s.pop.take(wend); len(batch) > 0 {
			n, err := s.post(ctx, batch)
			if err != nil {
				return err
			}
			s.expect += n
			s.posted += n
		}
		if len(s.dead) > 0 {
			if err := s.prod.Produce(ctx, s.dead); err != nil {
				return err
			}
			s.expect += len(s.dead)
			s.dead = s.dead[:0]
		}
		recs, err := s.follow.read(ctx, s.expect)
		if err != nil {
			return err
		}
		s.expect = 0
		sort.SliceStable(recs, func(i, j int) bool {
			a, b := &recs[i], &recs[j]
			if !a.Time.Equal(b.Time) {
				return a.Time.Before(b.Time)
			}
			if a.DeviceID != b.DeviceID {
				return a.DeviceID < b.DeviceID
			}
			return a.MessageID < b.MessageID
		})
		s.records = append(s.records, recs...)
		// Hour by hour: the records, the apps asking for their in-app
		// messages as their sessions start, the time passing, the sends.
		i := 0
		for h := t.Add(time.Hour); !h.After(wend); h = h.Add(time.Hour) {
			nl := len(s.deliveries)
			j := i
			for j < len(recs) && recs[j].Time.Before(h) {
				s.apply(&recs[j])
				j++
			}
			for k := i; k < j; k++ {
				if r := &recs[k]; r.Kind == tag.KindSessionStart {
					if err := s.fetchInApp(ctx, r.DeviceID, r.Time); err != nil {
						return err
					}
				}
			}
			i = j
			s.advance(h)
			if err := s.dispatch(ctx, s.deliveries[nl:]); err != nil {
				return err
			}
		}
		if wend.Sub(demoStart)%(24*time.Hour) == 0 && progress != nil {
			progress(int(wend.Sub(demoStart) / (24 * time.Hour)))
		}
	}
	return nil
}

// apply is one record through the engine and the scheduler, as the
// processor forwards it and the scheduler reads it (triggers/dryrun).
func (s *demoSim) apply(r *tag.Record) {
	s.off++
	if r.Time.After(s.pclock) {
		s.pclock = r.Time
	}
	s.changes = s.eng.Advance(s.pclock, s.changes[:0])
	for i := range s.changes {
		s.change(&s.changes[i], nil)
	}
	if r.Kind == tag.KindDevice || r.Kind == tag.KindAppInfo || r.Kind == tag.KindPush {
		s.seq++
		if s.pclock.After(s.sclock) {
			s.sclock = s.pclock
		}
		s.decisions, s.deliveries = s.sched.Advance(s.sclock, s.decisions, s.deliveries)
		s.sched.ApplyRecord(r, s.seq)
	}
	s.changes = s.eng.Apply(r, s.off, s.pclock, s.changes[:0])
	for i := range s.changes {
		var extras []tag.Extra
		if c := &s.changes[i]; c.Cause == engine.CauseRecord && c.Offset == s.off {
			extras = r.Extras
		}
		s.change(&s.changes[i], extras)
	}
}

func (s *demoSim) change(c *engine.Change, extras []tag.Extra) {
	s.seq++
	if d := s.pop.byID[c.DeviceID]; d != nil && d.name != "" && c.Enter {
		s.entries = append(s.entries, *c)
	}
	if t := c.Time.UTC(); t.After(s.sclock) {
		s.sclock = t
	}
	s.decisions, s.deliveries = s.sched.Apply(triggers.SegmentChange{App: c.App, Segment: c.Segment, DeviceID: c.DeviceID, Enter: c.Enter,
		Time: c.Time.UTC(), ID: c.ID.String(), Extras: extras, Seq: s.seq}, s.sclock, s.decisions, s.deliveries)
}

// advance moves both clocks to t: timers of the segments (first session
// 2 days ago …) and sends waiting for their time.
func (s *demoSim) advance(t time.Time) {
	if t.After(s.pclock) {
		s.pclock = t
	}
	s.changes = s.eng.Advance(s.pclock, s.changes[:0])
	for i := range s.changes {
		s.change(&s.changes[i], nil)
	}
	if t.After(s.sclock) {
		s.sclock = t
	}
	s.decisions, s.deliveries = s.sched.Advance(s.sclock, s.decisions, s.deliveries)
}

// dispatch sends the deliveries as the dispatcher does: a push to its
// provider with the device's token (none: unreachable), an in-app message
// into the device's inbox.
func (s *demoSim) dispatch(ctx context.Context, dels []triggers.Delivery) error {
	for i := range dels {
		d := &dels[i]
		dev := s.pop.byID[d.DeviceID]
		goal := ""
		if c := s.cfg.byName[d.Campaign]; c.Goal != nil {
			goal = c.Goal.Event
		}
		if d.Channel == triggers.ChannelInApp {
			s.box.add(d)
			s.results[d.ID] = demoResult{outcome: "accepted"}
			continue
		}
		if d.PushToken == "" {
			s.results[d.ID] = demoResult{outcome: "unreachable", reason: "no push token"}
			continue
		}
		sender := s.apns
		if d.PushProvider == tag.ProviderFCM {
			sender = s.fcm
		}
		msg := scheduler.FromDelivery(d)
		res := sender.Send(ctx, &msg)
		switch res.Kind {
		case delivery.Sent:
			s.results[d.ID] = demoResult{outcome: "accepted"}
			if dev != nil {
				s.pop.reactToPush(dev, d.Campaign, goal, d.ID, d.Time)
			}
		case delivery.TokenDead:
			s.results[d.ID] = demoResult{outcome: "failed", reason: res.Reason}
			// Back into the stream, as the dispatcher writes it.
			rec := tag.Record{Kind: tag.KindPush, AppID: d.App, DeviceID: d.DeviceID, MessageID: "token-dead-" + d.ID, Time: d.Time, ReceivedAt: time.Now().UTC(),
				Push: &tag.Push{Action: tag.PushTokenDead, DeliveryID: d.ID, CampaignID: d.Campaign}}
			s.dead = append(s.dead, bus.Message{Topic: kafkabus.TopicTags, Key: rec.Key(), Value: rec.AppendBinary(nil)})
		default:
			s.results[d.ID] = demoResult{outcome: "failed", reason: res.Kind.String() + ": " + res.Reason}
		}
	}
	return nil
}

// post sends records to the collector as an app does (POST /v1/tags).
func (s *demoSim) post(ctx context.Context, recs []tag.Record) (int, error) {
	body, err := json.Marshal(recs)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/v1/tags", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(demoKey, "")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out collector.Response
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || len(out.Rejected) > 0 {
		return 0, fmt.Errorf("the collector answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return out.Accepted, nil
}

// fetchInApp asks the collector for a device's in-app messages, as the
// app does when a session starts (GET /v1/inapp), and shows them.
func (s *demoSim) fetchInApp(ctx context.Context, device string, at time.Time) error {
	s.box.now.Store(at.UnixNano())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/v1/inapp?device="+url.QueryEscape(device), nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(demoKey, "")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Messages []inbox.Message `json:"messages"`
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v1/inapp: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return err
	}
	dev := s.pop.byID[device]
	for _, m := range out.Messages {
		if dev != nil && !dev.shown[m.DeliveryID] {
			s.shownAt[m.DeliveryID] = at
			s.pop.showInApp(dev, m.Campaign, m.DeliveryID, at)
		}
	}
	return nil
}

// demoInbox is the devices' in-app messages as the collector serves them,
// on the simulated clock (in production the collector follows the inbox
// topic that engage deliver writes).
type demoInbox struct {
	store *inbox.Store
	msgs  map[string][]inbox.Message
	now   atomic.Int64
}

func newDemoInbox() *demoInbox {
	return &demoInbox{store: inbox.NewStore(), msgs: map[string][]inbox.Message{}}
}

func (b *demoInbox) Get(app, device, activity string, _ time.Time) []inbox.Message {
	return b.store.Get(app, device, activity, time.Unix(0, b.now.Load()).UTC())
}

func (b *demoInbox) add(d *triggers.Delivery) {
	exp := d.Expires
	if exp.IsZero() {
		exp = d.Time.Add(inbox.DefaultTTL)
	}
	m := inbox.Message{DeliveryID: d.ID, Campaign: d.Campaign, Variant: d.Variant, Title: d.Message.Title, Body: d.Message.Body,
		DeepLink: d.Message.DeepLink, Layout: string(d.Message.Layout), Activities: d.Message.Activities, Time: d.Time, Expires: exp}
	for _, x := range d.Message.Buttons {
		m.Buttons = append(m.Buttons, inbox.Button{Label: x.Label, DeepLink: x.DeepLink})
	}
	key := d.App + "/" + d.DeviceID
	b.msgs[key] = inbox.Add(b.msgs[key], m, d.Time)
	_ = b.store.Apply([]byte(key), inbox.Encode(b.msgs[key]))
}

// tagFollower reads the demo's records back from the tags topic, from the
// end each partition had when it started: a connection to each
// partition's leader, asked for what arrived after each request.
type tagFollower struct {
	conns []*kafka.Conn
	next  []int64
	keep  func(*tag.Record) bool
}

func followTags(ctx context.Context, brokers []string, keep func(*tag.Record) bool) (*tagFollower, error) {
	parts, err := kafkabus.Partitions(ctx, brokers)
	if err != nil {
		return nil, err
	}
	n := parts[kafkabus.TopicTags]
	if n == 0 {
		return nil, fmt.Errorf("topic %s not found", kafkabus.TopicTags)
	}
	f := &tagFollower{keep: keep}
	for p := range n {
		end, err := kafkabus.PartitionEnd(ctx, brokers, kafkabus.TopicTags, p)
		if err != nil {
			f.close()
			return nil, err
		}
		conn, err := kafkabus.Dialer().DialLeader(ctx, "tcp", brokers[0], kafkabus.TopicTags, p)
		if err != nil {
			f.close()
			return nil, err
		}
		f.conns, f.next = append(f.conns, conn), append(f.next, end)
	}
	return f, nil
}

// read returns the next n records, waiting up to 30 s for them.
func (f *tagFollower) read(ctx context.Context, n int) ([]tag.Record, error) {
	out := make([]tag.Record, 0, n)
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < n {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("reading %s back: %d of %d records after 30 s", kafkabus.TopicTags, len(out), n)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		got := 0
		for p, conn := range f.conns {
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			end, err := conn.ReadLastOffset()
			if err != nil {
				return nil, fmt.Errorf("reading %s back: %w", kafkabus.TopicTags, err)
			}
			if end <= f.next[p] {
				continue
			}
			if _, err := conn.Seek(f.next[p], kafka.SeekAbsolute); err != nil {
				return nil, err
			}
			batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: 16 << 20, MaxWait: time.Second})
			for {
				m, err := batch.ReadMessage()
				if err != nil {
					break
				}
				if m.Offset < f.next[p] {
					continue
				}
				f.next[p] = m.Offset + 1
				got++
				var rec tag.Record
				if rec.UnmarshalBinary(m.Value) == nil && f.keep(&rec) {
					out = append(out, rec)
				}
			}
			if err := batch.Close(); err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("reading %s back: %w", kafkabus.TopicTags, err)
			}
		}
		if got == 0 && len(out) < n {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return out, nil
}

func (f *tagFollower) close() {
	for _, c := range f.conns {
		c.Close()
	}
}
