package segmentapi

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

var (
	// The collector's clock is 5 s ahead of the client's.
	received = time.Date(2026, 11, 28, 11, 35, 20, 505_000_000, time.UTC)
	sentAt   = time.Date(2026, 11, 28, 11, 35, 15, 505_000_000, time.UTC)
	env      = tag.Envelope{AppID: "app1", ReceivedAt: received}
)

const apnsToken = "a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

// rec is a record of the sample device with the given client time in ms
// after 11:35:15.500 and the sample batch's sentAt.
func rec(kind tag.Kind, user, id string, clientMs int, name string) tag.Record {
	client := time.Date(2026, 11, 28, 11, 35, 15, 500_000_000, time.UTC).Add(time.Duration(clientMs) * time.Millisecond)
	return tag.Record{
		Kind: kind, AppID: "app1", DeviceID: "dev-0001", UserID: user, MessageID: id,
		Time: received.Add(client.Sub(sentAt)), SentAt: sentAt, ReceivedAt: received, Name: name,
		AppVersion: "2.3.1", // context.app.version of the samples
	}
}

// sampleDevice is the device record the sample batch gives, with its
// derived message id.
func sampleDevice() tag.Record {
	r := rec(tag.KindDevice, "user-42", "", 0, "")
	r.Device = &tag.DeviceInfo{
		Platform: "ios", AppVersion: "2.3.1", AppBuild: "231", OSVersion: "17.2", Model: "iPhone15,2",
		Locale: "fr-FR", TimeZone: "Europe/Paris", PushToken: apnsToken, PushProvider: tag.ProviderAPNs,
	}
	r.MessageID = tag.GenerateID(&r, time.Date(2026, 11, 28, 11, 35, 15, 500_000_000, time.UTC))
	return r
}

func TestDecodeBatchSamples(t *testing.T) {
	body, err := os.ReadFile("testdata/sample_batch.json")
	if err != nil {
		t.Fatal(err)
	}
	appInfo := rec(tag.KindAppInfo, "user-42", "node-next-1795865715500-337f1da9-2ecc-462c-9d44-aeed8c156012", 0, "")
	appInfo.AppInfo = []tag.Extra{
		{Key: "age", Value: tag.Number(31)},
		{Key: "logged_in", Value: tag.Bool(true)},
		{Key: "plan", Value: tag.String("premium")},
		{Key: "subscription_expiry", Value: tag.String("2027-01-31T00:00:00Z")},
	}
	screen := rec(tag.KindActivityStart, "user-42", "node-next-1795865715501-5d2a7c1e-8b3f-4e6a-9c0d-1f2e3a4b5c6d", 1, "login")
	screen.Extras = []tag.Extra{{Key: "section", Value: tag.String("auth")}}
	article := rec(tag.KindEvent, "user-42", "node-next-1795865715501-0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d", 1, "article_read")
	article.Extras = []tag.Extra{
		{Key: "category", Value: tag.String("sport")},
		{Key: "premium", Value: tag.Bool(false)},
		{Key: "words", Value: tag.Number(640)},
	}
	page := rec(tag.KindActivityStart, "user-42", "node-next-1795865715501-b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e", 1, "home")
	page.Extras = []tag.Extra{{Key: "path", Value: tag.String("/home")}}
	opened := rec(tag.KindEvent, "", "node-next-1795865715501-c2d3e4f5-a6b7-4c8d-9e0f-1a2b3c4d5e6f", 1, "app_opened")
	opened.Extras = []tag.Extra{{Key: "from_background", Value: tag.Bool(true)}}

	want := [][]tag.Record{
		{sampleDevice(), appInfo}, // identify: device record, then the traits
		{screen},                  // same context: no second device record
		{article},
		{page},
		{opened},
	}
	results, err := DecodeBatch(body, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d", len(results), len(want))
	}
	for i, res := range results {
		t.Run(string(rune('0'+i)), func(t *testing.T) {
			if res.Index != i || res.Err != nil || res.Dropped != nil {
				t.Fatalf("result %+v", res)
			}
			if !reflect.DeepEqual(res.Records, want[i]) {
				t.Fatalf("records\n got %+v\nwant %+v", res.Records, want[i])
			}
		})
	}
	// A retry of the same batch gives the same ids, so analytics dedupe it.
	again, _ := DecodeBatch(body, tag.Envelope{AppID: "app1", ReceivedAt: received.Add(time.Minute)}, nil)
	if got, want := again[0].Records[0].MessageID, results[0].Records[0].MessageID; got != want || !strings.HasPrefix(got, "h-") {
		t.Fatalf("device record id on retry %q, first %q", got, want)
	}
}

func TestDecodeSingle(t *testing.T) {
	const ctx = `"context":{"device":{"id":"d1","type":"android","token":"fcm-token"},"os":{"name":"Android","version":"14"},"app":{"version":"1.0","build":7}}`
	for _, tc := range []struct {
		call       Call
		body       string
		kind       tag.Kind
		name       string
		wantDevice bool
		err        string // "field: reason part" of a message error
	}{
		{call: CallTrack, body: `{"event":"e1","anonymousId":"a1","timestamp":"2026-11-28T11:35:15Z"}`, kind: tag.KindEvent, name: "e1"},
		{call: CallTrack, body: `{"type":"track","event":"e1","anonymousId":"a1",` + ctx + `}`, kind: tag.KindEvent, name: "e1", wantDevice: true},
		{call: CallScreen, body: `{"name":"home","category":"main","userId":"u1"}`, kind: tag.KindActivityStart, name: "home"},
		{call: CallPage, body: `{"properties":{"path":"/a"},"anonymousId":"a1"}`, kind: tag.KindActivityStart, name: "/a"},
		{call: CallPage, body: `{"properties":{"name":"Pricing","path":"/a"},"anonymousId":"a1"}`, kind: tag.KindActivityStart, name: "Pricing"},
		{call: CallIdentify, body: `{"userId":"u1","traits":{"plan":"pro"}}`, kind: tag.KindAppInfo},
		{call: CallGroup, body: `{"userId":"u1","groupId":42,"traits":{"name":"ACME"}}`, kind: tag.KindAppInfo},
		{call: CallAlias, body: `{"userId":"u1","previousId":"a1"}`, kind: tag.KindEvent, name: AliasEvent},
		{call: CallTrack, body: `{"type":"screen","name":"x","anonymousId":"a1"}`, err: `type: "screen" does not match the call /v1/track`},
		{call: CallTrack, body: `{"anonymousId":"a1"}`, err: "event: missing"},
		{call: CallTrack, body: `{"event":"e"}`, err: "anonymousId: missing"},
		{call: CallTrack, body: `{"event":5,"anonymousId":"a"}`, err: "event: expected a string, got JSON number"},
		{call: CallScreen, body: `{"anonymousId":"a"}`, err: "name: missing"},
		{call: CallPage, body: `{"anonymousId":"a","properties":{"path":3}}`, err: "name: missing"},
		{call: CallGroup, body: `{"userId":"u1"}`, err: "groupId: missing"},
		{call: CallAlias, body: `{"userId":"u1"}`, err: "previousId: missing"},
		{call: CallAlias, body: `{"previousId":"a","anonymousId":"x"}`, err: "userId: missing"},
		{call: CallTrack, body: `{"event":"e","anonymousId":"a","properties":[1]}`, err: "properties: expected an object, got JSON array"},
		{call: CallTrack, body: `{"event":"e","anonymousId":{"x":1}}`, err: "anonymousId: expected a string or number, got JSON object"},
		{call: CallTrack, body: `{"event":"e","anonymousId":"a","timestamp":"yesterday"}`, err: `timestamp: "yesterday" is not an RFC 3339 time`},
		{call: CallTrack, body: `{"event":"e","anonymousId":"a","timestamp":1764329715000}`, err: "timestamp: expected an RFC 3339 time string"},
		{call: CallTrack, body: `{"event":"e","anonymousId":"a","sentAt":"2026-13-01T00:00:00Z"}`, err: "sentAt: "},
		{call: CallTrack, body: `{"event":"e","anonymousId":"a","messageId":"` + strings.Repeat("m", 200) + `"}`, err: "messageId: 200 bytes, more than the limit of 128"},
		{call: CallTrack, body: `{"event":"` + strings.Repeat("e", 300) + `","anonymousId":"a"}`, err: "event: 300 bytes"},
		{call: CallTrack, body: `{"event":"e","anonymousId":"a","timestamp":"2026-12-28T11:35:15Z"}`, err: "timestamp: "},
	} {
		t.Run(string(tc.call)+" "+tc.body, func(t *testing.T) {
			results, err := DecodeSingle(tc.call, []byte(tc.body), env, nil)
			if err != nil || len(results) != 1 {
				t.Fatalf("DecodeSingle: %v, %d results", err, len(results))
			}
			res := results[0]
			if tc.err != "" {
				if res.Err == nil || !strings.HasPrefix(res.Err.Field+": "+res.Err.Reason, tc.err) || res.Records != nil {
					t.Fatalf("got %+v, err %v; want error %q", res, res.Err, tc.err)
				}
				return
			}
			if res.Err != nil {
				t.Fatalf("unexpected error %v", res.Err)
			}
			recs := res.Records
			if tc.wantDevice {
				if len(recs) != 2 || recs[0].Kind != tag.KindDevice {
					t.Fatalf("want a device record first, got %+v", recs)
				}
				if d := recs[0].Device; d.Platform != "android" || d.AppBuild != "7" || d.PushProvider != tag.ProviderFCM || d.PushToken != "fcm-token" || recs[0].DeviceID != "d1" {
					t.Fatalf("device %+v of %s", d, recs[0].DeviceID)
				}
				recs = recs[1:]
			}
			if len(recs) != 1 || recs[0].Kind != tc.kind || recs[0].Name != tc.name {
				t.Fatalf("got %+v, want one %s %q", recs, tc.kind, tc.name)
			}
			if recs[0].MessageID == "" || recs[0].Time.IsZero() {
				t.Fatalf("record without id or time: %+v", recs[0])
			}
		})
	}
}

func TestBodyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body, err string
		single          bool
	}{
		{name: "malformed", body: `{"batch":[{"type":"track"}`, err: "body: malformed JSON at byte 26"},
		{name: "garbage", body: `{"batch":x}`, err: "body: malformed JSON at byte 10"},
		{name: "not an object", body: `[{"type":"track"}]`, err: "body: expected a JSON object, got JSON array"},
		{name: "string", body: `"hi"`, err: "body: expected a JSON object, got JSON string"},
		{name: "no batch", body: `{"sentAt":"2026-11-28T11:35:15Z"}`, err: "batch: missing"},
		{name: "null batch", body: `{"batch":null}`, err: "batch: missing"},
		{name: "batch object", body: `{"batch":{"type":"track"}}`, err: "batch: expected an array of messages, got JSON object"},
		{name: "bad sentAt", body: `{"batch":[],"sentAt":"now"}`, err: `sentAt: "now" is not an RFC 3339 time`},
		{name: "single malformed", body: `{"event":`, err: "body: malformed JSON at byte 9", single: true},
		{name: "single array", body: ` [1]`, err: "body: expected a JSON object, got JSON array", single: true},
		{name: "empty", body: ``, err: "body: malformed JSON at byte 0", single: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.single {
				_, err = DecodeSingle(CallTrack, []byte(tc.body), env, nil)
			} else {
				_, err = DecodeBatch([]byte(tc.body), env, nil)
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q…", err, tc.err)
			}
		})
	}
	if _, err := DecodeSingle("purchase", []byte(`{}`), env, nil); err == nil || !strings.Contains(err.Error(), `unknown call "purchase"`) {
		t.Fatalf("unknown call: %v", err)
	}
	if res, err := DecodeBatch([]byte(`{"batch":[]}`), env, nil); err != nil || len(res) != 0 {
		t.Fatalf("empty batch: %v, %v", res, err)
	}
}

// Bad messages get errors naming their index, field and rule; the good ones
// around them are kept.
func TestBadMessagesAmongGood(t *testing.T) {
	big := `{"type":"track","event":"e","anonymousId":"a","properties":{"s":"` + strings.Repeat("x", 33*1024) + `"}}`
	body := `{"batch":[
		{"type":"track","event":"ok0","anonymousId":"a"},
		{"type":"purchase","anonymousId":"a"},
		{"event":"no type","anonymousId":"a"},
		{"type":"track","event":"ok3","anonymousId":"a"},
		` + big + `,
		42,
		null,
		{"type":"track","event":"e","anonymousId":"a","properties":{"long":"` + strings.Repeat("y", 1025) + `"}},
		{"type":"track","event":"e","anonymousId":"a","properties":{"n":{"long":"` + strings.Repeat("y", 1025) + `"}}},
		{"type":"track","event":"ok9","anonymousId":"a"}
	]}`
	want := map[int]MessageError{
		1: {Field: "type", Reason: `"purchase" is not one of track, screen, page, identify, group, alias`},
		2: {Field: "type", Reason: "missing: one of track, screen, page, identify, group, alias"},
		4: {Field: "message", Reason: fmt.Sprintf("%d bytes, more than Segment's limit of 32 KB (32768 bytes) per message", len(big))},
		5: {Field: "message", Reason: "expected a JSON object, got JSON number"},
		6: {Field: "message", Reason: "expected a JSON object, got JSON null"},
		7: {Field: "properties.long", Reason: "string of 1025 bytes, more than the limit of 1024"},
		8: {Field: "properties.n.long", Reason: "string of 1025 bytes, more than the limit of 1024"},
	}
	results, err := DecodeBatch([]byte(body), env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 10 {
		t.Fatalf("%d results", len(results))
	}
	for i, res := range results {
		if res.Index != i {
			t.Fatalf("result %d has index %d", i, res.Index)
		}
		w, bad := want[i]
		switch {
		case bad && (res.Err == nil || *res.Err != MessageError{Index: i, Field: w.Field, Reason: w.Reason}):
			t.Errorf("message %d: error %+v, want %+v", i, res.Err, w)
		case bad && res.Records != nil:
			t.Errorf("message %d: records with an error", i)
		case !bad && (res.Err != nil || len(res.Records) != 1 || res.Records[0].Name != "ok"+string(rune('0'+i))):
			t.Errorf("message %d: %+v", i, res)
		}
	}
	if got := results[1].Err.Error(); got != `message 1: type: "purchase" is not one of track, screen, page, identify, group, alias` {
		t.Errorf("Error() = %s", got)
	}
}

// Batches decoded one after the other reuse the list of messages of the
// one before: each gets its own messages, however many the one before had.
func TestBatchesReuseMessageList(t *testing.T) {
	for _, n := range []int{100, 3, 70, 1} {
		var b strings.Builder
		b.WriteString(`{"batch":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"type":"track","event":"e%d_%d","userId":"u"}`, n, i)
		}
		b.WriteString(`]}`)
		res, err := DecodeBatch([]byte(b.String()), env, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != n {
			t.Fatalf("a batch of %d messages: %d results", n, len(res))
		}
		for i, r := range res {
			if want := fmt.Sprintf("e%d_%d", n, i); r.Err != nil || r.Records[0].Name != want {
				t.Fatalf("batch of %d, message %d: %+v, want event %s", n, i, r, want)
			}
		}
	}
}
