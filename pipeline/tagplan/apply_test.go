package tagplan

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

var (
	t0        = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	published = time.Date(2026, 11, 1, 8, 30, 0, 0, time.UTC)
)

func rec(kind tag.Kind, name string, extras ...tag.Extra) tag.Record {
	return tag.Record{Kind: kind, AppID: "news", DeviceID: "d", MessageID: "m", Time: t0, Name: name, Extras: extras}
}

func appInfo(xs ...tag.Extra) tag.Record {
	return tag.Record{Kind: tag.KindAppInfo, AppID: "news", DeviceID: "d", MessageID: "m", Time: t0, AppInfo: xs}
}

func x(k string, v tag.Value) tag.Extra { return tag.Extra{Key: k, Value: v} }

// withMode returns a copy of p in mode m; the copy shares p's maps.
func withMode(p *Plan, m Mode) *Plan {
	q := *p
	q.Mode = m
	return &q
}

func TestApply(t *testing.T) {
	news := mustParseFile(t, "testdata/news.yaml")
	type outcome struct {
		marks []string // warn mode: the marks appended
		field string   // enforce mode: the field of the error, "" for none
		// reason is the enforce error's reason
		reason string
	}
	for _, tc := range []struct {
		name string
		in   tag.Record
		want tag.Record // after Apply in warn and enforce mode, without marks
		outcome
	}{
		{name: "planned event, all extras typed",
			in: rec(tag.KindEvent, "article_read", x("ab_group", tag.String("b")), x("category", tag.String("sport")),
				x("premium", tag.Bool(true)), x("published", tag.Date(published)), x("words", tag.Number(640)))},
		{name: "planned activity", in: rec(tag.KindActivityStart, "article", x("words", tag.Number(1)))},
		{name: "planned activity end", in: rec(tag.KindActivityEnd, "home")},
		{name: "planned job start", in: rec(tag.KindJobStart, "login")},
		{name: "planned error", in: rec(tag.KindError, "connection_failure", x("code", tag.Number(503)))},
		{name: "any crash, any extras", in: rec(tag.KindCrash, "OutOfMemoryError", x("stack", tag.String("…")))},
		{name: "session not checked", in: rec(tag.KindSessionStart, "", x("anything", tag.Number(1)))},
		{name: "planned app info", in: appInfo(x("level", tag.Number(3)), x("logged_in", tag.Bool(true)))},
		{name: "coerce date, number, bool",
			in: rec(tag.KindEvent, "article_read", x("premium", tag.String("false")),
				x("published", tag.String("2026-11-01T09:30:00+01:00")), x("words", tag.String("-6.4e2"))),
			want: rec(tag.KindEvent, "article_read", x("premium", tag.Bool(false)),
				x("published", tag.Date(published)), x("words", tag.Number(-640)))},
		{name: "coerce app info date",
			in:   appInfo(x("subscription_expiry", tag.String("2026-11-01T08:30:00.000Z"))),
			want: appInfo(x("subscription_expiry", tag.Date(published)))},
		{name: "strings stay strings",
			in: rec(tag.KindEvent, "article_read", x("ab_group", tag.String("12")), x("category", tag.String("2026-11-01T08:30:00Z")))},

		{name: "unplanned event", in: rec(tag.KindEvent, "foo", x("colour", tag.String("red"))),
			outcome: outcome{[]string{"event:foo"}, "name", `event "foo" is not in the tag plan of app "news" (mode enforce)`}},
		{name: "unplanned activity", in: rec(tag.KindActivityEnd, "bar"),
			outcome: outcome{[]string{"activity:bar"}, "name", `activity "bar" is not in the tag plan of app "news" (mode enforce)`}},
		{name: "job name planned only as activity", in: rec(tag.KindJobEnd, "article"),
			outcome: outcome{[]string{"job:article"}, "name", `job "article" is not in the tag plan of app "news" (mode enforce)`}},
		{name: "unplanned error, global extras still coerced", in: rec(tag.KindError, "timeout", x("ab_group", tag.Number(2))),
			outcome: outcome{[]string{"error:timeout", "type:extra:error:timeout:ab_group:number"}, "name", `error "timeout" is not in the tag plan of app "news" (mode enforce)`}},
		{name: "unplanned extra", in: rec(tag.KindEvent, "article_read", x("colour", tag.String("red")), x("words", tag.Number(3))),
			outcome: outcome{[]string{"extra:event:article_read:colour"}, "extras.colour", `not in the tag plan of app "news" for event "article_read" (mode enforce)`}},
		{name: "extra planned on another tag", in: rec(tag.KindEvent, "logged_in", x("words", tag.Number(3))),
			outcome: outcome{[]string{"extra:event:logged_in:words"}, "extras.words", `not in the tag plan of app "news" for event "logged_in" (mode enforce)`}},
		{name: "wrong type", in: rec(tag.KindEvent, "article_read", x("words", tag.Bool(true))),
			outcome: outcome{[]string{"type:extra:event:article_read:words:bool"}, "extras.words", "declared number in the tag plan, got bool"}},
		{name: "uncoercible number", in: rec(tag.KindEvent, "article_read", x("words", tag.String("many"))),
			outcome: outcome{[]string{"type:extra:event:article_read:words:string"}, "extras.words", `declared number in the tag plan, got string "many", not a number`}},
		{name: "NaN is not a number", in: rec(tag.KindActivityStart, "article", x("ab_group", tag.String("a")), x("words", tag.String("NaN"))),
			outcome: outcome{[]string{"type:extra:activity:article:words:string"}, "extras.words", `declared number in the tag plan, got string "NaN", not a number`}},
		{name: "uncoercible bool", in: rec(tag.KindEvent, "article_read", x("premium", tag.String("yes"))),
			outcome: outcome{[]string{"type:extra:event:article_read:premium:string"}, "extras.premium", `declared bool in the tag plan, got string "yes", not true or false`}},
		{name: "several marks, first one refused",
			in: rec(tag.KindEvent, "article_read", x("a", tag.Number(1)), x("published", tag.String("yesterday")), x("z", tag.Number(1))),
			outcome: outcome{[]string{"extra:event:article_read:a", "type:extra:event:article_read:published:string", "extra:event:article_read:z"},
				"extras.a", `not in the tag plan of app "news" for event "article_read" (mode enforce)`}},
		{name: "unplanned app info", in: appInfo(x("age", tag.Number(40)), x("level", tag.Number(3))),
			outcome: outcome{[]string{"app_info:age"}, "appInfo.age", `not in the tag plan of app "news" (mode enforce)`}},
		{name: "app info wrong type", in: appInfo(x("logged_in", tag.String("yes"))),
			outcome: outcome{[]string{"type:app_info:logged_in:string"}, "appInfo.logged_in", `declared bool in the tag plan, got string "yes", not true or false`}},
		{name: "name with colons", in: rec(tag.KindEvent, "a:b", x("k", tag.Number(1))),
			outcome: outcome{[]string{"event:a:b"}, "name", `event "a:b" is not in the tag plan of app "news" (mode enforce)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v := clone(tc.in); v.Validate() != nil || !reflect.DeepEqual(v, tc.in) {
				t.Fatalf("test record is not valid and sorted: %v", v.Validate())
			}
			want := tc.want
			if want.Kind == tag.KindInvalid {
				want = clone(tc.in)
			}
			for _, mode := range []Mode{ModeWarn, ModeEnforce} {
				r := clone(tc.in)
				err := withMode(news, mode).Apply(&r)
				var wantMarks []string
				if mode == ModeWarn {
					wantMarks = tc.marks
					if err != nil {
						t.Fatalf("warn: error %v", err)
					}
				} else {
					checkFieldError(t, err, tc.field, tc.reason)
				}
				if !reflect.DeepEqual(r.Unplanned, wantMarks) {
					t.Errorf("%s: marks %q, want %q", mode, r.Unplanned, wantMarks)
				}
				r.Unplanned = nil
				if err == nil && !reflect.DeepEqual(r, want) {
					t.Errorf("%s: record\n got %+v\nwant %+v", mode, r, want)
				}
			}
			// Off mode and no plan: nothing changes, nothing is refused.
			for _, p := range []*Plan{withMode(news, ModeOff), nil} {
				r := clone(tc.in)
				if err := p.Apply(&r); err != nil || !reflect.DeepEqual(r, tc.in) {
					t.Errorf("plan %v: error %v, record changed to %+v", p, err, r)
				}
			}
		})
	}
}

func checkFieldError(t *testing.T, err error, field, reason string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("enforce: error %v", err)
		}
		return
	}
	var fe *tag.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("enforce: error %v (%T), want *tag.FieldError", err, err)
	}
	if fe.Field != field || fe.Reason != reason {
		t.Fatalf("enforce: error\n got %s: %s\nwant %s: %s", fe.Field, fe.Reason, field, reason)
	}
}

func clone(r tag.Record) tag.Record {
	r.Extras = append([]tag.Extra(nil), r.Extras...)
	r.AppInfo = append([]tag.Extra(nil), r.AppInfo...)
	r.Unplanned = append([]string(nil), r.Unplanned...)
	if len(r.Extras) == 0 {
		r.Extras = nil
	}
	if len(r.AppInfo) == 0 {
		r.AppInfo = nil
	}
	if len(r.Unplanned) == 0 {
		r.Unplanned = nil
	}
	return r
}

func TestApplyCrashNames(t *testing.T) {
	p, err := Parse("p.yaml", []byte("app: a\nmode: enforce\ncrashes:\n  oom: {extras: {mb: number}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := rec(tag.KindCrash, "oom", x("mb", tag.String("512")))
	if err := p.Apply(&r); err != nil || !r.Extras[0].Value.Equal(tag.Number(512)) {
		t.Fatalf("planned crash: error %v, extras %+v", err, r.Extras)
	}
	r = rec(tag.KindCrash, "segfault")
	checkFieldError(t, p.Apply(&r), "name", `crash "segfault" is not in the tag plan of app "a" (mode enforce)`)
}

func TestDeclared(t *testing.T) {
	p, err := Parse("p.yaml", []byte(`
app: a
activities: {home: {}, both: {}}
events: {read: {}, both: {}}
jobs: {sync: {}, both: {}, fails: {}}
errors: {timeout: {}, fails: {}}
crashes: {oom: {}}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		kind tag.Kind
		ok   bool
	}{
		{"read", tag.KindEvent, true},
		{"both", tag.KindEvent, true}, // events before jobs
		{"sync", tag.KindJob, true},
		{"fails", tag.KindJob, true}, // jobs before errors
		{"timeout", tag.KindError, true},
		{"home", tag.KindInvalid, false}, // activities are not tracked by name
		{"oom", tag.KindInvalid, false},
		{"nope", tag.KindInvalid, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if k, ok := p.Declared(tc.name); k != tc.kind || ok != tc.ok {
				t.Fatalf("Declared(%q) = %v, %v; want %v, %v", tc.name, k, ok, tc.kind, tc.ok)
			}
		})
	}
	if k, ok := (*Plan)(nil).Declared("read"); ok || k != tag.KindInvalid {
		t.Fatalf("nil plan declares %v", k)
	}
}

func TestCoerceNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-0": true, "12": true, "1.5": true, "-6.4e2": true, "1E+3": true, "1e-3": true,
		"": false, "-": false, "01": false, "1.": false, ".5": false, "+1": false, " 1": false, "1 ": false,
		"NaN": false, "Inf": false, "0x10": false, "1_000": false, "1e": false, "1e400": false,
	} {
		v := tag.String(s)
		if got := coerce(&v, tag.TypeNumber); got != want {
			t.Errorf("coerce(%q) to number = %v, want %v", s, got, want)
		}
	}
}

func TestModeString(t *testing.T) {
	for _, m := range []Mode{ModeOff, ModeWarn, ModeEnforce} {
		if back, ok := ParseMode(m.String()); !ok || back != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, back, ok)
		}
	}
	if got := Mode(9).String(); got != "mode(9)" {
		t.Errorf("Mode(9) = %q", got)
	}
}

func TestTags(t *testing.T) {
	p, err := Parse("p.yaml", []byte("app: a\nactivities: {home: {}, login: {}}\nevents: {b: {}, a: {}}\njobs: {login: {}}\ncrashes: {oom: {}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tags, any := p.Tags()
	want := []Tag{{"activity", "home"}, {"activity", "login"}, {"event", "a"}, {"event", "b"}, {"job", "login"}, {"crash", "oom"}}
	if any || !slices.Equal(tags, want) {
		t.Fatalf("Tags() = %v, %v; want %v, false", tags, any, want)
	}
	if tags, any := (*Plan)(nil).Tags(); tags != nil || any {
		t.Fatal("nil plan declares tags")
	}
}
