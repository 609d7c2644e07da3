package segmentapi

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/openengage/engage/pipeline/tag"
)

func FuzzDecodeBatch(f *testing.F) {
	if b, err := os.ReadFile("testdata/sample_batch.json"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		`{"batch":[{"type":"track","event":"e","anonymousId":"a","properties":{"a":1,"b":{"c":"x","d":[1]},"é":null}}]}`,
		`{"batch":[{"type":"identify","userId":"u","traits":{"x":true},"context":{"device":{"type":"ios","token":"00112233445566778899aabbccddeeff"},"timezone":"Europe/Paris","location":{"country":"fr"}}}]}`,
		`{"batch":[{"type":"group","userId":"u","groupId":1,"traits":{"id":2}},{"type":"alias","userId":"u","previousId":"p"}]}`,
		`{"batch":[{"type":"page","anonymousId":"a","properties":{"path":"/"},"category":"c"},{"type":"screen","anonymousId":"a","name":"s"}]}`,
		`{"context":{"device":{"id":"d"},"os":{"name":"Android"}},"sentAt":"2026-11-28T11:35:15Z","batch":[{"type":"track","event":"upload","anonymousId":"a","timestamp":"2026-11-28T11:35:14.5Z","properties":{"duration":1}}]}`,
		`{"batch":[1,null,"x",[],{"type":"x"},{"type":"track"},{"type":"track","event":"e","userId":{}}]}`,
		`{"batch":[{"type":"track","event":"Application Installed","anonymousId":"a","properties":{"version":"1.0","build":10}},{"type":"track","event":"Application Opened","anonymousId":"a","properties":{"from_background":false}},{"type":"track","event":"Application Backgrounded","anonymousId":"a"}]}`,
		`{"context":{"sessionId":1700000000000,"sessionStart":true},"batch":[{"type":"track","event":"Application Opened","anonymousId":"a","messageId":"m"},{"type":"track","event":"Application Backgrounded","anonymousId":"a","context":{"sessionId":{}}}]}`,
		`{"batch":{}}`, `{"batch":[`, `[]`, `null`, `{"sentAt":5,"batch":[]}`,
	} {
		f.Add([]byte(s))
	}
	decl := plan{"upload": tag.KindJob, "fail": tag.KindError}
	f.Fuzz(func(t *testing.T, data []byte) {
		results, err := DecodeBatch(data, env, decl)
		checkResults(t, results, err)
		again, err2 := DecodeBatch(data, env, decl)
		if (err == nil) != (err2 == nil) || !reflect.DeepEqual(stripRandomIDs(results), stripRandomIDs(again)) {
			t.Fatalf("decoding twice differs")
		}
		results, err = DecodeSingle(CallTrack, data, env, decl)
		checkResults(t, results, err)
		if err == nil && len(results) != 1 {
			t.Fatalf("single call gave %d results", len(results))
		}
	})
}

func checkResults(t *testing.T, results []Result, err error) {
	t.Helper()
	if err != nil {
		msg := err.Error()
		if results != nil || !(strings.HasPrefix(msg, "body: ") || strings.HasPrefix(msg, "batch: ") || strings.HasPrefix(msg, "sentAt: ")) {
			t.Fatalf("whole-body error %q does not name what is wrong (results %v)", msg, results)
		}
		return
	}
	for i, res := range results {
		if res.Index != i {
			t.Fatalf("result %d has index %d", i, res.Index)
		}
		if e := res.Err; e != nil {
			if e.Index != i || e.Field == "" || e.Reason == "" || res.Records != nil || res.Dropped != nil {
				t.Fatalf("result %d: unspecific error %+v or records with it", i, res)
			}
			continue
		}
		for _, d := range res.Dropped {
			if !strings.Contains(d, ": ") || strings.HasPrefix(d, ": ") {
				t.Fatalf("dropped entry %q does not say what and why", d)
			}
		}
		for _, r := range res.Records {
			if err := r.Validate(); err != nil {
				t.Fatalf("invalid record %+v: %v", r, err)
			}
			if r.AppID != env.AppID || r.ReceivedAt != env.ReceivedAt {
				t.Fatalf("record lost its envelope: %+v", r)
			}
			var back tag.Record
			if err := back.UnmarshalBinary(r.AppendBinary(nil)); err != nil {
				t.Fatalf("binary round trip: %v", err)
			}
		}
	}
}

// stripRandomIDs blanks the ids that GenerateID draws at random (records
// without a client time), which differ between two decodings, and the
// session ids taken from them (Application Opened without a messageId).
func stripRandomIDs(results []Result) []Result {
	out := make([]Result, len(results))
	for i, res := range results {
		out[i] = res
		out[i].Records = append([]tag.Record(nil), res.Records...)
		for j := range out[i].Records {
			r := &out[i].Records[j]
			if strings.HasPrefix(r.MessageID, "r-") {
				r.MessageID = ""
			}
			if strings.HasPrefix(r.SessionID, "r-") {
				r.SessionID = ""
			}
		}
	}
	return out
}

// FuzzScan checks the light scanner against encoding/json on valid JSON.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":"x\"}","c":{"d":[1,{"e":"\\"}]},"a":null}`, ` [ 1 , "a\\\\" , {} , [] , true ] `,
		`{}`, `[]`, `{"k\u00e9":"v\n"}`, `"s"`, `12`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			members(data, func(k, v []byte) {}) // must not panic
			elements(data, func(v []byte) {})
			return
		}
		var obj map[string]json.RawMessage
		isObj := json.Unmarshal(data, &obj) == nil && obj != nil
		got := map[string]string{}
		if members(data, func(k, v []byte) {
			key, ok := unquote(k)
			if !ok || !json.Valid(v) {
				t.Fatalf("member %s: %s", k, v)
			}
			got[key] = compact(t, v)
		}) != isObj {
			t.Fatalf("members of %s: object %v", data, isObj)
		}
		for k, v := range obj {
			if got[k] != compact(t, v) {
				t.Fatalf("member %q: got %s, want %s", k, got[k], v)
			}
		}
		var arr []json.RawMessage
		isArr := json.Unmarshal(data, &arr) == nil && arr != nil
		var els []string
		if elements(data, func(v []byte) { els = append(els, compact(t, v)) }) != isArr {
			t.Fatalf("elements of %s: array %v", data, isArr)
		}
		for i, v := range arr {
			if els[i] != compact(t, v) {
				t.Fatalf("element %d: got %s, want %s", i, els[i], v)
			}
		}
	})
}

func compact(t *testing.T, v []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		t.Fatalf("compact %s: %v", v, err)
	}
	return b.String()
}
