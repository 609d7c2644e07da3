package scheduler

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
	"github.com/openengage/engage/triggers"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// engage.deliveries and engage.decisions outlive processes (the dispatcher
// and the sink read what an older scheduler wrote): today's encoding must
// stay byte for byte, and decode to the same values.
func TestMessagesGolden(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	badge := 3
	del := triggers.Delivery{ID: "1f0e", App: "game", Campaign: "stalled", Version: 42, DeviceID: "kim", Occurrence: "entry:0123456789abcdef0123456789abcdef",
		Variant: "bonus", Channel: triggers.ChannelPush, Locale: "ja", Time: t0, Expires: t0.Add(24 * time.Hour), PushToken: "a3f1c2d4e5b6", PushProvider: tag.ProviderAPNs,
		Message: triggers.Message{Title: "Kim, level 12?", Body: "Here is a bonus", Sound: "default", Badge: &badge, Image: "https://x/i.png",
			DeepLink: "game://level/12", Data: map[string]string{"bonus": "50"}, CollapseID: "stalled", Priority: triggers.PriorityHigh, TTL: time.Hour}}
	inapp := triggers.Delivery{ID: "2a", App: "news", Campaign: "tutorial", Version: 3, DeviceID: "ana", Occurrence: "once", Channel: triggers.ChannelInApp, Time: t0,
		Message: triggers.Message{Title: "Tip", Body: "Swipe left", Layout: triggers.LayoutModal, Buttons: []triggers.Button{{Label: "OK"}, {Label: "More", DeepLink: "news://help"}},
			Activities: []string{"home"}}}
	decs := []triggers.Decision{
		{ID: "3b", App: "game", Campaign: "stalled", Version: 42, DeviceID: "kim", Occurrence: "entry:0123456789abcdef0123456789abcdef", Outcome: triggers.OutcomeDeferred,
			Reason: "quiet hours 22:00-09:00 in Asia/Tokyo", Time: t0, SendAt: t0.Add(3 * time.Hour), Variant: "bonus"},
		{ID: "4c", App: "game", Campaign: "lapsed", Version: 7, DeviceID: "bo", Occurrence: "day:2026-03-01", Outcome: triggers.OutcomeCapped,
			Reason: "cap of 2 push per day reached", Time: t0},
	}
	var lines []string
	var want []any
	for _, d := range []triggers.Delivery{del, inapp} {
		m := FromDelivery(&d)
		want = append(want, m)
		v, _ := json.Marshal(m)
		lines = append(lines, string(v))
	}
	for _, d := range decs {
		m := FromDecision(&d)
		want = append(want, m)
		v, _ := json.Marshal(m)
		lines = append(lines, string(v))
	}
	got := strings.Join(lines, "\n") + "\n"
	path := filepath.Join("testdata", "golden", "messages_v1.txt")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(data) {
		t.Fatalf("the deliveries' or decisions' encoding changed: keep %s readable and add a new golden file\ngot:\n%s\nwant:\n%s", path, got, data)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var back any
		if i < 2 {
			var m DeliveryMessage
			err = json.Unmarshal([]byte(line), &m)
			back = m
		} else {
			var m DecisionMessage
			err = json.Unmarshal([]byte(line), &m)
			back = m
		}
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if !reflect.DeepEqual(back, want[i]) {
			t.Errorf("line %d decodes to\n%+v\nwant\n%+v", i+1, back, want[i])
		}
	}
}
