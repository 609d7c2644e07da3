package tag

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	t0  = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	env = Envelope{AppID: "app1", ReceivedAt: t0}
)

func TestCorrectSkew(t *testing.T) {
	client := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC) // client clock is 1h late
	sent := client.Add(30 * time.Second)
	recv := t0.Add(30 * time.Second)
	if got, want := CorrectSkew(client, sent, recv), t0; !got.Equal(want) {
		t.Fatalf("CorrectSkew = %v, want %v", got, want)
	}
	if got := CorrectSkew(client, time.Time{}, recv); !got.Equal(client) {
		t.Fatalf("without sentAt: %v, want client time %v", got, client)
	}
	if got := CorrectSkew(time.Time{}, sent, recv); !got.Equal(recv) {
		t.Fatalf("without client time: %v, want receive time %v", got, recv)
	}
}

func TestDecodeJSONGood(t *testing.T) {
	raw := `{"type":"event","deviceId":"d1","userId":"u1","messageId":"m1",
	  "time":"2026-11-28T08:59:00Z","sentAt":"2026-11-28T09:00:00Z","name":"article_read","activity":"home",
	  "extras":{"words":640,"category":"sport","premium":false,"published":{"$date":"2026-11-01T00:00:00Z"}}}`
	r, err := DecodeJSON([]byte(raw), env)
	if err != nil {
		t.Fatal(err)
	}
	want := Record{
		Kind: KindEvent, AppID: "app1", DeviceID: "d1", UserID: "u1", MessageID: "m1",
		Time: t0.Add(-time.Minute), SentAt: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC), ReceivedAt: t0,
		Name: "article_read", Activity: "home",
		Extras: []Extra{
			{"category", String("sport")},
			{"premium", Bool(false)},
			{"published", Date(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))},
			{"words", Number(640)},
		},
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}
	// JSON round trip.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeJSON(b, Envelope{AppID: "app1"})
	if err != nil {
		t.Fatalf("decode own JSON %s: %v", b, err)
	}
	back.Time = r.Time // re-correction is idempotent only up to clock data; compare the rest
	if !reflect.DeepEqual(back, r) {
		t.Fatalf("JSON round trip\n got %+v\nwant %+v", back, r)
	}
}

func TestDecodeJSONBad(t *testing.T) {
	for _, tc := range []struct {
		name, raw, field, reason string
	}{
		{"no type", `{"deviceId":"d"}`, "type", "missing"},
		{"bad type", `{"type":"evnt","deviceId":"d"}`, "type", `"evnt" is not a record type`},
		{"no device", `{"type":"session_start"}`, "device", "missing"},
		{"event without name", `{"type":"event","deviceId":"d"}`, "name", "needs a name"},
		{"session with name", `{"type":"session_start","deviceId":"d","name":"x"}`, "name", "has no name"},
		{"bad key", `{"type":"event","deviceId":"d","name":"e","extras":{"9lives":1}}`, `extras."9lives"`, "invalid key"},
		{"null extra", `{"type":"event","deviceId":"d","name":"e","extras":{"a":null}}`, "extras.a", "null"},
		{"array extra", `{"type":"event","deviceId":"d","name":"e","extras":{"a":[1]}}`, "extras.a", "arrays"},
		{"long value", `{"type":"event","deviceId":"d","name":"e","extras":{"a":"` + strings.Repeat("x", 1025) + `"}}`, "extras.a", "limit of 1024"},
		{"bad date", `{"type":"event","deviceId":"d","name":"e","extras":{"a":{"$date":"yesterday"}}}`, "extras.a", "RFC 3339"},
		{"wrong field type", `{"type":"event","deviceId":7,"name":"e"}`, "deviceId", "expected string"},
		{"unknown field", `{"type":"event","deviceId":"d","name":"e","extra":{}}`, "record", `unknown field "extra"`},
		{"bad time", `{"type":"event","deviceId":"d","name":"e","time":"noon"}`, "time", "RFC 3339"},
		{"malformed", `{"type":"event","deviceId":"d",}`, "record", "malformed JSON at byte 31"},
		{"not an object", `[1]`, "record", "expected a JSON object, got JSON array"},
		{"duplicate extra", `{"type":"event","deviceId":"d","name":"e","extras":{"a":1,"a":2}}`, "extras.a", "duplicate key"},
		{"number as string field", `{"type":"event","deviceId":"d","name":5}`, "name", "expected string, got JSON number"},
		{"future", `{"type":"event","deviceId":"d","name":"e","time":"2027-11-28T10:00:00Z"}`, "time", "in the future"},
		{"job without duration", `{"type":"job","deviceId":"d","name":"login"}`, "duration", "needs a duration"},
		{"negative duration", `{"type":"job","deviceId":"d","name":"login","durationMs":-5}`, "durationMs", "not a duration"},
		{"bad zone", `{"type":"device","deviceId":"d","device":{"timeZone":"Mars/Olympus"}}`, "device.timeZone", "IANA"},
		{"bad locale", `{"type":"device","deviceId":"d","device":{"locale":"f"}}`, "device.locale", "BCP 47"},
		{"token without provider", `{"type":"device","deviceId":"d","device":{"pushToken":"abc"}}`, "device.pushProvider", "needs its provider"},
		{"bad apns token", `{"type":"device","deviceId":"d","device":{"pushToken":"xyz","pushProvider":"apns"}}`, "device.pushToken", "hexadecimal"},
		{"bad provider", `{"type":"device","deviceId":"d","device":{"pushToken":"x","pushProvider":"hms"}}`, "device.pushProvider", "not one of"},
		{"device info on event", `{"type":"event","deviceId":"d","name":"e","device":{}}`, "device", "only device records"},
		{"bad push action", `{"type":"push","deviceId":"d","push":{"action":"read","deliveryId":"x"}}`, "action", "not one of"},
		{"empty app info", `{"type":"app_info","deviceId":"d"}`, "appInfo", "at least one"},
		{"wrong app", `{"type":"session_start","deviceId":"d","app":"other"}`, "app", "does not match"},
		{"control char", `{"type":"event","deviceId":"d\u0001","name":"e"}`, "device", "control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeJSON([]byte(tc.raw), env)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a *FieldError", err)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Reason, tc.reason) {
				t.Fatalf("got %q: %q, want %q: …%s…", fe.Field, fe.Reason, tc.field, tc.reason)
			}
		})
	}
}

func TestGeneratedIDStableAcrossRetries(t *testing.T) {
	raw := `{"type":"event","deviceId":"d1","time":"2026-11-28T09:00:00Z","name":"e","extras":{"b":1,"a":"x"}}`
	a, err := DecodeJSON([]byte(raw), Envelope{AppID: "app1", ReceivedAt: t0, SentAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := DecodeJSON([]byte(raw), Envelope{AppID: "app1", ReceivedAt: t0.Add(time.Minute), SentAt: t0.Add(time.Minute)})
	if a.MessageID != b.MessageID || !strings.HasPrefix(a.MessageID, "h-") {
		t.Fatalf("retry ids differ: %s vs %s", a.MessageID, b.MessageID)
	}
	c, _ := DecodeJSON([]byte(strings.Replace(raw, `"b":1`, `"b":2`, 1)), env)
	if c.MessageID == a.MessageID {
		t.Fatal("different content, same id")
	}
	n1, _ := DecodeJSON([]byte(`{"type":"session_start","deviceId":"d"}`), env)
	n2, _ := DecodeJSON([]byte(`{"type":"session_start","deviceId":"d"}`), env)
	if n1.MessageID == n2.MessageID {
		t.Fatal("records without a client time got the same id")
	}
}

func sampleRecords() []Record {
	return []Record{
		{Kind: KindSessionStart, AppID: "a", DeviceID: "d", MessageID: "m1", Time: t0, SessionID: "s1"},
		{Kind: KindEvent, AppID: "a", DeviceID: "d", UserID: "u", MessageID: "m2", Time: t0, SentAt: t0, ReceivedAt: t0.Add(time.Second),
			Name: "buy", Activity: "cart", Extras: []Extra{{"n", Number(-1.5)}, {"ok", Bool(true)}, {"s", String("é")}, {"t", Date(t0)}}},
		{Kind: KindJob, AppID: "a", DeviceID: "d", MessageID: "m3", Time: t0, Name: "login", Duration: 1500 * time.Millisecond},
		{Kind: KindAppInfo, AppID: "a", DeviceID: "d", MessageID: "m4", Time: t0, AppInfo: []Extra{{"level", Number(7)}}, Unplanned: []string{"app_info:level"}},
		{Kind: KindDevice, AppID: "a", DeviceID: "d", MessageID: "m5", Time: t0, Device: &DeviceInfo{Platform: "ios", Locale: "fr-FR", TimeZone: "Europe/Paris", Country: "FR", PushToken: strings.Repeat("ab", 32), PushProvider: ProviderAPNs}},
		{Kind: KindPush, AppID: "a", DeviceID: "d", MessageID: "m6", Time: t0, Push: &Push{Action: PushOpened, DeliveryID: "dl", CampaignID: "c"}},
	}
}

func TestBinaryRoundTrip(t *testing.T) {
	for _, r := range sampleRecords() {
		if err := r.Validate(); err != nil {
			t.Fatalf("%s: %v", r.Kind, err)
		}
		b := r.AppendBinary(nil)
		var back Record
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: %v", r.Kind, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("%s round trip\n got %+v\nwant %+v", r.Kind, back, r)
		}
		for i := 0; i < len(b); i++ { // every truncation is an error, never a panic
			if err := back.UnmarshalBinary(b[:i]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s truncated to %d: %v", r.Kind, i, err)
			}
		}
	}
	var r Record
	if err := r.UnmarshalBinary([]byte{9, 1, 0}); err == nil || !strings.Contains(err.Error(), "unknown codec version 9") {
		t.Fatalf("future version: %v", err)
	}
}

func TestValidTimeZone(t *testing.T) {
	for name, want := range map[string]bool{"Europe/Paris": true, "UTC": true, "America/Argentina/Buenos_Aires": true,
		"Local": false, "": false, "../etc/passwd": false, "/etc/localtime": false, "Nowhere/City": false} {
		if got := ValidTimeZone(name); got != want {
			t.Errorf("ValidTimeZone(%q) = %v, want %v", name, got, want)
		}
	}
}

// A push record token_dead is the dispatcher's: refused from a device,
// kept when read back from the tags topic (the sink writes it).
func TestTokenDeadOnlyFromThePlatform(t *testing.T) {
	r := Record{Kind: KindPush, AppID: "news", DeviceID: "d1", MessageID: "token-dead-1", Time: time.Unix(1_800_000_000, 0),
		Push: &Push{Action: PushTokenDead, DeliveryID: "0123456789abcdef", CampaignID: "welcome"}}
	err := r.Validate()
	if err == nil || !strings.Contains(err.Error(), "token_dead is written by the dispatcher") {
		t.Fatalf("from a device: %v", err)
	}
	if err := r.ValidateStored(); err != nil {
		t.Fatalf("from the tags topic: %v", err)
	}
	r.Push.Action = "exploded"
	if r.ValidateStored() == nil {
		t.Fatal("an unknown action passed ValidateStored")
	}
}

// A record of 64 short extras is hashed for its id in a buffer on the
// stack: the id string is GenerateID's one allocation (two when the
// buffer was 512 bytes).
func TestGenerateIDAllocations(t *testing.T) {
	r := Record{Kind: KindEvent, AppID: "app1", DeviceID: "dev-1234", UserID: "u1", Name: "shared", Time: t0}
	for i := range MaxExtras {
		r.Extras = append(r.Extras, Extra{Key: "x_1" + string([]byte{byte('0' + i/10), byte('0' + i%10)}) + "_", Value: Number(1)})
	}
	if !extrasSorted(r.Extras) {
		t.Fatal("extras not in key order")
	}
	id := GenerateID(&r, t0)
	if n := testing.AllocsPerRun(100, func() {
		if GenerateID(&r, t0) != id {
			t.Fatal("id not stable")
		}
	}); n != 1 {
		t.Fatalf("%v allocations for the id of a record of %d short extras, want 1", n, MaxExtras)
	}
}
