package segmentapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/openengage/engage/pipeline/tag"
)

// The application lifecycle events of Segment's Native Mobile Spec, which
// Segment's and RudderStack's iOS and Android SDKs track by themselves.
// They map to sessions and device info besides their own event (see the
// table in doc.go).
const (
	EventInstalled    = "Application Installed"    // first launch after an install; properties version, build
	EventOpened       = "Application Opened"       // each launch or return to the foreground; from_background, version, build, url, referring_application
	EventBackgrounded = "Application Backgrounded" // the app went to the background
	EventUpdated      = "Application Updated"      // first launch after an update; version, build, previous_version, previous_build
)

// usableName reports whether s can be a name-like field of a record (an app
// version, a build, a session id): at most tag.MaxNameLen bytes of UTF-8
// without control characters.
func usableName(s string) bool {
	return len(s) <= tag.MaxNameLen && utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}

// session reads the session that the SDK tracks itself, as RudderStack's
// SDKs do: context.sessionId (a string or a number) and
// context.sessionStart (true on the first message of a session). An id the
// model cannot hold is dropped, with the reason appended to drops.
func (c *wireContext) session(drops *[]string) (id string, start bool) {
	raw := rawJSON(bytes.TrimSpace(c.SessionID))
	if raw.absent() {
		return "", false
	}
	id, err := idString(raw, "context.sessionId")
	switch {
	case err != nil:
		*drops = append(*drops, err.Field+": "+err.Reason)
		return "", false
	case !usableName(id):
		*drops = append(*drops, "context.sessionId: "+quoteShort(id)+" is not a session id: at most 256 bytes of UTF-8 without control characters")
		return "", false
	}
	return id, string(bytes.TrimSpace(c.SessionStart)) == "true"
}

// lifecycleEvent notes what a track call of a lifecycle event implies
// beyond its event: Installed and Updated always give a device record, and
// their properties version and build stand for context.app.version and
// context.app.build when the context has none (the record's app version
// too). It runs before the event's record is built.
func (mp *mapped) lifecycleEvent(m *message) {
	switch m.Event {
	case EventOpened, EventBackgrounded:
		mp.lifecycle = m.Event
	case EventInstalled, EventUpdated:
		mp.lifecycle = m.Event
		mp.forceDevice = true
		// Read before the properties are (track does, and reports an
		// error), with no more than a scan.
		for _, f := range [...]struct {
			key string
			to  *string
		}{{"version", &mp.propVersion}, {"build", &mp.propBuild}} {
			raw := lookup(bytes.TrimSpace(m.Properties), f.key)
			if s, err := idString(raw, ""); err == nil && s != "" && usableName(s) {
				*f.to = s
			}
		}
		if mp.base.AppVersion == "" {
			mp.base.AppVersion = mp.propVersion
		}
	}
}

// sessionRecords adds to recs, the records of the message, the session
// records it implies:
//
//   - With a session id from the SDK (context.sessionId), a session_start
//     when context.sessionStart is true; the SDK's session goes on across
//     Application Opened.
//   - Without one (Segment's SDKs), Application Opened starts a session
//     whose id is the message id of its event, which the event carries too.
//   - Application Backgrounded ends the session: a session_end with the
//     SDK's session id, or with none (Segment's SDKs do not say which
//     session ends, and the collector keeps no state between requests).
func (mp *mapped) sessionRecords(recs []tag.Record) []tag.Record {
	var start *tag.Record
	switch sid := mp.base.SessionID; {
	case sid != "" && mp.sessionStart:
		r := mp.implied(tag.KindSessionStart, sid)
		start = &r
	case sid == "" && mp.lifecycle == EventOpened && len(recs) > 0:
		sid = recs[0].MessageID
		for i := range recs {
			recs[i].SessionID = sid
		}
		r := mp.implied(tag.KindSessionStart, sid)
		start = &r
	}
	if start != nil {
		recs = append([]tag.Record{*start}, recs...)
	}
	if mp.lifecycle == EventBackgrounded {
		recs = append(recs, mp.implied(tag.KindSessionEnd, mp.base.SessionID))
	}
	return recs
}

// implied returns a record of the given kind and session that the message
// implies besides its own. Its message id is derived from the message's
// own id, so that a retry gives the same id and the record never shares
// the id of the message's event; a message without an id gives it
// tag.GenerateID, like any record without an id.
func (mp *mapped) implied(kind tag.Kind, session string) tag.Record {
	r := mp.base
	r.Kind, r.SessionID = kind, session
	if r.MessageID != "" {
		r.MessageID = derivedID(kind, r.MessageID)
	} else {
		r.MessageID = tag.GenerateID(&r, mp.client)
	}
	return r
}

// derivedID is the id of the record of the given kind that the message
// with id msgID implies: "d-" and 32 hexadecimal digits.
func derivedID(kind tag.Kind, msgID string) string {
	sum := sha256.Sum256([]byte(kind.String() + "\x00" + msgID))
	return "d-" + hex.EncodeToString(sum[:16])
}
