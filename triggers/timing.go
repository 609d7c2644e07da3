package triggers

import (
	"math"
	"strconv"
	"sync"
	"time"
)

// Send times in the device's own time zone.
//
// Wall times. A time of day names, on each local date, one instant: the
// first instant whose wall clock reads that date and time or later. So on
// a spring-forward day where 02:30 does not exist (Europe/Paris, last
// Sunday of March, 02:00 → 03:00), 02:30 is 03:00 CEST, the first instant
// after the gap; on a fall-back day where it exists twice (last Sunday of
// October, 03:00 → 02:00), 02:30 is the first, 02:30 CEST. A date never
// has two sends at one time of day.
//
// Durations (Delay, Expiry) are elapsed time: a delay of 48h across a DST
// change ends 48 hours later, an hour off the wall time of the entry; use
// AlignTo for a wall time.
//
// Occurrences. Each send opportunity has an occurrence id, the same
// whenever it is decided again; the scheduler puts it into the delivery
// id (campaign, version, device, occurrence), so a replay or a retry makes
// the same delivery:
//   - on_entry: "entry:" + the entry instant in Unix milliseconds (the tag
//     model's resolution), EntryOccurrence;
//   - once: "once", OnceOccurrence;
//   - recurring: "day:" + the local date of the occurrence, "day:2026-03-29"
//     (the date whose time of day it is, even when DST moves the instant),
//     from NextRecurringSend.

// Reasons a send does not happen (ok false) or moved (ok true), as
// EntrySend and Constrain give them.
const (
	ReasonEnded         = "campaign ended"                   // due after When.End
	ReasonExpired       = "expired"                          // later than When.Expiry after its trigger
	ReasonQuiet         = "quiet hours"                      // in quiet hours that drop
	ReasonQuietDeferred = "deferred by quiet hours"          // ok: moved to the end of quiet hours
	ReasonStart         = "deferred to the campaign's start" // ok: moved to When.Start
)

// OnceOccurrence is the occurrence id of a once campaign's send.
const OnceOccurrence = "once"

// EntryOccurrence is the occurrence id of an on_entry send triggered by an
// entry at entered: "entry:" + its Unix milliseconds.
func EntryOccurrence(entered time.Time) string {
	return "entry:" + strconv.FormatInt(entered.UnixMilli(), 10)
}

// DefaultZonesSize bounds the package's zone cache (Location): the IANA
// database has about 600 names.
const DefaultZonesSize = 1024

// Zones is a bounded cache of time zones by name (time.LoadLocation reads
// and parses a file each time). Names that are not zones are cached too,
// so a device sending a bad name costs one load. Safe for concurrent use.
type Zones struct {
	mu        sync.RWMutex
	max       int
	m         map[string]*time.Location // nil: not a zone
	loads     uint64
	evictions uint64
}

// ZoneStats describes a zone cache.
type ZoneStats struct {
	Size, Capacity int
	Loads          uint64 // names loaded (cache misses)
	Evictions      uint64 // names dropped because the cache was full
}

// NewZones returns an empty cache of at most max names (at least 1).
func NewZones(n int) *Zones {
	return &Zones{max: max(n, 1), m: make(map[string]*time.Location)}
}

var zones = NewZones(DefaultZonesSize)

// Location is Zones.Location on the package's cache.
func Location(tz, fallback string) (*time.Location, bool) { return zones.Location(tz, fallback) }

// Location returns the time zone named tz (IANA, "Europe/Paris"). A device
// that sent none (tz empty) gets fallback, the campaign's DefaultTZ, and an
// empty fallback is UTC. A name that is not a zone falls back the same way
// (tz to fallback, fallback to UTC) and ok is false, so that the caller
// can say so; loc is never nil. "Local" is not a zone here: it would be
// the machine's.
func (z *Zones) Location(tz, fallback string) (loc *time.Location, ok bool) {
	ok = true
	for _, name := range [2]string{tz, fallback} {
		if name == "" {
			continue
		}
		if loc := z.load(name); loc != nil {
			return loc, ok
		}
		ok = false
	}
	return time.UTC, ok
}

func (z *Zones) load(name string) *time.Location {
	z.mu.RLock()
	loc, found := z.m[name]
	z.mu.RUnlock()
	if found {
		return loc
	}
	if len(name) > 64 || name == "Local" {
		return nil // not a zone, and not worth a cache slot
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		loc = nil
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	z.loads++
	if _, found := z.m[name]; !found && len(z.m) >= z.max {
		for k := range z.m { // an arbitrary victim
			delete(z.m, k)
			z.evictions++
			break
		}
	}
	z.m[name] = loc
	return loc
}

// Stats returns the cache's size and counters.
func (z *Zones) Stats() ZoneStats {
	z.mu.RLock()
	defer z.mu.RUnlock()
	return ZoneStats{Size: len(z.m), Capacity: z.max, Loads: z.loads, Evictions: z.evictions}
}

// span is a stretch of time during which a zone has one UTC offset:
// [start, end) in Unix seconds, off in seconds.
type span struct{ start, end, off int64 }

func spanAt(u int64, loc *time.Location) span {
	t := time.Unix(u, 0).In(loc)
	_, off := t.Zone()
	s, e := t.ZoneBounds()
	sp := span{start: math.MinInt64, end: math.MaxInt64, off: int64(off)}
	if !s.IsZero() {
		sp.start = s.Unix()
	}
	if !e.IsZero() {
		sp.end = e.Unix()
	}
	return sp
}

const (
	day = 86400
	// maxOffset bounds any zone's UTC offset (real ones stay within ±16h).
	maxOffset = 26 * 3600
)

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

// seconds is the time of day in seconds after midnight.
func (t TimeOfDay) seconds() int64 { return int64(t.Hour)*3600 + int64(t.Minute)*60 }

// firstWall returns the first instant whose wall clock in loc reads wall
// or later; wall counts seconds since 1970-01-01 00:00 of the wall clock
// (a wall time read as if it were UTC). Within a span the wall clock runs
// with time, so that instant is where the clock reaches wall, or the start
// of a span (a jump forward over wall).
func firstWall(wall int64, loc *time.Location) time.Time {
	cur := wall - maxOffset // every earlier instant reads less
	for range 64 {
		sp := spanAt(cur, loc)
		if cur+sp.off >= wall {
			return time.Unix(cur, 0)
		}
		if u := wall - sp.off; u < sp.end { // the clock reaches wall in this span
			return time.Unix(u, 0)
		}
		cur = sp.end // or jumps at its end
	}
	return time.Unix(cur, 0) // not reached: every instant after wall+maxOffset reads later
}

// localDay is the local date of t, in days since 1970-01-01.
func localDay(t time.Time, loc *time.Location) int64 {
	return floorDiv(t.Unix()+spanAt(t.Unix(), loc).off, day)
}

// occurrence is the instant that names tod on local date d (days since
// 1970-01-01): the first whose wall clock reads d tod or later.
func occurrence(d int64, tod TimeOfDay, loc *time.Location) time.Time {
	return firstWall(d*day+tod.seconds(), loc)
}

// NextLocal returns the first instant at or after `after` that is tod on
// its local date in loc: at `after` itself when it is one. On a day where
// tod does not exist (a spring-forward gap) that is the first instant
// after the gap; where it exists twice (fall back), the first of the two
// only: from an `after` between them, the next is the next day's. The
// result is in loc.
func NextLocal(after time.Time, tod TimeOfDay, loc *time.Location) time.Time {
	// The previous date's can only be `after` itself (when `after` ends a
	// gap), and the next date's is always later than `after`.
	d0 := localDay(after, loc)
	var t time.Time
	for d := d0 - 1; d <= d0+8; d++ {
		if t = occurrence(d, tod, loc); !t.Before(after) {
			break
		}
	}
	return t.In(loc)
}

// quiet reports whether a second of the day falls in [from, to), across
// midnight when from > to; from == to is no window.
func quiet(from, to, sod int64) bool {
	if from <= to {
		return from <= sod && sod < to
	}
	return sod >= from || sod < to
}

// Apply applies quiet hours to a send due at t. Outside the window (by
// t's wall clock in loc: From inclusive, To exclusive, across midnight
// when From > To, none when From == To) the send stays at t. Inside, it is
// dropped (Drop), or deferred to the window's end: the first instant after
// t whose wall clock is out of the window, To itself, or the first instant
// after a DST gap that skips To. A nil QuietHours changes nothing.
func (q *QuietHours) Apply(t time.Time, loc *time.Location) (at time.Time, drop bool) {
	if q == nil {
		return t, false
	}
	from, to := q.From.seconds(), q.To.seconds()
	sp := spanAt(t.Unix(), loc)
	if !quiet(from, to, floorMod(t.Unix()+sp.off, day)) {
		return t, false
	}
	if q.Drop {
		return t, true
	}
	cur := t
	for range 64 {
		wall := cur.Unix() + sp.off
		sod := floorMod(wall, day)
		end := wall - sod + to // the wall clock of the window's end
		if to <= sod {
			end += day
		}
		if u := end - sp.off; u < sp.end {
			return time.Unix(u, 0).In(loc), false
		}
		cur = time.Unix(sp.end, 0) // a transition before the end
		sp = spanAt(sp.end, loc)
		if !quiet(from, to, floorMod(cur.Unix()+sp.off, day)) {
			return cur.In(loc), false
		}
	}
	return cur.In(loc), false // not reached: windows are shorter than a day
}

// Constrain applies what every send goes through once its time t is
// known, in this order:
//   - start: a send before When.Start moves to it (re-aligned to AlignTo
//     when set, so an aligned campaign sends at its time of day only);
//   - end: a send after When.End does not happen (ReasonEnded);
//   - expiry: nor one later than When.Expiry after trigger, the instant
//     the send is for (an entry, a once or recurring occurrence)
//     (ReasonExpired);
//   - quiet hours: dropped (ReasonQuiet) or deferred; a deferred send is
//     checked against the end and the expiry again.
//
// ok sends may carry a reason: ReasonQuietDeferred or ReasonStart when
// they moved ("" otherwise).
func Constrain(c *Campaign, trigger, t time.Time, loc *time.Location) (at time.Time, ok bool, reason string) {
	w := &c.When
	if !w.Start.IsZero() && t.Before(w.Start) {
		t = w.Start
		if w.AlignTo != nil {
			t = NextLocal(t, *w.AlignTo, loc)
		}
		reason = ReasonStart
	}
	if why := limits(w, trigger, t); why != "" {
		return t, false, why
	}
	at, drop := c.Limit.Quiet.Apply(t, loc)
	if drop {
		return t, false, ReasonQuiet
	}
	if !at.Equal(t) {
		reason = ReasonQuietDeferred
		if why := limits(w, trigger, at); why != "" {
			return at, false, why
		}
	}
	return at, true, reason
}

// limits checks a send at t against the campaign's end and expiry.
func limits(w *When, trigger, t time.Time) string {
	switch {
	case !w.End.IsZero() && t.After(w.End):
		return ReasonEnded
	case w.Expiry > 0 && t.Sub(trigger) > w.Expiry:
		return ReasonExpired
	}
	return ""
}

// EntrySend returns when an on_entry campaign sends to a device that
// entered its audience at entered: entered + Delay, then the next AlignTo
// in loc at or after it (NextLocal), then Constrain with the entry as the
// trigger (so expiry counts from the entry, Delay included: a Delay longer
// than Expiry never sends). Its occurrence is EntryOccurrence(entered).
func EntrySend(c *Campaign, entered time.Time, loc *time.Location) (at time.Time, ok bool, reason string) {
	t := entered.Add(c.When.Delay)
	if a := c.When.AlignTo; a != nil {
		t = NextLocal(t, *a, loc)
	}
	return Constrain(c, entered, t, loc)
}

// OnceSend returns the instant of a once campaign's send to a device in
// loc: At itself, or with LocalTime, the instant whose wall clock in loc
// reads what At's reads in UTC (to the second; a gap or an overlap as in
// NextLocal), so 09:00 in Tokyo comes nine hours before 09:00 in London.
// The scheduler then applies Constrain(c, at, at, loc); its occurrence is
// OnceOccurrence.
func OnceSend(c *Campaign, loc *time.Location) time.Time {
	if !c.When.LocalTime {
		return c.When.At.In(loc)
	}
	return firstWall(c.When.At.Unix(), loc).In(loc)
}

// Send is one send opportunity of a recurring campaign to a device.
type Send struct {
	At         time.Time // when it goes out: the occurrence, after quiet hours
	Trigger    time.Time // the occurrence itself: Every on its local date
	Occurrence string    // "day:" + the local date, "day:2026-03-29"
}

// maxRecurringDays bounds the dates NextRecurringSend looks at: a year and
// more, so that a time of day that can only happen on a DST day is found.
const maxRecurringDays = 400

// NextRecurring is NextRecurringSend's time.
func NextRecurring(c *Campaign, after time.Time, loc *time.Location) (time.Time, bool) {
	s, ok := NextRecurringSend(c, after, loc)
	return s.At, ok
}

// NextRecurringSend returns a recurring campaign's next send to a device in
// loc: the first occurrence strictly after `after` and not before When.Start
// (Every on each local date, or only on Weekdays, the weekdays of the
// local date), whose send passes Constrain (with the occurrence as the
// trigger): occurrences dropped by quiet hours, or deferred past the end
// or the expiry, are skipped. Pass the previous send's Trigger (or now) as
// after. ok is false with no Every, when the next occurrence is after
// When.End, or when no occurrence in the next maxRecurringDays dates can
// be sent.
func NextRecurringSend(c *Campaign, after time.Time, loc *time.Location) (Send, bool) {
	w := &c.When
	if w.Every == nil {
		return Send{}, false
	}
	from := after.Add(time.Nanosecond)
	if w.Start.After(from) {
		from = w.Start
	}
	d0 := localDay(from, loc) - 1
	for d := d0; d < d0+maxRecurringDays; d++ {
		if !onWeekday(d, w.Weekdays) {
			continue
		}
		o := occurrence(d, *w.Every, loc)
		if o.Before(from) {
			continue
		}
		if !w.End.IsZero() && o.After(w.End) {
			return Send{}, false
		}
		if at, ok, _ := Constrain(c, o, o, loc); ok {
			return Send{At: at, Trigger: o.In(loc), Occurrence: "day:" + time.Unix(d*day, 0).UTC().Format(time.DateOnly)}, true
		}
	}
	return Send{}, false
}

// onWeekday reports whether local date d (days since 1970-01-01, a
// Thursday) is one of ws; every date is when ws is empty.
func onWeekday(d int64, ws []time.Weekday) bool {
	if len(ws) == 0 {
		return true
	}
	wd := time.Weekday(floorMod(d+int64(time.Thursday), 7))
	for _, w := range ws {
		if w == wd {
			return true
		}
	}
	return false
}
