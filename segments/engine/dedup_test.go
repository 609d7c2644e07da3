package engine

import (
	"strconv"
	"testing"
	"time"

	"github.com/twmb/murmur3"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// collidingIDs finds two message ids whose 32-bit murmur3 hashes are equal
// (a birthday search: about 2^16 tries).
func collidingIDs(t *testing.T) (string, string) {
	t.Helper()
	seen := make(map[uint32]string, 1<<17)
	for i := range 1 << 22 {
		id := "msg-" + strconv.Itoa(i)
		h := murmur3.StringSum32(id)
		if prev, ok := seen[h]; ok {
			return prev, id
		}
		seen[h] = id
	}
	t.Fatal("no 32-bit collision in 2^22 ids")
	return "", ""
}

// Two different records whose message ids collide on 32 bits both count:
// the engine recognises a client retry by a 64-bit hash.
func TestDedupDistinguishes32BitCollisions(t *testing.T) {
	a, b := collidingIDs(t)
	if a == b || murmur3.StringSum32(a) != murmur3.StringSum32(b) {
		t.Fatalf("ids %q and %q do not collide", a, b)
	}
	n, err := segments.Parse(`did event "buy" at least 2 times`)
	if err != nil {
		t.Fatal(err)
	}
	e := New(Options{})
	now := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	if _, _, err := e.SetSegments([]*segments.Segment{{App: "shop", Name: "two", Expr: n, Version: 1}}, now); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{a, b, b} { // b twice: the second is a retry
		r := &tag.Record{AppID: "shop", DeviceID: "d1", MessageID: id, Kind: tag.KindEvent, Name: "buy", Time: now}
		e.Apply(r, int64(i), now, nil)
	}
	st := e.Stats()
	if st.Records != 2 || st.Duplicates != 1 {
		t.Errorf("records %d, duplicates %d: want 2 counted (ids %q and %q collide on 32 bits) and 1 retry", st.Records, st.Duplicates, a, b)
	}
	if !e.Member("shop", "two", "d1") {
		t.Errorf("d1 is not in %q after two buys with ids %q and %q", "two", a, b)
	}
	// The same holds after a restore from the changelog.
	r := New(Options{})
	if _, _, err := r.SetSegments([]*segments.Segment{{App: "shop", Name: "two", Expr: n, Version: 1}}, now); err != nil {
		t.Fatal(err)
	}
	e.Snapshot(func(k, s []byte) {
		if err := r.Restore(k, s); err != nil {
			t.Fatal(err)
		}
	})
	c := &tag.Record{AppID: "shop", DeviceID: "d1", MessageID: a + "x", Kind: tag.KindEvent, Name: "buy", Time: now}
	r.Apply(&tag.Record{AppID: "shop", DeviceID: "d1", MessageID: b, Kind: tag.KindEvent, Name: "buy", Time: now}, 10, now, nil)
	r.Apply(c, 11, now, nil)
	if st := r.Stats(); st.Duplicates != 1 || st.Records != 1 {
		t.Errorf("after restore: records %d, duplicates %d; want the retry of %q recognised and a new id counted", st.Records, st.Duplicates, b)
	}
}
