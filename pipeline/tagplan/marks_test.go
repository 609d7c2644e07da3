package tagplan

import (
	"fmt"
	"slices"
	"testing"

	"github.com/openengage/engage/pipeline/tag"
)

// Marks are written out as they were noted, however many a record has:
// an unplanned tag, then each unplanned extra in order, past the room
// kept on the stack (tag.MaxExtras+1) too.
func TestMarksInOrder(t *testing.T) {
	p := withMode(mustParseFile(t, "testdata/news.yaml"), ModeWarn)
	for _, n := range []int{1, tag.MaxExtras, tag.MaxExtras + 5} {
		var xs []tag.Extra
		want := []string{"event:not_planned"}
		for i := range n {
			k := fmt.Sprintf("k%03d", i)
			xs = append(xs, x(k, tag.Number(1)))
		}
		r := rec(tag.KindEvent, "not_planned", xs...)
		r.Unplanned = []string{"kept"}
		if err := p.Apply(&r); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.Unplanned, append([]string{"kept"}, want...)) {
			t.Fatalf("%d extras of an unplanned event: marks %q", n, r.Unplanned)
		}
		r = rec(tag.KindEvent, "article_read", xs...)
		if err := p.Apply(&r); err != nil {
			t.Fatal(err)
		}
		want = nil
		for i := range n {
			want = append(want, fmt.Sprintf("extra:event:article_read:k%03d", i))
		}
		if !slices.Equal(r.Unplanned, want) {
			t.Fatalf("%d unplanned extras: marks %q", n, r.Unplanned)
		}
		a := appInfo(xs...)
		if err := p.Apply(&a); err != nil {
			t.Fatal(err)
		}
		if len(a.Unplanned) != n || a.Unplanned[n-1] != fmt.Sprintf("app_info:k%03d", n-1) {
			t.Fatalf("%d unplanned app-info keys: marks %q", n, a.Unplanned)
		}
	}
}

// The marks of a record are written in one allocation, their string made
// of it, and r.Unplanned grown once: two allocations for 64 unplanned
// extras (three when the bytes were copied into a string).
func TestMarksAllocations(t *testing.T) {
	p := withMode(mustParseFile(t, "testdata/news.yaml"), ModeWarn)
	var xs []tag.Extra
	for i := range tag.MaxExtras {
		xs = append(xs, x(fmt.Sprintf("k%03d", i), tag.Number(1)))
	}
	r := rec(tag.KindEvent, "article_read", xs...)
	n := testing.AllocsPerRun(100, func() {
		r.Unplanned = nil
		if err := p.Apply(&r); err != nil {
			t.Fatal(err)
		}
	})
	if len(r.Unplanned) != tag.MaxExtras || r.Unplanned[tag.MaxExtras-1] != fmt.Sprintf("extra:event:article_read:k%03d", tag.MaxExtras-1) {
		t.Fatalf("marks %q", r.Unplanned)
	}
	// Two: the slice of marks and the one string they are cut from. Under
	// the race detector (make test) the count is one more: its
	// instrumentation changes what escapes to the heap.
	want := 2.0
	if raceEnabled {
		want = 3
	}
	if n != want {
		t.Fatalf("%v allocations for the marks of %d unplanned extras, want %v", n, tag.MaxExtras, want)
	}
}
