package tag

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"type":"event","deviceId":"d1","name":"e","extras":{"a":1,"b":"x","c":true,"d":{"$date":"2026-01-01T00:00:00Z"}}}`,
		`{"type":"device","deviceId":"d","device":{"platform":"ios","timeZone":"Europe/Paris","pushToken":"00aa","pushProvider":"apns"}}`,
		`{"type":"job","deviceId":"d","name":"j","durationMs":12.5,"time":1764320000000}`,
		`{"type":"push","deviceId":"d","push":{"action":"opened","deliveryId":"x"}}`,
		`{"type":"app_info","deviceId":"d","appInfo":{"logged_in":true}}`,
		`[1,2]`, `{`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeJSON(data, env)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" || fe.Reason == "" {
				t.Fatalf("error without field and reason: %v", err)
			}
			return
		}
		// A record that decodes encodes, in both forms, to something that
		// decodes to the same record.
		var back Record
		if err := back.UnmarshalBinary(r.AppendBinary(nil)); err != nil {
			t.Fatalf("binary round trip of %s: %v", data, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("binary round trip\n got %+v\nwant %+v", back, r)
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatalf("marshal: %v", err)
		}
	})
}

func FuzzUnmarshalBinary(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(r.AppendBinary(nil))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r, shared Record
		var arena []Extra
		err := r.UnmarshalBinary(data)
		serr := shared.UnmarshalBinaryShared(data, &arena)
		if (err == nil) != (serr == nil) || err != nil && err.Error() != serr.Error() {
			t.Fatalf("copying decode: %v, sharing decode: %v", err, serr)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		if !bytes.Equal(shared.AppendBinary(nil), r.AppendBinary(nil)) { // (NaN ≠ NaN for DeepEqual)
			t.Fatalf("sharing decode differs:\n got %+v\nwant %+v", shared, r)
		}
		var back Record
		enc := r.AppendBinary(nil)
		if err := back.UnmarshalBinary(enc); err != nil || !bytes.Equal(back.AppendBinary(nil), enc) {
			t.Fatalf("re-encode: %v\n got %+v\nwant %+v", err, back, r)
		}
	})
}

// FuzzDecodeJSONAgainstReference checks the scanner-based decoder against
// the encoding/json one: whatever the fast one accepts, the reference
// accepts, and both decode to the same record.
func FuzzDecodeJSONAgainstReference(f *testing.F) {
	for _, s := range []string{
		`{"type":"event","deviceId":"d1","name":"e","time":"2026-11-28T09:00:00Z","extras":{"a":1.5e3,"b":"x\u00e9\n","c":true,"d":{"$date":"2026-01-01T00:00:00Z"}}}`,
		`{"type":"device","deviceId":"d","time":1764320000000,"device":{"platform":"android","locale":"en_GB","pushToken":"tok","pushProvider":"fcm"}}`,
		`{"type":"job","deviceId":"d","name":"j","durationMs":12.5,"time":1764320000000,"messageId":"m","userId":null}`,
		`{"type":"push","deviceId":"d","push":{"action":"opened","deliveryId":"x","campaignId":"c"},"messageId":"p"}`,
		`{"type":"app_info","deviceId":"d","appInfo":{"logged_in":false},"unplanned":["app_info:logged_in"],"messageId":"a"}`,
		`{"type":"session_start","deviceId":"\ud83d\ude00","messageId":"s"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeJSON(data, env)
		if err != nil {
			return
		}
		want, rerr := decodeJSONReference(data, env)
		if rerr != nil {
			t.Fatalf("fast decoder accepted what the reference refuses (%v): %s", rerr, data)
		}
		if len(got.MessageID) > 2 && got.MessageID[:2] == "r-" { // random ids differ by design
			got.MessageID = want.MessageID
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoders differ on %s\nfast      %+v\nreference %+v", data, got, want)
		}
	})
}

// FuzzSplitArray: the body splitter agrees with encoding/json on what is
// valid, and splits into the same elements.
func FuzzSplitArray(f *testing.F) {
	for _, s := range []string{`[]`, `[{"a":1},{"b":[1,2,{"c":"\u00e9"}]}]`, `{"type":"event"}`, `[1, "x", true, null]`, `[{"a":}]`, `[`, ``, `[1,]`, `[01]`, `["\ud800"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parts, err := SplitArray(data)
		var ref []json.RawMessage
		refErr := json.Unmarshal(data, &ref)
		if refErr != nil {
			var obj map[string]json.RawMessage
			if json.Unmarshal(data, &obj) == nil {
				refErr = nil
				ref = []json.RawMessage{data}
			}
		}
		if (err == nil) != (refErr == nil) {
			// Only depth is stricter here than in encoding/json.
			if err != nil && strings.Contains(err.Error(), "nested deeper") {
				return
			}
			t.Fatalf("SplitArray err %v, encoding/json err %v, on %q", err, refErr, data)
		}
		if err != nil {
			if _, ok := SyntaxOffset(err); !ok {
				t.Fatalf("error without offset: %v", err)
			}
			return
		}
		if len(parts) != len(ref) {
			t.Fatalf("%d parts, encoding/json %d", len(parts), len(ref))
		}
		for i := range parts {
			if !bytes.Equal(bytes.TrimSpace(parts[i]), bytes.TrimSpace(ref[i])) {
				t.Fatalf("part %d: %q vs %q", i, parts[i], ref[i])
			}
		}
	})
}
