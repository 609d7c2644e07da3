package triggers

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the tests do not depend on the host's zoneinfo
)

func zone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func tod(h, m int) TimeOfDay { return TimeOfDay{Hour: h, Minute: m} }

func TestLocation(t *testing.T) {
	z := NewZones(3)
	for _, tc := range []struct {
		tz, fallback string
		want         string
		ok           bool
	}{
		{"Europe/Paris", "Asia/Tokyo", "Europe/Paris", true},
		{"", "Asia/Tokyo", "Asia/Tokyo", true}, // no zone sent: the campaign's
		{"", "", "UTC", true},                  // nor a campaign default
		{"Mars/Olympus_Mons", "Asia/Tokyo", "Asia/Tokyo", false},
		{"Mars/Olympus_Mons", "", "UTC", false},
		{"", "Not/AZone", "UTC", false},
		{"Local", "Asia/Kolkata", "Asia/Kolkata", false}, // the machine's zone is nobody's
		{"../../etc/passwd", "", "UTC", false},
	} {
		loc, ok := z.Location(tc.tz, tc.fallback)
		if loc.String() != tc.want || ok != tc.ok {
			t.Errorf("Location(%q, %q) = %s, %v; want %s, %v", tc.tz, tc.fallback, loc, ok, tc.want, tc.ok)
		}
	}
	st := z.Stats()
	if st.Size > 3 || st.Capacity != 3 || st.Evictions == 0 {
		t.Errorf("stats %+v: want at most 3 names and evictions", st)
	}
	// Cached: the same *Location, no new load.
	a, _ := z.Location("America/New_York", "")
	loads := z.Stats().Loads
	b, _ := z.Location("America/New_York", "")
	if a != b || z.Stats().Loads != loads {
		t.Errorf("second lookup loaded again (%p %p, loads %d → %d)", a, b, loads, z.Stats().Loads)
	}
	if loc, ok := Location("Australia/Sydney", ""); !ok || loc.String() != "Australia/Sydney" {
		t.Errorf("package cache: %s %v", loc, ok)
	}
}

// Many goroutines share a small cache: every answer right, the bound kept
// (run with -race).
func TestZonesConcurrent(t *testing.T) {
	z := NewZones(4)
	names := []string{"Europe/Paris", "Asia/Tokyo", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "Bad/Zone", "UTC"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				name := names[(g+i)%len(names)]
				loc, ok := z.Location(name, "Asia/Tokyo")
				want := name
				if name == "Bad/Zone" {
					want = "Asia/Tokyo"
				}
				if loc.String() != want || ok != (name != "Bad/Zone") {
					t.Errorf("Location(%q) = %s, %v", name, loc, ok)
					return
				}
			}
		})
	}
	wg.Wait()
	if st := z.Stats(); st.Size > 4 || st.Loads == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestNextLocal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		zone  string
		after string // UTC
		tod   TimeOfDay
		want  string // UTC
	}{
		{"paris plain", "Europe/Paris", "2026-01-10T07:00:00Z", tod(10, 0), "2026-01-10T09:00:00Z"},
		{"paris at is at", "Europe/Paris", "2026-01-10T09:00:00Z", tod(10, 0), "2026-01-10T09:00:00Z"},
		{"paris just after", "Europe/Paris", "2026-01-10T09:00:00.000000001Z", tod(10, 0), "2026-01-11T09:00:00Z"},
		{"paris gap: first instant after it", "Europe/Paris", "2026-03-28T23:00:00Z", tod(2, 30), "2026-03-29T01:00:00Z"},
		{"paris gap start", "Europe/Paris", "2026-03-28T23:00:00Z", tod(2, 0), "2026-03-29T01:00:00Z"},
		{"paris gap end exists", "Europe/Paris", "2026-03-28T23:00:00Z", tod(3, 0), "2026-03-29T01:00:00Z"},
		{"paris day after gap", "Europe/Paris", "2026-03-29T01:00:00.5Z", tod(2, 30), "2026-03-30T00:30:00Z"},
		{"paris overlap: the first", "Europe/Paris", "2026-10-24T22:00:00Z", tod(2, 30), "2026-10-25T00:30:00Z"},
		{"paris between the two: next day", "Europe/Paris", "2026-10-25T00:45:00Z", tod(2, 30), "2026-10-26T01:30:00Z"},
		{"paris in the second pass", "Europe/Paris", "2026-10-25T01:10:00Z", tod(2, 30), "2026-10-26T01:30:00Z"},
		{"paris fall back: the hour that ends the first pass", "Europe/Paris", "2026-10-24T22:00:00Z", tod(3, 0), "2026-10-25T02:00:00Z"},
		{"new york fall back: 02:00 after the repeated hour", "America/New_York", "2026-11-01T04:00:00Z", tod(2, 0), "2026-11-01T07:00:00Z"},
		// Samoa skipped 30 December 2011 (UTC-10 to UTC+14): its 09:00 is
		// the first instant after the gap, midnight of the 31st, which is
		// also where that date starts.
		{"apia skipped day", "Pacific/Apia", "2011-12-30T09:00:00Z", tod(9, 0), "2011-12-30T10:00:00Z"},
		{"apia skipped day, from its end", "Pacific/Apia", "2011-12-30T10:00:00Z", tod(9, 0), "2011-12-30T10:00:00Z"},
		{"apia the day after", "Pacific/Apia", "2011-12-30T10:00:00.001Z", tod(9, 0), "2011-12-30T19:00:00Z"},
		{"new york gap", "America/New_York", "2026-03-08T05:00:00Z", tod(2, 30), "2026-03-08T07:00:00Z"},
		{"new york after gap", "America/New_York", "2026-03-08T05:00:00Z", tod(9, 0), "2026-03-08T13:00:00Z"},
		{"new york overlap", "America/New_York", "2026-11-01T04:00:00Z", tod(1, 30), "2026-11-01T05:30:00Z"},
		{"new york after overlap", "America/New_York", "2026-11-01T04:00:00Z", tod(9, 0), "2026-11-01T14:00:00Z"},
		{"sydney spring (october) gap", "Australia/Sydney", "2026-10-03T14:00:00Z", tod(2, 30), "2026-10-03T16:00:00Z"},
		{"sydney autumn (april) overlap", "Australia/Sydney", "2026-04-04T13:00:00Z", tod(2, 30), "2026-04-04T15:30:00Z"},
		{"sydney winter", "Australia/Sydney", "2026-07-01T00:00:00Z", tod(9, 0), "2026-07-01T23:00:00Z"},
		{"kolkata half hour", "Asia/Kolkata", "2026-03-29T00:00:00Z", tod(9, 0), "2026-03-29T03:30:00Z"},
		{"kolkata midnight", "Asia/Kolkata", "2026-03-29T00:00:00Z", tod(0, 0), "2026-03-29T18:30:00Z"},
		{"tokyo", "Asia/Tokyo", "2026-03-29T00:00:01Z", tod(9, 0), "2026-03-30T00:00:00Z"},
		{"tokyo earlier today", "Asia/Tokyo", "2026-03-28T23:59:00Z", tod(9, 0), "2026-03-29T00:00:00Z"},
		{"utc", "UTC", "2026-03-29T10:00:00Z", tod(10, 0), "2026-03-29T10:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := zone(t, tc.zone)
			got := NextLocal(utc(t, tc.after), tc.tod, loc)
			if want := utc(t, tc.want); !got.Equal(want) {
				t.Errorf("NextLocal(%s, %v) = %s (%s), want %s (%s)", tc.after, tc.tod, got.UTC().Format(time.RFC3339), got, tc.want, want.In(loc))
			}
			if got.Location() != loc {
				t.Errorf("result in %s, want %s", got.Location(), loc)
			}
		})
	}
}

func TestQuietHours(t *testing.T) {
	night := &QuietHours{From: tod(22, 0), To: tod(7, 0)}
	for _, tc := range []struct {
		name string
		q    *QuietHours
		zone string
		t    string // UTC
		want string // UTC; "drop"
	}{
		{"outside", night, "Europe/Paris", "2026-01-10T12:00:00Z", "2026-01-10T12:00:00Z"},
		{"from is quiet", night, "Europe/Paris", "2026-01-10T21:00:00Z", "2026-01-11T06:00:00Z"},
		{"before from", night, "Europe/Paris", "2026-01-10T20:59:59Z", "2026-01-10T20:59:59Z"},
		{"to is not quiet", night, "Europe/Paris", "2026-01-11T06:00:00Z", "2026-01-11T06:00:00Z"},
		{"after midnight", night, "Europe/Paris", "2026-01-11T05:59:30Z", "2026-01-11T06:00:00Z"},
		{"across spring forward", night, "Europe/Paris", "2026-03-28T22:00:00Z", "2026-03-29T05:00:00Z"},
		{"across fall back", night, "Europe/Paris", "2026-10-24T21:00:00Z", "2026-10-25T06:00:00Z"},
		{"end in the gap: after it", &QuietHours{From: tod(1, 0), To: tod(2, 30)}, "Europe/Paris", "2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z"},
		{"overlap first pass", &QuietHours{From: tod(22, 0), To: tod(2, 30)}, "Europe/Paris", "2026-10-25T00:15:00Z", "2026-10-25T00:30:00Z"},
		{"overlap second pass", &QuietHours{From: tod(22, 0), To: tod(2, 30)}, "Europe/Paris", "2026-10-25T01:15:00Z", "2026-10-25T01:30:00Z"},
		{"new york fall back", &QuietHours{From: tod(21, 0), To: tod(8, 0)}, "America/New_York", "2026-11-01T04:30:00Z", "2026-11-01T13:00:00Z"},
		{"new york spring forward", &QuietHours{From: tod(21, 0), To: tod(8, 0)}, "America/New_York", "2026-03-08T03:00:00Z", "2026-03-08T12:00:00Z"},
		{"sydney october", night, "Australia/Sydney", "2026-10-03T13:00:00Z", "2026-10-03T20:00:00Z"},
		{"sydney april", night, "Australia/Sydney", "2026-04-04T12:00:00Z", "2026-04-04T21:00:00Z"},
		{"kolkata", &QuietHours{From: tod(22, 0), To: tod(8, 0)}, "Asia/Kolkata", "2026-06-01T17:30:00Z", "2026-06-02T02:30:00Z"},
		{"tokyo daytime window", &QuietHours{From: tod(12, 0), To: tod(14, 0)}, "Asia/Tokyo", "2026-06-01T03:30:00Z", "2026-06-01T05:00:00Z"},
		{"tokyo daytime window outside", &QuietHours{From: tod(12, 0), To: tod(14, 0)}, "Asia/Tokyo", "2026-06-01T05:00:00Z", "2026-06-01T05:00:00Z"},
		{"drop", &QuietHours{From: tod(22, 0), To: tod(7, 0), Drop: true}, "Asia/Tokyo", "2026-06-01T14:00:00Z", "drop"},
		{"drop outside", &QuietHours{From: tod(22, 0), To: tod(7, 0), Drop: true}, "Asia/Tokyo", "2026-06-01T00:00:00Z", "2026-06-01T00:00:00Z"},
		{"empty window", &QuietHours{From: tod(7, 0), To: tod(7, 0)}, "Asia/Tokyo", "2026-06-01T00:00:00Z", "2026-06-01T00:00:00Z"},
		{"nil", nil, "Asia/Tokyo", "2026-06-01T14:00:00Z", "2026-06-01T14:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := zone(t, tc.zone)
			in := utc(t, tc.t)
			at, drop := tc.q.Apply(in, loc)
			switch {
			case tc.want == "drop":
				if !drop {
					t.Errorf("Apply(%s) = %s, want dropped", in.In(loc), at.In(loc))
				}
			case drop:
				t.Errorf("Apply(%s) dropped, want %s", in.In(loc), tc.want)
			case !at.Equal(utc(t, tc.want)):
				t.Errorf("Apply(%s) = %s, want %s", in.In(loc), at.In(loc), utc(t, tc.want).In(loc))
			}
		})
	}
}

func TestEntrySend(t *testing.T) {
	paris := "Europe/Paris"
	type want struct {
		at     string // UTC
		ok     bool
		reason string
	}
	for _, tc := range []struct {
		name    string
		zone    string
		when    When
		quiet   *QuietHours
		entered string
		want    want
	}{
		{"now", paris, When{}, nil, "2026-01-10T12:00:00Z", want{"2026-01-10T12:00:00Z", true, ""}},
		{"delay is elapsed time across DST", paris, When{Delay: 48 * time.Hour}, nil, "2026-03-28T11:00:00Z", want{"2026-03-30T11:00:00Z", true, ""}},
		{"welcome D+2 at 10:00", paris, When{Delay: 48 * time.Hour, AlignTo: &TimeOfDay{10, 0}}, nil, "2026-03-27T15:00:00Z",
			want{"2026-03-30T08:00:00Z", true, ""}},
		{"aligned on the gap", paris, When{Delay: 12 * time.Hour, AlignTo: &TimeOfDay{2, 30}}, nil, "2026-03-28T11:00:00Z",
			want{"2026-03-29T01:00:00Z", true, ""}},
		{"aligned on the overlap", paris, When{Delay: 2 * time.Hour, AlignTo: &TimeOfDay{2, 30}}, nil, "2026-10-24T20:00:00Z",
			want{"2026-10-25T00:30:00Z", true, ""}},
		{"aligned at the instant", "Asia/Tokyo", When{AlignTo: &TimeOfDay{9, 0}}, nil, "2026-06-01T00:00:00Z", want{"2026-06-01T00:00:00Z", true, ""}},
		{"kolkata aligned", "Asia/Kolkata", When{Delay: time.Hour, AlignTo: &TimeOfDay{9, 0}}, nil, "2026-06-01T03:00:00Z", want{"2026-06-02T03:30:00Z", true, ""}},
		{"quiet defers", "America/New_York", When{}, &QuietHours{From: tod(21, 0), To: tod(8, 0)}, "2026-11-01T04:30:00Z",
			want{"2026-11-01T13:00:00Z", true, ReasonQuietDeferred}},
		{"quiet drops", "Australia/Sydney", When{}, &QuietHours{From: tod(21, 0), To: tod(8, 0), Drop: true}, "2026-10-03T14:00:00Z",
			want{"2026-10-03T14:00:00Z", false, ReasonQuiet}},
		{"before start: at start", paris, When{Start: utc(t, "2026-02-01T10:00:00Z")}, nil, "2026-01-10T12:00:00Z",
			want{"2026-02-01T10:00:00Z", true, ReasonStart}},
		{"before start: realigned", paris, When{AlignTo: &TimeOfDay{9, 0}, Start: utc(t, "2026-02-01T10:00:00Z")}, nil, "2026-01-10T12:00:00Z",
			want{"2026-02-02T08:00:00Z", true, ReasonStart}},
		{"start then quiet", paris, When{Start: utc(t, "2026-02-01T22:00:00Z")}, &QuietHours{From: tod(22, 0), To: tod(7, 0)}, "2026-01-10T12:00:00Z",
			want{"2026-02-02T06:00:00Z", true, ReasonQuietDeferred}},
		{"ended", paris, When{Delay: 24 * time.Hour, End: utc(t, "2026-01-11T00:00:00Z")}, nil, "2026-01-10T12:00:00Z",
			want{"2026-01-11T12:00:00Z", false, ReasonEnded}},
		{"at the end is sent", paris, When{End: utc(t, "2026-01-10T12:00:00Z")}, nil, "2026-01-10T12:00:00Z",
			want{"2026-01-10T12:00:00Z", true, ""}},
		{"deferred past the end", paris, When{End: utc(t, "2026-01-11T05:00:00Z")}, &QuietHours{From: tod(22, 0), To: tod(7, 0)}, "2026-01-10T22:00:00Z",
			want{"2026-01-11T06:00:00Z", false, ReasonEnded}},
		{"alignment past expiry", paris, When{AlignTo: &TimeOfDay{10, 0}, Expiry: 6 * time.Hour}, nil, "2026-01-10T12:00:00Z",
			want{"2026-01-11T09:00:00Z", false, ReasonExpired}},
		{"delay longer than expiry", paris, When{Delay: 48 * time.Hour, Expiry: 24 * time.Hour}, nil, "2026-01-10T12:00:00Z",
			want{"2026-01-12T12:00:00Z", false, ReasonExpired}},
		{"quiet hours past expiry", "Asia/Tokyo", When{Expiry: 4 * time.Hour}, &QuietHours{From: tod(22, 0), To: tod(7, 0)}, "2026-06-01T14:00:00Z",
			want{"2026-06-01T22:00:00Z", false, ReasonExpired}},
		{"quiet hours within expiry", "Asia/Tokyo", When{Expiry: 9 * time.Hour}, &QuietHours{From: tod(22, 0), To: tod(7, 0)}, "2026-06-01T14:00:00Z",
			want{"2026-06-01T22:00:00Z", true, ReasonQuietDeferred}},
		{"quiet hours across DST and expiry", paris, When{Expiry: 7 * time.Hour}, &QuietHours{From: tod(22, 0), To: tod(7, 0)}, "2026-03-28T22:00:00Z",
			want{"2026-03-29T05:00:00Z", true, ReasonQuietDeferred}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := zone(t, tc.zone)
			c := &Campaign{Name: "c", When: tc.when, Limit: Limits{Quiet: tc.quiet}}
			c.When.Kind = OnEntry
			at, ok, reason := EntrySend(c, utc(t, tc.entered), loc)
			if ok != tc.want.ok || reason != tc.want.reason || !at.Equal(utc(t, tc.want.at)) {
				t.Errorf("EntrySend = %s (%s), %v, %q; want %s, %v, %q", at.UTC().Format(time.RFC3339), at.In(loc), ok, reason,
					tc.want.at, tc.want.ok, tc.want.reason)
			}
		})
	}
}

func TestEntryOccurrence(t *testing.T) {
	if got := EntryOccurrence(utc(t, "2026-03-29T01:00:00.123Z")); got != "entry:1774746000123" {
		t.Errorf("EntryOccurrence = %q", got)
	}
}

// A send at 09:00 local time rolls across the time zones: Sydney, Tokyo,
// Kolkata, Paris, New York.
func TestOnceSend(t *testing.T) {
	at := utc(t, "2026-03-29T09:00:00Z")
	for _, tc := range []struct {
		zone       string
		local, utc string
	}{
		{"Australia/Sydney", "2026-03-28T22:00:00Z", "2026-03-29T09:00:00Z"},
		{"Asia/Tokyo", "2026-03-29T00:00:00Z", "2026-03-29T09:00:00Z"},
		{"Asia/Kolkata", "2026-03-29T03:30:00Z", "2026-03-29T09:00:00Z"},
		{"Europe/Paris", "2026-03-29T07:00:00Z", "2026-03-29T09:00:00Z"}, // CEST since 01:00 UTC that day
		{"America/New_York", "2026-03-29T13:00:00Z", "2026-03-29T09:00:00Z"},
	} {
		loc := zone(t, tc.zone)
		c := &Campaign{When: When{Kind: Once, At: at, LocalTime: true}}
		if got := OnceSend(c, loc); !got.Equal(utc(t, tc.local)) {
			t.Errorf("%s local: %s, want %s", tc.zone, got, tc.local)
		}
		c.When.LocalTime = false
		if got := OnceSend(c, loc); !got.Equal(utc(t, tc.utc)) {
			t.Errorf("%s UTC: %s, want %s", tc.zone, got, tc.utc)
		}
	}
	// 02:30 on the day Paris skips it: the first instant after the gap.
	c := &Campaign{When: When{Kind: Once, At: utc(t, "2026-03-29T02:30:00Z"), LocalTime: true}}
	if got := OnceSend(c, zone(t, "Europe/Paris")); !got.Equal(utc(t, "2026-03-29T01:00:00Z")) {
		t.Errorf("gap: %s", got)
	}
}

func TestNextRecurring(t *testing.T) {
	paris := "Europe/Paris"
	type step struct {
		at, trigger, occ string
	}
	for _, tc := range []struct {
		name  string
		zone  string
		when  When
		quiet *QuietHours
		after string
		want  []step // successive sends, each after the previous trigger; then none
		more  bool   // the series goes on after want
	}{
		{"daily across spring forward", paris, When{Every: &TimeOfDay{9, 0}}, nil, "2026-03-27T12:00:00Z", []step{
			{"2026-03-28T08:00:00Z", "", "day:2026-03-28"},
			{"2026-03-29T07:00:00Z", "", "day:2026-03-29"},
			{"2026-03-30T07:00:00Z", "", "day:2026-03-30"},
		}, true},
		{"daily on the overlap: once", paris, When{Every: &TimeOfDay{2, 30}}, nil, "2026-10-24T12:00:00Z", []step{
			{"2026-10-25T00:30:00Z", "", "day:2026-10-25"},
			{"2026-10-26T01:30:00Z", "", "day:2026-10-26"},
		}, true},
		{"daily on the gap", paris, When{Every: &TimeOfDay{2, 30}}, nil, "2026-03-28T12:00:00Z", []step{
			{"2026-03-29T01:00:00Z", "", "day:2026-03-29"},
			{"2026-03-30T00:30:00Z", "", "day:2026-03-30"},
		}, true},
		{"weekly monday in tokyo (sunday in UTC)", "Asia/Tokyo", When{Every: &TimeOfDay{8, 0}, Weekdays: []time.Weekday{time.Monday}}, nil,
			"2026-06-01T00:00:00Z", []step{
				{"2026-06-07T23:00:00Z", "", "day:2026-06-08"},
				{"2026-06-14T23:00:00Z", "", "day:2026-06-15"},
			}, true},
		{"weekdays in new york", "America/New_York", When{Every: &TimeOfDay{18, 30}, Weekdays: []time.Weekday{time.Friday, time.Sunday}}, nil,
			"2026-10-30T00:00:00Z", []step{
				{"2026-10-30T22:30:00Z", "", "day:2026-10-30"},
				{"2026-11-01T23:30:00Z", "", "day:2026-11-01"}, // EST now
				{"2026-11-06T23:30:00Z", "", "day:2026-11-06"},
			}, true},
		{"sydney across october", "Australia/Sydney", When{Every: &TimeOfDay{7, 0}}, nil, "2026-10-02T12:00:00Z", []step{
			{"2026-10-02T21:00:00Z", "", "day:2026-10-03"},
			{"2026-10-03T20:00:00Z", "", "day:2026-10-04"},
		}, true},
		{"kolkata start and end", "Asia/Kolkata", When{Every: &TimeOfDay{9, 0}, Start: utc(t, "2026-06-03T00:00:00Z"), End: utc(t, "2026-06-05T03:30:00Z")}, nil,
			"2026-06-01T00:00:00Z", []step{
				{"2026-06-03T03:30:00Z", "", "day:2026-06-03"},
				{"2026-06-04T03:30:00Z", "", "day:2026-06-04"},
				{"2026-06-05T03:30:00Z", "", "day:2026-06-05"},
			}, false},
		{"quiet defers, trigger stays", "Asia/Tokyo", When{Every: &TimeOfDay{6, 0}}, &QuietHours{From: tod(22, 0), To: tod(7, 30)},
			"2026-06-01T00:00:00Z", []step{
				{"2026-06-01T22:30:00Z", "2026-06-01T21:00:00Z", "day:2026-06-02"},
				{"2026-06-02T22:30:00Z", "2026-06-02T21:00:00Z", "day:2026-06-03"},
			}, true},
		{"quiet drops every day", "Asia/Tokyo", When{Every: &TimeOfDay{23, 0}}, &QuietHours{From: tod(22, 0), To: tod(7, 0), Drop: true},
			"2026-06-01T00:00:00Z", nil, false},
		{"expiry shorter than the deferral", "Asia/Tokyo", When{Every: &TimeOfDay{6, 0}, Expiry: time.Hour}, &QuietHours{From: tod(22, 0), To: tod(7, 30)},
			"2026-06-01T00:00:00Z", nil, false},
		{"possible on the gap day only", paris, When{Every: &TimeOfDay{2, 30}}, &QuietHours{From: tod(2, 0), To: tod(3, 0), Drop: true},
			"2026-04-01T00:00:00Z", []step{{"2027-03-28T01:00:00Z", "", "day:2027-03-28"}}, true},
		{"no every", paris, When{}, nil, "2026-04-01T00:00:00Z", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := zone(t, tc.zone)
			c := &Campaign{Name: "r", When: tc.when, Limit: Limits{Quiet: tc.quiet}}
			c.When.Kind = Recurring
			after := utc(t, tc.after)
			for i, w := range tc.want {
				s, ok := NextRecurringSend(c, after, loc)
				trig := w.trigger
				if trig == "" {
					trig = w.at
				}
				if !ok || !s.At.Equal(utc(t, w.at)) || !s.Trigger.Equal(utc(t, trig)) || s.Occurrence != w.occ {
					t.Fatalf("send %d after %s: %v %s (%s) trigger %s %q; want %s trigger %s %q", i, after.In(loc), ok,
						s.At.UTC().Format(time.RFC3339), s.At, s.Trigger.UTC().Format(time.RFC3339), s.Occurrence, w.at, trig, w.occ)
				}
				if at, ok2 := NextRecurring(c, after, loc); ok2 != ok || !at.Equal(s.At) {
					t.Fatalf("NextRecurring differs from NextRecurringSend")
				}
				after = s.Trigger
			}
			if s, ok := NextRecurringSend(c, after, loc); ok != tc.more {
				t.Errorf("after %s: %v %s, want more %v", after.In(loc), ok, s.At.In(loc), tc.more)
			}
		})
	}
}

// randomZones are zones with every kind of offset and transition: the
// table's, half- and quarter-hour offsets with DST (Lord Howe's is half an
// hour), transitions at midnight (Santiago, Havana, Beirut, São Paulo
// until 2019), Casablanca's Ramadan suspensions, Samoa's skipped day.
var randomZones = []string{"America/New_York", "Europe/Paris", "Australia/Sydney", "Asia/Kolkata", "Asia/Tokyo",
	"Australia/Lord_Howe", "America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham", "America/Santiago",
	"America/Havana", "Asia/Beirut", "America/Sao_Paulo", "Africa/Casablanca", "Pacific/Apia", "UTC"}

// wallMinute is the wall clock of t in loc, in seconds since 1970-01-01
// as if read in UTC, from Go's calendar fields.
func wallSeconds(t time.Time, loc *time.Location) int64 {
	l := t.In(loc)
	y, m, d := l.Date()
	return time.Date(y, m, d, l.Hour(), l.Minute(), l.Second(), 0, time.UTC).Unix()
}

// bruteNextLocal is NextLocal by its definition, a minute at a time: the
// occurrence of tod on local date D is the first instant whose wall clock
// reads D tod or later; the answer is the first occurrence at or after
// `after`. Exact for zones whose transitions and offsets are whole
// minutes (all of them since 1972).
func bruteNextLocal(after time.Time, tod TimeOfDay, loc *time.Location) time.Time {
	start := after.Add(-3 * 24 * time.Hour).Truncate(time.Minute)
	d := floorDiv(wallSeconds(after, loc), day) - 1
	for m := start; ; m = m.Add(time.Minute) {
		w := wallSeconds(m, loc)
		for w >= d*day+tod.seconds() {
			if !m.Before(after) {
				return m
			}
			d++
		}
	}
}

// bruteQuiet is QuietHours.Apply (deferring) by its definition: the
// first instant at or after t whose wall clock is outside the window.
func bruteQuiet(q *QuietHours, t time.Time, loc *time.Location) time.Time {
	in := func(u time.Time) bool {
		return quiet(q.From.seconds(), q.To.seconds(), floorMod(wallSeconds(u, loc), day))
	}
	if !in(t) {
		return t
	}
	m := t.Truncate(time.Minute)
	for in(m) || m.Before(t) {
		m = m.Add(time.Minute)
	}
	return m
}

// randomCase draws an instant in 2005–2035 and a time of day, half the
// time near one of the zone's transitions.
func randomCase(rng *rand.Rand, loc *time.Location) (time.Time, TimeOfDay) {
	lo, hi := time.Date(2005, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	t := time.Unix(lo+rng.Int64N(hi-lo), rng.Int64N(1e9))
	tod := TimeOfDay{rng.IntN(24), rng.IntN(60)}
	if rng.IntN(2) == 0 {
		if _, end := t.In(loc).ZoneBounds(); !end.IsZero() {
			// Near the transition, at a time of day near the wall clock
			// where the old offset ends or the new one starts.
			w := end.In(loc)
			if rng.IntN(2) == 0 {
				w = end.Add(-time.Minute).In(loc).Add(time.Minute)
			}
			tod = TimeOfDay{w.Hour(), w.Minute()}
			if rng.IntN(2) == 0 {
				tod = addMinutes(tod, rng.IntN(91)-45)
			} else {
				tod = addMinutes(tod, rng.IntN(3)-1)
			}
			t = end.Add(time.Duration(rng.Int64N(int64(72*time.Hour))) - 48*time.Hour)
			if rng.IntN(4) == 0 {
				t = end.Add(time.Duration(rng.IntN(5)-2) * time.Second)
			}
		}
	}
	return t, tod
}

func addMinutes(t TimeOfDay, n int) TimeOfDay {
	m := ((t.Hour*60+t.Minute+n)%1440 + 1440) % 1440
	return TimeOfDay{m / 60, m % 60}
}

func TestNextLocalRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(1, seed))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := range n {
		name := randomZones[i%len(randomZones)]
		loc := zone(t, name)
		after, tod := randomCase(rng, loc)
		got, want := NextLocal(after, tod, loc), bruteNextLocal(after, tod, loc)
		if !got.Equal(want) {
			t.Fatalf("seed %d: NextLocal(%s = %s, %v, %s) = %s, brute force %s", seed, after.UTC().Format(time.RFC3339Nano), after.In(loc), tod, name, got, want.In(loc))
		}
	}
}

func TestQuietHoursRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(2, seed))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := range n {
		name := randomZones[i%len(randomZones)]
		loc := zone(t, name)
		at, from := randomCase(rng, loc)
		q := &QuietHours{From: from, To: addMinutes(from, 1+rng.IntN(1439))}
		if rng.IntN(3) == 0 { // the window ends near the transition
			q.From, q.To = addMinutes(from, -1-rng.IntN(600)), from
		}
		got, drop := q.Apply(at, loc)
		if want := bruteQuiet(q, at, loc); drop || !got.Equal(want) {
			t.Fatalf("seed %d: quiet %v–%v in %s at %s (%s): %s, brute force %s", seed, q.From, q.To, name, at.UTC().Format(time.RFC3339Nano), at.In(loc), got.In(loc), want.In(loc))
		}
	}
}

func BenchmarkEntrySend(b *testing.B) {
	loc := zone(b, "Europe/Paris")
	c := &Campaign{Name: "welcome", When: When{Kind: OnEntry, Delay: 48 * time.Hour, AlignTo: &TimeOfDay{10, 0}, Expiry: 72 * time.Hour},
		Limit: Limits{Quiet: &QuietHours{From: tod(22, 0), To: tod(8, 0)}}}
	entries := make([]time.Time, 1024)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range entries {
		entries[i] = time.Unix(1767225600+rng.Int64N(365*86400), 0) // 2026
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok, _ := EntrySend(c, entries[i&1023], loc); !ok {
			b.Fatal("not sent")
		}
		i++
	}
}

func BenchmarkNextLocal(b *testing.B) {
	loc := zone(b, "America/New_York")
	t0 := time.Unix(1767225600, 0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		NextLocal(t0.Add(time.Duration(i%8760)*time.Hour), TimeOfDay{9, 30}, loc)
		i++
	}
}

func BenchmarkLocation(b *testing.B) {
	names := []string{"Europe/Paris", "Asia/Tokyo", "America/New_York", "Asia/Kolkata"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		Location(names[i&3], "UTC")
		i++
	}
}
