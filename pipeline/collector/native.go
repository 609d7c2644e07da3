package collector

import (
	"bytes"
	"fmt"
	"net/http"

	"github.com/openengage/engage/pipeline/tag"
)

var nativeTypes = []string{"application/json", "application/x-ndjson", "application/ndjson", "application/jsonl"}

// handleTags serves POST /v1/tags: a JSON array of records (or one record),
// or NDJSON, optionally gzipped. Every step costs time linear in the body,
// and the records are looked at one by one, the deadline with them.
func (s *Server) handleTags(w http.ResponseWriter, r *http.Request) {
	app, ok := s.authenticate(w, writeKey(r))
	if !ok || !s.checkOrigin(w, r, app, classTracking) {
		return
	}
	q, ok := s.admit(w, r, app, s.cfg.MaxBodyBytes, false, nativeTypes...)
	if !ok {
		return
	}
	defer q.release()
	body, ok := q.read(w, r)
	if !ok {
		return
	}
	env := tag.Envelope{AppID: app.ID, ReceivedAt: s.now().UTC()}
	if v := r.Header.Get("X-Sent-At"); v != "" {
		t, err := tag.ParseTime(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_sent_at", "X-Sent-At: %v", err)
			return
		}
		env.SentAt = t
	}
	var b *batch
	if q.mt == "application/json" {
		// Count before splitting: a body of millions of tiny elements
		// would cost memory and time out of proportion to its size.
		if n := countElements(body, s.cfg.MaxRecords); n > s.cfg.MaxRecords {
			s.tooManyRecords(w, n)
			return
		}
		raws, err := tag.SplitArray(body)
		if err != nil {
			writeSyntaxError(w, err)
			return
		}
		b = newBatch(app, len(body))
		for i, raw := range raws {
			if q.expired() {
				q.timedOut(w)
				return
			}
			decodeInto(b, i, raw, env)
		}
	} else {
		b = newBatch(app, len(body))
		if !s.decodeNDJSON(w, q, b, body, env) {
			return
		}
	}
	s.finish(w, r, b, nil)
}

// decodeInto decodes the record at index i and adds it to b, or refuses it.
func decodeInto(b *batch, i int, raw []byte, env tag.Envelope) {
	if len(raw) > tag.MaxRecordBytes {
		b.reject(Rejection{Index: i, Field: "record", Reason: fmt.Sprintf("%d bytes, more than the limit of %d per record", len(raw), tag.MaxRecordBytes)})
		return
	}
	rec, err := tag.DecodeJSON(raw, env)
	if err != nil {
		b.reject(rejectionOf(i, err))
		return
	}
	b.add(i, &rec)
}

// decodeNDJSON decodes newline-delimited JSON, one record per non-empty
// line. A line that is not valid JSON is a refused record, not a failed
// request: the other lines are good. It answers the request itself when it
// returns false (too many records, out of time).
func (s *Server) decodeNDJSON(w http.ResponseWriter, q *request, b *batch, body []byte, env tag.Envelope) bool {
	offset, index := 0, 0
	for len(body) > 0 {
		if q.expired() {
			q.timedOut(w)
			return false
		}
		line := body
		next := len(body)
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, next = body[:i], i+1
		}
		if t := bytes.TrimSpace(line); len(t) > 0 {
			if index >= s.cfg.MaxRecords {
				s.tooManyRecords(w, index+1)
				return false
			}
			s.decodeLine(b, index, offset, t, env)
			index++
		}
		offset += next
		body = body[next:]
	}
	return true
}

// decodeLine decodes the NDJSON line at index, offset bytes into the body.
// A good line is read once; only a refused one is checked again for its
// syntax, to say whether it is malformed JSON or a bad record.
func (s *Server) decodeLine(b *batch, index, offset int, line []byte, env tag.Envelope) {
	if len(line) > tag.MaxRecordBytes {
		decodeInto(b, index, line, env) // refused for its size, unread
		return
	}
	rec, err := tag.DecodeJSON(line, env)
	if err == nil {
		b.add(index, &rec)
		return
	}
	if serr := tag.CheckJSON(line); serr != nil {
		b.reject(Rejection{Index: index, Field: "record", Reason: fmt.Sprintf("malformed JSON on the line at byte %d of the body: %v", offset, serr)})
		return
	}
	b.reject(rejectionOf(index, err))
}

func (s *Server) tooManyRecords(w http.ResponseWriter, n int) {
	s.m.overload.WithLabelValues("too_many_records").Inc()
	writeError(w, http.StatusRequestEntityTooLarge, "too_many_records", "more than %d records in one request (%d counted before stopping): send smaller batches", s.cfg.MaxRecords, n)
}

// countElements counts the elements of the top-level JSON array in b,
// stopping once it has counted more than stop; a body that is not an array
// counts as one. It only finds commas outside strings and nested values;
// the syntax is checked afterwards.
func countElements(b []byte, stop int) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	if i >= len(b) || b[i] != '[' {
		return 1
	}
	depth, commas, any := 0, 0, false
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			if depth == 1 {
				any = true
			}
			// Skip the string: to the next quote not escaped.
			for i++; i < len(b); i++ {
				if b[i] == '\\' {
					i++
				} else if b[i] == '"' {
					break
				}
			}
		case '[', '{':
			if depth == 1 {
				any = true
			}
			depth++
		case ']', '}':
			depth--
		case ',':
			if depth == 1 {
				if commas++; commas >= stop {
					return commas + 1
				}
			}
		case ' ', '\t', '\n', '\r':
		default:
			if depth == 1 {
				any = true
			}
		}
	}
	if !any {
		return commas
	}
	return commas + 1
}
