package triggers

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/murmur3"

	"github.com/openengage/engage/pipeline/tag"
)

// Scheduler decides, for the devices of one partition, which campaign sends
// what to whom, and when: it follows segment changes (entries and exits),
// keeps per device its memberships, the sends waiting
// for their time, the recent sends that frequency caps count, and fires
// due sends as time passes. Every decision (sent, capped, deferred, quiet
// hours, control group, expired, outranked, ...) comes out with its reason;
// every send comes out as a Delivery with a deterministic id.
//
// It is part of the pure core: it never reads the wall clock (now is the
// caller's), and one goroutine owns it (the one that owns the partition).
type Scheduler struct {
	now    int64 // Unix seconds, the newest now seen
	apps   map[string]*appCamps
	devs   map[string]*devState // by app + "/" + device id
	timers timerQueue
	stats  Stats
	// rates holds, per campaign with a send rate, its sends since an
	// instant: the k-th goes out at epoch + floor(k / rate) seconds.
	rates map[*Campaign]*rateState
	dirty map[*devState]bool // changed since the last Dirty (state.go)
	cause string             // what the decisions being made come from (decisionID)
	kbuf  []byte             // scratch: keys
	sbuf  []byte             // scratch: states, ids
	// Eviction (evict.go): retention and margin in seconds (0: never),
	// and the keys of the states evicted since the last Dirty.
	evictAfter, evictMargin int64
	tombs                   []string
	evictStale              int // stale eviction checks in the timer queue
}

type rateState struct {
	epoch, k int64
}

// slot returns when a campaign's next send may go out, at or after t.
func (r *rateState) slot(t int64, rate float64) int64 {
	at := r.epoch + int64(math.Floor(float64(r.k)/rate))
	if at < t { // idle since: start again
		r.epoch, r.k = t, 0
		return t
	}
	return at
}

// Stats counts what the scheduler did.
type Stats struct {
	Changes   uint64 // segment changes applied
	Decisions uint64
	Sends     uint64
	Pending   int    // sends waiting for their time
	Evicted   uint64 // device states evicted (evict.go)
}

// SegmentChange is an entry into or an exit from a segment, as
// `engage process` produces it.
type SegmentChange struct {
	App, Segment, DeviceID string
	Enter                  bool
	Time                   time.Time
	// ID is the change's id (deterministic): the occurrence of an on_entry
	// send is the change that triggered it.
	ID string
	// Extras are those of the record that caused the change, when one did,
	// sorted by key: the {{trigger.<key>}} fields of the templates.
	Extras []tag.Extra
	// Seq is the change's position in the scheduler's input (its offset
	// plus one), 0 when it has none. A device's state keeps the last it
	// applied, so that input replayed after a restore is not applied twice.
	Seq int64
	// Evicted marks an exit because the processor evicted the device (it
	// was not seen for longer than every window of its app): the
	// scheduler may then forget it sooner (evict.go).
	Evicted bool
}

// Profile is what the scheduler knows of a device beyond its memberships:
// where it is (time zone, for local times and quiet hours) and which
// language it reads.
type Profile struct {
	TimeZone string // IANA; empty: the campaign's default
	Locale   string // BCP 47
}

// RateSlotSep joins a send's occurrence and the slot its campaign's send
// rate gave it, in the occurrence of the "deferred" decision that waits
// for the slot: "entry:…/rate@1773248844".
const RateSlotSep = "/rate@"

// Outcome is what a decision decided.
type Outcome string

// The outcomes.
const (
	OutcomeSent      Outcome = "sent"
	OutcomeDeferred  Outcome = "deferred"    // waits for its time (delay, alignment, quiet hours)
	OutcomeControl   Outcome = "control"     // held out as control group
	OutcomeCapped    Outcome = "capped"      // a frequency cap of the app was reached
	OutcomeOutranked Outcome = "outranked"   // a higher-priority campaign took the capped slot
	OutcomeRepeat    Outcome = "repeat"      // sent to this device before (once, or within reentry_after)
	OutcomeQuiet     Outcome = "quiet"       // fell in quiet hours, dropped
	OutcomeExpired   Outcome = "expired"     // could not be sent before its expiry
	OutcomeEnded     Outcome = "ended"       // the campaign ended (or has not started)
	OutcomeLeft      Outcome = "left"        // the device left the audience before the send
	OutcomeNoSample  Outcome = "not_sampled" // outside the campaign's sample
	OutcomeSkipped   Outcome = "skipped"     // a template field had no value (the campaign's missing: skip)
)

// Decision is one decision of the scheduler about one device and one send
// opportunity (campaign, version, occurrence), with its reason.
type Decision struct {
	ID         string
	App        string
	Campaign   string
	Version    int64
	DeviceID   string
	Occurrence string
	Outcome    Outcome
	Reason     string
	Time       time.Time // when it was decided
	SendAt     time.Time // deferred: when it is due
	Variant    string
}

// Delivery is a send to one device: the dispatcher delivers it.
type Delivery struct {
	// ID is the same whenever the same send is decided again: campaign,
	// version, device and occurrence.
	ID         string
	App        string
	Campaign   string
	Version    int64
	DeviceID   string
	Occurrence string
	Variant    string
	Channel    Channel
	Locale     string
	Time       time.Time // when it was decided to send
	Expires    time.Time // zero: no expiry
	// PushToken and PushProvider are the newest push token the device
	// sent (push and data channels), empty when it sent none: the
	// dispatcher decides such a delivery unreachable.
	PushToken    string
	PushProvider tag.PushProvider
	// Message is the content for the device: its locale's (or the
	// default's), its variant's, with the templates rendered.
	Message Message
}

// appCamps are one app's campaigns and caps.
type appCamps struct {
	camps     []*Campaign // by priority (highest first), then name
	bySegment map[string][]*Campaign
	caps      map[Channel]Caps
	// The templates of each campaign, by variant (-1: the campaign's own
	// content) and locale, and what they read of the devices.
	tmpl        map[*Campaign]map[int]map[string]*MessageTemplate
	infoKeys    map[string]bool               // app_info keys the templates read
	triggerKeys map[*Campaign]map[string]bool // trigger extras each campaign's templates read
	deviceRead  bool                          // some template reads a device field
}

// devState is what the scheduler keeps per device.
type devState struct {
	app, id string
	applied int64 // Seq of the last input applied
	members map[string]bool
	profile Profile
	// What the templates read: the app-info values (sorted by key, with
	// the event time of each) and the device fields.
	info    []tag.Extra
	infoAt  []int64
	devInfo *tag.DeviceInfo
	// The newest push token the device sent, and its provider: a push or
	// data delivery carries them to the dispatcher.
	token    string
	provider tag.PushProvider
	tokenAt  int64             // event time (Unix s) of the device record that brought it
	sent     map[string]sentAt // campaign name → its last send to the device
	recent   []sendMark        // recent sends, for the caps, oldest first
	pending  []*pendingSend
	// Eviction (evict.go): the scheduler's now at the device's last input,
	// whether that input was an exit of a device the processor evicted,
	// and the instant of its eviction check in the timer queue (0 none).
	seen     int64
	gone     bool
	evictDue int64
}

// sentAt is a campaign's last send to a device: when, and for a recurring
// campaign, the local day it was for.
type sentAt struct {
	t   int64
	day int32 // days since 1970 of a "day:" occurrence; 0: none
}

// occurrenceDay returns the day of a "day:YYYY-MM-DD" occurrence as days
// since 1970, 0 for any other occurrence.
func occurrenceDay(occ string) int32 {
	day, ok := strings.CutPrefix(occ, "day:")
	if !ok {
		return 0
	}
	t, err := time.Parse(time.DateOnly, day)
	if err != nil || t.Unix() <= 0 {
		return 0
	}
	return int32(t.Unix() / 86400)
}

type sendMark struct {
	t  int64
	ch Channel
}

type pendingSend struct {
	camp       *Campaign
	occurrence string
	due        int64
	trigger    int64 // when the send was triggered (expiry counts from it)
	variant    int
	extras     []tag.Extra // of the triggering record, those the templates read
	dead       bool        // cancelled; its timer entry is stale
}

// New returns an empty scheduler.
func New() *Scheduler {
	return &Scheduler{apps: map[string]*appCamps{}, devs: map[string]*devState{}, rates: map[*Campaign]*rateState{}}
}

func (s *Scheduler) clock(now time.Time) int64 {
	if t := now.Unix(); t > s.now {
		s.now = t
	}
	return s.now
}

// Clock returns the newest time the scheduler has been given (zero before
// any): a service keeps it with the states, and a restored scheduler
// starts from it.
func (s *Scheduler) Clock() time.Time {
	if s.now == 0 {
		return time.Time{}
	}
	return time.Unix(s.now, 0).UTC()
}

// SetCampaigns replaces the campaigns and caps of every app. Sends waiting
// for a campaign that is gone, or whose version changed, are dropped, each
// with a decision (appended to decs, which it returns).
func (s *Scheduler) SetCampaigns(camps []*Campaign, caps map[string]map[Channel]Caps, now time.Time, decs []Decision) []Decision {
	ns := s.clock(now)
	s.cause = "config"
	defer func() { s.cause = "" }()
	apps := map[string]*appCamps{}
	for _, c := range camps {
		a := apps[c.App]
		if a == nil {
			a = &appCamps{bySegment: map[string][]*Campaign{}, caps: caps[c.App]}
			apps[c.App] = a
		}
		a.camps = append(a.camps, c)
	}
	for app, a := range apps {
		slices.SortFunc(a.camps, func(x, y *Campaign) int {
			if x.Limit.Priority != y.Limit.Priority {
				return cmp.Compare(y.Limit.Priority, x.Limit.Priority)
			}
			return cmp.Compare(x.Name, y.Name)
		})
		for _, c := range a.camps {
			for _, seg := range slices.Concat(c.Who.Segments, c.Who.Exclude) {
				if !slices.Contains(a.bySegment[seg], c) {
					a.bySegment[seg] = append(a.bySegment[seg], c)
				}
			}
			a.compile(c)
		}
		_ = app
	}
	for app, c := range caps {
		if apps[app] == nil {
			apps[app] = &appCamps{bySegment: map[string][]*Campaign{}, caps: c}
		}
	}
	old := s.apps
	s.apps = apps
	// Drop the sends of campaigns that are gone or changed.
	for _, d := range s.sortedAll() {
		n := len(d.pending)
		d.pending = slices.DeleteFunc(d.pending, func(p *pendingSend) bool {
			if s.current(d.app, p.camp) {
				return false
			}
			p.dead = true
			s.stats.Pending--
			why := "the campaign was deleted"
			if s.named(d.app, p.camp.Name) {
				why = "the campaign changed (a new version) before the send"
			}
			decs = append(decs, s.decision(d, p.camp, p.occurrence, OutcomeEnded, why, ns, 0, variantName(p.camp, p.variant)))
			return true
		})
		if len(d.pending) != n {
			s.markDirty(d)
		}
	}
	// One-off and recurring campaigns new to the set wait for their time
	// for every device in their audience now.
	for app, a := range apps {
		for _, c := range a.camps {
			if c.When.Kind == OnEntry || had(old[app], c) {
				continue
			}
			for _, d := range s.sortedDevices(app) {
				if d.inAudience(c) {
					decs = s.schedule(d, c, s.now, decs)
				}
			}
		}
	}
	return decs
}

// named reports whether the app has a campaign of that name.
func (s *Scheduler) named(app, name string) bool {
	if a := s.apps[app]; a != nil {
		for _, c := range a.camps {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

// sortedAll returns every device, by app and id.
func (s *Scheduler) sortedAll() []*devState {
	ds := make([]*devState, 0, len(s.devs))
	for _, d := range s.devs {
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(x, y *devState) int {
		if c := cmp.Compare(x.app, y.app); c != 0 {
			return c
		}
		return cmp.Compare(x.id, y.id)
	})
	return ds
}

// had reports whether a holds campaign c (same name and version).
func had(a *appCamps, c *Campaign) bool {
	if a == nil {
		return false
	}
	for _, x := range a.camps {
		if x.Name == c.Name && x.Version == c.Version {
			return true
		}
	}
	return false
}

// sortedDevices returns an app's devices by id: an order that does not
// depend on the map's.
func (s *Scheduler) sortedDevices(app string) []*devState {
	var ds []*devState
	for _, d := range s.devs {
		if d.app == app {
			ds = append(ds, d)
		}
	}
	slices.SortFunc(ds, func(x, y *devState) int { return cmp.Compare(x.id, y.id) })
	return ds
}

// schedule makes a device in the audience of a one-off or recurring
// campaign wait for its next send: the campaign's instant (in UTC or the
// device's local time), or the next occurrence of a recurring one. A
// one-off send whose instant has passed is not sent (the device came too
// late); decisions go to decs, which may be nil.
func (s *Scheduler) schedule(d *devState, c *Campaign, now int64, decs []Decision) []Decision {
	if !s.current(d.app, c) {
		return decs
	}
	as := Assign(c, d.id)
	loc := s.location(d, c)
	var p *pendingSend
	switch c.When.Kind {
	case Once:
		trig := OnceSend(c, loc)
		if trig.Unix() < now {
			return decs // the instant passed before the device joined
		}
		at, ok, reason := Constrain(c, trig, trig, loc)
		if !ok {
			return append(decs, s.decision(d, c, OnceOccurrence, outcomeOf(reason), reason, now, 0, variantName(c, as.Variant)))
		}
		p = &pendingSend{camp: c, occurrence: OnceOccurrence, due: at.Unix(), trigger: trig.Unix(), variant: as.Variant}
	case Recurring:
		next, ok := NextRecurringSend(c, time.Unix(now, 0).Add(-time.Nanosecond), loc)
		if !ok {
			return decs
		}
		p = &pendingSend{camp: c, occurrence: next.Occurrence, due: next.At.Unix(), trigger: next.Trigger.Unix(), variant: as.Variant}
	default:
		return decs
	}
	d.pending = append(d.pending, p)
	s.stats.Pending++
	s.timers.push(timerEntry{due: p.due, d: d, p: p})
	s.markDirty(d)
	return decs
}

// outcomeOf maps a timing rule's reason for not sending to an outcome.
func outcomeOf(reason string) Outcome {
	switch reason {
	case ReasonEnded:
		return OutcomeEnded
	case ReasonQuiet:
		return OutcomeQuiet
	}
	return OutcomeExpired
}

// compile parses a campaign's templates (a campaign that passed Check
// always compiles; a message whose texts do not is sent empty) and notes
// what they read.
func (a *appCamps) compile(c *Campaign) {
	if a.tmpl == nil {
		a.tmpl, a.infoKeys = map[*Campaign]map[int]map[string]*MessageTemplate{}, map[string]bool{}
		a.triggerKeys = map[*Campaign]map[string]bool{}
	}
	byVariant := map[int]map[string]*MessageTemplate{}
	add := func(v int, content map[string]*Message) {
		for locale, m := range content {
			if m == nil {
				continue
			}
			mt, err := CompileMessage(m)
			if err != nil {
				continue
			}
			if byVariant[v] == nil {
				byVariant[v] = map[string]*MessageTemplate{}
			}
			byVariant[v][locale] = mt
			for _, f := range mt.Fields() {
				switch f.Source {
				case FromAppInfo:
					a.infoKeys[f.Key] = true
				case FromDevice:
					a.deviceRead = true
				case FromTrigger:
					if a.triggerKeys[c] == nil {
						a.triggerKeys[c] = map[string]bool{}
					}
					a.triggerKeys[c][f.Key] = true
				}
			}
		}
	}
	add(-1, c.What.Content)
	for i, v := range c.Who.Variants {
		if v.Content != nil {
			add(i, v.Content)
		}
	}
	a.tmpl[c] = byVariant
}

// current reports whether c is the app's campaign of that name and version.
func (s *Scheduler) current(app string, c *Campaign) bool {
	a := s.apps[app]
	if a == nil {
		return false
	}
	for _, x := range a.camps {
		if x == c || x.Name == c.Name && x.Version == c.Version {
			return true
		}
	}
	return false
}

// ApplyRecord takes from a tag record what the scheduler needs of a
// device: its time zone and locale (device records), and the app-info
// values and device fields the app's templates read (the newest by event
// time wins; a later arrival wins a tie). seq is the record's position in
// the input (offset plus one; 0: none), as SegmentChange.Seq.
func (s *Scheduler) ApplyRecord(r *tag.Record, seq int64) {
	a := s.apps[r.AppID]
	switch {
	case r.Kind == tag.KindDevice && r.Device != nil:
		d := s.device(r.AppID, r.DeviceID)
		if s.replayed(d, seq) {
			return
		}
		p := d.profile
		if r.Device.TimeZone != "" {
			p.TimeZone = r.Device.TimeZone
		}
		if r.Device.Locale != "" {
			p.Locale = r.Device.Locale
		}
		changed := p != d.profile
		d.profile = p
		if t := r.Device.PushToken; t != "" && (t != d.token || r.Device.PushProvider != d.provider) {
			d.token, d.provider, d.tokenAt = strings.Clone(t), r.Device.PushProvider, r.Time.Unix()
			changed = true
		}
		if a != nil && a.deviceRead {
			dev := *r.Device
			dev.PushToken, dev.PushProvider = "", ""
			if d.devInfo == nil || *d.devInfo != dev {
				d.devInfo, changed = &dev, true
			}
		}
		if changed {
			s.markDirty(d)
		}
	case r.Kind == tag.KindPush && r.Push != nil && r.Push.Action == tag.PushTokenDead:
		// The token the device had when the delivery was decided is dead:
		// forget it, unless the device sent another since.
		key := r.AppID + "/" + r.DeviceID
		if d := s.devs[key]; d != nil && d.token != "" && d.tokenAt <= r.Time.Unix() && !s.replayed(d, seq) {
			d.token, d.provider = "", ""
			s.markDirty(d)
		}
	case r.Kind == tag.KindAppInfo && a != nil && len(a.infoKeys) > 0:
		var d *devState
		t := r.Time.Unix()
		for _, x := range r.AppInfo {
			if !a.infoKeys[x.Key] {
				continue
			}
			if d == nil {
				d = s.device(r.AppID, r.DeviceID)
				if s.replayed(d, seq) {
					return
				}
			}
			i, found := slices.BinarySearchFunc(d.info, x.Key, func(e tag.Extra, k string) int { return cmp.Compare(e.Key, k) })
			v := x.Value
			v.Str = strings.Clone(v.Str)
			switch {
			case !found:
				d.info = slices.Insert(d.info, i, tag.Extra{Key: strings.Clone(x.Key), Value: v})
				d.infoAt = slices.Insert(d.infoAt, i, t)
			case t >= d.infoAt[i]:
				d.info[i].Value, d.infoAt[i] = v, t
			default:
				continue
			}
			s.markDirty(d)
		}
	}
}

// replayed reports whether input at seq was applied to d before its state
// was written, and otherwise notes it as applied.
func (s *Scheduler) replayed(d *devState, seq int64) bool {
	if seq <= 0 {
		s.touch(d)
		return false
	}
	if seq <= d.applied {
		return true
	}
	s.touch(d)
	if d.applied != seq {
		d.applied = seq
		s.markDirty(d)
	}
	return false
}

// SetProfile sets what the scheduler knows of a device (time zone, locale).
func (s *Scheduler) SetProfile(app, deviceID string, p Profile) {
	d := s.device(app, deviceID)
	if d.profile != p {
		d.profile = p
		s.markDirty(d)
	}
}

func (s *Scheduler) device(app, id string) *devState {
	s.kbuf = append(append(append(s.kbuf[:0], app...), '/'), id...)
	d := s.devs[string(s.kbuf)]
	if d == nil {
		d = &devState{app: app, id: id, members: map[string]bool{}}
		s.devs[string(s.kbuf)] = d
	}
	return d
}

// Apply applies a segment change at now: memberships, entries that trigger
// on_entry campaigns, exits that cancel waiting sends. It appends the
// decisions and deliveries to the slices given.
func (s *Scheduler) Apply(ch SegmentChange, now time.Time, decs []Decision, dels []Delivery) ([]Decision, []Delivery) {
	ns := s.clock(now)
	decs, dels = s.fire(ns, decs, dels)
	s.stats.Changes++
	s.cause = ch.ID
	defer func() { s.cause = "" }()
	// Every membership is kept, not only those today's campaigns read: a
	// campaign saved later sends to the members of the moment.
	d := s.device(ch.App, ch.DeviceID)
	if ch.Seq > 0 {
		if ch.Seq <= d.applied {
			return decs, dels // replayed: applied before the state was written
		}
		d.applied = ch.Seq
	}
	s.touch(d)
	d.gone = ch.Evicted && !ch.Enter
	s.markDirty(d)
	defer s.armEvict(d) // once the memberships are updated (evict.go)
	a := s.apps[ch.App]
	if a == nil || len(a.bySegment[ch.Segment]) == 0 {
		if ch.Enter {
			d.members[ch.Segment] = true
		} else {
			delete(d.members, ch.Segment)
		}
		return decs, dels
	}
	camps := a.bySegment[ch.Segment]
	var was [16]bool
	before := was[:0]
	for _, c := range camps {
		before = append(before, d.inAudience(c))
	}
	if ch.Enter {
		d.members[ch.Segment] = true
	} else {
		delete(d.members, ch.Segment)
	}
	for i, c := range camps {
		in := d.inAudience(c)
		switch {
		case in && !before[i] && c.When.Kind == OnEntry:
			decs, dels = s.trigger(d, c, ch, ns, decs, dels)
		case in && !before[i]:
			decs = s.schedule(d, c, ns, decs)
		case !in && before[i]:
			decs = s.cancel(d, c, ns, decs)
		}
	}
	return decs, dels
}

// inAudience reports whether the device is in all of the campaign's
// segments and none of its exclusions.
func (d *devState) inAudience(c *Campaign) bool {
	for _, seg := range c.Who.Segments {
		if !d.members[seg] {
			return false
		}
	}
	for _, seg := range c.Who.Exclude {
		if d.members[seg] {
			return false
		}
	}
	return len(c.Who.Segments) > 0
}

// trigger starts an on_entry send: assignment, then its time.
func (s *Scheduler) trigger(d *devState, c *Campaign, ch SegmentChange, now int64, decs []Decision, dels []Delivery) ([]Decision, []Delivery) {
	// The occurrence is the change that triggered it: a device that
	// leaves and enters again triggers again (then repeat rules apply).
	occ := "entry:" + ch.ID
	if ch.ID == "" {
		occ = EntryOccurrence(ch.Time)
	}
	as := Assign(c, d.id)
	variant := variantName(c, as.Variant)
	switch {
	case !as.InSample:
		return append(decs, s.decision(d, c, occ, OutcomeNoSample, "outside the campaign's sample", now, 0, "")), dels
	case as.Control:
		return append(decs, s.decision(d, c, occ, OutcomeControl, "held out as control group", now, 0, variant)), dels
	}
	loc := s.location(d, c)
	at, ok, why := EntrySend(c, ch.Time, loc)
	if !ok {
		return append(decs, s.decision(d, c, occ, outcomeOf(why), why, now, 0, variant)), dels
	}
	p := &pendingSend{camp: c, occurrence: occ, due: at.Unix(), trigger: ch.Time.Unix(), variant: as.Variant}
	if keys := s.apps[d.app].triggerKeys[c]; len(keys) > 0 {
		for _, x := range ch.Extras {
			if keys[x.Key] {
				v := x.Value
				v.Str = strings.Clone(v.Str)
				p.extras = append(p.extras, tag.Extra{Key: strings.Clone(x.Key), Value: v})
			}
		}
	}
	if p.due <= now {
		return s.send(d, p, now, decs, dels)
	}
	d.pending = append(d.pending, p)
	s.stats.Pending++
	s.timers.push(timerEntry{due: p.due, d: d, p: p})
	s.markDirty(d)
	return append(decs, s.decision(d, c, occ, OutcomeDeferred, "waits until "+at.UTC().Format(time.RFC3339)+deferReason(c, why), now, p.due, variant)), dels
}

// deferReason says why a send waits: its delay, its alignment, and what
// the timing rules moved (quiet hours, the campaign's start).
func deferReason(c *Campaign, moved string) string {
	var why []string
	if c.When.Delay > 0 {
		why = append(why, "delay "+c.When.Delay.String())
	}
	if c.When.AlignTo != nil {
		why = append(why, "the next local "+c.When.AlignTo.String())
	}
	if moved != "" {
		why = append(why, moved)
	}
	if len(why) == 0 {
		return ""
	}
	return " (" + strings.Join(why, ", then ") + ")"
}

// String returns the time of day as HH:MM.
func (t TimeOfDay) String() string {
	return string([]byte{byte('0' + t.Hour/10), byte('0' + t.Hour%10), ':', byte('0' + t.Minute/10), byte('0' + t.Minute%10)})
}

func variantName(c *Campaign, i int) string {
	if i < 0 || i >= len(c.Who.Variants) {
		return ""
	}
	return c.Who.Variants[i].Name
}

// cancel drops the device's waiting sends of a campaign it left.
func (s *Scheduler) cancel(d *devState, c *Campaign, now int64, decs []Decision) []Decision {
	d.pending = slices.DeleteFunc(d.pending, func(p *pendingSend) bool {
		if p.camp != c {
			return false
		}
		p.dead = true
		s.stats.Pending--
		decs = append(decs, s.decision(d, c, p.occurrence, OutcomeLeft, "left the audience before the send", now, 0, variantName(c, p.variant)))
		return true
	})
	return decs
}

// Advance fires the sends due at now.
func (s *Scheduler) Advance(now time.Time, decs []Decision, dels []Delivery) ([]Decision, []Delivery) {
	return s.fire(s.clock(now), decs, dels)
}

// fire sends what is due at now, in due order; sends due at the same
// instant for one device compete for its capped slots by priority.
func (s *Scheduler) fire(now int64, decs []Decision, dels []Delivery) ([]Decision, []Delivery) {
	cause := s.cause
	s.cause = ""
	defer func() { s.cause = cause }()
	for {
		top, ok := s.timers.peek()
		if !ok || top.due > now {
			return decs, dels
		}
		s.timers.pop()
		if top.p == nil {
			s.evictCheck(top) // evict.go
			continue
		}
		if top.p.dead {
			continue
		}
		// Every send due for this device at this instant, by priority.
		batch := []*pendingSend{top.p}
		for {
			nx, ok := s.timers.peek()
			if !ok || nx.due != top.due || nx.d != top.d || nx.p == nil {
				break
			}
			s.timers.pop()
			if !nx.p.dead {
				batch = append(batch, nx.p)
			}
		}
		// By priority, then name and occurrence: an order that does not
		// depend on how the sends came to wait (live or restored).
		sort.Slice(batch, func(i, j int) bool {
			a, b := batch[i], batch[j]
			if a.camp.Limit.Priority != b.camp.Limit.Priority {
				return a.camp.Limit.Priority > b.camp.Limit.Priority
			}
			if a.camp.Name != b.camp.Name {
				return a.camp.Name < b.camp.Name
			}
			return a.occurrence < b.occurrence
		})
		d := top.d
		s.cause = "due@" + strconv.FormatInt(top.due, 10)
		for _, p := range batch {
			d.pending = slices.DeleteFunc(d.pending, func(x *pendingSend) bool { return x == p })
			s.stats.Pending--
			decs, dels = s.send(d, p, top.due, decs, dels)
		}
	}
}

// send decides a due send: assignment (for one-off and recurring sends,
// decided when they are due), repeat rules, caps, then the delivery. A
// recurring campaign then waits for its next occurrence.
func (s *Scheduler) send(d *devState, p *pendingSend, at int64, decs []Decision, dels []Delivery) ([]Decision, []Delivery) {
	decs, dels = s.decideSend(d, p, at, decs, dels)
	if p.camp.When.Kind == Recurring {
		decs = s.schedule(d, p.camp, at+1, decs)
	}
	return decs, dels
}

func (s *Scheduler) decideSend(d *devState, p *pendingSend, at int64, decs []Decision, dels []Delivery) ([]Decision, []Delivery) {
	c := p.camp
	s.markDirty(d)
	variant := variantName(c, p.variant)
	if c.When.Kind != OnEntry {
		switch as := Assign(c, d.id); {
		case !as.InSample:
			return append(decs, s.decision(d, c, p.occurrence, OutcomeNoSample, "outside the campaign's sample", at, 0, "")), dels
		case as.Control:
			return append(decs, s.decision(d, c, p.occurrence, OutcomeControl, "held out as control group", at, 0, variant)), dels
		}
	}
	if c.When.Expiry > 0 && at > p.trigger+int64(c.When.Expiry/time.Second) {
		return append(decs, s.decision(d, c, p.occurrence, OutcomeExpired, "past its expiry of "+c.When.Expiry.String(), at, 0, variant)), dels
	}
	if last, ok := d.sent[c.Name]; ok {
		switch {
		case c.Limit.Once:
			return append(decs, s.decision(d, c, p.occurrence, OutcomeRepeat, "sent to this device before (once per device)", at, 0, variant)), dels
		case c.Limit.ReentryAfter > 0 && at < last.t+int64(c.Limit.ReentryAfter/time.Second):
			return append(decs, s.decision(d, c, p.occurrence, OutcomeRepeat, "sent less than "+c.Limit.ReentryAfter.String()+" ago", at, 0, variant)), dels
		case last.day != 0 && last.day == occurrenceDay(p.occurrence):
			// One send per local day: a device that moved west (or left
			// and came back) does not get the same day's send twice.
			return append(decs, s.decision(d, c, p.occurrence, OutcomeRepeat, "already sent for "+strings.TrimPrefix(p.occurrence, "day:"), at, 0, variant)), dels
		}
	}
	locale := pickLocale(c, d.profile.Locale)
	msg, missing := s.render(d, c, p.variant, locale, p.extras)
	if len(missing) > 0 && c.What.Missing != MissingDefault {
		return append(decs, s.decision(d, c, p.occurrence, OutcomeSkipped, "no value for "+strings.Join(missing, ", "), at, 0, variant)), dels
	}
	if c.Limit.Rate > 0 {
		// The campaign's send rate: a send waits for its slot.
		rs := s.rates[c]
		if rs == nil {
			rs = &rateState{}
			s.rates[c] = rs
		}
		if slot := rs.slot(at, c.Limit.Rate); slot > at {
			p.due = slot
			d.pending = append(d.pending, p)
			s.stats.Pending++
			s.timers.push(timerEntry{due: p.due, d: d, p: p})
			return append(decs, s.decision(d, c, p.occurrence+RateSlotSep+strconv.FormatInt(slot, 10), OutcomeDeferred,
				"the campaign's rate of "+strconv.FormatFloat(c.Limit.Rate, 'g', -1, 64)+"/s: waits until "+time.Unix(slot, 0).UTC().Format(time.RFC3339), at, slot, variant)), dels
		}
	}
	if why, capped := s.capped(d, c.What.Channel, at); capped {
		out := OutcomeCapped
		if s.outranked(d, c, at) {
			out = OutcomeOutranked
			why = "a higher-priority campaign took the last slot: " + why
		}
		return append(decs, s.decision(d, c, p.occurrence, out, why, at, 0, variant)), dels
	}
	if c.Limit.Rate > 0 {
		s.rates[c].k++
	}
	if d.sent == nil {
		d.sent = map[string]sentAt{}
	}
	d.sent[c.Name] = sentAt{t: at, day: occurrenceDay(p.occurrence)}
	d.recent = append(d.recent, sendMark{t: at, ch: c.What.Channel})
	s.stats.Sends++
	del := Delivery{ID: deliveryID(c, d.id, p.occurrence), App: d.app, Campaign: c.Name, Version: c.Version, DeviceID: d.id,
		Occurrence: p.occurrence, Variant: variant, Channel: c.What.Channel, Locale: locale, Time: time.Unix(at, 0).UTC(), Message: msg}
	if c.What.Channel != ChannelInApp {
		del.PushToken, del.PushProvider = d.token, d.provider
	}
	if c.When.Expiry > 0 {
		del.Expires = time.Unix(p.trigger, 0).Add(c.When.Expiry).UTC()
	}
	decs = append(decs, s.decision(d, c, p.occurrence, OutcomeSent, "sent", at, 0, variant))
	return decs, append(dels, del)
}

// capped reports whether a send on the channel at t would pass one of the
// app's caps, and which.
func (s *Scheduler) capped(d *devState, ch Channel, t int64) (string, bool) {
	caps := s.apps[d.app].caps[ch]
	// Forget what no cap counts any more.
	week := t - 7*24*3600
	i := 0
	for i < len(d.recent) && d.recent[i].t <= week {
		i++
	}
	d.recent = d.recent[i:]
	var day, wk int
	for _, m := range d.recent {
		if m.ch != ch {
			continue
		}
		wk++
		if m.t > t-24*3600 {
			day++
		}
	}
	switch {
	case caps.PerDay > 0 && day >= caps.PerDay:
		return "cap of " + strconv.Itoa(caps.PerDay) + " " + string(ch) + " per day reached", true
	case caps.PerWeek > 0 && wk >= caps.PerWeek:
		return "cap of " + strconv.Itoa(caps.PerWeek) + " " + string(ch) + " per week reached", true
	}
	return "", false
}

// outranked reports whether a campaign of higher priority sent to the
// device at the same instant (it took the slot this one wanted).
func (s *Scheduler) outranked(d *devState, c *Campaign, t int64) bool {
	for name, at := range d.sent {
		if at.t != t || name == c.Name {
			continue
		}
		for _, x := range s.apps[d.app].camps {
			if x.Name == name && x.Limit.Priority > c.Limit.Priority {
				return true
			}
		}
	}
	return false
}

// render renders a campaign's message for a device: its variant's content
// (or the campaign's), in the locale given. It returns the template fields
// that had no value and no default.
func (s *Scheduler) render(d *devState, c *Campaign, variant int, locale string, trigger []tag.Extra) (Message, []string) {
	byVariant := s.apps[d.app].tmpl[c]
	mts := byVariant[variant]
	if mts == nil {
		mts = byVariant[-1]
	}
	mt := mts[locale]
	if mt == nil {
		mt = mts[c.What.DefaultLocale]
	}
	if mt == nil {
		return Message{}, nil
	}
	return mt.Render(Values{AppInfo: d.info, Device: d.devInfo, Trigger: trigger})
}

// pickLocale returns the campaign's locale for a device: its own, its
// language, or the default.
func pickLocale(c *Campaign, locale string) string {
	if _, ok := c.What.Content[locale]; ok && locale != "" {
		return locale
	}
	for i := range len(locale) {
		if locale[i] == '-' || locale[i] == '_' {
			if _, ok := c.What.Content[locale[:i]]; ok {
				return locale[:i]
			}
			break
		}
	}
	return c.What.DefaultLocale
}

func (s *Scheduler) location(d *devState, c *Campaign) *time.Location {
	loc, _ := Location(d.profile.TimeZone, c.When.DefaultTZ)
	return loc
}

func (s *Scheduler) decision(d *devState, c *Campaign, occ string, out Outcome, why string, at, due int64, variant string) Decision {
	s.stats.Decisions++
	dec := Decision{ID: decisionID(c, d.id, occ, out, s.cause), App: d.app, Campaign: c.Name, Version: c.Version, DeviceID: d.id,
		Occurrence: occ, Outcome: out, Reason: why, Time: time.Unix(at, 0).UTC(), Variant: variant}
	if due != 0 {
		dec.SendAt = time.Unix(due, 0).UTC()
	}
	return dec
}

// deliveryID identifies a send: campaign, version, device, occurrence.
func deliveryID(c *Campaign, device, occ string) string {
	return hashID(c.App, c.Name, strconv.FormatInt(c.Version, 10), device, occ)
}

// decisionID identifies a decision: the send's identity, the outcome (a
// deferred send is decided twice: deferred, then sent or not) and its
// cause: the segment change that made it, "config" for a change of the
// campaigns, the due time when a waiting send fell due (a device that
// moves across time zones may wait twice for one local day's send).
// A device that enters and leaves the audience of a one-off campaign
// again and again gets a "deferred" and a "left" for each of its stays.
func decisionID(c *Campaign, device, occ string, out Outcome, cause string) string {
	return hashID(c.App, c.Name, strconv.FormatInt(c.Version, 10), device, occ, string(out), cause)
}

// HashID is the ids' hash: murmur3 (128 bits, hex) of the parts, each
// preceded by its length. The dispatcher's ids are made the same way.
func HashID(parts ...string) string { return hashID(parts...) }

func hashID(parts ...string) string {
	var scratch [256]byte
	b := scratch[:0]
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	h1, h2 := murmur3.Sum128(b)
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], h1)
	binary.BigEndian.PutUint64(id[8:], h2)
	return hex.EncodeToString(id[:])
}

// Stats returns the counters.
func (s *Scheduler) Stats() Stats { return s.stats }

// timerQueue is a min-heap of due sends, by due time, then device, then
// the order they were pushed.
type timerQueue struct {
	h   []timerEntry
	seq uint64
}

type timerEntry struct {
	due int64
	seq uint64
	d   *devState
	p   *pendingSend // nil: the device's eviction check (evict.go)
}

func (q *timerQueue) less(i, j int) bool {
	a, b := &q.h[i], &q.h[j]
	if a.due != b.due {
		return a.due < b.due
	}
	if a.d != b.d {
		if a.d.app != b.d.app {
			return a.d.app < b.d.app
		}
		return a.d.id < b.d.id
	}
	if (a.p == nil) != (b.p == nil) {
		return b.p == nil // a device's sends before its eviction check
	}
	return a.seq < b.seq
}

func (q *timerQueue) push(e timerEntry) {
	q.seq++
	e.seq = q.seq
	q.h = append(q.h, e)
	for i := len(q.h) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q.h[i], q.h[p] = q.h[p], q.h[i]
		i = p
	}
}

func (q *timerQueue) peek() (timerEntry, bool) {
	if len(q.h) == 0 {
		return timerEntry{}, false
	}
	return q.h[0], true
}

func (q *timerQueue) pop() {
	n := len(q.h) - 1
	q.h[0] = q.h[n]
	q.h[n] = timerEntry{}
	q.h = q.h[:n]
	q.down(0)
}

// down moves the entry at i down to its place.
func (q *timerQueue) down(i int) {
	n := len(q.h)
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && q.less(l, m) {
			m = l
		}
		if r < n && q.less(r, m) {
			m = r
		}
		if m == i {
			return
		}
		q.h[i], q.h[m] = q.h[m], q.h[i]
		i = m
	}
}
