package segments

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
)

func mustParse(t testing.TB, text string) Node {
	t.Helper()
	n, err := Parse(text)
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	return n
}

// The tree Parse builds for the example, field by field.
func TestParseTree(t *testing.T) {
	got := mustParse(t, `first_session between 3d and 4d ago and did activity "login" and not did event "logged_in"`)
	want := &And{Args: []Node{
		&Since{Moment: MomentFirstSession, Range: Ago{Min: 3 * day, Max: 4 * day}},
		&Did{Kind: tag.KindActivityStart, Name: "login", Count: CountCmp{Op: OpGe, N: 1}},
		&Not{X: &Did{Kind: tag.KindEvent, Name: "logged_in", Count: CountCmp{Op: OpGe, N: 1}}},
	}}
	if !Equal(got, want) {
		t.Fatalf("got %s, want %s", Format(got), Format(want))
	}
	and := got.(*And)
	for i, want := range []Pos{{1, 1}, {1, 41}, {1, 66}} {
		if p := and.Args[i].Position(); p != want {
			t.Errorf("argument %d at %v, want %v", i, p, want)
		}
	}
	if p := and.Args[2].(*Not).X.Position(); p != (Pos{1, 70}) {
		t.Errorf("did of not did at %v, want 1:70", p)
	}

	d := mustParse(t, "did event \"e\" where a = 1,\n  b in [2, now - 1y]").(*Did)
	if d.Where[0].At != (Pos{1, 21}) || d.Where[1].At != (Pos{2, 3}) || d.Where[1].Values[1].At != (Pos{2, 12}) {
		t.Errorf("filter positions %v %v %v, want 1:21 2:3 2:12", d.Where[0].At, d.Where[1].At, d.Where[1].Values[1].At)
	}
	if o := d.Where[1].Values[1]; !o.Relative || o.Offset != -year || o.Value.Type != tag.TypeDate {
		t.Errorf("now - 1y read as %+v", o)
	}
	j := mustParse(t, `did job "j" taking between 1500ms and 2m`).(*Did)
	if f := j.Duration; f.Key != "duration" || f.Op != OpBetween || f.Values[0].Value.Num != 1500 || f.Values[1].Value.Num != 120000 {
		t.Errorf("taking read as %+v", f)
	}
}

func TestEqualIgnoresPositionsOnly(t *testing.T) {
	a := mustParse(t, `app_info "level" >= 5 and did event "e" where x = 1`)
	b := mustParse(t, "app_info   \"level\"\n>= 5\nand did event \"e\" where x = 1")
	if !Equal(a, b) {
		t.Error("the same tree at other positions is not Equal")
	}
	for _, other := range []string{
		`app_info "level" >= 6 and did event "e" where x = 1`,
		`app_info "level" > 5 and did event "e" where x = 1`,
		`app_info "level" >= "5" and did event "e" where x = 1`,
		`app_info "level" >= 5 and did event "e" where x = 1 in the last 1d`,
		`app_info "level" >= 5 and did event "e" where y = 1`,
		`app_info "level" >= 5 and did job "e" where x = 1`,
		`app_info "level" >= 5 or did event "e" where x = 1`,
		`app_info "level" >= 5 and not did event "e" where x = 1`,
		`app_info "level" >= 5`,
	} {
		if Equal(a, mustParse(t, other)) {
			t.Errorf("%q is Equal to %q", other, Format(a))
		}
	}
	if !Equal(nil, nil) || Equal(a, nil) || Equal(nil, a) {
		t.Error("Equal with nil")
	}
}

func TestParseLimits(t *testing.T) {
	deep := strings.Repeat("(", MaxDepth+1) + `segment "a"` + strings.Repeat(")", MaxDepth+1)
	if _, err := Parse(deep); err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Errorf("Parse of %d parentheses: %v, want nested too deeply", MaxDepth+1, err)
	}
	ok := strings.Repeat("not ", MaxDepth) + `segment "a"`
	mustParse(t, ok)
	if _, err := Parse("not " + ok); err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Errorf("Parse of %d nots: %v, want nested too deeply", MaxDepth+1, err)
	}
	long := strings.Repeat(`segment "a" or `, MaxTextBytes/15) + `segment "a"`
	if _, err := Parse(long); err == nil || err.Error() != "1:1: the text is 65546 bytes long: at most 65536" {
		t.Errorf("Parse of %d bytes: %v", len(long), err)
	}
	for text, want := range map[string]string{
		"app_info \"x\" = \"a\x01b\"":     `1:18: control character U+0001 in a string: write it as \u0001`,
		"app_info \"x\" = \"a\xffb\"":     "1:18: invalid UTF-8 in a string",
		"app_info \"x\" = 1 \xff":         "1:18: invalid UTF-8 in the text",
		"app_info \"x\" = \"\x7f\"":       `1:17: control character U+007F in a string: write it as \u007F`,
		"app_info \"x\" = \"a\\":          `1:18: unterminated string: expected an escape such as \" after \`,
		"did event \"a\"\r\nor did \"b\"": `2:8: expected not, session, activity, event, job, error or crash after did, found the string "b"`,
	} {
		_, err := Parse(text)
		if err == nil || err.Error() != want {
			t.Errorf("Parse(%q): %v, want %s", text, err, want)
		}
	}
}

func TestJSONLimits(t *testing.T) {
	deep := strings.Repeat(`{"not":`, MaxDepth+1) + `{"segment":{"name":"a"}}` + strings.Repeat("}", MaxDepth+1)
	if _, err := UnmarshalNode([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Errorf("UnmarshalNode of %d nots: %v, want nested too deeply", MaxDepth+1, err)
	}
	big := make([]byte, MaxJSONBytes+1)
	if _, err := UnmarshalNode(big); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("UnmarshalNode of %d bytes: %v", len(big), err)
	}
	var e *Error
	if _, err := UnmarshalNode([]byte(`{"did": {"kind": "event", "name": "e", "window": 7}}`)); !errors.As(err, &e) || e.Path != "/did/window" || e.Pos != (Pos{}) {
		t.Errorf("error %#v, want an *Error at /did/window", err)
	}
}

func TestMarshalNodeRefusesWhatJSONCannotHold(t *testing.T) {
	for _, c := range []struct {
		n    Node
		want string
	}{
		{nil, "no expression (nil node)"},
		{&Not{}, "/not: no expression (nil node)"},
		{&Sample{Percent: math.NaN()}, "/sample/percent: number NaN cannot be written in JSON"},
		{&Attr{Source: SourceAppInfo, Key: "x", Op: OpEq, Values: []Operand{{Value: tag.Number(math.Inf(1))}}}, "/attr/values/0: number +Inf cannot be written in JSON"},
		{&Attr{Source: SourceAppInfo, Key: "x", Op: OpEq, Values: []Operand{{}}}, "/attr/values/0: value of no type"},
		{&Attr{Source: 9, Key: "x", Op: OpSet}, "/attr/source: unknown source 9"},
		{&Attr{Source: SourceAppInfo, Key: "x", Op: 99}, "/attr/op: unknown operator 99"},
		{&Did{Kind: tag.KindAppInfo, Count: CountCmp{Op: OpGe, N: 1}}, "/did/kind: kind app_info is not one of session, activity, event, job, error or crash"},
		{&Did{Kind: tag.KindEvent, Name: "e", Count: CountCmp{Op: OpNe, N: 1}}, "/did/count/op: operator != does not compare counts"},
		{&Did{Kind: tag.KindJob, Name: "j", Count: CountCmp{Op: OpGe, N: 1}, Duration: &Filter{Key: "duration", Op: OpIn}}, "/did/taking/op: operator in does not compare durations"},
		{&Since{Moment: 7}, "/since/moment: unknown moment 7"},
	} {
		_, err := MarshalNode(c.n)
		if err == nil || err.Error() != c.want {
			t.Errorf("MarshalNode(%#v): %v, want %s", c.n, err, c.want)
		}
	}
}

// Check of trees that Parse and UnmarshalNode never build, but Go code can.
func TestCheckInvalidTrees(t *testing.T) {
	ge1 := CountCmp{Op: OpGe, N: 1}
	for _, c := range []struct {
		n    Node
		want string
	}{
		{nil, "the segment has no expression"},
		{&And{Args: []Node{&Ref{Name: "a"}}}, "/and: and needs at least two conditions, found 1"},
		{&Or{Args: []Node{&Ref{Name: "a"}, nil}}, "/or/1: no expression here (nil node)"},
		{&Since{Moment: MomentLastSeen, Kind: tag.KindEvent, Range: Ago{Max: day}}, `/since: first_session and last_seen take no kind or name (kind event, name "")`},
		{&Since{Moment: 9, Range: Ago{Max: day}}, "/since/moment: unknown moment 9: expected first_session, last_seen or last"},
		{&Since{Moment: MomentLastTag, Kind: tag.KindSessionStart, Name: "x", Range: Ago{Max: day}}, `/since/name: sessions have no name, found "x"`},
		{&Since{Moment: MomentLastSeen, Range: Ago{Absolute: true}}, "/since: the range has neither an after nor a before date"},
		{&Since{Moment: MomentLastSeen, Range: Ago{Min: -day, Max: day}}, "/since: the range has a negative age (min -24h0m0s, max 24h0m0s)"},
		{&Did{Kind: tag.KindPush, Count: ge1}, "/did/kind: kind push is not one of session, activity, event, job, error or crash"},
		{&Did{Kind: tag.KindEvent, Name: "e", Count: CountCmp{Op: OpIn, N: 1}}, "/did/count/op: operator in does not compare counts: expected at least, at most, exactly, more than or fewer than"},
		{&Did{Kind: tag.KindEvent, Name: "e", Count: CountCmp{Op: OpGe, N: -1}}, "/did/count/n: count -1 is out of range: from 0 to 1000 times"},
		{&Did{Kind: tag.KindEvent, Name: "e", Count: ge1, Window: -time.Hour}, "/did/window: window -1h is too short: at least 1m"},
		{&Did{Kind: tag.KindJob, Name: "j", Count: ge1, Duration: &Filter{Key: "time", Op: OpGt, Values: []Operand{{Value: tag.Number(1)}}}}, `/did/taking: the duration filter's key is "time": expected "duration"`},
		{&Did{Kind: tag.KindJob, Name: "j", Count: ge1, Duration: &Filter{Key: "duration", Op: OpBetween, Values: []Operand{{Value: tag.Number(1)}}}}, "/did/taking/values: taking between needs 2 durations, found 1"},
		{&Did{Kind: tag.KindJob, Name: "j", Count: ge1, Duration: &Filter{Key: "duration", Op: OpGt, Values: []Operand{{Value: tag.Number(-1)}}}}, "/did/taking/values/0: a duration is a number of milliseconds of at least 0, found -1"},
		{&Did{Kind: tag.KindEvent, Name: "e", Count: ge1, Where: []Filter{{Key: "k", Op: OpEq}}}, "/did/where/0/values: = takes 1 value, found 0"},
		{&Did{Kind: tag.KindEvent, Name: "e", Count: ge1, Where: []Filter{{Key: "k", Op: 42}}}, "/did/where/0/op: unknown operator 42"},
		{&Attr{Source: SourceAppInfo, Key: "k", Op: OpEq, Values: []Operand{{Value: tag.Number(math.NaN())}}}, "/attr/values/0: number NaN is not allowed: give a finite number"},
		{&Attr{Source: SourceAppInfo, Key: "k", Op: OpEq, Values: []Operand{{}}}, "/attr/values/0: the value has no type"},
		{&Attr{Source: SourceAppInfo, Key: "k", Op: OpIn, Values: make([]Operand, MaxValues+1)}, "/attr/values: in takes at most 1000 values, found 1001"},
		{&Attr{Source: SourceAppInfo, Key: "k", Op: OpIn}, "/attr/values: in takes a list of at least one value, found none"},
		{&Attr{Source: SourceAppInfo, Key: "1k", Op: OpSet}, `/attr/key: app_info "1k" is not a valid key: a letter, then letters, digits or _, at most 64 bytes`},
		{&Attr{Source: SourceDevice, Key: "plaform", Op: OpSet}, "/attr/key: unknown device field \"plaform\": expected platform, app_version, os_version, model, manufacturer, locale, country, timezone (did you mean platform?)"},
		{&Attr{Source: 5, Key: "k", Op: OpSet}, "/attr/source: unknown source 5: expected app_info or a device field"},
		{&Sample{Percent: math.Inf(1)}, "/sample/percent: sample +Inf% is out of range: above 0% and at most 100%"},
		{&Not{X: &Unchanged{Key: "k"}}, "/not/unchanged/for: unchanged for 0s is out of range: from 1m to 365d"},
	} {
		err := Check(&Segment{Name: "s", Expr: c.n}, nil, nil)
		if err == nil || err.Error() != c.want {
			t.Errorf("Check(%#v):\n got %v\nwant %s", c.n, err, c.want)
		}
	}
	if err := Check(nil, nil, nil); err == nil || err.Error() != "the segment has no expression" {
		t.Errorf("Check(nil): %v", err)
	}
}

func TestCheckPlanOfAnotherApp(t *testing.T) {
	plan, err := tagplan.ParseFile("testdata/plans/game.yaml")
	if err != nil {
		t.Fatal(err)
	}
	err = Check(&Segment{App: "news", Name: "s", Expr: &Ref{Name: "x"}}, plan, nil)
	if err == nil || err.Error() != `the segment belongs to app "news" but the tag plan to app "game"` {
		t.Errorf("Check with another app's plan: %v", err)
	}
}

func TestCheckErrorsUnwrap(t *testing.T) {
	err := Check(&Segment{Expr: mustParse(t, `sample 0% and sample 200%`)}, nil, nil)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("Check: %v, want 2 Errors", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Pos != (Pos{1, 1}) || e.Path != "/and/0/sample/percent" {
		t.Errorf("first *Error: %+v", e)
	}
	many := strings.Repeat(`sample 0% and `, 60) + `sample 0%`
	if err := Check(&Segment{Expr: mustParse(t, many)}, nil, nil); !errors.As(err, &errs) || len(errs) != 51 || !strings.Contains(errs[50].Msg, "too many problems") {
		t.Errorf("Check of 61 problems gives %d errors, want 50 and a too many", len(errs))
	}
}

func TestErrorRendering(t *testing.T) {
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{Pos: Pos{2, 7}, Path: "/and/1", Msg: "m"}, "2:7: m"},
		{Error{Path: "/and/1", Msg: "m"}, "/and/1: m"},
		{Error{Msg: "m"}, "m"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%+v renders %q, want %q", c.e, got, c.want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	ordered := []string{"0.9", "1.9", "1.10", "2.0-beta", "2.0-rc.1", "2", "2.0.1", "2.1b", "2.1", "10.0", "99999999999999999999.1"}
	for i, a := range ordered {
		for j, b := range ordered {
			want := sign(i - j)
			if got := CompareVersions(a, b); got != want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
	for _, eq := range [][2]string{{"2", "2.0.0"}, {"v2.1", "2.1"}, {"V3", "3.0"}, {"01.002", "1.2"}, {"", "0"}} {
		if got := CompareVersions(eq[0], eq[1]); got != 0 {
			t.Errorf("CompareVersions(%q, %q) = %d, want 0", eq[0], eq[1], got)
		}
	}
	for s, want := range map[string]bool{"2.1": true, "v2": true, "10.0.1-beta": true, "": false, "v": false, "beta": false, "2 1": false} {
		if got := ValidVersion(s); got != want {
			t.Errorf("ValidVersion(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestWalkAndRefs(t *testing.T) {
	n := mustParse(t, `segment "b" and (segment "a" or not segment "b") and did event "e"`)
	if got := Refs(n); strings.Join(got, ",") != "a,b" {
		t.Errorf("Refs = %q, want a, b", got)
	}
	var visited []string
	Walk(n, func(n Node) bool {
		visited = append(visited, strings.TrimPrefix(fmt.Sprintf("%T", n), "*segments."))
		_, isOr := n.(*Or)
		return !isOr // do not descend into the or
	})
	if got := strings.Join(visited, " "); got != "And Ref Or Did" {
		t.Errorf("Walk visited %q, want And Ref Or Did", got)
	}
}

func TestFormatRangeAndDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 90 * time.Second: "90s", 36 * time.Hour: "36h", 14 * day: "14d", 1500 * time.Millisecond: "1500ms", time.Microsecond: "0ms", -time.Hour: "-1h"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		r    Ago
		want string
	}{
		{Ago{Max: 2 * day}, "within 2d"},
		{Ago{Min: 7 * day, Max: Forever}, "more than 7d ago"},
		{Ago{Max: Forever}, "more than 0s ago"},
		{Ago{Min: 3 * day, Max: 4 * day}, "between 3d and 4d ago"},
		{Ago{Absolute: true, From: from}, "after 2026-01-01"},
		{Ago{Absolute: true, To: from.Add(time.Hour)}, "before 2026-01-01T01:00:00Z"},
	} {
		if got := FormatRange(c.r); got != c.want {
			t.Errorf("FormatRange(%+v) = %q, want %q", c.r, got, c.want)
		}
	}
}

func TestKindWordAndOps(t *testing.T) {
	for k, want := range map[tag.Kind]string{tag.KindSessionStart: "session", tag.KindActivityStart: "activity", tag.KindEvent: "event", tag.KindJob: "job", tag.KindError: "error", tag.KindCrash: "crash"} {
		if got, ok := KindWord(k); got != want || !ok {
			t.Errorf("KindWord(%v) = %q, %v", k, got, ok)
		}
	}
	if _, ok := KindWord(tag.KindJobStart); ok {
		t.Error("KindWord(job_start) ok: conditions name whole jobs")
	}
	if OpPrefix.String() != "starts with" || CmpOp(0).String() != "op(0)" {
		t.Errorf("CmpOp.String: %q %q", OpPrefix, CmpOp(0))
	}
}
