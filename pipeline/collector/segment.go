package collector

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/openengage/engage/pipeline/segmentapi"
	"github.com/openengage/engage/pipeline/tag"
)

// segmentTypes are the content types of a Segment-compatible call. As
// Segment's and RudderStack's own servers do, the collector reads the body
// as JSON whatever the label says: RudderStack's Node SDK labels its
// gzipped JSON application/x-www-form-urlencoded (axios's default for a
// Buffer), browser SDKs send text/plain to avoid a CORS preflight, and a
// beacon may send no Content-Type at all. Other types are refused (415), and
// the native /v1/tags stays strict.
var segmentTypes = []string{"application/json", "text/plain", "application/x-www-form-urlencoded", ""}

// segmentHandler serves POST /v1/<call> of Segment's HTTP Tracking API.
func (s *Server) segmentHandler(call string) http.HandlerFunc {
	limit := s.cfg.MaxSegmentSingle
	if call == "batch" {
		limit = s.cfg.MaxSegmentBatch
	}
	return func(w http.ResponseWriter, r *http.Request) {
		key := writeKey(r)
		if key == "" && r.Header.Get("Authorization") != "" {
			s.authenticate(w, "") // a malformed Authorization header
			return
		}
		// A key in a header is checked, with the app's rate limit, before
		// the body is read. Segment accepts the key in the body too; then
		// both are checked after reading it, before decoding anything else.
		var app *App
		if key != "" {
			var ok bool
			if app, ok = s.authenticate(w, key); !ok || !s.checkOrigin(w, r, app, classTracking) {
				return
			}
		}
		q, ok := s.admit(w, r, app, limit, true, segmentTypes...)
		if !ok {
			return
		}
		defer q.release()
		body, ok := q.read(w, r)
		if !ok {
			return
		}
		if app == nil {
			var k struct {
				WriteKey string `json:"writeKey"`
			}
			_ = json.Unmarshal(body, &k)
			if app, ok = s.authenticate(w, k.WriteKey); !ok || !s.checkOrigin(w, r, app, classTracking) || s.rateEmpty(w, app) {
				return
			}
		}
		env := tag.Envelope{AppID: app.ID, ReceivedAt: s.now().UTC()}
		var declarer segmentapi.Declarer
		if app.Plan != nil {
			declarer = app.Plan
		}
		results, err := segmentapi.DecodeSingle(segmentapi.Call(call), body, env, declarer)
		if err != nil {
			code, hint := "bad_body", ""
			if strings.Contains(err.Error(), "malformed JSON") {
				code = "malformed_json"
			}
			if q.mt != "application/json" {
				hint = " (the body of a Segment call is JSON, whatever its Content-Type says)"
			}
			writeError(w, http.StatusBadRequest, code, "%s%s", err.Error(), hint)
			return
		}
		if len(results) > s.cfg.MaxRecords {
			s.tooManyRecords(w, len(results))
			return
		}
		b := newBatch(app, len(body))
		var warnings []string
		dropped := 0
		for _, res := range results {
			if q.expired() {
				q.timedOut(w)
				return
			}
			// A message is refused whole if the tag plan refuses any of
			// its records.
			if res.Err != nil {
				b.reject(Rejection{Index: res.Index, Field: res.Err.Field, Reason: res.Err.Reason})
				continue
			}
			b.addGroup(res.Index, res.Records)
			for _, d := range res.Dropped {
				if dropped++; dropped <= maxWarnings {
					warnings = append(warnings, fmt.Sprintf("message %d: dropped %s", res.Index, d))
				}
			}
		}
		if dropped > maxWarnings {
			warnings = append(warnings, fmt.Sprintf("and %d more dropped fields", dropped-maxWarnings))
		}
		s.finish(w, r, b, warnings)
	}
}

// maxWarnings bounds the warnings of one answer about dropped fields: a
// batch can drop many more than it has bytes to spare.
const maxWarnings = 100

// handleSettings serves GET /v1/projects/{writeKey}/settings, what Segment's
// SDKs fetch first (analytics.js from its cdnURL): it points them at this
// collector.
func (s *Server) handleSettings(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("writeKey")
	app, ok := s.authenticate(w, key)
	if !ok || !s.checkOrigin(w, r, app, classTracking) {
		return
	}
	host := strings.TrimSuffix(s.cfg.PublicURL, "/")
	if host == "" {
		host = r.Host
	}
	segmentIO := map[string]any{
		"apiKey":                key,
		"unbundledIntegrations": []string{},
		"addBundledMetadata":    true,
	}
	// analytics.js calls protocol://apiHost (https when not said): the
	// public URL's scheme says which, else a request that came over TLS.
	switch {
	case strings.HasPrefix(host, "https://"), s.cfg.PublicURL == "" && r.TLS != nil:
		segmentIO["protocol"] = "https"
	case strings.HasPrefix(host, "http://"):
		segmentIO["protocol"] = "http"
	}
	host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
	segmentIO["apiHost"] = host + "/v1"
	writeJSON(w, http.StatusOK, map[string]any{
		"integrations": map[string]any{
			"Segment.io": segmentIO,
		},
		"plan": map[string]any{
			"track":    map[string]any{"__default": map[string]any{"enabled": true, "integrations": map[string]any{}}},
			"identify": map[string]any{"__default": map[string]any{"enabled": true}},
			"group":    map[string]any{"__default": map[string]any{"enabled": true}},
		},
		"edgeFunction":       map[string]any{},
		"middlewareSettings": map[string]any{},
		"enabledMiddleware":  map[string]any{},
		"metrics":            map[string]any{"sampleRate": 0},
		"remotePlugins":      []any{},
	})
}
