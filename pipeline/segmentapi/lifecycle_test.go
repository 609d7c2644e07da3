package segmentapi

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// brief is what a test checks of a record: kind, name, session and id.
type brief struct {
	Kind    tag.Kind
	Name    string
	Session string
	ID      string
}

func briefs(results []Result) [][]brief {
	out := make([][]brief, len(results))
	for i, res := range results {
		for _, r := range res.Records {
			out[i] = append(out[i], brief{r.Kind, r.Name, r.SessionID, r.MessageID})
		}
	}
	return out
}

func decodeOK(t *testing.T, body string) []Result {
	t.Helper()
	results, err := DecodeBatch([]byte(body), env, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range results {
		if res.Err != nil {
			t.Fatalf("message %d: %v", res.Index, res.Err)
		}
	}
	again, _ := DecodeBatch([]byte(body), env, nil)
	if !reflect.DeepEqual(stripRandomIDs(results), stripRandomIDs(again)) {
		t.Fatal("decoding the same body twice gives other records: a retry would not dedupe")
	}
	return results
}

// What Segment's iOS and Android SDKs send over a first launch, a return
// from the background and an update: each Application Opened starts a
// session named after its message, Application Backgrounded ends the
// device's session, Installed and Updated stay events and give a device
// record with the version they announce.
func TestLifecycleSegment(t *testing.T) {
	ctx := func(version, build string) string {
		return `{"device":{"id":"dev-1","type":"ios","model":"iPhone15,2"},"os":{"name":"iOS","version":"17.2"},"app":{"version":"` + version + `","build":"` + build + `"},"library":{"name":"analytics-swift"}}`
	}
	msg := func(id, ms, event, props, context string) string {
		return fmt.Sprintf(`{"type":"track","event":%q,"properties":%s,"anonymousId":"anon-1","messageId":%q,"timestamp":"2026-11-28T11:35:%sZ","context":%s}`, event, props, id, ms, context)
	}
	v1 := ctx("1.0", "100")
	body := `{"sentAt":"2026-11-28T11:35:15.505Z","batch":[` + strings.Join([]string{
		msg("m0", "10.000", "Application Installed", `{"version":"1.0","build":"100"}`, v1),
		msg("m1", "10.001", "Application Opened", `{"from_background":false,"version":"1.0","build":"100","referring_application":"","url":""}`, v1),
		`{"type":"screen","name":"home","anonymousId":"anon-1","messageId":"m2","timestamp":"2026-11-28T11:35:11Z","context":` + v1 + `}`,
		msg("m3", "12.000", "Application Backgrounded", `{}`, v1),
		msg("m4", "13.000", "Application Opened", `{"from_background":true,"version":"1.0","build":"100"}`, v1),
		msg("m5", "14.000", "Application Backgrounded", `{}`, v1),
		msg("m6", "15.000", "Application Updated", `{"previous_version":"1.0","previous_build":"100","version":"1.1","build":"110"}`, ctx("1.1", "110")),
		msg("m7", "15.001", "application opened", `{}`, ctx("1.1", "110")), // not the spec's name: an event
	}, ",") + `]}`
	results := decodeOK(t, body)
	start, end := tag.KindSessionStart, tag.KindSessionEnd
	got := briefs(results)
	// Device records have content-derived ids: checked below.
	for i := range got {
		for j := range got[i] {
			if got[i][j].Kind == tag.KindDevice {
				got[i][j].ID = ""
			}
		}
	}
	want := [][]brief{
		{{tag.KindDevice, "", "", ""}, {tag.KindEvent, EventInstalled, "", "m0"}},
		{{start, "", "m1", derivedID(start, "m1")}, {tag.KindEvent, EventOpened, "m1", "m1"}},
		{{tag.KindActivityStart, "home", "", "m2"}},
		{{tag.KindEvent, EventBackgrounded, "", "m3"}, {end, "", "", derivedID(end, "m3")}},
		{{start, "", "m4", derivedID(start, "m4")}, {tag.KindEvent, EventOpened, "m4", "m4"}},
		{{tag.KindEvent, EventBackgrounded, "", "m5"}, {end, "", "", derivedID(end, "m5")}},
		{{tag.KindDevice, "", "", ""}, {tag.KindEvent, EventUpdated, "", "m6"}},
		{{tag.KindEvent, "application opened", "", "m7"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("records\n got %+v\nwant %+v", got, want)
	}
	// The implied records share their message's time, ids and version.
	opened, open := results[1].Records[0], results[1].Records[1]
	if !opened.Time.Equal(open.Time) || opened.DeviceID != "dev-1" || opened.AppVersion != "1.0" || opened.Duration != 0 || opened.Extras != nil {
		t.Errorf("session_start %+v, event %+v", opened, open)
	}
	wantExtras := []tag.Extra{{Key: "build", Value: tag.String("100")}, {Key: "from_background", Value: tag.Bool(false)},
		{Key: "referring_application", Value: tag.String("")}, {Key: "url", Value: tag.String("")}, {Key: "version", Value: tag.String("1.0")}}
	if !reflect.DeepEqual(open.Extras, wantExtras) {
		t.Errorf("Application Opened keeps its properties\n got %+v\nwant %+v", open.Extras, wantExtras)
	}
	if ended := results[3].Records[1]; !ended.Time.Equal(results[3].Records[0].Time) || ended.Time.Equal(opened.Time) {
		t.Errorf("session_end at %v, its event at %v", ended.Time, results[3].Records[0].Time)
	}
	updated := results[6].Records[0].Device
	if updated.AppVersion != "1.1" || updated.AppBuild != "110" || results[6].Records[1].AppVersion != "1.1" {
		t.Errorf("Application Updated: device %+v", updated)
	}
}

// Installed and Updated always give a device record, like identify, and
// their properties stand for context.app when the context has none (a
// server relaying them).
func TestLifecycleInstalledUpdatedDevice(t *testing.T) {
	body := `{"batch":[
	 {"type":"track","event":"article_read","anonymousId":"a","messageId":"m0","context":{"device":{"type":"android"}}},
	 {"type":"track","event":"Application Updated","anonymousId":"a","messageId":"m1","context":{"device":{"type":"android"}},
	  "properties":{"previous_version":"2.0","previous_build":"200","version":"2.1","build":210}},
	 {"type":"track","event":"Application Installed","anonymousId":"b","messageId":"m2","properties":{"version":"\u0007bad","build":"9"}},
	 {"type":"track","event":"Application Installed","anonymousId":"c","messageId":"m3","context":{"app":{"version":"5.0","build":"500"}},"properties":{"version":"4.0","build":"400"}}
	]}`
	results := decodeOK(t, body)
	device := func(i int) *tag.DeviceInfo {
		t.Helper()
		if len(results[i].Records) != 2 || results[i].Records[0].Kind != tag.KindDevice {
			t.Fatalf("message %d: %+v", i, results[i].Records)
		}
		return results[i].Records[0].Device
	}
	if d := device(1); *d != (tag.DeviceInfo{Platform: "android", AppVersion: "2.1", AppBuild: "210"}) {
		t.Errorf("Updated: %+v", d)
	}
	if v := results[1].Records[1].AppVersion; v != "2.1" {
		t.Errorf("Updated event of app version %q", v)
	}
	if d := device(2); *d != (tag.DeviceInfo{AppBuild: "9"}) { // a version with a control character is not one
		t.Errorf("Installed: %+v", d)
	}
	if d := device(3); d.AppVersion != "5.0" || d.AppBuild != "500" { // the context wins
		t.Errorf("Installed with context: %+v", d)
	}
	if v, _ := results[1].Records[1].Extra("previous_version"); v.Str != "2.0" {
		t.Errorf("Updated keeps its properties: %+v", results[1].Records[1].Extras)
	}
}

// RudderStack's SDKs track sessions themselves: context.sessionId on every
// message, context.sessionStart on the first of a session. Their session
// goes on across Application Opened (it ends after a time in the
// background), so only sessionStart starts one.
func TestLifecycleRudderStackSessions(t *testing.T) {
	ctx := func(extra string) string {
		return `{"device":{"id":"dev-r","type":"android"},"app":{"version":"3.0"}` + extra + `}`
	}
	body := `{"batch":[
	 {"type":"track","event":"Application Opened","anonymousId":"a","messageId":"r0","context":` + ctx(`,"sessionId":1700000000000,"sessionStart":true`) + `},
	 {"type":"screen","name":"feed","anonymousId":"a","messageId":"r1","context":` + ctx(`,"sessionId":1700000000000`) + `},
	 {"type":"track","event":"Application Backgrounded","anonymousId":"a","messageId":"r2","context":` + ctx(`,"sessionId":1700000000000`) + `},
	 {"type":"track","event":"Application Opened","anonymousId":"a","messageId":"r3","properties":{"from_background":true},"context":` + ctx(`,"sessionId":1700000000000`) + `},
	 {"type":"identify","userId":"u","anonymousId":"a","messageId":"r4","context":` + ctx(`,"sessionId":"s-2","sessionStart":true`) + `}
	]}`
	results := decodeOK(t, body)
	const sid = "1700000000000"
	start, end := tag.KindSessionStart, tag.KindSessionEnd
	got := briefs(results)
	got[0] = got[0][1:] // the device record
	got[4] = got[4][1:] // identify: its device record, no traits
	want := [][]brief{
		{{start, "", sid, derivedID(start, "r0")}, {tag.KindEvent, EventOpened, sid, "r0"}},
		{{tag.KindActivityStart, "feed", sid, "r1"}},
		{{tag.KindEvent, EventBackgrounded, sid, "r2"}, {end, "", sid, derivedID(end, "r2")}},
		{{tag.KindEvent, EventOpened, sid, "r3"}},
		{{start, "", "s-2", derivedID(start, "r4")}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("records\n got %+v\nwant %+v", got, want)
	}
}

// A session id the model cannot hold is dropped with a warning; the
// message is then mapped as if the SDK sent none.
func TestLifecycleBadSessionID(t *testing.T) {
	for _, tc := range []struct {
		id      string
		dropped string
	}{
		{`{}`, "context.sessionId: expected a string or number, got JSON object"},
		{`true`, "context.sessionId: expected a string or number, got JSON bool"},
		{`"` + strings.Repeat("s", 257) + `"`, "context.sessionId: \"" + strings.Repeat("s", 64) + "\"… is not a session id: at most 256 bytes of UTF-8 without control characters"},
		{`"a\nb"`, `context.sessionId: "a\nb" is not a session id: at most 256 bytes of UTF-8 without control characters`},
	} {
		t.Run(tc.id, func(t *testing.T) {
			res := single(t, CallTrack, `{"event":"Application Opened","anonymousId":"a","messageId":"m","context":{"sessionId":`+tc.id+`,"sessionStart":true}}`, nil)
			if res.Err != nil || !reflect.DeepEqual(res.Dropped, []string{tc.dropped}) {
				t.Fatalf("err %v, dropped %q, want %q", res.Err, res.Dropped, tc.dropped)
			}
			if got := briefs([]Result{res})[0]; !reflect.DeepEqual(got, []brief{{tag.KindSessionStart, "", "m", derivedID(tag.KindSessionStart, "m")}, {tag.KindEvent, EventOpened, "m", "m"}}) {
				t.Fatalf("records %+v", got)
			}
		})
	}
}

// Without a messageId the session is named after the event's derived id,
// and the session start gets an id of its own, the same on a retry.
func TestLifecycleWithoutMessageID(t *testing.T) {
	body := `{"type":"track","event":"Application Opened","anonymousId":"a","timestamp":"2026-11-28T11:35:10Z"}`
	a, b := single(t, CallTrack, body, nil), single(t, CallTrack, body, nil)
	if a.Err != nil || len(a.Records) != 2 || !reflect.DeepEqual(a, b) {
		t.Fatalf("%+v\n%+v", a, b)
	}
	start, event := a.Records[0], a.Records[1]
	if start.Kind != tag.KindSessionStart || !strings.HasPrefix(event.MessageID, "h-") || start.SessionID != event.MessageID ||
		event.SessionID != event.MessageID || start.MessageID == event.MessageID {
		t.Fatalf("session_start %+v\nevent %+v", start, event)
	}
	if !start.Time.Equal(time.Date(2026, 11, 28, 11, 35, 10, 0, time.UTC)) {
		t.Fatalf("time %v", start.Time)
	}
}

// A lifecycle message that breaks a rule is refused whole, with the field:
// no session record goes without its event.
func TestLifecycleErrors(t *testing.T) {
	for _, tc := range []struct{ body, field string }{
		{`{"event":"Application Opened","anonymousId":"a","timestamp":"yesterday"}`, "timestamp"},
		{`{"event":"Application Backgrounded","anonymousId":"a","properties":[1]}`, "properties"},
		{`{"event":"Application Installed","anonymousId":"a","properties":"1.0"}`, "properties"},
		{`{"event":"Application Opened","properties":{}}`, "anonymousId"},
		{`{"event":"Application Opened","anonymousId":"a","properties":{"url":"` + strings.Repeat("u", 1025) + `"}}`, "properties.url"},
	} {
		res := single(t, CallTrack, tc.body, nil)
		if res.Err == nil || res.Err.Field != tc.field || res.Records != nil {
			t.Errorf("%s: %+v", tc.body, res)
		}
	}
}
