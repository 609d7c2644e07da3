package segmentapi

import (
	"reflect"
	"testing"

	"github.com/openengage/engage/pipeline/tag"
)

const tok = "00112233445566778899aabbccddeeff"

func TestDeviceInfo(t *testing.T) {
	for _, tc := range []struct {
		name, ctx string
		want      tag.DeviceInfo
		dropped   []string
	}{
		{name: "iOS from os.name", ctx: `{"os":{"name":"iOS","version":"17.2"},"device":{"token":"` + tok + `"}}`,
			want: tag.DeviceInfo{Platform: "ios", OSVersion: "17.2", PushToken: tok, PushProvider: tag.ProviderAPNs}},
		{name: "iPadOS", ctx: `{"os":{"name":"iPadOS"}}`, want: tag.DeviceInfo{Platform: "ios"}},
		{name: "sandbox token", ctx: `{"device":{"type":"ios","token":"` + tok + `","tokenEnvironment":"sandbox"}}`,
			want: tag.DeviceInfo{Platform: "ios", PushToken: tok, PushProvider: tag.ProviderAPNsSandbox}},
		{name: "development token", ctx: `{"device":{"type":"ios","token":"` + tok + `","apnsEnvironment":"Development"}}`,
			want: tag.DeviceInfo{Platform: "ios", PushToken: tok, PushProvider: tag.ProviderAPNsSandbox}},
		{name: "android fcm", ctx: `{"device":{"type":"android","token":"fcm:tok","manufacturer":"Google","model":"Pixel 8"},"os":{"name":"Android","version":"14"},"app":{"version":"3.0","build":300}}`,
			want: tag.DeviceInfo{Platform: "android", PushToken: "fcm:tok", PushProvider: tag.ProviderFCM, Manufacturer: "Google", Model: "Pixel 8", OSVersion: "14", AppVersion: "3.0", AppBuild: "300"}},
		{name: "device.type first", ctx: `{"device":{"type":"android"},"os":{"name":"iOS"}}`, want: tag.DeviceInfo{Platform: "android"}},
		{name: "unknown type, known os", ctx: `{"device":{"type":"phone"},"os":{"name":"macOS"}}`, want: tag.DeviceInfo{Platform: "macos"}},
		{name: "web and windows", ctx: `{"os":{"name":"Windows"}}`, want: tag.DeviceInfo{Platform: "windows"}},
		{name: "other", ctx: `{"os":{"name":"tvOS"}}`, want: tag.DeviceInfo{Platform: "other"}},
		{name: "token without platform", ctx: `{"device":{"token":"` + tok + `"},"locale":"en-US"}`,
			want:    tag.DeviceInfo{Locale: "en-US"},
			dropped: []string{`context.device.token: no push provider for platform "": context.device.type must be ios or android`}},
		{name: "token of other platform", ctx: `{"device":{"type":"tvos","token":"` + tok + `"}}`,
			want:    tag.DeviceInfo{Platform: "other"},
			dropped: []string{`context.device.token: no push provider for platform "other": context.device.type must be ios or android`}},
		{name: "country code", ctx: `{"location":{"country":"fr","city":"Paris"},"timezone":"Europe/Paris"}`,
			want: tag.DeviceInfo{Country: "FR", TimeZone: "Europe/Paris"}},
		{name: "country name", ctx: `{"location":{"country":"France"},"locale":"fr-FR"}`,
			want: tag.DeviceInfo{Locale: "fr-FR"}, dropped: []string{`context.location.country: "France" is not a two-letter ISO 3166-1 code`}},
		{name: "invalid fields dropped", ctx: `{"device":{"type":"ios","token":"not-hex","model":"M"},"timezone":"Mars/Olympus","locale":"!!","app":{"version":true}}`,
			want: tag.DeviceInfo{Platform: "ios", Model: "M"},
			dropped: []string{
				"context.app.version: expected a string, got JSON bool",
				"context.device.token: an APNs token is a hexadecimal string of at least 32 digits",
				`context.locale: "!!" is not a BCP 47 locale such as fr-FR`,
				`context.timezone: "Mars/Olympus" is not an IANA time zone such as Europe/Paris`,
			}},
		{name: "device not an object", ctx: `{"device":"phone","locale":"fr-FR"}`,
			want: tag.DeviceInfo{Locale: "fr-FR"}, dropped: []string{"context.device: expected an object, got JSON string"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := single(t, CallIdentify, `{"anonymousId":"a","context":`+tc.ctx+`}`, nil)
			if res.Err != nil || len(res.Records) != 1 || res.Records[0].Kind != tag.KindDevice {
				t.Fatalf("%+v %v", res.Records, res.Err)
			}
			if got := *res.Records[0].Device; got != tc.want {
				t.Errorf("device\n got %+v\nwant %+v", got, tc.want)
			}
			if !reflect.DeepEqual(res.Dropped, tc.dropped) {
				t.Errorf("dropped\n got %q\nwant %q", res.Dropped, tc.dropped)
			}
		})
	}
	// A context that is not an object gives no device record, only a warning.
	res := single(t, CallTrack, `{"event":"e","anonymousId":"a","context":[1]}`, nil)
	if res.Err != nil || len(res.Records) != 1 || res.Dropped != nil {
		t.Fatalf("%+v", res)
	}
}

// The device id comes from context.device.id, else anonymousId, else
// userId; the top-level context of a batch applies under each message's.
func TestDeviceIDAndBatchContext(t *testing.T) {
	body := `{"context":{"device":{"type":"android"},"app":{"version":"1.0"},"locale":"fr-FR"},"batch":[
		{"type":"track","event":"e","userId":"u","anonymousId":"an","context":{"device":{"id":"dv"}}},
		{"type":"track","event":"e","userId":"u","anonymousId":"an2","context":{"app":{"version":"2.0"}}},
		{"type":"track","event":"e","userId":"u3"},
		{"type":"track","event":"e","userId":7,"context":{"device":{"id":{"x":1}}}}
	]}`
	results, err := DecodeBatch([]byte(body), env, nil)
	if err != nil {
		t.Fatal(err)
	}
	type dev struct {
		id, user, version string
	}
	var got []dev
	for _, res := range results {
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if res.Records[0].Kind == tag.KindDevice {
			r := res.Records[0]
			got = append(got, dev{r.DeviceID, r.UserID, r.Device.AppVersion + "/" + r.Device.Platform + "/" + r.Device.Locale})
		}
	}
	want := []dev{{"dv", "u", "1.0/android/fr-FR"}, {"an2", "u", "2.0/android/fr-FR"}, {"u3", "u3", "1.0/android/fr-FR"}, {"7", "7", "1.0/android/fr-FR"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("device records %+v, want %+v", got, want)
	}
	if d := results[3].Dropped; len(d) != 1 || d[0] != "context.device.id: expected a string or number, got JSON object" {
		t.Fatalf("dropped %q", d)
	}
}
