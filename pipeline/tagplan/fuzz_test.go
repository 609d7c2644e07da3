package tagplan

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openengage/engage/pipeline/tag"
)

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "app: a", "app: a\nmode: enforce\ncrashes: {oom: {}}", "- x", "app: *x", "app: a\n---\n",
		"app: a\nevents: {e: &x {extras: {n: number}}, f: *x}", "{{},<<}", "app: a\nextras: {<<: {}}",
		"app: a\nevents: {? [x]: {}}", "app: a\napp_info: {n: !!binary aGk=}",
	} {
		f.Add([]byte(s))
	}
	records := []tag.Record{
		rec(tag.KindEvent, "e", x("n", tag.String("1"))),
		rec(tag.KindCrash, "oom", x("d", tag.String("2026-01-01T00:00:00Z"))),
		appInfo(x("n", tag.String("true"))),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 || len(errs) > maxErrors+1 {
				t.Fatalf("error %v (%T), want 1 to %d Errors", err, err, maxErrors+1)
			}
			for _, e := range errs {
				if e.File != "f.yaml" || e.Msg == "" || (e.Line < 1 && !strings.HasPrefix(e.Msg, "syntax error: ")) {
					t.Fatalf("error without a place or a message: %#v", e)
				}
			}
			return
		}
		if p.App == "" {
			t.Fatal("a plan without app")
		}
		s := p.Summary()
		if s.String() == "" || s.Activities != len(p.tags[secActivities]) || s.AnyCrash != p.anyCrash {
			t.Fatalf("summary %+v disagrees with the plan", s)
		}
		for _, m := range []Mode{ModeWarn, ModeEnforce} {
			q := withMode(p, m)
			for _, r := range records {
				r := clone(r)
				_ = q.Apply(&r)
			}
		}
	})
}
