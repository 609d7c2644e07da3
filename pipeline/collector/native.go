package collector

import (
	"bytes"
	"fmt"
	"net/http"

	"github.com/openengage/engage/pipeline/tag"
)

// handleTags serves POST /v1/tags: a JSON array of records (or one record),
// or NDJSON, optionally gzipped.
func (s *Server) handleTags(w http.ResponseWriter, r *http.Request) {
	app, ok := s.authenticate(w, writeKey(r))
	if !ok {
		return
	}
	body, mt, ok := s.readBody(w, r, s.cfg.MaxBodyBytes, "application/json", "application/x-ndjson", "application/ndjson", "application/jsonl")
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
	var raws [][]byte
	var rejected []Rejection
	if mt == "application/json" {
		var err error
		if raws, err = tag.SplitArray(body); err != nil {
			writeSyntaxError(w, err)
			return
		}
	} else {
		raws, rejected = splitNDJSON(body)
	}
	recs := make([]indexed, 0, len(raws))
	for i, raw := range raws {
		if raw == nil {
			continue // a malformed NDJSON line, already rejected
		}
		if len(raw) > tag.MaxRecordBytes {
			rejected = append(rejected, Rejection{Index: i, Field: "record", Reason: fmt.Sprintf("%d bytes, more than the limit of %d per record", len(raw), tag.MaxRecordBytes)})
			continue
		}
		rec, err := tag.DecodeJSON(raw, env)
		if err != nil {
			rejected = append(rejected, rejectionOf(i, err))
			continue
		}
		recs = append(recs, indexed{i, rec})
	}
	s.commit(w, r, app, recs, rejected, nil)
}

// splitNDJSON splits newline-delimited JSON into records. A line that is not
// valid JSON becomes a rejection (and a nil slot), not a failed request: the
// other lines are good.
func splitNDJSON(body []byte) ([][]byte, []Rejection) {
	var raws [][]byte
	var rejected []Rejection
	offset := 0
	for len(body) > 0 {
		line := body
		next := len(body)
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, next = body[:i], i+1
		}
		if t := bytes.TrimSpace(line); len(t) > 0 {
			if err := tag.CheckJSON(t); err != nil {
				rejected = append(rejected, Rejection{Index: len(raws), Field: "record", Reason: fmt.Sprintf("malformed JSON on the line at byte %d of the body: %v", offset, err)})
				raws = append(raws, nil)
			} else {
				raws = append(raws, t)
			}
		}
		offset += next
		body = body[next:]
	}
	return raws, rejected
}
