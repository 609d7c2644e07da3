package collector_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/openengage/engage/pipeline/tag"
)

func TestSegmentSingleCalls(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		path, body string
		kind       tag.Kind
		name, id   string
	}{
		{"/v1/track", `{"userId":"u1","event":"article_read","properties":{"category":"sport"},"messageId":"t1","timestamp":"2026-11-28T09:00:00Z"}`, tag.KindEvent, "article_read", "t1"},
		{"/v1/screen", `{"anonymousId":"a1","name":"home","messageId":"s1"}`, tag.KindActivityStart, "home", "s1"},
		{"/v1/page", `{"anonymousId":"a1","name":"home","messageId":"p1"}`, tag.KindActivityStart, "home", "p1"},
		{"/v1/identify", `{"userId":"u1","traits":{"logged_in":true},"messageId":"i1"}`, tag.KindAppInfo, "", "i1"},
		{"/v1/group", `{"userId":"u1","groupId":"g1","traits":{"name":"Acme"},"messageId":"g1"}`, tag.KindAppInfo, "", "g1"},
		{"/v1/alias", `{"userId":"u2","previousId":"u1","messageId":"al1"}`, tag.KindEvent, "$alias", "al1"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			before := len(f.stored())
			r := f.post(tc.path, "application/json", key, []byte(tc.body))
			if r.status != 200 || r.response(t).Accepted != 1 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			all := f.stored()
			var got []tag.Record
			for _, r := range all {
				if r.MessageID == tc.id {
					got = append(got, r)
				}
			}
			if len(all) != before+1 || len(got) != 1 || got[0].Kind != tc.kind || got[0].Name != tc.name {
				t.Fatalf("stored %d new, with id %s: %+v", len(all)-before, tc.id, got)
			}
		})
	}
}

func TestSegmentBatchMixed(t *testing.T) {
	f := newFixture(t, nil)
	body := `{"sentAt":"2026-11-28T09:00:01Z","batch":[
	 {"type":"track","anonymousId":"a1","event":"article_read","timestamp":"2026-11-28T09:00:00Z","messageId":"b0"},
	 {"type":"track","event":"orphan","messageId":"b1"},
	 {"type":"teleport","anonymousId":"a1","messageId":"b2"},
	 {"type":"screen","anonymousId":"a1","name":"home","properties":{"tags":["a","b"]},"messageId":"b3"}
	]}`
	r := f.post("/v1/batch", "application/json", key, []byte(body))
	resp := r.response(t)
	if r.status != 200 || resp.Accepted != 2 || len(resp.Rejected) != 2 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if resp.Rejected[0].Index != 1 || resp.Rejected[0].Field != "anonymousId" || resp.Rejected[1].Index != 2 || resp.Rejected[1].Field != "type" {
		t.Fatalf("rejections %+v", resp.Rejected)
	}
	if len(resp.Warnings) == 0 || !strings.Contains(strings.Join(resp.Warnings, " "), "properties.tags") {
		t.Fatalf("no warning about the dropped array: %+v", resp.Warnings)
	}
}

func TestSegmentAuthAndLimits(t *testing.T) {
	f := newFixture(t, nil)
	track := `{"anonymousId":"a1","event":"article_read"}`
	// The write key in the body, as Segment accepts it.
	if r := f.post("/v1/track", "application/json", "", []byte(`{"writeKey":"`+key+`","anonymousId":"a1","event":"e"}`)); r.status != 200 {
		t.Fatalf("key in body: %d %s", r.status, r.body)
	}
	if r := f.post("/v1/track", "application/json", "", []byte(track)); r.status != 401 {
		t.Fatalf("no key: %d", r.status)
	}
	if r := f.post("/v1/track", "application/json", "nobody-key", []byte(track)); r.status != 401 {
		t.Fatalf("bad key: %d", r.status)
	}
	big := `{"anonymousId":"a1","event":"e","properties":{"s":"` + strings.Repeat("x", 33*1024) + `"}}`
	if r := f.post("/v1/track", "application/json", key, []byte(big)); r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("33 KB call: %d", r.status)
	}
	if r := f.post("/v1/batch", "application/json", key, []byte(`{"batch":[`)); r.status != 400 || r.errorBody(t).Error.Code != "malformed_json" {
		t.Fatalf("malformed batch: %d %s", r.status, r.body)
	}
	if r := f.post("/v1/batch", "application/xml", key, []byte(`<batch/>`)); r.status != http.StatusUnsupportedMediaType {
		t.Fatalf("xml: %d", r.status)
	}
}

func TestSegmentSettings(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := http.Get(f.srv.URL + "/v1/projects/" + key + "/settings")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s struct {
		Integrations map[string]struct {
			APIKey  string `json:"apiKey"`
			APIHost string `json:"apiHost"`
		} `json:"integrations"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	seg := s.Integrations["Segment.io"]
	if seg.APIKey != key || seg.APIHost != strings.TrimPrefix(f.srv.URL, "http://")+"/v1" {
		t.Fatalf("settings %+v", s)
	}
	bad, _ := http.Get(f.srv.URL + "/v1/projects/unknown-key-1/settings")
	bad.Body.Close()
	if bad.StatusCode != 401 {
		t.Fatalf("unknown key: %d", bad.StatusCode)
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The Segment-compatible endpoints take JSON under the labels that real
// SDKs put on it, gzipped or not: RudderStack's Node SDK sends gzipped JSON
// as application/x-www-form-urlencoded, browser SDKs text/plain, a beacon
// may send no Content-Type. The native /v1/tags stays strict.
func TestSegmentContentTypes(t *testing.T) {
	f := newFixture(t, nil)
	n := 0
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "text/plain;charset=UTF-8",
		"application/x-www-form-urlencoded", "application/x-www-form-urlencoded;charset=utf-8", ""} {
		for _, zip := range []bool{false, true} {
			for _, path := range []string{"/v1/batch", "/v1/track"} {
				n++
				id := fmt.Sprintf("ct-%d", n)
				body := []byte(`{"anonymousId":"a1","event":"article_read","messageId":"` + id + `"}`)
				if path == "/v1/batch" {
					body = []byte(`{"batch":[{"type":"track","anonymousId":"a1","event":"article_read","messageId":"` + id + `"}]}`)
				}
				var headers []string
				if zip {
					body, headers = gzipped(t, body), []string{"Content-Encoding", "gzip"}
				}
				t.Run(fmt.Sprintf("%s %q gzip=%v", path, ct, zip), func(t *testing.T) {
					r := f.post(path, ct, key, body, headers...)
					if r.status != 200 || r.response(t).Accepted != 1 {
						t.Fatalf("%d %s", r.status, r.body)
					}
					found := false
					for _, rec := range f.stored() {
						found = found || rec.MessageID == id
					}
					if !found {
						t.Fatalf("message %s not stored", id)
					}
				})
			}
		}
	}
	before := len(f.stored())
	for _, tc := range []struct {
		path, ct string
		body     string
		status   int
		code     string
		contains string
	}{
		// The native endpoint is strict.
		{"/v1/tags", "application/x-www-form-urlencoded", `[{"type":"event","deviceId":"d","name":"e"}]`, 415, "unsupported_content_type", "application/json"},
		{"/v1/tags", "text/plain", `[{"type":"event","deviceId":"d","name":"e"}]`, 415, "unsupported_content_type", "application/x-ndjson"},
		{"/v1/tags", "", `[{"type":"event","deviceId":"d","name":"e"}]`, 415, "unsupported_content_type", "application/json"},
		// Other types stay refused on the Segment endpoints.
		{"/v1/batch", "text/csv", `{"batch":[]}`, 415, "unsupported_content_type", "application/x-www-form-urlencoded, or no Content-Type"},
		{"/v1/track", "multipart/form-data; boundary=x", `{}`, 415, "unsupported_content_type", "text/plain"},
		// A real form is not JSON: the error says the body must be.
		{"/v1/batch", "application/x-www-form-urlencoded", `batch=%5B%5D`, 400, "malformed_json", "the body of a Segment call is JSON, whatever its Content-Type says"},
		{"/v1/track", "text/plain", `{"event":`, 400, "malformed_json", "at byte 9"},
	} {
		t.Run(tc.path+" "+tc.ct+" refused", func(t *testing.T) {
			r := f.post(tc.path, tc.ct, key, []byte(tc.body))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if e := r.errorBody(t); e.Error.Code != tc.code || !strings.Contains(e.Error.Message, tc.contains) {
				t.Fatalf("error %+v, want %s containing %q", e.Error, tc.code, tc.contains)
			}
		})
	}
	if got := len(f.stored()); got != before {
		t.Fatalf("%d records stored by refused requests", got-before)
	}
}

// Lifecycle events give session records next to their event; in enforce
// mode a message whose event the plan refuses is refused whole, its
// session record with it.
func TestSegmentLifecycleSessions(t *testing.T) {
	f := newFixture(t, nil)
	body := []byte(`{"batch":[
	 {"type":"track","event":"Application Opened","anonymousId":"a1","messageId":"o1","properties":{"from_background":false}},
	 {"type":"track","event":"Application Backgrounded","anonymousId":"a1","messageId":"b1"}]}`)
	r := f.post("/v1/batch", "text/plain", key, body)
	if r.status != 200 || r.response(t).Accepted != 4 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var got []string
	for _, rec := range f.stored() {
		got = append(got, rec.Kind.String()+":"+rec.Name+":"+rec.SessionID)
	}
	want := []string{"session_start::o1", "event:Application Opened:o1", "event:Application Backgrounded:", "session_end::"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("stored %q, want %q", got, want)
	}
	r = f.post("/v1/batch", "application/json", enforceKey, body)
	resp := r.response(t)
	if r.status != 400 || resp.Accepted != 0 || len(resp.Rejected) != 2 || resp.Rejected[0].Field != "name" ||
		!strings.Contains(resp.Rejected[0].Reason, `"Application Opened" is not in the tag plan of app "shop"`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if n := len(f.stored()); n != len(want) {
		t.Fatalf("%d records stored after the refused batch", n-len(want))
	}
}
