package inbox

import (
	"flag"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// Add keeps one message per delivery, drops the expired, keeps the newest
// MaxMessages.
func TestAdd(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	msg := func(id string, exp time.Duration) Message {
		return Message{DeliveryID: id, Campaign: "c", Time: now, Expires: now.Add(exp)}
	}
	var box []Message
	box = Add(box, msg("a", time.Hour), now)
	box = Add(box, msg("a", time.Hour), now)
	box = Add(box, msg("b", time.Minute), now)
	box = Add(box, msg("x", -time.Minute), now) // already expired
	if len(box) != 2 || box[0].DeliveryID != "a" || box[1].DeliveryID != "b" {
		t.Fatalf("%+v", box)
	}
	box = Add(box, msg("c", time.Hour), now.Add(2*time.Minute)) // b expired meanwhile
	if len(box) != 2 || box[1].DeliveryID != "c" {
		t.Fatalf("after b expired: %+v", box)
	}
	for i := range MaxMessages + 5 {
		box = Add(box, msg(string(rune('A'+i)), time.Hour), now)
	}
	if len(box) != MaxMessages || box[len(box)-1].DeliveryID != string(rune('A'+MaxMessages+4)) {
		t.Fatalf("bounded: %d, last %s", len(box), box[len(box)-1].DeliveryID)
	}
	if Encode(nil) != nil {
		t.Error("an empty inbox is not a tombstone")
	}
}

// engage.inbox outlives processes: a device's inbox as written today must
// stay byte for byte and decode to the same messages.
func TestInboxGolden(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	msgs := []Message{
		{DeliveryID: "0123456789abcdef0123456789abcdef", Campaign: "tutorial", Variant: "short", Title: "Swipe left", Body: "to see more", Layout: "modal",
			Buttons: []Button{{Label: "OK"}, {Label: "More", DeepLink: "news://help"}}, Activities: []string{"home"}, Time: t0, Expires: t0.Add(DefaultTTL)},
		{DeliveryID: "fedcba9876543210fedcba9876543210", Campaign: "promo", Title: "20% off", Image: "https://cdn.example.com/p.png", DeepLink: "shop://sale",
			Layout: "banner", Time: t0, Expires: t0.Add(6 * time.Hour)},
	}
	got := string(Encode(msgs)) + "\n"
	path := filepath.Join("testdata", "golden", "inbox_v1.json")
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
		t.Fatalf("the inbox encoding changed: keep %s readable and add a new golden file\ngot:  %s\nwant: %s", path, got, want)
	}
	back, err := Decode(want[:len(want)-1])
	if err != nil || !reflect.DeepEqual(back, msgs) {
		t.Errorf("decodes to %+v, %v", back, err)
	}
	if _, err := Decode([]byte(`{"messages": 3}`)); err == nil {
		t.Error("a bad record decodes")
	}
}

// The store answers as a plain map of the latest records would, through
// updates, deletions, compactions and keys whose hash another key has.
func TestStoreAgainstMap(t *testing.T) {
	defer func(v int) { compactAbove = v }(compactAbove)
	compactAbove = 64 << 10
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s := NewStore()
	ref := map[string]string{}
	r := rand.New(rand.NewPCG(1, 2))
	compactions := 0
	for i := range 20000 {
		key := fmt.Sprintf("app/d%03d", r.IntN(500))
		var msgs []Message
		for j := range r.IntN(3) {
			msgs = append(msgs, Message{DeliveryID: fmt.Sprintf("%d-%d", i, j), Campaign: "c", Title: strings.Repeat("x", r.IntN(200)), Time: now, Expires: now.Add(time.Hour)})
		}
		before := s.total
		if err := s.Apply([]byte(key), Encode(msgs)); err != nil {
			t.Fatal(err)
		}
		if s.total < before {
			compactions++
		}
		if len(msgs) == 0 {
			delete(ref, key)
		} else {
			ref[key] = msgs[len(msgs)-1].DeliveryID
		}
	}
	if compactions == 0 {
		t.Fatal("no compaction happened: the test does not cover it")
	}
	if s.Devices() != len(ref) {
		t.Errorf("%d devices, want %d", s.Devices(), len(ref))
	}
	for i := range 500 {
		dev := fmt.Sprintf("d%03d", i)
		got := s.Get("app", dev, "", now)
		want, ok := ref["app/"+dev]
		if !ok && len(got) != 0 || ok && (len(got) == 0 || got[len(got)-1].DeliveryID != want) {
			t.Fatalf("%s: %v, want last %q (%v)", dev, got, want, ok)
		}
	}
	// A key whose hash another key has: kept apart, found, deleted.
	other := []byte("app/collides")
	s.index[maphash.Bytes(s.seed, other)] = s.index[maphash.String(s.seed, "app/d001")]
	if ref["app/d001"] == "" {
		t.Skip("d001 has no inbox in this run")
	}
	m := []Message{{DeliveryID: "mine", Time: now, Expires: now.Add(time.Hour)}}
	if err := s.Apply(other, Encode(m)); err != nil {
		t.Fatal(err)
	}
	if got := s.Get("app", "collides", "", now); len(got) != 1 || got[0].DeliveryID != "mine" {
		t.Errorf("the colliding key: %v", got)
	}
	if got := s.Get("app", "d001", "", now); len(got) == 0 || got[len(got)-1].DeliveryID != ref["app/d001"] {
		t.Errorf("the key it collides with: %v", got)
	}
	if err := s.Apply(other, nil); err != nil || len(s.Get("app", "collides", "", now)) != 0 {
		t.Errorf("the colliding key deleted: %v", err)
	}
}
