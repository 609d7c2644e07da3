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
		// Segment accepts the key in the body too; authenticate after
		// reading it in that case, before decoding anything else.
		body, mt, ok := s.readBody(w, r, limit, segmentTypes...)
		if !ok {
			return
		}
		if key == "" {
			var k struct {
				WriteKey string `json:"writeKey"`
			}
			_ = json.Unmarshal(body, &k)
			key = k.WriteKey
		}
		app, ok := s.authenticate(w, key)
		if !ok {
			return
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
			if mt != "application/json" {
				hint = " (the body of a Segment call is JSON, whatever its Content-Type says)"
			}
			writeError(w, http.StatusBadRequest, code, "%s%s", err.Error(), hint)
			return
		}
		var recs []indexed
		var rejected []Rejection
		var warnings []string
		for _, res := range results {
			if res.Err != nil {
				rejected = append(rejected, Rejection{Index: res.Index, Field: res.Err.Field, Reason: res.Err.Reason})
				continue
			}
			for _, rec := range res.Records {
				recs = append(recs, indexed{res.Index, rec})
			}
			for _, d := range res.Dropped {
				warnings = append(warnings, fmt.Sprintf("message %d: dropped %s", res.Index, d))
			}
		}
		s.commitGrouped(w, r, app, recs, rejected, warnings)
	}
}

// commitGrouped commits records of which several may come from one message:
// a message is refused whole if the tag plan refuses any of its records.
func (s *Server) commitGrouped(w http.ResponseWriter, r *http.Request, app *App, recs []indexed, rejected []Rejection, warnings []string) {
	bad := map[int]bool{}
	for _, rj := range rejected {
		bad[rj.Index] = true
	}
	for i := range recs {
		if bad[recs[i].index] {
			continue
		}
		probe := recs[i].rec
		probe.Unplanned = nil
		if err := app.Plan.Apply(&probe); err != nil {
			bad[recs[i].index] = true
			rejected = append(rejected, rejectionOf(recs[i].index, err))
		}
	}
	kept := recs[:0]
	for _, ir := range recs {
		if !bad[ir.index] {
			kept = append(kept, ir)
		}
	}
	s.commit(w, r, app, kept, rejected, warnings)
}

// handleSettings serves GET /v1/projects/{writeKey}/settings, what Segment's
// SDKs fetch first: it points them at this collector.
func (s *Server) handleSettings(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("writeKey")
	if _, ok := s.authenticate(w, key); !ok {
		return
	}
	host := strings.TrimSuffix(s.cfg.PublicURL, "/")
	if host == "" {
		host = r.Host
	}
	host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
	writeJSON(w, http.StatusOK, map[string]any{
		"integrations": map[string]any{
			"Segment.io": map[string]any{
				"apiKey":                key,
				"apiHost":               host + "/v1",
				"unbundledIntegrations": []string{},
				"addBundledMetadata":    true,
			},
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
