package segmentapi

import (
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// The mapping of each call to records (see the table in doc.go).

// track maps a track call: an event, or a job or error if the tag plan
// declares its name so.
func (d *decoder) track(m *message, mp *mapped) ([]tag.Record, *MessageError) {
	if m.Event == "" {
		return nil, &MessageError{Field: "event", Reason: "missing: a track call needs the event name"}
	}
	props, err := d.sc.object(m.Properties, "properties")
	if err != nil {
		return nil, err
	}
	kind := tag.KindEvent
	if d.declarer != nil {
		if k, ok := d.declarer.Declared(m.Event); ok && (k == tag.KindJob || k == tag.KindError) {
			kind = k
		}
	}
	var dur time.Duration
	if kind == tag.KindJob {
		if dur, props, err = d.sc.jobDuration(props); err != nil {
			return nil, err
		}
	}
	extras, err := d.sc.buildExtras(props, "properties", "", nil)
	if err != nil {
		return nil, err
	}
	return mp.record(kind, m.Event, dur, extras, nil), nil
}

// jobDuration takes the duration of a job out of its properties: duration
// in seconds (Segment's convention), else durationMs.
func (sc *scratch) jobDuration(props []member) (time.Duration, []member, *MessageError) {
	field, unit := "duration", float64(time.Second)
	raw, ok := sc.get(props, "duration")
	if !ok || raw.absent() {
		field, unit = "durationMs", float64(time.Millisecond)
		raw, ok = sc.get(props, "durationMs")
	}
	if !ok || raw.absent() {
		return 0, nil, &MessageError{Field: "properties.duration", Reason: "missing: an event declared as a job needs properties.duration (seconds) or properties.durationMs"}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f <= 0 || f*unit >= math.MaxInt64 {
		return 0, nil, &MessageError{Field: "properties." + field, Reason: "expected a positive number, got JSON " + quoteShort(string(raw))}
	}
	props = slices.DeleteFunc(props, func(m member) bool {
		k := sc.key(&m)
		return string(k) == "duration" || string(k) == "durationMs"
	})
	return time.Duration(f * unit), props, nil
}

// activity maps a screen or page call to an activity start.
func (mp *mapped) activity(m *message) ([]tag.Record, *MessageError) {
	props, err := mp.sc.object(m.Properties, "properties")
	if err != nil {
		return nil, err
	}
	name := m.Name
	if mp.call == CallPage {
		for _, k := range [...]string{"name", "path"} {
			if name == "" {
				raw, _ := mp.sc.get(props, k)
				name, _ = unquote(raw)
			}
		}
	}
	if name == "" {
		reason := "missing: a screen call needs the screen name"
		if mp.call == CallPage {
			reason = "missing: a page call needs name, properties.name or properties.path"
		}
		return nil, &MessageError{Field: "name", Reason: reason}
	}
	var fixed []tag.Extra
	if _, ok := mp.sc.get(props, "category"); !ok && m.Category != "" {
		fixed = []tag.Extra{{Key: "category", Value: tag.String(m.Category)}}
	}
	extras, err := mp.sc.buildExtras(props, "properties", "", fixed)
	if err != nil {
		return nil, err
	}
	return mp.record(tag.KindActivityStart, name, 0, extras, nil), nil
}

// identifyCall maps the traits of an identify call to app-info.
func (mp *mapped) identifyCall(m *message) ([]tag.Record, *MessageError) {
	traits, err := mp.sc.object(m.Traits, "traits")
	if err != nil {
		return nil, err
	}
	info, err := mp.sc.buildExtras(traits, "traits", "", nil)
	if err != nil {
		return nil, err
	}
	if len(info) == 0 {
		return nil, nil
	}
	return mp.record(tag.KindAppInfo, "", 0, nil, info), nil
}

// group maps a group call to app-info about the group.
func (mp *mapped) group(m *message) ([]tag.Record, *MessageError) {
	groupID, err := idString(m.GroupID, "groupId")
	if err != nil {
		return nil, err
	}
	if groupID == "" {
		return nil, &MessageError{Field: "groupId", Reason: "missing: a group call needs the group id"}
	}
	if len(groupID) > tag.MaxValueLen {
		return nil, &MessageError{Field: "groupId", Reason: tooLong(len(groupID))}
	}
	traits, err := mp.sc.object(m.Traits, "traits")
	if err != nil {
		return nil, err
	}
	fixed := []tag.Extra{{Key: "group_id", Value: tag.String(groupID)}}
	info, err := mp.sc.buildExtras(traits, "traits", "group_", fixed)
	if err != nil {
		return nil, err
	}
	return mp.record(tag.KindAppInfo, "", 0, nil, info), nil
}

// alias maps an alias call to an event.
func (mp *mapped) alias(m *message) ([]tag.Record, *MessageError) {
	prev, err := idString(m.PreviousID, "previousId")
	if err != nil {
		return nil, err
	}
	if prev == "" {
		return nil, &MessageError{Field: "previousId", Reason: "missing: an alias call needs the previous id"}
	}
	if mp.base.UserID == "" {
		return nil, &MessageError{Field: "userId", Reason: "missing: an alias call needs the new user id"}
	}
	if len(prev) > tag.MaxValueLen {
		return nil, &MessageError{Field: "previousId", Reason: tooLong(len(prev))}
	}
	extras := []tag.Extra{
		{Key: "previous_id", Value: tag.String(prev)},
		{Key: "user_id", Value: tag.String(mp.base.UserID)},
	}
	return mp.record(tag.KindEvent, AliasEvent, 0, extras, nil), nil
}

// AliasEvent is the name of the event an alias call maps to.
const AliasEvent = "$alias"

func tooLong(n int) string {
	return strconv.Itoa(n) + " bytes, more than the limit of " + strconv.Itoa(tag.MaxValueLen)
}
