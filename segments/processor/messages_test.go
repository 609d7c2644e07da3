package processor

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The segment-changes topic outlives processes: the scheduler reads what an
// older processor wrote. Today's encoding of a change with extras, a change
// without, and a forwarded device record must stay byte for byte, and
// decode to the same values.
func TestChangeMessagesGolden(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	extras := []tag.Extra{
		{Key: "level", Value: tag.Number(12)},
		{Key: "paid", Value: tag.Bool(true)},
		{Key: "since", Value: tag.Date(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))},
		{Key: "world", Value: tag.String("w\"2")},
	}
	dev := tag.Record{Kind: tag.KindDevice, AppID: "game", DeviceID: "kim", MessageID: "m-1", Time: t0,
		Device: &tag.DeviceInfo{Platform: "ios", TimeZone: "Asia/Tokyo", Locale: "ja-JP", PushToken: "ab12", PushProvider: tag.ProviderAPNs}}
	fm, key, err := forwardMessage(forward{now: t0, value: dev.AppendBinary(nil)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(key) != "game/kim" {
		t.Errorf("forwarded record's key %q, want game/kim", key)
	}
	msgs := []ChangeMessage{
		fm,
		{ID: "0123456789abcdef0123456789abcdef", App: "game", Segment: "stalled", Version: 7, DeviceID: "kim", Enter: true, Time: t0, Cause: "record",
			Extras: AppendExtrasJSON(nil, extras)},
		{ID: "fedcba9876543210fedcba9876543210", App: "game", Segment: "lapsed", Version: 7, DeviceID: "kim", Time: t0.Add(time.Hour), Cause: "timer"},
	}
	var lines []string
	for _, m := range msgs {
		v, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(v))
	}
	got := strings.Join(lines, "\n") + "\n"
	path := filepath.Join("testdata", "golden", "change_messages_v1.txt")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Fatalf("the segment-changes encoding changed: keep %s readable and add a new golden file\ngot:\n%s\nwant:\n%s", path, got, want)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		var m ChangeMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if !reflect.DeepEqual(m, msgs[i]) {
			t.Errorf("line %d decodes to\n%+v\nwant\n%+v", i+1, m, msgs[i])
		}
	}
	var m ChangeMessage
	_ = json.Unmarshal([]byte(lines[0]), &m)
	var r tag.Record
	if err := r.UnmarshalBinary(m.Record); err != nil || r.Device == nil || r.Device.TimeZone != "Asia/Tokyo" {
		t.Errorf("forwarded record decodes to %+v, %v", r, err)
	}
	_ = json.Unmarshal([]byte(lines[1]), &m)
	xs, err := DecodeExtras(m.Extras)
	if err != nil {
		t.Fatal(err)
	}
	for i := range xs {
		xs[i].Value.Date = xs[i].Value.Date.UTC()
	}
	if !reflect.DeepEqual(xs, extras) {
		t.Errorf("extras decode to %+v, want %+v", xs, extras)
	}
}

func TestDecodeExtrasNamesTheBadValue(t *testing.T) {
	xs, err := DecodeExtras(json.RawMessage(`{"ok": 1, "bad": null, "list": [1]}`))
	if err == nil || !strings.Contains(err.Error(), `"bad"`) || !strings.Contains(err.Error(), `"list"`) {
		t.Errorf("error %v should name both bad extras", err)
	}
	if len(xs) != 1 || xs[0].Key != "ok" {
		t.Errorf("the good extra is lost: %+v", xs)
	}
	if tag.PeekKind([]byte{9, 1}) != tag.KindInvalid || tag.PeekKind((&tag.Record{Kind: tag.KindAppInfo}).AppendBinary(nil)) != tag.KindAppInfo {
		t.Error("PeekKind")
	}
}
