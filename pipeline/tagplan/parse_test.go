package tagplan

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/openengage/engage/pipeline/tag"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.errors golden files")

const (
	tString = tag.TypeString
	tNumber = tag.TypeNumber
	tBool   = tag.TypeBool
	tDate   = tag.TypeDate
)

func mustParseFile(t testing.TB, path string) *Plan {
	t.Helper()
	p, err := ParseFile(path)
	if err != nil {
		t.Fatalf("ParseFile(%s): %v", path, err)
	}
	return p
}

func TestParseExample(t *testing.T) {
	p := mustParseFile(t, "testdata/news.yaml")
	if p.App != "news" || p.Mode != ModeWarn || !p.anyCrash {
		t.Fatalf("app %q mode %v anyCrash %v, want news warn true", p.App, p.Mode, p.anyCrash)
	}
	if global := (typeMap{"ab_group": tString}); !reflect.DeepEqual(p.extras, global) {
		t.Errorf("extras: got %v, want %v", p.extras, global)
	}
	want := [numSections]map[string]typeMap{
		secActivities: {
			"home":    nil,
			"login":   {"section": tString},
			"article": {"category": tString, "words": tNumber},
		},
		secEvents: {
			"article_read": {"category": tString, "words": tNumber, "premium": tBool, "published": tDate},
			"logged_in":    nil,
			"shared":       {"network": tString},
		},
		secJobs:   {"login": nil},
		secErrors: {"connection_failure": {"code": tNumber}},
	}
	for sec := range numSections {
		if !reflect.DeepEqual(p.tags[sec], want[sec]) {
			t.Errorf("%s:\n got %v\nwant %v", sectionKeys[sec], p.tags[sec], want[sec])
		}
	}
	if wantInfo := (typeMap{"logged_in": tBool, "subscription_expiry": tDate, "level": tNumber, "topics": tString}); !reflect.DeepEqual(p.appInfo, wantInfo) {
		t.Errorf("app_info: got %v, want %v", p.appInfo, wantInfo)
	}
	wantSum := Summary{App: "news", Mode: ModeWarn, Activities: 3, Events: 3, Jobs: 1, Errors: 1, AnyCrash: true, Extras: 1, TagExtras: 9, AppInfo: 4}
	if got := p.Summary(); got != wantSum {
		t.Errorf("Summary = %+v, want %+v", got, wantSum)
	}
	const line = `app "news", mode warn: 3 activities, 3 events, 1 job, 1 error, any crash, 9 tag extras, 1 global extra, 4 app_info keys`
	if got := p.Summary().String(); got != line {
		t.Errorf("Summary.String =\n%s\nwant\n%s", got, line)
	}
}

func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		check      func(*Plan) bool
	}{
		{"only app, defaults", "app: a", func(p *Plan) bool { return p.App == "a" && p.Mode == ModeWarn && p.anyCrash }},
		{"mode off", "app: a\nmode: off", func(p *Plan) bool { return p.Mode == ModeOff }},
		{"mode enforce", "app: a\nmode: enforce", func(p *Plan) bool { return p.Mode == ModeEnforce }},
		{"null entry", "app: a\nactivities:\n  home:\n  login:\n", func(p *Plan) bool {
			_, home := p.tags[secActivities]["home"]
			_, login := p.tags[secActivities]["login"]
			return home && login
		}},
		{"null section", "app: a\nevents:\n", func(p *Plan) bool { return len(p.tags[secEvents]) == 0 }},
		{"boolean type", "app: a\napp_info: {x: boolean}", func(p *Plan) bool { return p.appInfo["x"] == tBool }},
		{"crash names", "app: a\ncrashes: {oom: {extras: {mb: number}}}", func(p *Plan) bool {
			return !p.anyCrash && p.tags[secCrashes]["oom"]["mb"] == tNumber
		}},
		{"no crash allowed", "app: a\ncrashes: {}", func(p *Plan) bool { return !p.anyCrash && len(p.tags[secCrashes]) == 0 }},
		{"names with colons and digits", "app: a\nevents: {\"a:b\": {}, 404: {}, true: {}}", func(p *Plan) bool {
			return len(p.tags[secEvents]) == 3 && p.tags[secEvents]["404"] == nil && p.tags[secEvents]["true"] == nil
		}},
		{"same global key, same type", "app: a\nextras: {g: number}\nevents: {e: {extras: {g: number}}}", func(p *Plan) bool {
			return p.tags[secEvents]["e"]["g"] == tNumber && p.extras["g"] == tNumber
		}},
		{"aliases", "app: a\nevents:\n  e1: &x {extras: {n: number}}\n  e2: *x\n", func(p *Plan) bool {
			return p.tags[secEvents]["e2"]["n"] == tNumber && p.Summary().TagExtras == 2
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(p) {
				t.Fatalf("wrong plan: %+v", p)
			}
		})
	}
}

// TestParseMistakes checks each kind of mistake alone, with its position.
func TestParseMistakes(t *testing.T) {
	long := strings.Repeat("x", 257)
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"empty", "", "p.yaml:1:1: empty tag plan: it needs at least app: <app id>"},
		{"only a comment", "# nothing\n", "p.yaml:1:1: empty tag plan: it needs at least app: <app id>"},
		{"not a mapping", "- app: a", "p.yaml:1:1: a tag plan is a mapping with keys app, mode, activities, events, jobs, errors, crashes, extras, app_info, not a list"},
		{"missing app", "\nmode: warn", "p.yaml:2:1: missing app: the id of the app this plan is for (app: <app id>)"},
		{"empty app", `app: ""`, "p.yaml:1:6: app is empty: give the app id"},
		{"app not a string", "app: {x: 1}", "p.yaml:1:6: app must be a string, not a mapping"},
		{"app too long", "app: " + strings.Repeat("a", 129), "p.yaml:1:6: app id of 129 bytes, more than the limit of 128"},
		{"unknown top key", "app: a\nevnts: {}", `p.yaml:2:1: unknown key "evnts": a tag plan has app, mode, activities, events, jobs, errors, crashes, extras, app_info (did you mean "events"?)`},
		{"unknown mode", "app: a\nmode: strict", `p.yaml:2:7: unknown mode "strict": use off, warn or enforce`},
		{"duplicate top key", "app: a\nevents: {}\nevents: {}", `p.yaml:3:1: duplicate key "events" (first at 2:1)`},
		{"name twice in a section", "app: a\nevents:\n  e: {}\n  f: {}\n  e: {}", `p.yaml:5:3: duplicate key "e" (first at 3:3)`},
		{"entry not a mapping", "app: a\nevents:\n  e: [x]", `p.yaml:3:6: the entry of event "e" must be a mapping such as {} or {extras: {key: type}}, not a list`},
		{"entry a string", "app: a\njobs:\n  sync: yes", `p.yaml:3:9: the entry of job "sync" must be a mapping such as {} or {extras: {key: type}}, not "yes"`},
		{"unknown entry key", "app: a\nevents:\n  e: {extra: {}}", `p.yaml:3:7: unknown key "extra" in the entry of event "e": an entry has only extras (did you mean "extras"?)`},
		{"wrong type", "app: a\nevents:\n  e: {extras: {n: strng}}", `p.yaml:3:19: unknown type "strng": use string, number, bool or date (did you mean "string"?)`},
		{"type not a string", "app: a\napp_info:\n  n: [number]", "p.yaml:3:6: a type must be a string, not a list"},
		{"invalid extras key", "app: a\nextras:\n  9lives: number", `p.yaml:3:3: invalid extras key "9lives": keys match ^[A-Za-z][A-Za-z0-9_]*$ and have at most 64 bytes`},
		{"invalid app_info key", "app: a\napp_info:\n  first-name: string", `p.yaml:3:3: invalid app_info key "first-name": keys match ^[A-Za-z][A-Za-z0-9_]*$ and have at most 64 bytes`},
		{"duplicate extras key", "app: a\nextras: {x: string, x: number}", `p.yaml:2:21: duplicate key "x" (first at 2:10)`},
		{"extras not a mapping", "app: a\nextras: [x]", "p.yaml:2:9: extras must be a mapping of keys to types such as {words: number}, not a list"},
		{"section a list", "app: a\nactivities: [home]", "p.yaml:2:13: activities must be a mapping of names to entries such as `home: {}`, not a list"},
		{"empty name", "app: a\nerrors: {\"\": {}}", "p.yaml:2:10: empty error name"},
		{"long name", "app: a\nevents: {" + long + ": {}}", "p.yaml:2:10: event name of 257 bytes, more than the limit of 256"},
		{"control character in name", "app: a\nevents: {\"a\\tb\": {}}", `p.yaml:2:10: event name "a\tb" has a control character or invalid UTF-8`},
		{"null key", "app: a\nevents: {~: {}}", "p.yaml:2:10: a key must be a string, not null (quote it if it is a name)"},
		{"mapping key", "app: a\nevents: {{x: 1}: {}}", "p.yaml:2:10: a key must be a string, not a mapping"},
		{"crashes neither any nor a mapping", "app: a\ncrashes: every", `p.yaml:2:10: crashes must be any or a mapping of crash names, not "every"`},
		{"crashes typo", "app: a\ncrashes: ani", `p.yaml:2:10: crashes must be any or a mapping of crash names, not "ani" (did you mean "any"?)`},
		{"crashes null", "app: a\ncrashes:", "p.yaml:2:9: crashes must be any or a mapping of crash names, not nothing (write {} to allow no crash name)"},
		{"conflicting global type", "app: a\nextras: {g: string}\nevents: {e: {extras: {g: number}}}", `p.yaml:3:23: extras key "g" is number here but string in the global extras (at 2:10)`},
		{"second document", "app: a\n---\napp: b", "p.yaml:2:1: a second YAML document: a tag plan file holds one plan (remove the ---)"},
		// yaml.v3 gives the line where the unclosed construct's context starts.
		{"syntax error", "app: a\nevents:\n  e: {extras: {x: string}\n", "p.yaml:2: syntax error: did not find expected ',' or '}'"},
		{"syntax error, first line", "app: a: b", "p.yaml: syntax error: mapping values are not allowed in this context"},
		{"unknown alias", "app: *x", "p.yaml: syntax error: unknown anchor 'x' referenced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tc.yaml))
			if p != nil {
				t.Errorf("returned a plan along with the error")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v (%T), want Errors", err, err)
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n got %s\nwant %s", err, tc.want)
			}
			var one *Error
			if !errors.As(err, &one) || one != errs[0] {
				t.Fatalf("errors.As(*Error) does not give the first error")
			}
		})
	}
}

// TestParseGolden parses the broken plans of testdata, whose mistakes are
// all reported together, and compares with the .errors files.
func TestParseGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f == filepath.Join("testdata", "news.yaml") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := ParseFile(f)
			if err == nil {
				t.Fatal("no error")
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".errors"
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Fatalf("errors differ from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("app: a\nevents:\n")
	for i := range 60 {
		b.WriteString("  e" + strings.Repeat("x", i) + ": {extras: {n: nmbr}}\n")
	}
	_, err := Parse("p.yaml", []byte(b.String()))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v, want Errors", err)
	}
	if len(errs) != maxErrors+1 || !strings.Contains(errs[maxErrors].Msg, "too many errors") {
		t.Fatalf("%d errors, last %v; want %d and a too-many note", len(errs), errs[len(errs)-1], maxErrors+1)
	}
	if errs[0].Line != 3 || errs[maxErrors-1].Line != 3+maxErrors-1 {
		t.Fatalf("errors not in file order: first %v, last %v", errs[0], errs[maxErrors-1])
	}
}

func TestParseFileMissing(t *testing.T) {
	_, err := ParseFile("testdata/nope.yaml")
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "read tag plan: ") {
		t.Fatalf("error %v, want a wrapped not-exist error", err)
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct{ s, want string }{
		{"evnts", ` (did you mean "events"?)`},
		{"Events", ` (did you mean "events"?)`},
		{"appinfo", ` (did you mean "app_info"?)`},
		{"zzz", ""},
		{"a", ""}, // one letter is too far from anything to guess
	} {
		if got := suggest(tc.s, topKeys...); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

// TestParseAliasesShare checks that aliases do not multiply work: a plan
// whose tags all alias one big extras mapping reads it once, and shares it.
func TestParseAliasesShare(t *testing.T) {
	var b strings.Builder
	b.WriteString("app: a\nextras: {")
	for i := range 2000 {
		fmt.Fprintf(&b, "g%d: string, ", i)
	}
	b.WriteString("}\nactivities:\n  first: {extras: &x {")
	for i := range 2000 {
		fmt.Fprintf(&b, "k%d: number, ", i)
	}
	b.WriteString("}}\nevents:\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "  e%d: {extras: *x}\n", i)
	}
	p, err := Parse("p.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	first := reflect.ValueOf(p.tags[secActivities]["first"]).UnsafePointer()
	for name, own := range p.tags[secEvents] {
		if reflect.ValueOf(own).UnsafePointer() != first {
			t.Fatalf("event %s has its own copy of the aliased extras", name)
		}
	}
	if s := p.Summary(); s.Events != 5000 || s.TagExtras != 5001*2000 || s.Extras != 2000 {
		t.Fatalf("summary %+v", s)
	}
}
