package segmentapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// MaxMessageBytes is Segment's limit on one message: the raw JSON of a
// message in a batch, or the whole body of a single call. The 500 KB limit
// on a batch body is the caller's.
const MaxMessageBytes = 32 * 1024

// Declarer says what kind a track event name is declared as in the app's tag
// plan: tag.KindJob, tag.KindError, or anything else for an event. A nil
// Declarer declares nothing. The decoder calls it from the goroutine that
// decodes the request; an implementation shared by concurrent requests must
// be safe for concurrent readers.
type Declarer interface {
	Declared(name string) (tag.Kind, bool)
}

// Call is a Segment API call, the last element of its path (/v1/<call>).
type Call string

// The calls of the Segment HTTP Tracking API.
const (
	CallBatch    Call = "batch"
	CallTrack    Call = "track"
	CallScreen   Call = "screen"
	CallPage     Call = "page"
	CallIdentify Call = "identify"
	CallGroup    Call = "group"
	CallAlias    Call = "alias"
)

func (c Call) message() bool {
	switch c {
	case CallTrack, CallScreen, CallPage, CallIdentify, CallGroup, CallAlias:
		return true
	}
	return false
}

// Result is what one message of a request maps to: its records (device
// record first, when there is one), or Err. Dropped lists, as "path: why",
// what the message carried that no record keeps (null or array values,
// keys that stay invalid after renaming, keys over tag.MaxExtras, unusable
// context fields); they are warnings for the client, not errors. Of the
// properties or traits dropped, the first 10 found are listed, sorted with
// the others, and a last entry counts the rest.
type Result struct {
	Index   int // position of the message in the batch; 0 for a single call
	Records []tag.Record
	Dropped []string
	Err     *MessageError
}

// MessageError says why one message of a request was refused: its index,
// the Segment field (e.g. "properties.words", "timestamp", "type") and the
// rule it breaks. The other messages of the request are not affected.
type MessageError struct {
	Index  int
	Field  string
	Reason string
}

func (e *MessageError) Error() string {
	return fmt.Sprintf("message %d: %s: %s", e.Index, e.Field, e.Reason)
}

// DecodeBatch decodes the body of POST /v1/batch:
// {"batch": [...], "sentAt": ..., "context": ..., "writeKey": ..., "integrations": ...}.
// It returns one Result per message, in order. A top-level "context" applies
// to every message, field by field under the message's own; a top-level
// "sentAt" to every message without one. It returns an error only when the
// body as a whole is unusable (not a JSON object, malformed JSON, "batch"
// missing or not an array, bad top-level sentAt): the client's fault, to
// answer with 400.
func DecodeBatch(body []byte, env tag.Envelope, d Declarer) ([]Result, error) {
	if !json.Valid(body) {
		var v json.RawMessage
		return nil, bodyError(json.Unmarshal(body, &v))
	}
	// The body is valid JSON: walk it with the light scanner rather than
	// decode it, which would validate it all again.
	var batch, sentAt, ctx rawJSON
	if !members(body, func(key, val []byte) {
		switch string(key) {
		case `"batch"`:
			batch = val
		case `"sentAt"`:
			sentAt = val
		case `"context"`:
			ctx = val
		}
	}) {
		return nil, fmt.Errorf("body: expected a JSON object, got JSON %s", jsonKind(bytes.TrimSpace(body)))
	}
	if batch.absent() {
		return nil, errors.New(`batch: missing: the body of /v1/batch is {"batch": [<messages>]}`)
	}
	var msgs []rawJSON
	if p, ok := msgLists.Get().(*[]rawJSON); ok {
		msgs = (*p)[:0]
	} else {
		msgs = make([]rawJSON, 0, 64)
	}
	defer func() {
		clear(msgs) // parts of this body: not to be kept alive by the pool
		msgs = msgs[:0]
		msgLists.Put(&msgs)
	}()
	if !elements(batch, func(val []byte) { msgs = append(msgs, val) }) {
		return nil, fmt.Errorf("batch: expected an array of messages, got JSON %s", jsonKind(batch))
	}
	dec, err := newDecoder(env, d, sentAt, ctx)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(msgs))
	for i, raw := range msgs {
		results[i] = dec.message(i, raw, "")
	}
	return results, nil
}

// msgLists holds the lists of a batch's messages, reused from one request
// to the next: a batch of 10,000 tiny messages grew its list to 240 KB,
// with a megabyte of garbage on the way.
var msgLists sync.Pool

// DecodeSingle decodes the body of POST /v1/<call> for a call other than
// batch: one message, whose type is the call; a "type" in the body must
// agree. CallBatch is handed to DecodeBatch. It returns one Result, or an
// error when the body is not a JSON object, is malformed, or the call is
// unknown.
func DecodeSingle(call Call, body []byte, env tag.Envelope, d Declarer) ([]Result, error) {
	if call == CallBatch {
		return DecodeBatch(body, env, d)
	}
	if !call.message() {
		return nil, fmt.Errorf("unknown call %q: use one of batch, track, screen, page, identify, group, alias", call)
	}
	if !json.Valid(body) {
		var v json.RawMessage
		return nil, bodyError(json.Unmarshal(body, &v))
	}
	if b := bytes.TrimSpace(body); b[0] != '{' {
		return nil, fmt.Errorf("body: expected a JSON object, got JSON %s", jsonKind(b))
	}
	dec, err := newDecoder(env, d, nil, nil)
	if err != nil {
		return nil, err
	}
	return []Result{dec.message(0, body, call)}, nil
}

// bodyError describes a json error of the whole body.
func bodyError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("body: malformed JSON at byte %d: %s", se.Offset, trimJSONPrefix(se.Error()))
	}
	if err == nil {
		err = errors.New("unreadable")
	}
	return fmt.Errorf("body: %s", trimJSONPrefix(err.Error()))
}

func trimJSONPrefix(s string) string {
	if len(s) > 6 && s[:6] == "json: " {
		return s[6:]
	}
	return s
}

// decoder holds what the messages of one request share.
type decoder struct {
	env      tag.Envelope
	declarer Declarer
	sentAt   time.Time   // top-level sentAt, else env.SentAt
	ctx      wireContext // top-level context
	ctxDrop  []string    // what the top-level context could not give
	// The device info of the top-level context, and its drops, once read
	// (batchInfo).
	ctxInfo      tag.DeviceInfo
	ctxInfoDrops []string
	ctxInfoRead  bool
	lastCtx      rawJSON     // the last message context decoded…
	last         wireContext // …and what it gave
	lastDrop     []string
	ids          map[string]string // raw JSON id → id, see id
	msg          message           // the message being decoded
	sc           scratch           // what the extras of each message are built in
	// devices maps a device id to what this request last emitted for it.
	devices map[string]seenDevice
}

func newDecoder(env tag.Envelope, d Declarer, sentAt, ctx rawJSON) (*decoder, error) {
	dec := &decoder{env: env, declarer: d, sentAt: env.SentAt}
	t, ok, err := parseTime(sentAt)
	if err != nil {
		return nil, fmt.Errorf("sentAt: %s", err.Reason)
	}
	if ok {
		dec.sentAt = t
	}
	dec.ctxDrop = dec.ctx.decode(ctx, nil)
	return dec, nil
}

// message decodes and maps the message at index i. call is the call of a
// single request, "" in a batch.
func (d *decoder) message(i int, raw rawJSON, call Call) Result {
	res := Result{Index: i}
	m, err := d.read(raw, call)
	if err == nil {
		err = d.mapMessage(m, &res)
	}
	if err != nil {
		err.Index = i
		return Result{Index: i, Err: err}
	}
	return res
}

// read decodes one message and checks its size and type.
func (d *decoder) read(raw rawJSON, call Call) (*message, *MessageError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > MaxMessageBytes {
		return nil, &MessageError{Field: "message", Reason: fmt.Sprintf("%d bytes, more than Segment's limit of 32 KB (%d bytes) per message", len(raw), MaxMessageBytes)}
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, &MessageError{Field: "message", Reason: "expected a JSON object, got JSON " + jsonKind(raw)}
	}
	m := &d.msg // reused: what the records keep is copied out of it
	*m = message{}
	if err := m.decode(raw); err != nil {
		return nil, err
	}
	switch {
	case call != "" && m.Type != "" && Call(m.Type) != call:
		return nil, &MessageError{Field: "type", Reason: fmt.Sprintf("%q does not match the call /v1/%s", m.Type, call)}
	case call != "":
		m.Type = string(call)
	case m.Type == "":
		return nil, &MessageError{Field: "type", Reason: "missing: one of track, screen, page, identify, group, alias"}
	case !Call(m.Type).message():
		return nil, &MessageError{Field: "type", Reason: fmt.Sprintf("%.40q is not one of track, screen, page, identify, group, alias", m.Type)}
	}
	return m, nil
}
