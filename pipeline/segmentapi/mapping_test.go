package segmentapi

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

type plan map[string]tag.Kind

func (p plan) Declared(name string) (tag.Kind, bool) { k, ok := p[name]; return k, ok }

func single(t *testing.T, call Call, body string, d Declarer) Result {
	t.Helper()
	results, err := DecodeSingle(call, []byte(body), env, d)
	if err != nil || len(results) != 1 {
		t.Fatalf("DecodeSingle(%s): %v, %d results", body, err, len(results))
	}
	return results[0]
}

func TestDeclaredKinds(t *testing.T) {
	p := plan{"upload": tag.KindJob, "crash_free": tag.KindEvent, "net_fail": tag.KindError, "sess": tag.KindSessionStart}
	for _, tc := range []struct {
		props  string
		event  string
		kind   tag.Kind
		dur    time.Duration
		extras []tag.Extra
		err    *MessageError
	}{
		{event: "upload", props: `{"duration":1.5,"size":3}`, kind: tag.KindJob, dur: 1500 * time.Millisecond, extras: []tag.Extra{{Key: "size", Value: tag.Number(3)}}},
		{event: "upload", props: `{"durationMs":250}`, kind: tag.KindJob, dur: 250 * time.Millisecond},
		{event: "upload", props: `{"duration":2,"durationMs":9}`, kind: tag.KindJob, dur: 2 * time.Second},
		{event: "upload", props: `{"size":3}`, err: &MessageError{Field: "properties.duration", Reason: "missing: an event declared as a job needs properties.duration (seconds) or properties.durationMs"}},
		{event: "upload", props: `{"duration":"2s"}`, err: &MessageError{Field: "properties.duration", Reason: `expected a positive number, got JSON "\"2s\""`}},
		{event: "upload", props: `{"durationMs":-1}`, err: &MessageError{Field: "properties.durationMs", Reason: `expected a positive number, got JSON "-1"`}},
		{event: "upload", props: `{"duration":1e300}`, err: &MessageError{Field: "properties.duration", Reason: `expected a positive number, got JSON "1e300"`}},
		{event: "net_fail", props: `{"code":503}`, kind: tag.KindError, extras: []tag.Extra{{Key: "code", Value: tag.Number(503)}}},
		{event: "crash_free", kind: tag.KindEvent},
		{event: "sess", kind: tag.KindEvent}, // only job and error change the kind
		{event: "other", props: `{"duration":3}`, kind: tag.KindEvent, extras: []tag.Extra{{Key: "duration", Value: tag.Number(3)}}},
	} {
		t.Run(tc.event+tc.props, func(t *testing.T) {
			body := `{"event":"` + tc.event + `","anonymousId":"a","messageId":"m"`
			if tc.props != "" {
				body += `,"properties":` + tc.props
			}
			res := single(t, CallTrack, body+"}", p)
			if tc.err != nil {
				if res.Err == nil || res.Err.Field != tc.err.Field || res.Err.Reason != tc.err.Reason {
					t.Fatalf("error %v, want %v", res.Err, tc.err)
				}
				return
			}
			if res.Err != nil || len(res.Records) != 1 {
				t.Fatalf("%+v", res)
			}
			r := res.Records[0]
			if r.Kind != tc.kind || r.Name != tc.event || r.Duration != tc.dur || !reflect.DeepEqual(r.Extras, tc.extras) {
				t.Fatalf("got %s %q %v %+v", r.Kind, r.Name, r.Duration, r.Extras)
			}
		})
	}
	// Without a Declarer every track call is an event.
	if r := single(t, CallTrack, `{"event":"upload","anonymousId":"a"}`, nil).Records[0]; r.Kind != tag.KindEvent {
		t.Fatalf("nil Declarer: %s", r.Kind)
	}
}

func TestDeviceRecordDedup(t *testing.T) {
	ctx := func(version string) string {
		return `{"device":{"id":"d1","type":"android"},"app":{"version":"` + version + `"}}`
	}
	var msgs []string
	for i := range 100 {
		msgs = append(msgs, fmt.Sprintf(`{"type":"track","event":"e%d","anonymousId":"a","context":%s}`, i, ctx("1.0")))
	}
	msgs = append(msgs,
		`{"type":"track","event":"other_device","anonymousId":"b","context":{"device":{"type":"ios"}}}`,
		`{"type":"track","event":"no_context","anonymousId":"c"}`,
		`{"type":"track","event":"then_context","anonymousId":"c","context":{"locale":"de-DE"}}`,
		`{"type":"identify","anonymousId":"a","context":`+ctx("1.0")+`}`,                                                              // identify: always
		`{"type":"track","event":"upgraded","anonymousId":"a","context":`+ctx("1.1")+`}`,                                              // info changed
		`{"type":"track","event":"same","anonymousId":"a","context":{"app":{"version":"1.1"},"device":{"type":"android","id":"d1"}}}`, // same info, other JSON
		`{"type":"track","event":"bad","anonymousId":"x","timestamp":"x","context":{"device":{"type":"web"}}}`,
		`{"type":"track","event":"after_bad","anonymousId":"x","context":{"device":{"type":"web"}}}`, // the bad one emitted nothing
		`{"type":"track","event":"server_side","anonymousId":"s","context":{"ip":"1.2.3.4","library":{"name":"x"}}}`,
	)
	results, err := DecodeBatch([]byte(`{"batch":[`+strings.Join(msgs, ",")+`]}`), env, nil)
	if err != nil {
		t.Fatal(err)
	}
	var devices []string
	events := 0
	for _, res := range results {
		for _, r := range res.Records {
			switch r.Kind {
			case tag.KindDevice:
				devices = append(devices, fmt.Sprintf("%d:%s:%s%s", res.Index, r.DeviceID, r.Device.Platform, r.Device.AppVersion))
			case tag.KindEvent:
				events++
			}
		}
	}
	want := []string{"0:d1:android1.0", "100:b:ios", "102:c:", "103:d1:android1.0", "104:d1:android1.1", "107:x:web"}
	if !reflect.DeepEqual(devices, want) {
		t.Fatalf("device records %v, want %v", devices, want)
	}
	if events != 100+7 {
		t.Fatalf("%d events", events)
	}
}

func TestExtrasKeys(t *testing.T) {
	props := `{"ok":1,"Mixed_Case9":"a","my-key":2,"9lives":3,"_private":4,"a b.c":5,"é":6,
		"nil":null,"list":[1,2],"address":{"city":"Paris","geo":{"lat":1},"zip":75001,"tags":[]},
		"` + strings.Repeat("k", 65) + `":7,"when":"2026-01-31T09:30:00Z","my_key":8,"huge":1e400,"":9}`
	res := single(t, CallTrack, `{"event":"e","anonymousId":"a","properties":`+props+`}`, nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := []tag.Extra{
		{Key: "Mixed_Case9", Value: tag.String("a")},
		{Key: "a_b_c", Value: tag.Number(5)},
		{Key: "address_city", Value: tag.String("Paris")},
		{Key: "address_zip", Value: tag.Number(75001)},
		{Key: "my_key", Value: tag.Number(8)}, // the exact key wins over my-key
		{Key: "ok", Value: tag.Number(1)},
		{Key: "when", Value: tag.String("2026-01-31T09:30:00Z")},
		{Key: "x_9lives", Value: tag.Number(3)},
		{Key: "x__", Value: tag.Number(6)},
		{Key: "x__private", Value: tag.Number(4)},
	}
	if got := res.Records[0].Extras; !reflect.DeepEqual(got, want) {
		t.Errorf("extras\n got %+v\nwant %+v", got, want)
	}
	wantDropped := []string{
		`properties."": invalid key, even with invalid characters replaced by _`,
		`properties."` + strings.Repeat("k", 64) + `"…: invalid key, even with invalid characters replaced by _`,
		"properties.address.geo: object nested in an object: only one level is flattened",
		"properties.address.tags: array: arrays are not kept",
		"properties.huge: number out of range",
		"properties.list: array: arrays are not kept",
		"properties.my-key: same key my_key as properties.my_key",
		"properties.nil: null",
	}
	if !reflect.DeepEqual(res.Dropped, wantDropped) {
		t.Errorf("dropped\n got %q\nwant %q", res.Dropped, wantDropped)
	}
}

func TestExtrasLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"type":"group","userId":"u","groupId":"g1","traits":{"id":"clash"`)
	for i := range 70 {
		fmt.Fprintf(&b, `,"k%02d":%d`, i, i)
	}
	b.WriteString(`}}`)
	res := single(t, CallGroup, b.String(), nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	info := res.Records[0].AppInfo
	if len(info) != tag.MaxExtras {
		t.Fatalf("%d app-info keys", len(info))
	}
	if v, ok := res.Records[0].Extra("group_id"); ok || v.Type != tag.TypeInvalid {
		t.Fatalf("group_id is app-info, not an extra")
	}
	// group_id is always kept; then the first 63 traits in key order.
	if info[0].Key != "group_id" || info[0].Value.Str != "g1" || info[1].Key != "group_k00" || info[63].Key != "group_k62" {
		t.Fatalf("kept %s=%v, %s … %s", info[0].Key, info[0].Value, info[1].Key, info[63].Key)
	}
	if len(res.Dropped) != 8 || res.Dropped[0] != "traits.id: same key group_id as traits.group_id" || res.Dropped[1] != "traits.k63: more than 64 keys (kept the first in key order)" {
		t.Fatalf("dropped %q", res.Dropped)
	}
}

func TestSkewCorrection(t *testing.T) {
	for _, tc := range []struct {
		name, fields, top string
		want, sent        time.Time
	}{
		{name: "client clock 1h late", fields: `"timestamp":"2026-11-28T10:35:10.505Z","sentAt":"2026-11-28T10:35:15.505Z"`,
			want: received.Add(-5 * time.Second), sent: time.Date(2026, 11, 28, 10, 35, 15, 505_000_000, time.UTC)},
		{name: "batch sentAt", fields: `"timestamp":"2026-11-28T11:35:14.505+01:00"`, top: `,"sentAt":"2026-11-28T11:35:15.505+01:00"`,
			want: received.Add(-time.Second), sent: time.Date(2026, 11, 28, 10, 35, 15, 505_000_000, time.UTC)},
		{name: "message sentAt wins", fields: `"timestamp":"2026-11-28T11:35:14Z","sentAt":"2026-11-28T11:35:16Z"`, top: `,"sentAt":"2000-01-01T00:00:00Z"`,
			want: received.Add(-2 * time.Second), sent: time.Date(2026, 11, 28, 11, 35, 16, 0, time.UTC)},
		{name: "originalTimestamp", fields: `"originalTimestamp":"2026-11-28T11:35:14Z","sentAt":"2026-11-28T11:35:16Z"`,
			want: received.Add(-2 * time.Second), sent: time.Date(2026, 11, 28, 11, 35, 16, 0, time.UTC)},
		{name: "no sentAt keeps the client time", fields: `"timestamp":"2026-11-28T09:00:00Z"`,
			want: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)},
		{name: "no time at all", fields: `"timestamp":null`, want: received},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"batch":[{"type":"track","event":"e","anonymousId":"a",` + tc.fields + `}]` + tc.top + `}`
			results, err := DecodeBatch([]byte(body), env, nil)
			if err != nil || results[0].Err != nil {
				t.Fatalf("%v %v", err, results[0].Err)
			}
			r := results[0].Records[0]
			if !r.Time.Equal(tc.want) || !r.SentAt.Equal(tc.sent) || !r.ReceivedAt.Equal(received) {
				t.Fatalf("time %v sentAt %v, want %v %v", r.Time, r.SentAt, tc.want, tc.sent)
			}
		})
	}
}

func TestGroupAndAlias(t *testing.T) {
	res := single(t, CallGroup, `{"userId":"u1","anonymousId":"d9","messageId":"m1","groupId":"acme","traits":{"name":"ACME","employees":12,"address":{"city":"Lyon"}}}`, nil)
	want := tag.Record{Kind: tag.KindAppInfo, AppID: "app1", DeviceID: "d9", UserID: "u1", MessageID: "m1", Time: received, ReceivedAt: received,
		AppInfo: []tag.Extra{
			{Key: "group_address_city", Value: tag.String("Lyon")},
			{Key: "group_employees", Value: tag.Number(12)},
			{Key: "group_id", Value: tag.String("acme")},
			{Key: "group_name", Value: tag.String("ACME")},
		}}
	if res.Err != nil || !reflect.DeepEqual(res.Records, []tag.Record{want}) {
		t.Fatalf("group: %v\n got %+v\nwant %+v", res.Err, res.Records, want)
	}
	res = single(t, CallAlias, `{"userId":"u1","previousId":"anon-7","messageId":"m2"}`, nil)
	want = tag.Record{Kind: tag.KindEvent, AppID: "app1", DeviceID: "u1", UserID: "u1", MessageID: "m2", Time: received, ReceivedAt: received, Name: "$alias",
		Extras: []tag.Extra{{Key: "previous_id", Value: tag.String("anon-7")}, {Key: "user_id", Value: tag.String("u1")}}}
	if res.Err != nil || !reflect.DeepEqual(res.Records, []tag.Record{want}) {
		t.Fatalf("alias: %v\n got %+v\nwant %+v", res.Err, res.Records, want)
	}
	// Screen category becomes an extra unless properties has one.
	res = single(t, CallScreen, `{"anonymousId":"a","name":"s","category":"nav","properties":{"x":1}}`, nil)
	if v, _ := res.Records[0].Extra("category"); v.Str != "nav" {
		t.Fatalf("category: %+v", res.Records[0].Extras)
	}
	res = single(t, CallPage, `{"anonymousId":"a","name":"s","category":"nav","properties":{"category":"own"}}`, nil)
	if v, _ := res.Records[0].Extra("category"); v.Str != "own" || len(res.Dropped) != 0 {
		t.Fatalf("category: %+v %q", res.Records[0].Extras, res.Dropped)
	}
	// An identify without traits or context has nothing to record.
	if res := single(t, CallIdentify, `{"userId":"u1"}`, nil); res.Err != nil || res.Records != nil {
		t.Fatalf("empty identify: %+v", res)
	}
}
