package segmentapi

import (
	"bytes"
	"errors"
	"slices"
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
	base     tag.Record // ids, times and session, shared by the message's records
	dropped  []string   // warnings about the context; those about properties and traits are in sc.drops
	sc       *scratch

	sessionStart bool   // context.sessionStart: the SDK's session starts here
	lifecycle    string // the lifecycle event of a track call (EventOpened…), else ""
	forceDevice  bool   // give a device record even if the request already has the same one
	propVersion  string // properties.version of Installed and Updated
	propBuild    string // properties.build of Installed and Updated
}

// mapMessage maps a decoded message to its records in res.
func (d *decoder) mapMessage(m *message, res *Result) *MessageError {
	mp := mapped{call: Call(m.Type), sc: &d.sc}
	d.sc.drops.reset()
	ctx, ctxDrops := d.context(m.Context)
	if err := d.setIDs(m, &ctx, &mp, &ctxDrops); err != nil {
		return err
	}
	if err := mp.times(m, d); err != nil {
		return err
	}
	if v, ok := unquote(bytes.TrimSpace(ctx.App.Version)); ok && usableName(v) {
		mp.base.AppVersion = v // every record says which app version sent it
	}
	mp.base.SessionID, mp.sessionStart = ctx.session(&mp.dropped)
	mp.forceDevice = mp.call == CallIdentify
	var recs []tag.Record
	var err *MessageError
	switch mp.call {
	case CallTrack:
		mp.lifecycleEvent(m)
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
	recs = mp.sessionRecords(recs)
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
	if len(res.Records) == 0 {
		res.Records = recs // no copy
	} else {
		res.Records = append(res.Records, recs...)
	}
	res.Dropped = d.sc.drops.merge(mp.dropped)
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

// record returns the record of the message with the given content and
// its message id (derived from the content when the message has none), in
// a slice of its own (sc.one). It is made in place: a record is 320
// bytes, and returning it, then copying it into the slice, cost more
// than the rest of a tiny message's mapping.
func (mp *mapped) record(kind tag.Kind, name string, dur time.Duration, extras, appInfo []tag.Extra) []tag.Record {
	recs := mp.sc.one()
	r := &recs[0]
	*r = mp.base
	r.Kind, r.Name, r.Duration, r.Extras, r.AppInfo = kind, name, dur, extras, appInfo
	if r.MessageID == "" {
		r.MessageID = tag.GenerateID(r, mp.client)
	}
	return recs
}

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
