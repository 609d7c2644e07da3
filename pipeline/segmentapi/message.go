package segmentapi

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// message is a Segment message as the decoder reads it. Ids and times stay
// raw so that ids may be numbers and a bad time names its own field; the
// Segment fields not listed here are ignored.
type message struct {
	Type, Event, Name, Category, MessageID string

	UserID, AnonymousID, GroupID, PreviousID rawJSON
	Timestamp, OriginalTimestamp, SentAt     rawJSON
	Properties, Traits, Context              rawJSON
}

// decode reads a message that encoding/json has validated, with the light
// scanner: decoding it with encoding/json would validate it once more, and
// that was 40% of the time of a batch.
func (m *message) decode(raw []byte) *MessageError {
	var err *MessageError
	str := func(field string, v []byte) string {
		if s, ok := unquote(v); ok || err != nil {
			return s
		}
		if k := jsonKind(v); k != "null" {
			err = &MessageError{Field: field, Reason: "expected a string, got JSON " + k}
		}
		return ""
	}
	ok := members(raw, func(key, v []byte) {
		switch string(key) {
		case `"type"`:
			if c, ok := callOf(v); ok {
				m.Type = string(c) // a constant: no allocation
			} else {
				m.Type = str("type", v)
			}
		case `"event"`:
			m.Event = str("event", v)
		case `"name"`:
			m.Name = str("name", v)
		case `"category"`:
			m.Category = str("category", v)
		case `"messageId"`:
			m.MessageID = str("messageId", v)
		case `"userId"`:
			m.UserID = v
		case `"anonymousId"`:
			m.AnonymousID = v
		case `"groupId"`:
			m.GroupID = v
		case `"previousId"`:
			m.PreviousID = v
		case `"timestamp"`:
			m.Timestamp = v
		case `"originalTimestamp"`:
			m.OriginalTimestamp = v
		case `"sentAt"`:
			m.SentAt = v
		case `"properties"`:
			m.Properties = v
		case `"traits"`:
			m.Traits = v
		case `"context"`:
			m.Context = v
		}
	})
	if !ok {
		return &MessageError{Field: "message", Reason: "expected a JSON object, got JSON " + jsonKind(raw)}
	}
	return err
}

// callOf returns the call a raw JSON string names.
func callOf(v []byte) (Call, bool) {
	for _, c := range [...]Call{CallTrack, CallScreen, CallPage, CallIdentify, CallGroup, CallAlias} {
		if len(v) == len(c)+2 && v[0] == '"' && string(v[1:len(v)-1]) == string(c) {
			return c, true
		}
	}
	return "", false
}

// mapped is one message on its way to records.
type mapped struct {
	call     Call
	devField string // the Segment field the device id came from
	client   time.Time
	base     tag.Record // ids and times, shared by the message's records
	dropped  []string
}

// mapMessage maps a decoded message to its records in res.
func (d *decoder) mapMessage(m *message, res *Result) *MessageError {
	mp := mapped{call: Call(m.Type)}
	ctx, ctxDrops := d.context(m.Context)
	if err := d.setIDs(m, &ctx, &mp, &ctxDrops); err != nil {
		return err
	}
	if err := mp.times(m, d); err != nil {
		return err
	}
	var recs []tag.Record
	var err *MessageError
	switch mp.call {
	case CallTrack:
		recs, err = d.track(m, &mp)
	case CallScreen, CallPage:
		recs, err = mp.activity(m)
	case CallIdentify:
		recs, err = mp.identifyCall(m)
	case CallGroup:
		recs, err = mp.group(m)
	case CallAlias:
		recs, err = mp.alias(m)
	}
	if err != nil {
		return err
	}
	for i := range recs {
		if e := recs[i].Validate(); e != nil {
			return mp.fieldError(e)
		}
	}
	dev, err := d.device(&ctx, m.Context, &mp, &ctxDrops)
	if err != nil {
		return err
	}
	if dev != nil {
		res.Records = append(res.Records, *dev)
		mp.dropped = append(mp.dropped, ctxDrops...)
	}
	res.Records = append(res.Records, recs...)
	slices.Sort(mp.dropped)
	res.Dropped = mp.dropped
	return nil
}

// context returns the message's context over the batch's. SDKs send the
// same context with every message: the last one decoded is reused.
func (d *decoder) context(raw rawJSON) (wireContext, []string) {
	if raw.absent() {
		return d.ctx, slices.Clip(d.ctxDrop)
	}
	if d.lastCtx == nil || !bytes.Equal(raw, d.lastCtx) {
		d.lastCtx = raw
		d.last = d.ctx
		d.lastDrop = d.last.decode(raw, d.ctxDrop)
	}
	return d.last, slices.Clip(d.lastDrop)
}

// id reads an id like idString, sharing the string of an id already seen
// in the request: a batch repeats the same few ids in every message.
func (d *decoder) id(raw rawJSON, field string) (string, *MessageError) {
	if s, ok := d.ids[string(raw)]; ok {
		return s, nil
	}
	s, err := idString(raw, field)
	if err == nil && s != "" && len(d.ids) < maxInterned {
		if d.ids == nil {
			d.ids = make(map[string]string)
		}
		d.ids[string(raw)] = s
	}
	return s, err
}

// maxInterned bounds the ids a request shares.
const maxInterned = 256

// setIDs sets the device and user ids of the message.
func (d *decoder) setIDs(m *message, ctx *wireContext, mp *mapped, ctxDrops *[]string) *MessageError {
	userID, err := d.id(m.UserID, "userId")
	if err != nil {
		return err
	}
	anonID, err := d.id(m.AnonymousID, "anonymousId")
	if err != nil {
		return err
	}
	devID, e := d.id(ctx.Device.ID, "context.device.id")
	if e != nil {
		*ctxDrops = append(*ctxDrops, "context.device.id: "+e.Reason)
	}
	mp.devField = "context.device.id"
	if devID == "" {
		devID, mp.devField = anonID, "anonymousId"
	}
	if devID == "" {
		devID, mp.devField = userID, "userId"
	}
	if devID == "" {
		return &MessageError{Field: "anonymousId", Reason: "missing: a message needs anonymousId, userId or context.device.id"}
	}
	mp.base = tag.Record{AppID: d.env.AppID, DeviceID: devID, UserID: userID, ReceivedAt: d.env.ReceivedAt}
	return nil
}

// times sets the client time, sentAt and the skew-corrected event time.
func (mp *mapped) times(m *message, d *decoder) *MessageError {
	client, ok, err := parseTime(m.Timestamp)
	if err != nil {
		err.Field = "timestamp"
		return err
	}
	if !ok {
		if client, _, err = parseTime(m.OriginalTimestamp); err != nil {
			err.Field = "originalTimestamp"
			return err
		}
	}
	sent, ok, err := parseTime(m.SentAt)
	if err != nil {
		err.Field = "sentAt"
		return err
	}
	if !ok {
		sent = d.sentAt
	}
	mp.client = client
	mp.base.SentAt = sent
	mp.base.Time = tag.CorrectSkew(client, sent, d.env.ReceivedAt)
	mp.base.MessageID = m.MessageID
	return nil
}

// record returns a record of the message with the given content and its
// message id (derived from the content when the message has none).
func (mp *mapped) record(kind tag.Kind, name string, dur time.Duration, extras, appInfo []tag.Extra) tag.Record {
	r := mp.base
	r.Kind, r.Name, r.Duration, r.Extras, r.AppInfo = kind, name, dur, extras, appInfo
	if r.MessageID == "" {
		r.MessageID = tag.GenerateID(&r, mp.client)
	}
	return r
}

func (d *decoder) track(m *message, mp *mapped) ([]tag.Record, *MessageError) {
	if m.Event == "" {
		return nil, &MessageError{Field: "event", Reason: "missing: a track call needs the event name"}
	}
	props, err := object(m.Properties, "properties")
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
		if dur, props, err = jobDuration(props); err != nil {
			return nil, err
		}
	}
	extras, dropped, err := buildExtras(props, "properties", "", nil)
	if err != nil {
		return nil, err
	}
	mp.dropped = append(mp.dropped, dropped...)
	return []tag.Record{mp.record(kind, m.Event, dur, extras, nil)}, nil
}

// jobDuration takes the duration of a job out of its properties: duration
// in seconds (Segment's convention), else durationMs.
func jobDuration(props []member) (time.Duration, []member, *MessageError) {
	field, unit := "duration", float64(time.Second)
	raw, ok := get(props, "duration")
	if !ok || raw.absent() {
		field, unit = "durationMs", float64(time.Millisecond)
		raw, ok = get(props, "durationMs")
	}
	if !ok || raw.absent() {
		return 0, nil, &MessageError{Field: "properties.duration", Reason: "missing: an event declared as a job needs properties.duration (seconds) or properties.durationMs"}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f <= 0 || f*unit >= math.MaxInt64 {
		return 0, nil, &MessageError{Field: "properties." + field, Reason: "expected a positive number, got JSON " + quoteShort(string(raw))}
	}
	props = slices.DeleteFunc(props, func(m member) bool { return m.key == "duration" || m.key == "durationMs" })
	return time.Duration(f * unit), props, nil
}

func (mp *mapped) activity(m *message) ([]tag.Record, *MessageError) {
	props, err := object(m.Properties, "properties")
	if err != nil {
		return nil, err
	}
	name := m.Name
	if mp.call == CallPage {
		for _, k := range [...]string{"name", "path"} {
			if name == "" {
				raw, _ := get(props, k)
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
	if _, ok := get(props, "category"); !ok && m.Category != "" {
		fixed = []tag.Extra{{Key: "category", Value: tag.String(m.Category)}}
	}
	extras, dropped, err := buildExtras(props, "properties", "", fixed)
	if err != nil {
		return nil, err
	}
	mp.dropped = append(mp.dropped, dropped...)
	return []tag.Record{mp.record(tag.KindActivityStart, name, 0, extras, nil)}, nil
}

func (mp *mapped) identifyCall(m *message) ([]tag.Record, *MessageError) {
	traits, err := object(m.Traits, "traits")
	if err != nil {
		return nil, err
	}
	info, dropped, err := buildExtras(traits, "traits", "", nil)
	if err != nil {
		return nil, err
	}
	mp.dropped = append(mp.dropped, dropped...)
	if len(info) == 0 {
		return nil, nil
	}
	return []tag.Record{mp.record(tag.KindAppInfo, "", 0, nil, info)}, nil
}

func (mp *mapped) group(m *message) ([]tag.Record, *MessageError) {
	groupID, err := idString(m.GroupID, "groupId")
	if err != nil {
		return nil, err
	}
	if groupID == "" {
		return nil, &MessageError{Field: "groupId", Reason: "missing: a group call needs the group id"}
	}
	if len(groupID) > tag.MaxValueLen {
		return nil, &MessageError{Field: "groupId", Reason: strconv.Itoa(len(groupID)) + " bytes, more than the limit of " + strconv.Itoa(tag.MaxValueLen)}
	}
	traits, err := object(m.Traits, "traits")
	if err != nil {
		return nil, err
	}
	fixed := []tag.Extra{{Key: "group_id", Value: tag.String(groupID)}}
	info, dropped, err := buildExtras(traits, "traits", "group_", fixed)
	if err != nil {
		return nil, err
	}
	mp.dropped = append(mp.dropped, dropped...)
	return []tag.Record{mp.record(tag.KindAppInfo, "", 0, nil, info)}, nil
}

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
	for _, f := range [...]struct{ field, v string }{{"previousId", prev}, {"userId", mp.base.UserID}} {
		if len(f.v) > tag.MaxValueLen {
			return nil, &MessageError{Field: f.field, Reason: strconv.Itoa(len(f.v)) + " bytes, more than the limit of " + strconv.Itoa(tag.MaxValueLen)}
		}
	}
	extras := []tag.Extra{
		{Key: "previous_id", Value: tag.String(prev)},
		{Key: "user_id", Value: tag.String(mp.base.UserID)},
	}
	return []tag.Record{mp.record(tag.KindEvent, AliasEvent, 0, extras, nil)}, nil
}

// AliasEvent is the name of the event an alias call maps to.
const AliasEvent = "$alias"

// fieldError turns a validation error of a record into a message error
// naming the Segment field.
func (mp *mapped) fieldError(err error) *MessageError {
	var fe *tag.FieldError
	if !errors.As(err, &fe) {
		return &MessageError{Field: "message", Reason: err.Error()}
	}
	field := fe.Field
	switch {
	case field == "device":
		field = mp.devField
	case field == "user":
		field = "userId"
	case field == "id":
		field = "messageId"
	case field == "time":
		field = "timestamp"
	case field == "name" && mp.call == CallTrack:
		field = "event"
	case field == "duration":
		field = "properties.duration"
	case strings.HasPrefix(field, "extras."):
		field = "properties." + field[len("extras."):]
	case strings.HasPrefix(field, "appInfo."):
		field = "traits." + field[len("appInfo."):]
	case strings.HasPrefix(field, "device."):
		if p, ok := contextPath[field]; ok {
			field = p
		}
	}
	return &MessageError{Field: field, Reason: fe.Reason}
}
