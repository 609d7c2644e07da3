package dispatcher

import (
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/triggers"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The dispatcher's changelog outlives processes: an attempt being sent,
// waiting, done, and a dead token must stay byte for byte, and decode to
// the same values; what is not a record of this version is refused.
func TestStateGolden(t *testing.T) {
	attempts := []attempt{
		{offset: 41},
		{retry: true, offset: 42},
		{done: true, offset: 43, outcome: OutcomeAccepted, provID: "00000000-0000-0000-0000-00000000002b", attempts: 1},
		{done: true, offset: 1 << 40, outcome: OutcomeFailed, reason: "the push token is dead: BadDeviceToken", attempts: 2},
		{done: true, offset: 44, outcome: triggers.OutcomeExpired, reason: "expired at 2026-12-01T10:00:00Z before it could be sent"},
	}
	dead := deadToken{provider: "apns", token: strings.Repeat("ab", 32), reason: "Unregistered", at: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).Unix()}
	var lines []string
	for _, a := range attempts {
		lines = append(lines, "attempt "+hex.EncodeToString(a.encode()))
	}
	lines = append(lines, "dead "+hex.EncodeToString(dead.encode()))
	got := strings.Join(lines, "\n") + "\n"
	path := filepath.Join("testdata", "golden", "state_v1.txt")
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
		t.Fatalf("the dispatcher's state encoding changed: keep %s readable and add a new golden file\ngot:\n%s\nwant:\n%s", path, got, want)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		kind, h, _ := strings.Cut(line, " ")
		b, _ := hex.DecodeString(h)
		if kind == "dead" {
			d, err := decodeDead(b)
			if err != nil || d != dead {
				t.Errorf("line %d: %+v %v", i+1, d, err)
			}
			continue
		}
		a, err := decodeAttempt(b)
		if err != nil || !reflect.DeepEqual(a, attempts[i]) {
			t.Errorf("line %d: %+v %v, want %+v", i+1, a, err, attempts[i])
		}
	}
	for _, bad := range []string{"", "02", "0104", "0101", "0102", "010256", "01022a0100000000"} {
		b, _ := hex.DecodeString(bad)
		if _, err := decodeAttempt(b); err == nil {
			t.Errorf("%q decodes", bad)
		}
	}
	if _, err := decodeDead([]byte("apns\x00tok")); err == nil {
		t.Error("a dead token of 2 fields decodes")
	}
}

// The backoff doubles from the base, stays within the cap, has jitter and
// honours Retry-After.
func TestBackoff(t *testing.T) {
	seen := map[time.Duration]bool{}
	for n := 1; n <= 30; n++ {
		for range 20 {
			w := retryWait(n, time.Second, time.Minute, 0)
			lo := min(time.Second<<min(n-1, 20), time.Minute) / 2
			if w < lo || w > 2*lo {
				t.Fatalf("try %d: %s outside [%s, %s]", n, w, lo, 2*lo)
			}
			seen[w] = true
		}
	}
	if len(seen) < 100 {
		t.Errorf("%d distinct waits: no jitter?", len(seen))
	}
	if w := retryWait(1, time.Second, time.Minute, 45*time.Second); w != 45*time.Second {
		t.Errorf("Retry-After 45s: %s", w)
	}
}
