package triggers

import (
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// weightTolerance is how far from 100 the variants' weights may add up
// (three variants of 33.33% are fine).
const weightTolerance = 0.05

func (k *checker) who() {
	w := &k.c.Who
	if len(w.Segments) == 0 {
		k.errorf("who.segments", "no segment: name at least one, such as segments: [new_users]")
	}
	k.segmentList(w.Segments, "who.segments", nil)
	k.segmentList(w.Exclude, "who.exclude", w.Segments)
	switch s := w.Sample; {
	case math.IsNaN(s) || s <= 0:
		k.errorf("who.sample", "sample %s keeps nobody: use more than 0%% and at most 100%% (leave it out for everyone)", formatPercent(s))
	case s > 100:
		k.errorf("who.sample", "sample %s is more than everyone: use at most 100%%", formatPercent(s))
	}
	switch c := w.Control; {
	case math.IsNaN(c) || c < 0:
		k.errorf("who.control", "control %s is negative: use 0%% (no control group) to less than 100%%", formatPercent(c))
	case c >= 100:
		k.errorf("who.control", "control %s holds everyone out, nobody gets the message: use less than 100%%", formatPercent(c))
	}
	k.variants()
}

// segmentList checks segment names; also, if given, are the segments a
// device must be in (for the exclusions).
func (k *checker) segmentList(names []string, path string, also []string) {
	known := slices.Sorted(maps.Keys(k.env.Segments))
	for i, name := range names {
		at := indexPath(path, i)
		switch {
		case name == "":
			k.errorf(at, "empty segment name")
		case slices.Index(names, name) < i:
			k.errorf(at, "segment %q is listed twice", name)
		case slices.Contains(also, name):
			k.errorf(at, "segment %q is both in segments and exclude: no device can be in the audience", name)
		case k.env.Segments == nil:
		case !hasSegment(k.env.Segments, name):
			k.errorf(at, "unknown segment %q in app %q%s", name, k.c.App, didYouMean(name, known))
		}
	}
}

func hasSegment[V any](m map[string]V, name string) bool {
	_, ok := m[name]
	return ok
}

func (k *checker) variants() {
	vs := k.c.Who.Variants
	sum, positive := 0.0, true
	for i, v := range vs {
		at := indexPath("who.variants", i)
		k.checkName(at+".name", "variant name", v.Name)
		if j := slices.IndexFunc(vs, func(o Variant) bool { return o.Name == v.Name }); j < i && v.Name != "" {
			k.errorf(at+".name", "variant %q is named twice (also who.variants[%d]): each variant needs its own name, which keeps its devices", v.Name, j)
		}
		if math.IsNaN(v.Weight) || v.Weight <= 0 {
			k.errorf(at+".weight", "weight %s: each variant needs a share above 0%%", formatPercent(v.Weight))
			positive = false
		}
		sum += v.Weight
		if v.Content != nil {
			k.content(v.Content, at+".content", v.Name)
		}
	}
	if len(vs) > 0 && positive && math.Abs(sum-100) > weightTolerance {
		k.errorf("who.variants", "the variants' weights add up to %s, not 100%%: each is its share of the devices outside the control group", formatPercent(sum))
	}
}

func (k *checker) when() {
	w := &k.c.When
	switch w.Kind {
	case OnEntry:
		if w.Delay < 0 {
			k.errorf("when.on_entry.delay", "delay %s is negative: a send cannot come before the entry", formatFileDuration(w.Delay))
		}
		k.timeOfDay("when.on_entry.at", w.AlignTo)
		if w.Expiry > 0 && w.Delay > w.Expiry {
			k.errorf("when.expiry", "expiry %s is shorter than the delay %s: expiry counts from the entry, so every send would expire before it is due",
				formatFileDuration(w.Expiry), formatFileDuration(w.Delay))
		}
		k.notOf(OnEntry, w.At.IsZero() && !w.LocalTime && w.Every == nil && len(w.Weekdays) == 0)
		k.sendTimeInQuiet("when.on_entry.at", w.AlignTo)
	case Once:
		k.once()
		k.notOf(Once, w.Delay == 0 && w.AlignTo == nil && w.Every == nil && len(w.Weekdays) == 0)
	case Recurring:
		if w.Every == nil {
			k.errorf("when.recurring.at", "missing at: the local time of day to send, such as at: \"09:00\"")
		}
		k.timeOfDay("when.recurring.at", w.Every)
		for i, d := range w.Weekdays {
			switch {
			case d < time.Sunday || d > time.Saturday:
				k.errorf(indexPath("when.recurring.every", i), "weekday %d: use 0 (Sunday) to 6 (Saturday)", int(d))
			case slices.Index(w.Weekdays, d) < i:
				k.errorf(indexPath("when.recurring.every", i), "%s is listed twice", strings.ToLower(d.String()[:3]))
			}
		}
		k.notOf(Recurring, w.At.IsZero() && !w.LocalTime && w.Delay == 0 && w.AlignTo == nil)
		k.sendTimeInQuiet("when.recurring.at", w.Every)
	case "":
		k.errorf("when", "when needs one of on_entry, once or recurring")
	default:
		kinds := []string{string(OnEntry), string(Once), string(Recurring)}
		k.errorf("when", "unknown trigger %q: use on_entry, once or recurring%s", w.Kind, didYouMean(string(w.Kind), kinds))
	}
	if !w.Start.IsZero() && !w.End.IsZero() && !w.End.After(w.Start) {
		k.errorf("when.end", "end %s is not after start %s: the campaign could never send", formatInstant(w.End), formatInstant(w.Start))
	} else if !w.End.IsZero() && !k.env.Now.IsZero() && w.End.Before(k.env.Now) {
		k.errorf("when.end", "end %s is in the past (now is %s): the campaign could never send", formatInstant(w.End), formatInstant(k.env.Now))
	}
	if w.Expiry < 0 {
		k.errorf("when.expiry", "expiry %s is negative: give how long a message stays worth sending, such as 1d", formatFileDuration(w.Expiry))
	}
	if w.DefaultTZ != "" && w.DefaultTZ != "UTC" && !tag.ValidTimeZone(w.DefaultTZ) {
		k.errorf("when.default_time_zone", "unknown time zone %q: use an IANA name such as Europe/Paris or America/New_York", w.DefaultTZ)
	}
}

// notOf reports a campaign built in Go that sets fields of another kind
// of trigger than its own.
func (k *checker) notOf(kind TriggerKind, clean bool) {
	if !clean {
		k.errorf("when", "the campaign sends %s but sets fields of another trigger (delay, at, local_time, every, weekdays): set only its own", kind)
	}
}

// The instants a once campaign's local time can fall on: a wall time is
// read from UTC+14 (Kiribati, the earliest) to UTC-12 (the latest).
const (
	earliestOffset = 14 * time.Hour
	latestOffset   = 12 * time.Hour
)

func (k *checker) once() {
	w := &k.c.When
	if w.At.IsZero() {
		k.errorf("when.once.at", "missing at: the instant to send, such as at: 2026-12-24T18:00:00Z")
		return
	}
	first, last := w.At, w.At // the instants the send happens at, over every zone
	where, at := "", formatInstant(w.At)
	if w.LocalTime {
		first, last = w.At.Add(-earliestOffset), w.At.Add(latestOffset)
		where, at = " in every time zone", w.At.Format("2006-01-02T15:04")+" local time"
		k.sendTimeInQuiet("when.once.at", &TimeOfDay{Hour: w.At.Hour(), Minute: w.At.Minute()})
	}
	switch {
	case !w.Start.IsZero() && last.Before(w.Start):
		k.errorf("when.once.at", "at %s is before start %s%s: the send could never happen", at, formatInstant(w.Start), where)
	case !w.End.IsZero() && first.After(w.End):
		k.errorf("when.once.at", "at %s is after end %s%s: the send could never happen", at, formatInstant(w.End), where)
	case !k.env.Now.IsZero() && last.Before(k.env.Now):
		k.errorf("when.once.at", "at %s is in the past%s (now is %s)", at, where, formatInstant(k.env.Now))
	}
}

// timeOfDay checks a time of day (nil: not given).
func (k *checker) timeOfDay(path string, t *TimeOfDay) {
	switch {
	case t == nil:
	case t.Hour < 0 || t.Hour > 23:
		k.errorf(path, "%s is not a time of day: hours go from 00 to 23 (midnight is 00:00)", formatTimeOfDay(*t))
	case t.Minute < 0 || t.Minute > 59:
		k.errorf(path, "%s is not a time of day: minutes go from 00 to 59", formatTimeOfDay(*t))
	}
}

// sendTimeInQuiet reports a local send time that falls in the quiet
// hours: every send would be deferred, or dropped.
func (k *checker) sendTimeInQuiet(path string, t *TimeOfDay) {
	q := k.c.Limit.Quiet
	if t == nil || q == nil || !validTimeOfDay(*t) || !validTimeOfDay(q.From) || !validTimeOfDay(q.To) {
		return
	}
	from, to, at := minuteOfDay(q.From), minuteOfDay(q.To), minuteOfDay(*t)
	in := from < to && from <= at && at < to || from > to && (at >= from || at < to)
	if !in {
		return
	}
	then := "deferred to " + formatTimeOfDay(q.To)
	if q.Drop {
		then = "dropped"
	}
	k.errorf(path, "sends at %s fall in the quiet hours (%s to %s): every one would be %s; move the send time or the quiet hours",
		formatTimeOfDay(*t), formatTimeOfDay(q.From), formatTimeOfDay(q.To), then)
}

func validTimeOfDay(t TimeOfDay) bool {
	return 0 <= t.Hour && t.Hour <= 23 && 0 <= t.Minute && t.Minute <= 59
}

func minuteOfDay(t TimeOfDay) int { return t.Hour*60 + t.Minute }

func (k *checker) limits() {
	l := &k.c.Limit
	if q := l.Quiet; q != nil {
		k.timeOfDay("limits.quiet_hours.from", &q.From)
		k.timeOfDay("limits.quiet_hours.to", &q.To)
		if q.From == q.To {
			k.errorf("limits.quiet_hours", "quiet hours from %s to %s are empty, or the whole day: give the hours when nothing is sent, such as from 22:00 to 08:00",
				formatTimeOfDay(q.From), formatTimeOfDay(q.To))
		}
	}
	switch {
	case l.Once && l.ReentryAfter != 0:
		k.errorf("limits.reentry_after", "once: true and reentry_after exclude each other: once sends to a device only once, reentry_after again after a while")
	case l.ReentryAfter < 0:
		k.errorf("limits.reentry_after", "reentry_after %s is negative: give the least time between two sends to a device, such as 7d", formatFileDuration(l.ReentryAfter))
	}
	if math.IsNaN(l.Rate) || l.Rate < 0 {
		k.errorf("limits.rate", "rate %g is negative: give sends per unit of time, such as 100/s (or leave it out for no limit)", l.Rate)
	}
}

func (k *checker) goal() {
	g := k.c.Goal
	if g == nil {
		return
	}
	plan := k.env.Plan
	switch {
	case g.Event == "":
		k.errorf("goal.event", "the goal has no event: name the event that counts as a conversion, such as subscribed")
	case plan != nil && !plan.HasTag(tag.KindEvent, g.Event):
		k.errorf("goal.event", "event %q is not %s%s", g.Event, k.inPlan(), didYouMean(g.Event, plan.TagNames(tag.KindEvent)))
	}
	if g.Window <= 0 {
		k.errorf("goal.within", "within %s: give how long after the send a conversion counts, such as 3d", formatFileDuration(g.Window))
	}
}

// formatTimeOfDay writes HH:MM (out-of-range values as they are).
func formatTimeOfDay(t TimeOfDay) string {
	two := func(n int) string {
		if 0 <= n && n < 10 {
			return "0" + string(rune('0'+n))
		}
		return strconv.Itoa(n)
	}
	return two(t.Hour) + ":" + two(t.Minute)
}

// formatInstant writes an instant as RFC 3339 in UTC.
func formatInstant(t time.Time) string { return t.UTC().Format(time.RFC3339) }
