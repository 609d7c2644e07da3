package tagplan

import (
	"testing"

	"github.com/openengage/engage/pipeline/tag"
)

// Apply is on the collector's hot path: a fully planned record costs map
// look-ups only, and no allocation.
func plannedRecord() tag.Record {
	return rec(tag.KindEvent, "article_read", x("ab_group", tag.String("b")), x("category", tag.String("sport")),
		x("premium", tag.Bool(true)), x("published", tag.Date(published)), x("words", tag.Number(640)))
}

func TestApplyPlannedDoesNotAllocate(t *testing.T) {
	p := withMode(mustParseFile(t, "testdata/news.yaml"), ModeEnforce)
	r, info := plannedRecord(), appInfo(x("level", tag.Number(3)), x("logged_in", tag.Bool(true)))
	if n := testing.AllocsPerRun(100, func() {
		if p.Apply(&r) != nil || p.Apply(&info) != nil {
			t.Fatal("refused a planned record")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per planned record, want 0", n)
	}
}

func benchmarkApply(b *testing.B, mode Mode, r tag.Record) {
	p := withMode(mustParseFile(b, "testdata/news.yaml"), mode)
	in := r
	b.ReportAllocs()
	for b.Loop() {
		r := in
		r.Extras = append(r.Extras[:0:0], in.Extras...) // undo the coercion of the last run
		_ = p.Apply(&r)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkApplyPlanned(b *testing.B) {
	p := withMode(mustParseFile(b, "testdata/news.yaml"), ModeEnforce)
	r := plannedRecord()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Apply(&r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// The coercing and unplanned benchmarks copy the extras each run (one
// allocation of their own).
func BenchmarkApplyCoerce(b *testing.B) {
	benchmarkApply(b, ModeWarn, rec(tag.KindEvent, "article_read", x("premium", tag.String("false")),
		x("published", tag.String("2026-11-01T09:30:00+01:00")), x("words", tag.String("640"))))
}

func BenchmarkApplyUnplannedWarn(b *testing.B) {
	benchmarkApply(b, ModeWarn, rec(tag.KindEvent, "article_read", x("colour", tag.String("red")), x("words", tag.Bool(true))))
}
