package engine

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/murmur3"
)

// Change is a device entering or leaving a segment.
type Change struct {
	App      string
	Segment  string
	Version  int64 // the segment's version
	DeviceID string
	Enter    bool
	// Time is when it happened: the now of the record's Apply, the due
	// time of the timer, the now of the segment change.
	Time time.Time
	// Cause is CauseRecord, CauseTimer, CauseCreated, CauseUpdated,
	// CauseDeleted or CauseEvicted.
	Cause string
	// MessageID and Offset identify the record of a CauseRecord change.
	MessageID string
	Offset    int64
	// ID is deterministic: a hash of app, segment, version, device,
	// direction and the cause's identity (the input offset of a record,
	// the due time of a timer, the segment set of a segment change), so
	// that a replay produces the same ids.
	ID ChangeID
}

// The causes of a Change.
const (
	CauseRecord  = "record"
	CauseTimer   = "timer"
	CauseCreated = "segment created"
	CauseUpdated = "segment updated"
	CauseDeleted = "segment deleted"
	// CauseEvicted: the device was not seen for longer than its app's
	// eviction horizon, and its state was deleted (evict.go).
	CauseEvicted = "evicted"
)

// ChangeID is a Change's deterministic id.
type ChangeID [16]byte

// String returns the id in hex.
func (id ChangeID) String() string { return hex.EncodeToString(id[:]) }

// CauseText returns the cause as a sentence: "record <message id>" (or
// "record at offset N" without a message id), "timer", "segment created"...
func (c *Change) CauseText() string {
	if c.Cause != CauseRecord {
		return c.Cause
	}
	if c.MessageID != "" {
		return "record " + c.MessageID
	}
	return "record at offset " + strconv.FormatInt(c.Offset, 10)
}

func (c Change) String() string {
	dir := "exit"
	if c.Enter {
		dir = "enter"
	}
	return fmt.Sprintf("%s %s/%s %s at %s (%s)", dir, c.App, c.Segment, c.DeviceID, c.Time.UTC().Format(time.RFC3339), c.CauseText())
}

type causeKind uint8

const (
	causeRecord causeKind = iota + 1
	causeTimer
	causeSegment // created or updated: the set changed
	causeDeleted
	causeEvicted // id: the eviction's instant
)

type cause struct {
	kind causeKind
	id   int64 // offset, due time, set fingerprint
	msg  string
	old  *segSet // causeSegment: the previous set, to tell created from updated
}

// change builds a Change with its deterministic id.
func (e *Engine) change(d *device, seg string, version int64, enter bool, now int64, c cause) Change {
	e.stats.Changes++
	app := d.app.name
	ch := Change{App: app, Segment: seg, Version: version, DeviceID: d.id(), Enter: enter, Time: time.Unix(now, 0).UTC()}
	switch c.kind {
	case causeRecord:
		ch.Cause, ch.MessageID, ch.Offset = CauseRecord, strings.Clone(c.msg), c.id
	case causeTimer:
		ch.Cause = CauseTimer
	case causeSegment:
		ch.Cause = CauseUpdated
		if c.old == nil || c.old.byName[seg] == nil {
			ch.Cause = CauseCreated
		}
	case causeDeleted:
		ch.Cause = CauseDeleted
	case causeEvicted:
		ch.Cause = CauseEvicted
	}
	b := e.buf[:0]
	b = append(b, app...)
	b = append(b, 0)
	b = append(b, seg...)
	b = append(b, 0)
	b = binary.AppendVarint(b, version)
	b = d.appendID(b)
	b = append(b, 0)
	dir := byte(0)
	if enter {
		dir = 1
	}
	b = append(b, dir, byte(c.kind))
	b = binary.AppendVarint(b, c.id)
	e.buf = b
	h1, h2 := murmur3.Sum128(b)
	binary.BigEndian.PutUint64(ch.ID[:8], h1)
	binary.BigEndian.PutUint64(ch.ID[8:], h2)
	return ch
}
